//! Media sessions an upper invited: the INVITE checked (shared? fits the link?), the socket
//! bound and answered, the media started on the ACK (one hub viewer for live; the recording
//! read from the store, or from the device for a channel we do not record), and everything
//! released when it ends, whichever side ends it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gb28181::invitation::{Invitation, answer_sdp};
use gb28181::sdp::SessionKind;
use gb28181::upper::DialogId;
use gbout::{Control, Ended, Prepared, Stats};
use hierarchy::budget::PullKey;
use media::{Frame, StreamId, StreamKind, WallTime};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Cascade;

/// How long the upper may take to open its TCP connection to us (or we to it) after the ACK.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// After MediaStatus 121, how long we wait for the upper's BYE before sending ours.
const BYE_AFTER_END: Duration = Duration::from_secs(5);

type Open = Box<dyn FnMut(f64) -> mpsc::Receiver<Frame> + Send>;

enum Source {
    Live(hub::Viewer),
    Recorded { open: Open, speed: f64 },
}

struct Pending {
    prepared: Prepared,
    source: Source,
    ssrc: u32,
    budget: PullKey,
    camera: String,
    /// Writes `live.stop` when dropped (live sessions).
    viewing: Option<api::audit::Viewing>,
}

enum Slot {
    Answered(Box<Pending>),
    Running {
        stop: CancellationToken,
        controls: mpsc::Sender<Control>,
    },
}

/// The sessions of every upper, by upper and dialog.
#[derive(Default)]
pub(super) struct Sessions {
    slots: Mutex<HashMap<(String, DialogId), Slot>>,
    next_key: AtomicU64,
    /// What every session sent, for metrics.
    pub(super) stats: Arc<Stats>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, DialogId), Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Playback control from the upper, for a running session.
    pub(super) fn control(&self, upper: &str, dialog: DialogId, body: &str) {
        if let Some(Slot::Running { controls, .. }) = self.lock().get(&(upper.to_owned(), dialog)) {
            for c in gbout::controls_of(body) {
                let _ = controls.try_send(c);
            }
        }
    }
}

fn kbps_of(state: &api::AppState, stream: &StreamId) -> u64 {
    state
        .hub
        .as_ref()
        .and_then(|h| h.channel(stream))
        .and_then(|c| c.kbps())
        .unwrap_or(match stream.kind() {
            StreamKind::Main | StreamKind::H264 => hierarchy::link::DEFAULT_MAIN_KBPS,
            StreamKind::Sub => hierarchy::link::DEFAULT_SUB_KBPS,
        })
}

impl Cascade {
    fn release(&self, upper: &str, key: &PullKey) {
        if let Some(u) = self.uppers.get(upper) {
            u.budget.lock().unwrap_or_else(|p| p.into_inner()).release(key);
        }
    }

    /// Admits a session carrying `what` at `kbps` on `upper`'s link; the key to release, or why
    /// not.
    fn admit(&self, upper: &str, what: String, kbps: u64) -> Result<PullKey, String> {
        let u = self.uppers.get(upper).ok_or("unknown upper")?;
        let key = PullKey::Session(self.sessions.next_key.fetch_add(1, Ordering::Relaxed), what);
        u.budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit_transfer(key.clone(), kbps)
            .map(|()| key)
            .map_err(|e| e.to_string())
    }

    /// A session ended by the upper (BYE, CANCEL, no ACK, lost registration).
    pub(super) fn end_session(&self, upper: &str, dialog: DialogId) {
        match self.sessions.lock().remove(&(upper.to_owned(), dialog)) {
            Some(Slot::Answered(p)) => self.release(upper, &p.budget),
            Some(Slot::Running { stop, .. }) => stop.cancel(),
            None => {}
        }
    }

    pub(super) async fn invite(
        &self,
        upper: &str,
        dialog: DialogId,
        channel: &str,
        inv: Invitation,
        user: Option<String>,
    ) {
        match self.prepare(upper, channel, &inv, user).await {
            Ok((pending, ssrc_text)) => {
                let sdp = answer_sdp(channel, self.media_ip, pending.prepared.port(), &inv, &ssrc_text);
                info!(upper, dialog, camera = %pending.camera, media = inv.media.as_str(), "GB28181 cascade: INVITE accepted");
                self.sessions
                    .lock()
                    .insert((upper.to_owned(), dialog), Slot::Answered(Box::new(pending)));
                self.sip.upper_accept(upper, dialog, sdp).await;
            }
            Err((code, reason)) => {
                info!(
                    upper,
                    dialog, channel, code, "GB28181 cascade: INVITE refused: {reason}"
                );
                self.sip.upper_reject(upper, dialog, code, &reason).await;
            }
        }
    }

