//! The H.264 SPS parser: any bytes give a result or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sps) = media::h264::parse_sps(data) {
        assert!(sps.width > 0 && sps.height > 0);
        let _ = sps.codec_string();
    }
});
