//! Where things live in a data directory (see `docs/storage.md`):
//!
//! ```text
//! DATA/
//!   .lock                                   flock held by the process using the directory
//!   index.redb                              the index (a cache of the segment files)
//!   segments/<camera>/<main|sub>/<YYYYMMDD>/<seq:010>.mp4
//! ```
//!
//! The date directory is the UTC date of the segment's start, so no directory holds more than a
//! day of one stream (1,440 files at 60 s).

use std::path::{Path, PathBuf};

use media::{StreamId, StreamKind, WallTime};

/// File name of the index inside a data directory.
pub const INDEX_FILE: &str = "index.redb";
/// Directory of segment files inside a data directory.
pub const SEGMENTS_DIR: &str = "segments";
/// Lock file inside a data directory.
pub const LOCK_FILE: &str = ".lock";

/// The file of segment `seq` of `stream` starting at `start`, relative to the data directory.
pub fn segment_path(stream: &StreamId, start: WallTime, seq: u64) -> PathBuf {
    let (y, m, d) = utc_date(start);
    Path::new(SEGMENTS_DIR)
        .join(stream.camera())
        .join(stream.kind().as_str())
        .join(format!("{y:04}{m:02}{d:02}"))
        .join(format!("{seq:010}.mp4"))
}

/// The stream and sequence number a relative segment path names, if it is one.
pub fn parse_segment_path(rel: &Path) -> Option<(StreamId, u64)> {
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    let [SEGMENTS_DIR, camera, kind, date, file] = parts.as_slice() else {
        return None;
    };
    let kind = StreamKind::parse(kind)?;
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq = file.strip_suffix(".mp4")?.parse().ok()?;
    Some((StreamId::new(*camera, kind), seq))
}

/// The index key of a stream: `camera/main` or `camera/sub`.
pub fn stream_key(stream: &StreamId) -> String {
    stream.to_string()
}

/// The stream of an index key.
pub fn parse_stream_key(key: &str) -> Option<StreamId> {
    let (camera, kind) = key.rsplit_once('/')?;
    Some(StreamId::new(camera, StreamKind::parse(kind)?))
}

/// The UTC civil date of a wall time (proleptic Gregorian; H. Hinnant's days-to-civil).
pub fn utc_date(t: WallTime) -> (i64, u32, u32) {
    let days = t.as_micros().div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(WallTime::from_micros(0)), (1970, 1, 1));
        // 2026-11-23T08:00:00Z
        assert_eq!(utc_date(WallTime::from_micros(1_795_420_800_000_000)), (2026, 11, 23));
        assert_eq!(utc_date(WallTime::from_micros(951_782_400_000_000)), (2000, 2, 29));
        assert_eq!(utc_date(WallTime::from_micros(-1)), (1969, 12, 31));
    }

    #[test]
    fn segment_paths_round_trip() {
        let s = StreamId::new("34020000001320000001", StreamKind::Sub);
        let p = segment_path(&s, WallTime::from_micros(1_795_420_800_000_000), 42);
        assert_eq!(
            p,
            Path::new("segments/34020000001320000001/sub/20261123/0000000042.mp4")
        );
        assert_eq!(parse_segment_path(&p), Some((s.clone(), 42)));
        assert_eq!(parse_stream_key(&stream_key(&s)), Some(s));
        assert_eq!(parse_segment_path(Path::new("segments/x/main/2026/1.mp4")), None);
        assert_eq!(parse_segment_path(Path::new("segments/x/other/20261123/1.mp4")), None);
    }
}
