//! Wiring a node together: store, recorder, camera sources and the API.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use api::{AppState, CameraEntry, CameraInfo};
use ingest::FrameSink;
use ingest::SourceHealth;
use ingest::gb28181::{GbSourceConfig, spawn_gb};
use ingest::rtsp::{RtspSourceConfig, RtspTransport};
use ingest::supervisor::{SourceHandle, spawn_rtsp_with_health};
use media::{Frame, StreamId, StreamKind};
use store::{Recorder, RecorderConfig, Store};
use tracing::{info, warn};

use crate::config::{Config, Gb28181Config, MinFree, Secret, Tier, Transport};

/// Delivers a stream's frames to the recorder (if recorded) and to its live channel. When the
/// recorder's queue is full a frame is lost, and the next one is marked as a discontinuity so
/// that the segment ends cleanly there. Recording does not go through the channel: a viewer
/// may skip frames when it lags, the recorder must not.
struct StreamSink {
    recorder: Option<Recorder>,
    lost: AtomicBool,
    channel: Arc<hub::Channel>,
}

impl FrameSink for StreamSink {
    fn frame(&self, frame: Frame) {
        self.channel.publish(&frame);
        if let Some(recorder) = &self.recorder {
            let mut frame = frame;
            if self.lost.swap(false, Ordering::Relaxed) {
                frame.discontinuity = true;
            }
            if recorder.try_push(frame).is_err() {
                self.lost.store(true, Ordering::Relaxed);
            }
        }
    }

    fn end_of_stream(&self, stream: &StreamId) {
        self.channel.upstream_ended();
        if let Some(recorder) = &self.recorder {
            recorder.end_stream(stream);
        }
    }
}

/// RTSP re-serve access: a live media token for the camera, or a user's name and password
/// (throttled like logins), and the user's `live` grant on the camera; each PLAY audited.
struct RtspAuth(Arc<AppState>);

impl rtspd::Authorize for RtspAuth {
    fn authorize(
        &self,
        stream: &StreamId,
        token: Option<&str>,
        basic: Option<(&str, &str)>,
        peer: std::net::SocketAddr,
    ) -> Option<String> {
        let auth = &self.0.auth;
        let who = match (token, basic) {
            (Some(t), _) => auth.verify_media(t, stream.camera(), auth::MediaAction::Live).ok()?,
            (None, Some((u, p))) => match auth.check_password_throttled(u, p, Some(peer.ip())) {
                Ok(who) => who,
                Err(e) => {
                    self.0.audit.record(auth::audit::Event {
                        actor: u.chars().take(128).collect(),
                        ip: Some(peer.ip().to_string()),
                        action: "login".into(),
                        outcome: if matches!(e, auth::AuthError::Throttled { .. }) {
                            "throttled"
                        } else {
                            "failed"
                        }
                        .into(),
                        camera: Some(stream.camera().to_owned()),
                        target: None,
                        reason: None,
                        detail: serde_json::json!({ "via": "rtsp" }),
                    });
                    return None;
                }
            },
            (None, None) => return None,
        };
        (auth.decide(&who, auth::Action::Live, Some(stream.camera())) == auth::Decision::Allow).then(|| who.actor())
    }

    fn playing(
        &self,
        stream: &StreamId,
        who: &str,
        peer: std::net::SocketAddr,
    ) -> rtspd::BoxFuture<Option<Box<dyn Send>>> {
        let event = auth::audit::Event {
            actor: who.to_owned(),
            ip: Some(peer.ip().to_string()),
            action: "live.start".into(),
            outcome: "ok".into(),
            camera: Some(stream.camera().to_owned()),
            target: None,
            reason: None,
            detail: serde_json::json!({ "stream": stream.kind().as_str(), "output": "rtsp" }),
        };
        let audit = self.0.audit.clone();
        Box::pin(async move {
            match api::Viewing::start(audit, event).await {
                Ok(v) => Some(Box::new(v) as Box<dyn Send>),
                Err(e) => {
                    warn!("audit log: {e}; refusing the RTSP viewing");
                    None
                }
            }
        })
    }
}

/// Where a stream comes from.
#[derive(Clone)]
enum Source {
    /// An RTSP URL.
    Rtsp(RtspSourceConfig),
    /// A GB/T 28181 channel, through the node's SIP server.
    Gb(GbSourceConfig),
}

/// How to pull one stream: what the hub's control starts when the stream is wanted.
#[derive(Clone)]
struct Pull {
    source: Source,
    health: Arc<SourceHealth>,
    recorder: Option<Recorder>,
}

