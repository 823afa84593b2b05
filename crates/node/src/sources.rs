//! The node's pulls: how each stream is pulled, and which pulls run. The hub's demand decides
//! when (first viewer, last viewer plus idle, or always for recorded streams); [`Pulls`] starts
//! and stops the supervised sources it is told to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use ingest::SourceHealth;
use ingest::gb28181::{GbSourceConfig, spawn_gb};
use ingest::rtsp::{RtspSourceConfig, spawn_rtsp};
use ingest::supervisor::SourceHandle;
use media::StreamId;
use store::Recorder;
use tracing::{info, warn};

use crate::sink::StreamSink;

/// Where a stream comes from.
#[derive(Clone)]
pub enum Source {
    /// An RTSP URL.
    Rtsp(RtspSourceConfig),
    /// A GB/T 28181 channel, through the node's SIP server.
    Gb(GbSourceConfig),
    /// A lower node's camera, across its link (never recorded here).
    Remote(hierarchy::remote::RemoteSource),
    /// This main stream, transcoded to H.264 on this node (the `gstreamer` feature).
    Transcode(StreamId),
}

/// How to pull one stream: what the hub's control starts when the stream is wanted.
#[derive(Clone)]
pub struct Pull {
    /// Where from.
    pub source: Source,
    /// The stream's status, kept across the pulls its viewers start and stop.
    pub health: Arc<SourceHealth>,
    /// The recorder, for recorded streams.
    pub recorder: Option<Recorder>,
    /// The judge of whether the video is usable, for main streams (the rates' 完好).
    pub intact: Option<Arc<api::intact::Judge>>,
    /// In a cluster, the recorded stream's gate: written only while this member owns it.
    pub gate: Option<Arc<cluster::CameraGate>>,
}

/// In a cluster: the member that holds a camera's claim, to relay its streams from, and how
/// (`None`: pull the camera itself).
pub type Route = Arc<dyn Fn(&StreamId) -> Option<(String, Source)> + Send + Sync>;

/// A pull that runs: its handle, the source it was started from, and the member it relays
/// from (in a cluster).
struct Running {
    handle: SourceHandle,
    source: Source,
    via: Option<String>,
}

/// The running pulls, started and stopped by the hub: at most one per stream.
#[derive(Default)]
pub struct Pulls {
    /// How each stream is pulled; grows at run time (GB/T 28181 catalogs).
    specs: Mutex<HashMap<StreamId, Pull>>,
    sip: Option<Arc<gb28181::server::SipServer>>,
    running: Mutex<HashMap<StreamId, Running>>,
    /// In a cluster, where a camera another member records is relayed from.
    route: OnceLock<Route>,
    hub: OnceLock<Weak<hub::Hub>>,
    /// Budgets of lower platforms' registrations their channels' pulls count against.
    gb_links: Arc<crate::gb::links::GbLinks>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Maps only inserted into and removed from: a panicked holder leaves them whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pulls {
    /// Pulls that reach GB/T 28181 channels through `sip`, within `gb_links`' budgets.
    pub fn new(sip: Option<Arc<gb28181::server::SipServer>>, gb_links: Arc<crate::gb::links::GbLinks>) -> Pulls {
        Pulls {
            sip,
            gb_links,
            ..Pulls::default()
        }
    }

    /// The hub whose channels the pulls feed (set once, before any stream is added).
    pub fn attach(&self, hub: &Arc<hub::Hub>) {
        let _ = self.hub.set(Arc::downgrade(hub));
    }

    /// The hub's control: starts and stops pulls as the hub's demand says.
    pub fn control(self: &Arc<Self>) -> hub::Control {
        let pulls = Arc::downgrade(self);
        Arc::new(move |s: &StreamId, a| {
            if let Some(p) = pulls.upgrade() {
                p.act(s, a);
            }
        })
    }

    /// Declares how `stream` is pulled (before its channel is added to the hub).
    pub fn declare(&self, stream: StreamId, pull: Pull) {
        lock(&self.specs).insert(stream, pull);
    }

    /// Streams being pulled now.
    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }

    /// In a cluster: a camera's streams are relayed from the member that records it (one
    /// session to the camera, its owner's), set once at start.
    pub fn set_route(&self, route: Route) {
        let _ = self.route.set(route);
    }

