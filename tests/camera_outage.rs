//! A camera that goes away and comes back, and a camera that stalls: recording resumes quickly
//! and the listing shows exactly the outage.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn outage_gap_is_exactly_the_outage_and_recording_resumes_within_2_s() {
    let Setup {
        mut sim,
        dir: _dir,
        mut node,
    } = node_with(camsim::mixed_cameras(1, false), "segment = \"60s\"", "");
    let cam = sim.cam("cam0");
    let t0 = now_us();
    assert!(wait_until(Duration::from_secs(10), || cam.frames_sent() > 100));

    sim.stop();
    std::thread::sleep(Duration::from_secs(3));
    let back = now_us();
    sim.restart();
    assert!(wait_until(Duration::from_secs(5), || cam.sessions().len() == 2
        && cam.sessions()[1].frames > 50));
    let sessions = cam.sessions();
    let resumed = sessions[1].first_frame.unwrap().as_micros();
    assert!(
        resumed - back < 2_000_000,
        "recording resumed {} ms after the camera returned",
        (resumed - back) / 1000
    );

    std::thread::sleep(Duration::from_millis(1500));
    let ranges = node.ranges("cam0", t0 - 10_000_000, now_us());
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    let last_before = sessions[0].last_frame.unwrap().as_micros();
    // The outage as the camera saw it: from the end of its last frame to its next frame.
    let outage = resumed - (last_before + 40_000);
    let gap = ranges[1].0 - ranges[0].1;
    assert!(
        (gap - outage).abs() <= 40_000,
        "listing gap {} ms vs outage {} ms",
        gap / 1000,
        outage / 1000
    );
    // The recording on each side starts and ends where the camera's frames did.
    assert!((ranges[1].0 - resumed).abs() <= 40_000);
    assert!((ranges[0].1 - (last_before + 40_000)).abs() <= 40_000);
    assert!(node.terminate().success());
}

#[test]
fn stalled_camera_is_reconnected_by_the_watchdog() {
    let Setup {
        sim,
        dir: _dir,
        mut node,
    } = node_with(camsim::mixed_cameras(1, false), "segment = \"60s\"", "");
    let cam = sim.cam("cam0");
    assert!(wait_until(Duration::from_secs(10), || cam.frames_sent() > 50));
    cam.stall();
    let stalled = now_us();
    assert!(
        wait_until(Duration::from_secs(8), || cam.sessions().len() >= 2),
        "{}",
        node.log_text()
    );
    let reconnected = cam.sessions()[1].started.as_micros();
    assert!(
        reconnected - stalled < 5_000_000,
        "watchdog took {} ms",
        (reconnected - stalled) / 1000
    );
    assert!(wait_until(Duration::from_secs(5), || cam.sessions()[1].frames > 25));
    std::thread::sleep(Duration::from_millis(1000));
    let (status, detail) = node.get("/api/v1/cameras/cam0");
    assert_eq!(status, 200);
    assert_eq!(detail["status"], "online", "{detail}");
    assert_eq!(detail["health"]["main"]["sessions"], 2);
    let ranges = node.ranges("cam0", stalled - 60_000_000, now_us());
    assert_eq!(ranges.len(), 2, "recording on both sides of the stall: {ranges:?}");
    assert!(
        node.log_text().contains("no frames for 4.0 s"),
        "the stall is logged with its cause"
    );
    assert!(node.terminate().success());
}