/// The running pulls, started and stopped by the hub: at most one per stream.
#[derive(Default)]
struct Pulls {
    /// Added to at run time when a GB/T 28181 catalog brings new channels.
    specs: Mutex<HashMap<StreamId, Pull>>,
    sip: Option<Arc<gb28181::server::SipServer>>,
    running: Mutex<HashMap<StreamId, SourceHandle>>,
    hub: std::sync::OnceLock<std::sync::Weak<hub::Hub>>,
}

impl Pulls {
    fn control(self: &Arc<Self>, stream: &StreamId, action: hub::Action) {
        let Some(pull) = self
            .specs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .cloned()
        else {
            return;
        };
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            hub::Action::Start => {
                let Some(channel) = self.hub.get().and_then(|h| h.upgrade()).and_then(|h| h.channel(stream)) else {
                    return;
                };
                if running.contains_key(stream) {
                    return;
                }
                let sink = Arc::new(StreamSink {
                    recorder: pull.recorder.clone(),
                    lost: AtomicBool::new(false),
                    channel,
                });
                info!(stream = %stream, "starting the pull");
                let handle = match (&pull.source, &self.sip) {
                    (Source::Rtsp(cfg), _) => spawn_rtsp_with_health(cfg.clone(), sink, pull.health.clone()),
                    (Source::Gb(cfg), Some(sip)) => spawn_gb(cfg.clone(), sip.clone(), sink, pull.health.clone()),
                    (Source::Gb(_), None) => return,
                };
                running.insert(stream.clone(), handle);
            }
            hub::Action::Stop => {
                if let Some(h) = running.remove(stream) {
                    info!(stream = %stream, "no viewers left: stopping the pull");
                    tokio::spawn(h.stop());
                }
            }
        }
    }

    async fn stop_all(&self) {
        let handles: Vec<SourceHandle> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in handles {
            h.stop().await;
        }
    }
}

/// How to pull a GB/T 28181 channel.
fn gb_source(
    stream: StreamId,
    device: &str,
    channel: &str,
    g: &Gb28181Config,
    i: &crate::config::IngestConfig,
) -> GbSourceConfig {
    GbSourceConfig {
        stream,
        device: device.to_owned(),
        channel: channel.to_owned(),
        own_id: g.id.clone(),
        domain: g.domain.clone(),
        transport: g.media_transport,
        kind: gb28181::sdp::SessionKind::Play,
        scale: None,
        media_ip: crate::gb::media_ip(g),
        // A device needs longer than an RTSP camera to start: INVITE, TCP connect, first GOP.
        watchdog: i.watchdog.max(Duration::from_secs(5)),
        invite_timeout: g.request_timeout,
        reconnect_min: i.reconnect_min,
        reconnect_max: i.reconnect_max.max(Duration::from_secs(2)),
        max_frame_bytes: i.max_frame_bytes,
    }
}

/// What a node needs to take a GB/T 28181 catalog channel in as a camera.
struct Adoption {
    devices: Option<Arc<crate::gb::GbDevices>>,
    pulls: Arc<Pulls>,
    hub: Arc<hub::Hub>,
    state: Arc<AppState>,
    recorder: Recorder,
    gb: Gb28181Config,
    ingest: crate::config::IngestConfig,
    idle: Duration,
}

impl Adoption {
    /// Makes `item` of `device` a camera unless one with its id exists: in the API, in the
    /// permission catalog (org `<gb28181.org>/<device>`), in the hub, recorded if configured.
    fn adopt(&self, device: &str, item: &gb28181::manscdp::CatalogItem) {
        let id = item.device_id.as_str();
        let valid = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid || self.state.cameras.contains_key(id) {
            return;
        }
        let record = self.gb.record_discovered;
        let stream = StreamId::new(id, StreamKind::Main);
        let health = Arc::new(SourceHealth::default());
        if !record {
            health.set_phase(ingest::SourcePhase::Stopped);
        }
        let name: String = item.name.chars().take(128).collect();
        let entry = CameraEntry::new(
            CameraInfo {
                id: id.to_owned(),
                name: if name.trim().is_empty() { id.to_owned() } else { name },
                tier: "standard".into(),
                org: format!("{}/{device}", self.gb.org),
                location: item.location.map(|(lon, lat)| (lat, lon)),
                record,
                has_sub: false,
            },
            Some(health.clone()),
        );
        if !self.state.cameras.insert(entry) {
            return;
        }
        if let Some(d) = &self.devices {
            d.add(id, device, id);
        }
        self.pulls.specs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            stream.clone(),
            Pull {
                source: Source::Gb(gb_source(stream.clone(), device, id, &self.gb, &self.ingest)),
                health,
                recorder: record.then(|| self.recorder.clone()),
            },
        );
        self.state.auth.set_cameras(
            self.state
                .cameras
                .snapshot()
                .values()
                .map(|c| auth::CameraRef {
                    id: c.info.id.clone(),
                    org: c.info.org.clone(),
                })
                .collect(),
        );
        self.hub.add_stream(
            stream,
            hub::StreamPolicy {
                pinned: record,
                idle: self.idle,
            },
        );
        info!(camera = %id, device = %device, recording = record, "GB28181 channel added as a camera");
    }
}

