//! A lower node's live stream (`live.mp4?relay=1`) read back into frames: any bytes, in any
//! chunking, give frames or an error, never a panic, and never a frame larger than its box.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::fmp4_stream::Fmp4StreamReader;
use media::{StreamId, WallTime};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut r = Fmp4StreamReader::new(StreamId::main("f"), 1 << 16);
    let cut = (split as usize * rest.len()) / 256;
    for part in [&rest[..cut], &rest[cut..]] {
        if r.push(part, WallTime::from_micros(0)).is_err() {
            return;
        }
        while let Some(f) = r.poll() {
            assert!(f.data.len() <= 1 << 16);
        }
    }
});
