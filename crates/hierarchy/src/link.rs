//! One link to a lower node at run time: how to reach it, whether it is up, its budget and what
//! crosses it, and the cameras it shares.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use media::{StreamId, StreamKind, WallTime};
use serde_json::{Value, json};

use crate::budget::{Budget, LinkRefusal, PullKey, StreamRates};
use crate::catalog::RemoteCamera;
use crate::client::LowerClient;
use crate::config::LowerConfig;
use crate::meter::Meter;

/// What a live stream is expected to need before it was ever measured, kbit/s, unless the
/// link says otherwise (`main_mbps`, `sub_mbps`): a 1080p main stream and a CIF/D1 sub-stream
/// as cameras of this kind send them.
pub const DEFAULT_MAIN_KBPS: u64 = 4096;
/// See [`DEFAULT_MAIN_KBPS`].
pub const DEFAULT_SUB_KBPS: u64 = 512;
/// A camera left out of this many listings over [`MISSING_FOR`] is no longer shared.
pub const MISSING_LISTINGS: u32 = 2;
/// See [`MISSING_LISTINGS`].
pub const MISSING_FOR: Duration = Duration::from_secs(20);
/// A stream admitted for a viewer that never started pulling is released after this long.
const RESERVATION_LIFE: Duration = Duration::from_secs(30);
/// Live pulls measured over the budget for this long are shed (newest first): long enough that
/// one burst of key frames does not cut anyone off, short enough that the link's other users
/// (on a 10 Mbit/s link, the other cameras' viewers) are not starved for long.
pub const OVER_BUDGET_GRACE: Duration = Duration::from_secs(3);

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
    /// What the lower node says each stream needs (its listing, its answers): measured where
    /// the camera's video arrives, so not capped by this link when the link is congested.
    declared: Mutex<HashMap<StreamId, u64>>,
    /// The cameras it shares, by id, from its listings.
    cameras: RwLock<HashMap<String, RemoteCamera>>,
    /// Cameras its latest listings left out, since when and in how many listings.
    missing: Mutex<HashMap<String, (Instant, u32)>>,
    transfers: std::sync::atomic::AtomicU64,
    /// Since when the live pulls have been measured over the budget.
    over_since: Mutex<Option<Instant>>,
    /// What the lower node serves for pulls where that is not the stream asked for (it fell
    /// back to the sub-stream on its own link).
    served: Mutex<HashMap<StreamId, StreamKind>>,
    /// Live pulls shed to bring the link back within its budget, until they stop or a viewer
    /// is admitted to them again.
    shed: Mutex<HashSet<StreamId>>,
    shed_total: std::sync::atomic::AtomicU64,
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
            declared: Mutex::default(),
            cameras: RwLock::default(),
            missing: Mutex::default(),
            transfers: std::sync::atomic::AtomicU64::new(1),
            over_since: Mutex::default(),
            served: Mutex::default(),
            shed: Mutex::default(),
            shed_total: std::sync::atomic::AtomicU64::new(0),
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
        let rates: Vec<(StreamId, u64)> = listed
            .values()
            .flat_map(|c| {
                [
                    c.main_kbps.map(|k| (StreamId::main(c.id.as_str()), k)),
                    c.sub_kbps.map(|k| (StreamId::new(c.id.as_str(), StreamKind::Sub), k)),
                ]
            })
            .flatten()
            .collect();
        w.extend(listed);
        drop((w, missing));
        for (stream, kbps) in rates {
            self.declare(&stream, kbps);
        }
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

    /// What `camera`'s streams are expected to need: what the lower node says (measured where
    /// the video arrives, over whole GOPs), else what this link last measured, else the link's
    /// configured guess.
    fn rates(&self, camera: &str) -> StreamRates {
        let has_sub = self.camera(camera).is_some_and(|c| c.has_sub);
        let (h, d) = (lock(&self.history), lock(&self.declared));
        let known = |s: StreamId| d.get(&s).or_else(|| h.get(&s)).copied();
        StreamRates {
            main_kbps: known(StreamId::main(camera)).unwrap_or(self.config.main_kbps),
            sub_kbps: has_sub.then(|| known(StreamId::new(camera, StreamKind::Sub)).unwrap_or(self.config.sub_kbps)),
        }
    }

    /// The lower node says `stream` needs `kbps`: later admissions expect it, and a pull of it
    /// running now counts at least that (which may make it one to shed, see [`Link::tick`]).
    pub fn declare(&self, stream: &StreamId, kbps: u64) {
        let kbps = kbps.min(crate::catalog::MAX_STREAM_KBPS);
        lock(&self.declared).insert(stream.clone(), kbps);
        lock(&self.budget).declared(&PullKey::Live(stream.clone()), kbps);
    }

    /// What a recording of `camera`'s `kind` stream needs at 1×, kbit/s: its live stream's
    /// last measured rate, or the default.
    pub fn recorded_kbps(&self, camera: &str, kind: StreamKind) -> u64 {
        let rates = self.rates(camera);
        match kind {
            StreamKind::Main | StreamKind::H264 => rates.main_kbps,
            StreamKind::Sub => rates.sub_kbps.unwrap_or(self.config.sub_kbps),
        }
    }

    /// Admits a live view of `camera`'s `want` stream for `who` (see [`Budget::admit_live`]);
    /// a stream that is not crossing yet is reserved for the pull the view starts.
    pub fn admit_live(&self, camera: &str, want: StreamKind, who: &str) -> Result<StreamKind, LinkRefusal> {
        let rates = self.rates(camera);
        let mut b = lock(&self.budget);
        let kind = b.admit_live(camera, want, rates)?;
        let stream = StreamId::new(camera, kind);
        // Admitted again after being shed: the pull may resume.
        lock(&self.shed).remove(&stream);
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
            StreamKind::Main | StreamKind::H264 => rates.main_kbps,
            StreamKind::Sub => rates.sub_kbps.unwrap_or(self.config.sub_kbps),
        };
        lock(&self.budget).count(key, kbps);
        lock(&self.reserved).remove(stream).map(|(_, who)| who)
    }

    /// A pull of `stream` stopped: it no longer counts, and its measured rate is kept for the
    /// next admission.
    pub fn pull_stopped(&self, stream: &StreamId) {
        let key = PullKey::Live(stream.clone());
        lock(&self.budget).release(&key);
        lock(&self.shed).remove(stream);
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

    /// The lower node answered this node's pull of `stream` with its `kind` stream.
    pub fn set_served(&self, stream: &StreamId, kind: StreamKind) {
        let mut s = lock(&self.served);
        if kind == stream.kind() {
            s.remove(stream);
        } else {
            s.insert(stream.clone(), kind);
        }
    }

    /// What the lower node serves for `stream` when that is another stream of the camera.
    pub fn served(&self, stream: &StreamId) -> Option<StreamKind> {
        lock(&self.served).get(stream).copied()
    }

    /// True when `stream` was shed to keep the link within its budget: its pull must stop.
    pub fn is_shed(&self, stream: &StreamId) -> bool {
        lock(&self.shed).contains(stream)
    }

    /// The rate a transfer may use now, kbit/s: what it was admitted at plus whatever the
    /// budget has spare.
    pub fn transfer_kbps(&self, key: &PullKey) -> u64 {
        let b = lock(&self.budget);
        b.admitted_kbps(key).saturating_add(b.spare_kbps())
    }

    /// Once a second: each pull's measured rate into the budget, reservations no viewer used
    /// released, and — when live pulls have been over the budget for [`OVER_BUDGET_GRACE`] —
    /// the newest of them shed. Returns the streams shed now: their viewers are to be told.
    pub fn tick(&self) -> Vec<StreamId> {
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
        let excess = b.excess_live();
        let mut over_since = lock(&self.over_since);
        if excess.is_empty() {
            *over_since = None;
            return Vec::new();
        }
        let since = *over_since.get_or_insert(now);
        if now.duration_since(since) < OVER_BUDGET_GRACE {
            return Vec::new();
        }
        *over_since = None;
        // Released at once, so the next admission sees the room they leave.
        for s in &excess {
            b.release(&PullKey::Live(s.clone()));
        }
        drop(b);
        lock(&self.shed).extend(excess.iter().cloned());
        self.shed_total
            .fetch_add(excess.len() as u64, std::sync::atomic::Ordering::Relaxed);
        excess
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
            "shed": self.shed_total.load(std::sync::atomic::Ordering::Relaxed),
            "users": users,
            "state": state,
            "since": since.map(WallTime::to_rfc3339),
            "reason": reason,
            "cameras": self.cameras.read().unwrap_or_else(|p| p.into_inner()).len(),
            "bytes": lock(&self.meters).0.total(),
        })
    }
}
