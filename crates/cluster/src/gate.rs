//! Whether this member may write a camera's frames now: the fence between a claim in etcd and
//! the recorder. A frame is written only while the member's lease is known to hold (the
//! [`LeaseClock`], moved forward by each keep-alive etcd answered, from the moment it was
//! sent) and the camera is claimed. So a member that was paused or cut off writes nothing once
//! its lease may have expired — before any other member can have claimed its cameras, since
//! they wait for etcd to expire the lease — whatever frames it still finds in its sockets when
//! it runs again.
//!
//! Recording starts at a key frame and, when a camera is handed to another member, ends before
//! one: the old owner says at which (its wall time, through etcd) and the newcomer, whose pull
//! of the camera is already warm, starts at the first key frame it has from that instant on —
//! often the very one, from its live channel's cached GOP. So a handover costs at most a
//! key-frame interval, and with cameras that send every session the same frames, nothing.
//! Sans-IO: fed frames' key flags, wall times and the time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Until when this member's lease is known to hold.
#[derive(Debug)]
pub struct LeaseClock {
    base: Instant,
    /// Nanoseconds after `base`; 0: not held.
    until: AtomicU64,
}

impl Default for LeaseClock {
    fn default() -> Self {
        LeaseClock {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }
}

impl LeaseClock {
    /// The lease holds until `until` (set after a keep-alive etcd answered).
    pub fn hold_until(&self, until: Instant) {
        let ns = until
            .saturating_duration_since(self.base)
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64;
        self.until.store(ns.max(1), Ordering::Release);
    }

    /// The lease is lost (expired, revoked): nothing may be written from now on.
    pub fn lose(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// Whether the lease holds at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until != 0 && now.saturating_duration_since(self.base) < Duration::from_nanos(until)
    }

    /// How long it holds after `now` (zero when it does not).
    pub fn left(&self, now: Instant) -> Duration {
        let until = Duration::from_nanos(self.until.load(Ordering::Acquire));
        (self.base + until).saturating_duration_since(now)
    }
}

/// What to do with one frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it, under this fencing token (the claim's revision).
    Write(i64),
    /// Not this member's to write (not claimed, or the lease not held).
    Skip,
    /// Claimed, waiting for a start: a key frame from the handover instant on (the caller
    /// may offer one it has cached, through [`CameraGate::begin`]).
    Await,
    /// Not to be written, and the segment written so far must be closed now.
    End,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Claim {
    /// Not claimed.
    Off,
    /// Claimed under this token, to be written from a key frame at or after `from` (wall
    /// time, µs; the old owner's last instant).
    Open(i64, Option<i64>),
    /// Being handed over: stop before the next key frame.
    Closing(i64),
}

#[derive(Debug)]
struct CameraState {
    claim: Claim,
    /// A segment is being written (from a key frame on).
    writing: bool,
    /// The wall time (µs) of the frame recording last ended before.
    ended_at: Option<i64>,
}

/// Two members' pulls of one camera stamp the same frame a few milliseconds apart.
const SAME_FRAME_US: i64 = 20_000;

/// One camera's gate, held by its recorded stream's sink.
#[derive(Debug)]
pub struct CameraGate {
    lease: Arc<LeaseClock>,
    state: Mutex<CameraState>,
}

impl CameraGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, CameraState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What to do with a frame (`key`: a key frame, stamped `wall_us`) arriving at `now`.
    pub fn admit(&self, key: bool, wall_us: i64, now: Instant) -> Admit {
        let held = self.lease.holds(now);
        let mut s = self.lock();
        let stop = |s: &mut CameraState| {
            if std::mem::replace(&mut s.writing, false) {
                s.ended_at = Some(wall_us);
                Admit::End
            } else {
                Admit::Skip
            }
        };
        match s.claim {
            _ if !held => stop(&mut s),
            Claim::Off => stop(&mut s),
            Claim::Closing(fence) => {
                if s.writing && !key {
                    Admit::Write(fence)
                } else {
                    s.claim = Claim::Off;
                    stop(&mut s)
                }
            }
            Claim::Open(fence, _) if s.writing => Admit::Write(fence),
            Claim::Open(..) => Admit::Await,
        }
    }

