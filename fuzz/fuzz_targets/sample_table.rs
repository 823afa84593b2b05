//! A segment file's trailing sample table (`store::sample_table`), which playback trusts
//! instead of walking the file: any bytes decode to a table or an error, never a panic or an
//! allocation out of proportion to the input; a table that decodes re-encodes to the same
//! table, and its offsets never wrap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use store::sample_table::SampleTable;

const START: i64 = 1_795_420_800_000_000;

fuzz_target!(|data: &[u8]| {
    // As found on disk: the box, or a box with a checksum made right (to reach the decoder
    // beyond the checksum).
    let mut fixed = data.to_vec();
    if fixed.len() >= 29 {
        let n = fixed.len();
        let crc = crc32fast::hash(&fixed[24..n - 4]);
        fixed[n - 4..].copy_from_slice(&crc.to_be_bytes());
        fixed[..4].copy_from_slice(&(n as u32).to_be_bytes());
        fixed[4..8].copy_from_slice(b"uuid");
        fixed[8..24].copy_from_slice(&store::sample_table::TABLE_UUID);
    }
    for bytes in [data, &fixed[..]] {
        if let Ok((t, len)) = SampleTable::from_box(bytes, START) {
            assert!(len as usize <= bytes.len());
            assert!(t.samples.len() <= bytes.len() * 8);
            let again = SampleTable::from_box(&t.to_box(START), START).expect("a table re-encodes");
            assert_eq!(again.0, t);
            let mut end = t.fragments.first().map_or(0, |f| f.byte_offset);
            for f in &t.fragments {
                assert!(f.byte_offset >= end && f.data_start >= f.byte_offset);
                end = f.data_start + t.sample_bytes(f);
            }
        }
    }
});
