//! Storage v2 against the real `sharpeye` process: a data directory in the previous format (a
//! schema 1 index with every segment's key-frame table, segment files without sample tables)
//! is migrated at start and then serves the same listings, byte-identical playback files and
//! the same HLS playlists as the same recording in the new format; a node killed (SIGKILL) in
//! the middle of a migration finishes it at its next start, with every entry there.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camsim::BuiltinFixture;
use common::*;
use store::index::Index;

/// A node serving `cameras` (not pulled: the recording is already there), keeping ten years.
fn config(addr: std::net::SocketAddr, data: &Path, cameras: &[&str]) -> String {
    let cams: String = cameras
        .iter()
        .map(|c| {
            camera_toml(c, "rtsp://127.0.0.1:1/none")
                .replace("tier = \"standard\"", "tier = \"standard\"\nrecord = false")
        })
        .collect();
    config_toml(addr, data, "", &cams).replace(
        "[ingest]",
        "[retention]\nstandard = \"3650d\"\nkey = \"3650d\"\n\n[ingest]",
    )
}

/// Turns `data` into what the release before storage v2 left: files cut back to their last
/// fragment (no sample table) and a schema 1 index of their full records. Returns the
/// segments' summaries.
fn to_previous_format(data: &Path) -> Vec<store::SegmentRecord> {
    let index_path = data.join("index.redb");
    let summaries = Index::open(&index_path).unwrap().all_segments().unwrap();
    let mut records = Vec::new();
    for r in &summaries {
        let path = store::segment_file_path(data, r);
        let full = store::segment_file::scan_file(&path).unwrap().to_record().unwrap();
        assert_eq!(full.summary(), *r);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(r.bytes)
            .unwrap();
        records.push(full);
    }
    std::fs::remove_file(&index_path).unwrap();
    Index::write_schema_v1(&index_path, &records).unwrap();
    summaries
}

/// What a client sees of the recording: listings, playback files and playlists (tokens
/// taken out), for each request.
fn answers(node: &mut Node, base: i64) -> Vec<(String, Vec<u8>)> {
    let token = node.token();
    let mut out = Vec::new();
    let mut requests = Vec::new();
    for cam in ["cam0", "cam1"] {
        requests.push(format!(
            "/api/v1/cameras/{cam}/recordings?start={}&end={}",
            at(base, -60.0),
            at(base, 400.0)
        ));
    }
    for (cam, from, to, extra) in [
        ("cam0", 5.0, 8.0, ""),
        ("cam0", 5.0, 35.0, ""),
        ("cam0", 100.0, 170.0, ""),
        ("cam0", 0.0, 60.0, "&speed=4"),
        ("cam1", 10.0, 50.0, ""),
    ] {
        requests.push(format!(
            "/api/v1/cameras/{cam}/playback.mp4?start={}&end={}{extra}",
            at(base, from),
            at(base, to)
        ));
    }
    requests.push(format!(
        "/api/v1/cameras/cam0/playback.m3u8?start={}&end={}",
        at(base, 0.0),
        at(base, 200.0)
    ));
    for path in requests {
        let (status, _, body) = fetch(&node.url(&path), &token, &[]);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let body = if path.contains(".m3u8") {
            let text = String::from_utf8(body).unwrap();
            text.split("token=")
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_owned()
                    } else {
                        part.split_once(['&', '"', '\n'])
                            .map_or(String::new(), |(_, rest)| rest.to_owned())
                    }
                })
                .collect::<Vec<_>>()
                .join("token=")
                .into_bytes()
        } else {
            body
        };
        out.push((path, body));
    }
    out
}

