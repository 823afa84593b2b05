//! The state of adopted channels that are not recorded here (a lower platform's channels,
//! pulled on demand): online when their device is registered and keeping alive and its
//! catalog says `ON`; offline, with the reason, otherwise. Recorded channels take their state
//! from their pull instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use api::RemoteState;

#[derive(Default)]
struct DeviceChannels {
    /// Why the device is offline; `None` while it is online.
    down: Option<String>,
    /// Channel id → (its state, the catalog's `Status` ON).
    channels: HashMap<String, (Arc<RemoteState>, bool)>,
}

impl DeviceChannels {
    fn apply(&self, device: &str, state: &RemoteState, on: bool) {
        match (&self.down, on) {
            (Some(why), _) => state.set("offline", Some(why.clone())),
            (None, true) => state.set("online", None),
            (None, false) => state.set(
                "offline",
                Some(format!(
                    "GB28181 device {device} reports this channel OFF (check the camera behind it)"
                )),
            ),
        }
    }
}

/// Adopted on-demand channels' states, by device.
#[derive(Default)]
pub struct Presence {
    devices: Mutex<HashMap<String, DeviceChannels>>,
}

impl Presence {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, DeviceChannels>) -> T) -> T {
        f(&mut self.devices.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The state of `channel` of `device`, now `on` (catalog `Status`); made on first use.
    pub fn channel(&self, device: &str, channel: &str, on: bool) -> Arc<RemoteState> {
        self.with(|m| {
            let d = m.entry(device.to_owned()).or_default();
            let state = match d.channels.get_mut(channel) {
                Some((s, o)) => {
                    *o = on;
                    s.clone()
                }
                None => {
                    let s = Arc::new(RemoteState::new(device, "offline"));
                    d.channels.insert(channel.to_owned(), (s.clone(), on));
                    s
                }
            };
            d.apply(device, &state, on);
            state
        })
    }

    /// `device` is registered and keeping alive: its channels are as their catalog says.
    pub fn device_online(&self, device: &str) {
        self.with(|m| {
            let d = m.entry(device.to_owned()).or_default();
            d.down = None;
            for (s, on) in d.channels.values() {
                d.apply(device, s, *on);
            }
        })
    }

    /// `device` went offline for `why`: so are all its channels.
    pub fn device_offline(&self, device: &str, why: String) {
        self.with(|m| {
            let d = m.entry(device.to_owned()).or_default();
            d.down = Some(why);
            for (s, on) in d.channels.values() {
                d.apply(device, s, *on);
            }
        })
    }

    /// Forgets `channel` (removed from the catalog).
    pub fn forget(&self, device: &str, channel: &str) {
        self.with(|m| {
            if let Some(d) = m.get_mut(device) {
                d.channels.remove(channel);
            }
        })
    }

    /// The channels of `device` known here.
    pub fn channels_of(&self, device: &str) -> Vec<String> {
        self.with(|m| {
            m.get(device)
                .map(|d| d.channels.keys().cloned().collect())
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_their_device_and_their_catalog_status() {
        let p = Presence::default();
        let a = p.channel("dev", "a", true);
        let b = p.channel("dev", "b", false);
        assert_eq!(a.get().0, "online");
        assert_eq!(b.get().0, "offline");
        assert!(b.get().1.unwrap().contains("OFF"));
        p.device_offline("dev", "GB28181 device dev stopped keeping alive".into());
        assert_eq!(
            a.get(),
            ("offline", Some("GB28181 device dev stopped keeping alive".into()))
        );
        // A catalog change while the device is down does not bring the channel up.
        p.channel("dev", "a", true);
        assert_eq!(a.get().0, "offline");
        p.device_online("dev");
        assert_eq!(a.get().0, "online");
        assert_eq!(b.get().0, "offline");
        // The same channel keeps its state object (the camera entry holds it).
        assert!(Arc::ptr_eq(&a, &p.channel("dev", "a", true)));
        p.forget("dev", "b");
        assert_eq!(p.channels_of("dev"), ["a"]);
    }
}
