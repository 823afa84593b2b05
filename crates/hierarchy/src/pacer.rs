//! Pacing a transfer to a rate that may change while it runs, sans-IO: fed the bytes sent, the
//! time and the rate allowed now, it says how long to wait before sending more.
//!
//! A token bucket rather than "bytes so far / elapsed": when the allowed rate drops (a live
//! pull took the spare budget) the transfer slows at once instead of spending credit it built
//! up while the link was idle.

use std::time::{Duration, Instant};

/// At most this much of the rate may go out at once (the start of a transfer, or after a
/// pause): enough for a player's first request to be answered without waiting.
const BURST: Duration = Duration::from_millis(250);
/// Bursts are never smaller than this, so slow transfers are not cut into tiny writes.
const MIN_BURST_BYTES: f64 = 64.0 * 1024.0;

/// One transfer's pacing.
#[derive(Debug)]
pub struct Pacer {
    tokens: f64,
    last: Instant,
    started: bool,
}

impl Pacer {
    /// A pacer whose first burst is available at once.
    pub fn new(now: Instant) -> Pacer {
        Pacer {
            tokens: 0.0,
            last: now,
            started: false,
        }
    }

    /// `bytes` were just sent at `now`, with `kbps` allowed; returns how long to wait before
    /// sending more.
    pub fn sent(&mut self, now: Instant, bytes: u64, kbps: u64) -> Duration {
        let rate = (kbps.max(1) as f64) * 125.0; // bytes per second
        let burst = (rate * BURST.as_secs_f64()).max(MIN_BURST_BYTES);
        if !self.started {
            self.started = true;
            self.tokens = burst;
        } else {
            let dt = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + rate * dt).min(burst);
        }
        self.last = now;
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `total` bytes in 16 KiB chunks at `kbps`, waiting as told: the simulated time taken.
    fn send(p: &mut Pacer, now: &mut Instant, total: u64, kbps: u64) -> Duration {
        let start = *now;
        let mut left = total;
        while left > 0 {
            let n = left.min(16 * 1024);
            left -= n;
            *now += p.sent(*now, n, kbps);
        }
        now.saturating_duration_since(start)
    }

    #[test]
    fn a_transfer_keeps_to_its_rate_after_the_first_burst() {
        let mut now = Instant::now();
        let mut p = Pacer::new(now);
        // 10 MB at 8 Mbit/s (1 MB/s): 10 s less the 250 ms burst.
        let took = send(&mut p, &mut now, 10_000_000, 8000);
        assert!((9.6..=10.0).contains(&took.as_secs_f64()), "{took:?}");
    }

    #[test]
    fn a_lower_rate_takes_effect_at_once() {
        let mut now = Instant::now();
        let mut p = Pacer::new(now);
        send(&mut p, &mut now, 5_000_000, 80_000);
        // Credit built up while fast does not carry over to the slower rate.
        let took = send(&mut p, &mut now, 1_000_000, 800);
        assert!(took.as_secs_f64() >= 9.5, "{took:?}");
    }

    #[test]
    fn idle_time_earns_at_most_one_burst() {
        let mut now = Instant::now();
        let mut p = Pacer::new(now);
        send(&mut p, &mut now, 1_000_000, 8000);
        now += Duration::from_secs(60);
        let took = send(&mut p, &mut now, 2_000_000, 8000);
        assert!(took.as_secs_f64() >= 1.7, "{took:?}");
    }
}
