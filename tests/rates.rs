//! Online, intact and networked rates through a real `sharpeye` process and camsim: a camera
//! that goes dark, one that freezes (repeats a frame), one that goes black (a black clip made
//! by ffmpeg) and one at half frame rate are each counted with their cause, per org, in the
//! instant and the time-weighted rates, as events, and in CSV; today's totals survive a
//! restart.

mod common;

use std::time::Duration;

use camsim::{BuiltinFixture, CameraSpec, Fixture};
use common::*;
use serde_json::Value;

/// A 320×240 black H.264 clip from ffmpeg, as a camsim fixture.
fn black_fixture(dir: &std::path::Path) -> Option<std::sync::Arc<Fixture>> {
    clip(dir, "black", "color=black:s=320x240:r=25", "null")
}

/// A 4 s 320×240 H.264 clip of the lavfi `source` through the video `filter`, made by ffmpeg
/// (key frames every second, headers with each), as a camsim fixture.
fn clip(dir: &std::path::Path, name: &str, source: &str, filter: &str) -> Option<std::sync::Arc<Fixture>> {
    let out = dir.join(format!("{name}.264"));
    let ok = std::process::Command::new("ffmpeg")
        .args([
            "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", "4", "-vf", filter,
        ])
        .args([
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "aud=1:repeat-headers=1",
            "-f",
            "h264",
        ])
        .arg(&out)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let bytes = std::fs::read(&out).ok()?;
    Fixture::from_annexb(name, media::VideoCodec::H264, &bytes, 3600)
        .ok()
        .map(std::sync::Arc::new)
}

fn rates(node: &mut Node, q: &str) -> Value {
    let (s, v) = node.get(&format!("/api/v1/rates?{q}"));
    assert_eq!(s, 200, "{q}: {v}");
    v
}

