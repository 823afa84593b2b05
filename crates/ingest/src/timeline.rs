//! Checks that a camera's timestamps advance the way its frames arrive.

use media::{WallTime, media_to_micros};

/// A forward jump of media time this much (5 s) larger than the arrival time elapsed is a
/// discontinuity, not a gap.
pub const FORWARD_JUMP_US: i64 = 5_000_000;

/// What a frame's timestamp says about the stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TimelineCheck {
    /// The first frame seen.
    First,
    /// Continues the previous frame.
    Continues,
    /// Equal to or before the previous frame's timestamp by this many ticks (0 for equal).
    Backwards(i64),
    /// Ahead of the previous frame by far more than the time that passed between arrivals.
    ForwardJump {
        /// Media ticks advanced.
        media_ticks: i64,
        /// Microseconds between the two arrivals.
        arrival_us: i64,
    },
}

impl TimelineCheck {
    /// True if the frame cannot continue the previous one in the same segment.
    pub fn is_discontinuity(self) -> bool {
        !matches!(self, TimelineCheck::Continues)
    }
}

/// Tracks the last frame's timestamp and arrival.
#[derive(Debug, Default)]
pub struct Timeline {
    last: Option<(i64, WallTime)>,
}

impl Timeline {
    /// Checks a frame and remembers it as the last one.
    pub fn check(&mut self, media: i64, arrival: WallTime) -> TimelineCheck {
        let result = match self.last {
            None => TimelineCheck::First,
            Some((m, _)) if media <= m => TimelineCheck::Backwards(m - media),
            Some((m, a)) => {
                let media_us = media_to_micros(media - m);
                let arrival_us = arrival.micros_since(a);
                if media_us - arrival_us.max(0) > FORWARD_JUMP_US {
                    TimelineCheck::ForwardJump {
                        media_ticks: media - m,
                        arrival_us,
                    }
                } else {
                    TimelineCheck::Continues
                }
            }
        };
        self.last = Some((media, arrival));
        result
    }

    /// Forgets the last frame (a new session starts).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_frames() {
        let t = |us| WallTime::from_micros(us);
        let mut tl = Timeline::default();
        assert_eq!(tl.check(1000, t(0)), TimelineCheck::First);
        assert_eq!(tl.check(4600, t(40_000)), TimelineCheck::Continues);
        assert_eq!(tl.check(4600, t(80_000)), TimelineCheck::Backwards(0));
        assert_eq!(tl.check(1000, t(120_000)), TimelineCheck::Backwards(3600));
        // A 3 s network stall: media and arrival both advance 3 s.
        assert_eq!(tl.check(1000 + 270_000, t(3_120_000)), TimelineCheck::Continues);
        // Media leaps 20 s ahead in 40 ms.
        assert!(matches!(
            tl.check(271_000 + 1_800_000, t(3_160_000)),
            TimelineCheck::ForwardJump { .. }
        ));
        assert!(TimelineCheck::Backwards(0).is_discontinuity());
        assert!(!TimelineCheck::Continues.is_discontinuity());
    }
}
