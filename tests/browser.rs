//! The operators' web UI in Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/ui.mjs`) against a real node pulling camsim, as an operator would use it:
//! the tree of one department, a 2×2 wall with two H.265 cameras, a 16-tile wall on
//! sub-streams, a camera failing and recovering, a tour, a kiosk screen that `curl` pushes
//! layouts to, the timeline (ranges, click-to-play, speed, frame step), an export verified from
//! the UI, the admin creating a user and a grant, and the handheld view.
//!
//! The script asks for changes to the world it cannot make itself (killing a camera, pushing a
//! wall with curl) with `NEED ...` lines; this test makes them and answers. Screenshots of each
//! screen go to `target/ui-screenshots/` (or `SHARPEYE_UI_SHOTS`), the source of `docs/ui/`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec};
use common::*;
use serde_json::{Value, json};

fn browser_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists() && std::path::Path::new("/usr/bin/chromium").exists(),
        "needs Chromium and playwright-core: apt-get install chromium && npm ci --prefix tests/browser (scripts/test.sh does both)"
    );
    dir
}

/// Four cameras of the east department with sub-streams (two H.264, two H.265 main streams) and
/// two of the west without; an operator of the east department.
fn ui_node() -> Setup {
    let specs = camsim::with_sub_streams(vec![
        CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam1", BuiltinFixture::H265_1080p.load()),
        CameraSpec::new("cam2", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam3", BuiltinFixture::H265_1080p.load()),
    ])
    .into_iter()
    .chain([
        CameraSpec::new("cam4", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("cam5", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("cam6", BuiltinFixture::H265_1080p.load()),
    ])
    .collect();
    let sim = Sim::start(specs);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut cams = String::new();
    for i in 0..6 {
        let org = if i < 4 { "dalian/east" } else { "dalian/west" };
        cams.push_str(&format!(
            "[[cameras]]\nid = \"cam{i}\"\nname = \"Gate {i}\"\nurl = \"{}\"\ntier = \"standard\"\norg = \"{org}/gate-{i}\"\nlocation = {{ lat = 38.91{i}, lon = 121.61{i} }}\n",
            sim.url(&format!("cam{i}"))
        ));
        if i < 4 {
            cams.push_str(&format!("sub_url = \"{}\"\n", sim.url(&format!("cam{i}-sub"))));
        }
        cams.push('\n');
    }
    // An H.265 camera without a sub-stream, live on demand only: plays in Chromium only
    // through the node's transcode (the gstreamer feature).
    cams.push_str(&format!(
        "[[cameras]]\nid = \"cam6\"\nname = \"Square (H.265 only)\"\nurl = \"{}\"\ntier = \"standard\"\norg = \"dalian/central/square\"\nrecord = false\n\n",
        sim.url("cam6")
    ));
    let people = format!(
        "[[departments]]\nid = \"east\"\nname = \"East station\"\n\n[[departments]]\nid = \"west\"\nname = \"West station\"\n\n\
         [[users]]\nname = \"east-op\"\npassword = \"{PASSWORD}\"\nrole = \"operator\"\ndepartment = \"east\"\n\n\
         [[grants]]\nsubject = \"department:east\"\nactions = [\"live\", \"playback\", \"export\", \"hold\"]\nresource = \"org:dalian/east\"\n\n"
    );
    let config = config_toml(
        addr,
        &dir.path().join("data"),
        "segment = \"10s\"",
        &format!("{people}{cams}"),
    );
    let node = Node::start(dir.path(), &config, addr);
    Setup { sim, dir, node }
}

/// Runs `ui.mjs` with `scenarios`, answering its `NEED` lines; returns its result.
/// One headless Chromium at a time: on two cores, two of them decoding 1080p walls at once
/// made a wall miss its 15 s to show every tile (a full run's flake, never alone).
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn drive(setup: &mut Setup, scenarios: &[&str]) -> Value {
    let _turn = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let shots = std::env::var("SHARPEYE_UI_SHOTS").unwrap_or_else(|_| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/ui-screenshots")
            .display()
            .to_string()
    });
    std::fs::create_dir_all(&shots).unwrap();
    let mut child = Command::new("node")
        .arg(browser_dir().join("ui.mjs"))
        .arg(setup.node.url("/"))
        .arg(PASSWORD)
        .arg(&shots)
        .args(scenarios)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running node (install Node.js)");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut result = Value::Null;
    for line in stdout.lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["RESULT", ..] => {
                result = serde_json::from_str(line.trim_start_matches("RESULT ")).unwrap();
                continue;
            }
            ["NEED", "sub-viewers"] => {
                let m = setup.node.metrics();
                m.lines()
                    .filter(|l| l.starts_with("sharpeye_live_viewers{") && l.contains("stream=\"sub\""))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum::<u64>()
                    .to_string()
            }
            ["NEED", "kill", cam] => {
                // The camera goes dark and its connections drop: the node's pull fails.
                let c = setup.sim.cam(cam);
                c.go_dark();
                c.drop_connections();
                "ok".into()
            }
            ["NEED", "revive", cam] => {
                setup.sim.cam(cam).wake();
                "ok".into()
            }
            ["NEED", "kiosk-token"] => {
                // A device token for the wall PC: live view of every camera, no expiry.
                let (s, b) = setup.node.post(
                    "/api/v1/tokens",
                    &json!({"name": "wall-room1", "actions": ["live"], "resources": ["*"]}),
                );
                assert_eq!(s, 201, "{b}");
                b["token"].as_str().unwrap().to_owned()
            }
            ["NEED", "put-wall", wall, layout, cams] => {
                // Pushed by another program, as the dispatch module would: curl.
                let tiles: Vec<Value> = cams.split(',').map(|c| json!({"camera": c})).collect();
                let body = json!({"layout": layout, "tiles": tiles}).to_string();
                let token = setup.node.token();
                let out = Command::new("curl")
                    .args(["-sS", "-f", "-X", "PUT", "-H", "Content-Type: application/json"])
                    .args(["-H", &format!("Authorization: Bearer {token}")])
                    .args(["-d", &body, &setup.node.url(&format!("/api/v1/walls/{wall}"))])
                    .output()
                    .expect("curl");
                assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
                "ok".into()
            }
            _ => {
                eprintln!("ui.mjs: {line}");
                continue;
            }
        };
        writeln!(stdin, "{answer}").unwrap();
    }
    let status = child.wait().unwrap();
    assert!(
        status.success() && result.get("error").is_none(),
        "ui.mjs failed: {result}\n{}",
        setup.node.log_text()
    );
    println!("ui: {result}");
    result
}

