//! Live view over HTTP (`live.mp4`) from a real node pulling camsim: ffmpeg decodes it, one
//! upstream serves many viewers, on-demand pulls start with the first viewer and stop after the
//! last, and failures answer clearly.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec};
use common::*;
use serde_json::json;

fn media_token(node: &mut Node, camera: &str) -> String {
    let token = node.token();
    let (status, body) = post_json(
        &node.url(&format!("/api/v1/cameras/{camera}/media-token")),
        &json!({"action": "live"}),
        Some(&token),
    );
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[test]
fn live_mp4_starts_on_a_key_frame_and_decodes_in_ffmpeg() {
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load())]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = config_toml(
        addr,
        &dir.path().join("data"),
        "",
        &camera_toml("cam0", &sim.url("cam0")),
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let t = media_token(&mut node, "cam0");
    let url = node.url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}"));
    let out = dir.path().join("live.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i", &url, "-t", "6", "-c", "copy"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let (errors, frames) = decode(out.to_str().unwrap());
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 125, "{frames} frames in 6 s of 25 fps");
    // The first frame is a key frame: ffprobe sees a key packet first.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            "-read_intervals",
            "%+#1",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&probe.stdout).starts_with('K'), "{probe:?}");
    // The recording went on meanwhile, from the same single session.
    assert_eq!(
        sim.cam("cam0").sessions().len(),
        1,
        "one upstream for recording and live"
    );
    assert!(node.terminate().success());
}

/// Reads `url` for `secs` seconds; returns the bytes read.
fn watch(url: String, secs: f64) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let resp = ureq::get(&url).call().unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body().into_reader();
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        while Instant::now() < end {
            match body.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => panic!("{e}"),
            }
        }
        n
    })
}

#[test]
fn on_demand_one_upstream_for_many_viewers_closed_after_idle() {
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_240p.load())]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cams = camera_toml("cam0", &sim.url("cam0")).replace("tier =", "record = false\ntier =");
    let config =
        config_toml(addr, &dir.path().join("data"), "", &cams).replace("[ingest]", "[live]\nidle = \"1s\"\n\n[ingest]");
    let mut node = Node::start(dir.path(), &config, addr);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.cam("cam0").sessions().len(), 0, "nothing pulled before a viewer");
    let (_, cam) = node.get("/api/v1/cameras/cam0");
    assert_eq!(cam["status"], "idle", "{cam}");
    let t = media_token(&mut node, "cam0");
    let url = node.url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}"));
    let viewers: Vec<_> = (0..10).map(|i| watch(url.clone(), 2.0 + f64::from(i) * 0.1)).collect();
    for v in viewers {
        assert!(v.join().unwrap() > 10_000, "every viewer got video");
    }
    let left = Instant::now();
    assert_eq!(sim.cam("cam0").sessions().len(), 1, "exactly one upstream session");
    assert!(
        wait_until(Duration::from_secs(5), || sim.cam("cam0").active_sessions() == 0),
        "the upstream did not close"
    );
    let took = left.elapsed();
    assert!(
        took <= Duration::from_secs(2) + Duration::from_millis(500),
        "closed after {took:?} (idle 1 s)"
    );
    // A later viewer starts a new pull.
    assert!(watch(url, 1.5).join().unwrap() > 10_000);
    assert_eq!(sim.cam("cam0").sessions().len(), 2);
    let log = node.log_text();
    assert!(log.contains("no viewers left: stopping the pull"), "{log}");
    assert!(node.terminate().success());
}

#[test]
fn no_video_is_a_503_with_the_reason_and_no_credentials_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let dead = free_addr();
    let cams = camera_toml("cam0", &format!("rtsp://{dead}/nothing")).replace("tier =", "record = false\ntier =");
    let config = config_toml(addr, &dir.path().join("data"), "", &cams)
        .replace("[ingest]", "[live]\nstart_timeout = \"1500ms\"\n\n[ingest]");
    let mut node = Node::start(dir.path(), &config, addr);
    let (status, body) = get_json(&node.url("/api/v1/cameras/cam0/live.mp4"), None);
    assert_eq!(status, 401, "{body}");
    let token = node.token();
    let t0 = Instant::now();
    let (status, body) = get_json(&node.url("/api/v1/cameras/cam0/live.mp4"), Some(&token));
    assert_eq!(status, 503, "{body}");
    assert!(t0.elapsed() >= Duration::from_millis(1400));
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("sent no key frame within 1.5 s"), "{msg}");
    assert!(
        msg.contains(&dead.to_string()) || msg.contains("refused"),
        "names why: {msg}"
    );
    assert_eq!(body["error"]["code"], "no_video");
    let (status, _) = get_json(&node.url("/api/v1/cameras/nope/live.mp4"), Some(&token));
    assert_eq!(status, 404);
    let (status, _) = get_json(&node.url("/api/v1/cameras/cam0/live.mp4?stream=sub"), Some(&token));
    assert_eq!(status, 404, "no sub-stream configured");
    assert!(node.terminate().success());
}
