//! Every kind of broken camera next to a good one, in one recorder process: garbage RTP, a
//! truncated SPS, timestamps that jump backwards, an oversized NAL unit, RTSP 401 and 404, an
//! unreachable address. Each gets a clear error in the log and in health; none panics the
//! process; the good camera records without a gap.

mod common;

use std::time::Duration;

use camsim::{BuiltinFixture, CameraSpec};
use common::*;

#[test]
fn broken_cameras_are_reported_and_never_disturb_the_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut locked = CameraSpec::new("locked", BuiltinFixture::H264_240p.load());
    locked.credentials = Some(("admin".into(), "right-password".into()));
    let sim = Sim::start(vec![
        CameraSpec::new("good", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("garbage", BuiltinFixture::H265_240p.load()),
        CameraSpec::new("badsps", BuiltinFixture::H264_240p.load_with_truncated_sps()),
        CameraSpec::new("backwards", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("oversized", BuiltinFixture::H265_240p.load()),
        locked,
    ]);
    let a = sim.addr;
    let cams = [
        camera_toml("good", &sim.url("good")),
        camera_toml("garbage", &sim.url("garbage")),
        camera_toml("badsps", &sim.url("badsps")),
        camera_toml("backwards", &sim.url("backwards")),
        camera_toml("oversized", &sim.url("oversized")),
        camera_toml("wrongpass", &format!("rtsp://admin:wrong-password@{a}/locked")),
        camera_toml("nopath", &format!("rtsp://{a}/no-such-stream")),
        camera_toml("unreachable", "rtsp://127.0.0.1:1/stream"),
    ]
    .concat();
    let addr = free_addr();
    let config = config_with(addr, &data, "segment = \"60s\"", "max_frame_bytes = 4194304", &cams);
    let mut node = Node::start(dir.path(), &config, addr);
    let t0 = now_us();
    assert!(wait_until(Duration::from_secs(10), || sim.cam("good").frames_sent() > 50));
    std::thread::sleep(Duration::from_secs(2));
    sim.cam("garbage").send_garbage(Duration::from_millis(400));
    sim.cam("backwards").jump_timestamps_back(Duration::from_secs(30));
    sim.cam("oversized").send_oversized_nal(8 << 20);
    std::thread::sleep(Duration::from_secs(8));

    assert!(node.child.try_wait().unwrap().is_none(), "the process is still running");
    let log = node.log_text();
    assert!(!log.contains("panicked"), "{log}");

    let detail = |node: &mut Node, id: &str| {
        let (status, v) = node.get(&format!("/api/v1/cameras/{id}"));
        assert_eq!(status, 200, "{v}");
        v
    };
    let error_of = |v: &serde_json::Value| v["health"]["main"]["last_error"].as_str().unwrap_or("").to_owned();
    for (id, want) in [
        ("wrongpass", "RTSP 401 Unauthorized from 127.0.0.1"),
        ("nopath", "RTSP 404 Not Found from 127.0.0.1"),
        ("unreachable", "cannot connect to 127.0.0.1:1"),
        ("badsps", ""),
    ] {
        let v = detail(&mut node, id);
        let err = error_of(&v);
        assert!(err.starts_with(&format!("camera {id}: ")), "{id}: {v}");
        assert!(err.contains(want), "{id}: {err}");
        assert_ne!(v["status"], "online", "{id}");
        assert!(!err.contains("wrong-password"), "credentials leaked: {err}");
        assert!(log.contains(&format!("camera {id}: ")), "{id} is logged");
    }
    assert!(error_of(&detail(&mut node, "wrongpass")).contains("check the user name and password"));
    assert!(error_of(&detail(&mut node, "nopath")).contains("check the stream path"));

    // The damaged-but-alive cameras recover and keep recording.
    for id in ["garbage", "backwards", "oversized"] {
        let v = detail(&mut node, id);
        assert_eq!(v["status"], "online", "{id}: {v}");
    }
    assert!(log.contains("camera garbage: "), "garbage RTP is logged");
    assert!(
        detail(&mut node, "backwards")["health"]["main"]["discontinuities"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(log.contains("camera backwards: timestamps jumped"));
    assert!(
        detail(&mut node, "oversized")["health"]["main"]["dropped_frames"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(log.contains("above the size limit"));

    // The good camera: one continuous recording from its first frame to now.
    let good = node.ranges("good", t0 - 30_000_000, now_us());
    assert_eq!(good.len(), 1, "{good:?}");
    assert!(good[0].1 - good[0].0 > 9_000_000, "{good:?}");
    assert!(node.terminate().success());

    if have_ffmpeg() {
        for (path, r) in indexed_segments(&data) {
            let (n, errors) = probe(&path);
            assert_eq!(n, r.frames, "{}", path.display());
            if r.stream.camera() != "garbage" {
                assert!(errors.is_empty(), "{}: {errors}", path.display());
            }
        }
    }
}
