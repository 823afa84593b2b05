//! GB/T 28181 happenings as node events (`GET /api/v1/events`): alarms and device state.

use std::sync::Arc;

use api::events::NodeEvent;
use gb28181::platform::Event;
use gb28181::server::SipServer;

/// The node event for a SIP server event, if it is one: a channel's alarm as `camera.alarm`
/// (to those who may see the camera, when `is_camera` knows it), devices going offline and
/// online as `device.offline` / `device.online` (administrators).
pub fn node_event(e: Event, at: String, is_camera: impl Fn(&str) -> bool) -> Option<NodeEvent> {
    Some(match e {
        Event::Document { device, doc } if doc.is("Notify", "Alarm") => {
            let el = &doc.element;
            // The alarm's DeviceID is the channel (or the device itself).
            let camera = is_camera(&doc.device_id).then(|| doc.device_id.clone());
            NodeEvent {
                kind: "camera.alarm",
                camera,
                data: serde_json::json!({
                    "camera": doc.device_id,
                    "device": device,
                    "at": at,
                    "priority": el.number_of::<u8>("AlarmPriority"),
                    "method": el.number_of::<u8>("AlarmMethod"),
                    "alarm_time": el.text_of("AlarmTime"),
                    "description": el.text_of("AlarmDescription").map(|d| d.chars().take(256).collect::<String>()),
                }),
            }
        }
        Event::Offline { device, reason } => NodeEvent {
            kind: "device.offline",
            camera: None,
            data: serde_json::json!({ "device": device, "at": at, "reason": format!("{reason:?}") }),
        },
        Event::Online { device }
        | Event::Registered {
            device, fresh: true, ..
        } => NodeEvent {
            kind: "device.online",
            camera: None,
            data: serde_json::json!({ "device": device, "at": at }),
        },
        _ => return None,
    })
}

/// Publishes [`node_event`]s of the SIP server's events until it stops.
pub fn spawn_event_bridge(sip: &SipServer, state: Arc<api::AppState>) -> tokio::task::JoinHandle<()> {
    sip.each_event(move |e| {
        let at = api::time::format(media::WallTime::now());
        if let Some(event) = node_event(e, at, |id| state.cameras.contains_key(id)) {
            state.events.publish(event);
        }
    })
}
