//! H.264 parameter sets: what Sharpeye needs from the SPS (profile, level, resolution, frame
//! rate) and the `avcC` record for MP4.
//!
//! Bit-level parsing is done by `h264-reader`, the maintained parser retina and Moonfire use.

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};

use crate::{FrameRate, ParamsError};

/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// The NAL unit type in an H.264 NAL header byte.
pub const fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// The fields of an H.264 SPS that recording and serving need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// The constraint_set flags byte.
    pub constraint_flags: u8,
    /// `level_idc` (e.g. 40 for level 4.0).
    pub level_idc: u8,
    /// Displayed width after cropping.
    pub width: u32,
    /// Displayed height after cropping.
    pub height: u32,
    /// Frame rate from the VUI timing info, if present.
    pub frame_rate: Option<FrameRate>,
    /// `chroma_format_idc` (1 = 4:2:0).
    pub chroma_format_idc: u8,
    /// Luma bit depth.
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
}

const CODEC: &str = "H.264";

fn malformed(what: &'static str, detail: impl std::fmt::Debug) -> ParamsError {
    ParamsError::Malformed {
        codec: CODEC,
        what,
        detail: format!("{detail:?}"),
    }
}

/// Parses an SPS NAL unit (with its header byte).
pub fn parse_sps(nal: &[u8]) -> Result<Sps, ParamsError> {
    let Some(&header) = nal.first() else {
        return Err(malformed("SPS", "empty NAL unit"));
    };
    if nal_type(header) != NAL_SPS {
        return Err(ParamsError::WrongNalType {
            codec: CODEC,
            what: "SPS",
            nal_type: nal_type(header),
        });
    }
    let rbsp = decode_nal(nal).map_err(|e| malformed("SPS", e))?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| malformed("SPS", e))?;
    let (width, height) = sps.pixel_dimensions().map_err(|e| malformed("SPS", e))?;
    if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
        return Err(ParamsError::Unsupported {
            codec: CODEC,
            what: "SPS",
            detail: format!("picture size {width}x{height} is outside 1..16384"),
        });
    }
    let frame_rate = sps
        .vui_parameters
        .as_ref()
        .and_then(|v| v.timing_info.as_ref())
        .and_then(|t| {
            // H.264 counts fields: one frame is two ticks.
            let den = t.num_units_in_tick.checked_mul(2)?;
            (den > 0 && t.time_scale > 0).then_some(FrameRate { num: t.time_scale, den })
        })
        .map(reduce);
    let chroma = &sps.chroma_info;
    use h264_reader::nal::sps::ChromaFormat;
    let chroma_format_idc = match chroma.chroma_format {
        ChromaFormat::Monochrome => 0,
        ChromaFormat::YUV420 => 1,
        ChromaFormat::YUV422 => 2,
        ChromaFormat::YUV444 => 3,
        ChromaFormat::Invalid(v) => {
            return Err(ParamsError::Unsupported {
                codec: CODEC,
                what: "SPS",
                detail: format!("chroma_format_idc = {v}"),
            });
        }
    };
    Ok(Sps {
        profile_idc: sps.profile_idc.into(),
        constraint_flags: sps.constraint_flags.into(),
        level_idc: sps.level_idc,
        width,
        height,
        frame_rate,
        chroma_format_idc,
        bit_depth_luma: chroma.bit_depth_luma_minus8 + 8,
        bit_depth_chroma: chroma.bit_depth_chroma_minus8 + 8,
    })
}

/// Checks that a NAL unit is a plausible PPS (its content is only needed by decoders).
pub(crate) fn check_pps(nal: &[u8]) -> Result<(), ParamsError> {
    match nal.first() {
        None => Err(malformed("PPS", "empty NAL unit")),
        Some(&h) if nal_type(h) != NAL_PPS => Err(ParamsError::WrongNalType {
            codec: CODEC,
            what: "PPS",
            nal_type: nal_type(h),
        }),
        Some(_) if nal.len() < 2 => Err(malformed("PPS", "no payload after the NAL header")),
        Some(_) => Ok(()),
    }
}

/// Reduces a fraction by its greatest common divisor.
pub(crate) fn reduce(r: FrameRate) -> FrameRate {
    let (mut a, mut b) = (r.num, r.den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    FrameRate {
        num: r.num / a,
        den: r.den / a,
    }
}

impl Sps {
    /// The RFC 6381 codec string, `avc1.PPCCLL`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }

    /// The `avcC` decoder configuration record for these parameter sets.
    pub(crate) fn avcc(&self, sps: &[u8], pps: &[u8]) -> mp4_atom::Avcc {
        // The extension fields exist only for the High profiles (ISO/IEC 14496-15 5.3.3.1.2).
        let high = matches!(self.profile_idc, 100 | 110 | 122 | 144);
        mp4_atom::Avcc {
            configuration_version: 1,
            avc_profile_indication: self.profile_idc,
            profile_compatibility: self.constraint_flags,
            avc_level_indication: self.level_idc,
            length_size: 4,
            sequence_parameter_sets: vec![sps.to_vec()],
            picture_parameter_sets: vec![pps.to_vec()],
            ext: high.then(|| mp4_atom::AvccExt {
                chroma_format: self.chroma_format_idc,
                bit_depth_luma: self.bit_depth_luma,
                bit_depth_chroma: self.bit_depth_chroma,
                sequence_parameter_sets_ext: vec![],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annexb::nal_units;

    fn first_nal(stream: &[u8], ty: u8) -> Vec<u8> {
        nal_units(stream)
            .find(|n| nal_type(n[0]) == ty)
            .expect("fixture has the NAL")
            .to_vec()
    }

    const FIXTURE_1080: &[u8] = include_bytes!("../../../tests/fixtures/h264_1080p.h264");
    const FIXTURE_240: &[u8] = include_bytes!("../../../tests/fixtures/h264_240p.h264");

    #[test]
    fn parses_fixture_sps() {
        let sps = parse_sps(&first_nal(FIXTURE_1080, NAL_SPS)).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.frame_rate, Some(FrameRate { num: 25, den: 1 }));
        assert!(sps.codec_string().starts_with("avc1.64"));

        let small = parse_sps(&first_nal(FIXTURE_240, NAL_SPS)).unwrap();
        assert_eq!((small.width, small.height), (320, 240));
        assert_eq!(small.profile_idc, 77);
    }

    #[test]
    fn every_truncation_of_an_sps_is_an_error_not_a_panic() {
        let sps = first_nal(FIXTURE_1080, NAL_SPS);
        for len in 0..sps.len() - 1 {
            // Some prefixes happen to be valid SPSs without VUI; none may panic.
            let _ = parse_sps(&sps[..len]);
        }
        assert!(parse_sps(&sps[..4]).is_err());
        assert!(parse_sps(&[]).is_err());
    }

    #[test]
    fn rejects_other_nal_types() {
        let pps = first_nal(FIXTURE_1080, NAL_PPS);
        assert!(matches!(
            parse_sps(&pps),
            Err(ParamsError::WrongNalType { nal_type: 8, .. })
        ));
        assert!(check_pps(&pps).is_ok());
        assert!(check_pps(&[0x68]).is_err());
    }

    #[test]
    fn reduce_fraction() {
        assert_eq!(reduce(FrameRate { num: 50, den: 2 }), FrameRate { num: 25, den: 1 });
    }
}
