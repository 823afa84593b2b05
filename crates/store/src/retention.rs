//! Retention: tier guarantees, evidence holds and disk pressure.
//!
//! A pass over every data directory (see `docs/storage.md`):
//!
//! 1. **Expired**: closed, unheld segments whose end is older than their camera's tier
//!    guarantee are deleted, oldest first, in batches.
//! 2. **Pressure**: while a disk's free space is below its floor (`[retention] min_free`), more
//!    unheld closed segments go, globally oldest first: standard-tier data inside its guarantee,
//!    then key-tier data inside its guarantee. Each such delete breaks a guarantee and raises an
//!    alarm. When only held data (and open segments) remain, the disk is blocked: no new segments
//!    are placed on it and an alarm says why. It unblocks once space is back above the floor.
//!
//! Held data is never deleted; open segments (being written) neither. Deletes use
//! [`crate::Disk::delete`]'s crash-safe order. Time comes from a [`Clock`], so tests run a
//! hundred simulated days in seconds.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use media::{StreamId, WallTime};

use crate::holds::Holds;
use crate::record::SegmentRecord;
use crate::{Disk, Store, StoreError};

pub use media::clock::{Clock, SystemClock};

/// The free-space floor of a disk.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum FreeFloor {
    /// Keep at least this many bytes free.
    Bytes(u64),
    /// Keep at least this percentage of the file system free.
    Percent(f64),
}

impl FreeFloor {
    /// The floor in bytes for a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            FreeFloor::Bytes(b) => b,
            FreeFloor::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

/// Retention tiers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// All video: at least 30 days by the rules.
    Standard,
    /// Key areas and sites: at least 90 days.
    Key,
}

impl Tier {
    /// `standard` or `key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Key => "key",
        }
    }
}

/// What retention enforces.
#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    /// Guarantee of the standard tier.
    pub standard: Duration,
    /// Guarantee of the key tier.
    pub key: Duration,
    /// Cameras in the key tier (all others are standard).
    pub key_cameras: HashSet<String>,
    /// Free-space floor of every disk.
    pub min_free: FreeFloor,
    /// Segments per delete transaction.
    pub batch: usize,
}

impl RetentionPolicy {
    /// The tier of `camera`.
    pub fn tier(&self, camera: &str) -> Tier {
        if self.key_cameras.contains(camera) {
            Tier::Key
        } else {
            Tier::Standard
        }
    }

    /// The guarantee of a tier.
    pub fn guarantee(&self, tier: Tier) -> Duration {
        match tier {
            Tier::Standard => self.standard,
            Tier::Key => self.key,
        }
    }
}

/// Something an operator must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// Disk pressure deleted video that its tier guarantees.
    GuaranteeBroken {
        /// The disk.
        disk: String,
        /// The camera.
        camera: String,
        /// Its tier.
        tier: Tier,
        /// Start of the oldest deleted segment.
        from: WallTime,
        /// End of the newest deleted segment.
        to: WallTime,
        /// How much of the guarantee was lost: the deleted data was this young, µs.
        age_us: i64,
    },
    /// A disk below its floor holds only evidence: recording to it stopped.
    OnlyHeldData {
        /// The disk.
        disk: String,
        /// Free bytes.
        free: u64,
        /// The floor.
        floor: u64,
    },
    /// A blocked disk has space again.
    Unblocked {
        /// The disk.
        disk: String,
    },
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alarm::GuaranteeBroken {
                disk,
                camera,
                tier,
                from,
                to,
                age_us,
            } => write!(
                f,
                "disk {disk} is full: deleted {tier} video of camera {camera} from {} to {} (µs since epoch), only {:.1} days old, inside its guarantee",
                from.as_micros(),
                to.as_micros(),
                *age_us as f64 / 86_400e6,
                tier = tier.as_str()
            ),
            Alarm::OnlyHeldData { disk, free, floor } => write!(
                f,
                "disk {disk} has {free} bytes free, below its floor of {floor}, and holds only held evidence: recording to it has stopped; release holds, add disks or lower [retention] min_free"
            ),
            Alarm::Unblocked { disk } => write!(f, "disk {disk} has space again: recording to it resumes"),
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default)]
pub struct PassReport {
    /// Segments deleted for being past their tier.
    pub expired: usize,
    /// Segments deleted for disk pressure.
    pub pressure: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Alarms raised.
    pub alarms: Vec<Alarm>,
}

fn key(r: &SegmentRecord) -> (StreamId, WallTime, u64) {
    (r.stream.clone(), r.start, r.seq)
}

