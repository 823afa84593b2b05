//! The media model every Sharpeye crate shares, and the codec and container code that needs no I/O.
//!
//! * [`Frame`]: one encoded video frame as it travels from ingest to disk and to viewers. Payloads
//!   are [`bytes::Bytes`], so fan-out clones a handle, never the data.
//! * [`StreamParams`]: the codec parameters a frame depends on, parsed from H.264/H.265 parameter
//!   sets ([`h264`], [`h265`]) and shared by reference count.
//! * [`fmp4`]: fragmented-MP4 init segments and fragments, built on `mp4-atom`.
//! * [`WallTime`] and the 90 kHz media clock ([`MEDIA_CLOCK_HZ`]).
//!
//! Nothing here touches a socket or a file: every function is fed bytes and returns bytes or a
//! typed error, which is what lets the parsers be fuzzed directly.

pub mod annexb;
pub mod clock;
pub mod fmp4;
pub mod fmp4_stream;
mod frame;
pub mod h264;
pub mod h265;
mod moov_guard;
mod params;
pub mod progressive;
pub mod ps;
pub mod ps_mux;
pub mod rtp;

mod time;

pub use frame::{Frame, StreamId, StreamKind};
pub use params::{FrameRate, ParamsError, StreamParams, VideoCodec};
pub use time::{MEDIA_CLOCK_HZ, WallTime, media_to_micros, micros_to_media};
