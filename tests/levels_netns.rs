//! Three levels on three hosts: community, street and district nodes each in a network namespace
//! this test makes, joined by veth pairs shaped with `tc` (community–street 10 Mbit/s,
//! street–district 100 Mbit/s), the community recording camsim cameras. Only addresses inside
//! these namespaces are used, and they are removed at the end.
//!
//! Needs root (CI runs as root). Where namespaces cannot be made this test says so loudly and
//! passes: the same topology runs on loopback, budgets enforced in software, in
//! `tests/hierarchy.rs`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec};
use common::levels::*;
use common::netns::{Netns, in_ns, shape};
use common::*;
use serde_json::{Value, json};

const COMMUNITY: &str = "10.231.1.1";
const STREET_DOWN: &str = "10.231.1.2";
const STREET_UP: &str = "10.231.2.1";
const DISTRICT: &str = "10.231.2.2";

fn at_ip(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

fn wild(port: u16) -> SocketAddr {
    format!("0.0.0.0:{port}").parse().unwrap()
}

/// `ffmpeg` run inside namespace `ns`: (decoding errors, frames decoded).
fn ffmpeg_in(ns: &str, args: &[&str]) -> (String, u64) {
    decode_args_in(Some(ns), args)
}

/// Three seconds of cam0's live.mp4 at the district, decoded by ffmpeg in its namespace.
fn district_live_decodes(district: &mut Node, ns: &str) {
    let lt = media_token(district, "cam0", "live");
    let (errors, frames) = ffmpeg_in(
        ns,
        &[
            "-i",
            &district.url(&format!("/api/v1/cameras/cam0/live.mp4?token={lt}")),
            "-t",
            "3",
        ],
    );
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 50, "{frames}");
}

/// Reads `secs` of a live.mp4 inside `ns`: bytes read (0 on an error status).
fn watch_in(ns: String, url: String, token: String, secs: f64) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        in_ns(&ns, || {
            let Ok(resp) = agent()
                .get(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .call()
            else {
                return 0;
            };
            if resp.status() != 200 {
                return 0;
            }
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
    })
}

/// The status, served stream and body of a live.mp4 request inside `ns` (the body only when
/// it is an error).
fn open_live_in(node: &Node, token: &str, camera: &str) -> (u16, String, String) {
    let url = node.url(&format!("/api/v1/cameras/{camera}/live.mp4"));
    node.http(|| {
        let mut resp = agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let stream = resp
            .headers()
            .get("x-sharpeye-stream")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let status = resp.status().as_u16();
        let body = if status == 200 {
            String::new()
        } else {
            resp.body_mut().read_to_string().unwrap_or_default()
        };
        (status, stream, body)
    })
}

fn pulls(node: &mut Node, id: &str) -> u64 {
    link(node, id)["pulls"].as_u64().unwrap_or(u64::MAX)
}

fn link_of(node: &mut Node, id: &str) -> Value {
    common::levels::link(node, id)
}

