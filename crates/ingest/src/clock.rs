//! Anchoring camera media time to the server's wall clock, with bounded drift correction.
//!
//! A camera stamps frames with its own 90 kHz clock, which runs a little fast or slow (tens to
//! hundreds of ppm is common) and starts at an arbitrary value. Recording needs wall-clock
//! times from the server's clock, and consecutive frames must stay exactly one frame apart in
//! the file. [`WallClock`] reconciles the two (see `docs/time.md`):
//!
//! * At the first frame, the wall time is the arrival time.
//! * After that, wall = anchor + (media elapsed) + correction. For each frame the raw offset
//!   `arrival − (anchor + media elapsed)` is measured; its minimum over the last
//!   [`WINDOW_TICKS`] of media time estimates where the least-delayed frames arrive. The
//!   correction moves toward that minimum by at most `max_slew_ppm` of the media time elapsed,
//!   so frame spacing never changes by more than that fraction and the mapping follows a
//!   drifting camera instead of jumping.
//! * An offset beyond [`STEP_LIMIT_US`] means a clock step (the server's NTP stepped, or the
//!   camera's timestamps jumped): the clock re-anchors and says so.

use std::collections::VecDeque;

use media::{WallTime, media_to_micros};

/// Media-time window over which the minimum arrival offset is taken: 10 s.
pub const WINDOW_TICKS: i64 = 10 * 90_000;
/// An offset larger than this (5 s) is a clock step, not drift: re-anchor.
pub const STEP_LIMIT_US: i64 = 5_000_000;
/// Default correction rate limit: 1000 ppm (1 ms per second), twice the drift of a poor camera.
pub const DEFAULT_MAX_SLEW_PPM: u32 = 1000;

/// Result of mapping one frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The frame's wall-clock time.
    pub wall: WallTime,
    /// True if the clock (re-)anchored on this frame: the first frame, or after a step.
    pub anchored: bool,
}

#[derive(Debug)]
struct Anchor {
    wall: WallTime,
    media: i64,
    correction_us: f64,
    last_media: i64,
}

/// Maps one stream's media timestamps to wall-clock times. Feed it every frame in order.
#[derive(Debug)]
pub struct WallClock {
    max_slew_ppm: u32,
    anchor: Option<Anchor>,
    /// (media time, raw offset µs) with offsets increasing: the front is the window minimum.
    window: VecDeque<(i64, i64)>,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SLEW_PPM)
    }
}

impl WallClock {
    /// A clock that corrects by at most `max_slew_ppm` parts per million of media time.
    pub fn new(max_slew_ppm: u32) -> Self {
        WallClock {
            max_slew_ppm,
            anchor: None,
            window: VecDeque::new(),
        }
    }

    /// Forgets the anchor: the next frame anchors afresh (after a discontinuity).
    pub fn reset(&mut self) {
        self.anchor = None;
        self.window.clear();
    }

    /// The current correction in microseconds (for metrics and tests).
    pub fn correction_us(&self) -> f64 {
        self.anchor.as_ref().map_or(0.0, |a| a.correction_us)
    }

    /// Maps a frame with media time `media` that arrived at `arrival`.
    ///
    /// `media` must be greater than the previous frame's (the caller resets on discontinuities).
    pub fn map(&mut self, media: i64, arrival: WallTime) -> Mapped {
        let Some(a) = self.anchor.as_mut() else {
            return self.anchor_at(media, arrival);
        };
        let elapsed_us = media_to_micros(media - a.media);
        let raw_offset = arrival.micros_since(a.wall) - elapsed_us;
        let predicted = raw_offset as f64 - a.correction_us;
        if predicted.abs() > STEP_LIMIT_US as f64 {
            return self.anchor_at(media, arrival);
        }
        while self.window.back().is_some_and(|&(_, o)| o >= raw_offset) {
            self.window.pop_back();
        }
        self.window.push_back((media, raw_offset));
        while self.window.front().is_some_and(|&(m, _)| m < media - WINDOW_TICKS) {
            self.window.pop_front();
        }
        let target = self.window.front().map_or(raw_offset, |&(_, o)| o) as f64;
        let step_us = media_to_micros(media - a.last_media) as f64;
        let max = step_us * f64::from(self.max_slew_ppm) * 1e-6;
        a.correction_us += (target - a.correction_us).clamp(-max, max);
        a.last_media = media;
        Mapped {
            wall: a.wall.add_micros(elapsed_us + a.correction_us.round() as i64),
            anchored: false,
        }
    }

