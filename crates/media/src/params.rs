//! Codec parameters a stream's frames depend on, parsed once per parameter-set change and
//! shared by every frame through an `Arc`.

use bytes::Bytes;

use crate::{h264, h265};

/// The video codecs Sharpeye records and relays.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl VideoCodec {
    /// The short lower-case name used in the API and logs (`h264`, `h265`).
    pub const fn as_str(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::H265 => "h265",
        }
    }
}

/// A frame rate as the fraction `num / den` frames per second, as signalled by the encoder.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameRate {
    /// Numerator (e.g. `25`, or `30000` for 29.97 fps).
    pub num: u32,
    /// Denominator (e.g. `1`, or `1001`).
    pub den: u32,
}

impl FrameRate {
    /// Frames per second as a float, for display.
    pub fn fps(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// The duration of one frame in 90 kHz ticks, rounded.
    pub fn frame_ticks(self) -> u32 {
        ((u64::from(self.den) * 90_000 + u64::from(self.num) / 2) / u64::from(self.num)) as u32
    }
}

/// Why a parameter set could not be used. Every variant says which codec and which parameter set
/// so that a log line can tell an operator which camera sends a broken stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// The NAL unit is empty or its header does not say it is the expected parameter set.
    #[error("{codec} {what}: wrong NAL unit (type {nal_type}); expected a {what}")]
    WrongNalType {
        /// `H.264` or `H.265`.
        codec: &'static str,
        /// `SPS`, `PPS` or `VPS`.
        what: &'static str,
        /// The NAL unit type found.
        nal_type: u8,
    },
    /// The parameter set ends before all of its fields were read.
    #[error("{codec} {what} is truncated or malformed: {detail}")]
    Malformed {
        /// `H.264` or `H.265`.
        codec: &'static str,
        /// `SPS`, `PPS` or `VPS`.
        what: &'static str,
        /// What was being read when it failed.
        detail: String,
    },
    /// A field holds a value the standard forbids or Sharpeye does not support.
    #[error("{codec} {what}: {detail}")]
    Unsupported {
        /// `H.264` or `H.265`.
        codec: &'static str,
        /// `SPS`, `PPS` or `VPS`.
        what: &'static str,
        /// Which field and value.
        detail: String,
    },
}

/// The MP4 sample-entry configuration record for a stream (`avcC` or `hvcC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecoderConfig {
    Avc(mp4_atom::Avcc),
    Hevc(mp4_atom::Hvcc),
}

/// Everything needed to decode (and to describe) a video stream: codec, resolution, frame rate,
/// the RFC 6381 codec string and the raw parameter sets.
///
/// Two `StreamParams` are equal when their parameter sets are byte-for-byte equal.
#[derive(Clone, Debug)]
pub struct StreamParams {
    codec: VideoCodec,
    width: u32,
    height: u32,
    frame_rate: Option<FrameRate>,
    codec_string: String,
    vps: Option<Bytes>,
    sps: Bytes,
    pps: Bytes,
    pub(crate) decoder_config: DecoderConfig,
}

impl PartialEq for StreamParams {
    fn eq(&self, other: &Self) -> bool {
        self.codec == other.codec && self.vps == other.vps && self.sps == other.sps && self.pps == other.pps
    }
}

impl Eq for StreamParams {}

impl StreamParams {
    /// Parameters of an H.264 stream from its SPS and PPS NAL units (each with its 1-byte NAL
    /// header, without start code or length prefix).
    pub fn h264(sps: &[u8], pps: &[u8]) -> Result<Self, ParamsError> {
        let parsed = h264::parse_sps(sps)?;
        h264::check_pps(pps)?;
        Ok(StreamParams {
            codec: VideoCodec::H264,
            width: parsed.width,
            height: parsed.height,
            frame_rate: parsed.frame_rate,
            codec_string: parsed.codec_string(),
            decoder_config: DecoderConfig::Avc(parsed.avcc(sps, pps)),
            vps: None,
            sps: Bytes::copy_from_slice(sps),
            pps: Bytes::copy_from_slice(pps),
        })
    }

    /// Parameters of an H.265 stream from its VPS, SPS and PPS NAL units (each with its 2-byte
    /// NAL header, without start code or length prefix).
    pub fn h265(vps: &[u8], sps: &[u8], pps: &[u8]) -> Result<Self, ParamsError> {
        h265::check_nal(vps, h265::NAL_VPS, "VPS")?;
        h265::check_nal(pps, h265::NAL_PPS, "PPS")?;
        let parsed = h265::parse_sps(sps)?;
        Ok(StreamParams {
            codec: VideoCodec::H265,
            width: parsed.width,
            height: parsed.height,
            frame_rate: parsed.frame_rate,
            codec_string: parsed.codec_string(),
            decoder_config: DecoderConfig::Hevc(parsed.hvcc(vps, sps, pps)),
            vps: Some(Bytes::copy_from_slice(vps)),
            sps: Bytes::copy_from_slice(sps),
            pps: Bytes::copy_from_slice(pps),
        })
    }

    /// The codec.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Displayed width in pixels (after cropping).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Displayed height in pixels (after cropping).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The frame rate the encoder signals, if it does (VUI timing info).
    pub fn frame_rate(&self) -> Option<FrameRate> {
        self.frame_rate
    }

    /// The RFC 6381 codec string (`avc1.64002a`, `hvc1.1.6.L120.90`), as browsers' MSE and HLS
    /// playlists expect.
    pub fn codec_string(&self) -> &str {
        &self.codec_string
    }

    /// The video parameter set (H.265 only).
    pub fn vps(&self) -> Option<&Bytes> {
        self.vps.as_ref()
    }

    /// The sequence parameter set NAL unit.
    pub fn sps(&self) -> &Bytes {
        &self.sps
    }

    /// The picture parameter set NAL unit.
    pub fn pps(&self) -> &Bytes {
        &self.pps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ticks_rounds() {
        assert_eq!(FrameRate { num: 25, den: 1 }.frame_ticks(), 3600);
        assert_eq!(FrameRate { num: 30000, den: 1001 }.frame_ticks(), 3003);
    }
}
