//! The RTSP source against camsim over loopback: frames, reconnects, the watchdog and every kind
//! of bad camera.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec, Cameras, Camsim};
use ingest::rtsp::{RtspSourceConfig, RtspTransport, spawn_rtsp};
use ingest::supervisor::SourceHandle;
use ingest::{FrameSink, SourceHealth, SourcePhase};
use media::{Frame, StreamId};

#[derive(Default)]
struct Collect {
    frames: Mutex<Vec<Frame>>,
    ends: Mutex<usize>,
}

impl FrameSink for Collect {
    fn frame(&self, frame: Frame) {
        self.frames.lock().unwrap().push(frame);
    }
    fn end_of_stream(&self, _: &StreamId) {
        *self.ends.lock().unwrap() += 1;
    }
}

impl Collect {
    fn count(&self) -> usize {
        self.frames.lock().unwrap().len()
    }
}

async fn camsim(specs: Vec<CameraSpec>) -> (Camsim, Cameras) {
    let cams = Cameras::new(specs);
    let sim = Camsim::start("127.0.0.1:0".parse().unwrap(), cams.clone())
        .await
        .unwrap();
    (sim, cams)
}

fn source(url: &str, tweak: impl FnOnce(&mut RtspSourceConfig)) -> (SourceHandle, Arc<Collect>) {
    let mut cfg = RtspSourceConfig::new(StreamId::main("cam"), url.parse().unwrap());
    cfg.pull.retry.min = Duration::from_millis(50);
    cfg.pull.retry.max = Duration::from_millis(300);
    tweak(&mut cfg);
    let sink = Arc::new(Collect::default());
    (spawn_rtsp(cfg, sink.clone(), Arc::new(SourceHealth::default())), sink)
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test]
async fn delivers_frames_with_key_first_and_monotonic_times_over_tcp_and_udp() {
    let (sim, _) = camsim(camsim::mixed_cameras(2, false)).await;
    for (path, transport) in [("cam0", RtspTransport::Tcp), ("cam1", RtspTransport::Udp)] {
        let (src, sink) = source(&sim.url(path), |c| c.pull.transport = transport);
        assert!(
            wait_until(Duration::from_secs(5), || sink.count() >= 30).await,
            "{path}"
        );
        src.stop().await;
        let frames = sink.frames.lock().unwrap().clone();
        assert!(frames[0].key && frames[0].discontinuity);
        assert!(frames[1..].iter().all(|f| !f.discontinuity));
        for w in frames.windows(2) {
            assert_eq!(w[1].media_time - w[0].media_time, 3600);
            assert!(w[1].wall_time > w[0].wall_time);
        }
        assert_eq!(frames[0].params.width(), 320);
    }
    sim.stop().await;
}

