//! Index records: decoding any bytes never panics; a decoded record re-encodes identically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::{StreamId, WallTime};
use store::SegmentRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SegmentRecord::decode(StreamId::main("c"), WallTime::from_micros(0), 1, data) {
        let again = SegmentRecord::decode(StreamId::main("c"), WallTime::from_micros(0), 1, &r.encode());
        assert_eq!(again.as_ref(), Ok(&r));
    }
});
