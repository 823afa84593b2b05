//! Building stream parameters (and the MP4 sample entry) from hostile parameter sets: the first
//! byte picks the codec, the rest is split into VPS/SPS/PPS at the next two bytes' offsets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::StreamParams;

fuzz_target!(|data: &[u8]| {
    let [codec, a, b, rest @ ..] = data else { return };
    let a = (*a as usize).min(rest.len());
    let b = (a + *b as usize).min(rest.len());
    let (x, y, z) = (&rest[..a], &rest[a..b], &rest[b..]);
    let params = if codec & 1 == 0 { StreamParams::h264(x, y) } else { StreamParams::h265(x, y, z) };
    if let Ok(p) = params {
        let mut out = Vec::new();
        if media::fmp4::write_moov(&p, &mut out).is_ok() {
            let moov = media::fmp4::decode_moov(&out).expect("our own moov decodes");
            assert_eq!(media::fmp4::params_from_moov(&moov).expect("round trip"), p);
        }
    }
});
