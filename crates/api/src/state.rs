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
    /// Recorded continuously.
    pub record: bool,
    /// Has a sub-stream.
    pub has_sub: bool,
}

/// A camera and the health of the sources pulling it.
#[derive(Clone, Debug)]
pub struct CameraEntry {
    /// Configuration.
    pub info: CameraInfo,
    /// The main stream's source, when it is being pulled.
    pub main: Option<Arc<SourceHealth>>,
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
            fixed: std::sync::OnceLock::new(),
        }
    }

    /// The fields of the camera's listing entry that never change, as a JSON object missing
    /// its closing brace: `{"id":..,"name":..,"tier":..,"org":..,"recording":..,"location":..,"streams":[..]`.
    pub fn fixed_json(&self) -> &str {
        self.fixed.get_or_init(|| {
            let i = &self.info;
            let mut streams = vec!["main"];
            if i.has_sub {
                streams.push("sub");
            }
            let v = serde_json::json!({
                "id": i.id,
                "name": i.name,
                "tier": i.tier,
                "org": i.org,
                "recording": i.record,
                "location": i.location.map(|(lat, lon)| serde_json::json!({ "lat": lat, "lon": lon })),
                "streams": streams,
            });
            // Serializing a JSON value cannot fail; it ends with the object's closing brace.
            let mut s = v.to_string();
            s.pop();
            s
        })
    }

    /// `online`, `connecting`, `offline` or `idle` (not pulled: on-demand cameras).
    pub fn status(&self) -> &'static str {
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

/// Everything handlers need.
pub struct AppState {
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
    pub events: crate::events::Events,
    /// WebRTC (WHEP) sessions, when served.
    pub whep: Option<Arc<whep::Whep>>,
    /// Device-side functions of GB/T 28181 channels, when GB/T 28181 is configured.
    pub devices: Option<Arc<dyn crate::device_access::DeviceAccess>>,
}
