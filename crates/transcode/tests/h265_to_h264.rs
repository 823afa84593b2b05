//! A camera's H.265 clip through the GStreamer transcoder: H.264 comes out, scaled to 720p,
//! starting on a key frame, about one frame out per frame in, with the input's wall times;
//! ffprobe (an independent decoder) reads the output as 1280×720 H.264 with every frame.
#![cfg(feature = "gstreamer")]

use std::io::Write;
use std::time::Duration;

use camsim::BuiltinFixture;
use media::{Frame, StreamId, StreamKind, VideoCodec, WallTime};
use transcode::{Target, Transcoder};

#[test]
fn h265_1080p_becomes_h264_720p_that_ffprobe_decodes() {
    let fixture = BuiltinFixture::H265_1080p.load();
    let params = fixture.params.clone().unwrap();
    let mut t = Transcoder::new(StreamId::new("cam1", StreamKind::H264), Target::default()).unwrap();
    let input = StreamId::main("cam1");
    let mut out = Vec::new();
    let n = fixture.frames.len().min(100);
    for (i, f) in fixture.frames.iter().take(n).enumerate() {
        let frame = Frame {
            stream: input.clone(),
            media_time: i as i64 * 3600,
            wall_time: WallTime::from_micros(1_000_000_000 + i as i64 * 40_000),
            key: f.key,
            discontinuity: i == 0,
            params: params.clone(),
            data: f.avcc.clone(),
        };
        t.push(&frame).unwrap();
        while let Some(o) = t.pull(Duration::ZERO).unwrap() {
            out.push(o);
        }
    }
    // The encoder's last frames.
    while let Some(o) = t.pull(Duration::from_millis(500)).unwrap() {
        out.push(o);
    }
    eprintln!(
        "out times: {:?}",
        out.iter().take(5).map(|f| f.media_time).collect::<Vec<_>>()
    );
    assert!(out.len() + 5 >= n, "{} frames out of {n}", out.len());
    assert!(out[0].key && out[0].discontinuity);
    assert!(out.iter().skip(1).all(|f| !f.discontinuity));
    let p = &out[0].params;
    assert_eq!((p.codec(), p.width(), p.height()), (VideoCodec::H264, 1280, 720));
    // Wall times are the inputs' (the encoder keeps presentation times).
    assert_eq!(out[0].wall_time, WallTime::from_micros(1_000_000_000));
    assert!(out.windows(2).all(|w| w[1].media_time > w[0].media_time));

    // ffprobe decodes the Annex B stream: every frame, at 1280×720.
    let dir = tempfile_dir();
    let path = dir.join("out.h264");
    let mut file = std::fs::File::create(&path).unwrap();
    for (i, f) in out.iter().enumerate() {
        let mut keyed = f.clone();
        keyed.key = i == 0 || f.key;
        file.write_all(&transcode::annexb::to_annex_b(&keyed).unwrap()).unwrap();
    }
    drop(file);
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe (apt-get install ffmpeg)");
    let text = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    assert_eq!(
        text,
        format!("h264,1280,720,{}", out.len()),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("transcode-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
