//! Video sources: turning what cameras send into [`media::Frame`]s.
//!
//! * [`rtsp`]: an RTSP pull through `retina` (TCP interleaved by default, UDP selectable).
//! * [`supervisor`]: one task per camera stream that keeps the pull alive: reconnect with
//!   exponential backoff and jitter, a no-frames watchdog, and errors that name the camera, the
//!   peer and what to do about it.
//! * [`clock`] and [`timeline`]: pure state machines that anchor camera timestamps to the
//!   server's wall clock (correcting drift at a bounded rate) and detect timestamp jumps.
//!
//! Sources hand frames to a [`FrameSink`]; they know nothing of disks or HTTP.

pub mod backoff;
pub mod clock;
pub mod deliver;
pub mod gb28181;
pub mod ps_rtp;
pub mod rtsp;
mod status;
pub mod supervisor;
pub mod timeline;

pub use status::{SourceHealth, SourcePhase, SourceStatus};

use media::{Frame, StreamId};

/// Where a source delivers its frames: the recorder now, the live hub later.
///
/// Implementations must not block: they are called from the source's task for every frame.
pub trait FrameSink: Send + Sync + 'static {
    /// One frame, in order. The first frame of each session has `discontinuity` set.
    fn frame(&self, frame: Frame);
    /// The stream's current session ended (camera lost, stalled or torn down): whatever is
    /// buffered for it should be finished now rather than when the next session starts.
    fn end_of_stream(&self, stream: &StreamId);
}