#[test]
fn three_levels_in_network_namespaces() {
    if !common::netns::available() {
        eprintln!(
            "\n!!!!! three_levels_in_network_namespaces: network namespaces cannot be made here (not root, or no iproute2/tc).\n!!!!! The same topology runs on loopback with budgets enforced in software: tests/hierarchy.rs.\n"
        );
        return;
    }
    assert!(have_ffmpeg());
    let tag = std::process::id() % 100_000;
    let (c_ns, s_ns, d_ns) = (
        Netns::new(&format!("se{tag}c")),
        Netns::new(&format!("se{tag}s")),
        Netns::new(&format!("se{tag}d")),
    );
    let (cs, sd) = (format!("se{tag}x"), format!("se{tag}y"));
    common::netns::link(&c_ns, COMMUNITY, &s_ns, STREET_DOWN, &cs);
    common::netns::link(&s_ns, STREET_UP, &d_ns, DISTRICT, &sd);
    shape(&c_ns, &format!("{cs}a"), "10mbit");
    shape(&s_ns, &format!("{cs}b"), "10mbit");
    shape(&s_ns, &format!("{sd}a"), "100mbit");
    shape(&d_ns, &format!("{sd}b"), "100mbit");

    // The community: camsim in its namespace (main ~4 Mbit/s, sub ~0.5), three minutes of cam0
    // recorded two hours ago, and four cameras recorded live; cam3 has no sub-stream.
    let sim = in_ns(&c_ns.name, || {
        Sim::start(camsim::with_sub_streams(vec![
            CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load()),
            CameraSpec::new("cam1", BuiltinFixture::H264_1080p.load()),
            CameraSpec::new("cam2", BuiltinFixture::H264_1080p.load()),
            CameraSpec::new("cam3", BuiltinFixture::H264_1080p.load()),
        ]))
    });
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let base = (now_us() / 1_000_000 - 7200) * 1_000_000;
    let c_data = dirs[0].path().join("data");
    synthesize(
        &c_data,
        base,
        60,
        &[Stretch {
            camera: "cam0",
            fixture: BuiltinFixture::H264_240p,
            offset_s: 0.0,
            seconds: 180.0,
        }],
    );
    let mut cams = String::new();
    for i in 0..4 {
        cams.push_str(
            &camera_toml(&format!("cam{i}"), &sim.url(&format!("cam{i}")))
                .replace("org = \"test/e2e\"", "org = \"gate\""),
        );
        if i < 3 {
            cams = format!(
                "{}\nsub_url = \"{}\"\n\n",
                cams.trim_end(),
                sim.url(&format!("cam{i}-sub"))
            );
        }
    }
    let live = "[live]\nidle = \"1s\"\nstart_timeout = \"8s\"\n\n[audit]\nhead_every = \"1s\"\n\n";
    let community_config = |extra: &str| {
        level_config(
            "community",
            "community",
            wild(8080),
            None,
            &c_data,
            &format!("{live}{extra}{cams}"),
        )
    };
    let mut community = Node::start_in(
        Some(&c_ns.name),
        dirs[0].path(),
        &community_config(""),
        at_ip(COMMUNITY, 8080),
        wild(8080),
    );
    let t1 = issue_upper_token(&mut community, "street");
    let street_config = |dial: &str| {
        let url = if dial == "down" {
            format!("http://{COMMUNITY}:8080")
        } else {
            String::new()
        };
        let lower = lower_toml("community", &url, &t1, 10, "city/street/community", dial).replace("url = \"\"\n", "");
        level_config(
            "street",
            "street",
            wild(8080),
            None,
            &dirs[1].path().join("data"),
            &format!("{live}{lower}"),
        )
    };
    let mut street = Node::start_in(
        Some(&s_ns.name),
        dirs[1].path(),
        &street_config("down"),
        at_ip(STREET_UP, 8080),
        wild(8080),
    );
    let t2 = issue_upper_token(&mut street, "district");
    let district_config = level_config(
        "district",
        "district",
        wild(8080),
        Some(wild(8554)),
        &dirs[2].path().join("data"),
        &format!(
            "[live]\nidle = \"1s\"\nstart_timeout = \"8s\"\nwebrtc_host = \"{DISTRICT}\"\n\n[cache]\nsize = \"12MB\"\n\n{}",
            lower_toml(
                "street",
                &format!("http://{STREET_UP}:8080"),
                &t2,
                100,
                "city/street",
                "down"
            )
        ),
    );
    let mut district = Node::start_in(
        Some(&d_ns.name),
        dirs[2].path(),
        &district_config,
        at_ip(DISTRICT, 8080),
        wild(8080),
    );
    let cam0 = wait_for_camera(&mut district, "cam0", "online", Duration::from_secs(30));
    assert_eq!(cam0["path"], json!(["street"]));
    let token = district.token();

    // Twenty viewers at the district of one community camera: live.mp4, RTSP and WebRTC.
    let mp4: Vec<_> = (0..10)
        .map(|_| {
            watch_in(
                d_ns.name.clone(),
                district.url("/api/v1/cameras/cam0/live.mp4"),
                token.clone(),
                6.0,
            )
        })
        .collect();
    let rtsp: Vec<_> = (0..6)
        .map(|_| {
            let ns = d_ns.name.clone();
            let url = format!("rtsp://admin:{PASSWORD}@127.0.0.1:8554/cameras/cam0");
            std::thread::spawn(move || ffmpeg_in(&ns, &["-rtsp_transport", "tcp", "-i", &url, "-t", "5"]))
        })
        .collect();
    let whep: Vec<_> = (0..4)
        .map(|_| {
            let (ns, base, token) = (d_ns.name.clone(), district.url(""), token.clone());
            std::thread::spawn(move || in_ns(&ns, || whep_watch(&base, "cam0", &token, 5.0)))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pulls(&mut district, "street"),
        1,
        "{}",
        link_of(&mut district, "street")
    );
    assert_eq!(
        pulls(&mut street, "community"),
        1,
        "{}",
        link_of(&mut street, "community")
    );
    for v in mp4 {
        assert!(v.join().unwrap() > 500_000, "a live.mp4 viewer got too little");
    }
    for r in rtsp {
        let (errors, frames) = r.join().unwrap();
        assert!(errors.is_empty(), "{errors}");
        assert!(frames >= 75, "RTSP viewer: {frames} frames");
    }
    for w in whep {
        assert!(w.join().unwrap() > 25, "a WebRTC viewer decoded too little");
    }
    // The community's camera is pulled once: by its own recorder.
    assert_eq!(sim.cam("cam0").sessions().len(), 1);
    // And what the district relays decodes.
    district_live_decodes(&mut district, &d_ns.name);
    // Every pull released within idle + 2 s of the last viewer, at every level.
    assert!(wait_until(Duration::from_secs(4), || pulls(&mut district, "street")
        == 0
        && pulls(&mut street, "community") == 0));

    // Budget on the 10 Mbit/s link: two main streams fit, a third falls back to the sub-stream,
    // and a camera without one fits nowhere. What crosses the link never exceeds it.
    let st = street.token();
    let a = watch_in(
        s_ns.name.clone(),
        street.url("/api/v1/cameras/cam1/live.mp4"),
        st.clone(),
        10.0,
    );
    std::thread::sleep(Duration::from_millis(800));
    let b = watch_in(
        s_ns.name.clone(),
        street.url("/api/v1/cameras/cam2/live.mp4"),
        st.clone(),
        9.0,
    );
    std::thread::sleep(Duration::from_millis(800));
    let (s, kind, body) = open_live_in(&street, &st, "cam0");
    assert_eq!((s, kind.as_str()), (200, "sub"), "{body}");
    let (s, _, body) = open_live_in(&street, &st, "cam3");
    assert_eq!(s, 503, "{body}");
    assert!(
        body.contains("link_budget") && body.contains("link community (10.0 Mbit/s)"),
        "{body}"
    );
    let mut peak: f64 = 0.0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(6) {
        let l = link_of(&mut street, "community");
        peak = peak.max(l["measured_mbps"].as_f64().unwrap_or(0.0));
        assert!(l["in_use_mbps"].as_f64().unwrap() <= 10.0, "{l}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        peak > 4.0 && peak <= 10.0 * 1.05,
        "measured {peak} Mbit/s on a 10 Mbit/s link"
    );
    assert!(a.join().unwrap() > 1_000_000 && b.join().unwrap() > 1_000_000);
    assert!(wait_until(Duration::from_secs(4), || pulls(&mut street, "community") == 0));

    // Playback at the district of two community minutes: exact, then from the district's cache.
    let path = format!(
        "/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
        at(base, 30.0),
        at(base, 150.0)
    );
    let url = district.url(&path);
    let (s, _, first) = district.http(|| fetch(&url, &token, &[]));
    assert_eq!(s, 200);
    let file = dirs[2].path().join("p.mp4");
    std::fs::write(&file, &first).unwrap();
    assert!((duration(&file) - 120.0).abs() <= 0.04, "{}", duration(&file));
    let curl = community.url(&path);
    let ct = community.token();
    let (_, _, direct) = community.http(|| fetch(&curl, &ct, &[]));
    let dfile = dirs[2].path().join("c.mp4");
    std::fs::write(&dfile, &direct).unwrap();
    assert_eq!(
        first_frame(file.to_str().unwrap(), None),
        first_frame(dfile.to_str().unwrap(), None)
    );
    let (s, _, again) = district.http(|| fetch(&url, &token, &[]));
    assert_eq!((s, again.len()), (200, first.len()));
    let plays = audited(&mut community, "playback");
    assert_eq!(
        plays.iter().filter(|e| e["on_behalf_of"] == "admin@district").count(),
        1,
        "{plays:#?}"
    );
    // Other ranges: the 12 MB cache stays under its size.
    for k in 0..6 {
        let p = format!(
            "/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
            at(base, 20.0 * k as f64),
            at(base, 20.0 * k as f64 + 40.0)
        );
        let u = district.url(&p);
        assert_eq!(district.http(|| fetch(&u, &token, &[])).0, 200);
        let (_, h) = district.get("/api/v1/health");
        assert!(h["cache"]["bytes"].as_u64().unwrap() <= 12_000_000, "{}", h["cache"]);
    }

    // dial = "up": the street can no longer open connections to the community (its firewall
    // drops every connection attempt coming in); the community dials up instead.
    c_ns.exec("nft", &["add", "table", "inet", "sharpeye"]);
    c_ns.exec(
        "nft",
        &["add chain inet sharpeye input { type filter hook input priority 0; }"],
    );
    c_ns.exec("nft", &["add rule inet sharpeye input iifname \"lo\" accept"]);
    c_ns.exec(
        "nft",
        &["add rule inet sharpeye input tcp flags & (syn | ack) == syn drop"],
    );
    street.terminate();
    community.terminate();
    let up = format!("[[upper]]\nid = \"street\"\nurl = \"http://{STREET_DOWN}:8080\"\ntoken = \"{t1}\"\n\n");
    let mut street = Node::start_in(
        Some(&s_ns.name),
        dirs[1].path(),
        &street_config("up"),
        at_ip(STREET_UP, 8080),
        wild(8080),
    );
    let blocked =
        street.http(|| std::net::TcpStream::connect_timeout(&at_ip(COMMUNITY, 8080), Duration::from_secs(2)).is_err());
    let community = Node::start_in(
        Some(&c_ns.name),
        dirs[0].path(),
        &community_config(&up),
        at_ip(COMMUNITY, 8080),
        wild(8080),
    );
    assert!(
        blocked,
        "the firewall does not stop the street connecting to the community"
    );
    wait_for_camera(&mut district, "cam0", "online", Duration::from_secs(30));
    assert_eq!(link_of(&mut street, "community")["dial"], "up");
    district_live_decodes(&mut district, &d_ns.name);
    let p = format!(
        "/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
        at(base, 100.0),
        at(base, 130.0)
    );
    let u = district.url(&p);
    let (s, _, body) = district.http(|| fetch(&u, &token, &[]));
    assert_eq!(s, 200);
    std::fs::write(&file, &body).unwrap();
    assert!((duration(&file) - 30.0).abs() <= 0.04, "{}", duration(&file));
    assert!(community.log_text().contains("dialed up to upper node street"));

    // The district never held a segment file of a remote camera.
    let segs = dirs[2].path().join("data/segments");
    assert!(!segs.exists() || std::fs::read_dir(&segs).unwrap().next().is_none());
    drop(sim);
}

/// Every audit entry of `node` with `action`.
fn audited(node: &mut Node, action: &str) -> Vec<Value> {
    let (s, b) = node.get(&format!("/api/v1/audit?action={action}&limit=1000"));
    assert_eq!(s, 200, "{b}");
    b["entries"].as_array().cloned().unwrap_or_default()
}
