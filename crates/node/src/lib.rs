//! A Sharpeye node: everything `sharpeye run` does besides reading the command line and the
//! config file.
//!
//! [`run`] goes through named steps, each in its own module:
//!
//! 1. [`storage`]: open the data directories (recovering from an unclean stop), start the
//!    recorder, load evidence holds, start retention;
//! 2. [`security`]: the media-token key, the audit log, users and grants;
//! 3. `start_sources`: the GB/T 28181 SIP server ([`gb`]), the [`sources::Pulls`] and the live
//!    hub whose demand starts and stops them;
//! 4. `build_state`: the API's state;
//! 5. [`cameras`]: the configured cameras are added (and, at run time, adopted GB/T 28181
//!    channels, through the same path);
//! 6. `serve`: HTTP, the RTSP re-serve, the event watcher and bridges, until `shutdown`;
//! 7. `shutdown`: viewers, then sources, then retention, then the recorder, which closes and
//!    syncs every segment.

pub mod adoption;
pub mod cameras;
pub mod cascade;
pub mod cluster;
pub mod config;
mod dial_up;
mod error;
pub mod gb;
pub mod remote;
mod rtsp_auth;
pub mod security;
mod shutdown;
pub mod sink;
pub mod sources;
pub mod storage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::AppState;
use tracing::{info, warn};

use crate::cameras::CameraRegistry;
use crate::config::Config;
pub use crate::error::NodeError;
use crate::error::StepContext;
use crate::gb::GbDevices;
use crate::security::Security;
pub use crate::shutdown::shutdown_signal;
use crate::sources::Pulls;
use crate::storage::Storage;

/// Device time of GB/T 28181 devices: China's zone (UTC+8).
const GB_UTC_OFFSET_S: i64 = 8 * 3600;

/// The node's sources: the SIP server, the links to lower nodes, the pulls and the hub that
/// drives them.
struct Sources {
    sip: Option<Arc<gb28181::server::SipServer>>,
    pulls: Arc<Pulls>,
    hub: Arc<hub::Hub>,
    devices: Option<Arc<GbDevices>>,
    remote: Option<Arc<remote::RemoteCameras>>,
}

/// Starts the SIP server (with `[gb28181]`), the pulls and the hub, with no cameras yet.
async fn start_sources(config: &Config) -> Result<Sources, NodeError> {
    let sip = match &config.gb28181 {
        Some(g) => Some(gb::start_sip(g).await?),
        None => None,
    };
    let gb_links = Arc::new(gb::links::GbLinks::new(
        config
            .gb28181
            .as_ref()
            .map(|g| g.devices.as_slice())
            .unwrap_or_default(),
    ));
    let devices = match (&sip, &config.gb28181) {
        (Some(sip), Some(g)) => Some(Arc::new(GbDevices::new(
            sip.clone(),
            gb_links.clone(),
            GB_UTC_OFFSET_S,
            g.request_timeout * 3,
            gb::source(media::StreamId::main("-"), "", "", g, &config.ingest),
        ))),
        _ => None,
    };
    let pulls = Arc::new(Pulls::new(sip.clone(), gb_links));
    let hub = hub::Hub::new(
        [],
        hub::ChannelLimits {
            queue_frames: config.live.queue_frames,
            dead_after: config.live.dead_after,
            max_viewers: config.live.max_viewers_per_stream,
            ..hub::ChannelLimits::default()
        },
        config.live.max_viewers,
        pulls.control(),
    );
    pulls.attach(&hub);
    hub.start();
    let remote = if config.lower.is_empty() {
        None
    } else {
        let dir = config.server.data_dirs[0].join("cache");
        let cache = hierarchy::cache::Cache::open(&dir, config.cache.size, config.cache.max_age)
            .step(|| format!("opening the playback cache {} ([cache])", dir.display()))?;
        Some(remote::RemoteCameras::new(
            &config.lower,
            config.ingest.clone(),
            Some(Arc::new(cache)),
            config.server.data_dirs[0].join("links/heads"),
        ))
    };
    Ok(Sources {
        sip,
        pulls,
        hub,
        devices,
        remote,
    })
}

/// The address WebRTC offers browsers: `[live] webrtc_host`, else the HTTP address (loopback,
/// with a warning, when that is a wildcard).
fn webrtc_host(config: &Config) -> std::net::IpAddr {
    config.live.webrtc_host.unwrap_or_else(|| {
        let ip = config.server.listen.ip();
        if ip.is_unspecified() {
            warn!("[live] webrtc_host is not set and server.listen is a wildcard: WebRTC offers 127.0.0.1, reachable only from this machine");
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        }
    })
}

