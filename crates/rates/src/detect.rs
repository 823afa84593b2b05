//! Is a camera's video usable? Judged from the coded stream, without decoding:
//! - **no video**: no frame for [`NO_VIDEO_US`];
//! - **frozen**: [`FROZEN_FRAMES`] identical frames in a row (a camera or DVR repeating its last
//!   picture), or P-frames collapsed to a few percent of their usual size while key frames stay
//!   normal (an encoder fed the same picture codes almost nothing but "no change");
//! - **black** (or a covered lens): key frames and P-frames both collapsed (a flat picture
//!   compresses to almost nothing);
//! - **low frame rate**: fewer than 75 % of the usual frames over the window.
//!
//! "Usual" is learned from the camera's own first [`LEARN_US`] of video, and follows it slowly
//! while the video is intact (a scene at night codes smaller than by day). A camera that starts
//! already black or frozen is learned as such: the field's decoded-image thresholds (mean luma,
//! contrast, blur; `crate::picture`) catch what the stream cannot, where the node can decode
//! (`gstreamer` feature), through [`IntactDetector::set_picture`].

use std::collections::VecDeque;

/// No frame for this long: no video.
pub const NO_VIDEO_US: i64 = 5_000_000;
/// The window judged.
pub const WINDOW_US: i64 = 5_000_000;
/// Identical frames in a row that make a frozen picture (the field's "10 frames").
pub const FROZEN_FRAMES: u32 = 10;
/// How long the usual sizes and rate are learned from.
pub const LEARN_US: i64 = 8_000_000;

/// Why a camera's video is not intact.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// Not online (no stream).
    Offline,
    /// Online but no frame for 5 s.
    NoVideo,
    /// The picture does not change.
    Frozen,
    /// The picture is black or flat.
    Black,
    /// Fewer frames than usual.
    LowFrameRate,
    /// The decoded picture is too bright (`crate::picture`).
    Overexposed,
    /// The decoded picture has too little contrast.
    LowContrast,
    /// The decoded picture is out of focus.
    Blurred,
}

impl Cause {
    /// Every cause, in report order.
    pub const ALL: [Cause; 8] = [
        Cause::Offline,
        Cause::NoVideo,
        Cause::Frozen,
        Cause::Black,
        Cause::LowFrameRate,
        Cause::Overexposed,
        Cause::LowContrast,
        Cause::Blurred,
    ];

    /// Its name in the API and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Offline => "offline",
            Cause::NoVideo => "no_video",
            Cause::Frozen => "frozen",
            Cause::Black => "black",
            Cause::LowFrameRate => "low_frame_rate",
            Cause::Overexposed => "overexposed",
            Cause::LowContrast => "low_contrast",
            Cause::Blurred => "blurred",
        }
    }

    /// The cause named `s`.
    pub fn parse(s: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What the detector needs of a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Its wall time (µs since the epoch).
    pub wall_us: i64,
    /// Coded size in bytes.
    pub size: usize,
    /// A key frame.
    pub key: bool,
    /// Equal for identical frames (size and a hash of its first and last bytes).
    pub fingerprint: u64,
}

impl FrameInfo {
    /// The frame's info, with a fingerprint over its length and its first and last 64 bytes:
    /// enough to tell a repeated frame from a new one, at no cost per byte.
    pub fn of(wall_us: i64, key: bool, data: &[u8]) -> FrameInfo {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ data.len() as u64;
        let head = &data[..data.len().min(64)];
        let tail = &data[data.len().saturating_sub(64)..];
        for b in head.iter().chain(tail) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        FrameInfo {
            wall_us,
            size: data.len(),
            key,
            fingerprint: h,
        }
    }
}

#[derive(Copy, Clone, Debug)]
struct Usual {
    fps: f64,
    key_size: f64,
    p_size: f64,
}

/// One camera's judge.
#[derive(Debug, Default)]
pub struct IntactDetector {
    window: VecDeque<FrameInfo>,
    learning: Vec<FrameInfo>,
    usual: Option<Usual>,
    same: u32,
    last_fp: Option<u64>,
    last_key: Option<FrameInfo>,
    /// The last decoded picture's fault and until when it stands (`crate::picture`).
    picture: Option<(Cause, i64)>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

impl IntactDetector {
    /// Takes a frame.
    pub fn push(&mut self, f: FrameInfo) {
        if self.last_fp == Some(f.fingerprint) {
            self.same = self.same.saturating_add(1);
        } else {
            self.same = 1;
            self.last_fp = Some(f.fingerprint);
        }
        if f.key {
            self.last_key = Some(f);
        }
        self.window.push_back(f);
        while self.window.front().is_some_and(|o| f.wall_us - o.wall_us > WINDOW_US) {
            self.window.pop_front();
        }
        if self.usual.is_none() {
            self.learning.push(f);
            let span = f.wall_us - self.learning[0].wall_us;
            if span >= LEARN_US {
                self.usual = Self::usual_of(&self.learning);
                self.learning = Vec::new();
            }
        }
    }

