//! Levels calling each other up, over real processes: a community node records camsim cameras,
//! a street node pulls them on demand, a district node pulls the street's copy. One pull per
//! camera per link whatever the number of viewers, released when the last one leaves; link
//! budgets with sub-stream fallback; nothing of a lower level stored above.

mod common;

use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec};
use common::levels::*;
use common::*;

/// A community → street → district chain on loopback.
struct Chain {
    sim: Sim,
    _dirs: Vec<tempfile::TempDir>,
    community: Node,
    street: Node,
    district: Node,
}

/// Cameras: `cam0` (1080p main, 240p sub), `cam1` and `cam2` (1080p, no sub) recorded at the
/// community; the street's link to it has `community_mbps`.
fn chain(community_mbps: u32, live_idle: &str) -> Chain {
    let sim = Sim::start(vec![
        CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam0-sub", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("cam1", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam2", BuiltinFixture::H264_1080p.load()),
    ]);
    let live = format!("[live]\nidle = \"{live_idle}\"\nstart_timeout = \"8s\"\n\n");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cams = format!(
        "{}\nsub_url = \"{}\"\n\n{}{}",
        camera_toml("cam0", &sim.url("cam0")).trim_end(),
        sim.url("cam0-sub"),
        camera_toml("cam1", &sim.url("cam1")),
        camera_toml("cam2", &sim.url("cam2")),
    )
    .replace("org = \"test/e2e\"", "org = \"gate\"");
    let (ca, sa, da) = (addr(), addr(), addr());
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
                "{live}{}",
                lower_toml(
                    "community",
                    &format!("http://{ca}"),
                    &t1,
                    community_mbps,
                    "city/street/community",
                    "down"
                )
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
    let token = c.street.token();
    let first = watch(c.street.url("/api/v1/cameras/cam1/live.mp4"), token.clone(), 6.0);
    std::thread::sleep(Duration::from_millis(1500));
    let fallback = watch(c.street.url("/api/v1/cameras/cam0/live.mp4"), token.clone(), 4.0);
    std::thread::sleep(Duration::from_millis(1500));
    // Another viewer of cam0 shares the sub-stream already crossing.
    assert_eq!(open_live(&c.street, &token, "cam0").1, "sub");
    let l = link(&mut c.street, "community");
    assert_eq!(l["pulls"], 2, "{l}");
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
