//! Where the time comes from: the server's clocks, or a simulated one for tests that run days
//! of recording, retention or auditing in seconds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::WallTime;

/// The time as the recorder, retention and the audit log see it. Injected rather than read
/// from the system so that their logic can be driven on simulated time.
pub trait Clock: Send + Sync + 'static {
    /// The wall time now.
    fn now(&self) -> WallTime;
    /// A monotonic instant now, for intervals and deadlines.
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The server's clocks.
#[derive(Copy, Clone, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> WallTime {
        WallTime::now()
    }
}

/// A clock that moves only when told to: both its wall time and its instants advance together.
#[derive(Debug)]
pub struct SimClock {
    base: Instant,
    state: Mutex<(WallTime, Duration)>,
}

impl SimClock {
    /// A simulated clock reading `start`.
    pub fn new(start: WallTime) -> SimClock {
        SimClock {
            base: Instant::now(),
            state: Mutex::new((start, Duration::ZERO)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = s.0.add_micros(i64::try_from(by.as_micros()).unwrap_or(i64::MAX));
        s.1 += by;
    }

    /// Sets the wall time (instants keep going forward only through [`SimClock::advance`]).
    pub fn set(&self, now: WallTime) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = now;
    }
}

impl Clock for SimClock {
    fn now(&self) -> WallTime {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn instant(&self) -> Instant {
        self.base + self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_moves_only_when_told() {
        let c = SimClock::new(WallTime::from_micros(1_000_000));
        let (w0, i0) = (c.now(), c.instant());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((c.now(), c.instant()), (w0, i0));
        c.advance(Duration::from_secs(86_400));
        assert_eq!(c.now().micros_since(w0), 86_400_000_000);
        assert_eq!(c.instant() - i0, Duration::from_secs(86_400));
        c.set(WallTime::from_micros(5));
        assert_eq!(c.now(), WallTime::from_micros(5));
    }
}