#[test]
fn dark_frozen_black_and_half_rate_cameras_are_counted_with_their_causes_per_org() {
    if !have_ffmpeg() {
        eprintln!("skipped: ffmpeg is not installed (scripts/test.sh installs it)");
        return;
    }
    let ids = ["ok", "frozen", "dark", "black", "half", "serviced"];
    let sim = Sim::start(
        ids.iter()
            .map(|c| CameraSpec::new(*c, BuiltinFixture::H264_240p.load()))
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let black = black_fixture(dir.path()).expect("ffmpeg makes a black clip with libx264");
    let addr = free_addr();
    let mut cams = String::new();
    for id in ids {
        let org = if id == "ok" || id == "frozen" {
            "city/east"
        } else {
            "city/west"
        };
        cams += &camera_toml(id, &sim.url(id)).replace("test/e2e", org);
    }
    let config = config_toml(addr, &dir.path().join("data"), "", &cams);
    let mut node = Node::start(dir.path(), &config, addr);
    // Every camera online and intact once its usual picture is learned.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let v = rates(&mut node, "");
            v["instant"]["online_rate"] == 1.0 && v["instant"]["intact_rate"] == 1.0 && v["cameras"] == 6
        }),
        "{}",
        rates(&mut node, "")
    );
    std::thread::sleep(Duration::from_secs(9));
    let events = listen(&node.url(""), &node.token(), 25);
    // "serviced" goes dark inside a maintenance window: its downtime is not counted.
    let t = now_us();
    for (body, says) in [
        (
            serde_json::json!({ "cameras": ["serviced"], "start": rfc3339(now_us()), "end": rfc3339(now_us() + 3_600_000_000) }),
            "reason",
        ),
        (
            serde_json::json!({ "start": rfc3339(now_us()), "end": rfc3339(now_us() + 1_000_000), "reason": "x" }),
            "cameras or org",
        ),
        (
            serde_json::json!({ "org": "city", "start": rfc3339(t), "end": rfc3339(t - 1_000_000), "reason": "x" }),
            "end",
        ),
        (
            serde_json::json!({ "org": "city", "start": "soon", "end": rfc3339(now_us()), "reason": "x" }),
            "start",
        ),
        (
            serde_json::json!({ "org": "city", "start": rfc3339(now_us()), "end": rfc3339(now_us() + 1), "reason": "x", "why": 1 }),
            "why",
        ),
    ] {
        let (s, v) = node.post("/api/v1/maintenance", &body);
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let (s, window) = node.post(
        "/api/v1/maintenance",
        &serde_json::json!({ "cameras": ["serviced"], "start": rfc3339(now_us()), "end": rfc3339(now_us() + 3_600_000_000), "reason": "pole replaced" }),
    );
    assert_eq!(s, 201, "{window}");
    sim.cam("serviced").go_dark();
    sim.cam("serviced").drop_connections();
    sim.cam("frozen").freeze(true);
    sim.cam("dark").go_dark();
    sim.cam("dark").drop_connections();
    sim.cam("black").switch_fixture(black);
    sim.cam("half").half_frame_rate(true);
    // Now: 4 of 5 online (dark is not), 1 of 5 intact; per org as well.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let v = rates(&mut node, "");
            v["instant"]["online_rate"].as_f64() == Some(0.8) && v["instant"]["intact_rate"].as_f64() == Some(0.2)
        }),
        "{}",
        rates(&mut node, "")
    );
    let east = rates(&mut node, "org=city/east");
    assert_eq!(
        (
            east["cameras"].as_u64(),
            east["instant"]["online_rate"].as_f64(),
            east["instant"]["intact_rate"].as_f64()
        ),
        (Some(2), Some(1.0), Some(0.5)),
        "{east}"
    );
    let west = rates(&mut node, "org=city/west");
    assert_eq!(west["cameras"], 4);
    assert_eq!(west["instant"]["in_maintenance"], 1, "{west}");
    assert!(
        (west["instant"]["online_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{west}"
    );
    assert_eq!(west["instant"]["intact_rate"].as_f64(), Some(0.0), "{west}");
    // Each fault of the video is announced with its cause (going dark is camera.offline).
    let got = events.join().unwrap();
    for (camera, cause) in [("frozen", "frozen"), ("black", "black"), ("half", "low_frame_rate")] {
        assert!(
            got.iter()
                .any(|(k, d)| k == "camera.not_intact" && d["camera"] == camera && d["cause"] == cause),
            "{camera}: {got:?}"
        );
    }
    assert!(
        got.iter().any(|(k, d)| k == "camera.offline" && d["camera"] == "dark"),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|(k, d)| k == "camera.not_intact" && d["camera"] == "ok"),
        "{got:?}"
    );
    // Time-weighted: today's totals carry seconds of each cause, in their org.
    std::thread::sleep(Duration::from_secs(4));
    let west = rates(&mut node, "org=city/west&interval=day");
    let causes = &west["total"]["causes"];
    for cause in ["black", "low_frame_rate", "offline"] {
        assert!(causes[cause].as_f64().unwrap_or(0.0) >= 3.0, "west {cause}: {west}");
    }
    assert!(causes.get("frozen").is_none(), "{west}");
    let east = rates(&mut node, "org=city/east");
    assert!(
        east["total"]["causes"]["frozen"].as_f64().unwrap_or(0.0) >= 3.0,
        "{east}"
    );
    let total = east["total"]["online_rate"].as_f64().unwrap();
    assert!((0.99..=1.0).contains(&total), "east was online all along: {east}");
    assert!(east["total"]["intact_rate"].as_f64().unwrap() < 1.0);
    // The serviced camera's window is counted apart, not as downtime.
    let serviced = rates(&mut node, "camera=serviced");
    assert!(
        serviced["total"]["maintenance_seconds"].as_f64().unwrap() >= 10.0,
        "{serviced}"
    );
    assert!(serviced["total"]["causes"].get("offline").is_none(), "{serviced}");
    assert_eq!(serviced["total"]["online_rate"].as_f64(), Some(1.0), "{serviced}");
    let (_, windows) = node.get("/api/v1/maintenance");
    assert_eq!(windows[0]["reason"], "pole replaced");
    // CSV for the monthly report.
    let token = node.token();
    let (s, headers, csv) = fetch(&node.url("/api/v1/rates?org=city/west&format=csv"), &token, &[]);
    assert_eq!(s, 200);
    assert!(header(&headers, "content-type").unwrap().starts_with("text/csv"));
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "day,org,cameras,online_rate,intact_rate,networked_rate,recording_rate,camera_seconds"
    );
    assert!(lines.last().unwrap().starts_with("total,city/west,4,"), "{csv}");
    // Malformed queries are refused by name.
    for (q, says) in [
        ("from=yesterday", "from"),
        ("interval=hour", "interval"),
        ("format=xml", "format"),
        ("key=2", "key"),
        ("from=2026-01-01&to=2025-01-01", "from..to"),
        ("from=2020-01-01&to=2026-01-01", "from..to"),
    ] {
        let (s, v) = node.get(&format!("/api/v1/rates?{q}"));
        assert_eq!(s, 400, "{q}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{q}: {v}");
    }
    // Today's totals survive a restart.
    let before = rates(&mut node, "")["total"]["camera_seconds"].as_f64().unwrap();
    assert!(node.terminate().success());
    let mut node = Node::start(dir.path(), &config, addr);
    let after = rates(&mut node, "")["total"]["camera_seconds"].as_f64().unwrap();
    assert!(after >= before - 1.0 && before > 60.0, "{before} then {after}");
}