/// The API's state over the node's storage, security and sources (its camera map starts empty).
fn build_state(
    config: &Config,
    started: Instant,
    storage: &Storage,
    security: &Security,
    sources: &Sources,
) -> Result<Arc<AppState>, NodeError> {
    let first = &config.server.data_dirs[0];
    let exports = api::export_jobs::Exports::open(&first.join("exports"), &first.join("node.key"))
        .step(|| "opening the export directory".into())?;
    let walls = api::walls::Walls::open(&first.join("ui")).step(|| "opening the saved walls and views".into())?;
    let webhooks = eventlog::webhook::Subscriptions::open(&first.join("events/webhooks.json"))
        .step(|| "opening the webhook subscriptions (events/webhooks.json)".into())?;
    let grids = places::Grids::open(&first.join("places/grids.geojson"), config.grids.clone())
        .step(|| "opening the grid cells ([places] grids, places/grids.geojson)".into())?;
    Ok(Arc::new(AppState {
        node: api::NodeInfo {
            id: config.node.id.clone(),
            name: config.node.name.clone(),
            level: config.node.level.as_str().into(),
        },
        auth: security.auth.clone(),
        store: storage.store.clone(),
        cameras: api::CameraMap::default(),
        recorder: Some(storage.recorder.stats().clone()),
        started,
        max_listing_us: 100 * 86_400 * 1_000_000,
        max_playback_us: config.playback.max_range.as_micros() as i64,
        samples: store::playback::SampleCache::new(4096),
        movies: api::movies::MovieCache::new(64),
        audit: security.audit.clone(),
        events: Arc::new(
            api::events::Events::open(
                &first.join("events"),
                eventlog::Limits {
                    keep_events: config.events.keep,
                    ..eventlog::Limits::default()
                },
            )
            .step(|| format!("opening the event log {}", first.join("events").display()))?,
        ),
        media_token_ttl: config.auth.media_token_ttl,
        recent_playbacks: api::recent_accesses::RecentAccesses::new(4096),
        exports: Arc::new(exports),
        holds: storage.holds.clone(),
        retention_policy: storage.policy.clone(),
        retention: Some(storage.retention.clone()),
        hub: Some(sources.hub.clone()),
        live_start_timeout: config.live.start_timeout,
        whep: Some(whep::Whep::new(webrtc_host(config))),
        devices: sources
            .devices
            .clone()
            .map(|d| d as Arc<dyn api::device_access::DeviceAccess>),
        heads: api::HeadFiles {
            own: security.heads.clone(),
            held: config.server.data_dirs[0].join("links/heads"),
        },
        remote: sources
            .remote
            .clone()
            .map(|r| r as Arc<dyn api::remote_access::RemoteAccess>),
        uppers: std::sync::OnceLock::new(),
        cluster: std::sync::OnceLock::new(),
        walls: Arc::new(walls),
        grids: Arc::new(grids),
        spatial: api::spatial::SpatialIndex::default(),
        rtsp_port: config.server.rtsp_listen.map(|a| a.port()),
        webhooks: Arc::new(webhooks),
        rates: api::rate_report::Rates::new(
            rates::Ledger::open(&first.join("rates"), 8)
                .step(|| format!("opening the rates ledger {}", first.join("rates").display()))?,
            rates::maintenance::Windows::open(&first.join("rates/maintenance.json")),
        ),
        webhook_retry: api::webhooks::Retry {
            min: config.events.retry_min,
            max: config.events.retry_max,
        },
    }))
}

