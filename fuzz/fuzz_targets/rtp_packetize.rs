//! RTP packetization of arbitrary access units (MP4 form, possibly with lengths that lie):
//! never a panic, every payload within the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::VideoCodec;
use media::rtp::{MAX_PAYLOAD, length_prefixed_nals, packetize};

fuzz_target!(|data: &[u8]| {
    let (codec, rest) = match data.split_first() {
        Some((b, rest)) if b & 1 == 0 => (VideoCodec::H264, rest),
        Some((_, rest)) => (VideoCodec::H265, rest),
        None => return,
    };
    let max = 16 + usize::from(rest.first().copied().unwrap_or(0)) * 8;
    for limit in [max.min(MAX_PAYLOAD), MAX_PAYLOAD] {
        for p in packetize(codec, length_prefixed_nals(rest), limit) {
            assert!(p.len() <= limit);
        }
    }
});