/// The audit entry for a change another process (`sharpeye user add`, an edit) made to the
/// directory file: what was added and removed.
fn reload_event(old: &auth::Directory, new: &auth::Directory) -> auth::audit::Event {
    fn diff<'a>(old: impl Iterator<Item = &'a str>, new: impl Iterator<Item = &'a str>) -> serde_json::Value {
        let old: std::collections::BTreeSet<&str> = old.collect();
        let new: std::collections::BTreeSet<&str> = new.collect();
        serde_json::json!({
            "added": new.difference(&old).collect::<Vec<_>>(),
            "removed": old.difference(&new).collect::<Vec<_>>(),
        })
    }
    auth::audit::Event {
        actor: "-".into(),
        ip: None,
        action: "directory.reload".into(),
        outcome: "ok".into(),
        camera: None,
        target: None,
        reason: Some("the directory file was changed by another process".into()),
        detail: serde_json::json!({
            "users": diff(old.users.iter().map(|u| u.name.as_str()), new.users.iter().map(|u| u.name.as_str())),
            "departments": diff(old.departments.iter().map(|d| d.id.as_str()), new.departments.iter().map(|d| d.id.as_str())),
            "groups": diff(old.groups.iter().map(|g| g.id.as_str()), new.groups.iter().map(|g| g.id.as_str())),
            "grants": diff(old.grants.iter().map(|g| g.id.as_str()), new.grants.iter().map(|g| g.id.as_str())),
            "tokens": diff(old.tokens.iter().map(|t| t.id.as_str()), new.tokens.iter().map(|t| t.id.as_str())),
        }),
    }
}

/// The config's users, departments, groups and grants, with plain passwords hashed.
fn directory(config: &Config) -> auth::Directory {
    config.directory(|u| match &u.secret {
        Secret::Plain(p) => auth::hash_password(p),
        Secret::Hash(h) => h.clone(),
    })
}

