//! Wiring a node together: store, recorder, camera sources and the API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use api::{AppState, CameraEntry, CameraInfo};
use ingest::FrameSink;
use ingest::rtsp::{RtspSourceConfig, RtspTransport};
use ingest::supervisor::{SourceHandle, spawn_rtsp};
use media::{Frame, StreamId};
use store::{Recorder, RecorderConfig, Store};
use tracing::{info, warn};

use crate::config::{Config, MinFree, Secret, Tier, Transport};

/// Delivers a camera's frames to the recorder. When the recorder's queue is full a frame is
/// lost, and the next one is marked as a discontinuity so that the segment ends cleanly there.
struct RecordingSink {
    recorder: Recorder,
    lost: AtomicBool,
}

impl FrameSink for RecordingSink {
    fn frame(&self, mut frame: Frame) {
        if self.lost.swap(false, Ordering::Relaxed) {
            frame.discontinuity = true;
        }
        if self.recorder.try_push(frame).is_err() {
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    fn end_of_stream(&self, stream: &StreamId) {
        self.recorder.end_stream(stream);
    }
}

fn users(config: &Config) -> Result<Vec<auth::User>> {
    config
        .users
        .iter()
        .map(|u| {
            Ok(auth::User {
                name: u.name.clone(),
                role: auth::Role::parse(&u.role)
                    .with_context(|| format!("user {}: unknown role {}", u.name, u.role))?,
                department: u.department.clone(),
                password_hash: match &u.secret {
                    Secret::Plain(p) => auth::hash_password(p),
                    Secret::Hash(h) => h.clone(),
                },
            })
        })
        .collect()
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

    let auth = Arc::new(auth::Auth::new(users(&config)?, Duration::from_secs(12 * 3600)).context("loading [[users]]")?);

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
        batch: 500,
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

    let mut sources: Vec<SourceHandle> = Vec::new();
    let mut cameras = BTreeMap::new();
    for c in &config.cameras {
        let mut main = None;
        if c.record {
            let stream = StreamId::main(c.id.as_str());
            let mut cfg = RtspSourceConfig::new(stream, c.url.clone());
            let i = &config.ingest;
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
            let sink = Arc::new(RecordingSink {
                recorder: recorder.clone(),
                lost: AtomicBool::new(false),
            });
            let handle = spawn_rtsp(cfg, sink);
            main = Some(handle.health().clone());
            sources.push(handle);
        }
        cameras.insert(
            c.id.clone(),
            CameraEntry {
                info: CameraInfo {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    tier: c.tier.as_str().to_owned(),
                    org: c.org.clone(),
                    location: c.location.map(|l| (l.lat, l.lon)),
                    record: c.record,
                    has_sub: c.sub_url.is_some(),
                },
                main,
            },
        );
    }
    info!(cameras = cameras.len(), recording = sources.len(), "cameras started");

    let state = Arc::new(AppState {
        auth,
        store: store.clone(),
        cameras,
        recorder: Some(recorder.stats().clone()),
        started,
        max_listing_us: 100 * 86_400 * 1_000_000,
        max_playback_us: config.playback.max_range.as_micros() as i64,
        samples: store::playback::SampleCache::new(4096),
        movies: std::sync::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(64).expect("64 is not zero"),
        )),
        media,
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
    });
    info!("HTTP API listening on http://{}", config.server.listen);
    api::serve(listener, api::router(state), shutdown)
        .await
        .context("serving HTTP")?;

    info!("stopping: closing camera sessions");
    for s in sources {
        s.stop().await;
    }
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
