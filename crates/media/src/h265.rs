//! H.265 parameter sets: what Sharpeye needs from the SPS (profile, tier, level, resolution,
//! frame rate, bit depth) and the `hvcC` record for MP4.
//!
//! Written here rather than taken from a crate: the maintained HEVC parsers we looked at
//! (`scuffle-h265`) shift by unchecked exponents read from the stream, which a hostile camera
//! can turn into a panic. The walk below bounds every loop and shift by the limits of
//! ITU-T H.265 (08/2021) 7.4.3.2. Bit reading and emulation-prevention removal reuse
//! `h264-reader`'s RBSP reader, which is codec-neutral apart from the header length.

use std::num::NonZeroUsize;

use h264_reader::rbsp::{BitRead, BitReader, BitReaderError, ByteReader};

use crate::h264::reduce;
use crate::{FrameRate, ParamsError};

/// NAL unit type of a video parameter set.
pub const NAL_VPS: u8 = 32;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 34;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 35;

/// The NAL unit type in the first byte of an H.265 NAL header.
pub const fn nal_type(header0: u8) -> u8 {
    (header0 >> 1) & 0x3f
}

/// True for intra random access point pictures (BLA, IDR, CRA: types 16..=23).
pub const fn is_irap(nal_type: u8) -> bool {
    nal_type >= 16 && nal_type <= 23
}

const CODEC: &str = "H.265";
const HEADER_LEN: NonZeroUsize = NonZeroUsize::new(2).expect("2 is not zero");