    /// Restarts the pulls whose route changed (a camera's recording moved to another member,
    /// or to this one): their viewers stay, the frames come from the new source.
    pub fn reroute(&self) {
        let Some(route) = self.route.get() else { return };
        let ours: Vec<StreamId> = lock(&self.specs)
            .iter()
            .filter(|(_, p)| matches!(p.source, Source::Rtsp(_) | Source::Gb(_)))
            .map(|(s, _)| s.clone())
            .collect();
        let moved: Vec<(StreamId, Running)> = {
            let mut running = lock(&self.running);
            let changed: Vec<StreamId> = ours
                .into_iter()
                .filter(|s| running.get(s).is_some_and(|r| route(s).map(|(m, _)| m) != r.via))
                .collect();
            changed
                .into_iter()
                .filter_map(|s| running.remove(&s).map(|r| (s, r)))
                .collect()
        };
        for (stream, r) in moved {
            info!(stream = %stream, from = ?r.via, "the camera is recorded elsewhere now: pulling it from there");
            self.stopped(&stream, &r.source);
            tokio::spawn(r.handle.stop());
            self.act(&stream, hub::Action::Start);
        }
    }

    fn act(&self, stream: &StreamId, action: hub::Action) {
        let Some(mut pull) = lock(&self.specs).get(stream).cloned() else {
            return;
        };
        let mut running = lock(&self.running);
        match action {
            hub::Action::Start => {
                let Some(channel) = self.hub.get().and_then(Weak::upgrade).and_then(|h| h.channel(stream)) else {
                    return;
                };
                if running.contains_key(stream) {
                    return;
                }
                // A camera of this level that another member records is relayed from it.
                let mut via = None;
                if matches!(pull.source, Source::Rtsp(_) | Source::Gb(_))
                    && let Some((member, source)) = self.route.get().and_then(|r| r(stream))
                {
                    via = Some(member);
                    pull.source = source;
                }
                let sink = Arc::new(
                    StreamSink::new(channel, pull.recorder.clone(), pull.intact.clone()).gated(pull.gate.clone()),
                );
                info!(stream = %stream, "starting the pull");
                let handle = match (&pull.source, &self.sip) {
                    (Source::Rtsp(cfg), _) => spawn_rtsp(cfg.clone(), sink, pull.health.clone()),
                    (Source::Gb(cfg), Some(sip)) => {
                        if let Err(refusal) = self.gb_links.admit(&cfg.device, stream) {
                            warn!(stream = %stream, device = %cfg.device, "not pulled: {refusal}");
                            pull.health.set_error(refusal.to_string());
                            return;
                        }
                        spawn_gb(cfg.clone(), sip.clone(), sink, pull.health.clone())
                    }
                    (Source::Gb(_), None) => return,
                    (Source::Remote(r), _) => r.spawn(sink, pull.health.clone()),
                    (Source::Transcode(input), _) => {
                        let Some(hub) = self.hub.get().cloned() else { return };
                        let session = transcode::session::TranscodeSession::new(
                            hub,
                            input.clone(),
                            stream.clone(),
                            transcode::Target::default(),
                            ingest::supervisor::Retry::default(),
                        );
                        ingest::supervisor::spawn(session, sink, pull.health.clone())
                    }
                };
                running.insert(
                    stream.clone(),
                    Running {
                        handle,
                        source: pull.source.clone(),
                        via,
                    },
                );
            }
            hub::Action::Stop => {
                if let Some(r) = running.remove(stream) {
                    info!(stream = %stream, "no viewers left: stopping the pull");
                    self.stopped(stream, &r.source);
                    tokio::spawn(r.handle.stop());
                }
            }
        }
    }

    /// Forgets `stream` (its camera is gone), stopping its pull if one runs.
    pub fn forget(&self, stream: &StreamId) {
        lock(&self.specs).remove(stream);
        if let Some(r) = lock(&self.running).remove(stream) {
            self.stopped(stream, &r.source);
            tokio::spawn(r.handle.stop());
        }
    }

    /// A pull of `stream` from `source` stopped: what it counted against is freed.
    fn stopped(&self, stream: &StreamId, source: &Source) {
        match source {
            Source::Remote(r) => r.stopped(),
            Source::Gb(cfg) => self.gb_links.release(&cfg.device, stream),
            Source::Rtsp(_) | Source::Transcode(_) => {}
        }
    }

    /// Stops every pull and waits for them.
    pub async fn stop_all(&self) {
        let handles: Vec<SourceHandle> = lock(&self.running).drain().map(|(_, r)| r.handle).collect();
        for h in handles {
            h.stop().await;
        }
    }
}
