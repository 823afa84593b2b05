//! Retention over 100 simulated days in seconds: segments (real files, real index) of a
//! standard-tier and a key-tier camera, one pass per simulated day, holds placed and released.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use media::{StreamId, VideoCodec, WallTime};
use store::holds::Holds;
use store::retention::{FreeFloor, RetentionPolicy, run_pass};
use store::{SegmentRecord, Store};

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

fn record(camera: &str, seq: u64, start: i64) -> SegmentRecord {
    SegmentRecord {
        stream: StreamId::main(camera),
        seq,
        start: WallTime::from_micros(start),
        end: WallTime::from_micros(start + HOUR),
        media_start: 0,
        timeline_start: 0,
        media_duration: 3600 * 90_000,
        frames: 90_000,
        bytes: 100,
        closed: true,
        codec: VideoCodec::H264,
        width: 320,
        height: 240,
        key_frames: vec![],
    }
}

fn file(data: &Path, r: &SegmentRecord) -> PathBuf {
    store::segment_file_path(data, r)
}

#[test]
fn hundred_days_of_retention_with_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let t0 = 1_700_000_000_000_000i64 / DAY * DAY;
    let (store, _) = Store::open(std::slice::from_ref(&data)).unwrap();
    let holds = Holds::open(std::slice::from_ref(&data)).unwrap();
    let policy = RetentionPolicy {
        standard: Duration::from_secs(30 * 86_400),
        key: Duration::from_secs(90 * 86_400),
        key_cameras: HashSet::from(["key".to_owned()]),
        min_free: FreeFloor::Bytes(0),
        batch: 50,
    };
    let index = store.disks()[0].index();
    // Evidence: days 10–12 of the standard camera, day 40 of the key camera.
    let held_std = holds
        .add(
            "std",
            WallTime::from_micros(t0 + 10 * DAY),
            WallTime::from_micros(t0 + 12 * DAY),
            "case A",
            "test",
        )
        .unwrap();
    holds
        .add(
            "key",
            WallTime::from_micros(t0 + 40 * DAY),
            WallTime::from_micros(t0 + 41 * DAY),
            "case B",
            "test",
        )
        .unwrap();

    let mut seq = 0;
    let mut deleted_total = 0;
    for day in 1..=100i64 {
        // Record the day: one segment per camera per hour.
        let mut batch = Vec::new();
        for h in 0..24 {
            for cam in ["std", "key"] {
                seq += 1;
                let r = record(cam, seq, t0 + (day - 1) * DAY + h * HOUR);
                let f = file(&data, &r);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(&f, [0u8; 100]).unwrap();
                batch.push(r);
            }
        }
        index.put(&batch).unwrap();
        if day == 60 {
            holds.release(&held_std.id).unwrap();
        }
        let now = WallTime::from_micros(t0 + day * DAY);
        let before: Vec<SegmentRecord> = index.all_segments().unwrap();
        let report = run_pass(&store, &holds, &policy, now, false).unwrap();
        let after: HashSet<(String, u64)> = index
            .all_segments()
            .unwrap()
            .iter()
            .map(|r| (r.stream.camera().to_owned(), r.seq))
            .collect();
        for r in &before {
            let cam = r.stream.camera();
            let guarantee = policy.guarantee(policy.tier(cam)).as_micros() as i64;
            let expired = r.end.as_micros() <= now.as_micros() - guarantee;
            let held = holds.covers(cam, r.start, r.end);
            let kept = after.contains(&(cam.to_owned(), r.seq));
            if kept {
                assert!(
                    !expired || held,
                    "day {day}: {cam} #{} expired and unheld but kept",
                    r.seq
                );
                assert!(file(&data, r).exists(), "day {day}: indexed segment's file is gone");
            } else {
                assert!(
                    expired,
                    "day {day}: {cam} #{} deleted {} h before its guarantee",
                    r.seq,
                    (now.as_micros() - guarantee - r.end.as_micros()) / -HOUR
                );
                assert!(!held, "day {day}: held segment {cam} #{} deleted", r.seq);
                assert!(!file(&data, r).exists(), "day {day}: deleted segment's file remains");
            }
        }
        deleted_total += report.expired;
        assert_eq!(report.pressure, 0);
        // Held evidence survives while held.
        if (12..60).contains(&day) {
            assert!(
                index
                    .segments(
                        &StreamId::main("std"),
                        WallTime::from_micros(t0 + 10 * DAY),
                        WallTime::from_micros(t0 + 12 * DAY)
                    )
                    .unwrap()
                    .len()
                    == 48
            );
        }
    }
    // At day 100: standard keeps days 71..100 (30 days), key keeps days 11..100 plus its hold.
    let std_left = index
        .segments(
            &StreamId::main("std"),
            WallTime::from_micros(t0),
            WallTime::from_micros(t0 + 101 * DAY),
        )
        .unwrap();
    assert_eq!(
        std_left.len(),
        30 * 24,
        "after the release, the standard camera's held days went too"
    );
    let key_left = index
        .segments(
            &StreamId::main("key"),
            WallTime::from_micros(t0),
            WallTime::from_micros(t0 + 101 * DAY),
        )
        .unwrap();
    assert_eq!(key_left.len(), 90 * 24);
    assert_eq!(deleted_total, 100 * 48 - 30 * 24 - 90 * 24);
    // The day directories emptied by retention are gone; nothing is left unindexed.
    let on_disk = walk(&data.join("segments"));
    assert_eq!(on_disk, 30 * 24 + 90 * 24, "no orphan files");
    let stats: u64 = index.stream_stats().unwrap().iter().map(|s| s.1).sum();
    assert_eq!(stats, (30 * 24 + 90 * 24) * 100, "byte accounting follows deletes");
}

fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += walk(&p);
        } else {
            n += 1;
        }
    }
    n
}
