//! Throughput over a sliding window, for what crosses a link and what each pull uses.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes counted in one-second slots over the last few seconds.
#[derive(Debug)]
pub struct Meter {
    window: Duration,
    slots: VecDeque<(Instant, u64)>,
    total: u64,
}

impl Meter {
    /// A meter averaging over `window`.
    pub fn new(window: Duration) -> Meter {
        Meter {
            window,
            slots: VecDeque::new(),
            total: 0,
        }
    }

    /// Counts `bytes` at `now`.
    pub fn add(&mut self, now: Instant, bytes: u64) {
        self.total += bytes;
        match self.slots.back_mut() {
            Some((t, n)) if now.duration_since(*t) < Duration::from_secs(1) => *n += bytes,
            _ => self.slots.push_back((now, bytes)),
        }
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while self
            .slots
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            self.slots.pop_front();
        }
    }

    /// The rate over the window ending at `now`, kbit/s.
    pub fn kbps(&mut self, now: Instant) -> u64 {
        self.expire(now);
        let bytes: u64 = self.slots.iter().map(|(_, n)| n).sum();
        bytes * 8 / 1000 / self.window.as_secs().max(1)
    }

    /// Everything counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_over_the_window_and_old_bytes_leave_it() {
        let t0 = Instant::now();
        let mut m = Meter::new(Duration::from_secs(4));
        for i in 0..40 {
            // 500 kB/s for 4 s: 4000 kbit/s.
            m.add(t0 + Duration::from_millis(i * 100), 50_000);
        }
        assert_eq!(m.kbps(t0 + Duration::from_millis(3950)), 4000);
        assert_eq!(m.kbps(t0 + Duration::from_secs(20)), 0);
        assert_eq!(m.total(), 2_000_000);
    }
}