/// A community → street → district chain: the community judges its cameras' video, and the
/// district counts a frozen community camera as online but not intact, with its cause, in its
/// instant rates, listing and events, and as intact again once it moves; the street's verdicts
/// are the community's, passed on.
#[test]
fn a_lower_node_s_verdicts_on_its_cameras_roll_up_through_every_level() {
    use common::levels::*;
    let sim = Sim::start(
        ["fine", "stuck"]
            .iter()
            .map(|c| CameraSpec::new(*c, BuiltinFixture::H264_240p.load()))
            .collect(),
    );
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cams = camera_toml("fine", &sim.url("fine")) + &camera_toml("stuck", &sim.url("stuck"));
    let mut community = level_node(dirs[0].path(), "community", &cams);
    let below = lower_of(&mut community, "community", "street", "city/street/community");
    let mut street = level_node(dirs[1].path(), "street", &below);
    let below = lower_of(&mut street, "street", "district", "city/street");
    let mut district = level_node(dirs[2].path(), "district", &below);
    let listed = |node: &mut Node, id: &str| -> Value {
        cameras(node).into_iter().find(|c| c["id"] == id).unwrap_or(Value::Null)
    };
    for id in ["fine", "stuck"] {
        wait_for_camera(&mut district, id, "online", Duration::from_secs(30));
    }
    // Both intact everywhere once the community has learned their usual picture.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let v = rates(&mut district, "");
            v["instant"]["intact_rate"] == 1.0 && v["cameras"] == 2
        }),
        "{}",
        rates(&mut district, "")
    );
    assert_eq!(listed(&mut community, "stuck")["intact"], true);
    std::thread::sleep(Duration::from_secs(9));
    let events = listen(&district.url(""), &district.token(), 20);
    sim.cam("stuck").freeze(true);
    assert!(
        wait_until(Duration::from_secs(20), || {
            rates(&mut district, "camera=stuck")["instant"]["intact_rate"] == 0.0
        }),
        "{}",
        rates(&mut district, "camera=stuck")
    );
    for node in [&mut community, &mut street, &mut district] {
        let c = listed(node, "stuck");
        assert_eq!(
            (&c["status"], &c["intact"], &c["intact_cause"]),
            (&"online".into(), &false.into(), &"frozen".into()),
            "{c}"
        );
        assert_eq!(listed(node, "fine")["intact"], true);
    }
    let v = rates(&mut district, "");
    assert_eq!(v["instant"]["online_rate"], 1.0, "{v}");
    assert_eq!(v["instant"]["intact_rate"], 0.5, "{v}");
    assert_eq!(v["instant"]["not_intact"]["stuck"], "frozen", "{v}");
    // Per org at the district, in its own tree.
    let org = listed(&mut district, "stuck")["org"].as_str().unwrap().to_owned();
    assert!(org.starts_with("city/street"), "{org}");
    let v = rates(&mut district, &format!("org={org}"));
    assert_eq!(v["instant"]["intact_rate"], 0.5, "{v}");
    // It moves again: intact again at the top.
    sim.cam("stuck").freeze(false);
    assert!(
        wait_until(Duration::from_secs(20), || {
            rates(&mut district, "")["instant"]["intact_rate"] == 1.0
        }),
        "{}",
        rates(&mut district, "")
    );
    let got = events.join().unwrap();
    let at = |kind: &str| {
        got.iter()
            .position(|(k, d)| k == kind && d["camera"] == "stuck")
            .unwrap_or_else(|| panic!("no {kind} for stuck at the district: {got:?}"))
    };
    let (down, up) = (at("camera.not_intact"), at("camera.intact"));
    assert!(down < up, "{got:?}");
    assert_eq!(got[down].1["cause"], "frozen");
    // The time it was frozen is counted against it at the district too.
    let day = rates(&mut district, "camera=stuck&interval=day");
    assert!(day["total"]["causes"]["frozen"].as_f64().unwrap_or(0.0) >= 1.0, "{day}");
}

