//! Index values: a segment record (open segments, and schema 1 indexes being migrated) and a
//! stream-hour of closed segments' summaries (schema 2). Decoding any bytes never panics; what
//! decodes re-encodes to the same value; an hour's segments are in it and in order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::{StreamId, WallTime};
use store::SegmentRecord;
use store::hour_block;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SegmentRecord::decode(StreamId::main("c"), WallTime::from_micros(0), 1, data) {
        let again = SegmentRecord::decode(StreamId::main("c"), WallTime::from_micros(0), 1, &r.encode());
        assert_eq!(again.as_ref(), Ok(&r));
    }
    // Any hour, the extremes included: the first 8 bytes pick it.
    let (hour, body) = match data.split_first_chunk::<8>() {
        Some((h, rest)) => (i64::from_le_bytes(*h) >> 20, rest),
        None => (493_172, data),
    };
    let stream = StreamId::main("c");
    if let Ok(segments) = hour_block::decode(&stream, hour, body) {
        for w in segments.windows(2) {
            assert!((w[0].start, w[0].seq) < (w[1].start, w[1].seq));
        }
        assert!(segments.iter().all(|s| hour_block::hour_of(s.start) == hour && s.closed));
        let again = hour_block::decode(&stream, hour, &hour_block::encode(hour, &segments));
        assert_eq!(again.as_ref(), Ok(&segments));
    }
});