/// What `serve` starts beside HTTP and `shutdown` stops.
struct Serving {
    rtsp: Option<rtspd::RtspServer>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the RTSP re-serve, the users reload, the event watcher and the GB/T 28181 adoption and
/// bridge.
async fn start_serving(
    config: &Config,
    state: &Arc<AppState>,
    security: &Arc<Security>,
    sources: &Sources,
    registry: &Arc<CameraRegistry>,
) -> Result<Serving, NodeError> {
    let rtsp = match config.server.rtsp_listen {
        Some(addr) => Some(
            rtspd::RtspServer::bind(
                addr,
                sources.hub.clone(),
                Arc::new(rtsp_auth::RtspAuth(state.clone())),
                rtspd::RtspConfig {
                    start_timeout: config.live.start_timeout,
                },
            )
            .await
            .map_err(|source| NodeError::Listen {
                addr,
                key: "server.rtsp_listen",
                source,
            })?,
        ),
        None => None,
    };
    let mut tasks = vec![
        security.spawn_reload(),
        security.spawn_head_signer(config.node.id.clone(), config.audit.head_every, state.clone()),
        api::event_stream::spawn_watcher(state.clone(), Duration::from_secs(1)),
        api::webhooks::spawn_durability(state.clone(), Duration::from_millis(200)),
        api::intact::spawn_picture_checks(state.clone(), config.rates.picture_every),
    ];
    api::webhooks::spawn_all(&api::webhooks::Deliveries::of(state));
    if let (Some(sip), Some(g)) = (&sources.sip, &config.gb28181) {
        if g.adopt {
            tasks.push(adoption::spawn_adopter(
                sip,
                registry.clone(),
                g.clone(),
                config.ingest.clone(),
                config.node.id.clone(),
            ));
        }
        tasks.push(gb::events::spawn_event_bridge(sip, state.clone()));
        if !g.uppers.is_empty() {
            let c = cascade::Cascade::new(
                sip.clone(),
                state.clone(),
                sources.devices.clone(),
                g,
                &config.node.name,
                GB_UTC_OFFSET_S,
            );
            let _ = state.uppers.set(c.clone());
            tasks.push(c.spawn());
        }
    }
    if let Some(r) = &sources.remote {
        tasks.extend(r.start(registry.clone()));
    }
    for upper in &config.upper {
        tasks.push(dial_up::spawn(
            upper.clone(),
            config.node.id.clone(),
            api::router(state.clone()),
        ));
    }
    Ok(Serving { rtsp, tasks })
}

/// Stops in order: RTSP viewers and background tasks, then every pull, then storage (retention,
/// then the recorder, which closes and syncs every segment), and signs the audit log's head
/// last, over everything the stop itself audited.
async fn shutdown(
    serving: Serving,
    sources: Sources,
    storage: Storage,
    security: Arc<Security>,
    node: String,
) -> Result<(), NodeError> {
    if let Some(r) = serving.rtsp {
        info!("stopping: closing RTSP viewers");
        r.stop().await;
    }
    if let Some(sip) = &sources.sip {
        // Unregister from upper platforms and end their sessions while the socket still works.
        sip.stop_uppers().await;
    }
    for task in serving.tasks {
        task.abort();
    }
    info!("stopping: closing camera sessions");
    sources.pulls.stop_all().await;
    info!("stopping: closing and syncing segments");
    storage.close().await?;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = security.audit.flush();
        security.sign_head(&node)
    })
    .await;
    info!("stopped cleanly");
    Ok(())
}

/// Runs a node with `config` until `stop` resolves, then stops cleanly: viewers and sources
/// first, then the recorder (which closes and syncs every segment).
pub async fn run(config: Config, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), NodeError> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.server.listen,
            key: "server.listen",
            source,
        })?;
    let storage = Storage::open(&config).await?;
    let security = Arc::new(Security::open(&config)?);
    let sources = start_sources(&config).await?;
    let state = build_state(&config, started, &storage, &security, &sources)?;
    let cluster = config.cluster.as_ref().map(|c| {
        let directory = auth::DirectoryFile::new(&config.server.data_dirs[0].join("auth"))
            .ok()
            .map(|f| (f, config.directory(|_| "$argon2id$unchecked".into())));
        let node = cluster::ClusterNode::join(
            c,
            &config.node.id,
            state.clone(),
            sources.hub.clone(),
            directory,
            config.server.data_dirs[0].join("cluster-cache"),
            config.ingest.clone(),
        );
        node.route(&sources.pulls);
        let _ = state.cluster.set(node.clone() as Arc<dyn api::cluster::ClusterAccess>);
        node
    });
    let registry = Arc::new(CameraRegistry {
        gates: cluster.as_ref().map(|c| c.gates().clone()),
        state: state.clone(),
        hub: sources.hub.clone(),
        pulls: sources.pulls.clone(),
        recorder: storage.recorder.clone(),
        idle: config.live.idle,
        devices: sources.devices.clone(),
    });
    registry.add_configured(&config);
    let cluster_thread = cluster.as_ref().map(|c| c.spawn());
    let serving = start_serving(&config, &state, &security, &sources, &registry).await?;
    info!("HTTP API listening on http://{}", config.server.listen);
    let events = state.clone();
    let durable = state.clone();
    let stop = async move {
        stop.await;
        // Event streams end first: they never finish on their own.
        events.events.close();
    };
    api::serve(listener, api::router(state), stop)
        .await
        .step(|| "serving HTTP".into())?;
    // What was announced is on disk, and webhooks go on from where they were acknowledged.
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = durable.events.log().sync() {
            warn!(%e, "event log not synced at stop");
        }
        if let Err(e) = durable.webhooks.flush() {
            warn!(%e, "webhook cursors not written at stop");
        }
        durable.rates.flush();
    })
    .await;
    if let Some(c) = cluster {
        // The others take this node's cameras over now rather than after its lease's TTL.
        info!("stopping: leaving the cluster");
        let _ = tokio::task::spawn_blocking(move || {
            c.leave();
            if let Some(t) = cluster_thread {
                let _ = t.join();
            }
        })
        .await;
    }
    shutdown(serving, sources, storage, security, config.node.id.clone()).await
}
#[cfg(test)]
mod tests;
