//! Inputs the fuzz targets once found harmful, replayed the way the target feeds them, so a
//! dependency upgrade or a refactor cannot bring the harm back unnoticed.

use std::path::Path;

use media::fmp4_stream::Fmp4StreamReader;
use media::{StreamId, WallTime};

/// The `sgpd` inputs made `mp4-atom` loop billions of times allocating entries (an upper node
/// reading a hostile lower node's relay would abort). Each must now end in a clear error, fast.
#[test]
fn fmp4_stream_sample_group_bombs_are_refused() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/fmp4_stream"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz seeds are committed") {
        let path = entry.expect("readable seed").path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("sgpd-"))
        {
            continue;
        }
        let data = std::fs::read(&path).expect("readable seed");
        let (&split, rest) = data.split_first().expect("seed is not empty");
        let cut = (split as usize * rest.len()) / 256;
        let mut r = Fmp4StreamReader::new(StreamId::main("f"), 1 << 16);
        let started = std::time::Instant::now();
        let mut refused = None;
        for part in [&rest[..cut], &rest[cut..]] {
            if let Err(e) = r.push(part, WallTime::from_micros(0)) {
                refused = Some(e.to_string());
                break;
            }
            while r.poll().is_some() {}
        }
        let why = refused.unwrap_or_else(|| panic!("{} was accepted", path.display()));
        assert!(why.contains("sgpd"), "{}: {why}", path.display());
        assert!(
            started.elapsed().as_secs() < 2,
            "{} took {:?}",
            path.display(),
            started.elapsed()
        );
        seen += 1;
    }
    assert_eq!(seen, 5, "the five sgpd seeds are replayed");
}
