//! Retention benchmark: deleting one day of 1,000 cameras' 60 s segments (1.44 M files) while
//! the recorder keeps recording.
//!
//! 1. Records one real minute of the ~4 Mbit/s 1080p H.264 camera (a real 60 s segment entry
//!    with its 60 GOPs; frames fed with simulated timing).
//! 2. Fills a data directory with `--cameras` × `--minutes` segments from 40 days ago: index
//!    entries are the real one shifted in time; files are stand-ins with the real first 4 KB,
//!    sparse up to the real length (43 TB of real files does not fit; see the calibration below).
//!    Reports the index size per camera-day.
//! 3. Starts the recorder with `--recording` live 1080p streams (25 fps each, real time) and,
//!    after a baseline, runs one retention pass that expires the whole day (30-day guarantee):
//!    files per second, and what recording saw meanwhile (frames refused by a full queue, frames
//!    written, longest sync + index commit) against the baseline.
//! 4. Calibration in the same run: unlinking fully allocated 30 MB files (`fallocate`, the size
//!    of a real segment) against unlinking the sparse stand-ins, so the files/s can be read for
//!    real disks.
//!
//! ```text
//! cargo bench --bench retention -- [--cameras 1000] [--minutes 1440] [--recording 100] [--batch 5000] [--data DIR]
//! ```
//! Needs a few GB for the index and the calibration files; run by hand
//! (`scripts/bench-retention.sh`), not in CI.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use media::{Frame, StreamId, WallTime};
use store::SegmentRecord;
use store::retention::{FreeFloor, RetentionPolicy, run_pass};

/// Command-line arguments (`cargo bench --bench retention -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--cameras`.
    #[arg(long, default_value_t = 1000)]
    cameras: usize,
    /// `--minutes`.
    #[arg(long, default_value_t = 1440)]
    minutes: usize,
    /// `--recording`.
    #[arg(long, default_value_t = 100)]
    recording: usize,
    /// `--batch`.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// `--data`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    clap::Parser::parse()
}

/// Writes the stand-in files of `records` under `data` (first 4 KB real, the rest sparse).
fn stand_ins(data: &Path, records: &[SegmentRecord], head: &[u8]) {
    use std::io::Write;
    for r in records {
        let path = store::segment_file_path(data, r);
        let mut f = match std::fs::File::create(&path) {
            Ok(f) => f,
            Err(_) => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::File::create(&path).unwrap()
            }
        };
        f.write_all(head).unwrap();
        f.set_len(r.bytes).unwrap();
    }
}

/// Files per second unlinking `n` files under `dir`, each first made by `make` and synced.
fn unlink_rate(dir: &Path, n: usize, make: impl Fn(&std::fs::File)) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let paths: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("{i}.mp4"))).collect();
    for p in &paths {
        make(&std::fs::File::create(p).unwrap());
    }
    let _ = std::process::Command::new("sync").status();
    let t = Instant::now();
    for p in &paths {
        std::fs::remove_file(p).unwrap();
    }
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_dir(dir).unwrap();
    rate
}

/// A file of `bytes` fully allocated with `fallocate`, as a real segment's extents are.
fn allocated(bytes: u64) -> impl Fn(&std::fs::File) {
    move |f| {
        rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, bytes).unwrap();
        f.sync_all().unwrap();
    }
}

/// A stand-in like the benchmark's: 4 KB written, sparse up to `bytes`.
fn sparse(bytes: u64) -> impl Fn(&std::fs::File) {
    move |f| {
        std::io::Write::write_all(&mut &*f, &[0u8; 4096]).unwrap();
        f.set_len(bytes).unwrap();
    }
}

