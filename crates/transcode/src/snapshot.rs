//! Still pictures: the JPEG of one frame of a camera, live or recorded (`snapshot.jpg`), for
//! incident records and grid-system pages. A frame is decoded from the key frame before it, so
//! the picture is exactly that instant, not the nearest key frame.

use media::{Frame, WallTime};

use crate::{Target, TranscodeError};

/// Largest picture height a snapshot has by default (a camera's full size up to 1080p).
pub const MAX_HEIGHT: u32 = 1080;

/// A decoded still.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The JPEG.
    pub jpeg: Vec<u8>,
    /// The wall time of the frame it shows.
    pub at: WallTime,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
}

/// The frames to decode for the picture at `at`: from the last key frame at or before it to
/// the last frame at or before it. `None` when no key frame comes at or before `at`.
pub fn frames_for(frames: Vec<Frame>, at: WallTime) -> Option<Vec<Frame>> {
    let upto = frames.iter().rposition(|f| f.wall_time <= at)?;
    let key = frames[..=upto].iter().rposition(|f| f.key)?;
    Some(frames[key..=upto].to_vec())
}

/// The JPEG of the last of `frames` (which start with a key frame and share parameters),
/// at most `max_height` high. Needs the `gstreamer` feature.
pub fn jpeg(frames: &[Frame], max_height: u32, quality: u8) -> Result<Snapshot, TranscodeError> {
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(TranscodeError::Malformed("no frame to decode".into()));
    };
    if !first.key {
        return Err(TranscodeError::Malformed("decoding must start at a key frame".into()));
    }
    let params = first.params.clone();
    let (width, height) = Target {
        max_height,
        kbps: 0,
        gop: 0,
    }
    .size_for(params.width(), params.height());
    let mut units = Vec::with_capacity(frames.len());
    for f in frames.iter().filter(|f| f.params == params) {
        units.push((crate::annexb::to_annex_b(f)?, f.media_time));
    }
    #[cfg(feature = "gstreamer")]
    {
        crate::gst::init()?;
        let jpeg = crate::gst::jpeg(params.codec(), units, width, height, quality.clamp(1, 100))?;
        Ok(Snapshot {
            jpeg,
            at: last.wall_time,
            width,
            height,
        })
    }
    #[cfg(not(feature = "gstreamer"))]
    {
        let _ = (units, quality, last, width, height);
        Err(TranscodeError::NotBuilt)
    }
}
