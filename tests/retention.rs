//! Retention, holds and disk identity through a real `sharpeye` process.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use camsim::BuiltinFixture;
use common::*;

fn with_retention(config: String, retention: &str) -> String {
    config.replace("[ingest]", &format!("[retention]\n{retention}\n\n[ingest]"))
}

/// `sharpeye hold ...` against a node, the password on stdin.
fn hold_cli(addr: std::net::SocketAddr, args: &[&str]) -> (bool, serde_json::Value) {
    let mut child = Command::new(bin())
        .args(["hold", "--url", &format!("http://{addr}"), "--user", "admin"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), v)
}

#[test]
fn holds_from_the_cli_survive_restarts_and_index_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = (now_us() / 1_000_000 - 3600) * 1_000_000;
    synthesize(
        &data,
        base,
        60,
        &[Stretch {
            camera: "cam",
            fixture: BuiltinFixture::H264_240p,
            offset_s: 0.0,
            seconds: 120.0,
        }],
    );
    let addr = free_addr();
    let config = config_toml(addr, &data, "", &camera_toml("cam", "rtsp://127.0.0.1:1/x"));
    let node = Node::start(dir.path(), &config, addr);
    let (ok, hold) = hold_cli(
        addr,
        &[
            "add",
            "--camera",
            "cam",
            "--start",
            &at(base, 10.0),
            "--end",
            &at(base, 30.0),
            "--reason",
            "case 7",
        ],
    );
    assert!(ok, "{hold}");
    let id = hold["id"].as_str().unwrap().to_owned();
    assert_eq!(hold["created_by"], "admin");
    let (ok, bad) = hold_cli(
        addr,
        &[
            "add",
            "--camera",
            "nope",
            "--start",
            &at(base, 10.0),
            "--end",
            &at(base, 30.0),
            "--reason",
            "x",
        ],
    );
    assert!(!ok && bad["error"]["code"] == "not_found", "{bad}");
    assert!(node.terminate().success());

    // Restart, then delete the index and rebuild it: the hold is kept apart and survives both.
    let mut node = Node::start(dir.path(), &config, addr);
    assert_eq!(node.get("/api/v1/holds").1[0]["id"], id.as_str());
    let (_, health) = node.get("/api/v1/health");
    assert!(health["disks"][0]["held_bytes"].as_u64().unwrap() > 0, "{health}");
    assert!(node.terminate().success());
    std::fs::remove_file(data.join("index.redb")).unwrap();
    assert!(
        Command::new(bin())
            .args(["store", "rebuild", "--data"])
            .arg(&data)
            .status()
            .unwrap()
            .success()
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let (_, holds) = node.get("/api/v1/holds");
    assert_eq!(holds.as_array().unwrap().len(), 1);
    assert_eq!(holds[0]["reason"], "case 7");
    let (ok, listed) = hold_cli(addr, &["list"]);
    assert!(ok && listed[0]["id"] == id.as_str());
    let (ok, released) = hold_cli(addr, &["release", &id]);
    assert!(ok, "{released}");
    assert_eq!(released["released"]["id"], id.as_str());
    assert!(!hold_cli(addr, &["release", &id]).0, "releasing twice is a 404");
    assert!(node.get("/api/v1/holds").1.as_array().unwrap().is_empty());
    assert!(node.terminate().success());
}

fn run_fails(dir: &Path, config: &str) -> String {
    let cfg = dir.join("check.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn swapped_and_unmounted_data_directories_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("disk1"), dir.path().join("disk2"));
    let addr = free_addr();
    let config = config_toml(addr, &a, "", "").replace(
        &format!("data_dirs = [\"{}\"]", a.display()),
        &format!("data_dirs = [\"{}\", \"{}\"]", a.display(), b.display()),
    );
    assert!(Node::start(dir.path(), &config, addr).terminate().success());

    // Swapped mount points.
    let t = dir.path().join("t");
    std::fs::rename(&a, &t).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&t, &b).unwrap();
    let err = run_fails(dir.path(), &config);
    assert!(err.contains("disks were swapped or moved"), "{err}");
    std::fs::rename(&a, &t).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&t, &b).unwrap();

    // disk2 not mounted: its mount point is an empty directory.
    std::fs::rename(&b, &t).unwrap();
    std::fs::create_dir(&b).unwrap();
    let err = run_fails(dir.path(), &config);
    assert!(
        err.contains(&format!("data directory {} has no disk identity", b.display())),
        "{err}"
    );
    assert!(err.contains("not mounted or was replaced"), "{err}");
    std::fs::remove_dir(&b).unwrap();
    std::fs::rename(&t, &b).unwrap();
    assert!(
        Node::start(dir.path(), &config, addr).terminate().success(),
        "back to normal"
    );
}

/// Files under `segments/` and index entries agree: no entry without its file, no file without
/// its entry (an orphan).
fn assert_consistent(data: &Path) -> (usize, usize) {
    let (s, reports) = store::Store::open(&[data.to_owned()]).unwrap();
    let finished = reports[0].finished_deletes;
    let indexed = s.disks()[0].index().all_segments().unwrap();
    let mut files = std::collections::HashSet::new();
    walk(&data.join("segments"), &mut files);
    let mut expected = std::collections::HashSet::new();
    for r in &indexed {
        let p = store::segment_file_path(data, r);
        assert!(p.exists(), "indexed segment without its file: {}", p.display());
        expected.insert(p);
    }
    let orphans: Vec<_> = files.difference(&expected).collect();
    assert!(orphans.is_empty(), "orphan files: {orphans:?}");
    (indexed.len(), finished)
}

fn walk(dir: &Path, out: &mut std::collections::HashSet<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.insert(p);
        }
    }
}

#[test]
fn sigkill_during_retention_leaves_no_dangling_entry_and_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 2,400 one-second segments two months old: all past the 30-day guarantee.
    let base = (now_us() / 1_000_000 - 60 * 86_400) * 1_000_000;
    synthesize(
        &data,
        base,
        1,
        &[Stretch {
            camera: "cam",
            fixture: BuiltinFixture::H264_240p,
            offset_s: 0.0,
            seconds: 2400.0,
        }],
    );
    let (before, _) = assert_consistent(&data);
    assert!(before >= 2300, "{before} segments");
    let addr = free_addr();
    let config = with_retention(
        config_toml(addr, &data, "", &camera_toml("cam", "rtsp://127.0.0.1:1/x")),
        "interval = \"50ms\"",
    );
    let mut seed = 0x6a09e667u64;
    let mut interrupted = 0;
    let mut left = before;
    for round in 0..8 {
        let node = Node::start(dir.path(), &config, addr);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(5 + (seed >> 33) % 60));
        node.kill();
        // What the crash left half done, before recovery runs.
        let pending = store::index::Index::open(&data.join("index.redb"))
            .unwrap()
            .deleting()
            .unwrap()
            .len();
        if pending > 0 {
            interrupted += 1;
        }
        let (now_left, finished) = assert_consistent(&data);
        assert_eq!(
            finished, pending,
            "round {round}: start-up finishes every interrupted delete"
        );
        assert!(now_left <= left);
        left = now_left;
        if left == 0 {
            break;
        }
    }
    // A clean run finishes the job.
    let mut node = Node::start(dir.path(), &config, addr);
    assert!(
        wait_until(Duration::from_secs(20), || node
            .ranges("cam", base - 3_600_000_000, now_us())
            .is_empty()),
        "retention deletes the rest"
    );
    assert!(node.terminate().success());
    let (after, _) = assert_consistent(&data);
    assert_eq!(after, 0, "everything expired is gone");
    println!("kills that interrupted a delete batch: {interrupted}");
}
