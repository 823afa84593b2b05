//! Levels calling each other up, over real processes: a community node records camsim cameras,
//! a street node pulls them on demand, a district node pulls the street's copy. One pull per
//! camera per link whatever the number of viewers, released when the last one leaves; link
//! budgets with sub-stream fallback; nothing of a lower level stored above.
//!
//! Over 800 lines because the tests share one three-node chain builder; each test reads on
//! its own from top to bottom.

mod common;

use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec};
use common::levels::*;
use common::*;

/// A community → street → district chain on loopback.
struct Chain {
    sim: Sim,
    community: Node,
    street: Node,
    district: Node,
    // After the nodes: their logs are printed from their drops when a test fails.
    _dirs: Vec<tempfile::TempDir>,
}

/// Cameras: `cam0` (1080p main, 240p sub), `cam1` and `cam2` (1080p, no sub) recorded at the
/// community; the street's link to it has `community_mbps`.
fn chain(community_mbps: u32, live_idle: &str) -> Chain {
    chain_with(community_mbps, live_idle, None, "", true)
}

/// As [`chain`], with `synth` (a base time) also giving the community three minutes of `cam0`
/// recorded from that time, written before it starts, `street_link` (keys) added to the
/// street's `[[lower]]` entry, and the cameras pulled only on demand unless `record`.
fn chain_with(community_mbps: u32, live_idle: &str, synth: Option<i64>, street_link: &str, record: bool) -> Chain {
    let sim = Sim::start(vec![
        CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam0-sub", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("cam1", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam2", BuiltinFixture::H264_1080p.load()),
    ]);
    let live = format!("[live]\nidle = \"{live_idle}\"\nstart_timeout = \"8s\"\n\n[audit]\nhead_every = \"1s\"\n\n");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cams = format!(
        "{}\nsub_url = \"{}\"\n\n{}{}",
        camera_toml("cam0", &sim.url("cam0")).trim_end(),
        sim.url("cam0-sub"),
        camera_toml("cam1", &sim.url("cam1")),
        camera_toml("cam2", &sim.url("cam2")),
    )
    .replace(
        "org = \"test/e2e\"",
        if record {
            "org = \"gate\""
        } else {
            "org = \"gate\"\nrecord = false"
        },
    );
    let (ca, sa, da) = (addr(), addr(), addr());
    if let Some(base) = synth {
        synthesize(
            &dirs[0].path().join("data"),
            base,
            60,
            &[Stretch {
                camera: "cam0",
                fixture: BuiltinFixture::H264_240p,
                offset_s: 0.0,
                seconds: 180.0,
            }],
        );
    }
    let mut community = Node::start(
        dirs[0].path(),
        &level_config(
            "community",
            "community",
            ca,
            None,
            &dirs[0].path().join("data"),
            &format!("{live}{cams}"),
        ),
        ca,
    );
    let t1 = issue_upper_token(&mut community, "street");
    let mut street = Node::start(
        dirs[1].path(),
        &level_config(
            "street",
            "street",
            sa,
            None,
            &dirs[1].path().join("data"),
            &format!(
                "{live}{}\n{street_link}\n\n",
                lower_toml(
                    "community",
                    &format!("http://{ca}"),
                    &t1,
                    community_mbps,
                    "city/street/community",
                    "down"
                )
                .trim_end()
            ),
        ),
        sa,
    );
    let t2 = issue_upper_token(&mut street, "district");
    let district = Node::start(
        dirs[2].path(),
        &level_config(
            "district",
            "district",
            da,
            None,
            &dirs[2].path().join("data"),
            &format!(
                "{live}{}",
                lower_toml("street", &format!("http://{sa}"), &t2, 100, "city/street", "down")
            ),
        ),
        da,
    );
    Chain {
        sim,
        _dirs: dirs,
        community,
        street,
        district,
    }
}

/// Reads `secs` of a live.mp4 URL with a token and returns the bytes read.
fn watch(url: String, token: String, secs: f64) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let resp = agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 65536];
        let (start, mut n) = (Instant::now(), 0);
        while start.elapsed().as_secs_f64() < secs {
            match std::io::Read::read(&mut body, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    })
}