#[test]
fn a_data_directory_of_the_previous_format_migrates_and_serves_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Two hours ago, whole seconds: an H.264 camera with a gap, an H.265 one.
    let base = (now_us() / 1_000_000 - 7200) * 1_000_000;
    let stretch = |camera, fixture, offset_s, seconds| Stretch {
        camera,
        fixture,
        offset_s,
        seconds,
    };
    synthesize(
        &data,
        base,
        10,
        &[
            stretch("cam0", BuiltinFixture::H264_240p, 0.0, 120.0),
            stretch("cam0", BuiltinFixture::H264_240p, 150.0, 50.0),
            stretch("cam1", BuiltinFixture::H265_240p, 0.0, 100.0),
        ],
    );
    let addr = free_addr();
    let cfg = config(addr, &data, &["cam0", "cam1"]);
    let mut node = Node::start(dir.path(), &cfg, addr);
    let now_format = answers(&mut node, base);
    assert!(node.terminate().success());

    let summaries = to_previous_format(&data);
    let mut node = Node::start(dir.path(), &cfg, addr);
    let log = node.log_text();
    assert!(log.contains("migrating the index"), "{log}");
    assert!(log.contains("index migrated to schema 2"), "{log}");
    let migrated = answers(&mut node, base);
    for ((path, a), (_, b)) in now_format.iter().zip(&migrated) {
        assert!(
            a == b,
            "{path}: {} bytes in the new format, {} after the migration",
            a.len(),
            b.len()
        );
    }
    assert_eq!(now_format.len(), migrated.len());
    // The migration leaves the files as they are; the background pass then gives each its
    // sample table, and the answers stay the same.
    let has_table = |r: &store::SegmentRecord| {
        store::segment_file::scan_file(&store::segment_file_path(&data, r))
            .is_ok_and(|s| s.table_end.is_some_and(|e| e == s.file_len))
    };
    assert!(
        wait_until(Duration::from_secs(20), || summaries.iter().all(has_table)),
        "every migrated segment gets its table:\n{}",
        node.log_text()
    );
    assert_eq!(answers(&mut node, base), now_format);
    assert!(node.terminate().success());
}

/// A child process killed and reaped when dropped (a failing test leaves no node behind).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sharpeye run` without waiting for its API (it migrates first), logging to `log`.
fn spawn(config: &Path, log: &Path) -> std::process::Child {
    Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn a_node_killed_during_its_migration_finishes_it_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = (now_us() / 86_400_000_000 - 200) * 86_400_000_000;
    // One real segment, then an index of 4 cameras × 50,000 minutes copied from it.
    synthesize(
        &data,
        base,
        60,
        &[Stretch {
            camera: "cam0",
            fixture: BuiltinFixture::H264_240p,
            offset_s: 0.0,
            seconds: 60.0,
        }],
    );
    let index_path = data.join("index.redb");
    let template = {
        let r = Index::open(&index_path).unwrap().all_segments().unwrap()[0].clone();
        store::segment_file::scan_file(&store::segment_file_path(&data, &r))
            .unwrap()
            .to_record()
            .unwrap()
    };
    let per_camera = 50_000u64;
    let mut records = Vec::new();
    for c in 0..4 {
        for i in 0..per_camera {
            let mut r = template.clone();
            r.stream = media::StreamId::main(format!("cam{c}"));
            r.seq = i + 1;
            r.start = template.start.add_micros(i as i64 * 60_000_000);
            r.end = template.end.add_micros(i as i64 * 60_000_000);
            records.push(r);
        }
    }
    std::fs::remove_file(&index_path).unwrap();
    Index::write_schema_v1(&index_path, &records).unwrap();
    let total = records.len() as u64;

    let addr = free_addr();
    let cfg = config(addr, &data, &["cam0", "cam1", "cam2", "cam3"]);
    let cfg_path = dir.path().join("sharpeye.toml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let log = dir.path().join("killed.log");
    let mut child = Reaped(spawn(&cfg_path, &log));
    let t = Instant::now();
    let moved = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("migrating the index") && l.contains("moved="))
        {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            let moved: u64 = line
                .split("moved=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            break moved;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no migration progress:\n{text}");
        std::thread::sleep(Duration::from_millis(2));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        moved < total && !text.contains("index migrated"),
        "killed at {moved} of {total}:\n{text}"
    );

    let mut node = Node::start(dir.path(), &cfg, addr);
    let text = node.log_text();
    assert!(text.contains("index migrated to schema 2"), "{text}");
    // The listing of the first camera comes whole, in one range.
    let (s, listing) = node.get(&format!(
        "/api/v1/cameras/cam2/recordings?start={}&end={}",
        at(base, -60.0),
        at(base, per_camera as f64 * 60.0 + 60.0)
    ));
    assert_eq!(s, 200, "{listing}");
    assert_eq!(listing["ranges"].as_array().unwrap().len(), 1, "{listing}");
    assert!(node.terminate().success());
    let after = Index::open(&index_path).unwrap().all_segments().unwrap();
    assert_eq!(after.len() as u64, total, "every entry is there");
    for (a, r) in after
        .iter()
        .zip(records.iter().map(|r| r.summary()).collect::<Vec<_>>().iter())
    {
        assert_eq!(a, r);
    }
}