    fn anchor_at(&mut self, media: i64, arrival: WallTime) -> Mapped {
        self.window.clear();
        self.window.push_back((media, 0));
        self.anchor = Some(Anchor {
            wall: arrival,
            media,
            correction_us: 0.0,
            last_media: media,
        });
        Mapped {
            wall: arrival,
            anchored: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a camera at 25 fps whose clock runs `drift_ppm` fast, with a network delay of
    /// `base_delay_us` plus a pseudo-random jitter up to `jitter_us`, for `seconds`. Returns the
    /// largest |wall − true capture time − base delay| after the first `settle` seconds, and the
    /// largest change of frame spacing.
    fn simulate(drift_ppm: f64, base_delay_us: i64, jitter_us: i64, seconds: i64, settle: i64) -> (i64, i64) {
        let mut clock = WallClock::default();
        let start = 1_763_000_000_000_000i64;
        let mut worst = 0;
        let mut worst_spacing = 0;
        let mut prev: Option<WallTime> = None;
        let mut seed = 12345u64;
        for n in 0..seconds * 25 {
            let true_us = n * 40_000;
            // The camera's timestamp for this frame runs fast by drift_ppm.
            let media = 1_000_000 + ((true_us as f64) * (1.0 + drift_ppm * 1e-6) * 0.09).round() as i64;
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let jitter = if jitter_us > 0 {
                (seed >> 33) as i64 % jitter_us
            } else {
                0
            };
            let arrival = WallTime::from_micros(start + true_us + base_delay_us + jitter);
            let m = clock.map(media, arrival);
            assert_eq!(m.anchored, n == 0);
            if n >= settle * 25 {
                let err = m.wall.as_micros() - (start + true_us + base_delay_us);
                worst = worst.max(err.abs());
            }
            if let Some(p) = prev {
                let spacing = m.wall.micros_since(p);
                worst_spacing = worst_spacing.max((spacing - 40_000).abs());
            }
            prev = Some(m.wall);
        }
        (worst, worst_spacing)
    }

    #[test]
    fn drifting_camera_stays_within_one_frame_for_an_hour() {
        for drift in [-500.0, -100.0, 0.0, 100.0, 500.0] {
            let (worst, spacing) = simulate(drift, 20_000, 30_000, 3600, 5);
            assert!(worst < 40_000, "drift {drift} ppm: error {worst} µs exceeds one frame");
            // Spacing never changes by more than the slew limit (40 µs per 40 ms frame) plus the
            // drift itself plus one 90 kHz tick (11 µs) of timestamp rounding.
            assert!(
                spacing <= 40 + (drift as i64).abs() / 25 + 12,
                "drift {drift}: spacing off by {spacing} µs"
            );
        }
    }

    #[test]
    fn uncorrected_drift_would_exceed_a_frame() {
        // The same 500 ppm over an hour is 1.8 s: without correction the test above would fail.
        let drift_us = (3600.0 * 1e6 * 500e-6) as i64;
        assert!(drift_us > 40_000);
    }

    #[test]
    fn a_clock_step_reanchors() {
        let mut c = WallClock::default();
        let t0 = WallTime::from_micros(1_000_000_000_000);
        assert!(c.map(0, t0).anchored);
        assert!(!c.map(3600, t0.add_micros(40_000)).anchored);
        // The server clock jumped an hour ahead.
        let m = c.map(7200, t0.add_micros(3_600_000_000 + 80_000));
        assert!(m.anchored);
        assert_eq!(m.wall, t0.add_micros(3_600_000_000 + 80_000));
    }

    #[test]
    fn reset_anchors_the_next_frame() {
        let mut c = WallClock::default();
        c.map(0, WallTime::from_micros(0));
        c.reset();
        assert!(c.map(100, WallTime::from_micros(5)).anchored);
    }
}