    /// Starts writing at a key frame stamped `key_wall_us` (the newest one the caller has,
    /// cached or arriving), if the camera is claimed, the lease holds and the frame is not
    /// before the handover instant: then the caller writes from that key frame on.
    pub fn begin(&self, key_wall_us: i64, now: Instant) -> Option<i64> {
        if !self.lease.holds(now) {
            return None;
        }
        let mut s = self.lock();
        match s.claim {
            Claim::Open(fence, from) if !s.writing && from.is_none_or(|t| key_wall_us >= t - SAME_FRAME_US) => {
                s.writing = true;
                Some(fence)
            }
            _ => None,
        }
    }

    /// The wall time (µs) of the frame recording last ended before: where the next owner
    /// starts.
    pub fn ended_at(&self) -> Option<i64> {
        self.lock().ended_at
    }

    /// Whether a segment is being written now.
    pub fn writing(&self) -> bool {
        self.lock().writing
    }

    /// Whether the camera is claimed (open or closing).
    pub fn claimed(&self) -> bool {
        self.lock().claim != Claim::Off
    }
}

/// Every recorded camera's gate on this member.
#[derive(Debug, Default)]
pub struct Gates {
    lease: Arc<LeaseClock>,
    cameras: RwLock<HashMap<String, Arc<CameraGate>>>,
}

impl Gates {
    /// Gates over the lease `lease` holds.
    pub fn new(lease: Arc<LeaseClock>) -> Gates {
        Gates {
            lease,
            cameras: RwLock::default(),
        }
    }

    /// The lease clock the gates read.
    pub fn lease(&self) -> &Arc<LeaseClock> {
        &self.lease
    }

    /// `camera`'s gate (closed until claimed).
    pub fn camera(&self, camera: &str) -> Arc<CameraGate> {
        if let Some(g) = self.cameras.read().unwrap_or_else(|p| p.into_inner()).get(camera) {
            return g.clone();
        }
        self.cameras
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(camera.to_owned())
            .or_insert_with(|| {
                Arc::new(CameraGate {
                    lease: self.lease.clone(),
                    state: Mutex::new(CameraState {
                        claim: Claim::Off,
                        writing: false,
                        ended_at: None,
                    }),
                })
            })
            .clone()
    }

    /// `camera` was claimed under `fence`: recording starts at a key frame at or after
    /// `from` (the previous owner's last instant, wall µs), or the next one.
    pub fn open(&self, camera: &str, fence: i64, from: Option<i64>) {
        self.camera(camera).lock().claim = Claim::Open(fence, from);
    }

    /// `camera` goes to another member: recording ends before its next key frame. Returns
    /// whether it is already closed (nothing being written).
    pub fn close_at_key(&self, camera: &str) -> bool {
        let g = self.camera(camera);
        let mut s = g.lock();
        if let Claim::Open(f, _) = s.claim {
            s.claim = if s.writing { Claim::Closing(f) } else { Claim::Off };
        }
        s.claim == Claim::Off
    }

    /// Closes `camera` now (its claim is gone); the sink ends its segment at the next frame.
    pub fn close(&self, camera: &str) {
        self.camera(camera).lock().claim = Claim::Off;
    }

    /// Closes every camera (the lease was lost).
    pub fn close_all(&self) {
        for g in self.cameras.read().unwrap_or_else(|p| p.into_inner()).values() {
            g.lock().claim = Claim::Off;
        }
    }

