//! The segment-file reader that recovery and rebuild trust: any bytes scan to a result or an
//! error, and a result never claims more than the input holds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = store::segment_file::scan(&mut std::io::Cursor::new(data), data.len() as u64) {
        assert!(s.valid_len <= data.len() as u64);
        let mut end = s.init_len;
        for f in &s.fragments {
            assert!(f.byte_offset >= end && f.end_offset <= s.valid_len);
            end = f.end_offset;
        }
        let _ = s.to_record();
    }
});
