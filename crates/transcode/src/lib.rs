//! Decoding and transcoding: a camera's main stream re-encoded to H.264 on this node, for the
//! players that cannot decode the camera's codec (H.265 in most browsers) when the camera has no
//! H.264 sub-stream.
//!
//! One transcode per camera serves every viewer: it is the upstream of the camera's `h264` hub
//! channel ([`session::TranscodeSession`], an `ingest` session like an RTSP pull), started by the
//! first viewer and stopped after the last, and it watches the camera's main channel like any
//! other viewer, so the camera is still pulled once.
//!
//! The codec work is GStreamer's (`h265parse ! avdec_h265 ! videoscale ! x264enc`), behind the
//! `gstreamer` feature: no maintained pure-Rust H.265 decoder exists, and the default build must
//! need no system libraries. Without the feature, [`Transcoder::new`] says which feature to
//! build with, and the node does not offer the `h264` stream at all.

pub mod annexb;
#[cfg(feature = "gstreamer")]
mod gst;
pub mod session;
pub mod snapshot;

use std::collections::VecDeque;
use std::sync::Arc;

use media::{Frame, StreamId, StreamParams, WallTime};

/// True when this build can transcode (the `gstreamer` feature).
pub const AVAILABLE: bool = cfg!(feature = "gstreamer");

/// Why transcoding failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// This build has no transcoder.
    #[error(
        "this build cannot transcode: rebuild with `cargo build --features gstreamer` (and install GStreamer: see docs/ui.md)"
    )]
    NotBuilt,
    /// GStreamer could not build or run the pipeline (a plugin missing, say).
    #[error(
        "transcoder: {0}; check that gstreamer1.0-libav, gstreamer1.0-plugins-ugly and gstreamer1.0-plugins-bad are installed"
    )]
    Pipeline(String),
    /// The input or output was not what it should be.
    #[error("transcoder: malformed stream: {0}")]
    Malformed(String),
    /// The stream fed from has gone (its camera was removed) or dropped this viewer.
    #[error("camera {camera}: its main stream ended; the transcode restarts with it")]
    InputEnded {
        /// The camera.
        camera: String,
    },
}

/// The size and rate a transcode aims at.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Largest height (the width follows the camera's aspect ratio); smaller pictures keep
    /// their size.
    pub max_height: u32,
    /// Encoder bitrate, kbit/s.
    pub kbps: u32,
    /// Frames between key frames (a new viewer waits at most this long).
    pub gop: u32,
}

impl Default for Target {
    /// 720p at 2 Mbit/s with a key frame every 2 s at 25 fps: a sharp wall tile at a tenth of
    /// the CPU of 1080p.
    fn default() -> Self {
        Target {
            max_height: 720,
            kbps: 2000,
            gop: 50,
        }
    }
}

impl Target {
    /// The output size for a `width`×`height` input: at most `max_height` high, same aspect
    /// ratio, both even (what H.264 4:2:0 needs).
    pub fn size_for(&self, width: u32, height: u32) -> (u32, u32) {
        let (w, h) = (width.max(2), height.max(2));
        let out_h = h.min(self.max_height.max(2));
        let out_w = (u64::from(w) * u64::from(out_h) / u64::from(h)) as u32;
        (out_w.max(2) & !1, out_h & !1)
    }
}

/// Wall times of frames in flight, by presentation time: the encoder keeps timestamps, and the
/// output frame gets the wall time of the input frame it came from.
#[derive(Default)]
struct InFlight(VecDeque<(i64, WallTime)>);

impl InFlight {
    fn push(&mut self, media_time: i64, wall: WallTime) {
        if self.0.len() >= 256 {
            self.0.pop_front();
        }
        self.0.push_back((media_time, wall));
    }

    fn take(&mut self, media_time: i64) -> Option<WallTime> {
        while let Some(&(t, w)) = self.0.front() {
            self.0.pop_front();
            if t >= media_time {
                return Some(w);
            }
        }
        None
    }
}

/// Re-encodes one stream's frames to H.264. Feed it with [`Transcoder::push`] and take what is
/// ready with [`Transcoder::pull`]; it restarts its pipeline when the input's parameters change.
pub struct Transcoder {
    output: StreamId,
    #[cfg_attr(not(feature = "gstreamer"), allow(dead_code))]
    target: Target,
    #[cfg(feature = "gstreamer")]
    pipeline: Option<gst::Pipeline>,
    input: Option<Arc<StreamParams>>,
    out_params: Option<Arc<StreamParams>>,
    in_flight: InFlight,
    first: bool,
    last_wall: WallTime,
    /// The first input time since the pipeline (re)started, and how far the encoder moved
    /// times from it (x264 shifts them by 1000 hours so that decode times stay positive).
    first_in: Option<i64>,
    shift: Option<i64>,
}

impl Transcoder {
    /// A transcoder whose frames belong to `output`; fails at once where this build cannot
    /// transcode.
    pub fn new(output: StreamId, target: Target) -> Result<Transcoder, TranscodeError> {
        if !AVAILABLE {
            return Err(TranscodeError::NotBuilt);
        }
        #[cfg(feature = "gstreamer")]
        gst::init()?;
        Ok(Transcoder {
            output,
            target,
            #[cfg(feature = "gstreamer")]
            pipeline: None,
            input: None,
            out_params: None,
            in_flight: InFlight::default(),
            first: true,
            last_wall: WallTime::from_micros(0),
            first_in: None,
            shift: None,
        })
    }

