//! This node as one member of its level's cluster (`[cluster]`, `docs/cluster.md`): it joins
//! through etcd, records exactly the cameras it owns (weighted rendezvous over the live
//! members, claimed in etcd under its lease), hands a camera over at a segment boundary when
//! another member should record it, and stops writing the moment its lease may have expired.
//!
//! The decisions are the `cluster` crate's (sans-IO assignment, claims planned from the view,
//! recording gates); this module is the loop that applies them to the hub and the recorder:
//! every round it reads the membership's view, pins the streams this member should record (so
//! their pulls are warm before the claim), claims or releases in etcd, and opens or closes the
//! cameras' gates. The etcd calls block, so the loop is a thread of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::AppState;
use cluster::claims::{Claims, Step, reconcile};
use cluster::{Etcd, Gates, LeaseState, MemberInfo, Membership, View};
use media::StreamId;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::config::ClusterConfig;

/// How often the loop looks at the view.
const ROUND: Duration = Duration::from_millis(250);
/// How long a handover waits for the next key frame before it releases the camera anyway (a
/// camera sending none: nothing is being written).
const HANDOVER_WAIT: Duration = Duration::from_secs(3);

/// What the loop keeps between rounds.
#[derive(Default)]
struct Round {
    claims: Claims,
    /// The lease the claims were made under.
    lease: Option<i64>,
    /// Streams pinned here (pulled without viewers), by camera.
    pinned: BTreeSet<String>,
    /// Cameras being handed over, since when.
    closing: HashMap<String, Instant>,
    /// The last etcd error of a claim or release.
    error: Option<String>,
    /// The view the round saw.
    view: Option<View>,
    /// Holds known to be in etcd (so one missing there was released elsewhere, and one
    /// missing here was released here).
    synced_holds: BTreeSet<String>,
    /// Rounds since the holds were last synced.
    rounds: u32,
    /// The users-and-grants file as last agreed with etcd.
    synced_directory: Option<AgreedDirectory>,
    /// Etcd's revision when the holds and the directory were last synced without error (0:
    /// not yet, or an error since).
    shared_synced_at: i64,
    /// This member drained itself because every data disk is full.
    disk_drained: bool,
    /// Checks in a row that found every disk with no room at all.
    disks_full_for: u32,
}

/// The directory file as a member last agreed on it with etcd: the base of a merge when both
/// changed since.
struct AgreedDirectory {
    /// The file's bytes.
    bytes: Vec<u8>,
    /// The etcd key's revision that held them.
    revision: i64,
}

/// This node's membership of its cluster.
pub struct ClusterNode {
    config: ClusterConfig,
    cluster: String,
    etcd: Etcd,
    membership: Membership,
    gates: Arc<Gates>,
    round: Mutex<Round>,
    state: Arc<AppState>,
    hub: Arc<hub::Hub>,
    stop: AtomicBool,
    /// The cluster's node credential (read from etcd once it answers).
    credential: std::sync::OnceLock<String>,
    /// For asking the other members.
    peers: ureq::Agent,
    /// The users, grants and API tokens made through the API (shared with the other members),
    /// and the config's entries they must agree with.
    directory: Option<(auth::DirectoryFile, auth::Directory)>,
    /// Where other members' segments are fetched to for a playback.
    cache_dir: std::path::PathBuf,
    /// Who holds each camera's claim, as etcd said last round (what live pulls route by: a
    /// claim is held by one member at most, so two members never relay a camera from each
    /// other).
    holders: std::sync::RwLock<BTreeMap<String, String>>,
    /// The links live pulls relay across, one per member.
    links: Mutex<HashMap<String, Arc<hierarchy::link::Link>>>,
    /// The node's pulls (rerouted when a camera's holder changes).
    pulls: std::sync::OnceLock<Arc<crate::sources::Pulls>>,
    /// How pulls are made (watchdog, retries, frame size).
    ingest: ingest::rtsp::PullSettings,
    /// The records of closed segments fetched from other members (scanned once).
    fetched: Mutex<HashMap<std::path::PathBuf, store::SegmentRecord>>,
}