fn wait_recorded(node: &mut Node, camera: &str, secs: i64) {
    let start = Instant::now();
    loop {
        let r = node.ranges(camera, now_us() - 3_600_000_000, now_us());
        if r.iter().map(|(a, b)| b - a).sum::<i64>() >= secs * 1_000_000 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs as u64 + 60),
            "{camera} is not recording: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_wall_decodes_every_codec_falls_back_per_tile_tours_and_follows_pushes() {
    let mut setup = ui_node();
    let r = drive(&mut setup, &["wall", "failure", "tour", "kiosk"]);

    // The department's operator sees the east cameras only, in the tree as in the API.
    let east: Vec<Value> = (0..4).map(|i| json!(format!("cam{i}"))).collect();
    assert_eq!(r["tree"], json!(east));
    assert_eq!(r["api_cameras"], json!(east));

    // Two H.264 and two H.265 main streams: all four tiles decode within 3 s of the drops, the
    // H.265 ones on their H.264 sub-stream (headless Chromium has no HEVC decoder).
    assert!(
        r["four_ms"].as_u64().unwrap() <= 3000,
        "4 tiles took {} ms",
        r["four_ms"]
    );
    // Over WebRTC, unless this machine's only interface is loopback: Chromium then offers
    // WebRTC no address, and the tiles must have gone to fMP4 at once (a CI container).
    let kind = if r["webrtc_possible"] == json!(true) {
        "webrtc"
    } else {
        "fmp4"
    };
    println!("the 2×2 wall played over {kind}");
    for t in r["four"].as_array().unwrap() {
        let cam = t["camera"].as_str().unwrap();
        assert!(t["frames"].as_u64().unwrap() > 0, "{t}");
        let h265 = cam == "cam1" || cam == "cam3";
        assert_eq!(t["stream"], if h265 { "sub" } else { "main" }, "{t}");
        assert_eq!(t["kind"], kind, "{t}");
    }
    // 16 tiles: small, so every one is on the sub-stream, and the server counts sub viewers.
    for t in &r["sixteen"].as_array().unwrap()[..4] {
        assert_eq!(t["stream"], "sub", "{t}");
    }
    assert!(r["sub_viewers"].as_u64().unwrap() >= 4, "{r}");

    // A camera dies: its tile says so within 5 s and keeps its last frame; the others go on.
    assert!(
        r["badge_ms"].as_u64().unwrap() <= 5000,
        "badge after {} ms",
        r["badge_ms"]
    );
    assert!(r["last_frame_kept"].as_bool().unwrap());
    for d in r["others_during_outage"].as_array().unwrap() {
        assert!(d.as_u64().unwrap() >= 25, "another tile stalled during the outage: {r}");
    }
    // It comes back without anyone touching the tile.
    assert!(r["recover_ms"].as_u64().is_some());
    // Through the outage's events and the listing's refreshes (every 10 s), the tree updated
    // its rows in place: a row being dragged is never replaced.
    assert_eq!(r["tree_row_kept"], true, "the tree redrew its rows");

    // A view saved from the wall (shared with the department) restores it after a clear; a
    // double-click enlarges a tile.
    assert_eq!(r["cleared"], 0);
    assert_eq!(r["view_restored"], json!(["cam0", "cam1", "cam2", "cam3"]));
    assert_eq!(r["enlarged"], true);
    let (_, views) = setup.node.get("/api/v1/views");
    assert_eq!(
        views.as_array().map(Vec::len),
        Some(0),
        "the admin is not in the east department: {views}"
    );

    // A tour of three cameras every 3 s on one tile shows each of them within 10 s.
    assert_eq!(r["tour_seen"], json!(["cam0", "cam1", "cam3"]));

    // curl pushes a layout: the kiosk shows it within a second, twice, without chrome, and
    // comes back after a reload with its remembered device token.
    for ms in r["kiosk_switch_ms"].as_array().unwrap() {
        assert!(ms.as_u64().unwrap() <= 1000, "kiosk switched after {ms} ms");
    }
    assert_eq!(r["kiosk_tiles"], json!(["cam1", "cam3", "cam0"]));
    assert_eq!(r["kiosk_chrome_hidden"], true);
    assert_eq!(r["kiosk_url_clean"], true);
    assert_eq!(r["kiosk_after_reload"], true);
    // A 5×5 wall plays over MSE by itself, eight tiles of one page at once (fMP4 through
    // WebSockets).
    let mse = r["mse_tiles"].as_array().map(Vec::len);
    assert_eq!(mse, Some(8), "{}", r["mse_tiles"]);
    // Behind a firewall that drops WebRTC's UDP, the tiles fall back to fMP4 by themselves,
    // well before a session without a first frame would be given up (8 s).
    for t in r["blocked_tiles"].as_array().unwrap() {
        assert_eq!(t["kind"], "fmp4", "{t}");
        assert_eq!(t["badge"], Value::Null, "{t}");
    }
    assert!(
        r["blocked_ms"].as_u64().unwrap() <= 7000,
        "behind the firewall the tiles played after {} ms",
        r["blocked_ms"]
    );
    if r["webrtc_possible"] == json!(true) {
        assert!(r["blocked_rewritten"].as_u64().unwrap() >= 2, "{r}");
    }
    // There, a camera whose H.265 the listing did not know yet is found out from its fMP4: the
    // tile says what would play it (the default build has no transcode), or plays the transcode.
    let hevc = &r["blocked_hevc"];
    if cfg!(feature = "gstreamer") {
        assert!(hevc["frames"].as_u64().unwrap() > 0, "{hevc}");
    } else {
        assert!(hevc["msg"].as_str().unwrap().contains("no H.264 sub-stream"), "{hevc}");
    }

    // Every wall push was audited with its cameras.
    let (_, audit) = setup.node.get(&format!(
        "/api/v1/audit?action=wall.push&start={}&end={}",
        rfc3339(now_us() - 3_600_000_000),
        rfc3339(now_us() + 60_000_000)
    ));
    assert_eq!(audit["entries"].as_array().unwrap().len(), 5, "{audit}");
    // However many tiles showed a camera, the camera was pulled once per stream.
    assert_eq!(setup.sim.cam("cam0").active_sessions(), 1);
    assert!(setup.node.terminate().success());
}

