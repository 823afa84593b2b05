//! The PS demuxer against program streams made by independent muxers from the test fixtures:
//! GStreamer's `mpegpsmux` (H.264, with a PSM) and ffmpeg's `-f vob` (H.264 and H.265, no PSM,
//! stream id 0xE2, 2 KiB packs that cut frames anywhere). Every frame must come back byte for
//! byte, with its key flag, in RTP-sized pieces.

use std::path::{Path, PathBuf};
use std::process::Command;

use media::VideoCodec;
use media::ps::PsDemuxer;

fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).join(name)
}

/// The fixture's access units: the fixtures start every frame with an access unit delimiter.
fn access_units(es: &[u8], codec: VideoCodec) -> Vec<Vec<u8>> {
    let is_aud = |i: usize| match codec {
        VideoCodec::H264 => es[i + 3] & 0x1F == 9,
        VideoCodec::H265 => (es[i + 3] >> 1) & 0x3F == 35,
    };
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 4 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 && is_aud(i) {
            // Include the leading zero of a 4-byte start code.
            starts.push(if i > 0 && es[i - 1] == 0 { i - 1 } else { i });
            i += 3;
        } else {
            i += 1;
        }
    }
    assert!(!starts.is_empty(), "the fixture has access unit delimiters");
    starts.push(es.len());
    starts.windows(2).map(|w| es[w[0]..w[1]].to_vec()).collect()
}

fn demux(ps: &[u8]) -> Vec<media::ps::PsFrame> {
    let mut d = PsDemuxer::new();
    for chunk in ps.chunks(1400) {
        d.push(chunk);
    }
    d.finish();
    std::iter::from_fn(|| d.poll()).collect()
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks that `ps` demuxes into `es`'s access units; `all_pts`: every frame must carry its PTS
/// (one frame per PES, as GB/T 28181 devices send), else only those whose PES began with them.
fn check(ps: &Path, es: &Path, codec: VideoCodec, all_pts: bool) {
    let expected = access_units(&std::fs::read(es).unwrap(), codec);
    let got = demux(&std::fs::read(ps).unwrap());
    let sizes = |v: &mut dyn Iterator<Item = usize>| v.take(8).map(|n| n.to_string()).collect::<Vec<_>>().join(" ");
    assert_eq!(
        got.len(),
        expected.len(),
        "{}: frame sizes {} … expected {} …",
        ps.display(),
        sizes(&mut got.iter().map(|f| f.data.len())),
        sizes(&mut expected.iter().map(Vec::len))
    );
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.codec, codec);
        // Muxers (h264parse) may turn 4-byte start codes into 3-byte ones and back.
        let trim = |b: &[u8]| {
            let mut out = Vec::with_capacity(b.len());
            for (i, &x) in b.iter().enumerate() {
                if x == 0 && b.get(i + 1..i + 4) == Some(&[0, 0, 1]) {
                    continue;
                }
                out.push(x);
            }
            out
        };
        let (g, e) = (trim(&g.data), trim(e));
        let first_diff = g.iter().zip(&e).position(|(a, b)| a != b);
        assert!(
            g == e,
            "{} frame {i}: {} bytes, expected {}, first difference at {first_diff:?}",
            ps.display(),
            g.len(),
            e.len()
        );
        assert_eq!(
            got[i].key,
            i % 25 == 0,
            "{} frame {i}: one key frame a second",
            ps.display()
        );
    }
    // Every PTS is the one of its own frame (25 fps in 90 kHz): none is given to a neighbour.
    // (A muxer fed a raw stream without timestamps writes none at all.)
    let Some(base) = got[0].pts else {
        assert!(got.iter().all(|f| f.pts.is_none()) && !all_pts, "{}", ps.display());
        return;
    };
    for (i, f) in got.iter().enumerate() {
        match f.pts {
            Some(p) => assert_eq!(p, base + 3600 * i as u64, "{} frame {i}", ps.display()),
            None => assert!(!all_pts, "{} frame {i} has no PTS", ps.display()),
        }
    }
}

#[test]
fn ffmpeg_vob_h264_and_h265_without_psm() {
    let dir = std::env::temp_dir().join(format!("sharpeye-ps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, codec) in [
        ("h264_240p.h264", VideoCodec::H264),
        ("h265_240p.h265", VideoCodec::H265),
    ] {
        let out = dir.join(format!("{name}.vob"));
        run(Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-r", "25", "-i"])
            .arg(fixture(name))
            .args(["-c", "copy", "-f", "vob"])
            .arg(&out));
        check(&out, &fixture(name), codec, false);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gstreamer_mpegpsmux_h264_with_psm() {
    let out = std::env::temp_dir().join(format!("sharpeye-gst-{}.mpg", std::process::id()));
    run(Command::new("gst-launch-1.0").args([
        "-q",
        "filesrc",
        &format!("location={}", fixture("h264_240p.h264").display()),
        "!",
        "h264parse",
        "!",
        "mpegpsmux",
        "!",
        "filesink",
        &format!("location={}", out.display()),
    ]));
    check(&out, &fixture("h264_240p.h264"), VideoCodec::H264, false);
    let _ = std::fs::remove_file(&out);
}

/// Our own muxer (what an upper platform receives from us), read back by ffmpeg (ffprobe finds
/// the codec from the PSM and counts every frame; the decoder reports no error) and by our
/// demuxer (every access unit byte for byte, key frames and PTSs in place).
#[test]
fn our_muxer_is_read_by_ffmpeg_and_by_our_demuxer() {
    let dir = std::env::temp_dir().join(format!("sharpeye-psmux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, codec, ffname) in [
        ("h264_240p.h264", VideoCodec::H264, "h264"),
        ("h265_240p.h265", VideoCodec::H265, "hevc"),
        ("h264_1080p.h264", VideoCodec::H264, "h264"),
    ] {
        let aus = access_units(&std::fs::read(fixture(name)).unwrap(), codec);
        let mut ps = Vec::new();
        for (i, au) in aus.iter().enumerate() {
            media::ps_mux::mux_frame(codec, 3600 * i as u64, i % 25 == 0, au, &mut ps);
        }
        let out = dir.join(format!("{name}.mpg"));
        std::fs::write(&out, &ps).unwrap();
        check(&out, &fixture(name), codec, true);
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=codec_name,nb_read_frames",
                "-of",
                "csv=p=0",
                "-f",
                "mpeg",
            ])
            .arg(&out)
            .output()
            .expect("ffprobe (scripts/test.sh installs it)");
        let text = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
        assert_eq!(
            text,
            format!("{ffname},{}", aus.len()),
            "{name}: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        let decode = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "mpeg", "-i"])
            .arg(&out)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            decode.status.success() && decode.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&decode.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
