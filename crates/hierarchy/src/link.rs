//! One link to a lower node at run time: how to reach it, whether it is up, its budget and what
//! crosses it, and the cameras it shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use media::{StreamId, StreamKind, WallTime};
use serde_json::{Value, json};

use crate::budget::{Budget, LinkRefusal, PullKey, StreamRates};
use crate::catalog::RemoteCamera;
use crate::client::LowerClient;
use crate::config::LowerConfig;
use crate::meter::Meter;

/// What a live stream is expected to need before it was ever measured, kbit/s: a 1080p main
/// stream and a CIF/D1 sub-stream as cameras of this kind send them.
pub const DEFAULT_MAIN_KBPS: u64 = 4096;
/// See [`DEFAULT_MAIN_KBPS`].
pub const DEFAULT_SUB_KBPS: u64 = 512;
/// A camera left out of this many listings over [`MISSING_FOR`] is no longer shared.
pub const MISSING_LISTINGS: u32 = 2;
/// See [`MISSING_LISTINGS`].
pub const MISSING_FOR: Duration = Duration::from_secs(20);
/// A stream admitted for a viewer that never started pulling is released after this long.
const RESERVATION_LIFE: Duration = Duration::from_secs(30);

/// Whether a link can be used now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not reached yet.
    Connecting,
    /// Answering since then.
    Up {
        /// Since when.
        since: WallTime,
    },
    /// Not answering since then, and why.
    Down {
        /// Since when.
        since: WallTime,
        /// The last error.
        reason: String,
    },
}

