//! When a stream's upstream pull runs: a sans-IO state machine fed viewer events and time.
//!
//! Recording pins a stream (a viewer that never leaves). Otherwise the first viewer starts the
//! pull and the pull stops `idle` after the last viewer left; a viewer that comes back within
//! that time finds the pull still running and the GOP cache warm.

use std::time::{Duration, Instant};

/// What the caller must do to the upstream.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the pull.
    Start,
    /// Stop the pull.
    Stop,
}

/// The upstream's demand.
#[derive(Debug)]
pub struct Demand {
    idle: Duration,
    pinned: bool,
    viewers: usize,
    running: bool,
    /// When the last viewer left (while running and not pinned).
    empty_since: Option<Instant>,
}

impl Demand {
    /// A stream whose pull stops `idle` after its last viewer; `pinned` streams (recorded) run
    /// always.
    pub fn new(idle: Duration, pinned: bool) -> Demand {
        Demand {
            idle,
            pinned,
            viewers: 0,
            running: false,
            empty_since: None,
        }
    }

    /// Viewers now.
    pub fn viewers(&self) -> usize {
        self.viewers
    }

    /// Whether the pull runs.
    pub fn running(&self) -> bool {
        self.running
    }

    /// Checks whether the pull should run now (call once after creating a pinned stream).
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        if !self.running && (self.pinned || self.viewers > 0) {
            self.running = true;
            self.empty_since = None;
            return Some(Action::Start);
        }
        if self.running && !self.pinned && self.viewers == 0 {
            let since = *self.empty_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.idle {
                self.running = false;
                self.empty_since = None;
                return Some(Action::Stop);
            }
        }
        None
    }

    /// Pins or unpins the stream (a cluster member gained or lost the right to record it);
    /// the next [`Demand::poll`] starts or (after `idle` without viewers) stops the pull.
    pub fn set_pinned(&mut self, pinned: bool, now: Instant) -> Option<Action> {
        if self.pinned && !pinned && self.viewers == 0 && self.running {
            self.empty_since = Some(now);
        }
        self.pinned = pinned;
        self.poll(now)
    }

    /// A viewer arrived.
    pub fn join(&mut self, now: Instant) -> Option<Action> {
        self.viewers += 1;
        self.empty_since = None;
        self.poll(now)
    }

    /// A viewer left.
    pub fn leave(&mut self, now: Instant) -> Option<Action> {
        self.viewers = self.viewers.saturating_sub(1);
        if self.viewers == 0 && self.running && !self.pinned {
            self.empty_since = Some(now);
        }
        self.poll(now)
    }

    /// When the next [`Demand::poll`] may change something (the idle deadline), if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.empty_since.map(|t| t + self.idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_at_run_time_starts_the_pull_and_unpinning_stops_it_after_idle_unless_watched() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Demand::new(5 * s, false);
        assert_eq!(d.set_pinned(true, t0), Some(Action::Start));
        assert_eq!(d.set_pinned(true, t0), None);
        assert_eq!(d.set_pinned(false, t0 + s), None);
        assert_eq!(d.poll(t0 + 5 * s), None);
        assert_eq!(d.poll(t0 + 6 * s), Some(Action::Stop));
        // Watched when unpinned: the pull stays for its viewer.
        assert_eq!(d.set_pinned(true, t0 + 7 * s), Some(Action::Start));
        assert_eq!(d.join(t0 + 7 * s), None);
        assert_eq!(d.set_pinned(false, t0 + 8 * s), None);
        assert_eq!(d.poll(t0 + 60 * s), None);
        assert!(d.running());
    }

    #[test]
    fn first_viewer_starts_last_viewer_stops_after_idle() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Demand::new(5 * s, false);
        assert_eq!(d.poll(t0), None);
        assert_eq!(d.join(t0), Some(Action::Start));
        assert_eq!(d.join(t0 + s), None);
        assert_eq!(d.leave(t0 + 2 * s), None);
        assert_eq!(d.leave(t0 + 3 * s), None);
        assert_eq!(d.deadline(), Some(t0 + 8 * s));
        assert_eq!(d.poll(t0 + 7 * s), None);
        assert_eq!(d.poll(t0 + 8 * s), Some(Action::Stop));
        assert!(!d.running());
        assert_eq!(d.poll(t0 + 20 * s), None);
    }

    #[test]
    fn a_viewer_returning_within_idle_keeps_the_pull() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Demand::new(5 * s, false);
        d.join(t0);
        d.leave(t0 + s);
        assert_eq!(d.join(t0 + 4 * s), None);
        assert_eq!(d.poll(t0 + 30 * s), None, "a viewer is still there");
        assert!(d.running());
    }

    #[test]
    fn pinned_streams_run_without_viewers() {
        let t0 = Instant::now();
        let mut d = Demand::new(Duration::from_secs(1), true);
        assert_eq!(d.poll(t0), Some(Action::Start));
        d.join(t0);
        d.leave(t0);
        assert_eq!(d.poll(t0 + Duration::from_secs(60)), None);
        assert!(d.running());
        assert_eq!(d.deadline(), None);
    }
}
