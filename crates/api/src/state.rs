//! What the API serves from: cameras and their sources' health, the store, the authenticator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ingest::{SourceHealth, SourcePhase};
use media::WallTime;
use store::{RecorderStats, Store};

/// A camera's configuration as the API shows it.
#[derive(Clone, Debug)]
pub struct CameraInfo {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `standard` or `key`.
    pub tier: String,
    /// Org/grid path.
    pub org: String,
    /// (lat, lon).
    pub location: Option<(f64, f64)>,
    /// What it sees from there (heading, field of view, range), when configured: the
    /// `sees=` query and incidents use it.
    pub view: Option<places::View>,
    /// Recorded continuously.
    pub record: bool,
    /// Has a sub-stream.
    pub has_sub: bool,
    /// Offers the `h264` stream: the main one transcoded on this node (the `gstreamer` feature).
    pub h264: bool,
    /// The node that records it (this node's id for its own cameras).
    pub node: String,
    /// The nodes between this one and the camera's, nearest first (empty for its own).
    pub path: Vec<String>,
}

/// What this node knows of a remote camera's state, from its lower node's listing and events,
/// and from the link itself (a link that is down makes every camera behind it offline).
#[derive(Debug)]
pub struct RemoteState {
    /// The link it comes through.
    pub link: String,
    state: std::sync::RwLock<(&'static str, Option<String>)>,
    /// Why its video is not usable, as its lower node judged it (`None`: usable, or not said).
    fault: std::sync::RwLock<Option<rates::Cause>>,
}

impl RemoteState {
    /// A camera behind `link`, in `status` as the lower node reported it.
    pub fn new(link: &str, status: &str) -> RemoteState {
        RemoteState {
            link: link.to_owned(),
            state: std::sync::RwLock::new((status_name(status), None)),
            fault: std::sync::RwLock::new(None),
        }
    }

