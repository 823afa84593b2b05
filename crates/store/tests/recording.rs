//! The recorder and recovery over real files, checked with ffprobe/ffmpeg where installed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use camsim::BuiltinFixture;
use media::{StreamId, WallTime};
use store::playback::read_segment_samples;
use store::segment_file::{scan, scan_file};
use store::{RecorderConfig, SegmentRecord, Store};

/// A data directory that does not exist yet inside a temporary one: the store creates it, as
/// at a first start (an existing empty directory is refused as a possibly unmounted disk).
struct Dir(
    #[allow(dead_code, reason = "kept so the directory lives as long as the test")] tempfile::TempDir,
    PathBuf,
);

impl Dir {
    fn path(&self) -> &Path {
        &self.1
    }
}

fn tempdir() -> Dir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("data");
    Dir(t, p)
}

const T0: i64 = 1_795_420_800_000_000; // 2026-11-23T08:00:00Z

fn cfg(segment_ms: u64) -> RecorderConfig {
    RecorderConfig {
        segment: Duration::from_millis(segment_ms),
        flush_interval: Duration::from_millis(100),
        queue_frames: 100_000,
        ..RecorderConfig::default()
    }
}

/// Records `n` frames of each fixture on its own stream, shuts down, returns the records.
fn record(dir: &Path, fixtures: &[(&str, BuiltinFixture)], n: usize, segment_ms: u64) -> Vec<SegmentRecord> {
    let (store, _) = Store::open(&[dir.to_owned()]).unwrap();
    let rec = store.start_recorder(cfg(segment_ms)).unwrap();
    for (cam, fx) in fixtures {
        let stream = StreamId::main(*cam);
        for f in fx.load().frames(&stream, n, 1_000_000, WallTime::from_micros(T0)) {
            rec.try_push(f).unwrap();
        }
        rec.end_stream(&stream);
    }
    rec.shutdown().unwrap();
    let all = store.disks()[0].index().all_segments().unwrap();
    drop(store);
    all
}

/// (frames counted by ffprobe, ffmpeg's error output when decoding the whole file)
fn probe(path: &Path) -> (u64, String) {
    (
        testkit::ffprobe_packets(path),
        testkit::ffmpeg_errors(&path.to_string_lossy()),
    )
}

fn file_of(dir: &Path, r: &SegmentRecord) -> PathBuf {
    store::segment_file_path(dir, r)
}

#[test]
fn recorded_segments_are_complete_contiguous_and_decodable() {
    let dir = tempdir();
    let fixtures = [
        ("h264cam", BuiltinFixture::H264_240p),
        ("h265cam", BuiltinFixture::H265_240p),
    ];
    let records = record(dir.path(), &fixtures, 250, 2000);
    for (cam, _) in fixtures {
        let segs: Vec<&SegmentRecord> = records.iter().filter(|r| r.stream.camera() == cam).collect();
        assert!(segs.len() >= 4, "{cam}: {} segments", segs.len());
        assert_eq!(
            segs.iter().map(|r| r.frames).sum::<u64>(),
            250,
            "{cam}: every frame recorded"
        );
        assert!(segs.iter().all(|r| r.closed && r.key_frames.is_empty()));
        for w in segs.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            assert_eq!(w[1].start, w[0].end, "{cam}: segments are back to back");
        }
        assert_eq!(segs[0].start, WallTime::from_micros(T0));
        assert_eq!(segs.last().unwrap().end, WallTime::from_micros(T0 + 250 * 40_000));
        // Files agree with the index byte for byte, and each ends with its sample table,
        // which gives exactly the samples a walk of its fragments does.
        for r in &segs {
            let path = file_of(dir.path(), r);
            let scan = scan_file(&path).unwrap();
            assert_eq!(scan.to_record().unwrap().summary(), **r);
            assert_eq!(scan.valid_len, r.bytes);
            assert_eq!(scan.table_end, Some(scan.file_len), "{cam}: the table ends the file");
            assert_eq!(scan.tail_problem, None);
            let from_table = read_segment_samples(&path, r).unwrap();
            let walked = read_segment_samples(
                &path,
                &SegmentRecord {
                    closed: false,
                    ..(**r).clone()
                },
            )
            .unwrap();
            assert!(from_table.from_table && !walked.from_table);
            // The GOPs the file's table gives are those a scan of its fragments finds.
            let summary = SegmentRecord {
                key_frames: Vec::new(),
                ..(**r).clone()
            };
            assert_eq!(
                store::playback::segment_gops(&path, &summary).unwrap(),
                scan.to_record().unwrap().key_frames
            );
            assert_eq!(from_table.samples, walked.samples, "{cam}: table and walk agree");
            assert_eq!(from_table.samples.len() as u64, r.frames);
        }
        testkit::require_ffmpeg();
        {
            let mut total = 0;
            for r in &segs {
                let (n, errors) = probe(&file_of(dir.path(), r));
                assert_eq!(n, r.frames, "{cam}: ffprobe counts the indexed frames");
                assert!(errors.is_empty(), "{cam}: ffmpeg decode errors: {errors}");
                total += n;
            }
            assert_eq!(total, 250);
        }
    }
    // The listing is one continuous range per stream.
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    let ranges = store
        .recordings(
            &StreamId::main("h264cam"),
            WallTime::from_micros(T0 - 1_000_000),
            WallTime::from_micros(T0 + 20_000_000),
        )
        .unwrap();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].start, WallTime::from_micros(T0));
    assert_eq!(ranges[0].end, WallTime::from_micros(T0 + 10_000_000));
    // A window inside is clamped.
    let inner = store
        .recordings(
            &StreamId::main("h264cam"),
            WallTime::from_micros(T0 + 3_000_000),
            WallTime::from_micros(T0 + 4_000_000),
        )
        .unwrap();
    assert_eq!(inner.len(), 1);
    assert_eq!(
        (inner[0].start.as_micros(), inner[0].end.as_micros()),
        (T0 + 3_000_000, T0 + 4_000_000)
    );
}