fn pulls(node: &mut Node, link_id: &str) -> u64 {
    link(node, link_id)["pulls"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn a_district_watches_a_community_camera_through_the_street_with_one_pull_per_link() {
    let mut c = chain(10, "1s");
    // Catalog federation: the district lists the community's cameras, placed and located.
    let cam0 = wait_for_camera(&mut c.district, "cam0", "online", Duration::from_secs(20));
    assert_eq!(cam0["node"], "community");
    assert_eq!(cam0["path"], serde_json::json!(["street"]));
    assert_eq!(cam0["org"], "city/street/community/gate");
    assert_eq!(cam0["recording"], false);
    assert_eq!(cam0["streams"], serde_json::json!(["main", "sub"]));
    let at_street = wait_for_camera(&mut c.street, "cam0", "online", Duration::from_secs(5));
    assert_eq!(at_street["path"], serde_json::json!([]));
    assert_eq!(at_street["node"], "community");
    assert_eq!(pulls(&mut c.district, "street"), 0);
    assert_eq!(pulls(&mut c.street, "community"), 0);

    // Five viewers at the district: one pull on each link.
    let token = c.district.token();
    let url = c.district.url("/api/v1/cameras/cam0/live.mp4");
    let viewers: Vec<_> = (0..5).map(|_| watch(url.clone(), token.clone(), 4.0)).collect();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pulls(&mut c.district, "street"), 1);
    assert_eq!(pulls(&mut c.street, "community"), 1);
    for v in viewers {
        assert!(v.join().unwrap() > 200_000, "a viewer got too little video");
    }
    // And it decodes.
    let out = c._dirs[2].path().join("relayed.mp4");
    let t = media_token(&mut c.district, "cam0", "live");
    let (errors, frames) = copy_and_decode(
        &c.district.url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}")),
        Some(3),
        &out,
    );
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 50, "{frames} frames");
    // The community recorded cam0 all along: the relay added no camera session.
    assert_eq!(c.sim.cam("cam0").sessions().len(), 1);

    // Released at every level within idle + 2 s of the last viewer.
    let left = Instant::now();
    assert!(wait_until(Duration::from_secs(4), || pulls(&mut c.district, "street")
        == 0
        && pulls(&mut c.street, "community") == 0));
    assert!(
        left.elapsed() < Duration::from_secs(3) + Duration::from_millis(500),
        "{:?}",
        left.elapsed()
    );
    // Nothing of the community's video is stored above it.
    for (node, dir) in [("street", 1), ("district", 2)] {
        let segs = c._dirs[dir].path().join("data/segments");
        let n = std::fs::read_dir(&segs).map(|d| d.count()).unwrap_or(0);
        assert_eq!(n, 0, "{node} has segment directories: {segs:?}");
    }
    assert!(c.street.log_text().contains("cameras of lower node community adopted"));
    drop(c.community);
}

/// Opens a live.mp4 stream and returns its status, the stream it serves and the error code
/// (reading no further than the head, or the error body).
fn open_live(node: &Node, token: &str, camera: &str) -> (u16, String, String) {
    let mut resp = agent()
        .get(&node.url(&format!("/api/v1/cameras/{camera}/live.mp4")))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    let stream = resp
        .headers()
        .get("x-sharpeye-stream")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = if status == 200 {
        String::new()
    } else {
        resp.body_mut().read_to_string().unwrap_or_default()
    };
    (status, stream, body)
}