    async fn prepare(
        &self,
        upper: &str,
        channel: &str,
        inv: &Invitation,
        user: Option<String>,
    ) -> Result<(Pending, String), (u16, String)> {
        let Some(camera) = self.camera_of(upper, channel) else {
            self.audit_upper(
                upper,
                "live.start",
                "refused",
                None,
                user,
                json!({ "channel": channel, "why": "not shared" }),
            )
            .await;
            return Err((404, "Not Found (channel not shared with you)".into()));
        };
        let Some(entry) = self.state.cameras.get(&camera) else {
            return Err((404, "Not Found".into()));
        };
        let history = !matches!(inv.kind, SessionKind::Play);
        let ssrc_text = inv
            .ssrc
            .clone()
            .unwrap_or_else(|| self.ssrc.lock().unwrap_or_else(|p| p.into_inner()).allocate(history));
        let ssrc = gb28181::sdp::parse_ssrc(&ssrc_text).unwrap_or(0);
        let (source, budget, action) = match inv.kind {
            SessionKind::Play => {
                let want = if inv.sub && entry.info.has_sub {
                    StreamKind::Sub
                } else {
                    StreamKind::Main
                };
                let mut kind = want;
                let what = |k: StreamKind| format!("live {camera}/{}", k.as_str());
                let budget = match self.admit(
                    upper,
                    what(want),
                    kbps_of(&self.state, &StreamId::new(camera.as_str(), want)),
                ) {
                    Ok(k) => k,
                    // The sub-stream when the main one does not fit the link.
                    Err(e) if want == StreamKind::Main && entry.info.has_sub => {
                        kind = StreamKind::Sub;
                        self.admit(
                            upper,
                            what(kind),
                            kbps_of(&self.state, &StreamId::new(camera.as_str(), kind)),
                        )
                        .map_err(|_| (503, format!("Service Unavailable ({e})")))?
                    }
                    Err(e) => return Err((503, format!("Service Unavailable ({e})"))),
                };
                let stream = StreamId::new(camera.as_str(), kind);
                let hub = self
                    .state
                    .hub
                    .as_ref()
                    .ok_or((503, "Service Unavailable (no live)".into()))?;
                let viewer = match hub.watch(&stream, hub::Output::Gb28181) {
                    Ok(v) => v,
                    Err(e) => {
                        self.release(upper, &budget);
                        return Err((503, format!("Service Unavailable ({e})")));
                    }
                };
                (Source::Live(viewer), budget, "live.start")
            }
            SessionKind::Playback { start, end } | SessionKind::Download { start, end, .. } => {
                let speed = match inv.kind {
                    SessionKind::Download { speed, .. } => f64::from(speed),
                    _ => 1.0,
                };
                let stream = StreamId::main(camera.as_str());
                let kbps = (kbps_of(&self.state, &stream) as f64 * speed) as u64;
                let budget = self
                    .admit(upper, format!("playback {camera}"), kbps)
                    .map_err(|e| (503, format!("Service Unavailable ({e})")))?;
                let (from, to) = (
                    WallTime::from_micros(start * 1_000_000),
                    WallTime::from_micros(end * 1_000_000),
                );
                match self.recorded_source(&camera, from, to, speed).await {
                    Some(open) => (
                        Source::Recorded { open, speed },
                        budget,
                        if speed > 1.0 { "download" } else { "playback" },
                    ),
                    None => {
                        self.release(upper, &budget);
                        self.audit_upper(
                            upper,
                            "playback",
                            "failed",
                            Some(&camera),
                            user,
                            json!({ "why": "nothing recorded" }),
                        )
                        .await;
                        return Err((404, "Not Found (nothing recorded in this range)".into()));
                    }
                }
            }
        };
        let prepared = match Prepared::bind(inv.media, self.media_ip).await {
            Ok(p) => p,
            Err(e) => {
                self.release(upper, &budget);
                warn!(upper, "GB28181 cascade: {e}");
                return Err((500, "Server Internal Error (media socket)".into()));
            }
        };
        let viewing = match (&source, inv.kind) {
            (Source::Live(v), _) => {
                let stream = v.channel().stream().clone();
                api::audit::start_viewing(
                    &self.state,
                    &format!("gb28181:{upper}"),
                    self.uppers.get(upper).map(|u| u.cfg.address.ip()),
                    user.clone(),
                    &stream,
                    "gb28181",
                )
                .await
                .ok()
            }
            (
                Source::Recorded { .. },
                SessionKind::Playback { start, end } | SessionKind::Download { start, end, .. },
            ) => {
                self.audit_upper(
                    upper,
                    action,
                    "ok",
                    Some(&camera),
                    user,
                    json!({ "start": start, "end": end }),
                )
                .await;
                None
            }
            _ => None,
        };
        Ok((
            Pending {
                prepared,
                source,
                ssrc,
                budget,
                camera,
                viewing,
            },
            ssrc_text,
        ))
    }