#[test]
fn parameter_change_and_discontinuity_start_new_segments() {
    let dir = tempdir();
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    let rec = store.start_recorder(cfg(60_000)).unwrap();
    let s = StreamId::main("cam");
    let small = BuiltinFixture::H264_240p
        .load()
        .frames(&s, 50, 0, WallTime::from_micros(T0));
    let mut big = BuiltinFixture::H264_1080p
        .load()
        .frames(&s, 50, 50 * 3600, WallTime::from_micros(T0 + 2_000_000));
    big[0].discontinuity = false; // a mid-stream resolution switch, not a new session
    let mut later = BuiltinFixture::H264_1080p
        .load()
        .frames(&s, 30, 0, WallTime::from_micros(T0 + 10_000_000));
    later[0].discontinuity = true;
    for f in small.into_iter().chain(big).chain(later) {
        rec.try_push(f).unwrap();
    }
    rec.shutdown().unwrap();
    let segs = store.disks()[0].index().all_segments().unwrap();
    let dims: Vec<(u32, u32, u64)> = segs.iter().map(|r| (r.width, r.height, r.frames)).collect();
    assert_eq!(dims, vec![(320, 240, 50), (1920, 1080, 50), (1920, 1080, 30)]);
    assert_eq!(
        segs[1].start, segs[0].end,
        "a parameter change inside a session leaves no gap"
    );
    let ranges = store
        .recordings(&s, WallTime::from_micros(T0), WallTime::from_micros(T0 + 60_000_000))
        .unwrap();
    assert_eq!(ranges.len(), 2, "the discontinuity is a real gap: {ranges:?}");
}

#[test]
fn frames_before_the_first_key_frame_are_not_recorded() {
    let dir = tempdir();
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    let rec = store.start_recorder(cfg(60_000)).unwrap();
    let s = StreamId::main("cam");
    let frames = BuiltinFixture::H264_240p
        .load()
        .frames(&s, 60, 0, WallTime::from_micros(T0));
    for f in frames.into_iter().skip(10) {
        rec.try_push(f).unwrap();
    }
    rec.shutdown().unwrap();
    let segs = store.disks()[0].index().all_segments().unwrap();
    assert_eq!(segs.iter().map(|r| r.frames).sum::<u64>(), 35, "frames 25..60");
    assert_eq!(segs[0].start, WallTime::from_micros(T0 + 25 * 40_000));
}