    /// Feeds one frame. Frames before the first key frame (or the first after a parameter
    /// change) are skipped: the decoder could not use them.
    pub fn push(&mut self, frame: &Frame) -> Result<(), TranscodeError> {
        let changed = self.input.as_ref().is_none_or(|p| **p != *frame.params);
        if changed {
            if !frame.key {
                return Ok(());
            }
            self.restart(&frame.params)?;
        }
        let bytes = annexb::to_annex_b(frame)?;
        self.first_in.get_or_insert(frame.media_time);
        self.in_flight.push(frame.media_time, frame.wall_time);
        self.last_wall = frame.wall_time;
        self.feed(bytes, frame.media_time)
    }

    #[cfg(feature = "gstreamer")]
    fn restart(&mut self, params: &Arc<StreamParams>) -> Result<(), TranscodeError> {
        self.pipeline = None;
        let (w, h) = self.target.size_for(params.width(), params.height());
        self.pipeline = Some(gst::Pipeline::new(params.codec(), w, h, self.target)?);
        self.input = Some(params.clone());
        self.first_in = None;
        self.shift = None;
        Ok(())
    }

    #[cfg(not(feature = "gstreamer"))]
    fn restart(&mut self, _params: &Arc<StreamParams>) -> Result<(), TranscodeError> {
        Err(TranscodeError::NotBuilt)
    }

    #[cfg(feature = "gstreamer")]
    fn feed(&mut self, bytes: Vec<u8>, media_time: i64) -> Result<(), TranscodeError> {
        match &self.pipeline {
            Some(p) => p.push(bytes, media_time),
            None => Ok(()),
        }
    }

    #[cfg(not(feature = "gstreamer"))]
    fn feed(&mut self, _bytes: Vec<u8>, _media_time: i64) -> Result<(), TranscodeError> {
        Err(TranscodeError::NotBuilt)
    }

    /// The next re-encoded frame, if one is ready (waiting up to `wait` for it).
    pub fn pull(&mut self, wait: std::time::Duration) -> Result<Option<Frame>, TranscodeError> {
        #[cfg(feature = "gstreamer")]
        {
            let Some(p) = &self.pipeline else { return Ok(None) };
            match p.pull(wait)? {
                Some((buf, media_time)) => self.frame_of(&buf, media_time).map(Some),
                None => Ok(None),
            }
        }
        #[cfg(not(feature = "gstreamer"))]
        {
            let _ = wait;
            Err(TranscodeError::NotBuilt)
        }
    }

    /// An encoder output as a frame of the output stream.
    #[cfg_attr(not(feature = "gstreamer"), allow(dead_code))]
    fn frame_of(&mut self, buf: &[u8], encoded_time: i64) -> Result<Frame, TranscodeError> {
        let unit = annexb::h264_unit(buf)?;
        let shift = *self
            .shift
            .get_or_insert(encoded_time - self.first_in.unwrap_or(encoded_time));
        let media_time = encoded_time - shift;
        if let Some((sps, pps)) = &unit.params
            && self
                .out_params
                .as_ref()
                .is_none_or(|p| p.sps() != sps || p.pps() != pps)
        {
            self.out_params = Some(Arc::new(annexb::h264_params(sps, pps)?));
        }
        let Some(params) = self.out_params.clone() else {
            return Err(TranscodeError::Malformed(
                "the encoder's first output has no SPS/PPS".into(),
            ));
        };
        let wall_time = self.in_flight.take(media_time).unwrap_or(self.last_wall);
        let discontinuity = std::mem::replace(&mut self.first, false);
        Ok(Frame {
            stream: self.output.clone(),
            media_time,
            wall_time,
            key: unit.key,
            discontinuity,
            params,
            data: unit.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_keep_the_aspect_ratio_and_are_even() {
        let t = Target::default();
        assert_eq!(t.size_for(1920, 1080), (1280, 720));
        assert_eq!(t.size_for(320, 240), (320, 240));
        assert_eq!(t.size_for(2560, 1440), (1280, 720));
        assert_eq!(t.size_for(1001, 999), (720, 720));
        assert_eq!(t.size_for(0, 0), (2, 2));
        let odd = t.size_for(1919, 1081);
        assert_eq!((odd.0 % 2, odd.1 % 2), (0, 0));
    }

    #[test]
    fn in_flight_matches_outputs_to_inputs() {
        let mut f = InFlight::default();
        for i in 0..5 {
            f.push(i * 3600, WallTime::from_micros(i * 40_000));
        }
        assert_eq!(f.take(7200), Some(WallTime::from_micros(80_000)));
        assert_eq!(
            f.take(7200),
            Some(WallTime::from_micros(120_000)),
            "each input is used once"
        );
        assert_eq!(f.take(1_000_000), None);
    }

    #[cfg(not(feature = "gstreamer"))]
    #[test]
    fn without_the_feature_it_says_what_to_build() {
        let e = Transcoder::new(StreamId::new("cam0", media::StreamKind::H264), Target::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--features gstreamer"), "{e}");
    }
}
