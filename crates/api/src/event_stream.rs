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
use crate::error::ApiError;
use crate::events::NodeEvent;
use crate::export_jobs::JobStatus;
use crate::request::{QueryMap, query};
use crate::state::AppState;
use crate::time;
use axum::http::HeaderMap;
use eventlog::Stored;

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
        // Whether each disk's tier meets its retention guarantee, as last seen.
        let mut guarantees: HashMap<(String, &'static str), bool> = HashMap::new();
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            ticks += 1;
            // The forecast moves slowly and reading it walks the index: every 30 ticks, the
            // first a few ticks after start (when the recording rate is known).
            if ticks % 30 == 5 {
                check_guarantees(&state, &mut guarantees).await;
            }
            let now = WallTime::now();
            state.rates.tick(&state, now);
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
                    let seconds = (now.micros_since(since) as f64 / 1e6 * 10.0).round() / 10.0;
                    data["gap_seconds"] = json!(seconds);
                    // The gap in the recording has ended: how long it was, for the grid
                    // system's completeness figures.
                    state.events.publish(NodeEvent {
                        kind: "recording.gap",
                        camera: Some(id.clone()),
                        data: json!({ "camera": id, "from": time::format(since), "to": time::format(now), "seconds": seconds }),
                    });
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

/// Publishes `guarantee.at_risk` when a disk's tier stops meeting its retention guarantee
/// (the forecast of how long its recordings can be kept falls below the tier's days), and
/// `guarantee.restored` when it meets it again.
async fn check_guarantees(state: &Arc<AppState>, seen: &mut HashMap<(String, &'static str), bool>) {
    let st = state.clone();
    let Ok(Ok(reports)) = tokio::task::spawn_blocking(move || {
        store::retention::disk_reports(&st.store, &st.holds, &st.retention_policy, WallTime::now())
    })
    .await
    else {
        return;
    };
    for d in &reports {
        for (tier, u) in [("standard", &d.standard), ("key", &d.key)] {
            let met = u.forecast_days + 1e-9 >= u.guarantee_days;
            let key = (d.path.display().to_string(), tier);
            let before = seen.insert(key.clone(), met);
            // At start only a risk is news; afterwards every change is.
            let kind = match (before, met) {
                (None | Some(true), false) => "guarantee.at_risk",
                (Some(false), true) => "guarantee.restored",
                _ => continue,
            };
            state.events.publish(NodeEvent {
                kind,
                camera: None,
                data: json!({
                    "disk": key.0,
                    "tier": tier,
                    "forecast_days": (u.forecast_days * 10.0).round() / 10.0,
                    "guarantee_days": u.guarantee_days,
                    "bytes_per_day": u.bytes_per_day.round(),
                    "at": time::format(WallTime::now()),
                }),
            });
        }
    }
}

/// May `caller` see `e`?
pub(crate) fn concerns(state: &AppState, caller: &Caller, e: &Stored) -> bool {
    let snap = state.auth.snapshot();
    match (e.kind.as_str(), &e.camera) {
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

/// Events read from the log at a time while catching up.
const REPLAY_BATCH: usize = 512;

/// Where one subscriber's stream is.
struct Follow {
    rx: broadcast::Receiver<Arc<Stored>>,
    state: Arc<AppState>,
    caller: Caller,
    closed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The last event number passed on or skipped.
    sent: u64,
    /// Read from the log, not yet passed on.
    pending: std::collections::VecDeque<Arc<Stored>>,
    /// Reading from the log until caught up with the channel.
    replaying: bool,
}

impl Follow {
    /// The next event for the caller, or `None` when the node stops.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                if let Some(ev) = self.pass(&e) {
                    return Some(ev);
                }
                continue;
            }
            if self.replaying {
                let (state, after) = (self.state.clone(), self.sent);
                let read =
                    tokio::task::spawn_blocking(move || state.events.log().read_after(after, REPLAY_BATCH)).await;
                match read {
                    Ok(Ok(batch)) if !batch.is_empty() => {
                        let first = batch[0].seq;
                        self.pending.extend(batch);
                        if first > self.sent + 1 {
                            // Older than the log keeps: say what cannot be replayed.
                            let gap = json!({ "after": self.sent, "next": first });
                            self.sent = first - 1;
                            return Some(SseEvent::default().event("gap").data(gap.to_string()));
                        }
                        continue;
                    }
                    Ok(Ok(_)) => self.replaying = false,
                    Ok(Err(e)) => {
                        tracing::warn!(%e, "event stream: replay from the log failed; following live events");
                        self.replaying = false;
                    }
                    Err(_) => return None,
                }
            }
            let got = tokio::select! {
                got = self.rx.recv() => got,
                () = &mut self.closed => return None,
            };
            match got {
                Ok(e) if e.seq <= self.sent => {}
                // Something between the replay and the channel, or missed: read the log.
                Ok(e) if e.seq > self.sent + 1 => {
                    self.replaying = true;
                    drop(e);
                }
                Ok(e) => {
                    if let Some(ev) = self.pass(&e) {
                        return Some(ev);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.replaying = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The SSE event for `e` if the caller may see it; `e` counts as sent either way.
    fn pass(&mut self, e: &Stored) -> Option<SseEvent> {
        if e.seq <= self.sent {
            return None;
        }
        self.sent = e.seq;
        concerns(&self.state, &self.caller, e).then(|| {
            SseEvent::default()
                .id(e.seq.to_string())
                .event(e.kind.as_str())
                .data(e.data.to_string())
        })
    }
}

/// `GET /api/v1/events[?after=SEQ]`: `text/event-stream`; each event's `id:` is its sequence
/// number, `event:` its kind and `data:` its JSON. A client that reconnects with
/// `Last-Event-ID` (browsers' `EventSource` does by itself) or `?after=` first gets every event
/// it may see that came after, from the log, across node restarts; `gap {after, next}` when the
/// log no longer holds some. A comment every 15 s keeps proxies from closing the stream.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    q: QueryMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let q = query(q)?;
    let given = headers
        .get("last-event-id")
        .map(|v| (v.to_str().unwrap_or("?").to_owned(), "Last-Event-ID"))
        .or_else(|| q.get("after").map(|a| (a.clone(), "after")));
    let after = match given {
        None => None,
        Some((v, name)) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "{name}: expected an event's sequence number (the id: of an event)"
            ))
        })?),
    };
    // Subscribe before reading where the log is, so nothing falls between.
    let rx = state.events.subscribe();
    let last = state.events.log().last_seq();
    let follow = Follow {
        rx,
        closed: Box::pin(state.events.closed()),
        state,
        caller,
        sent: after.map_or(last, |a| a.min(last)),
        pending: Default::default(),
        replaying: after.is_some_and(|a| a < last),
    };
    let s = futures::stream::unfold(follow, |mut f| async move {
        let ev = f.next().await?;
        Some((Ok(ev), f))
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
