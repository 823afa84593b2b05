//! Places through a real `sharpeye` process: camera queries by radius, polygon, grid cell and
//! field of view over 25,000 cameras checked against a brute-force scan written here (not the
//! server's code), restricted to what the caller may see; incidents that open live and
//! playback URLs ffmpeg decodes, hold their window through retention, push a wall and are
//! audited as one entry.

mod common;

use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec};
use common::*;
use serde_json::{Value, json};

const R: f64 = 6_371_008.8;

/// Haversine distance in metres.
fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * ((b.1 - a.1).to_radians() / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().min(1.0).asin()
}

/// Initial bearing from a to b, degrees clockwise from north.
fn bearing(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dl = (b.1 - a.1).to_radians();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

/// Even-odd point in polygon over (lat, lon) vertices.
fn inside(poly: &[(f64, f64)], p: (f64, f64)) -> bool {
    let mut c = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a.0 > p.0) != (b.0 > p.0) && p.1 < a.1 + (p.0 - a.0) / (b.0 - a.0) * (b.1 - a.1) {
            c = !c;
        }
        j = i;
    }
    c
}

/// A small deterministic generator (the test must not depend on the server's crates for its
/// expectations).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Cam {
    id: String,
    at: (f64, f64),
    /// heading, fov, range
    view: Option<(f64, f64, f64)>,
    district: usize,
}