#[test]
fn playback_export_and_administration_work_from_the_ui() {
    let mut setup = ui_node();
    // cam4 goes dark for a while: a gap in its recording, for a follower to wait across.
    wait_recorded(&mut setup.node, "cam4", 4);
    let c = setup.sim.cam("cam4");
    c.go_dark();
    c.drop_connections();
    std::thread::sleep(Duration::from_secs(8));
    setup.sim.cam("cam4").wake();
    wait_recorded(&mut setup.node, "cam0", 45);
    let start = Instant::now();
    while setup.node.ranges("cam4", now_us() - 3_600_000_000, now_us()).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "cam4 does not record again");
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = drive(&mut setup, &["timeline", "export", "admin"]);

    // The timeline draws exactly what /recordings lists (the live range's end moves on between
    // the two reads), and nothing where nothing is.
    let (shown, api) = (
        r["timeline"]["shown"].as_array().unwrap(),
        r["timeline"]["api"].as_array().unwrap(),
    );
    assert_eq!(shown.len(), api.len(), "{}", r["timeline"]);
    for (i, (s, a)) in shown.iter().zip(api).enumerate() {
        assert_eq!(s["start"], a["start"]);
        let (se, ae) = (
            parse_time(s["end"].as_str().unwrap()),
            parse_time(a["end"].as_str().unwrap()),
        );
        if i + 1 < api.len() {
            assert_eq!(se, ae);
        } else {
            assert!(se <= ae && ae - se < 5_000_000, "{}", r["timeline"]);
        }
    }
    assert_eq!(r["timeline"]["inside_green"], true, "{}", r["timeline"]);
    assert_eq!(r["timeline"]["before_green"], false, "{}", r["timeline"]);

    // Clicking the timeline shows the frame of that instant (within one 40 ms frame)...
    let err = r["click_error_ms"].as_f64().unwrap();
    assert!(err.abs() <= 40.0, "the frame shown is {err} ms from the click");
    // ... speed 4 plays four seconds of recording per second (±15 %) ...
    let ratio = r["speed4_ratio"].as_f64().unwrap();
    assert!((3.4..=4.6).contains(&ratio), "speed 4 played at {ratio}×");
    // ... and one step moves one frame.
    let step = r["step_ms"].as_f64().unwrap();
    assert!((20.0..=60.0).contains(&step), "a frame step moved {step} ms");

    // The export from a timeline selection finishes and the UI shows the node's verification.
    assert_eq!(r["export_intact"], true, "{r}");
    assert_eq!(r["export_manifest"]["camera"]["id"], "cam0");
    assert_eq!(r["export_manifest"]["reason"], "case 2026-118: theft at the east gate");

    // A hold made from the selection is listed, then released with a reason.
    assert_eq!(
        (r["hold_listed"].as_bool(), r["hold_released"].as_bool()),
        (Some(true), Some(true)),
        "{r}"
    );
    let (_, audit) = setup.node.get(&format!(
        "/api/v1/audit?action=hold.release&start={}&end={}",
        rfc3339(now_us() - 3_600_000_000),
        rfc3339(now_us() + 60_000_000)
    ));
    assert_eq!(audit["entries"][0]["reason"], "case closed", "{audit}");
    // Two cameras play in step: the same wall time within two frames (the median of seven
    // readings, since one can fall between two frame callbacks).
    let sync = r["sync_ms"].as_array().map(Vec::len);
    assert_eq!(sync, Some(2), "{r}");
    let spread = r["sync_spread_ms"].as_f64();
    assert!(
        spread.is_some_and(|s| s <= 80.0),
        "the two players are {spread:?} ms apart: {r}"
    );
    // A follower whose recording resumes after the group's instant waits on its first frame,
    // the one after its gap, then plays in step.
    let gap_end = r["follower_gap"][1].as_f64().unwrap();
    let waited_on = r["follower_waited"].as_f64().unwrap();
    assert!(
        waited_on >= gap_end && waited_on - gap_end < 2_000.0,
        "cam4 waited on {waited_on}, its recording resumes at {gap_end}: {r}"
    );
    let joined = r["follower_joined_spread_ms"].as_f64();
    assert!(
        joined.is_some_and(|s| s <= 80.0),
        "the follower joined {joined:?} ms from the leader: {r}"
    );

    // The admin's bad password is answered beside the field; the new user sees only the west
    // cameras granted, and no administration.
    assert!(r["admin_field_error"].as_str().unwrap().starts_with("password:"), "{r}");
    assert_eq!(r["west_tree"], json!(["cam4", "cam5"]));
    assert_eq!(r["west_admin_hidden"], true);
    assert_eq!(r["audit_chain_intact"], true);
    assert_eq!(r["audit_has_grant"], true);

    // Chinese and English hold the same strings; switching shows Chinese at once.
    assert_eq!(
        r["i18n"],
        json!({"missing_zh": [], "missing_en": [], "unknown_used": []})
    );
    assert_eq!(r["nav_zh"], "录像回放");

    // The handheld view plays the sub-stream.
    assert_eq!(r["phone"]["stream"], "sub", "{r}");
    assert!(r["phone"]["frames"].as_u64().unwrap() > 0);
    assert!(setup.node.terminate().success());
}