/// With the `gstreamer` feature, pictures are measured too: cameras whose video was dark,
/// overexposed, foggy or out of focus from the start (their streams look sound, so their
/// stream judge learns them as usual) are counted not intact with the field's causes, and a
/// sharp, well-exposed one is not.
#[cfg(feature = "gstreamer")]
#[test]
fn decoded_pictures_tell_dark_overexposed_flat_and_blurred_cameras_from_a_good_one() {
    assert!(have_ffmpeg(), "scripts/test.sh installs ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let src = "testsrc2=s=320x240:r=25";
    let cameras = [
        ("good", "null", None),
        ("dim", "eq=brightness=-0.6", Some("black")),
        ("glare", "eq=brightness=0.7", Some("overexposed")),
        ("fog", "eq=contrast=0.12", Some("low_contrast")),
        ("soft", "gblur=sigma=5", Some("blurred")),
    ];
    let sim = Sim::start(
        cameras
            .iter()
            .map(|(id, filter, _)| {
                let f = clip(dir.path(), id, src, filter).expect("ffmpeg makes the clip with libx264");
                CameraSpec::new(*id, f)
            })
            .collect(),
    );
    let addr = free_addr();
    let cams: String = cameras.iter().map(|(id, _, _)| camera_toml(id, &sim.url(id))).collect();
    let config = config_toml(addr, &dir.path().join("data"), "", &cams)
        .replace("[ingest]", "[rates]\npicture_every = \"5s\"\n\n[ingest]");
    assert!(config.contains("picture_every"), "{config}");
    let mut node = Node::start(dir.path(), &config, addr);
    let want: serde_json::Map<String, Value> = cameras
        .iter()
        .filter_map(|(id, _, cause)| cause.map(|c| (id.to_string(), Value::from(c))))
        .collect();
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(40), || {
        last = rates(&mut node, "");
        last["instant"]["online_rate"] == 1.0 && last["instant"]["not_intact"] == Value::Object(want.clone())
    });
    assert!(ok, "{last}\n{}", node.log_text());
    assert_eq!(last["instant"]["intact_rate"].as_f64(), Some(0.2), "{last}");
    let (_, listed) = node.get("/api/v1/cameras");
    for c in listed.as_array().unwrap() {
        let cause = cameras.iter().find(|k| c["id"] == k.0).unwrap().2;
        assert_eq!(c["intact"], cause.is_none(), "{c}");
        assert_eq!(c["intact_cause"].as_str(), cause, "{c}");
    }
}