fn sees(c: &Cam, p: (f64, f64)) -> bool {
    let Some((heading, fov, range)) = c.view else {
        return false;
    };
    let d = dist(c.at, p);
    if d > range {
        return false;
    }
    let off = (bearing(c.at, p) - heading).rem_euclid(360.0);
    d < 0.01 || off.min(360.0 - off) <= fov / 2.0
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list: {v}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Brute force nearest first, ties by id.
fn by_distance(mut v: Vec<(&Cam, f64)>) -> Vec<String> {
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
    v.into_iter().map(|(c, _)| c.id.clone()).collect()
}

#[test]
fn place_queries_over_25000_cameras_equal_a_brute_force_scan_for_whoever_asks() {
    let mut rng = Lcg(0x5eed);
    // A city of 25,000 cameras over ~17 × 17 km in ten districts (by longitude band); two in
    // three have a heading and field of view.
    let cams: Vec<Cam> = (0..25_000)
        .map(|i| {
            let at = (38.85 + rng.next() * 0.15, 121.50 + rng.next() * 0.20);
            let view = (i % 3 != 0).then(|| {
                (
                    (rng.next() * 360.0 * 10.0).round() / 10.0,
                    (30.0 + rng.next() * 90.0).round(),
                    (40.0 + rng.next() * 160.0).round(),
                )
            });
            Cam {
                id: format!("c{i:05}"),
                at,
                view,
                district: ((at.1 - 121.50) / 0.02).floor().min(9.0) as usize,
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut cameras = String::with_capacity(cams.len() * 220);
    for c in &cams {
        cameras += &format!(
            "[[cameras]]\nid = \"{}\"\nurl = \"rtsp://127.0.0.1:9/{}\"\nrecord = false\norg = \"city/d{}\"\nlocation = {{ lat = {}, lon = {}",
            c.id, c.id, c.district, c.at.0, c.at.1
        );
        if let Some((h, f, r)) = c.view {
            cameras += &format!(", heading = {h}, fov = {f}, range_m = {r}");
        }
        cameras += " }\n\n";
    }
    cameras += "[[departments]]\nid = \"d3\"\nname = \"District 3 bureau\"\n\n[[users]]\nname = \"d3-op\"\npassword = \"correct-horse-battery\"\nrole = \"viewer\"\ndepartment = \"d3\"\n\n[[grants]]\nsubject = \"department:d3\"\nactions = [\"live\", \"playback\"]\nresource = \"org:city/d3\"\n\n";
    let config = config_toml(addr, &dir.path().join("data"), "", &cameras);
    let started = Instant::now();
    let mut node = Node::start(dir.path(), &config, addr);
    println!("a node with 25,000 cameras answered after {:?}", started.elapsed());
    let admin = node.token();
    let (s, b) = post_json(
        &node.url("/api/v1/login"),
        &json!({ "username": "d3-op", "password": "correct-horse-battery" }),
        None,
    );
    assert_eq!(s, 200, "{b}");
    let d3 = b["token"].as_str().unwrap().to_owned();

    let api = node.url("/api/v1");
    let ask = |token: &str, q: &str| -> Vec<String> {
        let (s, v) = get_json(&format!("{api}/cameras?{q}"), Some(token));
        assert_eq!(s, 200, "{q}: {v}");
        ids(&v)
    };
    let mut took = Vec::new();
    let mut nonempty = [0usize; 3];
    for k in 0..1_000 {
        let p = (38.84 + rng.next() * 0.17, 121.49 + rng.next() * 0.22);
        let t = Instant::now();
        match k % 3 {
            0 => {
                let r = (rng.next() * 600.0).round();
                let got = ask(&admin, &format!("near={},{}&radius={r}", p.0, p.1));
                let want = by_distance(
                    cams.iter()
                        .map(|c| (c, dist(p, c.at)))
                        .filter(|(_, d)| *d <= r)
                        .collect(),
                );
                assert_eq!(got, want, "near {p:?} within {r} m");
                nonempty[0] += usize::from(!got.is_empty());
            }
            1 => {
                // A random quadrilateral a few hundred metres across.
                let poly: Vec<(f64, f64)> = (0..4)
                    .map(|j| {
                        let a = std::f64::consts::FRAC_PI_2 * j as f64 + rng.next();
                        let r = 0.001 + rng.next() * 0.004;
                        (p.0 + r * a.sin(), p.1 + r * a.cos())
                    })
                    .collect();
                let q: Vec<String> = poly.iter().map(|v| format!("{},{}", v.0, v.1)).collect();
                let got = ask(&admin, &format!("polygon={}", q.join(";")));
                let mut want: Vec<String> = cams
                    .iter()
                    .filter(|c| inside(&poly, c.at))
                    .map(|c| c.id.clone())
                    .collect();
                want.sort();
                assert_eq!(got, want, "polygon {poly:?}");
                nonempty[1] += usize::from(!got.is_empty());
            }
            _ => {
                let got = ask(&admin, &format!("sees={},{}", p.0, p.1));
                let want = by_distance(cams.iter().filter(|c| sees(c, p)).map(|c| (c, dist(p, c.at))).collect());
                assert_eq!(got, want, "sees {p:?}");
                nonempty[2] += usize::from(!got.is_empty());
            }
        }
        took.push(t.elapsed());
    }
    assert!(
        nonempty.iter().all(|n| *n > 100),
        "the queries must find cameras to compare: {nonempty:?}"
    );
    took.sort();
    println!(
        "1,000 place queries over HTTP: p50 {:?}, p99 {:?} (non-empty near/polygon/sees: {nonempty:?})",
        took[500], took[990]
    );

    // The district-3 operator gets exactly the district's share of each answer.
    for _ in 0..100 {
        let p = (38.85 + rng.next() * 0.15, 121.56 + rng.next() * 0.02);
        let got = ask(&d3, &format!("near={},{}&radius=400", p.0, p.1));
        let want = by_distance(
            cams.iter()
                .filter(|c| c.district == 3)
                .map(|c| (c, dist(p, c.at)))
                .filter(|(_, d)| *d <= 400.0)
                .collect(),
        );
        assert_eq!(got, want);
    }

    // Grid cells: imported as GeoJSON, queried by id, for the admin and for district 3.
    let cell = |id: &str, lon0: f64, lat0: f64| {
        json!({ "type": "Feature", "id": id, "properties": { "name": format!("Cell {id}") },
            "geometry": { "type": "Polygon", "coordinates": [[[lon0, lat0], [lon0 + 0.01, lat0], [lon0 + 0.01, lat0 + 0.008], [lon0, lat0 + 0.008], [lon0, lat0]]] } })
    };
    let (s, b) = node.post(
        "/api/v1/grids",
        &json!({ "type": "FeatureCollection", "features": [cell("0301", 121.565, 38.90), cell("0501", 121.605, 38.93)] }),
    );
    assert_eq!(s, 201, "{b}");
    for (grid, lon0, lat0) in [("0301", 121.565, 38.90), ("0501", 121.605, 38.93)] {
        let poly = [
            (lat0, lon0),
            (lat0, lon0 + 0.01),
            (lat0 + 0.008, lon0 + 0.01),
            (lat0 + 0.008, lon0),
        ];
        let mut want: Vec<&Cam> = cams.iter().filter(|c| inside(&poly, c.at)).collect();
        want.sort_by(|a, b| a.id.cmp(&b.id));
        let all: Vec<String> = want.iter().map(|c| c.id.clone()).collect();
        assert!(!all.is_empty());
        assert_eq!(ask(&admin, &format!("grid={grid}")), all, "grid {grid}");
        let mine: Vec<String> = want.iter().filter(|c| c.district == 3).map(|c| c.id.clone()).collect();
        assert_eq!(ask(&d3, &format!("grid={grid}")), mine, "grid {grid} for district 3");
    }
    let (s, grids) = node.get("/api/v1/grids");
    assert_eq!(s, 200);
    assert_eq!(grids.as_array().unwrap().len(), 2, "{grids}");
    assert!(grids[0]["cameras"].as_u64().unwrap() > 0);

    // Malformed places get a 400 that names what is wrong; nothing is listed.
    for (q, says) in [
        ("near=91,121", "near"),
        ("near=38.9", "near"),
        ("near=38.9,121.6&radius=-1", "radius"),
        ("near=38.9,121.6&radius=1e9", "radius"),
        ("near=38.9,121.6&radius=NaN", "radius"),
        ("radius=10", "radius"),
        ("near=38.9,121.6&sees=38.9,121.6", "one place"),
        ("polygon=38.9,121.6;38.91,121.6", "polygon"),
        ("polygon=38.9,121.6;38.91,121.6;x,y", "polygon[2]"),
        ("grid=../../etc", "grid"),
        ("sees=38.9,500", "sees"),
    ] {
        let (s, v) = get_json(&node.url(&format!("/api/v1/cameras?{q}")), Some(&admin));
        assert_eq!(s, 400, "{q}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{q}: {v}");
    }
    let (s, v) = get_json(&node.url("/api/v1/cameras?grid=nope"), Some(&admin));
    assert_eq!(s, 404, "{v}");
    // Only administrators import grid cells.
    let (s, _) = post_json(&node.url("/api/v1/grids"), &cell("0999", 121.5, 38.9), Some(&d3));
    assert_eq!(s, 403);
    assert!(node.terminate().success());
}

/// The place of the incident, and cameras 0, ~120 m and ~2 km from it.
const SPOT: (f64, f64) = (38.9140, 121.6140);

fn incident_node(
    dir: &std::path::Path,
    sim: &Sim,
    addr: std::net::SocketAddr,
    rtsp: std::net::SocketAddr,
    retention: &str,
) -> Node {
    let mut cams = String::new();
    for (id, lat, lon) in [
        ("cam0", SPOT.0, SPOT.1),
        ("cam1", SPOT.0 + 0.0011, SPOT.1),
        ("cam2", SPOT.0 + 0.018, SPOT.1),
    ] {
        cams += &camera_toml(id, &sim.url(id)).replace(
            "org = \"test/e2e\"",
            &format!("org = \"test/e2e\"\nlocation = {{ lat = {lat}, lon = {lon} }}"),
        );
    }
    cams += "[[users]]\nname = \"watcher\"\npassword = \"correct-horse-battery\"\nrole = \"viewer\"\n\n[[grants]]\nsubject = \"user:watcher\"\nactions = [\"live\", \"playback\"]\nresource = \"camera:cam1\"\n\n";
    let config = config_toml(addr, &dir.join("data"), "segment = \"1s\"", &cams)
        .replace("[server]\n", &format!("[server]\nrtsp_listen = \"{rtsp}\"\n"))
        .replace("[ingest]", &format!("[retention]\n{retention}\n\n[ingest]"));
    Node::start(dir, &config, addr)
}

#[test]
fn an_incident_opens_urls_ffmpeg_plays_holds_its_window_through_retention_and_is_audited_once() {
    if !have_ffmpeg() {
        eprintln!("skipped: ffmpeg is not installed (scripts/test.sh installs it)");
        return;
    }
    let sim = Sim::start(
        ["cam0", "cam1", "cam2"]
            .iter()
            .map(|c| CameraSpec::new(*c, BuiltinFixture::H264_240p.load()))
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    // Two months of history two cameras recorded before this node's life: an investigation
    // goes back to an older event.
    let old_base = (now_us() / 1_000_000 - 60 * 86_400) * 1_000_000;
    let stretch = |camera| Stretch {
        camera,
        fixture: BuiltinFixture::H264_240p,
        offset_s: 0.0,
        seconds: 900.0,
    };
    synthesize(
        &dir.path().join("data"),
        old_base,
        10,
        &[stretch("cam0"), stretch("cam1")],
    );
    let (addr, rtsp) = (free_addr(), free_addr());
    let mut node = incident_node(dir.path(), &sim, addr, rtsp, "standard = \"90d\"");
    let base = node.url("");
    let events = listen(&base, &node.token(), 90);
    assert!(
        wait_until(Duration::from_secs(20), || {
            ["cam0", "cam1"].iter().all(|c| {
                node.ranges(c, now_us() - 60_000_000, now_us())
                    .iter()
                    .any(|r| r.1 - r.0 > 5_000_000)
            })
        }),
        "cam0 and cam1 record"
    );

    // Hostile and malformed bodies: a 400 naming the field, and nothing audited.
    let (_, before) = node.get(&format!(
        "/api/v1/audit?action=incident&start={}&end={}",
        rfc3339(now_us() - 3_600_000_000),
        rfc3339(now_us() + 3_600_000_000)
    ));
    for (body, says) in [
        (json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 } }), "reason"),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "reason": "  " }),
            "reason",
        ),
        (json!({ "reason": "x" }), "point"),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "grid": "g1", "reason": "x" }),
            "point",
        ),
        (
            json!({ "point": { "lat": 95.0, "lon": SPOT.1 }, "reason": "x" }),
            "latitude",
        ),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "radius": 1e7, "reason": "x" }),
            "radius",
        ),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "before": 999999, "reason": "x" }),
            "before",
        ),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "at": "yesterday", "reason": "x" }),
            "at",
        ),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "wall": "../x", "reason": "x" }),
            "wall",
        ),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "reason": "x", "radius_km": 1 }),
            "radius_km",
        ),
        (
            json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "sees": true, "radius": 10, "reason": "x" }),
            "radius",
        ),
        (json!({ "point": "here", "reason": "x" }), "point"),
    ] {
        let (s, v) = node.post("/api/v1/incidents", &body);
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{body}: {v}");
    }

    // Now, around the spot: cam0 and cam1 (not cam2, 2 km away), nearest first, with URLs
    // that ffmpeg plays, holds, and the cameras on wall room1.
    let at = now_us() - 2_000_000;
    let (s, inc) = node.post(
        "/api/v1/incidents",
        &json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "at": rfc3339(at), "radius": 300, "before": 4, "after": 1, "hold": true, "wall": "room1", "reason": "case 2026-301: fight at the east gate" }),
    );
    assert_eq!(s, 201, "{inc}");
    let cams = inc["cameras"].as_array().unwrap();
    assert_eq!(ids(&inc["cameras"]), ["cam0", "cam1"], "{inc}");
    let d1 = cams[1]["distance_m"].as_f64().unwrap();
    assert!(
        cams[0]["distance_m"].as_f64().unwrap() < 1.0 && (110.0..135.0).contains(&d1),
        "{inc}"
    );
    for c in cams {
        let id = c["id"].as_str().unwrap();
        let rtsp_url = c["live"]["rtsp"].as_str().unwrap();
        assert!(
            rtsp_url.starts_with(&format!("rtsp://127.0.0.1:{}/cameras/{id}?token=", rtsp.port())),
            "{c}"
        );
        let (err, frames) = decode_args(&["-rtsp_transport", "tcp", "-t", "2", "-i", rtsp_url]);
        assert!(frames >= 20, "{id} live over RTSP: {frames} frames, {err}");
        let live = format!("{base}{}", c["live"]["live_mp4"].as_str().unwrap());
        let (err, frames) = decode_args(&["-t", "2", "-i", &live]);
        assert!(frames >= 20, "{id} live.mp4: {frames} frames, {err}");
        let playback = format!("{base}{}", c["playback"]["mp4"].as_str().unwrap());
        let (err, frames) = decode(&playback);
        assert!(
            (100..=140).contains(&frames),
            "{id} playback of the 5 s window: {frames} frames, {err}"
        );
        let mut hls = agent()
            .get(&format!("{base}{}", c["playback"]["hls"].as_str().unwrap()))
            .call()
            .unwrap();
        assert_eq!(hls.status(), 200);
        assert!(hls.body_mut().read_to_string().unwrap().starts_with("#EXTM3U"));
        assert!(c["hold"]["id"].is_string(), "{c}");
        assert!(c["whep"].is_null() && c["live"]["whep"].as_str().unwrap().contains("/whep?token="));
    }
    let (_, wall) = node.get("/api/v1/walls/room1");
    assert_eq!(wall["layout"], "2x2");
    assert_eq!(
        wall["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["camera"].clone())
            .collect::<Vec<_>>(),
        [json!("cam0"), json!("cam1")]
    );

    // An investigation of the older event: its window is held on both cameras.
    let old_at = old_base + 600_000_000;
    let (s, old) = node.post(
        "/api/v1/incidents",
        &json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "at": rfc3339(old_at), "before": 120, "after": 60, "hold": true, "reason": "case 2026-118: theft reported late" }),
    );
    assert_eq!(s, 201, "{old}");
    assert_eq!(ids(&old["cameras"]), ["cam0", "cam1"]);
    let (_, holds) = node.get("/api/v1/holds");
    assert_eq!(holds.as_array().unwrap().len(), 4, "{holds}");

    // A viewer granted only cam1 gets only cam1, without holds (not theirs to place).
    let (_, b) = post_json(
        &format!("{base}/api/v1/login"),
        &json!({ "username": "watcher", "password": "correct-horse-battery" }),
        None,
    );
    let watcher = b["token"].as_str().unwrap().to_owned();
    let (s, mine) = post_json(
        &format!("{base}/api/v1/incidents"),
        &json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "hold": true, "reason": "patrol check" }),
        Some(&watcher),
    );
    assert_eq!(s, 201, "{mine}");
    assert_eq!(ids(&mine["cameras"]), ["cam1"]);
    assert_eq!(mine["cameras"][0]["hold_error"]["code"], "forbidden");
    assert!(mine["cameras"][0]["live"]["live_mp4"].is_string());

    // One audit entry per incident, listing its cameras; its holds name it.
    let (_, audit) = node.get(&format!(
        "/api/v1/audit?action=incident&start={}&end={}",
        rfc3339(now_us() - 3_600_000_000),
        rfc3339(now_us() + 3_600_000_000)
    ));
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        before["entries"].as_array().unwrap().len() + 3,
        "{audit}"
    );
    let first = entries.iter().find(|e| e["target"] == inc["id"]).unwrap();
    assert_eq!(first["detail"]["cameras"], json!(["cam0", "cam1"]));
    assert_eq!(first["reason"], "case 2026-301: fight at the east gate");
    let (_, holds_audit) = node.get(&format!(
        "/api/v1/audit?action=hold.create&start={}&end={}",
        rfc3339(now_us() - 3_600_000_000),
        rfc3339(now_us() + 3_600_000_000)
    ));
    assert_eq!(
        holds_audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["detail"]["incident"] == old["id"])
            .count(),
        2
    );

    // Retention tightened to 30 days deletes the old history except the incident's window.
    // The subscribed event stream ends with the node and does not hold its stop.
    let t = Instant::now();
    assert!(node.terminate().success());
    let got = events.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "stopping took {:?} with a subscriber",
        t.elapsed()
    );
    let mut node = incident_node(dir.path(), &sim, addr, rtsp, "standard = \"30d\"\ninterval = \"50ms\"");
    let (from, to) = (old_base - 60_000_000, old_base + 1_000_000_000);
    assert!(
        wait_until(Duration::from_secs(30), || node
            .ranges("cam0", from, to)
            .first()
            .is_some_and(|r| r.0 > old_base + 300_000_000)),
        "retention deletes the unheld history: {:?}",
        node.ranges("cam0", from, to)
    );
    for cam in ["cam0", "cam1"] {
        let r = node.ranges(cam, from, to);
        assert_eq!(r.len(), 1, "{cam}: {r:?}");
        assert!(
            r[0].0 <= old_at - 120_000_000 && r[0].1 >= old_at + 60_000_000,
            "{cam}: the held window survives: {r:?}"
        );
        assert!(
            r[0].1 - r[0].0 < 200_000_000,
            "{cam}: and little more (whole segments): {r:?}"
        );
    }
    drop(node);
    let opened: Vec<&Value> = got
        .iter()
        .filter(|(k, _)| k == "incident.opened")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(opened.len(), 3, "{got:?}");
    assert_eq!(opened[0]["cameras"], json!(["cam0", "cam1"]));
}