    /// Sets the status (one of `online`, `connecting`, `offline`, `idle`) and why. A camera
    /// that is not online has no verdict on its picture until its node gives a new one.
    pub fn set(&self, status: &str, reason: Option<String>) {
        let status = status_name(status);
        if status != "online" {
            self.set_fault(None);
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = (status, reason);
    }

    /// Sets its lower node's verdict on its video: `None` usable, else why not.
    pub fn set_fault(&self, fault: Option<rates::Cause>) {
        *self.fault.write().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Its lower node's verdict on its video.
    pub fn fault(&self) -> Option<rates::Cause> {
        *self.fault.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The status and why.
    pub fn get(&self) -> (&'static str, Option<String>) {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A status as the API names it; anything a lower node sends that is not one is `offline`.
fn status_name(s: &str) -> &'static str {
    match s {
        "online" => "online",
        "connecting" => "connecting",
        "idle" => "idle",
        _ => "offline",
    }
}

/// A camera and the health of the sources pulling it.
#[derive(Clone, Debug)]
pub struct CameraEntry {
    /// Configuration.
    pub info: CameraInfo,
    /// The main stream's source, when it is being pulled.
    pub main: Option<Arc<SourceHealth>>,
    /// For a camera of a lower node: what is known of it.
    pub remote: Option<Arc<RemoteState>>,
    /// The listing's fixed fields, serialized once (see [`CameraEntry::fixed_json`]).
    pub fixed: std::sync::OnceLock<String>,
}

/// A frame within this long means the camera is online.
const ONLINE_WITHIN_US: i64 = 10_000_000;

impl CameraEntry {
    /// A camera for `info` pulled by `main`.
    pub fn new(info: CameraInfo, main: Option<Arc<SourceHealth>>) -> CameraEntry {
        CameraEntry {
            info,
            main,
            remote: None,
            fixed: std::sync::OnceLock::new(),
        }
    }

    /// A camera of a lower node, reached through a link.
    pub fn remote(info: CameraInfo, remote: Arc<RemoteState>) -> CameraEntry {
        CameraEntry {
            info,
            main: None,
            remote: Some(remote),
            fixed: std::sync::OnceLock::new(),
        }
    }

    /// The fields of the camera's listing entry that never change, as a JSON object missing
    /// its closing brace: `{"id":..,"name":..,"tier":..,"org":..,"recording":..,"location":..,"streams":[..],"node":..,"path":[..]`.
    pub fn fixed_json(&self) -> &str {
        self.fixed.get_or_init(|| {
            let i = &self.info;
            let mut streams = vec!["main"];
            if i.has_sub {
                streams.push("sub");
            }
            if i.h264 {
                streams.push("h264");
            }
            let v = serde_json::json!({
                "id": i.id,
                "name": i.name,
                "tier": i.tier,
                "org": i.org,
                "recording": i.record,
                "location": i.location.map(|(lat, lon)| {
                    let mut l = serde_json::json!({ "lat": lat, "lon": lon });
                    if let Some(v) = i.view {
                        l["heading"] = serde_json::json!(v.heading);
                        l["fov"] = serde_json::json!(v.fov);
                        l["range_m"] = serde_json::json!(v.range_m);
                    }
                    l
                }),
                "streams": streams,
                "node": i.node,
                "path": i.path,
            });
            // Serializing a JSON value cannot fail; it ends with the object's closing brace.
            let mut s = v.to_string();
            s.pop();
            s
        })
    }

    /// Why a camera is not online, when that is known (a lower node that cannot be reached).
    pub fn status_reason(&self) -> Option<String> {
        self.remote.as_ref().and_then(|r| r.get().1)
    }

    /// `online`, `connecting`, `offline` or `idle` (not pulled: on-demand cameras). A remote
    /// camera's is what its lower node says, or `offline` while the link is down.
    pub fn status(&self) -> &'static str {
        if let Some(r) = &self.remote {
            return r.get().0;
        }
        let Some(h) = &self.main else { return "idle" };
        let s = h.snapshot();
        let fresh = s
            .last_frame
            .is_some_and(|t| WallTime::now().micros_since(t) < ONLINE_WITHIN_US);
        match s.phase {
            SourcePhase::Streaming if fresh => "online",
            SourcePhase::Streaming | SourcePhase::Connecting if s.sessions == 0 || fresh => "connecting",
            SourcePhase::Stopped => "idle",
            _ => "offline",
        }
    }
}

/// The node's cameras by id. Read on every request; written when a camera is added at run
/// time (a GB/T 28181 device's catalog): readers take a snapshot, writers replace the map.
#[derive(Debug, Default)]
pub struct CameraMap(std::sync::RwLock<Arc<BTreeMap<String, Arc<CameraEntry>>>>);

impl CameraMap {
    /// A map of `cameras`.
    pub fn new(cameras: impl IntoIterator<Item = CameraEntry>) -> CameraMap {
        CameraMap(std::sync::RwLock::new(Arc::new(
            cameras.into_iter().map(|c| (c.info.id.clone(), Arc::new(c))).collect(),
        )))
    }

    /// Every camera now.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, Arc<CameraEntry>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One camera.
    pub fn get(&self, id: &str) -> Option<Arc<CameraEntry>> {
        self.snapshot().get(id).cloned()
    }

    /// True if the camera exists.
    pub fn contains_key(&self, id: &str) -> bool {
        self.snapshot().contains_key(id)
    }

    /// Number of cameras.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes cameras (a lower node no longer shares them); returns how many were removed.
    pub fn remove_many(&self, ids: &[String]) -> usize {
        let mut w = self.0.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**w).clone();
        let removed = ids.iter().filter(|id| next.remove(id.as_str()).is_some()).count();
        if removed > 0 {
            *w = Arc::new(next);
        }
        removed
    }

    /// Adds a camera; false (and nothing changed) if the id is taken.
    pub fn insert(&self, camera: CameraEntry) -> bool {
        self.insert_many([camera]) == 1
    }

    /// Adds cameras whose ids are not taken (in one copy of the map, however many), returning
    /// how many were added.
    pub fn insert_many(&self, cameras: impl IntoIterator<Item = CameraEntry>) -> usize {
        let mut w = self.0.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**w).clone();
        let before = next.len();
        for c in cameras {
            next.entry(c.info.id.clone()).or_insert_with(|| Arc::new(c));
        }
        let added = next.len() - before;
        if added > 0 {
            *w = Arc::new(next);
        }
        added
    }
}

/// This node's identity, as `GET /api/v1/node` and camera listings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `community`, `street`, `district` or `city`.
    pub level: String,
}

/// Where signed audit heads are kept: this node's own, and those it holds for lower nodes (one
/// `<node>.jsonl` each).
#[derive(Clone, Debug)]
pub struct HeadFiles {
    /// This node's.
    pub own: std::path::PathBuf,
    /// The directory of lower nodes'.
    pub held: std::path::PathBuf,
}

/// Everything handlers need.
pub struct AppState {
    /// This node.
    pub node: NodeInfo,
    /// Users and sessions.
    pub auth: Arc<auth::Auth>,
    /// Recordings.
    pub store: Arc<Store>,
    /// Cameras by id.
    pub cameras: CameraMap,
    /// Recorder counters.
    pub recorder: Option<Arc<RecorderStats>>,
    /// Process start.
    pub started: Instant,
    /// Longest window `recordings` answers for.
    pub max_listing_us: i64,
    /// Longest range playback, HLS and export accept.
    pub max_playback_us: i64,
    /// Sample tables of recently played segments.
    pub samples: store::playback::SampleCache,
    /// Recently built playback movies by ETag.
    pub movies: crate::movies::MovieCache,
    /// The audit log: every access and change is written here.
    pub audit: Arc<auth::audit::AuditLog>,
    /// Longest life of a media token.
    pub media_token_ttl: std::time::Duration,
    /// Recently audited playbacks and downloads (so a player's Range requests are one entry).
    pub recent_playbacks: crate::recent_accesses::RecentAccesses,
    /// Export jobs and packages.
    pub exports: Arc<crate::export_jobs::Exports>,
    /// Evidence holds.
    pub holds: Arc<store::holds::Holds>,
    /// What retention enforces (for the health forecast).
    pub retention_policy: store::retention::RetentionPolicy,
    /// The retention thread (for its alarms), when running.
    pub retention: Option<Arc<store::retention::Retention>>,
    /// Live channels, when live view is served.
    pub hub: Option<Arc<hub::Hub>>,
    /// How long a live request waits for the first key frame.
    pub live_start_timeout: std::time::Duration,
    /// Node events for `GET /api/v1/events`.
    pub events: Arc<crate::events::Events>,
    /// WebRTC (WHEP) sessions, when served.
    pub whep: Option<Arc<whep::Whep>>,
    /// Device-side functions of GB/T 28181 channels, when GB/T 28181 is configured.
    pub devices: Option<Arc<dyn crate::device_access::DeviceAccess>>,
    /// The links toward GB/T 28181 upper platforms, when the node cascades upward. Set once,
    /// after the state is built (the cascade answers from the state).
    pub uppers: std::sync::OnceLock<Arc<dyn crate::device_access::UpperAccess>>,
    /// The node's cluster, when it is one of several nodes of its level (set once at start).
    pub cluster: std::sync::OnceLock<Arc<dyn crate::cluster::ClusterAccess>>,
    /// Signed audit heads.
    pub heads: HeadFiles,
    /// Named wall screens and saved views.
    pub walls: Arc<crate::walls::Walls>,
    /// Cameras of lower nodes, when this node has links.
    pub remote: Option<Arc<dyn crate::remote_access::RemoteAccess>>,
    /// Grid cells (网格).
    pub grids: Arc<places::Grids>,
    /// The cameras by place, rebuilt when the camera map changes.
    pub spatial: crate::spatial::SpatialIndex,
    /// The RTSP re-serve's port, when it runs (incidents hand out RTSP URLs on it).
    pub rtsp_port: Option<u16>,
    /// Webhook subscriptions.
    pub webhooks: Arc<eventlog::webhook::Subscriptions>,
    /// How failed webhook deliveries are retried.
    pub webhook_retry: crate::webhooks::Retry,
    /// Online, intact and networked rates.
    pub rates: crate::rate_report::Rates,
}

impl AppState {
    /// The links' access to `camera` when it is a lower node's camera.
    pub fn remote_for(&self, camera: &str) -> Option<Arc<dyn crate::remote_access::RemoteAccess>> {
        self.remote.clone().filter(|r| r.is_remote(camera))
    }
}

/// This node's id for an object (a hold, an export) a lower node made for one of its cameras:
/// `<the lower node's id>@<camera>`, which routes later requests back (nested once per level).
pub fn remote_id(lower: &str, camera: &str) -> Result<String, crate::error::ApiError> {
    if lower.is_empty() || lower.len() > 200 || !lower.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?') {
        return Err(crate::error::ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "lower_error",
            "the lower node answered without a usable id",
        ));
    }
    Ok(format!("{lower}@{camera}"))
}

/// `s` escaped for a query string.
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