impl ClusterNode {
    /// Joins cluster `cluster` (the level's `[node] id`) as `config` says. Recording waits for
    /// [`ClusterNode::spawn`].
    pub fn join(
        config: &ClusterConfig,
        cluster: &str,
        state: Arc<AppState>,
        hub: Arc<hub::Hub>,
        directory: Option<(auth::DirectoryFile, auth::Directory)>,
        cache_dir: std::path::PathBuf,
        ingest: ingest::rtsp::PullSettings,
    ) -> Arc<ClusterNode> {
        let etcd = Etcd::new(&config.etcd, Duration::from_millis(800));
        let peers = cluster::peers::agent(Duration::from_millis(500));
        let membership = Membership::join_confirming(
            etcd.clone(),
            cluster,
            MemberInfo {
                name: config.name.clone(),
                url: config.advertise_url.clone(),
                weight: config.weight,
            },
            config.lease.as_secs().clamp(2, 60) as u32,
            Box::new(move |others| cluster::peers::all_confirm_down(&peers, others)),
        );
        let gates = Arc::new(Gates::new(membership.clock().clone()));
        info!(cluster, member = %config.name, etcd = ?config.etcd, "joining the cluster");
        Arc::new(ClusterNode {
            config: config.clone(),
            cluster: cluster.to_owned(),
            etcd,
            membership,
            gates,
            round: Mutex::new(Round::default()),
            state,
            hub,
            stop: AtomicBool::new(false),
            credential: std::sync::OnceLock::new(),
            peers: cluster::peers::agent(Duration::from_secs(5)),
            directory,
            cache_dir,
            holders: std::sync::RwLock::default(),
            links: Mutex::default(),
            pulls: std::sync::OnceLock::new(),
            ingest,
            fetched: Mutex::default(),
        })
    }

    /// Routes `pulls`: a camera another member holds is relayed from it, so the camera has one
    /// session (its recorder's) whatever the members its viewers watch it through.
    pub fn route(self: &Arc<Self>, pulls: &Arc<crate::sources::Pulls>) {
        let me = Arc::downgrade(self);
        pulls.set_route(Arc::new(move |stream: &StreamId| me.upgrade()?.relay_source(stream)));
        let _ = self.pulls.set(pulls.clone());
    }