#[test]
fn a_thin_link_falls_back_to_the_sub_stream_then_refuses_with_the_reason() {
    // 6 Mbit/s: one 4 Mbit/s main stream fits, a second main falls back to the 0.5 Mbit/s
    // sub-stream, and a camera without one fits nowhere.
    let mut c = chain(6, "1s");
    wait_for_camera(&mut c.street, "cam2", "online", Duration::from_secs(20));
    // The community lists what its recorded cameras send, as measured where it arrives: the
    // street admits by that, not by a guess.
    let t = Instant::now();
    let cam1 = loop {
        let cam1 = cameras(&mut c.community)
            .into_iter()
            .find(|v| v["id"] == "cam1")
            .unwrap();
        if cam1["kbps"]["main"].is_u64() || t.elapsed() > Duration::from_secs(10) {
            break cam1;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let main = cam1["kbps"]["main"].as_u64().unwrap_or(0);
    assert!((2_000..8_000).contains(&main), "{cam1}");
    assert!(cam1["kbps"]["sub"].is_null(), "cam1 has no sub-stream: {cam1}");
    let token = c.street.token();
    let first = watch(c.street.url("/api/v1/cameras/cam1/live.mp4"), token.clone(), 6.0);
    std::thread::sleep(Duration::from_millis(1500));
    let fallback = watch(c.street.url("/api/v1/cameras/cam0/live.mp4"), token.clone(), 4.0);
    std::thread::sleep(Duration::from_millis(1500));
    // Another viewer of cam0 shares the sub-stream already crossing.
    assert_eq!(open_live(&c.street, &token, "cam0").1, "sub");
    let l = link(&mut c.street, "community");
    assert_eq!(l["pulls"], 2, "{l}");
    // A district viewer of cam0's main stream shares that sub-stream too, and is told so.
    let dt = c.district.token();
    assert_eq!(open_live(&c.district, &dt, "cam0").1, "sub");
    assert_eq!(link(&mut c.street, "community")["pulls"], 2);
    let (status, _, body) = open_live(&c.street, &token, "cam2");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("link_budget"), "{body}");
    assert!(
        body.contains("link community (6.0 Mbit/s)") && body.contains("cam1/main") && body.contains("cam0/sub"),
        "{body}"
    );
    assert!(body.contains("no sub-stream"), "{body}");
    let l = link(&mut c.street, "community");
    assert_eq!(l["refusals"], 1, "{l}");
    assert!(l["in_use_mbps"].as_f64().unwrap() <= 6.0, "{l}");
    assert!(first.join().unwrap() > 100_000);
    assert!(fallback.join().unwrap() > 10_000);
}

#[test]
fn live_pulls_that_outgrow_the_budget_are_shed_newest_first_and_their_viewers_told() {
    // The street expects 1 Mbit/s main streams and the community, pulling its cameras only on
    // demand, has never measured them: three are admitted on a 10 Mbit/s link, and the cameras
    // send ~4 Mbit/s each. Within the grace the newest is shed, its viewer's stream ends, the
    // link is back within its budget, and asking again uses what was measured.
    let mut c = chain_with(10, "1s", None, "main_mbps = 1", false);
    wait_for_camera(&mut c.street, "cam2", "idle", Duration::from_secs(20));
    let token = c.street.token();
    let viewers: Vec<_> = ["cam1", "cam2", "cam0"]
        .iter()
        .map(|cam| {
            let v = watch(
                c.street.url(&format!("/api/v1/cameras/{cam}/live.mp4")),
                token.clone(),
                14.0,
            );
            std::thread::sleep(Duration::from_millis(300));
            v
        })
        .collect();
    let t = Instant::now();
    let shed = loop {
        let l = link(&mut c.street, "community");
        if l["shed"].as_u64().unwrap_or(0) > 0 {
            break l;
        }
        assert!(t.elapsed() < Duration::from_secs(12), "nothing was shed: {l}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(shed["in_use_mbps"].as_f64().unwrap() <= 10.0, "{shed}");
    assert!(
        c.street
            .metrics()
            .contains("sharpeye_link_shed_total{link=\"community\"} 1")
    );
    let read: Vec<usize> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    // cam0 was admitted last: its viewer was cut off (once measured, 4 s, and the 3 s grace),
    // the others read on for the whole 14 s.
    let rate = |n: usize| n as f64 * 8.0 / 14.0 / 1e6;
    assert!(rate(read[0]) > 2.5 && rate(read[1]) > 2.5, "{read:?}");
    assert!(
        read[2] * 10 < read[0].min(read[1]) * 7,
        "cam0's viewer was not cut off: {read:?}"
    );
    // Asked again, cam0 is admitted at its measured rate: only its sub-stream fits.
    let again = open_live(&c.street, &token, "cam0");
    assert_eq!((again.0, again.1.as_str()), (200, "sub"), "{}", again.2);
}

/// Every audit entry of `node` with `action`.
fn audited(node: &mut Node, action: &str) -> Vec<serde_json::Value> {
    let (s, b) = node.get(&format!("/api/v1/audit?action={action}&limit=1000"));
    assert_eq!(s, 200, "{b}");
    b["entries"]
        .as_array()
        .or_else(|| b.as_array())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn recorded_video_of_a_community_camera_plays_exports_and_holds_at_the_district() {
    assert!(have_ffmpeg());
    // Whole seconds, two hours ago: the range is settled, so it may be cached above.
    let base = (now_us() / 1_000_000 - 7200) * 1_000_000;
    let mut c = chain_with(10, "1s", Some(base), "", true);
    wait_for_camera(&mut c.district, "cam0", "online", Duration::from_secs(20));
    let tmp = tempfile::tempdir().unwrap();
    let (from, to) = (at(base, 30.0), at(base, 150.0));
    let query = format!("start={from}&end={to}");

    // The listing of what is recorded comes from below.
    let (s, rec) = c.district.get(&format!("/api/v1/cameras/cam0/recordings?{query}"));
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["ranges"].as_array().unwrap().len(), 1, "{rec}");

    // Two minutes, exactly, with the community's first frame.
    let path = format!("/api/v1/cameras/cam0/playback.mp4?{query}");
    let token = c.district.token();
    let (s, h, body) = fetch(&c.district.url(&path), &token, &[]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert!(header(&h, "x-sharpeye-first-frame").is_some());
    let up = tmp.path().join("district.mp4");
    std::fs::write(&up, &body).unwrap();
    assert!((duration(&up) - 120.0).abs() <= 0.04, "{}", duration(&up));
    let ct = c.community.token();
    let (_, _, direct) = fetch(&c.community.url(&path), &ct, &[]);
    let down = tmp.path().join("community.mp4");
    std::fs::write(&down, &direct).unwrap();
    assert_eq!(body, direct, "the district serves the community's bytes");
    assert_eq!(
        first_frame(up.to_str().unwrap(), None),
        first_frame(down.to_str().unwrap(), None)
    );

    // A second viewer, and a Range request: served from the district's cache.
    let (s, _, again) = fetch(&c.district.url(&path), &token, &[]);
    assert_eq!((s, again.len()), (200, body.len()));
    let (s, h, part) = fetch(&c.district.url(&path), &token, &[("Range", "bytes=1000-1999")]);
    assert_eq!(s, 206);
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes 1000-1999/{}", body.len()).as_str())
    );
    assert_eq!(part, body[1000..2000]);
    let (_, health) = c.district.get("/api/v1/health");
    assert!(health["cache"]["hits"].as_u64().unwrap() >= 2, "{}", health["cache"]);
    assert!(health["cache"]["bytes"].as_u64().unwrap() >= body.len() as u64);
    // The community saw one playback of it, made for the district's admin through the street.
    let plays: Vec<_> = audited(&mut c.community, "playback")
        .into_iter()
        .filter(|e| e["on_behalf_of"] == "admin@district")
        .collect();
    assert_eq!(plays.len(), 1, "{plays:#?}");
    assert!(plays[0]["actor"].as_str().unwrap().contains("street"), "{}", plays[0]);

    // HLS through two levels: the playlist's segments are fetched through the district.
    let (s, _, m3u8) = fetch(
        &c.district.url(&format!("/api/v1/cameras/cam0/playback.m3u8?{query}")),
        &token,
        &[],
    );
    assert_eq!(s, 200);
    let m3u8 = String::from_utf8(m3u8).unwrap();
    assert!(m3u8.contains("#EXT-X-MAP") && m3u8.contains("token="), "{m3u8}");
    let playlist = tmp.path().join("p.m3u8");
    let abs = m3u8.replace("segments/", &c.district.url("/api/v1/cameras/cam0/segments/"));
    std::fs::write(&playlist, abs).unwrap();
    let (errors, frames) = decode_args(&["-protocol_whitelist", "file,http,tcp", "-i", playlist.to_str().unwrap()]);
    assert!(errors.is_empty(), "{errors}");
    assert!(
        frames >= 120 * 25,
        "{frames} frames\nstreet:\n{}\ndistrict:\n{}",
        c.street.log_text(),
        c.district.log_text()
    );

    // An export made at the district is built and signed by the community.
    let (s, job) = post_json(
        &c.district.url("/api/v1/exports"),
        &serde_json::json!({"camera": "cam0", "start": from, "end": to, "reason": "case 2026-17"}),
        Some(&token),
    );
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.ends_with("@cam0"), "{id}");
    let mut done = serde_json::Value::Null;
    assert!(wait_until(Duration::from_secs(30), || {
        done = c.district.get(&format!("/api/v1/exports/{id}")).1;
        done["status"] == "done" || done["status"] == "failed"
    }));
    assert_eq!(done["status"], "done", "{done}");
    let (s, _, zip) = fetch(&c.district.url(&format!("/api/v1/exports/{id}/download")), &token, &[]);
    assert_eq!(s, 200);
    let pkg = tmp.path().join("package.zip");
    std::fs::write(&pkg, &zip).unwrap();
    let signer = |path: &std::path::Path| {
        let out = std::process::Command::new(bin())
            .arg("verify-export")
            .arg(path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        text.split("signed by node key ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_owned()
    };
    // The same range exported at the community itself: the same signer.
    let (s, own) = post_json(
        &c.community.url("/api/v1/exports"),
        &serde_json::json!({"camera": "cam0", "start": from, "end": to, "reason": "reference"}),
        Some(&ct),
    );
    assert_eq!(s, 202, "{own}");
    let own_id = own["id"].as_str().unwrap().to_owned();
    assert!(wait_until(Duration::from_secs(30), || c
        .community
        .get(&format!("/api/v1/exports/{own_id}"))
        .1["status"]
        == "done"));
    let (_, _, own_zip) = fetch(
        &c.community.url(&format!("/api/v1/exports/{own_id}/download")),
        &ct,
        &[],
    );
    let own_pkg = tmp.path().join("own.zip");
    std::fs::write(&own_pkg, &own_zip).unwrap();
    assert_eq!(signer(&pkg), signer(&own_pkg));

    // A hold placed at the district lands on the community, and is released from there too.
    let (s, hold) = post_json(
        &c.district.url("/api/v1/holds"),
        &serde_json::json!({"camera": "cam0", "start": from, "end": to, "reason": "case 2026-17"}),
        Some(&token),
    );
    assert_eq!(s, 201, "{hold}");
    let (_, held) = c.community.get("/api/v1/holds");
    assert_eq!(held.as_array().unwrap().len(), 1, "{held}");
    let hid = hold["id"].as_str().unwrap();
    let (s, b) = {
        let mut r = agent()
            .delete(&c.district.url(&format!("/api/v1/holds/{hid}")))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
    };
    assert_eq!(s, 200, "{b}");
    let (_, held) = c.community.get("/api/v1/holds");
    assert!(held.as_array().unwrap().is_empty(), "{held}");
    // Nothing recorded above the community.
    for dir in [1, 2] {
        assert!(!c._dirs[dir].path().join("data/segments/cam0").exists());
    }
}

#[test]
fn both_levels_audit_the_district_user_and_the_street_holds_the_community_s_signed_heads() {
    let base = (now_us() / 1_000_000 - 7200) * 1_000_000;
    let mut c = chain_with(10, "1s", Some(base), "", true);
    wait_for_camera(&mut c.district, "cam0", "online", Duration::from_secs(20));
    let token = c.district.token();
    let path = format!(
        "/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
        at(base, 10.0),
        at(base, 20.0)
    );
    assert_eq!(fetch(&c.district.url(&path), &token, &[]).0, 200);
    // The district audits its user; the community audits the street's token acting for them.
    let here = audited(&mut c.district, "playback");
    assert!(
        here.iter().any(|e| e["actor"] == "admin" && e["camera"] == "cam0"),
        "{here:#?}"
    );
    let below = audited(&mut c.community, "playback");
    assert!(
        below
            .iter()
            .any(|e| e["on_behalf_of"] == "admin@district" && e["camera"] == "cam0"),
        "{below:#?}"
    );

    // More entries at the community, then wait until the street holds a head covering them.
    for _ in 0..15 {
        let _ = login(&c.community.url(""), "admin");
    }
    let community_data = c._dirs[0].path().join("data");
    let copy = c._dirs[1].path().join("data/links/heads/community.jsonl");
    let last_seq = || {
        std::fs::read_to_string(community_data.join("audit/heads.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|h| h["seq"].as_u64())
            .max()
            .unwrap_or(0)
    };
    let held = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|h| h["seq"].as_u64())
            .max()
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(2));
    let target = last_seq();
    assert!(target > 15, "the community signed no head yet");
    assert!(
        wait_until(Duration::from_secs(15), || held(&copy) >= target),
        "the street holds heads up to {} of the community's {target}",
        held(&copy)
    );
    // The district holds them too, through the street.
    let district_copy = c._dirs[2].path().join("data/links/heads/community.jsonl");
    assert!(
        wait_until(Duration::from_secs(15), || held(&district_copy) >= target),
        "the district holds the community's heads up to {} of {target}; the street answers {}\n{}",
        held(&district_copy),
        c.street
            .get("/api/v1/audit/heads")
            .1
            .to_string()
            .chars()
            .take(3000)
            .collect::<String>(),
        c.district.log_text()
    );

    // Cut the community's last 10 entries, and its own heads with them.
    c.community.kill();
    let audit_dir = community_data.join("audit");
    let file = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("audit-"))
        .max()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines.len() - 10;
    std::fs::write(&file, lines[..kept].join("\n") + "\n").unwrap();
    std::fs::remove_file(audit_dir.join("heads.jsonl")).unwrap();
    let verify = |extra: &[&std::path::Path]| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["audit", "verify", "--data"]).arg(&community_data);
        for p in extra {
            cmd.arg("--heads").arg(p);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The chain alone still verifies: that is the gap the heads close.
    assert!(verify(&[]).0, "{}", verify(&[]).1);
    let (ok, text) = verify(&[&copy]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("are missing") && text.contains(&format!("ends at entry {kept}")),
        "{text}"
    );
}

#[test]
fn a_community_behind_nat_dials_up_and_the_street_watches_and_plays_back_over_it() {
    assert!(have_ffmpeg());
    let base = (now_us() / 1_000_000 - 7200) * 1_000_000;
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load())]);
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let data = dirs[0].path().join("data");
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
    let (ca, sa) = (addr(), addr());
    let live = "[live]\nidle = \"1s\"\nstart_timeout = \"8s\"\n\n";
    let cams = camera_toml("cam0", &sim.url("cam0"));
    let community_config = |upper: &str| {
        level_config(
            "community",
            "community",
            ca,
            None,
            &data,
            &format!("{live}{upper}{cams}"),
        )
    };
    // First without the upper, to issue the token the link will use both ways.
    let mut community = Node::start(dirs[0].path(), &community_config(""), ca);
    let t = issue_upper_token(&mut community, "street");
    community.terminate();
    let upper = format!("[[upper]]\nid = \"street\"\nurl = \"http://{sa}\"\ntoken = \"{t}\"\n\n");
    // The street has no address for the community: only the community can connect.
    let mut street = Node::start(
        dirs[1].path(),
        &level_config(
            "street",
            "street",
            sa,
            None,
            &dirs[1].path().join("data"),
            &format!(
                "{live}[[lower]]\nid = \"community\"\ntoken = \"{t}\"\nlink_mbps = 10\norg = \"city/street/community\"\ndial = \"up\"\n\n"
            ),
        ),
        sa,
    );
    assert_eq!(link(&mut street, "community")["state"], "down");
    let community = Node::start(dirs[0].path(), &community_config(&upper), ca);
    wait_for_camera(&mut street, "cam0", "online", Duration::from_secs(20));
    assert_eq!(link(&mut street, "community")["dial"], "up");
    assert!(community.log_text().contains("dialed up to upper node street"));

    // Live over the tunnel.
    let st = media_token(&mut street, "cam0", "live");
    let out = dirs[1].path().join("live.mp4");
    let (errors, frames) = copy_and_decode(
        &street.url(&format!("/api/v1/cameras/cam0/live.mp4?token={st}")),
        Some(3),
        &out,
    );
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 50, "{frames}");
    // Playback over the tunnel, exact.
    let token = street.token();
    let path = format!(
        "/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
        at(base, 10.0),
        at(base, 40.0)
    );
    let (s, _, body) = fetch(&street.url(&path), &token, &[]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let file = dirs[1].path().join("play.mp4");
    std::fs::write(&file, &body).unwrap();
    assert!((duration(&file) - 30.0).abs() <= 0.04, "{}", duration(&file));

    // A wrong token is refused, and the link comes back after the community restarts.
    let (s, b) = get_json(
        &street.url("/api/v1/links/community/tunnel"),
        Some("sk_wrong_token_for_the_link"),
    );
    assert_eq!(s, 401, "{b}");
    community.kill();
    wait_for_camera(&mut street, "cam0", "offline", Duration::from_secs(15));
    let _community = Node::start(dirs[0].path(), &community_config(&upper), ca);
    wait_for_camera(&mut street, "cam0", "online", Duration::from_secs(15));
    drop(sim);
}