    /// Cameras being written now.
    pub fn writing(&self) -> Vec<String> {
        let cams = self.cameras.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = cams
            .iter()
            .filter(|(_, g)| g.writing())
            .map(|(c, _)| c.clone())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a sink does with one frame without a cache: begins at a key frame it is offered.
    fn frame(g: &CameraGate, key: bool, wall_us: i64, now: Instant) -> Admit {
        match g.admit(key, wall_us, now) {
            Admit::Await if key => g.begin(wall_us, now).map_or(Admit::Skip, Admit::Write),
            Admit::Await => Admit::Skip,
            a => a,
        }
    }

    #[test]
    fn frames_are_written_from_a_key_frame_while_claimed_and_the_lease_holds() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let gates = Gates::default();
        let g = gates.camera("cam1");
        assert_eq!(g.admit(true, 0, t0), Admit::Skip, "not claimed");
        gates.open("cam1", 7, None);
        assert_eq!(frame(&g, true, 0, t0), Admit::Skip, "no lease yet");
        gates.lease().hold_until(t0 + 3 * s);
        assert_eq!(g.admit(false, 0, t0), Admit::Await, "waits for a key frame");
        assert_eq!(frame(&g, true, 0, t0), Admit::Write(7));
        assert_eq!(frame(&g, false, 1, t0 + s), Admit::Write(7));
        // Paused past the lease: the frames found afterwards are not written, and the segment
        // so far is closed once.
        assert_eq!(frame(&g, false, 2, t0 + 3 * s), Admit::End);
        assert_eq!(g.ended_at(), Some(2));
        assert_eq!(frame(&g, true, 3, t0 + 4 * s), Admit::Skip);
        assert!(!g.writing());
        // A new keep-alive: on again from a key frame.
        gates.lease().hold_until(t0 + 10 * s);
        assert_eq!(frame(&g, false, 4, t0 + 5 * s), Admit::Skip);
        assert_eq!(frame(&g, true, 5, t0 + 5 * s), Admit::Write(7));
        gates.lease().lose();
        assert_eq!(frame(&g, true, 6, t0 + 5 * s), Admit::End);
    }

    #[test]
    fn a_handover_ends_before_a_key_frame_and_the_next_owner_starts_at_one_from_that_instant() {
        let t0 = Instant::now();
        let old = Gates::default();
        old.lease().hold_until(t0 + Duration::from_secs(60));
        let g = old.camera("cam1");
        old.open("cam1", 3, None);
        assert_eq!(frame(&g, true, 0, t0), Admit::Write(3));
        assert!(!old.close_at_key("cam1"), "still writing its GOP");
        assert!(g.claimed());
        assert_eq!(frame(&g, false, 40_000, t0), Admit::Write(3));
        assert_eq!(frame(&g, false, 80_000, t0), Admit::Write(3));
        assert_eq!(frame(&g, true, 1_000_000, t0), Admit::End);
        assert_eq!(g.ended_at(), Some(1_000_000));
        assert!(!g.claimed());
        assert_eq!(frame(&g, true, 2_000_000, t0), Admit::Skip);
        assert_eq!(old.writing(), Vec::<String>::new());

        // The next owner: a cached key frame from before the handover is refused, the same
        // frame as stamped by its own pull (a few ms off) or a later one is taken.
        let new = Gates::default();
        new.lease().hold_until(t0 + Duration::from_secs(60));
        let h = new.camera("cam1");
        new.open("cam1", 9, g.ended_at());
        assert_eq!(h.admit(false, 990_000, t0), Admit::Await);
        assert_eq!(h.begin(0, t0), None, "before the handover: recorded by the old owner");
        assert_eq!(h.begin(995_000, t0), Some(9));
        assert_eq!(h.admit(false, 1_040_000, t0), Admit::Write(9));

        // Closing a camera that writes nothing is immediate.
        old.open("cam2", 4, None);
        assert!(old.close_at_key("cam2"));
        // Closed outright: the next frame ends the segment.
        old.open("cam1", 5, None);
        assert_eq!(frame(&g, true, 3_000_000, t0), Admit::Write(5));
        old.close("cam1");
        assert_eq!(frame(&g, false, 3_040_000, t0), Admit::End);
    }

    #[test]
    fn the_lease_clock_says_how_long_it_holds() {
        let c = LeaseClock::default();
        let now = Instant::now();
        assert!(!c.holds(now));
        assert_eq!(c.left(now), Duration::ZERO);
        c.hold_until(now + Duration::from_secs(2));
        assert!(c.holds(now));
        assert!(c.left(now) > Duration::from_millis(1900));
        c.lose();
        assert!(!c.holds(now));
    }
}
