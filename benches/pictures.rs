//! The cost of measuring a camera's picture for the intact rate (`[rates] picture_every`): a
//! 1080p key frame of H.264 and of H.265 decoded and scaled to 320 pixels wide
//! (`transcode::snapshot::luma`) and measured (`rates::PictureStats`), against the baseline of
//! the same frame made into a full-size JPEG snapshot (`transcode::snapshot::jpeg`) in the same
//! run. Prints ms per check, the ratio to a snapshot, and how many cameras one core checks once
//! a minute (the checker takes at most half of one). Needs the `gstreamer` feature:
//!
//! ```text
//! cargo bench --features gstreamer --bench pictures -- [--checks 50]
//! ```
//! Run by hand, not in CI.

mod common;

use std::time::Instant;

use camsim::BuiltinFixture;
use common::pct;
use media::{StreamId, WallTime};

/// Command-line arguments (`cargo bench --bench pictures -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--checks`: measurements per codec.
    #[arg(long, default_value_t = 50)]
    checks: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args: Args = clap::Parser::parse();
    if !transcode::AVAILABLE {
        eprintln!("this benchmark needs the gstreamer feature: cargo bench --features gstreamer --bench pictures");
        return;
    }
    for fixture in [BuiltinFixture::H264_1080p, BuiltinFixture::H265_1080p] {
        let clip = fixture.load();
        let frames = clip.frames(&StreamId::main("cam"), 1, 0, WallTime::now());
        let key = frames[0].clone();
        assert!(key.key);
        let (mut check, mut shot) = (Vec::new(), Vec::new());
        let mut verdicts = std::collections::BTreeMap::new();
        for _ in 0..args.checks {
            let t = Instant::now();
            let l = transcode::snapshot::luma(&key, transcode::snapshot::LUMA_WIDTH).unwrap();
            let s = rates::PictureStats::of(&l.pixels, l.width as usize, l.height as usize).unwrap();
            check.push(t.elapsed().as_secs_f64() * 1e3);
            *verdicts.entry(format!("{:?}", s.fault())).or_insert(0) += 1;
            let t = Instant::now();
            let j = transcode::snapshot::jpeg(std::slice::from_ref(&key), transcode::snapshot::MAX_HEIGHT, 90).unwrap();
            shot.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(!j.jpeg.is_empty());
        }
        let (c50, c99) = (pct(check.clone(), 0.5), pct(check, 0.99));
        let s50 = pct(shot, 0.5);
        println!(
            "{}: picture check p50 {c50:.1} ms p99 {c99:.1} ms; full-size JPEG snapshot of the same frame p50 {s50:.1} ms (check/snapshot {:.2}); verdicts {verdicts:?}",
            clip.name,
            c50 / s50
        );
        println!(
            "  at half a core: {:.0} cameras checked once a minute",
            60_000.0 * 0.5 / c50
        );
    }
}
