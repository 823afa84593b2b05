//! The H.265 SPS parser (hand-written, so the one most worth fuzzing).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sps) = media::h265::parse_sps(data) {
        assert!(sps.width > 0 && sps.height > 0);
        assert!((8..=16).contains(&sps.bit_depth_luma));
        let _ = sps.codec_string();
    }
});
