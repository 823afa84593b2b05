//! The PS demuxer: any bytes, fed in any pieces with losses and frame ends between them, give
//! frames or nothing, never a panic, never a frame over the size limit, and never a frame that
//! is not a key frame first, at the start or after a loss.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::ps::{MAX_FRAME, PsDemuxer};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let mut d = PsDemuxer::new();
    let mut expect_key = true;
    let check = |d: &mut PsDemuxer, expect_key: &mut bool| {
        while let Some(f) = d.poll() {
            assert!(f.data.len() <= MAX_FRAME);
            assert!(f.key || !*expect_key, "a frame before a key frame");
            *expect_key = false;
        }
    };
    let piece = usize::from(control % 64) + 1;
    for (i, chunk) in rest.chunks(piece).enumerate() {
        d.push(chunk);
        check(&mut d, &mut expect_key);
        match (control >> 6, i % 7) {
            (1, 3) => {
                d.lost();
                expect_key = true;
            }
            (2, _) => d.end_of_frame(),
            _ => {}
        }
        check(&mut d, &mut expect_key);
    }
    d.finish();
    check(&mut d, &mut expect_key);
});