/// Deletes the expired segments of one disk. Victims of many streams share a delete batch
/// (`policy.batch` segments: two index commits and one directory sync per day directory), so a
/// day of a thousand one-minute cameras is ~150 batches rather than two per camera.
fn expire(
    disk: &Disk,
    holds: &Holds,
    policy: &RetentionPolicy,
    now: WallTime,
    report: &mut PassReport,
) -> Result<(), StoreError> {
    let batch = policy.batch.max(1);
    let mut victims = Vec::with_capacity(batch);
    let flush = |victims: &mut Vec<(StreamId, WallTime, u64)>, report: &mut PassReport| {
        if victims.is_empty() {
            return Ok::<(), StoreError>(());
        }
        report.expired += victims.len();
        report.bytes_freed += disk.delete(victims)?;
        victims.clear();
        Ok(())
    };
    for (stream, _, _) in disk.index().stream_stats()? {
        let guarantee = policy.guarantee(policy.tier(stream.camera()));
        let cutoff = now.add_micros(-(guarantee.as_micros() as i64));
        let mut after = None;
        loop {
            let page = disk.index().oldest(&stream, after, batch)?;
            let Some(last) = page.last() else { break };
            after = Some((last.start, last.seq));
            let mut done = false;
            for r in &page {
                if r.end > cutoff {
                    done = true;
                    break;
                }
                if r.closed && !holds.covers(stream.camera(), r.start, r.end) {
                    victims.push(key(r));
                    if victims.len() >= batch {
                        flush(&mut victims, report)?;
                    }
                }
            }
            if done || page.len() < batch {
                break;
            }
        }
    }
    flush(&mut victims, report)
}

/// The oldest deletable segment of each stream of `tier` on `disk`.
fn oldest_deletable(
    disk: &Disk,
    holds: &Holds,
    policy: &RetentionPolicy,
    tier: Tier,
) -> Result<Vec<SegmentRecord>, StoreError> {
    let mut heads = Vec::new();
    for (stream, _, count) in disk.index().stream_stats()? {
        if count == 0 || policy.tier(stream.camera()) != tier {
            continue;
        }
        let mut after = None;
        'stream: loop {
            let page = disk.index().oldest(&stream, after, 64)?;
            let Some(last) = page.last() else { break };
            after = Some((last.start, last.seq));
            for r in page {
                if r.closed && !holds.covers(stream.camera(), r.start, r.end) {
                    heads.push(r);
                    break 'stream;
                }
            }
        }
    }
    heads.sort_by_key(|r| r.start);
    Ok(heads)
}

/// The free space retention keeps on a disk of `total` bytes: the configured floor, but never
/// less than twice the index's reserve (segment writers stop at the reserve, so a lower floor
/// would let recording stop with nothing deleted). After a write ran out of space (`emergency`)
/// it is at least a twentieth of the disk or 1 GiB, capped at a quarter of the disk: enough for
/// recording to run for a while before the next emergency, on a 24 MB test file system and on a
/// 20 TB array alike.
pub fn effective_floor(configured: u64, total: u64, emergency: bool) -> u64 {
    let mut floor = configured.max(2 * crate::disk::index_reserve(total));
    if emergency {
        floor = floor.max((total / 20).max(1 << 30).min(total / 4));
    }
    floor
}

/// Frees space on one disk under its floor; blocks it if only evidence is left.
fn relieve(
    disk: &Disk,
    holds: &Holds,
    policy: &RetentionPolicy,
    now: WallTime,
    emergency: bool,
    report: &mut PassReport,
) -> Result<(), StoreError> {
    let name = disk.root().display().to_string();
    let (mut free, total) = disk.space()?;
    let floor = effective_floor(policy.min_free.bytes(total), total, emergency);
    'tiers: for tier in [Tier::Standard, Tier::Key] {
        let guarantee = policy.guarantee(tier).as_micros() as i64;
        while free < floor {
            let heads = oldest_deletable(disk, holds, policy, tier)?;
            if heads.is_empty() {
                continue 'tiers;
            }
            // The oldest few across the tier's streams, then look at the space again.
            let victims: Vec<&SegmentRecord> = heads.iter().take(policy.batch.clamp(1, 16)).collect();
            for r in &victims {
                let age = now.micros_since(r.end);
                if age < guarantee {
                    report.alarms.push(Alarm::GuaranteeBroken {
                        disk: name.clone(),
                        camera: r.stream.camera().to_owned(),
                        tier,
                        from: r.start,
                        to: r.end,
                        age_us: age,
                    });
                }
            }
            let keys: Vec<_> = victims.iter().map(|r| key(r)).collect();
            report.pressure += keys.len();
            report.bytes_freed += disk.delete(&keys)?;
            free = disk.space()?.0;
        }
    }
    if free < floor {
        if !disk.is_blocked() {
            disk.set_blocked(true);
            report.alarms.push(Alarm::OnlyHeldData {
                disk: name,
                free,
                floor,
            });
        }
    } else if disk.is_blocked() {
        disk.set_blocked(false);
        report.alarms.push(Alarm::Unblocked { disk: name });
    }
    Ok(())
}

