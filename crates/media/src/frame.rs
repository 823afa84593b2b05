//! The frame model shared from ingest to disk and viewers.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::{StreamParams, WallTime};

/// Which of a camera's encoder outputs a stream is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// The full-resolution stream: what is recorded and exported.
    Main,
    /// The low-resolution stream (`sub_url`): for small video-wall tiles and thin links.
    Sub,
    /// The main stream transcoded on this node to H.264 (the `gstreamer` feature), for
    /// players that cannot decode the camera's codec (H.265 in most browsers) when the camera
    /// has no H.264 sub-stream. Never recorded, never pulled across a link.
    H264,
}

impl StreamKind {
    /// The lower-case name used in paths, URLs and logs (`main`, `sub`, `h264`).
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamKind::Main => "main",
            StreamKind::Sub => "sub",
            StreamKind::H264 => "h264",
        }
    }

    /// Parses `main`, `sub` or `h264`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "main" => Some(StreamKind::Main),
            "sub" => Some(StreamKind::Sub),
            "h264" => Some(StreamKind::H264),
            _ => None,
        }
    }
}

/// Identifies one stream of one camera across the node. Cloning is a reference-count increment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    camera: Arc<str>,
    kind: StreamKind,
}

impl StreamId {
    /// The stream `kind` of camera `camera`.
    pub fn new(camera: impl Into<Arc<str>>, kind: StreamKind) -> Self {
        StreamId {
            camera: camera.into(),
            kind,
        }
    }

    /// The main stream of `camera`.
    pub fn main(camera: impl Into<Arc<str>>) -> Self {
        Self::new(camera, StreamKind::Main)
    }

    /// The camera's id as configured.
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// Main or sub stream.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.camera, self.kind.as_str())
    }
}

/// One encoded video frame (an access unit).
///
/// Cloning is cheap: the payload is a [`Bytes`] handle and the parameters an [`Arc`], so the
/// fan-out from one camera to the recorder and many viewers never copies video data.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The stream this frame belongs to.
    pub stream: StreamId,
    /// Presentation time on the 90 kHz media clock. Strictly increases from frame to frame
    /// within a run of the stream; a run ends at a frame with `discontinuity` set.
    pub media_time: i64,
    /// Wall-clock time of the frame, anchored to the server's clock (see `docs/time.md`).
    pub wall_time: WallTime,
    /// True for a random-access point (IDR / IRAP): a decoder can start here.
    pub key: bool,
    /// True when this frame does not continue the previous one: the first frame of a session,
    /// or the first after a timestamp jump or a lost stretch. Storage starts a new segment here.
    pub discontinuity: bool,
    /// The codec parameters needed to decode this frame.
    pub params: Arc<StreamParams>,
    /// The access unit as length-prefixed NAL units (4-byte big-endian lengths, the MP4 form),
    /// without parameter sets, which live in `params`.
    pub data: Bytes,
}