    /// Where frames of `camera` between `from` and `to` come from: our recordings, else the
    /// device's (a GB/T 28181 channel we do not record); `None` when neither has any.
    async fn recorded_source(&self, camera: &str, from: WallTime, to: WallTime, speed: f64) -> Option<Open> {
        let stream = StreamId::main(camera);
        let state = self.state.clone();
        let plan_of = move |state: &api::AppState, start: WallTime| {
            store::playback::plan(
                &state.store,
                &state.samples,
                &store::playback::PlaybackRequest {
                    stream: StreamId::main(stream.camera()),
                    start,
                    end: to,
                    speed: 1,
                },
            )
        };
        let probe = {
            let (state, plan_of) = (state.clone(), plan_of.clone());
            tokio::task::spawn_blocking(move || plan_of(&state, from).is_ok())
                .await
                .unwrap_or(false)
        };
        if probe {
            let camera = camera.to_owned();
            return Some(Box::new(move |offset: f64| {
                let (tx, rx) = mpsc::channel(32);
                let (state, plan_of, camera) = (state.clone(), plan_of.clone(), camera.clone());
                std::thread::spawn(move || {
                    let start = from.add_micros((offset * 1e6) as i64);
                    let Ok(plan) = plan_of(&state, start) else { return };
                    for f in store::playback::PlanFrames::new(plan, StreamId::main(camera.as_str())) {
                        match f {
                            Ok(f) => {
                                if tx.blocking_send(f).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                warn!(camera = %camera, "GB28181 cascade: reading a recording: {e}");
                                return;
                            }
                        }
                    }
                });
                rx
            }));
        }
        let devices = self.devices.clone()?;
        use api::device_access::{DeviceAccess, DevicePace};
        let camera = camera.to_owned();
        Some(Box::new(move |offset: f64| {
            let (tx, rx) = mpsc::channel(32);
            let (devices, camera) = (devices.clone(), camera.clone());
            tokio::spawn(async move {
                let start = from.add_micros((offset * 1e6) as i64);
                let pace = if speed > 1.0 {
                    DevicePace::Download { speed: speed as u32 }
                } else {
                    DevicePace::Playback { scale: 1.0 }
                };
                match devices.playback(&camera, start, to, pace).await {
                    Ok(mut p) => {
                        while let Some(f) = p.frames.recv().await {
                            if tx.send(f).await.is_err() {
                                break;
                            }
                        }
                        drop(p.guard);
                    }
                    Err(e) => warn!(camera = %camera, "GB28181 cascade: the device's recording: {e}"),
                }
            });
            rx
        }))
    }

    /// The upper ACKed: the media starts.
    pub(super) fn acked(self: Arc<Self>, upper: &str, dialog: DialogId) {
        let key = (upper.to_owned(), dialog);
        let stop = CancellationToken::new();
        let (ctx, crx) = mpsc::channel(16);
        let pending = {
            let mut slots = self.sessions.lock();
            match slots.remove(&key) {
                Some(Slot::Answered(p)) => {
                    slots.insert(
                        key.clone(),
                        Slot::Running {
                            stop: stop.clone(),
                            controls: ctx,
                        },
                    );
                    p
                }
                Some(other) => {
                    slots.insert(key, other);
                    return;
                }
                None => return,
            }
        };
        let upper = upper.to_owned();
        tokio::spawn(async move {
            let Pending {
                prepared,
                source,
                ssrc,
                budget,
                camera,
                viewing,
            } = *pending;
            let stats = self.sessions.stats.clone();
            let ended = match prepared.open(CONNECT_WAIT).await {
                Err(e) => Ended::Failed(e),
                Ok(sink) => match source {
                    Source::Live(viewer) => gbout::live(sink, viewer, ssrc, stop.clone(), stats).await,
                    Source::Recorded { open, speed } => {
                        gbout::recorded(sink, open, speed, crx, ssrc, stop.clone(), stats).await
                    }
                },
            };
            drop(viewing);
            self.release(&upper, &budget);
            match ended {
                Ended::Stopped => {}
                Ended::Complete => {
                    info!(upper = %upper, dialog, camera = %camera, "GB28181 cascade: recording sent to its end");
                    self.sip.upper_media_status(&upper, dialog).await;
                    tokio::time::sleep(BYE_AFTER_END).await;
                    if self.sessions.lock().contains_key(&key) {
                        self.sip.upper_hangup(&upper, dialog).await;
                    }
                }
                Ended::Upstream => {
                    info!(upper = %upper, dialog, camera = %camera, "GB28181 cascade: the camera's stream ended; hanging up");
                    self.sip.upper_hangup(&upper, dialog).await;
                }
                Ended::Failed(e) => {
                    warn!(upper = %upper, dialog, camera = %camera, "GB28181 cascade: {e}; hanging up");
                    self.sip.upper_hangup(&upper, dialog).await;
                }
            }
            self.sessions.lock().remove(&key);
        });
    }
}
