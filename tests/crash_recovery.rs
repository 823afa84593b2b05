//! The recorder killed with SIGKILL at random points, 20 times in a row, while recording two
//! cameras: after each restart the index opens and recovery runs; at the end every indexed
//! segment is on disk and decodes, and no crash lost more than one second per camera.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn twenty_sigkills_lose_at_most_one_second_each() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sim = Sim::start(camsim::mixed_cameras(2, false));
    let cams: String = (0..2)
        .map(|i| camera_toml(&format!("cam{i}"), &sim.url(&format!("cam{i}"))))
        .collect();
    let addr = free_addr();
    // Short segments so that kills land in rotations too.
    let config = config_toml(addr, &data, "segment = \"2s\"", &cams);
    let mut seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    println!("CRASH_SEED={seed}");
    for round in 0..20 {
        let before = sim.cam("cam0").sessions().len();
        let node = Node::start(dir.path(), &config, addr);
        let log = node.log.clone();
        assert!(
            wait_until(Duration::from_secs(10), || sim.cam("cam0").sessions().len() > before
                && sim.cam("cam1").sessions().len() > before),
            "round {round}: cameras connect:\n{}\ncam0 {:?}\ncam1 {:?}",
            node.log_text(),
            sim.cam("cam0").sessions().last(),
            sim.cam("cam1").sessions().last()
        );
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let run_ms = 700 + (seed >> 33) % 2300;
        std::thread::sleep(Duration::from_millis(run_ms));
        node.kill();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains("panicked"), "round {round} panicked:\n{text}");
        // Let camsim notice the closed connections.
        assert!(wait_until(Duration::from_secs(5), || sim.cam("cam0").active_sessions()
            == 0
            && sim.cam("cam1").active_sessions() == 0));
    }
    // A last start runs recovery for the 20th crash; then a clean stop.
    let node = Node::start(dir.path(), &config, addr);
    assert!(!node.log_text().contains("panicked"));
    let mut sim = sim;
    sim.stop();
    assert!(node.terminate().success());

    let segments = indexed_segments(&data);
    assert!(segments.len() > 20, "{} segments", segments.len());
    for (path, r) in &segments {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        assert!(
            len >= r.bytes,
            "{}: indexed {} bytes, {len} on disk",
            path.display(),
            r.bytes
        );
        assert!(r.closed, "recovery closed every segment");
    }
    if have_ffmpeg() {
        for (path, r) in &segments {
            let (n, errors) = probe(path);
            assert_eq!(n, r.frames, "{}: ffprobe frame count", path.display());
            assert!(errors.is_empty(), "{}: {errors}", path.display());
        }
    }
    // Loss per crash: frames camsim handed to each session's socket that are not on disk.
    let mut worst = 0i64;
    for cam in ["cam0", "cam1"] {
        let sessions = sim.cam(cam).sessions();
        assert!(sessions.len() >= 20);
        for s in &sessions[..20] {
            let (from, to) = (s.started.as_micros(), s.ended.unwrap().as_micros());
            let recorded: u64 = segments
                .iter()
                .filter(|(_, r)| r.stream.camera() == cam && r.start.as_micros() >= from && r.start.as_micros() <= to)
                .map(|(_, r)| r.frames)
                .sum();
            let lost = s.frames as i64 - recorded as i64;
            assert!(
                lost >= 0,
                "{cam} session {}: more frames recorded ({recorded}) than sent ({})",
                s.id,
                s.frames
            );
            worst = worst.max(lost);
            assert!(
                lost <= 25,
                "{cam} session {}: lost {lost} frames (> 1 s at 25 fps) of {}",
                s.id,
                s.frames
            );
        }
    }
    println!("worst loss in one crash: {worst} frames ({} ms)", worst * 40);
}
