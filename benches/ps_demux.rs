//! PS demux throughput: the 1080p H.264 and H.265 fixtures muxed into a GB/T 28181-style program
//! stream (one frame per pack, system header and PSM on key frames), repeated to `--mb`
//! megabytes, demuxed from 1,400-byte pieces (RTP payload size) with the frame end marked as
//! the RTP marker bit would. Reported: GB/s of PS input per core, against the same run's
//! baseline of copying the same pieces into a buffer (the least any demuxer must do).
//!
//! ```text
//! cargo bench --bench ps_demux -- [--mb 512]
//! ```
//! Goal: ≥ 1 GB/s per core. Run by hand, not in CI.

use std::time::Instant;

use media::VideoCodec;
use media::ps::{PsDemuxer, mux_frame};

/// Command-line arguments (`cargo bench --bench ps_demux -- --mb N`).
#[derive(clap::Parser)]
struct Args {
    /// Megabytes of program stream to demux.
    #[arg(long, default_value_t = 512)]
    mb: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> usize {
    <Args as clap::Parser>::parse().mb
}

/// The fixture's access units (each starts with an access unit delimiter).
fn access_units(es: &[u8], codec: VideoCodec) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    for i in 0..es.len().saturating_sub(4) {
        if es[i..i + 3] == [0, 0, 1] {
            let aud = match codec {
                VideoCodec::H264 => es[i + 3] & 0x1F == 9,
                VideoCodec::H265 => (es[i + 3] >> 1) & 0x3F == 35,
            };
            if aud {
                starts.push(if i > 0 && es[i - 1] == 0 { i - 1 } else { i });
            }
        }
    }
    starts.push(es.len());
    starts.windows(2).map(|w| es[w[0]..w[1]].to_vec()).collect()
}

fn main() {
    let mb = args();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    for (file, codec) in [
        ("h264_1080p.h264", VideoCodec::H264),
        ("h265_1080p.h265", VideoCodec::H265),
    ] {
        let es = std::fs::read(format!("{root}{file}")).unwrap();
        let aus = access_units(&es, codec);
        // One pack per frame, with the frame's length so the marker can be placed.
        let mut packs: Vec<Vec<u8>> = Vec::new();
        let mut total = 0usize;
        let mut n = 0u64;
        while total < mb << 20 {
            for au in &aus {
                let mut p = Vec::with_capacity(au.len() + 64);
                let key = match codec {
                    VideoCodec::H264 => au.windows(4).any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1F == 5),
                    VideoCodec::H265 => au
                        .windows(4)
                        .any(|w| w[..3] == [0, 0, 1] && matches!((w[3] >> 1) & 0x3F, 16..=21)),
                };
                mux_frame(codec, n * 3600, key, au, &mut p);
                n += 1;
                total += p.len();
                packs.push(p);
            }
        }
        // Baseline: the same pieces copied into a reused buffer.
        let t = Instant::now();
        let mut sink = Vec::with_capacity(1 << 20);
        for p in &packs {
            for piece in p.chunks(1400) {
                sink.extend_from_slice(piece);
            }
            std::hint::black_box(&sink);
            sink.clear();
        }
        let base = total as f64 / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        let mut d = PsDemuxer::new();
        let mut frames = 0u64;
        let mut bytes = 0u64;
        for p in &packs {
            for piece in p.chunks(1400) {
                d.push(piece);
            }
            d.end_of_frame();
            while let Some(f) = d.poll() {
                frames += 1;
                bytes += f.data.len() as u64;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let rate = total as f64 / secs / 1e9;
        assert_eq!(frames, packs.len() as u64, "every frame comes out");
        println!(
            "ps_demux {file}: {:.0} MB of PS, {frames} frames ({:.0} MB of video): {rate:.2} GB/s on one core; baseline copy {base:.2} GB/s (ratio {:.2}); goal >= 1 GB/s",
            total as f64 / 1e6,
            bytes as f64 / 1e6,
            rate / base
        );
    }
}
