//! Four simulated cameras (H.264 and H.265) recorded by a real `sharpeye run` process over
//! loopback RTSP/TCP: zero frame loss, every segment decodes, the listing matches the files,
//! and a rebuilt index gives the same listing.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn four_cameras_recorded_for_20_s_lose_nothing_and_decode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sim = Sim::start(camsim::mixed_cameras(4, false));
    let cams: String = (0..4)
        .map(|i| camera_toml(&format!("cam{i}"), &sim.url(&format!("cam{i}"))))
        .collect();
    let addr = free_addr();
    let config = config_toml(addr, &data, "segment = \"4s\"", &cams);
    let mut node = Node::start(dir.path(), &config, addr);
    let t_start = now_us();

    assert!(
        wait_until(Duration::from_secs(10), || (0..4)
            .all(|i| sim.cam(&format!("cam{i}")).frames_sent() > 0)),
        "every camera streams:\n{}",
        node.log_text()
    );
    std::thread::sleep(Duration::from_secs(20));
    // Stop the cameras at a frame boundary (the sessions stay open), let the last frames land,
    // then stop the recorder cleanly.
    for i in 0..4 {
        sim.cam(&format!("cam{i}")).stall();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (status, health) = node.get("/api/v1/health");
    assert_eq!(status, 200);
    assert_eq!(health["cameras"]["online"], 4, "{health}");
    let status = node.terminate();
    assert!(status.success(), "clean exit");

    let segments = indexed_segments(&data);
    for i in 0..4 {
        let cam = format!("cam{i}");
        let sent = sim.cam(&cam).frames_sent();
        let mine: Vec<_> = segments.iter().filter(|(_, r)| r.stream.camera() == cam).collect();
        let recorded: u64 = mine.iter().map(|(_, r)| r.frames).sum();
        assert!(sent >= 20 * 25, "{cam} sent {sent}");
        assert_eq!(
            recorded, sent,
            "{cam}: frames on disk equal frames sent (zero loss on loopback TCP)"
        );
        assert!(
            mine.len() >= 5,
            "{cam}: short segments rotate ({} segments)",
            mine.len()
        );
        // Closed, and starting with a key frame: the first GOP the file's table gives is at 0.
        for (path, r) in &mine {
            assert!(r.closed);
            let gops = store::playback::segment_gops(path, r).unwrap();
            assert!(!gops.is_empty() && gops[0].media_offset == 0, "{}", path.display());
        }
        if have_ffmpeg() {
            for (path, r) in &mine {
                let (n, errors) = probe(path);
                assert_eq!(n, r.frames, "{}: ffprobe frame count", path.display());
                assert!(errors.is_empty(), "{}: ffmpeg decode errors: {errors}", path.display());
            }
        }
    }

    // The listing from a restarted node (cameras gone) matches what the files say.
    let mut sim = sim;
    sim.stop();
    let mut node = Node::start(dir.path(), &config, addr);
    let t_end = now_us();
    let listing: Vec<Vec<(i64, i64)>> = (0..4)
        .map(|i| node.ranges(&format!("cam{i}"), t_start - 60_000_000, t_end))
        .collect();
    for (i, ranges) in listing.iter().enumerate() {
        let cam = format!("cam{i}");
        let mine: Vec<store::SegmentRecord> = segments
            .iter()
            .filter(|(_, r)| r.stream.camera() == cam)
            .map(|(_, r)| r.clone())
            .collect();
        let scanned: Vec<store::SegmentRecord> = mine
            .iter()
            .map(|r| {
                store::segment_file::scan_file(&store::segment_file_path(&data, r))
                    .unwrap()
                    .to_record()
                    .unwrap()
            })
            .collect();
        let window = (
            media::WallTime::from_micros(t_start - 60_000_000),
            media::WallTime::from_micros(t_end),
        );
        let from_files: Vec<(i64, i64)> = store::merge_ranges(&scanned, window.0, window.1)
            .iter()
            .map(|r| (r.start.as_micros(), r.end.as_micros()))
            .collect();
        assert_eq!(ranges, &from_files, "{cam}: listing matches the files");
        assert_eq!(ranges.len(), 1, "{cam}: one continuous recording: {ranges:?}");
        let sent = sim.cam(&cam).frames_sent() as i64;
        let span = ranges[0].1 - ranges[0].0;
        assert!(
            (span - sent * 40_000).abs() <= 40_000,
            "{cam}: recorded span {span} µs for {sent} frames"
        );
    }
    assert!(node.terminate().success());

    // Rebuild: delete the index, regenerate it from the files, same listing.
    std::fs::remove_file(data.join("index.redb")).unwrap();
    let out = std::process::Command::new(bin())
        .args(["store", "rebuild", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("index rebuilt from {} segment files", segments.len()))
    );
    let mut node = Node::start(dir.path(), &config, addr);
    for (i, before) in listing.iter().enumerate() {
        assert_eq!(
            &node.ranges(&format!("cam{i}"), t_start - 60_000_000, t_end),
            before,
            "cam{i}: same listing after rebuild"
        );
    }
    assert!(node.terminate().success());
}