#[test]
fn rebuild_regenerates_the_same_index() {
    let dir = tempdir();
    let before = record(
        dir.path(),
        &[("a", BuiltinFixture::H264_240p), ("b", BuiltinFixture::H265_240p)],
        200,
        1500,
    );
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let report = store::rebuild(dir.path()).unwrap();
    assert_eq!(report.segments, before.len());
    assert!(report.skipped.is_empty());
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    assert_eq!(store.disks()[0].index().all_segments().unwrap(), before);
}

#[test]
fn rebuild_refuses_a_directory_in_use() {
    let dir = tempdir();
    let (_store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    let err = store::rebuild(dir.path()).unwrap_err();
    assert!(err.to_string().contains("in use by another Sharpeye process"), "{err}");
}

#[test]
fn recovery_trims_a_torn_tail_and_closes_the_open_segment() {
    let dir = tempdir();
    let records = record(dir.path(), &[("cam", BuiltinFixture::H264_240p)], 100, 60_000);
    let [original] = records.as_slice() else {
        panic!("one segment")
    };
    let path = file_of(dir.path(), original);
    // The index keeps summaries of closed segments: the file's scan has the GOPs.
    let whole = scan_file(&path).unwrap().to_record().unwrap();
    // As if the process died mid-write: the index knows an earlier, open state, and the file
    // has half a fragment more.
    {
        let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
        let mut stale = whole.clone();
        stale.closed = false;
        stale.key_frames.truncate(2);
        stale.frames = stale.key_frames.iter().map(|f| u64::from(f.frames)).sum();
        stale.bytes = whole.key_frames[2].byte_offset;
        store.disks()[0].index().put(&[stale]).unwrap();
    }
    let torn: Vec<u8> = std::fs::read(&path).unwrap()[whole.key_frames[1].byte_offset as usize..][..3000].to_vec();
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    drop(f);

    let (store, reports) = Store::open(&[dir.path().to_owned()]).unwrap();
    assert_eq!(reports[0].closed_open_segments, 1);
    assert_eq!(reports[0].trimmed_bytes, 3000);
    assert_eq!(store.disks()[0].index().all_segments().unwrap(), records);
    // What was torn is cut; the sample table the segment closed with is kept.
    let scan = scan_file(&path).unwrap();
    assert_eq!(scan.valid_len, original.bytes);
    assert_eq!(scan.table_end, Some(std::fs::metadata(&path).unwrap().len()));
    assert_eq!(reports[0].tables_added, 0);
}

/// A crash mid-segment leaves a file without its sample table: it plays while open (read by
/// walking its fragments), and recovery closes it with the table of what it holds.
#[test]
fn a_segment_cut_off_before_its_table_plays_and_gets_one_at_recovery() {
    let dir = tempdir();
    let records = record(dir.path(), &[("cam", BuiltinFixture::H264_240p)], 100, 60_000);
    let [original] = records.as_slice() else {
        panic!("one segment")
    };
    let path = file_of(dir.path(), original);
    let walked = {
        let mut open = original.clone();
        open.closed = false;
        read_segment_samples(&path, &open).unwrap().samples
    };
    let whole = std::fs::read(&path).unwrap();
    let table_len = whole.len() as u64 - original.bytes;
    // As if the process died while closing it: half its table written, the index says open.
    // Recovery cuts the torn half and writes the table whole.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(original.bytes + table_len / 2)
        .unwrap();
    let mut stale = original.clone();
    stale.closed = false;
    {
        let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
        store.disks()[0].index().put(std::slice::from_ref(&stale)).unwrap();
    }
    let (store, reports) = Store::open(&[dir.path().to_owned()]).unwrap();
    assert_eq!((reports[0].trimmed_bytes, reports[0].tables_added), (table_len / 2, 1));
    assert_eq!(store.disks()[0].index().all_segments().unwrap(), records);
    drop(store);
    assert_eq!(std::fs::read(&path).unwrap(), whole, "the same table, whole");
    // As if the process died before closing it: no table, the index says open.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(original.bytes)
        .unwrap();
    let mut stale = original.clone();
    stale.closed = false;
    {
        let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
        store.disks()[0].index().put(std::slice::from_ref(&stale)).unwrap();
    }
    assert_eq!(read_segment_samples(&path, &stale).unwrap().samples, walked);
    // A closed record over a file without a table (a table lost to a full disk) is read by
    // the walk too.
    assert!(!read_segment_samples(&path, original).unwrap().from_table);
    assert_eq!(read_segment_samples(&path, original).unwrap().samples, walked);
    let (store, reports) = Store::open(&[dir.path().to_owned()]).unwrap();
    assert_eq!((reports[0].closed_open_segments, reports[0].tables_added), (1, 1));
    assert_eq!(store.disks()[0].index().all_segments().unwrap(), records);
    let scan = scan_file(&path).unwrap();
    assert_eq!(scan.table_end, Some(scan.file_len));
    let read = read_segment_samples(&path, original).unwrap();
    assert!(read.from_table);
    assert_eq!(read.samples, walked);
    // A damaged table is not believed: the walk answers.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let read = read_segment_samples(&path, original).unwrap();
    assert!(!read.from_table);
    assert_eq!(read.samples, walked);
}

#[test]
fn recovery_indexes_files_the_index_never_saw_and_removes_empty_ones() {
    let dir = tempdir();
    let records = record(dir.path(), &[("cam", BuiltinFixture::H265_240p)], 150, 2000);
    // An empty file from a crash right after creation, next in sequence.
    let empty = dir.path().join(store::layout::segment_path(
        &StreamId::main("cam"),
        records[0].start,
        99,
    ));
    std::fs::write(&empty, b"").unwrap();
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let (store, reports) = Store::open(&[dir.path().to_owned()]).unwrap();
    assert_eq!(reports[0].recovered_files, records.len());
    assert_eq!(reports[0].removed_empty_files, 1);
    assert!(!empty.exists());
    assert_eq!(store.disks()[0].index().all_segments().unwrap(), records);
}

#[test]
fn scanning_any_truncation_or_corruption_never_panics_and_never_overstates() {
    let dir = tempdir();
    let records = record(dir.path(), &[("cam", BuiltinFixture::H264_240p)], 60, 60_000);
    let bytes = std::fs::read(file_of(dir.path(), &records[0])).unwrap();
    let full = scan(&mut std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
    let init = full.init_len as usize;
    let ends: Vec<u64> = full.fragments.iter().map(|f| f.end_offset).collect();
    let mut cut = 0;
    while cut < bytes.len() {
        let r = scan(&mut std::io::Cursor::new(&bytes[..cut]), cut as u64);
        match r {
            Err(_) => assert!(cut < init, "an intact init part must scan (cut at {cut})"),
            Ok(s) => {
                assert!(s.valid_len <= cut as u64);
                assert_eq!(s.fragments.len(), ends.iter().filter(|&&e| e <= cut as u64).count());
            }
        }
        cut += if cut < init + 64 { 1 } else { 37 };
    }
    let mut seed = 7u64;
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..4 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (seed >> 33) as usize % b.len();
            b[i] = (seed >> 17) as u8;
        }
        if let Ok(s) = scan(&mut std::io::Cursor::new(&b), b.len() as u64) {
            assert!(s.valid_len <= b.len() as u64);
        }
    }
}