/// Runs a node with `config` until `shutdown` resolves, then stops cleanly: sources first,
/// then the recorder (which closes and syncs every segment).
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.listen): is another process using it?",
                config.server.listen
            )
        })?;

    let dirs = config.server.data_dirs.clone();
    let (store, reports) = tokio::task::spawn_blocking(move || Store::open(&dirs))
        .await?
        .context("opening the data directories (server.data_dirs)")?;
    for (dir, r) in config.server.data_dirs.iter().zip(&reports) {
        if *r != store::RecoveryReport::default() {
            warn!(dir = %dir.display(), ?r, "recovered from an unclean stop");
        }
    }
    let store = Arc::new(store);
    let recorder = store
        .start_recorder(RecorderConfig {
            segment: config.recording.segment,
            flush_interval: config.recording.flush,
            ..RecorderConfig::default()
        })
        .context("starting the recorder")?;

    let holds = Arc::new(store::holds::Holds::open(&config.server.data_dirs).context("loading evidence holds")?);
    let policy = store::retention::RetentionPolicy {
        standard: config.retention.standard,
        key: config.retention.key,
        key_cameras: config
            .cameras
            .iter()
            .filter(|c| c.tier == Tier::Key)
            .map(|c| c.id.clone())
            .collect(),
        min_free: match config.retention.min_free {
            MinFree::Bytes(b) => store::retention::FreeFloor::Bytes(b),
            MinFree::Percent(p) => store::retention::FreeFloor::Percent(p),
        },
        batch: 5000,
    };
    let retention = Arc::new(store::retention::Retention::spawn(
        store.clone(),
        holds.clone(),
        policy.clone(),
        Arc::new(store::retention::SystemClock),
        config.retention.interval,
    ));

    let key_path = config.server.data_dirs[0].join("media.key");
    let media = auth::MediaSigner::load_or_create(&key_path)
        .with_context(|| format!("loading the media-token key {}", key_path.display()))?;
    let audit_dir = config.server.data_dirs[0].join("audit");
    let audit = Arc::new(
        auth::audit::AuditLog::open(&audit_dir, auth::audit::AuditConfig::default())
            .with_context(|| format!("opening the audit log {}", audit_dir.display()))?,
    );

    let sip = match &config.gb28181 {
        Some(g) => Some(Arc::new(crate::gb::start_sip(g).await?)),
        None => None,
    };
    let mut pulls = Pulls {
        sip: sip.clone(),
        ..Pulls::default()
    };
    let gb_devices = match (&sip, &config.gb28181) {
        (Some(sip), Some(g)) => Some(Arc::new(crate::gb::GbDevices::new(
            sip.clone(),
            8 * 3600,
            g.request_timeout * 3,
            gb_source(StreamId::main("-"), "", "", g, &config.ingest),
        ))),
        _ => None,
    };
    let mut policies = Vec::new();
    let mut cameras = BTreeMap::new();
    let mut recorded = 0;
    for c in &config.cameras {
        let mut main = None;
        let urls = [
            Some((StreamKind::Main, &c.url)),
            c.sub_url.as_ref().map(|u| (StreamKind::Sub, u)),
        ];
        for (kind, url) in urls.into_iter().flatten() {
            let stream = StreamId::new(c.id.as_str(), kind);
            let i = &config.ingest;
            let source = match (url.scheme(), &config.gb28181) {
                ("gb28181", Some(g)) => {
                    let channel = url.path().trim_matches('/');
                    let channel = if channel.is_empty() { c.id.as_str() } else { channel };
                    if let Some(d) = &gb_devices {
                        d.add(&c.id, url.host_str().unwrap_or_default(), channel);
                    }
                    Source::Gb(gb_source(
                        stream.clone(),
                        url.host_str().unwrap_or_default(),
                        channel,
                        g,
                        i,
                    ))
                }
                ("gb28181", None) => {
                    warn!(camera = %c.id, "a gb28181:// camera without a [gb28181] section is not pulled");
                    continue;
                }
                _ => {
                    let mut cfg = RtspSourceConfig::new(stream.clone(), url.clone());
                    cfg.transport = match c.transport.unwrap_or(i.transport) {
                        Transport::Tcp => RtspTransport::Tcp,
                        Transport::Udp => RtspTransport::Udp,
                    };
                    cfg.watchdog = i.watchdog;
                    cfg.request_timeout = i.request_timeout;
                    cfg.reconnect_min = i.reconnect_min;
                    cfg.reconnect_max = i.reconnect_max;
                    cfg.reconnect_slow = i.reconnect_slow;
                    cfg.max_frame_bytes = i.max_frame_bytes;
                    Source::Rtsp(cfg)
                }
            };
            // Only the main stream is recorded; it is pulled always, the rest on demand.
            let record = c.record && kind == StreamKind::Main;
            recorded += usize::from(record);
            let health = Arc::new(SourceHealth::default());
            if !record {
                health.set_phase(ingest::SourcePhase::Stopped);
            }
            if kind == StreamKind::Main {
                main = Some(health.clone());
            }
            policies.push((
                stream.clone(),
                hub::StreamPolicy {
                    pinned: record,
                    idle: config.live.idle,
                },
            ));
            pulls.specs.get_mut().unwrap_or_else(|p| p.into_inner()).insert(
                stream,
                Pull {
                    source,
                    health,
                    recorder: record.then(|| recorder.clone()),
                },
            );
        }
        cameras.insert(
            c.id.clone(),
            CameraEntry::new(
                CameraInfo {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    tier: c.tier.as_str().to_owned(),
                    org: c.org.clone(),
                    location: c.location.map(|l| (l.lat, l.lon)),
                    record: c.record,
                    has_sub: c.sub_url.is_some(),
                },
                main,
            ),
        );
    }
    let pulls = Arc::new(pulls);
    let auth = Arc::new(
        auth::Auth::new(
            directory(&config),
            Some(
                auth::DirectoryFile::new(&config.server.data_dirs[0].join("auth"))
                    .context("opening the users and grants directory")?,
            ),
            config
                .cameras
                .iter()
                .map(|c| auth::CameraRef {
                    id: c.id.clone(),
                    org: c.org.clone(),
                })
                .collect(),
            media,
            config.auth.session_ttl,
        )
        .context("loading users, departments, groups and grants")?,
    );
    // Changes made by `sharpeye user add` (another process) take effect within a second.
    let reload = {
        let auth = auth.clone();
        let audit = audit.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let before = auth.snapshot();
                match auth.reload_if_changed() {
                    Ok(true) => {
                        info!("users and grants reloaded from the directory file");
                        audit.record(reload_event(&before.directory, &auth.snapshot().directory));
                    }
                    Ok(false) => {}
                    Err(e) => warn!("users and grants: {e}; keeping the previous ones"),
                }
            }
        })
    };
    let control: hub::Control = {
        let pulls = Arc::downgrade(&pulls);
        Arc::new(move |s: &StreamId, a| {
            if let Some(p) = pulls.upgrade() {
                p.control(s, a);
            }
        })
    };
    let hub = hub::Hub::new(
        policies,
        hub::ChannelLimits {
            queue_frames: config.live.queue_frames,
            dead_after: config.live.dead_after,
            max_viewers: config.live.max_viewers_per_stream,
            ..hub::ChannelLimits::default()
        },
        config.live.max_viewers,
        control,
    );
    let _ = pulls.hub.set(Arc::downgrade(&hub));
    hub.start();
    info!(cameras = cameras.len(), recording = recorded, "cameras started");

    let state = Arc::new(AppState {
        auth,
        store: store.clone(),
        cameras: api::CameraMap::new(cameras.into_values()),
        recorder: Some(recorder.stats().clone()),
        started,
        max_listing_us: 100 * 86_400 * 1_000_000,
        max_playback_us: config.playback.max_range.as_micros() as i64,
        samples: store::playback::SampleCache::new(4096),
        movies: std::sync::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(64).expect("64 is not zero"),
        )),
        audit: audit.clone(),
        events: api::events::Events::default(),
        media_token_ttl: config.auth.media_token_ttl,
        recent_playbacks: std::sync::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(4096).expect("4096 is not zero"),
        )),
        exports: Arc::new(
            api::exports::Exports::open(
                &config.server.data_dirs[0].join("exports"),
                &config.server.data_dirs[0].join("node.key"),
            )
            .context("opening the export directory")?,
        ),
        holds,
        retention_policy: policy,
        retention: Some(retention.clone()),
        hub: Some(hub.clone()),
        live_start_timeout: config.live.start_timeout,
        whep: Some(whep::Whep::new(config.live.webrtc_host.unwrap_or_else(|| {
            let ip = config.server.listen.ip();
            if ip.is_unspecified() {
                warn!("[live] webrtc_host is not set and server.listen is a wildcard: WebRTC offers 127.0.0.1, reachable only from this machine");
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            }
        }))),
        devices: gb_devices.clone().map(|d| d as Arc<dyn api::devices::DeviceAccess>),
    });
    let rtsp = match config.server.rtsp_listen {
        Some(addr) => Some(
            rtspd::RtspServer::bind(
                addr,
                hub.clone(),
                Arc::new(RtspAuth(state.clone())),
                rtspd::RtspConfig {
                    start_timeout: config.live.start_timeout,
                },
            )
            .await
            .with_context(|| format!("listening for RTSP on {addr} (server.rtsp_listen)"))?,
        ),
        None => None,
    };
    let adopter = match (&sip, &config.gb28181) {
        (Some(sip), Some(g)) if g.adopt => {
            let adoption = Adoption {
                devices: gb_devices.clone(),
                pulls: pulls.clone(),
                hub: hub.clone(),
                state: state.clone(),
                recorder: recorder.clone(),
                gb: g.clone(),
                ingest: config.ingest.clone(),
                idle: config.live.idle,
            };
            Some(crate::gb::spawn_adopter(sip, move |device, item| {
                adoption.adopt(device, item)
            }))
        }
        _ => None,
    };
    let bridge = sip.as_ref().map(|s| crate::gb::spawn_event_bridge(s, state.clone()));
    let watcher = api::events::spawn_watcher(state.clone(), Duration::from_secs(1));
    info!("HTTP API listening on http://{}", config.server.listen);
    api::serve(listener, api::router(state), shutdown)
        .await
        .context("serving HTTP")?;

    if let Some(r) = rtsp {
        info!("stopping: closing RTSP viewers");
        r.stop().await;
    }
    reload.abort();
    watcher.abort();
    for task in [adopter, bridge].into_iter().flatten() {
        task.abort();
    }
    info!("stopping: closing camera sessions");
    pulls.stop_all().await;
    retention.stop();
    info!("stopping: closing and syncing segments");
    tokio::task::spawn_blocking(move || recorder.shutdown())
        .await?
        .context("closing the recorder")?;
    info!("stopped cleanly");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