    /// Where `stream` is relayed from: the member holding its camera's claim, when that is
    /// another live member.
    fn relay_source(&self, stream: &StreamId) -> Option<(String, crate::sources::Source)> {
        let holder = self
            .holders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream.camera())
            .cloned()?;
        if holder == self.config.name {
            return None;
        }
        let credential = self.credential.get()?;
        let member = self.membership.view().members.into_iter().find(|m| m.name == holder)?;
        let url = url::Url::parse(&member.url).ok()?;
        let link = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{}|{}", member.name, member.url))
            .or_insert_with(|| {
                hierarchy::link::Link::new(
                    hierarchy::config::LowerConfig {
                        id: format!("cluster:{}", member.name),
                        url: Some(url.clone()),
                        token: credential.clone(),
                        // Members of one level share a machine room: no budget between them.
                        link_kbps: 100_000_000,
                        org: String::new(),
                        dial: hierarchy::config::Dial::Down,
                        main_kbps: 0,
                        sub_kbps: 0,
                    },
                    hierarchy::client::LowerClient::direct(&member.name, url, credential).shared(),
                )
            })
            .clone();
        Some((
            holder,
            crate::sources::Source::Remote(hierarchy::remote::RemoteSource {
                link,
                stream: stream.clone(),
                watchdog: self.ingest.watchdog.max(Duration::from_secs(6)),
                retry: self.ingest.retry,
                max_frame_bytes: self.ingest.max_frame_bytes,
            }),
        ))
    }

    /// Who holds each camera's claim now, from etcd; reroutes live pulls when that changed.
    /// The claims are read again only when etcd's revision moved: at 25,000 cameras they are
    /// ~1.5 MB, and in a settled cluster nothing changes between rounds.
    fn refresh_holders(&self, revision: Option<i64>, read_at: &mut i64) {
        let Some(revision) = revision.filter(|r| r != read_at) else {
            return;
        };
        let prefix = cluster::keys::owner(&self.cluster, "");
        let Ok(kvs) = self.etcd.prefix(&prefix) else { return };
        // The revision from before the read: a change made meanwhile is read at the next round.
        *read_at = revision;
        let now: BTreeMap<String, String> = kvs
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.key.strip_prefix(&prefix)?.to_owned(),
                    String::from_utf8(kv.value.clone()).ok()?,
                ))
            })
            .collect();
        let changed = {
            let mut h = self.holders.write().unwrap_or_else(|p| p.into_inner());
            let changed = *h != now;
            *h = now;
            changed
        };
        if changed && let Some(p) = self.pulls.get() {
            p.reroute();
        }
    }

    /// The recording gates the recorded streams' sinks consult.
    pub fn gates(&self) -> &Arc<Gates> {
        &self.gates
    }

    /// Runs the loop on a thread of its own until [`ClusterNode::leave`]; it needs the tokio
    /// runtime it is started from (pinning a stream starts its pull).
    pub fn spawn(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        let rt = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("cluster-claims".into())
            .spawn(move || {
                let _rt = rt.enter();
                let mut holders_read_at = 0;
                while !me.stop.load(Ordering::Acquire) {
                    // Etcd's revision before the round's own reads and writes: what the round
                    // and the holders skip when nothing has changed since they last read.
                    let revision = me.etcd.revision().ok();
                    me.round(revision);
                    me.refresh_holders(revision, &mut holders_read_at);
                    std::thread::sleep(ROUND);
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the cluster thread: {e}"))
    }

    /// Leaves: stops recording, gives up the claims and the lease (the others take the
    /// cameras over at once instead of after the lease's TTL).
    pub fn leave(&self) {
        self.stop.store(true, Ordering::Release);
        self.membership.stop();
        self.gates.close_all();
        let mut r = self.lock();
        let held: Vec<String> = r.claims.held().map(|(c, _)| c.to_owned()).collect();
        if let Some(lease) = r.lease {
            let steps: Vec<Step> = held.into_iter().map(Step::Release).collect();
            let _ = reconcile(
                &self.etcd,
                &self.cluster,
                &self.config.name,
                lease,
                &mut r.claims,
                &steps,
            );
            let _ = self.etcd.revoke(lease);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cameras of the level this node records when it owns them: its recorded cameras.
    fn cameras(&self) -> Vec<String> {
        self.state
            .cameras
            .snapshot()
            .values()
            .filter(|c| c.info.record && c.remote.is_none())
            .map(|c| c.info.id.clone())
            .collect()
    }

    fn set_pinned(&self, camera: &str, pinned: bool) {
        if let Some(ch) = self.hub.channel(&StreamId::main(camera)) {
            ch.set_pinned(pinned);
        }
    }

    /// One round: the view, then claims and releases, gates and pins; every fourth, the holds
    /// and the directory (`revision`: etcd's, read before the round).
    fn round(&self, revision: Option<i64>) {
        if self.credential.get().is_none() {
            match cluster::peers::credential(&self.etcd, &self.cluster) {
                Ok(c) => {
                    let _ = self.credential.set(c);
                }
                Err(e) => warn!("the cluster's node credential is not readable yet: {e}"),
            }
        }
        let view = self.membership.view();
        let me = self.config.name.as_str();
        let cameras = self.cameras();
        let mut r = self.lock();
        let r = &mut *r;
        let lease = match view.lease {
            LeaseState::Held { id, .. } => Some(id),
            LeaseState::Unreachable { .. } => r.lease,
            LeaseState::Starting | LeaseState::Lost { .. } => None,
        };
        if lease != r.lease {
            if r.lease.is_some() {
                warn!(
                    member = me,
                    "the lease changed or was lost: every camera's recording stops until claimed again"
                );
            }
            // Claims die with their lease.
            self.gates.close_all();
            r.claims = Claims::default();
            r.closing.clear();
            r.lease = lease;
        }
        let owned = view.owned_by(me, &cameras);
        let steps = r.claims.plan_owned(&view, &owned);
        let now = Instant::now();
        let mut error = None;
        if let Some(lease) = r.lease {
            for step in steps {
                match &step {
                    Step::Release(c) => {
                        let since = *r.closing.entry(c.clone()).or_insert(now);
                        if !self.gates.close_at_key(c) && now.duration_since(since) < HANDOVER_WAIT {
                            continue;
                        }
                        self.gates.close(c);
                        r.closing.remove(c);
                        // Where the next owner starts: the key frame this member stopped before.
                        if let Some(t) = self.gates.camera(c).ended_at()
                            && let Err(e) = self.etcd.put(
                                &cluster::keys::handover(&self.cluster, c),
                                t.to_string().as_bytes(),
                                lease,
                            )
                        {
                            warn!(camera = %c, "the handover instant was not written: {e}");
                        }
                        info!(camera = %c, member = me, "handing the camera over");
                    }
                    Step::Claim(_) => {}
                }
                if let Err(e) = reconcile(
                    &self.etcd,
                    &self.cluster,
                    me,
                    lease,
                    &mut r.claims,
                    std::slice::from_ref(&step),
                ) {
                    error = Some(e.to_string());
                    continue;
                }
                if let Step::Claim(c) = &step
                    && let Some(fence) = r.claims.fence(c)
                {
                    let from = self.handed_over_at(c);
                    info!(camera = %c, member = me, fence, from, "recording the camera (claimed)");
                    self.gates.open(c, fence, from);
                }
            }
        }
        // Pulled here: what this member should record (warm before its claim succeeds) and
        // what it still holds.
        let held = matches!(view.lease, LeaseState::Held { .. } | LeaseState::Unreachable { .. });
        let want: BTreeSet<String> = cameras
            .iter()
            .filter(|c| (held && owned.contains(c.as_str())) || r.claims.fence(c).is_some())
            .cloned()
            .collect();
        for c in want.difference(&r.pinned) {
            self.set_pinned(c, true);
        }
        for c in r.pinned.difference(&want) {
            self.set_pinned(c, false);
        }
        r.pinned = want;
        if error.is_some() {
            r.error = error;
        }
        r.rounds += 1;
        if r.rounds.is_multiple_of(4) && matches!(view.lease, LeaseState::Held { .. }) {
            // Nothing changed in etcd or here since the last sync that left nothing to do:
            // the holds and the directory are not read again (thousands of holds, hundreds
            // of users, every second, on every member).
            let settled = revision.is_some_and(|rev| rev == r.shared_synced_at) && self.shared_unchanged_here(r);
            if !settled {
                let holds = self.sync_holds(&mut r.synced_holds);
                if let Err(e) = &holds {
                    warn!("holds not synced with the cluster: {e}");
                }
                let directory = self.sync_directory(&mut r.synced_directory);
                if let Err(e) = &directory {
                    warn!("users, grants and API tokens not synced with the cluster: {e}");
                }
                // The revision from before the reads: a change made meanwhile, or by these
                // syncs' own writes, is read at the next sync.
                r.shared_synced_at = match (holds, directory, revision) {
                    (Ok(()), Ok(()), Some(rev)) => rev,
                    _ => 0,
                };
            }
            self.drain_when_disks_full(&mut r.disk_drained, &mut r.disks_full_for);
        }
        r.view = Some(view);
    }

    /// Whether this member's holds and directory file are as they were when last synced: what
    /// the API changes here must go up even when etcd has not moved.
    fn shared_unchanged_here(&self, r: &Round) -> bool {
        let holds: BTreeSet<String> = self.state.holds.list().into_iter().map(|h| h.id).collect();
        let directory = match &self.directory {
            None => true,
            Some((file, _)) => {
                let local = file.raw().ok().flatten();
                match (&r.synced_directory, local) {
                    (Some(a), Some(l)) => a.bytes == l,
                    (None, None) => true,
                    _ => false,
                }
            }
        };
        holds == r.synced_holds && directory
    }

    /// A member whose every data disk is blocked (full of evidence retention may not delete,
    /// or of something else) records nothing: it drains itself, so the others take its cameras
    /// at their next round instead of it recording into errors, and undrains once a disk has
    /// room again. A drain an operator set (another reason) is left alone.
    fn drain_when_disks_full(&self, drained: &mut bool, full_for: &mut u32) {
        let disks = self.state.store.disks();
        // Blocked by retention (full of evidence), or with no room at all for three checks in
        // a row (filled by something else, so that even retention cannot write its index).
        let no_room = disks.iter().all(|d| d.space().is_ok_and(|(free, _)| free < NO_ROOM));
        *full_for = if no_room { *full_for + 1 } else { 0 };
        let blocked = !disks.is_empty() && (disks.iter().all(|d| d.is_blocked()) || *full_for >= 3);
        if blocked == *drained {
            return;
        }
        let me = &self.config.name;
        let result = if blocked {
            warn!(member = %me, "every data disk is full: recording is blocked here, so this member gives its cameras to the others");
            cluster::membership::set_drained(&self.etcd, &self.cluster, me, true, DISK_FULL)
        } else {
            info!(member = %me, "a data disk has room again: this member takes its share of the cameras back");
            match self.etcd.get(&cluster::keys::drain(&self.cluster, me)) {
                Ok(Some(kv)) if kv.value != DISK_FULL.as_bytes() => Ok(()),
                Ok(_) => cluster::membership::set_drained(&self.etcd, &self.cluster, me, false, ""),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => *drained = blocked,
            Err(e) => warn!(member = %me, "the drain for a full disk was not written: {e}"),
        }
    }

    /// Users, departments, groups, grants and API tokens made through the API are the
    /// cluster's: the directory file is kept in etcd (`/sharpeye/<node id>/directory`). A member
    /// whose file changed since it last agreed with etcd puts it there, compare-and-swap on the
    /// key's revision; one whose file did not takes etcd's (its reload picks it up within a
    /// second, as it does the CLI's changes). When both changed (two administrators working
    /// through two members between two syncs) the member merges entry by entry against the
    /// version they agreed on ([`auth::directory_merge`]), so neither change is lost; an entry
    /// changed differently on both sides keeps etcd's, and is named in the log. A member
    /// joining takes the cluster's.
    fn sync_directory(&self, agreed: &mut Option<AgreedDirectory>) -> Result<(), String> {
        let Some((file, config)) = &self.directory else {
            return Ok(());
        };
        let key = cluster::keys::directory(&self.cluster);
        let local = file.raw().map_err(|e| e.to_string())?;
        let (shared, shared_rev) = match self.etcd.get(&key).map_err(|e| e.to_string())? {
            Some(kv) => (Some(kv.value), kv.mod_revision),
            None => (None, 0),
        };
        let agree = |bytes: &[u8], revision| {
            Some(AgreedDirectory {
                bytes: bytes.to_vec(),
                revision,
            })
        };
        let put = |bytes: &[u8], seen| self.etcd.put_if_unchanged(&key, bytes, seen).map_err(|e| e.to_string());
        let take = |bytes: &[u8]| {
            file.replace_raw_if(config, local.as_deref(), bytes)
                .map_err(|e| e.to_string())
        };
        let (Some(base), Some(theirs)) = (agreed.as_ref(), shared.as_deref()) else {
            // First sync, or the key is gone from etcd: the cluster's wins if it has one;
            // otherwise this member's goes up.
            match (local.as_deref(), shared.as_deref()) {
                (_, Some(s)) if local.as_deref() == Some(s) => *agreed = agree(s, shared_rev),
                (_, Some(s)) => {
                    if take(s)? {
                        info!("users, grants and API tokens taken from the cluster");
                        *agreed = agree(s, shared_rev);
                    }
                }
                (Some(l), None) => {
                    if let Some(rev) = put(l, 0)? {
                        *agreed = agree(l, rev);
                    }
                }
                (None, None) => {}
            }
            return Ok(());
        };
        let changed_here = local.as_deref() != Some(&base.bytes[..]);
        let changed_there = shared_rev != base.revision;
        match (changed_here, changed_there) {
            (false, false) => {}
            (true, false) => {
                // Written by the API since: up it goes, unless another member was quicker
                // (then the next sync merges).
                if let Some(l) = local.as_deref()
                    && let Some(rev) = put(l, base.revision)?
                {
                    *agreed = agree(l, rev);
                }
            }
            (false, true) => {
                if take(theirs)? {
                    info!("users, grants and API tokens taken from the cluster");
                    *agreed = agree(theirs, shared_rev);
                }
            }
            (true, true) => {
                let parse = |b: &[u8], whose: &str| {
                    serde_json::from_slice::<auth::Directory>(b)
                        .map_err(|e| format!("the directory {whose} is not readable ({e}); nothing merged"))
                };
                let ours = match local.as_deref() {
                    Some(l) => parse(l, "in this member's file")?,
                    None => auth::Directory::default(),
                };
                let merged = auth::directory_merge::merge3(
                    &parse(&base.bytes, "last agreed")?,
                    &ours,
                    &parse(theirs, "in etcd")?,
                );
                for c in &merged.conflicts {
                    warn!(entry = %c, "changed through this member and, differently, through another at the same time: the other's change is kept; check it");
                }
                let bytes = serde_json::to_vec_pretty(&merged.directory).map_err(|e| e.to_string())?;
                match take(&bytes) {
                    Ok(true) => {
                        info!(
                            conflicts = merged.conflicts.len(),
                            "users, grants and API tokens merged with changes made through another member"
                        );
                        // Etcd moved on again meanwhile: the next sync merges from the same base.
                        if let Some(rev) = put(&bytes, shared_rev)? {
                            *agreed = agree(&bytes, rev);
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        // The merge breaks a reference (a grant to a user removed through the
                        // other member, say): the cluster's stands.
                        warn!(
                            "this member's changes to users, grants and API tokens could not be merged with another member's and are dropped for the cluster's: {e}"
                        );
                        if take(theirs)? {
                            *agreed = agree(theirs, shared_rev);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Holds are the cluster's, not a member's: one placed through any member protects the
    /// camera's recordings on every member (each one's retention reads its own holds). Kept in
    /// etcd (`/sharpeye/<node id>/holds/<id>`, no lease); each member adds what it finds there
    /// and puts there what was placed through it; a hold released through one member is
    /// released on all, and leaves a tombstone (`released/<id>`) so that a member that was
    /// down meanwhile releases it too rather than sharing it again as one it placed.
    fn sync_holds(&self, synced: &mut BTreeSet<String>) -> Result<(), String> {
        let prefix = cluster::keys::holds(&self.cluster);
        let in_etcd: BTreeMap<String, store::holds::Hold> = self
            .etcd
            .prefix(&prefix)
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|kv| {
                let id = kv.key.strip_prefix(&prefix)?;
                match serde_json::from_slice::<store::holds::Hold>(&kv.value) {
                    Ok(h) if h.id == id && h.start_us < h.end_us => Some((id.to_owned(), h)),
                    _ => {
                        warn!(key = %kv.key, "a hold in etcd is not readable; left as it is");
                        None
                    }
                }
            })
            .collect();
        let holds = &self.state.holds;
        let local: BTreeMap<String, store::holds::Hold> = holds.list().into_iter().map(|h| (h.id.clone(), h)).collect();
        for (id, h) in &local {
            if in_etcd.contains_key(id) {
                synced.insert(id.clone());
            } else if synced.remove(id) {
                info!(hold = %id, camera = %h.camera, "hold released through another member");
                holds.release(id).map_err(|e| e.to_string())?;
            } else if let Some(t) = self
                .etcd
                .get(&cluster::keys::released_hold(&self.cluster, id))
                .map_err(|e| e.to_string())?
            {
                info!(hold = %id, camera = %h.camera, released = %String::from_utf8_lossy(&t.value), "hold released through another member while this one was away");
                holds.release(id).map_err(|e| e.to_string())?;
            } else {
                let body = serde_json::to_vec(h).map_err(|e| e.to_string())?;
                self.etcd
                    .put(&format!("{prefix}{id}"), &body, 0)
                    .map_err(|e| e.to_string())?;
                synced.insert(id.clone());
            }
        }
        for (id, h) in in_etcd {
            if local.contains_key(&id) {
                continue;
            }
            if synced.remove(&id) {
                // Released here: released everywhere. The tombstone goes first, so that no
                // moment has the hold neither in etcd nor marked released.
                let tombstone = json!({ "member": self.config.name, "at_us": media::WallTime::now().as_micros() });
                self.etcd
                    .put(
                        &cluster::keys::released_hold(&self.cluster, &id),
                        tombstone.to_string().as_bytes(),
                        0,
                    )
                    .map_err(|e| e.to_string())?;
                self.etcd.delete(&format!("{prefix}{id}")).map_err(|e| e.to_string())?;
            } else {
                info!(hold = %id, camera = %h.camera, "hold placed through another member");
                holds.adopt(h).map_err(|e| e.to_string())?;
                synced.insert(id);
            }
        }
        Ok(())
    }
}

fn lease_json(lease: &LeaseState) -> Value {
    match lease {
        LeaseState::Starting => json!({ "state": "starting" }),
        LeaseState::Held { id, ttl } => json!({ "state": "held", "id": id.to_string(), "ttl_s": ttl }),
        LeaseState::Unreachable { since, why, confirmed } => json!({
            "state": if *confirmed { "etcd_down" } else { "unreachable" },
            "etcd_silent_s": since.elapsed().as_secs_f64(),
            "why": why,
            "others_confirm_etcd_down": confirmed,
        }),
        LeaseState::Lost { why } => json!({ "state": "lost", "why": why }),
    }
}

/// Less free space than this on a disk is no room at all: the recorder keeps its last MiB for
/// the index.
const NO_ROOM: u64 = 2 << 20;

/// Why a member drained itself.
const DISK_FULL: &str = "every data disk is full (recording blocked)";

/// How long a fetched segment is kept: long enough for the playback it was fetched for.
const FETCHED_KEEP: Duration = Duration::from_secs(15 * 60);

impl ClusterNode {
    /// Member `m`'s segments of `stream` in `[start, end)`, fetched into the cache and scanned.
    /// A closed segment is fetched once and kept (for [`FETCHED_KEEP`] after it was fetched);
    /// one still being written is fetched afresh each time, since it grows.
    fn member_segments(
        &self,
        m: &MemberInfo,
        credential: &str,
        stream: &StreamId,
        start: media::WallTime,
        end: media::WallTime,
    ) -> Result<Vec<(std::path::PathBuf, store::SegmentRecord)>, String> {
        let (camera, kind) = (stream.camera(), stream.kind().as_str());
        let playlist = format!(
            "/api/v1/cameras/{camera}/playback.m3u8?start={}&end={}&stream={kind}",
            start.to_rfc3339().replace('+', "%2B"),
            end.to_rfc3339().replace('+', "%2B")
        );
        let me = self.config.name.as_str();
        let Some(text) =
            cluster::peers::get_bytes(&self.peers, m, &playlist, me, credential, 1 << 20).map_err(|e| e.to_string())?
        else {
            return Ok(Vec::new());
        };
        let dir = self.cache_dir.join(&m.name).join(camera).join(kind);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|md| md.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if old.is_some_and(|age| age > FETCHED_KEEP) {
                    let _ = std::fs::remove_file(e.path());
                    self.fetched.lock().unwrap_or_else(|p| p.into_inner()).remove(&e.path());
                }
            }
        }
        let mut out = Vec::new();
        for (seq, t) in cluster::peers::playlist_segments(&String::from_utf8_lossy(&text)) {
            // A closed segment (it ends with its sample table) never changes: fetched once.
            let closed = dir.join(format!("{seq}-{t}-closed.mp4"));
            let known = self
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&closed)
                .cloned();
            if let Some(r) = known.filter(|_| closed.exists()) {
                out.push((closed, r));
                continue;
            }
            let path = format!("/api/v1/cameras/{camera}/segments/{seq}.mp4?t={t}&stream={kind}");
            let Some(bytes) =
                cluster::peers::get_bytes(&self.peers, m, &path, me, credential, 1 << 30).map_err(|e| e.to_string())?
            else {
                continue;
            };
            let nonce = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let mut file = dir.join(format!("{seq}-{t}-{nonce}.mp4"));
            let tmp = file.with_extension("part");
            std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::rename(&tmp, &file))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let scan = match store::segment_file::scan_file(&file) {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&file);
                    return Err(format!("{}'s segment {seq} is not readable: {e}", m.name));
                }
            };
            if scan.table_end.is_some() && std::fs::rename(&file, &closed).is_ok() {
                file = closed.clone();
            }
            match scan.to_record() {
                Some(r) if r.stream == *stream => {
                    if file == closed {
                        self.fetched
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(closed.clone(), r.clone());
                    }
                    out.push((file, r))
                }
                _ => {
                    let _ = std::fs::remove_file(&file);
                }
            }
        }
        Ok(out)
    }
}

impl api::cluster::ClusterAccess for ClusterNode {
    fn status(&self) -> Value {
        let cameras = self.cameras();
        let r = self.lock();
        let Some(view) = &r.view else {
            return json!({ "state": "starting", "cluster": self.cluster, "name": self.config.name, "members": [] });
        };
        let mut owned: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for c in &cameras {
            if let Some(o) = view.owner_of(c) {
                owned.entry(o).or_default().push(c);
            }
        }
        let members: Vec<Value> = view
            .members
            .iter()
            .map(|m| {
                let cams = owned.get(m.name.as_str()).cloned().unwrap_or_default();
                json!({
                    "name": m.name,
                    "url": m.url,
                    "weight": m.weight,
                    "cameras": cams,
                    "load": cams.len(),
                    "me": m.name == self.config.name,
                    "drained": view.drained.contains(&m.name),
                })
            })
            .collect();
        let held: Vec<&str> = r.claims.held().map(|(c, _)| c).collect();
        json!({
            "state": if self.degraded_in(view).is_some() { "degraded" } else { "ok" },
            "cluster": self.cluster,
            "name": self.config.name,
            "advertise_url": self.config.advertise_url,
            "lease": lease_json(&view.lease),
            "lease_left_s": self.gates.lease().left(Instant::now()).as_secs_f64(),
            "etcd": self.config.etcd,
            "etcd_reachable": view.etcd_reachable,
            "members": members,
            "claimed": held,
            "recording": self.gates.writing(),
            "handing_over": r.closing.keys().collect::<Vec<_>>(),
            "cameras": cameras.len(),
            "unowned": cameras.iter().filter(|c| view.owner_of(c).is_none()).count(),
            "members_down": view.down(),
            "last_error": r.error,
        })
    }

    fn degraded(&self) -> Option<String> {
        let r = self.lock();
        r.view.as_ref().and_then(|v| self.degraded_in(v))
    }

    fn etcd_reachable(&self) -> bool {
        self.membership.view().etcd_reachable
    }

    fn node_caller(&self, token: &str, member: Option<&str>) -> Option<String> {
        let ours = self.credential.get()?;
        // Constant time: the comparison must not tell how much of a guess was right.
        let same =
            token.len() == ours.len() && token.bytes().zip(ours.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        // The name is for the audit log only; a live relay's client does not send it.
        let member = member
            .map(str::trim)
            .filter(|m| !m.is_empty() && m.len() <= 64 && m.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or("member");
        same.then(|| member.to_owned())
    }

    fn segments(
        &self,
        stream: &StreamId,
        start: media::WallTime,
        end: media::WallTime,
    ) -> Vec<api::cluster::MemberSegment> {
        self.ask_each(|m, credential| self.member_segments(m, credential, stream, start, end))
            .into_iter()
            .flat_map(|(m, r)| match r {
                Ok(v) => v.into_iter().map(|(p, r)| (m.name.clone(), p, r)).collect(),
                Err(e) => {
                    warn!(camera = %stream, member = %m.name, "segments not fetched for playback: {e}");
                    Vec::new()
                }
            })
            .collect()
    }

    fn member(&self) -> String {
        self.config.name.clone()
    }

    fn members_down(&self) -> Vec<String> {
        self.membership.view().down()
    }

    fn ask_members(&self, path: &str) -> Vec<(String, Result<Value, String>)> {
        self.ask_each(|m, credential| {
            cluster::peers::get_json(&self.peers, m, path, &self.config.name, credential).map_err(|e| e.to_string())
        })
        .into_iter()
        .map(|(m, r)| (m.name, r))
        .collect()
    }
}

impl ClusterNode {
    /// The other live members.
    fn others(&self) -> Vec<MemberInfo> {
        self.membership
            .view()
            .members
            .into_iter()
            .filter(|m| m.name != self.config.name)
            .collect()
    }

    /// `ask` of every other live member, in parallel (a slow one does not hold up the others),
    /// with the node credential; nothing before the credential is known.
    fn ask_each<T: Send>(&self, ask: impl Fn(&MemberInfo, &str) -> T + Sync) -> Vec<(MemberInfo, T)> {
        let Some(credential) = self.credential.get() else {
            return Vec::new();
        };
        let others = self.others();
        std::thread::scope(|s| {
            let asks: Vec<_> = others
                .into_iter()
                .map(|m| {
                    let ask = &ask;
                    s.spawn(move || {
                        let t = ask(&m, credential);
                        (m, t)
                    })
                })
                .collect();
            asks.into_iter().filter_map(|h| h.join().ok()).collect()
        })
    }
}

impl ClusterNode {
    /// The wall time (µs) the previous owner of `camera` stopped before, if it handed it over
    /// (a member that died says nothing: its key went with its lease).
    fn handed_over_at(&self, camera: &str) -> Option<i64> {
        let kv = self.etcd.get(&cluster::keys::handover(&self.cluster, camera)).ok()??;
        std::str::from_utf8(&kv.value).ok()?.trim().parse().ok()
    }

    fn degraded_in(&self, view: &View) -> Option<String> {
        match &view.lease {
            LeaseState::Held { .. } => None,
            LeaseState::Starting => Some("joining the cluster: etcd has not answered yet".into()),
            LeaseState::Unreachable {
                why, confirmed: true, ..
            } => Some(format!(
                "etcd is down for every member: recording goes on for the cameras each holds, nothing is handed over ({why})"
            )),
            LeaseState::Unreachable { why, .. } => Some(format!(
                "etcd does not answer this member: it records what it holds until its lease would expire ({why})"
            )),
            LeaseState::Lost { why } => Some(format!("this member's lease is lost and it records nothing: {why}")),
        }
    }
}