#[test]
fn pending_frames_are_flushed_and_indexed_on_the_recorder_clock() {
    // On a simulated clock the flush tick comes only when the clock moves: nothing of a GOP in
    // progress reaches the index until then, and it does within a tick of the clock moving.
    let dir = tempdir();
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    let clock = std::sync::Arc::new(media::clock::SimClock::new(WallTime::from_micros(T0)));
    let rec = store
        .start_recorder(RecorderConfig {
            clock: clock.clone(),
            ..cfg(60_000)
        })
        .unwrap();
    let stream = StreamId::main("sim");
    // Half a GOP (the fixture's key frames are 1 s apart at 25 fps): nothing closes a fragment.
    for f in BuiltinFixture::H264_240p
        .load()
        .frames(&stream, 12, 1_000_000, WallTime::from_micros(T0))
    {
        rec.try_push(f).unwrap();
    }
    let index = store.disks()[0].index();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        index.all_segments().unwrap().is_empty(),
        "flushed without the clock moving"
    );
    clock.advance(Duration::from_millis(150));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let frames = loop {
        let all = index.all_segments().unwrap();
        if let Some(r) = all.first() {
            break r.frames;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not flushed after the clock moved"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // All but the last frame, whose duration is not known yet.
    assert_eq!(frames, 11);
    rec.shutdown().unwrap();
}

/// The frames of a playback plan read back as they were recorded: byte for byte, key frames
/// where they were, from the key frame before the range's start, across segment boundaries.
#[test]
fn plan_frames_read_back_what_was_recorded() {
    let dir = tempdir();
    record(dir.path(), &[("cam", BuiltinFixture::H264_240p)], 250, 2000);
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    let stream = StreamId::main("cam");
    let sent: Vec<media::Frame> =
        BuiltinFixture::H264_240p
            .load()
            .frames(&stream, 250, 1_000_000, WallTime::from_micros(T0));
    let plan = store::playback::plan(
        &store,
        &store::playback::SampleCache::new(16),
        &store::playback::PlaybackRequest {
            stream: stream.clone(),
            start: WallTime::from_micros(T0 + 2_500_000),
            end: WallTime::from_micros(T0 + 7_000_000),
            speed: 1,
        },
    )
    .unwrap();
    let got: Vec<media::Frame> = store::playback::PlanFrames::new(plan, stream)
        .collect::<Result<_, _>>()
        .unwrap();
    // 2.5 s in: decoding starts at the key frame of 2 s (frame 50); the range ends at 7 s.
    assert_eq!(got.len(), 175 - 50);
    assert!(got[0].key && got[0].discontinuity && got[0].media_time == 0);
    assert_eq!(got[0].wall_time, WallTime::from_micros(T0 + 2_000_000));
    for (g, s) in got.iter().zip(&sent[50..]) {
        assert_eq!(g.data, s.data);
        assert_eq!(g.key, s.key);
        assert_eq!(g.wall_time, s.wall_time);
        assert_eq!(g.media_time, s.media_time - sent[50].media_time);
    }
}

/// Segments without their table (a migrated data directory's, one a crash tore mid-table) get
/// it from the background pass, as the recorder would have written it, and then play from it;
/// a second pass finds nothing to do.
#[test]
fn the_backfill_gives_every_closed_segment_its_table_as_the_recorder_would() {
    let dir = tempdir();
    let records = record(dir.path(), &[("cam", BuiltinFixture::H264_240p)], 250, 2000);
    assert!(records.len() >= 4);
    let mut originals = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let path = file_of(dir.path(), r);
        let whole = std::fs::read(&path).unwrap();
        originals.push(whole.clone());
        // Every other file as an older release left it; one with half its table.
        let cut = if i == 1 {
            r.bytes + (whole.len() as u64 - r.bytes) / 2
        } else if i % 2 == 0 {
            r.bytes
        } else {
            continue;
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
    }
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // An index of this format knows its segments have their tables: nothing is checked.
    assert!(store.disks()[0].index().tables_complete().unwrap());
    assert_eq!(store::backfill::run(&store, &stop, false).checked, 0);
    // As after a migration from schema 1, it does not.
    drop(store);
    let index_path = dir.path().join("index.redb");
    let full: Vec<_> = records
        .iter()
        .map(|r| {
            let mut full = r.clone();
            full.key_frames = store::playback::segment_gops(&file_of(dir.path(), r), r).unwrap_or_default();
            full
        })
        .collect();
    std::fs::remove_file(&index_path).unwrap();
    store::index::Index::write_schema_v1(&index_path, &full).unwrap();
    let (store, _) = Store::open(&[dir.path().to_owned()]).unwrap();
    assert!(!store.disks()[0].index().tables_complete().unwrap());
    // Told to stop, it stops before the next file, and the disk is not marked done.
    let stopped = std::sync::atomic::AtomicBool::new(true);
    assert_eq!(store::backfill::run(&store, &stopped, false).checked, 0);
    assert!(!store.disks()[0].index().tables_complete().unwrap());
    let report = store::backfill::run(&store, &stop, false);
    // The even ones cut back to their fragments, and the second torn mid-table.
    let stripped = records.len().div_ceil(2) as u64 + 1;
    assert_eq!(report.added, stripped, "{report:?}");
    assert_eq!((report.checked, report.failed), (records.len() as u64, 0));
    for (r, whole) in records.iter().zip(&originals) {
        let path = file_of(dir.path(), r);
        assert_eq!(
            &std::fs::read(&path).unwrap(),
            whole,
            "byte for byte the recorder's table"
        );
        assert!(read_segment_samples(&path, r).unwrap().from_table);
    }
    // Done once: the next pass checks nothing.
    assert!(store.disks()[0].index().tables_complete().unwrap());
    assert_eq!(store::backfill::run(&store, &stop, false).checked, 0);
}
