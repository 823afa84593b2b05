//! Exponential backoff with jitter for reconnecting to cameras.

use std::time::Duration;

/// Reconnect delays: doubling from `min` up to `max`, each drawn uniformly from the upper half
/// of the current step ("equal jitter") so that a thousand cameras lost together do not
/// reconnect in lock-step.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// A backoff from `min` to `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The next delay to wait before reconnecting; doubles the step for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// The delay to use after a failure that retrying soon cannot fix (bad credentials, wrong
    /// path): the maximum step, so a camera that locks accounts after repeated failures is not
    /// hammered.
    pub fn slow_delay(&mut self, slow_max: Duration) -> Duration {
        let d = slow_max.max(self.max);
        d / 2 + (d / 2).mul_f64(rand::random::<f64>())
    }

    /// Starts again from `min`, after a session that worked.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let steps = [100u64, 200, 400, 800, 1000, 1000];
        for s in steps {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(s / 2) && d <= Duration::from_millis(s),
                "{d:?} for step {s}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn slow_delay_is_at_least_half_of_the_slow_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d = b.slow_delay(Duration::from_secs(30));
        assert!(d >= Duration::from_secs(15) && d <= Duration::from_secs(30));
    }
}
