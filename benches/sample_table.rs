//! Reading a segment's samples for playback: from the sample table a closed segment ends with
//! (`store::sample_table`, one `pread` after the init part) against walking its fragments'
//! `prft` + `moof` boxes (the baseline, what every segment was read by before, and still is
//! without a table), on the same files in the same run: an hour of real 1080p H.264 recorded
//! through the recorder, read warm (page cache) and cold (caches dropped before each segment,
//! needs root). Prints per-segment p50/p99 of each and their ratio, and the table's size.
//!
//! ```text
//! cargo bench --bench sample_table -- [--minutes 61] [--rounds 20]
//! ```
//! Run by hand, not in CI.

mod common;

use std::time::Instant;

use common::pct;
use store::SegmentRecord;
use store::playback::read_segment_samples;

/// Command-line arguments (`cargo bench --bench sample_table -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--minutes` recorded.
    #[arg(long, default_value_t = 61)]
    minutes: usize,
    /// `--rounds` of warm reads over every segment.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn main() {
    let a: Args = clap::Parser::parse();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = 1_795_420_800_000_000;
    let records: Vec<SegmentRecord> = common::record_minutes(&data, "cam", base, a.minutes)
        .into_iter()
        .filter(|r| r.closed)
        .collect();
    let path = |r: &SegmentRecord| data.join(store::layout::segment_path(&r.stream, r.start, r.seq));
    let walk = |r: &SegmentRecord| SegmentRecord {
        closed: false,
        ..r.clone()
    };
    let mut table_bytes = Vec::new();
    for r in &records {
        let p = path(r);
        let len = std::fs::metadata(&p).unwrap().len();
        table_bytes.push((len - r.bytes) as f64);
        let t = read_segment_samples(&p, r).unwrap();
        let w = read_segment_samples(&p, &walk(r)).unwrap();
        assert!(t.from_table && !w.from_table);
        assert_eq!(t.samples, w.samples, "table and walk agree");
    }
    let frames: u64 = records.iter().map(|r| r.frames).sum();
    println!(
        "{} segments, {} frames; table p50 {:.1} KB ({:.2} bytes a frame)",
        records.len(),
        frames,
        pct(table_bytes.clone(), 0.5) / 1e3,
        table_bytes.iter().sum::<f64>() / frames as f64
    );
    let time = |f: &dyn Fn(&SegmentRecord), r: &SegmentRecord| {
        let t = Instant::now();
        f(r);
        t.elapsed().as_secs_f64() * 1e3
    };
    let by_table = |r: &SegmentRecord| {
        assert!(read_segment_samples(&path(r), r).unwrap().from_table);
    };
    let by_walk = |r: &SegmentRecord| {
        assert!(!read_segment_samples(&path(r), &walk(r)).unwrap().from_table);
    };
    let (mut t_warm, mut w_warm) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        for r in &records {
            // Alternate which goes first, so neither always finds the other's cache.
            if round % 2 == 0 {
                t_warm.push(time(&by_table, r));
                w_warm.push(time(&by_walk, r));
            } else {
                w_warm.push(time(&by_walk, r));
                t_warm.push(time(&by_table, r));
            }
        }
    }
    let report = |what: &str, t: Vec<f64>, w: Vec<f64>| {
        let (t50, t99, w50, w99) = (pct(t.clone(), 0.5), pct(t, 0.99), pct(w.clone(), 0.5), pct(w, 0.99));
        println!(
            "{what}: table p50 {t50:.3} ms p99 {t99:.3} ms; walk p50 {w50:.3} ms p99 {w99:.3} ms; walk/table p50 {:.1}× p99 {:.1}×",
            w50 / t50,
            w99 / t99
        );
    };
    report("warm", t_warm, w_warm);
    if !drop_caches() {
        println!("cold: skipped (dropping the page cache needs root)");
        return;
    }
    let (mut t_cold, mut w_cold) = (Vec::new(), Vec::new());
    for r in &records {
        drop_caches();
        t_cold.push(time(&by_table, r));
        drop_caches();
        w_cold.push(time(&by_walk, r));
    }
    report("cold", t_cold, w_cold);
}
