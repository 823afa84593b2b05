//! A stream's bitrate as it arrives, for the nodes above: an upper node pulling this stream
//! across a thin link must count it at what it really needs, and what the upper measures on a
//! congested link is capped by the link itself.

use std::time::{Duration, Instant};

/// Rates are measured over windows at least this long (two GOPs of a typical camera), so one
/// key frame does not swing them.
const WINDOW: Duration = Duration::from_secs(2);

/// The rate reported is the highest of this many recent windows: what a link must be ready to
/// carry, not an average a busier scene soon exceeds (which would make an upper node shed the
/// pull it admitted on the strength of it).
const KEPT: usize = 4;

/// Bytes per window of whole GOPs (a window closes at a key frame once it is long enough, so
/// every window holds the same mix of key and other frames and the rate does not swing with
/// where the key frames fall); the last [`KEPT`] windows' rates are kept (also after the stream
/// stops).
#[derive(Debug, Default)]
pub struct Rate {
    started: Option<Instant>,
    bytes: u64,
    recent: std::collections::VecDeque<u64>,
}

impl Rate {
    /// A frame of `bytes` arrived at `now`; `key` if it is a key frame.
    pub fn add(&mut self, now: Instant, bytes: usize, key: bool) {
        match self.started {
            // Windows start on a key frame.
            None if !key => return,
            None => self.started = Some(now),
            Some(started) if key => {
                let span = now.saturating_duration_since(started);
                if span >= WINDOW {
                    if self.recent.len() == KEPT {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(self.bytes * 8 / span.as_millis().max(1) as u64);
                    self.started = Some(now);
                    self.bytes = 0;
                }
            }
            Some(_) => {}
        }
        self.bytes += bytes as u64;
    }

    /// The upstream stopped: a later start measures afresh (the gap is not a slow window).
    pub fn pause(&mut self) {
        self.started = None;
        self.bytes = 0;
    }

    /// The highest rate of the recent complete windows, kbit/s.
    pub fn kbps(&self) -> Option<u64> {
        self.recent.iter().max().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_of_complete_windows_is_kept_across_a_pause() {
        let t0 = Instant::now();
        // 25 frames a second, a 150 kB key frame every 25 and 10 kB frames between:
        // 150 + 24 × 10 = 390 kB a second, 3120 kbit/s, whichever frame the pull starts on.
        let frame = |i: u64| {
            if i.is_multiple_of(25) {
                (150_000, true)
            } else {
                (10_000, false)
            }
        };
        for first in [0, 7, 24] {
            let mut r = Rate::default();
            for i in first..first + 40 {
                let (len, key) = frame(i);
                r.add(t0 + Duration::from_millis(i * 40), len, key);
            }
            assert_eq!(r.kbps(), None, "not a whole window yet");
            for i in first + 40..first + 200 {
                let (len, key) = frame(i);
                r.add(t0 + Duration::from_millis(i * 40), len, key);
            }
            assert_eq!(r.kbps(), Some(3120), "starting at frame {first}");
        }
        let mut r = Rate::default();
        for i in 0..=75 {
            let (len, key) = frame(i);
            r.add(t0 + Duration::from_millis(i * 40), len, key);
        }
        assert_eq!(r.kbps(), Some(3120));
        r.pause();
        // An hour later, a quieter stream: measured afresh, not over the hour, and once its
        // windows have replaced the busier ones, reported as it is.
        let t1 = t0 + Duration::from_secs(3600);
        for i in 0..=75 {
            let (len, key) = frame(i);
            r.add(t1 + Duration::from_millis(i * 40), len / 4, key);
        }
        assert_eq!(r.kbps(), Some(3120), "the busier windows are still recent");
        for i in 76..=250 {
            let (len, key) = frame(i);
            r.add(t1 + Duration::from_millis(i * 40), len / 4, key);
        }
        assert_eq!(r.kbps(), Some(780));
        // A busier moment (two seconds at the old rate) is what the stream is reported needing.
        for i in 251..=350 {
            let (len, key) = frame(i);
            r.add(
                t1 + Duration::from_millis(i * 40),
                if i < 300 { len } else { len / 4 },
                key,
            );
        }
        assert!(r.kbps().unwrap() > 2500, "{:?}", r.kbps());
    }
}
