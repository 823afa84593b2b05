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

/// An 8-bit luma picture, row by row, for measuring (`rates::picture`).
#[derive(Debug, Clone)]
pub struct Luma {
    /// The pixels, `width` × `height`.
    pub pixels: Vec<u8>,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
}

/// Width of the pictures measured for the intact rate: enough for the field's measures, a
/// fraction of a full picture's cost to scale and walk.
pub const LUMA_WIDTH: u32 = 320;

/// The luma of key frame `key`, scaled to about `width` wide (its aspect kept; the width a
/// multiple of 4 so that rows come packed, the height even). Needs the `gstreamer` feature.
pub fn luma(key: &Frame, width: u32) -> Result<Luma, TranscodeError> {
    if !key.key {
        return Err(TranscodeError::Malformed(
            "a picture to measure must be a key frame".into(),
        ));
    }
    let p = &key.params;
    let (src_w, src_h) = (p.width().max(2), p.height().max(2));
    let width = (width.clamp(16, src_w.max(16)) / 4) * 4;
    let height = ((u64::from(width) * u64::from(src_h) / u64::from(src_w)).max(2) as u32 / 2) * 2;
    let unit = crate::annexb::to_annex_b(key)?;
    #[cfg(feature = "gstreamer")]
    {
        crate::gst::init()?;
        let pixels = crate::gst::gray(p.codec(), unit, key.media_time, width, height)?;
        if pixels.len() < (width * height) as usize {
            return Err(TranscodeError::Malformed(format!(
                "the decoder gave {} bytes for a {width}×{height} picture",
                pixels.len()
            )));
        }
        Ok(Luma { pixels, width, height })
    }
    #[cfg(not(feature = "gstreamer"))]
    {
        let _ = (unit, height);
        Err(TranscodeError::NotBuilt)
    }
}