#[test]
fn a_street_killed_mid_stream_takes_its_cameras_offline_and_back_and_leaves_nothing_running() {
    let Chain {
        sim: _sim,
        _dirs: dirs,
        community: _community,
        street,
        mut district,
    } = chain(10, "1s");
    wait_for_camera(&mut district, "cam0", "online", Duration::from_secs(20));
    let token = district.token();
    let events = listen(&district.url(""), &token, 17);
    // A viewer at the district through it all, reconnecting as players do when a stream ends
    // (a new run needs a new init segment): (seconds since start, bytes so far).
    let viewer = {
        let (url, token) = (district.url("/api/v1/cameras/cam0/live.mp4"), token.clone());
        std::thread::spawn(move || {
            let (start, mut n, mut marks) = (Instant::now(), 0usize, Vec::<(f64, usize)>::new());
            let mut buf = vec![0u8; 65536];
            while start.elapsed() < Duration::from_secs(16) {
                let resp = agent()
                    .get(&url)
                    .header("Authorization", &format!("Bearer {token}"))
                    .config()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .call();
                let Ok(resp) = resp
                    .map_err(|_| ())
                    .and_then(|r| if r.status() == 200 { Ok(r) } else { Err(()) })
                else {
                    std::thread::sleep(Duration::from_millis(300));
                    continue;
                };
                let mut body = resp.into_body().into_reader();
                while start.elapsed() < Duration::from_secs(16) {
                    match std::io::Read::read(&mut body, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    marks.push((start.elapsed().as_secs_f64(), n));
                }
            }
            marks
        })
    };
    let watch_start = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let street_config = std::fs::read_to_string(dirs[1].path().join("sharpeye.toml")).unwrap();
    let street_addr = street.addr;
    let killed = now_us();
    let killed_at = watch_start.elapsed().as_secs_f64();
    street.kill();
    std::thread::sleep(Duration::from_secs(6));
    let restarted = now_us();
    let restarted_at = watch_start.elapsed().as_secs_f64();
    let mut street = Node::start(dirs[1].path(), &street_config, street_addr);
    let back = wait_for_camera(&mut district, "cam0", "online", Duration::from_secs(10));
    let back_us = now_us();
    assert!(
        back_us - restarted < 5_000_000,
        "back {} ms after the restart",
        (back_us - restarted) / 1000
    );
    assert_eq!(back["status"], "online");
    let marks = viewer.join().unwrap();
    let got = events.join().unwrap();
    // Offline within 10 s of the kill, with the reason; online again after the restart.
    let offline = got
        .iter()
        .find(|(k, d)| k == "camera.offline" && d["camera"] == "cam0")
        .unwrap_or_else(|| panic!("no offline event: {got:#?}"));
    let at = parse_time(offline.1["at"].as_str().unwrap());
    assert!(
        at - killed < 10_000_000,
        "offline {} ms after the kill",
        (at - killed) / 1000
    );
    assert!(
        offline.1["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("lower node street unreachable since")),
        "{}",
        offline.1
    );
    assert!(
        got.iter().any(|(k, d)| k == "camera.online"
            && d["camera"] == "cam0"
            && parse_time(d["at"].as_str().unwrap()) > restarted),
        "{got:#?}"
    );
    // The viewer's stall ended: video flowed again within the reconnect window of the restart.
    let bytes_at = |t: f64| marks.iter().take_while(|(s, _)| *s <= t).last().map_or(0, |m| m.1);
    let before = bytes_at(killed_at);
    assert!(before > 500_000, "{before} bytes before the kill");
    let resumed = marks
        .iter()
        .find(|(t, n)| *t > restarted_at && *n > bytes_at(restarted_at) + 200_000)
        .map(|m| m.0);
    assert!(
        resumed.is_some_and(|t| t - restarted_at < 8.0),
        "video did not resume within 8 s of the restart: {resumed:?} (restart at {restarted_at:.1} s, last mark {:?})",
        marks.last()
    );
    // Nothing left running at any level once the viewer has gone.
    assert!(wait_until(
        Duration::from_secs(5),
        || link(&mut district, "street")["pulls"] == 0 && link(&mut street, "community")["pulls"] == 0
    ));
}