/// One retention pass over every disk of `store` at time `now`. An `emergency` pass (a write ran
/// out of space) frees more than the configured floor: see [`effective_floor`].
pub fn run_pass(
    store: &Store,
    holds: &Holds,
    policy: &RetentionPolicy,
    now: WallTime,
    emergency: bool,
) -> Result<PassReport, StoreError> {
    let mut report = PassReport::default();
    for disk in store.disks() {
        expire(disk, holds, policy, now, &mut report)?;
        relieve(disk, holds, policy, now, emergency, &mut report)?;
    }
    // One alarm per camera and disk per pass is enough for an operator.
    let mut merged: Vec<Alarm> = Vec::new();
    for a in report.alarms.drain(..) {
        match (&a, merged.last_mut()) {
            (
                Alarm::GuaranteeBroken {
                    disk,
                    camera,
                    to,
                    age_us,
                    ..
                },
                Some(Alarm::GuaranteeBroken {
                    disk: d2,
                    camera: c2,
                    to: t2,
                    age_us: a2,
                    ..
                }),
            ) if disk == d2 && camera == c2 => {
                *t2 = (*t2).max(*to);
                *a2 = (*a2).min(*age_us);
            }
            _ => merged.push(a),
        }
    }
    report.alarms = merged;
    Ok(report)
}

/// Wakes the retention thread early (a write hit `ENOSPC`).
#[derive(Default, Debug)]
pub struct Trigger {
    /// (fired, because a write ran out of space)
    fired: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Trigger {
    /// Asks for a pass now.
    pub fn fire(&self) {
        self.fired.lock().unwrap_or_else(|p| p.into_inner()).0 = true;
        self.cv.notify_all();
    }

    /// Asks for a pass now because a write failed for lack of space: that pass frees at least
    /// an emergency margin even if the configured floor is lower.
    pub fn fire_out_of_space(&self) {
        *self.fired.lock().unwrap_or_else(|p| p.into_inner()) = (true, true);
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for a trigger; returns whether the next pass is an emergency.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.fired.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |f| !f.0)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *guard).1
    }
}

/// A recorded alarm, for health and events.
#[derive(Clone, Debug)]
pub struct AlarmRecord {
    /// When it was raised.
    pub at: WallTime,
    /// What.
    pub alarm: Alarm,
}

