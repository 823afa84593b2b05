//! Disk pressure on a real small file system: a tmpfs mounted by the test (or the one `.ci/run`
//! mounts and names in `SHARPEYE_SMALL_FS`). Recording runs into the full disk and continues by
//! deleting unheld data (raising the alarm that a guarantee is broken); held data stays intact;
//! when only held data is left, recording to the disk stops with an alarm that says why.

mod common;

use std::time::Duration;

use camsim::{BuiltinFixture, CameraSpec};
use common::*;
use serde_json::json;
use testkit::SmallFs;

/// Both tests record into the one small file system: run together, one's held evidence fills
/// the other's disk and decides how the other runs out of space. One at a time.
static SMALL_FS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn full_disk_keeps_recording_keeps_evidence_and_stops_only_on_evidence() {
    let _one_at_a_time = SMALL_FS.lock().unwrap_or_else(|p| p.into_inner());
    let fs = SmallFs::new(24);
    fs.clear("data-");
    let data = fs.path.join(format!("data-{}", std::process::id()));
    let sim = Sim::start(vec![
        CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam1", BuiltinFixture::H264_1080p.load()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cams = [
        camera_toml("cam0", &sim.url("cam0")),
        camera_toml("cam1", &sim.url("cam1")),
    ]
    .concat();
    let config = config_toml(addr, &data, "segment = \"2s\"", &cams).replace(
        "[ingest]",
        "[retention]\nmin_free = \"6MB\"\ninterval = \"200ms\"\n\n[ingest]",
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let token = node.token();
    let t0 = now_us();
    assert!(wait_until(Duration::from_secs(10), || sim.cam("cam0").frames_sent()
        > 50
        && sim.cam("cam1").frames_sent() > 50));

    // Hold cam0's first three seconds once they are recorded.
    std::thread::sleep(Duration::from_secs(4));
    let first = node.ranges("cam0", t0 - 10_000_000, now_us());
    let (held_from, held_to) = (first[0].0, first[0].0 + 3_000_000);
    let (status, hold) = post_json(
        &node.url("/api/v1/holds"),
        &json!({"camera": "cam0", "start": rfc3339(held_from), "end": rfc3339(held_to), "reason": "evidence"}),
        Some(&token),
    );
    assert_eq!(status, 201, "{hold}");

    // Recording runs into the full disk: unheld data is deleted, a guarantee is broken, alarm.
    let alarm = |node: &mut Node, needle: &str| {
        node.get("/api/v1/health").1["alarms"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["message"].as_str().is_some_and(|m| m.contains(needle)))
        })
    };
    assert!(
        wait_until(Duration::from_secs(90), || alarm(&mut node, "inside its guarantee")),
        "no guarantee alarm:\n{}",
        node.get("/api/v1/health").1
    );
    std::thread::sleep(Duration::from_secs(4));
    let (_, health) = node.get("/api/v1/health");
    let disk = &health["disks"][0];
    assert_eq!(disk["recording_blocked"], false, "{health}");
    assert!(disk["free_bytes"].as_u64().unwrap() > 0);
    // Still recording: both cameras' latest recording reaches (almost) now.
    for cam in ["cam0", "cam1"] {
        let r = node.ranges(cam, t0 - 10_000_000, now_us());
        let last_end = r.last().map_or(0, |x| x.1);
        assert!(now_us() - last_end < 4_000_000, "{cam} stopped recording: {r:?}");
    }
    // The held seconds are intact.
    let held = node.ranges("cam0", held_from, held_to);
    assert_eq!(held, vec![(held_from, held_to)], "held range damaged");
    let (status, _, body) = fetch(
        &node.url(&format!(
            "/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
            rfc3339(held_from),
            rfc3339(held_to)
        )),
        &token,
        &[],
    );
    assert_eq!(status, 200);
    let p = dir.path().join("held.mp4");
    std::fs::write(&p, body).unwrap();
    assert!((duration(&p) - 3.0).abs() <= 0.04, "held evidence plays whole");
    assert!(decode(p.to_str().unwrap()).0.is_empty());

    // Now hold everything: nothing may be deleted, the disk fills, recording to it stops.
    for cam in ["cam0", "cam1"] {
        let (status, h) = post_json(
            &node.url("/api/v1/holds"),
            &json!({"camera": cam, "start": rfc3339(t0 - 3_600_000_000), "end": rfc3339(now_us() + 3_600_000_000), "reason": "incident"}),
            Some(&token),
        );
        assert_eq!(status, 201, "{h}");
    }
    assert!(
        wait_until(Duration::from_secs(60), || alarm(&mut node, "holds only held evidence")),
        "no held-evidence alarm:\n{}",
        node.get("/api/v1/health").1
    );
    let (_, health) = node.get("/api/v1/health");
    assert_eq!(health["disks"][0]["recording_blocked"], true, "{health}");
    assert_eq!(health["status"], "degraded");
    assert!(
        wait_until(Duration::from_secs(10), || node
            .log_text()
            .contains("recording stopped: every data disk is full of held evidence")),
        "the log says why recording stopped"
    );
    // The evidence is all still there.
    assert_eq!(node.ranges("cam0", held_from, held_to), vec![(held_from, held_to)]);

    // Release the incident holds: retention frees space, the disk unblocks, recording resumes.
    let holds = node.get("/api/v1/holds").1;
    for h in holds.as_array().unwrap().iter().filter(|h| h["reason"] == "incident") {
        let url = node.url(&format!("/api/v1/holds/{}", h["id"].as_str().unwrap()));
        let status = ureq::delete(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let resumed_after = now_us();
    assert!(
        wait_until(Duration::from_secs(30), || alarm(&mut node, "has space again")),
        "no unblock alarm:\n{}",
        node.get("/api/v1/health").1
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            let r = node.ranges("cam1", resumed_after, now_us());
            r.last().is_some_and(|x| x.1 - x.0 > 2_000_000)
        }),
        "recording resumed"
    );
    assert_eq!(
        node.ranges("cam0", held_from, held_to),
        vec![(held_from, held_to)],
        "evidence survived it all"
    );
    let log = node.log_text();
    println!(
        "segments closed early for lack of space: {}; guarantee alarms: {}",
        log.matches("disk full, closing the segment early").count(),
        log.matches("inside its guarantee").count()
    );
    assert!(node.terminate().success());
    // Every segment left on the disk, including any closed by a real ENOSPC, decodes.
    for (path, r) in indexed_segments(&data) {
        let (n, errors) = probe(&path);
        assert_eq!(n, r.frames, "{}", path.display());
        assert!(errors.is_empty(), "{}: {errors}", path.display());
    }
    let _ = std::fs::remove_dir_all(&data);
    let mut sim = sim;
    sim.stop();
}