    fn usual_of(frames: &[FrameInfo]) -> Option<Usual> {
        let span = frames.last()?.wall_us - frames.first()?.wall_us;
        if span <= 0 || frames.len() < 2 {
            return None;
        }
        let fps = (frames.len() - 1) as f64 / (span as f64 / 1e6);
        let key_size = median(frames.iter().filter(|f| f.key).map(|f| f.size as f64).collect())?;
        let p_size = median(frames.iter().filter(|f| !f.key).map(|f| f.size as f64).collect()).unwrap_or(key_size);
        Some(Usual { fps, key_size, p_size })
    }

    /// The verdict on a decoded picture of the camera (`crate::picture`): `None` usable, else
    /// why not, standing until `until_us` unless a newer picture says otherwise. A fault the
    /// stream shows comes first; this one counts while the stream looks sound.
    pub fn set_picture(&mut self, fault: Option<Cause>, until_us: i64) {
        self.picture = fault.map(|f| (f, until_us));
    }

    /// Forgets what it learned (the stream's parameters changed: a new resolution codes to new
    /// sizes).
    pub fn reset(&mut self) {
        *self = IntactDetector::default();
    }

    /// Intact (`Ok`) or why not, at `now_us`. While it is still learning a camera, only "no
    /// video" and frozen repeats can be told. Changes nothing: ask as often as you like.
    pub fn verdict(&self, now_us: i64) -> Result<(), Cause> {
        self.judged(now_us).0
    }

    /// The verdict, once a second: while the video is intact, what is usual follows it slowly
    /// (1 % a call: a scene at night codes smaller than by day, and a fault that comes on over a
    /// window's length is not learned as usual).
    pub fn judge(&mut self, now_us: i64) -> Result<(), Cause> {
        let (verdict, p_mean) = self.judged(now_us);
        if verdict.is_ok()
            && let Some(u) = &mut self.usual
        {
            if let Some(m) = p_mean {
                u.p_size = u.p_size * 0.99 + m * 0.01;
            }
            if let Some(k) = self.last_key {
                u.key_size = u.key_size * 0.99 + k.size as f64 * 0.01;
            }
        }
        verdict
    }

    /// What it judges from, for logs: the usual frame rate and sizes, the last key frame's
    /// size, the window's mean P-frame size and length.
    pub fn summary(&self) -> String {
        let p: Vec<usize> = self.window.iter().filter(|f| !f.key).map(|f| f.size).collect();
        format!(
            "usual={:?} last_key={:?} p_mean={:.0} frames={} same={}",
            self.usual
                .map(|u| (u.fps.round(), u.key_size.round(), u.p_size.round())),
            self.last_key.map(|k| k.size),
            p.iter().sum::<usize>() as f64 / p.len().max(1) as f64,
            self.window.len(),
            self.same
        )
    }

    /// The verdict and the window's mean P-frame size.
    fn judged(&self, now_us: i64) -> (Result<(), Cause>, Option<f64>) {
        let Some(last) = self.window.back().copied() else {
            return (Err(Cause::NoVideo), None);
        };
        if now_us - last.wall_us > NO_VIDEO_US {
            return (Err(Cause::NoVideo), None);
        }
        let p: Vec<f64> = self.window.iter().filter(|f| !f.key).map(|f| f.size as f64).collect();
        let p_mean = (!p.is_empty()).then(|| p.iter().sum::<f64>() / p.len() as f64);
        // Black first: a black picture also repeats, and black is the more useful cause.
        let black = self.usual.is_some_and(|usual| {
            let key_small = self.last_key.is_some_and(|k| (k.size as f64) < usual.key_size * 0.15);
            key_small && p_mean.is_some_and(|m| m < usual.p_size * 0.10)
        });
        if black {
            return (Err(Cause::Black), p_mean);
        }
        if self.same >= FROZEN_FRAMES {
            return (Err(Cause::Frozen), p_mean);
        }
        let Some(usual) = self.usual else {
            return (self.picture_fault(now_us), p_mean);
        };
        let span = last.wall_us - self.window.front().map_or(last.wall_us, |f| f.wall_us);
        if p_mean.is_some_and(|m| m < usual.p_size * 0.02) {
            return (Err(Cause::Frozen), p_mean);
        }
        if span >= WINDOW_US * 4 / 5 {
            let expected = usual.fps * span as f64 / 1e6;
            if ((self.window.len() - 1) as f64) < expected * 0.75 {
                return (Err(Cause::LowFrameRate), p_mean);
            }
        }
        (self.picture_fault(now_us), p_mean)
    }