/// A link to a lower node.
pub struct Link {
    config: LowerConfig,
    client: Arc<LowerClient>,
    budget: Mutex<Budget>,
    state: RwLock<LinkState>,
    /// Everything crossing the link, and each pull.
    meters: Mutex<(Meter, HashMap<PullKey, Meter>)>,
    /// Admitted live streams not pulled yet, and the user each was asked for (the lower node
    /// audits the pull as that user's).
    reserved: Mutex<HashMap<StreamId, (Instant, String)>>,
    /// The last rate each live stream was measured at, for the next admission.
    history: Mutex<HashMap<StreamId, u64>>,
    /// The cameras it shares, by id, from its listings.
    cameras: RwLock<HashMap<String, RemoteCamera>>,
    /// Cameras its latest listings left out, since when and in how many listings.
    missing: Mutex<HashMap<String, (Instant, u32)>>,
    transfers: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Link {
    /// The link of `config`, reached through `client`.
    pub fn new(config: LowerConfig, client: Arc<LowerClient>) -> Arc<Link> {
        Arc::new(Link {
            budget: Mutex::new(Budget::new(&config.id, config.link_kbps)),
            client,
            state: RwLock::new(LinkState::Connecting),
            meters: Mutex::new((Meter::new(Duration::from_secs(4)), HashMap::new())),
            reserved: Mutex::default(),
            history: Mutex::default(),
            cameras: RwLock::default(),
            missing: Mutex::default(),
            transfers: std::sync::atomic::AtomicU64::new(1),
            config,
        })
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// How it is configured.
    pub fn config(&self) -> &LowerConfig {
        &self.config
    }

    /// Its client.
    pub fn client(&self) -> &Arc<LowerClient> {
        &self.client
    }

    /// Its state.
    pub fn state(&self) -> LinkState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that the lower node answered (true if it was not up before).
    pub fn mark_up(&self) -> bool {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        if matches!(*s, LinkState::Up { .. }) {
            return false;
        }
        *s = LinkState::Up { since: WallTime::now() };
        true
    }

    /// Records that it did not (true if it was up or connecting before); the time it went down
    /// is kept while it stays down.
    pub fn mark_down(&self, reason: &str) -> bool {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        match &mut *s {
            LinkState::Down { reason: r, .. } => {
                *r = reason.to_owned();
                false
            }
            _ => {
                *s = LinkState::Down {
                    since: WallTime::now(),
                    reason: reason.to_owned(),
                };
                true
            }
        }
    }

    /// The reason a camera behind this link is offline while the link is down.
    pub fn down_reason(&self) -> Option<String> {
        match self.state() {
            LinkState::Down { since, .. } => Some(format!(
                "lower node {} unreachable since {}",
                self.config.id,
                since.to_rfc3339()
            )),
            _ => None,
        }
    }

    /// Takes in a listing: returns the cameras it adds, the ids it has dropped for good, and
    /// the ids left out of it but not yet dropped. A camera is dropped only once it has been
    /// left out of [`MISSING_LISTINGS`] listings over [`MISSING_FOR`]: a lower node that has
    /// just restarted lists its own cameras before those of the nodes below it, and that must
    /// not end the viewings of the latter.
    pub fn set_cameras(&self, cameras: Vec<RemoteCamera>) -> (Vec<RemoteCamera>, Vec<String>, Vec<String>) {
        let now = Instant::now();
        let mut w = self.cameras.write().unwrap_or_else(|p| p.into_inner());
        let mut missing = lock(&self.missing);
        let listed: HashMap<String, RemoteCamera> = cameras.into_iter().map(|c| (c.id.clone(), c)).collect();
        let added: Vec<RemoteCamera> = listed.values().filter(|c| !w.contains_key(&c.id)).cloned().collect();
        let (mut removed, mut absent) = (Vec::new(), Vec::new());
        for id in w.keys().filter(|id| !listed.contains_key(*id)) {
            let m = missing.entry(id.clone()).or_insert((now, 0));
            m.1 += 1;
            if m.1 >= MISSING_LISTINGS && now.duration_since(m.0) >= MISSING_FOR {
                removed.push(id.clone());
            } else {
                absent.push(id.clone());
            }
        }
        for id in listed.keys() {
            missing.remove(id);
        }
        for id in &removed {
            missing.remove(id);
            w.remove(id);
        }
        w.extend(listed);
        (added, removed, absent)
    }

    /// One camera it shares.
    pub fn camera(&self, id: &str) -> Option<RemoteCamera> {
        self.cameras.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Every camera it shares.
    pub fn cameras(&self) -> Vec<RemoteCamera> {
        self.cameras
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn rates(&self, camera: &str) -> StreamRates {
        let has_sub = self.camera(camera).is_some_and(|c| c.has_sub);
        let h = lock(&self.history);
        StreamRates {
            main_kbps: h.get(&StreamId::main(camera)).copied().unwrap_or(DEFAULT_MAIN_KBPS),
            sub_kbps: has_sub.then(|| {
                h.get(&StreamId::new(camera, StreamKind::Sub))
                    .copied()
                    .unwrap_or(DEFAULT_SUB_KBPS)
            }),
        }
    }

    /// What a recording of `camera`'s `kind` stream needs at 1×, kbit/s: its live stream's
    /// last measured rate, or the default.
    pub fn recorded_kbps(&self, camera: &str, kind: StreamKind) -> u64 {
        let rates = self.rates(camera);
        match kind {
            StreamKind::Main => rates.main_kbps,
            StreamKind::Sub => rates.sub_kbps.unwrap_or(DEFAULT_SUB_KBPS),
        }
    }

    /// Admits a live view of `camera`'s `want` stream for `who` (see [`Budget::admit_live`]);
    /// a stream that is not crossing yet is reserved for the pull the view starts.
    pub fn admit_live(&self, camera: &str, want: StreamKind, who: &str) -> Result<StreamKind, LinkRefusal> {
        let rates = self.rates(camera);
        let mut b = lock(&self.budget);
        let kind = b.admit_live(camera, want, rates)?;
        let stream = StreamId::new(camera, kind);
        lock(&self.reserved)
            .entry(stream)
            .or_insert_with(|| (Instant::now(), who.to_owned()));
        Ok(kind)
    }

    /// A pull of `stream` starts: it is counted (if no view admitted it first, as for a
    /// stream another protocol asked for) and the user it was reserved for is returned.
    pub fn pull_started(&self, stream: &StreamId) -> Option<String> {
        let key = PullKey::Live(stream.clone());
        let rates = self.rates(stream.camera());
        let kbps = match stream.kind() {
            StreamKind::Main => rates.main_kbps,
            StreamKind::Sub => rates.sub_kbps.unwrap_or(DEFAULT_SUB_KBPS),
        };
        lock(&self.budget).count(key, kbps);
        lock(&self.reserved).remove(stream).map(|(_, who)| who)
    }

    /// A pull of `stream` stopped: it no longer counts, and its measured rate is kept for the
    /// next admission.
    pub fn pull_stopped(&self, stream: &StreamId) {
        let key = PullKey::Live(stream.clone());
        lock(&self.budget).release(&key);
        let measured = lock(&self.meters).1.remove(&key).map(|mut m| m.kbps(Instant::now()));
        if let Some(kbps) = measured.filter(|k| *k > 0) {
            lock(&self.history).insert(stream.clone(), kbps);
        }
    }

    /// Admits a transfer of a recording at `kbps`; returns its key, to release when done.
    pub fn admit_transfer(&self, kbps: u64) -> Result<PullKey, LinkRefusal> {
        let key = PullKey::Transfer(self.transfers.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        lock(&self.budget).admit_transfer(key.clone(), kbps)?;
        Ok(key)
    }

    /// A transfer ended.
    pub fn transfer_done(&self, key: &PullKey) {
        lock(&self.budget).release(key);
        lock(&self.meters).1.remove(key);
    }

    /// Counts `bytes` that crossed the link for `key`.
    pub fn crossed(&self, key: &PullKey, bytes: u64) {
        let now = Instant::now();
        let mut m = lock(&self.meters);
        m.0.add(now, bytes);
        m.1.entry(key.clone())
            .or_insert_with(|| Meter::new(Duration::from_secs(4)))
            .add(now, bytes);
    }

    /// Once a second: each pull's measured rate into the budget, and reservations no viewer
    /// used released.
    pub fn tick(&self) {
        let now = Instant::now();
        let rates: Vec<(PullKey, u64)> = lock(&self.meters)
            .1
            .iter_mut()
            .map(|(k, m)| (k.clone(), m.kbps(now)))
            .collect();
        let stale: Vec<StreamId> = {
            let mut r = lock(&self.reserved);
            let stale = r
                .iter()
                .filter(|(_, (at, _))| now.duration_since(*at) > RESERVATION_LIFE)
                .map(|(s, _)| s.clone())
                .collect::<Vec<_>>();
            for s in &stale {
                r.remove(s);
            }
            stale
        };
        let mut b = lock(&self.budget);
        for (k, kbps) in rates {
            b.measured(&k, kbps);
        }
        for s in stale {
            b.release(&PullKey::Live(s));
        }
    }

    /// Throughput over the last seconds, kbit/s.
    pub fn measured_kbps(&self) -> u64 {
        lock(&self.meters).0.kbps(Instant::now())
    }

    /// Budget, kbit/s; what is counted now; pulls; refusals.
    pub fn usage(&self) -> (u64, u64, usize, u64) {
        let b = lock(&self.budget);
        (b.budget_kbps(), b.in_use_kbps(), b.pulls(), b.refusals())
    }

    /// The link as `GET /api/v1/links` shows it.
    pub fn to_json(&self) -> Value {
        let (budget, in_use, pulls, refusals) = self.usage();
        let users: Vec<Value> = lock(&self.budget)
            .users()
            .into_iter()
            .map(|(k, kbps)| json!({ "pull": k.to_string(), "mbps": kbps as f64 / 1000.0 }))
            .collect();
        let (state, since, reason) = match self.state() {
            LinkState::Connecting => ("connecting", None, None),
            LinkState::Up { since } => ("up", Some(since), None),
            LinkState::Down { since, reason } => ("down", Some(since), Some(reason)),
        };
        json!({
            "id": self.config.id,
            "dial": self.config.dial.as_str(),
            "org": self.config.org,
            "budget_mbps": budget as f64 / 1000.0,
            "in_use_mbps": in_use as f64 / 1000.0,
            "measured_mbps": self.measured_kbps() as f64 / 1000.0,
            "pulls": pulls,
            "refusals": refusals,
            "users": users,
            "state": state,
            "since": since.map(WallTime::to_rfc3339),
            "reason": reason,
            "cameras": self.cameras.read().unwrap_or_else(|p| p.into_inner()).len(),
            "bytes": lock(&self.meters).0.total(),
        })
    }
}