#[tokio::test]
async fn stalled_camera_is_detected_by_the_watchdog_within_5_s_and_reconnected() {
    let (sim, cams) = camsim(camsim::mixed_cameras(1, false)).await;
    let cam = cams.get("cam0").unwrap();
    // Default watchdog.
    let (src, sink) = source(&sim.url("cam0"), |_| {});
    assert!(wait_until(Duration::from_secs(5), || sink.count() > 5).await);
    cam.stall();
    let stalled_at = Instant::now();
    assert!(wait_until(Duration::from_secs(8), || cam.sessions().len() >= 2).await);
    let detected = stalled_at.elapsed();
    assert!(
        detected < Duration::from_secs(5) + Duration::from_millis(400),
        "took {detected:?}"
    );
    let before = sink.count();
    assert!(
        wait_until(Duration::from_secs(3), || sink.count() > before + 10).await,
        "frames resume"
    );
    let health = src.health().snapshot();
    assert_eq!(health.phase, SourcePhase::Streaming);
    assert_eq!(health.sessions, 2);
    src.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn outage_and_return_resumes_quickly() {
    let cams = Cameras::new(camsim::mixed_cameras(1, false));
    let sim = Camsim::start("127.0.0.1:0".parse().unwrap(), cams.clone())
        .await
        .unwrap();
    let addr = sim.local_addr();
    let (src, sink) = source(&sim.url("cam0"), |c| {
        c.pull.retry.max = ingest::supervisor::Retry::default().max
    });
    assert!(wait_until(Duration::from_secs(5), || sink.count() > 5).await);
    sim.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(src.health().snapshot().phase, SourcePhase::Retrying);
    let err = src.health().snapshot().last_error.unwrap();
    assert!(err.contains("camera cam:") && err.contains(&addr.to_string()), "{err}");
    let sim = Camsim::start(addr, cams.clone()).await.unwrap();
    let back = Instant::now();
    let before = sink.count();
    assert!(wait_until(Duration::from_secs(4), || sink.count() > before).await);
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "resumed after {:?}",
        back.elapsed()
    );
    assert_eq!(*sink.ends.lock().unwrap(), 1);
    src.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn configuration_errors_name_the_camera_and_the_fix() {
    let mut spec = CameraSpec::new("locked", BuiltinFixture::H264_240p.load());
    spec.credentials = Some(("admin".into(), "right".into()));
    let (sim, _) = camsim(vec![spec]).await;
    let addr = sim.local_addr();
    let cases = [
        (format!("rtsp://admin:wrong@{addr}/locked"), "401 Unauthorized"),
        (format!("rtsp://{addr}/locked"), "401 Unauthorized"),
        (format!("rtsp://{addr}/missing"), "404 Not Found"),
        ("rtsp://127.0.0.1:1/cam".to_owned(), "cannot connect"),
    ];
    for (url, want) in cases {
        let (src, sink) = source(&url, |_| {});
        assert!(
            wait_until(Duration::from_secs(5), || src.health().snapshot().last_error.is_some()).await,
            "{url}"
        );
        let h = src.health().snapshot();
        let err = h.last_error.unwrap();
        assert!(err.contains(want) && err.starts_with("camera cam:"), "{url}: {err}");
        assert!(!err.contains("wrong"), "password leaked: {err}");
        assert_eq!(sink.count(), 0);
        src.stop().await;
    }
    let (src, sink) = source(&format!("rtsp://admin:right@{addr}/locked"), |_| {});
    assert!(wait_until(Duration::from_secs(5), || sink.count() > 3).await);
    src.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn backwards_timestamps_start_a_new_run_and_never_go_back() {
    let (sim, cams) = camsim(camsim::mixed_cameras(1, false)).await;
    let cam = cams.get("cam0").unwrap();
    let (src, sink) = source(&sim.url("cam0"), |_| {});
    assert!(wait_until(Duration::from_secs(5), || sink.count() > 10).await);
    cam.jump_timestamps_back(Duration::from_secs(10));
    let n = sink.count();
    assert!(wait_until(Duration::from_secs(5), || sink.count() > n + 30).await);
    let health = src.health().snapshot();
    src.stop().await;
    let frames = sink.frames.lock().unwrap().clone();
    let disc: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.discontinuity)
        .map(|(i, _)| i)
        .collect();
    assert!(disc.len() >= 2, "the jump is a discontinuity: {disc:?}");
    for w in frames.windows(2) {
        // Wall time never goes backwards, whatever the camera's timestamps do.
        assert!(w[1].wall_time >= w[0].wall_time);
        if !w[1].discontinuity {
            assert!(w[1].media_time > w[0].media_time);
        }
    }
    assert!(health.discontinuities >= 1);
    sim.stop().await;
}

#[tokio::test]
async fn oversized_frame_is_dropped_and_recording_waits_for_the_next_key_frame() {
    let (sim, cams) = camsim(camsim::mixed_cameras(1, false)).await;
    let cam = cams.get("cam0").unwrap();
    let (src, sink) = source(&sim.url("cam0"), |c| c.pull.max_frame_bytes = 1 << 20);
    assert!(wait_until(Duration::from_secs(5), || sink.count() > 5).await);
    cam.send_oversized_nal(4 << 20);
    let n = sink.count();
    assert!(wait_until(Duration::from_secs(5), || sink.count() > n + 30).await);
    let health = src.health().snapshot();
    src.stop().await;
    let frames = sink.frames.lock().unwrap().clone();
    assert!(frames.iter().all(|f| f.data.len() < 1 << 20));
    let after = frames
        .iter()
        .skip(n)
        .position(|f| f.discontinuity)
        .map(|i| i + n)
        .unwrap();
    assert!(frames[after].key, "the run after the drop starts at a key frame");
    assert!(health.dropped_frames >= 1);
    sim.stop().await;
}

#[tokio::test]
async fn garbage_rtp_and_truncated_sps_are_reported_not_fatal() {
    let mut bad_sps = CameraSpec::new("badsps", BuiltinFixture::H264_240p.load_with_truncated_sps());
    bad_sps.drift_ppm = 0;
    let (sim, cams) = camsim(vec![bad_sps, CameraSpec::new("cam0", BuiltinFixture::H265_240p.load())]).await;
    let (bad, bad_sink) = source(&sim.url("badsps"), |_| {});
    let (good, good_sink) = source(&sim.url("cam0"), |_| {});
    assert!(wait_until(Duration::from_secs(5), || good_sink.count() > 10).await);
    cams.get("cam0").unwrap().send_garbage(Duration::from_millis(300));
    assert!(
        wait_until(Duration::from_secs(5), || good.health().snapshot().last_error.is_some()
            || good.health().snapshot().dropped_frames > 0)
        .await
    );
    let n = good_sink.count();
    assert!(
        wait_until(Duration::from_secs(5), || good_sink.count() > n + 20).await,
        "recovers after garbage"
    );
    let err = bad.health().snapshot().last_error.unwrap_or_default();
    assert!(err.starts_with("camera cam:"), "{err}");
    assert_eq!(bad_sink.count(), 0, "nothing from a camera whose SPS does not parse");
    bad.stop().await;
    good.stop().await;
    sim.stop().await;
}