    fn picture_fault(&self, now_us: i64) -> Result<(), Cause> {
        match self.picture {
            Some((cause, until)) if now_us < until => Err(cause),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 25 fps, a key frame every 25, key frames ~20 KB and P-frames ~2 KB varying.
    fn normal(d: &mut IntactDetector, from_us: i64, secs: f64) -> i64 {
        let n = (secs * 25.0) as i64;
        for i in 0..n {
            let key = i % 25 == 0;
            let size = if key {
                20_000 + (i % 7) * 300
            } else {
                2_000 + (i % 13) * 90
            };
            let bytes = vec![(i % 251) as u8; size as usize];
            d.push(FrameInfo::of(from_us + i * 40_000, key, &bytes));
        }
        from_us + n * 40_000
    }

    #[test]
    fn normal_video_is_intact_and_each_fault_is_told_apart() {
        let mut d = IntactDetector::default();
        let mut t = normal(&mut d, 0, 10.0);
        assert_eq!(d.verdict(t), Ok(()));
        t = normal(&mut d, t, 5.0);
        assert_eq!(d.verdict(t), Ok(()));
        // No frames.
        assert_eq!(d.verdict(t + 6_000_000), Err(Cause::NoVideo));

        // Frozen: the same frame repeated.
        let mut f = IntactDetector::default();
        let mut t = normal(&mut f, 0, 10.0);
        let same = vec![7u8; 20_000];
        for i in 0..30 {
            f.push(FrameInfo::of(t + i * 40_000, true, &same));
        }
        t += 30 * 40_000;
        assert_eq!(f.verdict(t), Err(Cause::Frozen));
        // It recovers with new pictures.
        t = normal(&mut f, t, 5.0);
        assert_eq!(f.verdict(t), Ok(()));

        // Black: key and P frames collapse.
        let mut b = IntactDetector::default();
        let mut t = normal(&mut b, 0, 10.0);
        for i in 0..125 {
            let key = i % 25 == 0;
            let bytes = vec![(i % 200) as u8; if key { 900 } else { 40 + (i % 5) as usize }];
            b.push(FrameInfo::of(t + i * 40_000, key, &bytes));
        }
        t += 125 * 40_000;
        assert_eq!(b.verdict(t), Err(Cause::Black));

        // Half the frame rate.
        let mut h = IntactDetector::default();
        let mut t = normal(&mut h, 0, 10.0);
        for i in 0..63 {
            let key = i % 12 == 0;
            let bytes = vec![(i % 250) as u8; if key { 20_000 } else { 2_000 + i as usize }];
            h.push(FrameInfo::of(t + i * 80_000, key, &bytes));
        }
        t += 63 * 80_000;
        assert_eq!(h.verdict(t), Err(Cause::LowFrameRate));

        // Still picture from a working encoder: P-frames of almost nothing.
        let mut s = IntactDetector::default();
        let mut t = normal(&mut s, 0, 10.0);
        for i in 0..125 {
            let key = i % 25 == 0;
            let bytes = vec![(i % 200) as u8; if key { 20_000 } else { 20 + (i % 3) as usize }];
            s.push(FrameInfo::of(t + i * 40_000, key, &bytes));
        }
        t += 125 * 40_000;
        assert_eq!(s.verdict(t), Err(Cause::Frozen));
    }

    #[test]
    fn a_decoded_picture_s_fault_counts_while_the_stream_looks_sound_and_only_until_it_lapses() {
        let mut d = IntactDetector::default();
        // Still learning: the picture is the only thing that can tell a dark camera.
        let t = normal(&mut d, 0, 3.0);
        d.set_picture(Some(Cause::Black), t + 30_000_000);
        assert_eq!(d.verdict(t), Err(Cause::Black));
        let t = normal(&mut d, t, 10.0);
        d.set_picture(Some(Cause::Blurred), t + 1_000_000);
        assert_eq!(d.judge(t), Err(Cause::Blurred));
        // Lapsed: no check since, so no verdict from the picture.
        assert_eq!(d.verdict(t + 1_000_000), Ok(()));
        let t2 = normal(&mut d, t, 2.0);
        // A fault of the stream comes first; a good picture clears the picture's fault.
        d.set_picture(Some(Cause::LowContrast), t2 + 60_000_000);
        assert_eq!(d.verdict(t2 + 6_000_000), Err(Cause::NoVideo));
        d.set_picture(None, t2 + 60_000_000);
        assert_eq!(d.verdict(t2), Ok(()));
    }

    #[test]
    fn nothing_at_all_is_no_video_and_names_round_trip() {
        assert_eq!(IntactDetector::default().verdict(0), Err(Cause::NoVideo));
        for c in Cause::ALL {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
        }
        assert_eq!(Cause::parse("fine"), None);
        // A fingerprint tells identical frames from different ones of the same size.
        assert_eq!(
            FrameInfo::of(0, false, &[1; 500]).fingerprint,
            FrameInfo::of(9, false, &[1; 500]).fingerprint
        );
        assert_ne!(
            FrameInfo::of(0, false, &[1; 500]).fingerprint,
            FrameInfo::of(0, false, &[2; 500]).fingerprint
        );
        assert_ne!(
            FrameInfo::of(0, false, &[]).fingerprint,
            FrameInfo::of(0, false, &[0]).fingerprint
        );
    }
}