/// The background retention thread.
pub struct Retention {
    stop: Arc<Mutex<bool>>,
    trigger: Arc<Trigger>,
    alarms: Arc<Mutex<Vec<AlarmRecord>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Alarms kept for health (the newest).
const KEEP_ALARMS: usize = 100;

impl Retention {
    /// Runs a pass every `interval`, or when `store`'s trigger fires.
    pub fn spawn(
        store: Arc<Store>,
        holds: Arc<Holds>,
        policy: RetentionPolicy,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Retention {
        let stop = Arc::new(Mutex::new(false));
        let alarms: Arc<Mutex<Vec<AlarmRecord>>> = Arc::default();
        let trigger = store.trigger().clone();
        let (s, a, t) = (stop.clone(), alarms.clone(), trigger.clone());
        let thread = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || {
                let mut emergency = false;
                loop {
                    if *s.lock().unwrap_or_else(|p| p.into_inner()) {
                        return;
                    }
                    match run_pass(&store, &holds, &policy, clock.now(), emergency) {
                        Ok(r) => {
                            if r.expired + r.pressure > 0 {
                                tracing::info!(
                                    expired = r.expired,
                                    pressure = r.pressure,
                                    freed = r.bytes_freed,
                                    "retention pass"
                                );
                            }
                            let mut list = a.lock().unwrap_or_else(|p| p.into_inner());
                            for alarm in r.alarms {
                                tracing::error!("{alarm}");
                                list.push(AlarmRecord { at: clock.now(), alarm });
                            }
                            let excess = list.len().saturating_sub(KEEP_ALARMS);
                            list.drain(..excess);
                        }
                        Err(e) => tracing::error!("retention pass failed: {e}"),
                    }
                    emergency = t.wait(interval);
                }
            })
            .expect("spawning a thread");
        Retention {
            stop,
            trigger,
            alarms,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Recent alarms, oldest first.
    pub fn alarms(&self) -> Vec<AlarmRecord> {
        self.alarms.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks for a pass now.
    pub fn trigger(&self) {
        self.trigger.fire();
    }

    /// Stops the thread after its current pass.
    pub fn stop(&self) {
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.trigger.fire();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// One tier's use of a disk and what it can keep.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TierUsage {
    /// Bytes of this tier on the disk.
    pub bytes: u64,
    /// Recording rate of the tier's streams on this disk, bytes per day.
    pub bytes_per_day: f64,
    /// The tier's guarantee, days.
    pub guarantee_days: f64,
    /// How many days the disk can actually keep at the current rates (capped at the
    /// guarantee: retention deletes beyond it anyway).
    pub forecast_days: f64,
}

/// A disk's capacity, use and forecast.
#[derive(Clone, Debug)]
pub struct DiskReport {
    /// The data directory.
    pub path: std::path::PathBuf,
    /// File-system size.
    pub total: u64,
    /// Free bytes.
    pub free: u64,
    /// The free-space floor.
    pub floor: u64,
    /// Full of evidence: no new segments.
    pub blocked: bool,
    /// Bytes of segments some hold covers.
    pub held_bytes: u64,
    /// Standard tier.
    pub standard: TierUsage,
    /// Key tier.
    pub key: TierUsage,
}

/// Capacity, use per tier, held bytes and the forecast of every disk.
///
/// The forecast assumes the current rates go on: video space is the disk minus its floor minus
/// held evidence; key-tier video is kept first (disk pressure deletes standard-tier data first),
/// so key days = min(guarantee, space ÷ key rate), and standard days = what is left ÷ standard
/// rate.
pub fn disk_reports(
    store: &Store,
    holds: &Holds,
    policy: &RetentionPolicy,
    now: WallTime,
) -> Result<Vec<DiskReport>, StoreError> {
    let mut out = Vec::new();
    for disk in store.disks() {
        let (free, total) = disk.space()?;
        let floor = effective_floor(policy.min_free.bytes(total), total, false);
        let mut std_u = TierUsage {
            guarantee_days: policy.standard.as_secs_f64() / 86_400.0,
            ..TierUsage::default()
        };
        let mut key_u = TierUsage {
            guarantee_days: policy.key.as_secs_f64() / 86_400.0,
            ..TierUsage::default()
        };
        let mut held = 0u64;
        let held_list = holds.list();
        for (stream, bytes, count) in disk.index().stream_stats()? {
            if count == 0 {
                continue;
            }
            let u = match policy.tier(stream.camera()) {
                Tier::Standard => &mut std_u,
                Tier::Key => &mut key_u,
            };
            u.bytes += bytes;
            if let Some(first) = disk.index().oldest(&stream, None, 1)?.first() {
                // At least a minute of history, so a node that just started does not divide by
                // a few milliseconds.
                let span_days = (now.micros_since(first.start).max(60_000_000)) as f64 / 86_400e6;
                u.bytes_per_day += bytes as f64 / span_days;
            }
            // Overlapping holds must not count a segment twice.
            let mut counted = HashSet::new();
            for h in held_list.iter().filter(|h| h.camera == stream.camera()) {
                let from = WallTime::from_micros(h.start_us);
                let to = WallTime::from_micros(h.end_us);
                for r in disk.index().segment_summaries(&stream, from, to)? {
                    if counted.insert(r.seq) {
                        held += r.bytes;
                    }
                }
            }
        }
        let space = total.saturating_sub(floor).saturating_sub(held) as f64;
        key_u.forecast_days = if key_u.bytes_per_day > 0.0 {
            key_u.guarantee_days.min(space / key_u.bytes_per_day)
        } else {
            key_u.guarantee_days
        };
        let left = (space - key_u.forecast_days * key_u.bytes_per_day).max(0.0);
        std_u.forecast_days = if std_u.bytes_per_day > 0.0 {
            std_u.guarantee_days.min(left / std_u.bytes_per_day)
        } else {
            std_u.guarantee_days
        };
        out.push(DiskReport {
            path: disk.root().to_owned(),
            total,
            free,
            floor,
            blocked: disk.is_blocked(),
            held_bytes: held,
            standard: std_u,
            key: key_u,
        });
    }
    Ok(out)
}
