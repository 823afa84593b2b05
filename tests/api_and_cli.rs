//! The command line and the HTTP contract: every bad request gets the right status and a JSON
//! error, every bad config names each of its mistakes.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_names_every_mistake_and_accepts_the_example() {
    let (code, out) = run(&[
        "check-config",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK (1 cameras, 2 users, 2 departments, 1 groups, 2 grants, 1 data directories)"),
        "{out}"
    );
    // The worked three-level example of docs/hierarchy.md.
    for (file, want) in [
        (
            "community",
            "OK (2 cameras, 1 users, 0 departments, 0 groups, 0 grants, 1 data directories)",
        ),
        ("street", "; street xigang-street node, 1 lower links, 0 upper links"),
        (
            "district",
            "; district xigang-district node, 1 lower links, 0 upper links",
        ),
    ] {
        let path = format!("{}/config/levels/{file}.toml", env!("CARGO_MANIFEST_DIR"));
        let (code, out) = run(&["check-config", "--config", &path]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(want), "{out}");
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nowhere\"\ndata_dirs = [\"/d\"]\n[recording]\nsegment = \"ten\"\n[[cameras]]\nid = \"a b\"\nurl = \"rtsp://x/\"\ntier = \"gold\"\n[[cameras]]\nid = \"c\"\n",
    )
    .unwrap();
    let (code, out) = run(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "5 problems",
        "server.listen: \"nowhere\" is not an address",
        "recording.segment: \"ten\" is not a duration",
        "cameras[0].id: \"a b\" is not a valid id",
        "cameras[0].tier: \"gold\" is not a tier",
        "cameras[1].url: missing",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // `run` refuses the same file with the same explanation.
    let (code, out) = run(&["run", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("cameras[0].tier: \"gold\" is not a tier"), "{out}");
    let (code, out) = run(&["check-config", "--config", "/nonexistent.toml"]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot read the file"), "{out}");
}

#[test]
fn http_errors_are_json_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = config_toml(
        addr,
        &dir.path().join("data"),
        "",
        &camera_toml("cam0", "rtsp://127.0.0.1:1/x"),
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let u = |p: &str| format!("http://{addr}{p}");
    let err =
        |(status, v): (u16, serde_json::Value)| (status, v["error"]["code"].as_str().unwrap_or("NOT JSON").to_owned());

    // Authentication.
    assert_eq!(err(get_json(&u("/api/v1/cameras"), None)), (401, "unauthorized".into()));
    assert_eq!(
        err(get_json(&u("/api/v1/cameras"), Some("forged-token"))),
        (401, "unauthorized".into())
    );
    assert_eq!(err(get_json(&u("/metrics"), None)), (401, "unauthorized".into()));
    let bad_login = post_json(
        &u("/api/v1/login"),
        &json!({"username": "admin", "password": "nope"}),
        None,
    );
    assert_eq!(err(bad_login.clone()), (401, "unauthorized".into()));
    let unknown_user = post_json(
        &u("/api/v1/login"),
        &json!({"username": "ghost", "password": "nope"}),
        None,
    );
    assert_eq!(
        unknown_user.1, bad_login.1,
        "unknown users and wrong passwords look the same"
    );
    assert_eq!(
        err(post_raw(&u("/api/v1/login"), "application/json", "{not json", None)),
        (400, "bad_request".into())
    );
    assert_eq!(err(post_raw(&u("/api/v1/login"), "text/plain", "{}", None)).0, 415);
    let huge = format!("{{\"username\":\"{}\",\"password\":\"x\"}}", "a".repeat(200_000));
    let request = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{huge}",
        huge.len()
    );
    let (status, body) = raw_http(addr, request.as_bytes());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    let token = node.token();
    let t = Some(token.as_str());
    let tampered = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(err(get_json(&u("/api/v1/cameras"), Some(&tampered))).0, 401);

    // Resources.
    assert_eq!(get_json(&u("/api/v1/cameras"), t).0, 200);
    assert_eq!(err(get_json(&u("/api/v1/cameras/nope"), t)), (404, "not_found".into()));
    let long_id = "x".repeat(5000);
    let (status, v) = get_json(&u(&format!("/api/v1/cameras/{long_id}")), t);
    assert_eq!(status, 404);
    assert!(
        v["error"]["message"].as_str().unwrap().len() < 200,
        "hostile ids are not echoed in full"
    );
    assert_eq!(
        err(get_json(
            &u("/api/v1/cameras/..%2F..%2Fetc%2Fpasswd/recordings?start=2026-11-23T00:00:00Z&end=2026-11-23T01:00:00Z"),
            t
        ))
        .0,
        404
    );
    assert_eq!(err(get_json(&u("/api/v1/nothing-here"), t)), (404, "not_found".into()));
    assert_eq!(
        err(post_json(&u("/api/v1/cameras"), &json!({}), t)),
        (405, "method_not_allowed".into())
    );

    // Recordings queries.
    let rec = |q: &str| err(get_json(&u(&format!("/api/v1/cameras/cam0/recordings{q}")), t));
    assert_eq!(rec("").0, 400);
    assert_eq!(rec("?start=2026-11-23T08:00:00+08:00").0, 400);
    assert_eq!(rec("?start=yesterday&end=2026-11-23T08:00:00Z").0, 400);
    assert_eq!(
        rec("?start=2026-11-23T08:00:00&end=2026-11-23T09:00:00").0,
        400,
        "offsets are required"
    );
    assert_eq!(
        rec("?start=2026-11-23T09:00:00Z&end=2026-11-23T08:00:00Z").0,
        400,
        "end before start"
    );
    assert_eq!(
        rec("?start=2020-01-01T00:00:00Z&end=2026-01-01T00:00:00Z"),
        (400, "range_too_long".into())
    );
    assert_eq!(
        rec("?start=2026-11-23T08:00:00Z&end=2026-11-23T09:00:00Z&stream=third"),
        (400, "bad_request".into())
    );
    let (status, v) = get_json(
        &u("/api/v1/cameras/cam0/recordings?start=2026-11-23T08:00:00%2B08:00&end=2026-11-23T09:00:00%2B08:00"),
        t,
    );
    assert_eq!((status, v.clone()), (200, json!({"ranges": []})), "{v}");

    // Health, metrics.
    let (status, h) = get_json(&u("/api/v1/health"), t);
    assert_eq!(status, 200);
    assert_eq!(h["cameras"]["total"], 1);
    assert!(h["disks"][0]["free_bytes"].as_u64().unwrap() > 0);
    let mut resp = ureq::get(&u("/metrics"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(
        text.contains("sharpeye_camera_online{camera=\"cam0\",stream=\"main\"} 0"),
        "{text}"
    );
    assert!(text.contains("# TYPE sharpeye_recorder_frames_written_total counter"));
    assert_eq!(ureq::get(&u("/healthz")).call().unwrap().status(), 200);
    assert_eq!(node.get("/api/v1/cameras/cam0").1["status"], "offline");

    // A second process on the same data directory is refused, naming the directory.
    let addr2 = free_addr();
    let config2 = config_toml(addr2, &dir.path().join("data"), "", "");
    let cfg2 = dir.path().join("second.toml");
    std::fs::write(&cfg2, config2).unwrap();
    let (code, out) = run(&["run", "--config", cfg2.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("is in use by another Sharpeye process"), "{out}");
    assert!(node.terminate().success());
}

#[test]
fn demo_records_simulated_cameras_and_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let street_addr = free_addr();
    let child = Command::new(bin())
        .args([
            "demo",
            "--street",
            &street_addr.to_string(),
            "--cameras",
            "2",
            "--password",
            PASSWORD,
            "--listen",
            &addr.to_string(),
            "--rtsp",
            &free_addr().to_string(),
            "--sip",
            &testkit::free_udp_tcp_addr().to_string(),
            "--data",
        ])
        .arg(dir.path().join("demo-data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Node {
        child,
        addr,
        log: dir.path().join("none"),
        token: None,
        ns: None,
    };
    assert!(wait_until(std::time::Duration::from_secs(20), || {
        ureq::get(&node.url("/healthz")).call().is_ok()
    }));
    // Two RTSP cameras and the simulated NVR's two GB/T 28181 channels, all recording.
    assert!(
        wait_until(
            std::time::Duration::from_secs(30),
            || node.get("/api/v1/health").1["cameras"]["online"] == 4
        ),
        "{}",
        node.get("/api/v1/cameras").1
    );
    let cams = node.get("/api/v1/cameras").1;
    assert_eq!(cams.as_array().unwrap().len(), 4);
    // Indexed once durable: within a flush or two, later if the file system is busy syncing.
    let mut ranges = Vec::new();
    let indexed = wait_until(std::time::Duration::from_secs(30), || {
        ranges = node.ranges("cam1", now_us() - 60_000_000, now_us());
        ranges.len() == 1 && ranges[0].1 - ranges[0].0 > 1_000_000
    });
    // On failure the node's own view (sync times, camera health) says where it stuck.
    assert!(
        indexed,
        "{ranges:?}\nhealth: {}\ncamera: {}",
        node.get("/api/v1/health").1,
        node.get("/api/v1/cameras/cam1").1
    );
    let page = ureq::get(&node.url("/"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(page.contains("<title>Sharpeye</title>"));
    // The street node above it lists the community's cameras, pulled only while watched.
    let street_token = login(&format!("http://{street_addr}"), "admin");
    let mut listed = serde_json::Value::Null;
    assert!(
        wait_until(std::time::Duration::from_secs(20), || {
            listed = get_json(&format!("http://{street_addr}/api/v1/cameras"), Some(&street_token)).1;
            listed.as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["id"] == "cam0" && c["node"] == "demo-community" && c["status"] == "online")
            })
        }),
        "{listed}"
    );
    let mut child = std::mem::replace(&mut node.child, Command::new("true").spawn().unwrap());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success());
    assert!(
        out.contains(&format!("login          : user admin, password {PASSWORD}")),
        "{out}"
    );
    assert!(out.contains(&format!("http://{addr}/")), "{out}");
    assert!(out.contains("GB/T 28181"), "{out}");
    assert!(
        out.contains(&format!("street level   : http://{street_addr}/")),
        "{out}"
    );
}