/// Feeds `streams` real-time 25 fps streams into the recorder until `stop`; returns frames
/// offered.
fn feed(rec: store::Recorder, streams: usize, stop: Arc<AtomicBool>) -> u64 {
    let fixture = camsim::BuiltinFixture::H264_1080p.load();
    let loops: Vec<Vec<Frame>> = (0..streams)
        .map(|i| fixture.frames(&StreamId::main(format!("live{i}")), 100, 0, WallTime::now()))
        .collect();
    let start = Instant::now();
    let wall0 = WallTime::now();
    let mut offered = 0u64;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_millis(40 * n as u64);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let ticks = n as i64 * 3600;
        for l in &loops {
            let mut f = l[n % l.len()].clone();
            f.media_time = ticks;
            f.wall_time = wall0.add_micros(ticks * 100 / 9);
            f.discontinuity = n == 0;
            offered += 1;
            // A refused frame is lost: the recorder counts it in `frames_refused`.
            let _ = rec.try_push(f);
        }
        n += 1;
    }
    for i in 0..streams {
        rec.end_stream(&StreamId::main(format!("live{i}")));
    }
    offered
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let root = a.data.clone().unwrap_or_else(|| tmp.path().to_owned());
    let data = root.join("retention-data");
    let template_dir = root.join("retention-template");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&template_dir);
    let day_us = 86_400_000_000i64;
    let t0 = (WallTime::now().as_micros() / day_us - 40) * day_us;

    let minute = common::record_minutes(&template_dir, "template", t0, 2);
    let template = minute
        .iter()
        .find(|r| r.closed && r.media_duration >= 60 * 90_000)
        .unwrap()
        .clone();
    let gops = store::playback::segment_gops(&store::segment_file_path(&template_dir, &template), &template)
        .unwrap()
        .len();
    let head: Vec<u8> = std::fs::read(store::segment_file_path(&template_dir, &template)).unwrap()[..4096].to_vec();
    println!(
        "template: one 60 s segment, {} GOPs, {:.1} MB, index entry {} bytes encoded",
        gops,
        template.bytes as f64 / 1e6,
        template.encode().len()
    );

    let (store, _) = store::Store::open(std::slice::from_ref(&data)).unwrap();
    let disk = &store.disks()[0];
    let t = Instant::now();
    let mut batch = Vec::with_capacity(20_000);
    let mut total = 0u64;
    for c in 0..a.cameras {
        let stream = StreamId::main(format!("cam{c}"));
        for m in 0..a.minutes {
            let mut x = template.clone();
            x.stream = stream.clone();
            x.seq = m as u64 + 1;
            x.start = WallTime::from_micros(t0 + m as i64 * 60_000_000);
            x.end = x.start.add_micros(60_000_000);
            batch.push(x);
            if batch.len() == batch.capacity() {
                stand_ins(&data, &batch, &head);
                disk.index().put(&batch).unwrap();
                total += batch.len() as u64;
                batch.clear();
            }
        }
    }
    stand_ins(&data, &batch, &head);
    disk.index().put(&batch).unwrap();
    total += batch.len() as u64;
    let index_bytes = std::fs::metadata(disk.index().path()).unwrap().len();
    let camera_days = a.cameras as f64 * a.minutes as f64 / 1440.0;
    println!(
        "setup: {total} segments ({} cameras × {} min) with stand-in files in {:.0} s; index {:.2} GB = {:.0} KB per camera-day (goal ≤ 64 KB)",
        a.cameras,
        a.minutes,
        t.elapsed().as_secs_f64(),
        index_bytes as f64 / 1e9,
        index_bytes as f64 / camera_days / 1024.0
    );
    let _ = std::process::Command::new("sync").status();

    // Live recording next to the deletes.
    let rec = store
        .start_recorder(store::RecorderConfig {
            segment: Duration::from_secs(60),
            flush_interval: Duration::from_secs(1),
            queue_frames: 25 * 2 * a.recording.max(1),
            ..store::RecorderConfig::default()
        })
        .unwrap();
    let stats = rec.stats().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (rec, stop, n) = (rec.clone(), stop.clone(), a.recording);
        std::thread::spawn(move || feed(rec, n, stop))
    };
    let snapshot = || {
        (
            stats.frames_refused.load(Ordering::Relaxed),
            stats.frames_written.load(Ordering::Relaxed),
            stats.max_sync_us.load(Ordering::Relaxed),
        )
    };
    std::thread::sleep(Duration::from_secs(10));
    let (refused0, written0, max_sync0) = snapshot();
    println!(
        "baseline 10 s of {} live 1080p streams: {written0} frames written, {refused0} refused, longest sync+commit {:.0} ms",
        a.recording,
        max_sync0 as f64 / 1e3
    );

    let holds = store::holds::Holds::open(std::slice::from_ref(&data)).unwrap();
    let policy = RetentionPolicy {
        standard: Duration::from_secs(30 * 86_400),
        key: Duration::from_secs(90 * 86_400),
        key_cameras: Default::default(),
        min_free: FreeFloor::Bytes(0),
        batch: a.batch,
    };
    let t = Instant::now();
    let report = run_pass(&store, &holds, &policy, WallTime::now(), false).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (refused1, written1, max_sync1) = snapshot();
    println!(
        "retention pass (batches of {}): {} segments expired in {secs:.1} s = {:.0} files/s; during it recording wrote {} frames ({:.0}/s for {} streams × 25 fps = {}/s), refused {} frames, longest sync+commit {:.0} ms",
        a.batch,
        report.expired,
        report.expired as f64 / secs,
        written1 - written0,
        (written1 - written0) as f64 / secs,
        a.recording,
        a.recording * 25,
        refused1 - refused0,
        max_sync1 as f64 / 1e3
    );
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let offered = feeder.join().unwrap();
    rec.shutdown().unwrap();
    let (refused, _, _) = snapshot();
    let queued = stats.frames_queued.load(Ordering::Relaxed);
    let written = stats.frames_written.load(Ordering::Relaxed);
    let waiting = stats.frames_waiting_key.load(Ordering::Relaxed);
    println!(
        "recording overall: {offered} frames offered, {queued} queued, {refused} refused, {written} written, {waiting} before a first key frame: {} lost",
        offered - written - waiting
    );
    let left = disk
        .index()
        .all_segments()
        .unwrap()
        .iter()
        .filter(|r| r.stream.camera().starts_with("cam"))
        .count();
    let files_left = walk_count(&data.join("segments"), "cam");
    println!("after the pass: {left} expired-day entries and {files_left} of their files left");
    let index_after = std::fs::metadata(disk.index().path()).unwrap().len();
    println!(
        "index file after the pass: {:.2} GB (redb reuses the freed pages)",
        index_after as f64 / 1e9
    );
    drop(store);

    let n = 256;
    let sparse_rate = unlink_rate(&root.join("calib-sparse"), n, sparse(template.bytes));
    let allocated_rate = unlink_rate(&root.join("calib-alloc"), n, allocated(30_000_000));
    println!(
        "calibration ({n} files each): unlink of sparse stand-ins {sparse_rate:.0} files/s, of allocated 30 MB files {allocated_rate:.0} files/s (ratio {:.2})",
        allocated_rate / sparse_rate
    );
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&template_dir);
}

/// Files under `dir` whose stream directory starts with `prefix`.
fn walk_count(dir: &Path, prefix: &str) -> usize {
    let mut n = 0;
    let Ok(cams) = std::fs::read_dir(dir) else { return 0 };
    for c in cams.flatten() {
        if !c.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let mut stack = vec![c.path()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                } else {
                    n += 1;
                }
            }
        }
    }
    n
}
