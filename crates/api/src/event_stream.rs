//! `GET /api/v1/events`: server-sent events for dispatch rooms and walls: cameras going online
//! and offline (with the recording gap when a recorded camera comes back), disk alarms, and
//! exports finishing. Each caller gets only what concerns cameras they may see (exports: that
//! they may export; disk alarms: administrators).
//!
//! A watcher samples the node once a second and publishes the differences as [`NodeEvent`]s.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use auth::Action;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use media::WallTime;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::access::Caller;
use crate::events::NodeEvent;
use crate::export_jobs::JobStatus;
use crate::state::AppState;
use crate::time;

/// Samples the node every `every` and publishes what changed, until the runtime ends.
pub fn spawn_watcher(state: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut status: HashMap<String, &'static str> = state
            .cameras
            .snapshot()
            .iter()
            .map(|(id, c)| (id.clone(), c.status()))
            .collect();
        // When each camera that was online went offline: its recording gap's start.
        let mut dark_since: HashMap<String, WallTime> = HashMap::new();
        let mut alarms_seen = state.retention.as_ref().map_or(0, |r| r.alarms().len());
        let mut finished: HashMap<String, JobStatus> = HashMap::new();
        for j in state.exports.jobs() {
            finished.insert(j.id.clone(), j.status);
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = WallTime::now();
            let cameras = state.cameras.snapshot();
            status.retain(|id, _| {
                let kept = cameras.contains_key(id);
                if !kept {
                    // A lower node stopped sharing it (an upper node lists again on this).
                    state.events.publish(NodeEvent {
                        kind: "camera.removed",
                        camera: None,
                        data: json!({ "camera": id, "at": time::format(now) }),
                    });
                }
                kept
            });
            for (id, c) in cameras.iter() {
                let s = c.status();
                let Some(before) = status.get_mut(id) else {
                    // Added at run time (a GB/T 28181 catalog, a lower node's listing): watched
                    // from now on.
                    status.insert(id.clone(), s);
                    state.events.publish(NodeEvent {
                        kind: "camera.added",
                        camera: Some(id.clone()),
                        data: json!({ "camera": id, "status": s, "at": time::format(now) }),
                    });
                    continue;
                };
                if s == *before {
                    continue;
                }
                let kind = match (s, *before) {
                    ("online", _) => "camera.online",
                    ("offline", "online" | "connecting") => "camera.offline",
                    _ => {
                        *before = s;
                        continue;
                    }
                };
                let mut data =
                    json!({ "camera": id, "status": s, "at": time::format(now), "recording": c.info.record });
                if let Some(why) = c.status_reason() {
                    data["status_reason"] = json!(why);
                }
                if kind == "camera.offline" {
                    dark_since.insert(id.clone(), now);
                } else if let Some(since) = dark_since.remove(id)
                    && c.info.record
                {
                    data["gap_seconds"] = json!((now.micros_since(since) as f64 / 1e6 * 10.0).round() / 10.0);
                }
                state.events.publish(NodeEvent {
                    kind,
                    camera: Some(id.clone()),
                    data,
                });
                *before = s;
            }
            if let Some(r) = &state.retention {
                let alarms = r.alarms();
                // The list keeps the last 100; new ones are at the end.
                for a in alarms.iter().skip(alarms_seen.min(alarms.len())) {
                    state.events.publish(NodeEvent {
                        kind: "disk.alarm",
                        camera: None,
                        data: json!({ "at": time::format(a.at), "message": a.alarm.to_string() }),
                    });
                }
                alarms_seen = alarms.len();
            }
            for j in state.exports.jobs() {
                let was = finished.insert(j.id.clone(), j.status);
                let ended = matches!(j.status, JobStatus::Done | JobStatus::Failed);
                if ended && was != Some(j.status) {
                    state.events.publish(NodeEvent {
                        kind: if j.status == JobStatus::Done { "export.done" } else { "export.failed" },
                        camera: Some(j.camera.clone()),
                        data: json!({ "export": j.id, "camera": j.camera, "error": j.error, "download": format!("/api/v1/exports/{}/download", j.id) }),
                    });
                }
            }
        }
    })
}

/// May `caller` see `e`?
fn concerns(state: &AppState, caller: &Caller, e: &NodeEvent) -> bool {
    let snap = state.auth.snapshot();
    match (e.kind, &e.camera) {
        // Only a sequence number: every caller may know a new head is there to fetch.
        ("audit.head", _) => true,
        // Only a wall's name and version: a screen that may not see its cameras gets 404s
        // for them, not their ids.
        ("wall.changed", _) => true,
        // An incident: to whoever may see one of its cameras.
        ("incident.opened", _) => e.data["cameras"].as_array().is_some_and(|cs| {
            cs.iter()
                .filter_map(Value::as_str)
                .any(|c| !snap.policy.camera_actions(&caller.who, c).is_empty())
        }),
        ("export.done" | "export.failed", Some(c)) => {
            snap.policy.camera_actions(&caller.who, c).contains(Action::Export)
        }
        (_, Some(c)) => !snap.policy.camera_actions(&caller.who, c).is_empty(),
        (_, None) => snap.policy.node_actions(&caller.who).contains(Action::Admin),
    }
}

/// `GET /api/v1/events`: `text/event-stream`; each event's `event:` is its kind and `data:` its
/// JSON. A comment every 15 s keeps proxies from closing the stream.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.events.subscribe();
    let closed = Box::pin(state.events.closed());
    let s = futures::stream::unfold(
        (rx, state, caller, closed),
        |(mut rx, state, caller, mut closed)| async move {
            loop {
                let got = tokio::select! {
                    got = rx.recv() => got,
                    () = &mut closed => return None,
                };
                match got {
                    Ok(e) => {
                        if concerns(&state, &caller, &e) {
                            let ev = SseEvent::default().event(e.kind).data(e.data.to_string());
                            return Some((Ok(ev), (rx, state, caller, closed)));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let ev = SseEvent::default()
                            .event("lagged")
                            .data(json!({ "missed": n }).to_string());
                        return Some((Ok(ev), (rx, state, caller, closed)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
