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

    /// The rate over the window ending at `now`, kbit/s; over the time since the first byte
    /// while that is shorter (a pull of two seconds is not half as fast as it was), but never
    /// over less than a second.
    pub fn kbps(&mut self, now: Instant) -> u64 {
        self.expire(now);
        let bytes: u64 = self.slots.iter().map(|(_, n)| n).sum();
        let span = self.slots.front().map_or(self.window, |(t, _)| {
            now.saturating_duration_since(*t)
                .clamp(Duration::from_secs(1), self.window)
        });
        bytes * 8 / span.as_millis().max(1) as u64
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
        let k = m.kbps(t0 + Duration::from_millis(3950));
        assert!((4000..=4100).contains(&k), "{k}");
        assert_eq!(m.kbps(t0 + Duration::from_secs(20)), 0);
        assert_eq!(m.total(), 2_000_000);
    }

    #[test]
    fn a_young_meter_rates_over_its_own_age() {
        let t0 = Instant::now();
        let mut m = Meter::new(Duration::from_secs(4));
        for i in 0..20 {
            m.add(t0 + Duration::from_millis(i * 100), 50_000);
        }
        // 1 MB over 2 s, not over the 4 s window.
        let k = m.kbps(t0 + Duration::from_secs(2));
        assert!((3900..=4100).contains(&k), "{k}");
        // Nor faster than it is because only a blink has passed.
        let mut young = Meter::new(Duration::from_secs(4));
        young.add(t0, 50_000);
        assert_eq!(young.kbps(t0 + Duration::from_millis(10)), 400);
    }
}