/// An incident at the street around a community camera: the street finds it by its location
/// (listed up from below), hands out URLs ffmpeg plays through the street (live and the
/// window's playback, pulled over the link), and the hold lands on the community, which keeps
/// the evidence; the street audits one `incident` naming the camera.
#[test]
fn an_incident_at_an_upper_level_opens_and_holds_a_lower_node_s_camera() {
    use common::levels::*;
    if !have_ffmpeg() {
        eprintln!("skipped: ffmpeg is not installed (scripts/test.sh installs it)");
        return;
    }
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_240p.load())]);
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let cam = camera_toml("cam0", &sim.url("cam0")).replace(
        "org = \"test/e2e\"",
        &format!(
            "org = \"test/e2e\"\nlocation = {{ lat = {}, lon = {} }}",
            SPOT.0, SPOT.1
        ),
    );
    let mut community = level_node(
        dirs[0].path(),
        "community",
        &format!("[recording]\nsegment = \"1s\"\n\n{cam}"),
    );
    let below = lower_of(&mut community, "community", "street", "city/street/community");
    let mut street = level_node(dirs[1].path(), "street", &below);
    wait_for_camera(&mut street, "cam0", "online", Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(20), || community
            .ranges("cam0", now_us() - 60_000_000, now_us())
            .iter()
            .any(|r| r.1 - r.0 > 6_000_000)),
        "cam0 records at the community"
    );
    let at = now_us() - 2_000_000;
    let (s, inc) = street.post(
        "/api/v1/incidents",
        &json!({ "point": { "lat": SPOT.0, "lon": SPOT.1 }, "at": rfc3339(at), "before": 4, "after": 1, "hold": true, "reason": "case 2026-412: hit and run" }),
    );
    assert_eq!(s, 201, "{inc}");
    assert_eq!(ids(&inc["cameras"]), ["cam0"], "{inc}");
    let c = &inc["cameras"][0];
    assert!(c["hold"]["id"].is_string(), "the hold is placed below: {c}");
    let base = street.url("");
    let live = format!("{base}{}", c["live"]["live_mp4"].as_str().unwrap());
    let (err, frames) = decode_args(&["-t", "2", "-i", &live]);
    assert!(frames >= 20, "live through the street: {frames} frames, {err}");
    let playback = format!("{base}{}", c["playback"]["mp4"].as_str().unwrap());
    let (err, frames) = decode(&playback);
    assert!(
        (100..=140).contains(&frames),
        "the window's playback through the street: {frames} frames, {err}"
    );
    // The community keeps the evidence: its hold covers the window, with the case.
    let (_, holds) = community.get("/api/v1/holds");
    let held = holds
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["camera"] == "cam0")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        held["reason"].as_str().is_some_and(|r| r.contains("case 2026-412")),
        "{holds}"
    );
    assert!(parse_time(held["start"].as_str().unwrap()) <= at - 4_000_000, "{held}");
    assert!(parse_time(held["end"].as_str().unwrap()) >= at + 1_000_000, "{held}");
    let (_, audit) = street.get("/api/v1/audit?action=incident");
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert!(entries[0]["detail"].to_string().contains("cam0"), "{audit}");
}
