//! The links of lower platforms registering to us (`[[gb28181.devices]] link_mbps`): every
//! live pull of their channels counts against the budget of that registration, with the
//! hierarchy's own [`Budget`] (one accounting for native links and GB/T 28181 ones), and one
//! that does not fit is refused with the reason before any INVITE goes out.

use std::collections::HashMap;
use std::sync::Mutex;

use hierarchy::budget::{Budget, LinkRefusal, PullKey, StreamRates};
use media::{StreamId, StreamKind};

use crate::config::{DEFAULT_MAIN_KBPS, GbDeviceConfig};

struct GbLink {
    budget: Mutex<Budget>,
    channel_kbps: u64,
}

/// The budgets of the registrations that have one, by device id.
#[derive(Default)]
pub struct GbLinks {
    links: HashMap<String, GbLink>,
}

fn lock(m: &Mutex<Budget>) -> std::sync::MutexGuard<'_, Budget> {
    // A budget is a map of counts; a panicked holder leaves it whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GbLinks {
    /// The links of the pre-declared devices with a `link_mbps`.
    pub fn new(devices: &[GbDeviceConfig]) -> GbLinks {
        GbLinks {
            links: devices
                .iter()
                .filter_map(|d| {
                    let kbps = d.link_kbps?;
                    Some((
                        d.id.clone(),
                        GbLink {
                            budget: Mutex::new(Budget::new(&format!("gb28181 device {}", d.id), kbps)),
                            channel_kbps: d.channel_kbps.unwrap_or(DEFAULT_MAIN_KBPS),
                        },
                    ))
                })
                .collect(),
        }
    }

    /// Admits a live pull of `stream` from `device`: always for a device without a budget.
    pub fn admit(&self, device: &str, stream: &StreamId) -> Result<(), LinkRefusal> {
        let Some(l) = self.links.get(device) else { return Ok(()) };
        let rates = StreamRates {
            main_kbps: l.channel_kbps,
            sub_kbps: None,
        };
        lock(&l.budget)
            .admit_live(stream.camera(), StreamKind::Main, rates)
            .map(|_| ())
    }

    /// The pull of `stream` from `device` stopped.
    pub fn release(&self, device: &str, stream: &StreamId) {
        if let Some(l) = self.links.get(device) {
            lock(&l.budget).release(&PullKey::Live(StreamId::new(stream.camera(), StreamKind::Main)));
        }
    }

    /// `device`'s link as the device list shows it: `{budget_mbps, in_use_mbps, pulls,
    /// refusals}`; `None` for a device without a budget.
    pub fn view(&self, device: &str) -> Option<serde_json::Value> {
        let l = self.links.get(device)?;
        let b = lock(&l.budget);
        Some(serde_json::json!({
            "budget_mbps": b.budget_kbps() as f64 / 1000.0,
            "in_use_mbps": b.in_use_kbps() as f64 / 1000.0,
            "pulls": b.pulls(),
            "refusals": b.refusals(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, link: Option<u64>) -> GbDeviceConfig {
        GbDeviceConfig {
            id: id.into(),
            password: None,
            charset: None,
            call_id: gb28181::platform::CallIdPolicy::Fresh,
            device_info: true,
            link_kbps: link,
            channel_kbps: Some(2_000),
        }
    }

    #[test]
    fn pulls_count_against_their_registration_and_free_it_when_they_stop() {
        let links = GbLinks::new(&[device("lower", Some(5_000)), device("free", None)]);
        let s = |c: &str| StreamId::main(c);
        assert!(links.admit("lower", &s("a")).is_ok());
        assert!(links.admit("lower", &s("b")).is_ok());
        // The same channel again costs nothing more.
        assert!(links.admit("lower", &s("a")).is_ok());
        let refused = links.admit("lower", &s("c")).unwrap_err();
        assert!(refused.message.contains("gb28181 device lower"), "{refused}");
        assert!(refused.message.contains("link_mbps"), "{refused}");
        assert!(links.admit("free", &s("x")).is_ok(), "no budget, no limit");
        assert!(links.admit("unknown", &s("x")).is_ok());
        assert_eq!(links.view("lower").unwrap()["refusals"], 1);
        links.release("lower", &s("a"));
        assert!(links.admit("lower", &s("c")).is_ok());
        assert_eq!(links.view("lower").unwrap()["pulls"], 2);
        assert!(links.view("free").is_none());
    }
}