/// An H.265 camera with no sub-stream plays in Chromium through the node's transcode: two tiles
/// of it cost one transcode and one camera session. Needs the binary built with
/// `--features gstreamer` (CI runs it after installing GStreamer).
#[cfg(feature = "gstreamer")]
#[test]
fn an_h265_only_camera_plays_through_one_transcode_for_all_its_tiles() {
    let mut setup = ui_node();
    let r = drive(&mut setup, &["transcode"]);
    for t in r["transcode"].as_array().unwrap() {
        assert_eq!(
            (t["camera"].as_str(), t["stream"].as_str()),
            (Some("cam6"), Some("h264")),
            "{t}"
        );
        assert!(t["frames"].as_u64().unwrap() > 10, "{t}");
    }
    let m = setup.node.metrics();
    assert!(
        m.contains("sharpeye_live_upstream_sessions{camera=\"cam6\",stream=\"h264\"} 1"),
        "one transcode: {m}"
    );
    assert!(m.contains("sharpeye_live_viewers{camera=\"cam6\",stream=\"main\",output=\"transcode\"} 1"));
    assert_eq!(setup.sim.cam("cam6").active_sessions(), 1, "the camera is pulled once");
    assert!(setup.node.terminate().success());
}

/// A GB/T 28181 channel in the UI: the recordings its device holds are drawn on its timeline in
/// their own colour, and the PTZ pad of its enlarged tile steers it (the simulated device counts
/// the commands: a move on press, a stop on release).
#[test]
fn a_device_channel_shows_its_device_recordings_and_takes_ptz_from_the_pad() {
    const NVR: &str = "34020000001180000001";
    const CH: &str = "34020000001310000001";
    const PLATFORM: &str = "34020000002000000001";
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    let cameras = format!(
        "[[cameras]]\nid = \"{CH}\"\nname = \"NVR channel 1\"\nurl = \"gb28181://{NVR}/{CH}\"\nrecord = false\norg = \"test/gb\"\n"
    );
    let config = format!(
        "{}\n[gb28181]\nid = \"{PLATFORM}\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"gb-device-pw\"\nrecord_discovered = false\n",
        config_toml(addr, &dir.path().join("data"), "", &cameras)
    );
    let node = Node::start(dir.path(), &config, addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Recordings on the device: an hour that ended an hour ago (the script shows the day of its
    // middle, yesterday in the first hour and a half of a day).
    let now = now_us() / 1_000_000;
    let device = rt
        .block_on(camsim::gbdevice::GbDevice::start(camsim::gbdevice::GbDeviceSpec {
            keepalive: Duration::from_secs(5),
            recordings: vec![(now - 7200, now - 3600)],
            ..gb_device(
                NVR,
                "gb-device-pw",
                sip,
                PLATFORM,
                vec![(CH.into(), "NVR channel 1".into())],
            )
        }))
        .unwrap();
    let mut setup = Setup {
        sim: Sim::start(Vec::new()),
        dir,
        node,
    };
    assert!(wait_until(Duration::from_secs(15), || {
        setup.node.get("/api/v1/gb28181/devices").1["devices"][0]["online"] == true
    }));
    let r = drive(&mut setup, &["device", CH]);
    assert_eq!(r["device_ranges_drawn"], true, "{r}");
    assert_eq!(r["device_gap_empty"], true, "{r}");
    assert!(r["pad"].as_bool().unwrap(), "{r}");
    assert!(
        wait_until(Duration::from_secs(5), || device
            .stats
            .ptz
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2),
        "the device got {} PTZ commands",
        device.stats.ptz.load(std::sync::atomic::Ordering::Relaxed)
    );
    let (_, audit) = setup.node.get(&format!(
        "/api/v1/audit?action=ptz&start={}&end={}",
        rfc3339(now_us() - 600_000_000),
        rfc3339(now_us() + 60_000_000)
    ));
    assert!(!audit["entries"].as_array().unwrap().is_empty(), "{audit}");
    assert!(setup.node.terminate().success());
}