/// The fields of an H.265 SPS that recording and serving need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// `general_profile_space`.
    pub profile_space: u8,
    /// `general_tier_flag` (high tier).
    pub tier: bool,
    /// `general_profile_idc` (1 Main, 2 Main 10, ...).
    pub profile_idc: u8,
    /// `general_profile_compatibility_flag[0..32]`, flag 0 in the most significant bit.
    pub compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` on.
    pub constraint_flags: [u8; 6],
    /// `general_level_idc` (30 × level, e.g. 120 for level 4).
    pub level_idc: u8,
    /// `sps_max_sub_layers_minus1 + 1`.
    pub max_sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// `chroma_format_idc` (1 = 4:2:0).
    pub chroma_format_idc: u8,
    /// Luma bit depth.
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width after the conformance window.
    pub width: u32,
    /// Displayed height after the conformance window.
    pub height: u32,
    /// Frame rate from the VUI timing info, if present.
    pub frame_rate: Option<FrameRate>,
}

fn malformed(detail: impl std::fmt::Debug) -> ParamsError {
    ParamsError::Malformed {
        codec: CODEC,
        what: "SPS",
        detail: format!("{detail:?}"),
    }
}

fn bad(detail: String) -> ParamsError {
    ParamsError::Unsupported {
        codec: CODEC,
        what: "SPS",
        detail,
    }
}

impl From<BitReaderError> for ParamsError {
    fn from(e: BitReaderError) -> Self {
        malformed(e)
    }
}

/// Checks that `nal` is a non-empty NAL unit of type `ty` (used for the VPS and PPS, whose
/// contents only decoders need).
pub(crate) fn check_nal(nal: &[u8], ty: u8, what: &'static str) -> Result<(), ParamsError> {
    if nal.len() < 3 {
        return Err(ParamsError::Malformed {
            codec: CODEC,
            what,
            detail: format!("{} bytes is too short", nal.len()),
        });
    }
    if nal_type(nal[0]) != ty {
        return Err(ParamsError::WrongNalType {
            codec: CODEC,
            what,
            nal_type: nal_type(nal[0]),
        });
    }
    Ok(())
}

/// Reads an unsigned Exp-Golomb value and checks it against an inclusive maximum.
fn ue_max<R: BitRead>(r: &mut R, name: &'static str, max: u32) -> Result<u32, ParamsError> {
    let v = r.read_ue(name)?;
    if v > max {
        return Err(bad(format!("{name} = {v}, above the maximum {max}")));
    }
    Ok(v)
}

/// Parses an SPS NAL unit (with its 2-byte header).
pub fn parse_sps(nal: &[u8]) -> Result<Sps, ParamsError> {
    check_nal(nal, NAL_SPS, "SPS")?;
    let mut r = BitReader::new(ByteReader::skipping_bytes(nal, HEADER_LEN));

    r.skip(4, "sps_video_parameter_set_id")?;
    let max_sub_layers_minus1: u8 = r.read(3, "sps_max_sub_layers_minus1")?;
    if max_sub_layers_minus1 > 6 {
        return Err(bad(format!(
            "sps_max_sub_layers_minus1 = {max_sub_layers_minus1}, above the maximum 6"
        )));
    }
    let temporal_id_nesting = r.read_bool("sps_temporal_id_nesting_flag")?;

    // profile_tier_level(1, sps_max_sub_layers_minus1), 7.3.3.
    let profile_space: u8 = r.read(2, "general_profile_space")?;
    let tier = r.read_bool("general_tier_flag")?;
    let profile_idc: u8 = r.read(5, "general_profile_idc")?;
    let compatibility_flags: u32 = r.read(32, "general_profile_compatibility_flags")?;
    let mut constraint_flags = [0u8; 6];
    for b in &mut constraint_flags {
        *b = r.read(8, "general_constraint_flags")?;
    }
    let level_idc: u8 = r.read(8, "general_level_idc")?;
    let mut sub_profile_present = [false; 8];
    let mut sub_level_present = [false; 8];
    for i in 0..usize::from(max_sub_layers_minus1) {
        sub_profile_present[i] = r.read_bool("sub_layer_profile_present_flag")?;
        sub_level_present[i] = r.read_bool("sub_layer_level_present_flag")?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2, "reserved_zero_2bits")?;
        }
    }
    for i in 0..usize::from(max_sub_layers_minus1) {
        if sub_profile_present[i] {
            r.skip(88, "sub_layer_profile")?;
        }
        if sub_level_present[i] {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }

    ue_max(&mut r, "sps_seq_parameter_set_id", 15)?;
    let chroma_format_idc = ue_max(&mut r, "chroma_format_idc", 3)? as u8;
    if chroma_format_idc == 3 {
        r.skip(1, "separate_colour_plane_flag")?;
    }
    let coded_width = ue_max(&mut r, "pic_width_in_luma_samples", 16_888)?;
    let coded_height = ue_max(&mut r, "pic_height_in_luma_samples", 16_888)?;
    let (mut crop_x, mut crop_y) = (0u32, 0u32);
    if r.read_bool("conformance_window_flag")? {
        // Offsets are in chroma units: ×2 horizontally for 4:2:0 and 4:2:2, vertically for 4:2:0.
        let sub_w = if chroma_format_idc == 1 || chroma_format_idc == 2 {
            2
        } else {
            1
        };
        let sub_h = if chroma_format_idc == 1 { 2 } else { 1 };
        let l = ue_max(&mut r, "conf_win_left_offset", 16_888)?;
        let rt = ue_max(&mut r, "conf_win_right_offset", 16_888)?;
        let t = ue_max(&mut r, "conf_win_top_offset", 16_888)?;
        let b = ue_max(&mut r, "conf_win_bottom_offset", 16_888)?;
        crop_x = sub_w * (l + rt);
        crop_y = sub_h * (t + b);
    }
    let (width, height) = match (coded_width.checked_sub(crop_x), coded_height.checked_sub(crop_y)) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(bad(format!(
                "conformance window crops {crop_x}x{crop_y} from a {coded_width}x{coded_height} picture"
            )));
        }
    };
    let bit_depth_luma = ue_max(&mut r, "bit_depth_luma_minus8", 8)? as u8 + 8;
    let bit_depth_chroma = ue_max(&mut r, "bit_depth_chroma_minus8", 8)? as u8 + 8;
    let log2_max_poc_lsb = ue_max(&mut r, "log2_max_pic_order_cnt_lsb_minus4", 12)? + 4;
    let ordering_all = r.read_bool("sps_sub_layer_ordering_info_present_flag")?;
    let first = if ordering_all { 0 } else { max_sub_layers_minus1 };
    for _ in first..=max_sub_layers_minus1 {
        r.read_ue("sps_max_dec_pic_buffering_minus1")?;
        r.read_ue("sps_max_num_reorder_pics")?;
        r.read_ue("sps_max_latency_increase_plus1")?;
    }
    ue_max(&mut r, "log2_min_luma_coding_block_size_minus3", 3)?;
    ue_max(&mut r, "log2_diff_max_min_luma_coding_block_size", 3)?;
    ue_max(&mut r, "log2_min_luma_transform_block_size_minus2", 3)?;
    ue_max(&mut r, "log2_diff_max_min_luma_transform_block_size", 3)?;
    r.read_ue("max_transform_hierarchy_depth_inter")?;
    r.read_ue("max_transform_hierarchy_depth_intra")?;
    if r.read_bool("scaling_list_enabled_flag")? && r.read_bool("sps_scaling_list_data_present_flag")? {
        skip_scaling_list_data(&mut r)?;
    }
    r.skip(2, "amp_enabled_flag, sample_adaptive_offset_enabled_flag")?;
    if r.read_bool("pcm_enabled_flag")? {
        r.skip(8, "pcm_sample_bit_depths")?;
        r.read_ue("log2_min_pcm_luma_coding_block_size_minus3")?;
        r.read_ue("log2_diff_max_min_pcm_luma_coding_block_size")?;
        r.skip(1, "pcm_loop_filter_disabled_flag")?;
    }
    let num_sets = ue_max(&mut r, "num_short_term_ref_pic_sets", 64)? as usize;
    let mut num_delta_pocs = [0u32; 64];
    for idx in 0..num_sets {
        num_delta_pocs[idx] = skip_st_ref_pic_set(&mut r, idx, &num_delta_pocs)?;
    }
    if r.read_bool("long_term_ref_pics_present_flag")? {
        let n = ue_max(&mut r, "num_long_term_ref_pics_sps", 32)?;
        for _ in 0..n {
            r.skip(log2_max_poc_lsb, "lt_ref_pic_poc_lsb_sps")?;
            r.skip(1, "used_by_curr_pic_lt_sps_flag")?;
        }
    }
    r.skip(2, "sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag")?;
    let frame_rate = if r.read_bool("vui_parameters_present_flag")? {
        read_vui_frame_rate(&mut r)?
    } else {
        None
    };

    Ok(Sps {
        profile_space,
        tier,
        profile_idc,
        compatibility_flags,
        constraint_flags,
        level_idc,
        max_sub_layers: max_sub_layers_minus1 + 1,
        temporal_id_nesting,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        width,
        height,
        frame_rate,
    })
}

/// Skips `scaling_list_data()` (7.3.4).
fn skip_scaling_list_data<R: BitRead>(r: &mut R) -> Result<(), ParamsError> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        let mut matrix_id = 0;
        while matrix_id < 6 {
            if !r.read_bool("scaling_list_pred_mode_flag")? {
                r.read_ue("scaling_list_pred_matrix_id_delta")?;
            } else {
                let coef_num = 64.min(1u32 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.read_se("scaling_list_dc_coef_minus8")?;
                }
                for _ in 0..coef_num {
                    r.read_se("scaling_list_delta_coef")?;
                }
            }
            matrix_id += step;
        }
    }
    Ok(())
}

/// Skips `st_ref_pic_set(idx)` (7.3.7) and returns its NumDeltaPocs, which later sets predicted
/// from it need.
fn skip_st_ref_pic_set<R: BitRead>(r: &mut R, idx: usize, num_delta_pocs: &[u32; 64]) -> Result<u32, ParamsError> {
    let inter = idx != 0 && r.read_bool("inter_ref_pic_set_prediction_flag")?;
    if inter {
        // In an SPS, delta_idx_minus1 is absent and inferred to be 0: the reference set is idx-1.
        r.skip(1, "delta_rps_sign")?;
        r.read_ue("abs_delta_rps_minus1")?;
        let ref_delta_pocs = num_delta_pocs[idx - 1];
        let mut count = 0;
        for _ in 0..=ref_delta_pocs {
            let used = r.read_bool("used_by_curr_pic_flag")?;
            let use_delta = used || r.read_bool("use_delta_flag")?;
            if use_delta {
                count += 1;
            }
        }
        if count > 32 {
            return Err(bad(format!(
                "short-term reference picture set {idx} has {count} pictures"
            )));
        }
        Ok(count)
    } else {
        let neg = ue_max(r, "num_negative_pics", 16)?;
        let pos = ue_max(r, "num_positive_pics", 16)?;
        for _ in 0..neg + pos {
            r.read_ue("delta_poc_minus1")?;
            r.skip(1, "used_by_curr_pic_flag")?;
        }
        Ok(neg + pos)
    }
}

/// Reads `vui_parameters()` (E.2.1) up to the timing info and returns the frame rate.
fn read_vui_frame_rate<R: BitRead>(r: &mut R) -> Result<Option<FrameRate>, ParamsError> {
    if r.read_bool("aspect_ratio_info_present_flag")? {
        let idc: u8 = r.read(8, "aspect_ratio_idc")?;
        if idc == 255 {
            r.skip(32, "sar_width, sar_height")?;
        }
    }
    if r.read_bool("overscan_info_present_flag")? {
        r.skip(1, "overscan_appropriate_flag")?;
    }
    if r.read_bool("video_signal_type_present_flag")? {
        r.skip(4, "video_format, video_full_range_flag")?;
        if r.read_bool("colour_description_present_flag")? {
            r.skip(24, "colour_description")?;
        }
    }
    if r.read_bool("chroma_loc_info_present_flag")? {
        r.read_ue("chroma_sample_loc_type_top_field")?;
        r.read_ue("chroma_sample_loc_type_bottom_field")?;
    }
    r.skip(3, "neutral_chroma, field_seq, frame_field_info_present")?;
    if r.read_bool("default_display_window_flag")? {
        for _ in 0..4 {
            r.read_ue("def_disp_win_offset")?;
        }
    }
    if !r.read_bool("vui_timing_info_present_flag")? {
        return Ok(None);
    }
    let num_units_in_tick: u32 = r.read(32, "vui_num_units_in_tick")?;
    let time_scale: u32 = r.read(32, "vui_time_scale")?;
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    // Unlike H.264, an H.265 tick is one picture.
    Ok(Some(reduce(FrameRate {
        num: time_scale,
        den: num_units_in_tick,
    })))
}

impl Sps {
    /// The RFC 6381 codec string (ISO/IEC 14496-15 E.3), e.g. `hvc1.1.6.L120.90`.
    pub fn codec_string(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let tier = if self.tier { 'H' } else { 'L' };
        // The compatibility flags are written in reverse bit order.
        let mut s = format!(
            "hvc1.{space}{}.{:x}.{tier}{}",
            self.profile_idc,
            self.compatibility_flags.reverse_bits(),
            self.level_idc
        );
        let used = self.constraint_flags.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &self.constraint_flags[..used] {
            s.push_str(&format!(".{b:x}"));
        }
        s
    }

    /// The `hvcC` decoder configuration record for these parameter sets.
    pub(crate) fn hvcc(&self, vps: &[u8], sps: &[u8], pps: &[u8]) -> mp4_atom::Hvcc {
        let array = |ty: u8, nal: &[u8]| mp4_atom::HvcCArray {
            completeness: true,
            nal_unit_type: ty,
            nalus: vec![nal.to_vec()],
        };
        mp4_atom::Hvcc {
            configuration_version: 1,
            general_profile_space: self.profile_space,
            general_tier_flag: self.tier,
            general_profile_idc: self.profile_idc,
            general_profile_compatibility_flags: self.compatibility_flags.to_be_bytes(),
            general_constraint_indicator_flags: self.constraint_flags,
            general_level_idc: self.level_idc,
            min_spatial_segmentation_idc: 0,
            parallelism_type: 0,
            chroma_format_idc: self.chroma_format_idc,
            bit_depth_luma_minus8: self.bit_depth_luma - 8,
            bit_depth_chroma_minus8: self.bit_depth_chroma - 8,
            avg_frame_rate: 0,
            constant_frame_rate: 0,
            num_temporal_layers: self.max_sub_layers,
            temporal_id_nested: self.temporal_id_nesting,
            length_size_minus_one: 3,
            arrays: vec![array(NAL_VPS, vps), array(NAL_SPS, sps), array(NAL_PPS, pps)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annexb::nal_units;

    const FIXTURE_1080: &[u8] = include_bytes!("../../../tests/fixtures/h265_1080p.h265");
    const FIXTURE_240: &[u8] = include_bytes!("../../../tests/fixtures/h265_240p.h265");

    fn first_nal(stream: &[u8], ty: u8) -> Vec<u8> {
        nal_units(stream)
            .find(|n| nal_type(n[0]) == ty)
            .expect("fixture has the NAL")
            .to_vec()
    }

    #[test]
    fn parses_fixture_sps() {
        let sps = parse_sps(&first_nal(FIXTURE_1080, NAL_SPS)).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.profile_idc, 1);
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!(sps.bit_depth_luma, 8);
        assert_eq!(sps.frame_rate, Some(FrameRate { num: 25, den: 1 }));
        assert!(sps.codec_string().starts_with("hvc1.1.6.L"), "{}", sps.codec_string());

        let small = parse_sps(&first_nal(FIXTURE_240, NAL_SPS)).unwrap();
        assert_eq!((small.width, small.height), (320, 240));
    }

    #[test]
    fn codec_string_matches_the_standard_example() {
        // ISO/IEC 14496-15 E.5: Main profile, Main tier, level 3.1, progressive, no constraints.
        let sps = Sps {
            profile_space: 0,
            tier: false,
            profile_idc: 1,
            compatibility_flags: 0x6000_0000,
            constraint_flags: [0x90, 0, 0, 0, 0, 0],
            level_idc: 93,
            max_sub_layers: 1,
            temporal_id_nesting: true,
            chroma_format_idc: 1,
            bit_depth_luma: 8,
            bit_depth_chroma: 8,
            width: 1280,
            height: 720,
            frame_rate: None,
        };
        assert_eq!(sps.codec_string(), "hvc1.1.6.L93.90");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let sps = first_nal(FIXTURE_1080, NAL_SPS);
        for len in 0..sps.len() {
            let _ = parse_sps(&sps[..len]);
        }
        assert!(parse_sps(&sps[..10]).is_err());
    }

    #[test]
    fn hostile_values_are_bounded() {
        // Header of an SPS, then all ones: every ue(v) read is huge or runs off the end.
        let mut nal = vec![0x42, 0x01];
        nal.extend(std::iter::repeat_n(0xff, 64));
        assert!(parse_sps(&nal).is_err());
        let mut zeros = vec![0x42, 0x01];
        zeros.extend(std::iter::repeat_n(0x00, 64));
        assert!(parse_sps(&zeros).is_err());
    }
}