#[test]
fn running_out_of_space_closes_the_segment_frees_space_and_recording_resumes() {
    let _one_at_a_time = SMALL_FS.lock().unwrap_or_else(|p| p.into_inner());
    let fs = SmallFs::new(24);
    fs.clear("data-");
    let data = fs.path.join(format!("data-enospc-{}", std::process::id()));
    let sim = Sim::start(vec![
        CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam1", BuiltinFixture::H264_1080p.load()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cams = [
        camera_toml("cam0", &sim.url("cam0")),
        camera_toml("cam1", &sim.url("cam1")),
    ]
    .concat();
    // No floor and hourly retention: only running out of space can make room.
    let config = config_toml(addr, &data, "segment = \"2s\"", &cams).replace(
        "[ingest]",
        "[retention]\nmin_free = \"0\"\ninterval = \"1h\"\n\n[ingest]",
    );
    let mut node = Node::start(dir.path(), &config, addr);
    // The disk fills either while a segment is written (it is closed early) or as the next
    // one starts (it is not opened): which comes first depends on where the two cameras'
    // segments are when the last megabytes go. Either way the recorder must make room.
    assert!(
        wait_until(Duration::from_secs(90), || {
            let log = node.log_text();
            log.contains("disk full, closing the segment early") || log.contains("cannot start a segment")
        }),
        "the disk never filled:\n{}",
        node.log_text().lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    let full_at = now_us();
    // Recording goes on after the emergency pass freed space.
    assert!(
        wait_until(Duration::from_secs(30), || {
            ["cam0", "cam1"].iter().all(|c| {
                let r = node.ranges(c, full_at, now_us());
                r.last().is_some_and(|x| x.1 - x.0 > 3_000_000)
            })
        }),
        "recording did not resume after ENOSPC:\n{}",
        node.log_text()
    );
    let (_, health) = node.get("/api/v1/health");
    assert!(
        health["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["message"].as_str().unwrap().contains("inside its guarantee")),
        "{health}"
    );
    let log = node.log_text();
    assert!(
        log.contains("no space left for segment data"),
        "the writers stop short of the index's reserve:\n{log}"
    );
    assert!(
        !log.contains("Previous I/O error") && !log.contains("retention pass failed"),
        "the index never failed:\n{log}"
    );
    assert!(node.terminate().success());
    // The segment cut short ends at its last complete fragment (or at the sample table right
    // after it) and decodes.
    for (path, r) in indexed_segments(&data) {
        let scan = store::segment_file::scan_file(&path).unwrap();
        assert_eq!(scan.valid_len, r.bytes, "{}", path.display());
        assert_eq!(
            scan.file_len,
            scan.table_end.unwrap_or(scan.valid_len),
            "{} has a torn tail: {:?}",
            path.display(),
            scan.tail_problem
        );
        let (n, errors) = probe(&path);
        assert_eq!(n, r.frames, "{}", path.display());
        assert!(errors.is_empty(), "{}: {errors}", path.display());
    }
    let _ = std::fs::remove_dir_all(&data);
    let mut sim = sim;
    sim.stop();
}
