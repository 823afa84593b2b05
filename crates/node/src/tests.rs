//! The node's wiring on real storage, with no network peers: cameras added from the config and
//! at run time, pulls started by demand and stopped when idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use media::{StreamId, StreamKind};

use super::*;
use crate::cameras::configured;
use crate::config::{CameraConfig, Tier};

/// A node's parts (no HTTP, no RTSP) over a fresh data directory.
struct Parts {
    storage: Storage,
    state: Arc<AppState>,
    sources: Sources,
    registry: CameraRegistry,
}

fn camera(id: &str, record: bool, sub: bool) -> CameraConfig {
    // Nothing listens on port 1: pulls start and keep retrying, which is all these tests need.
    CameraConfig {
        id: id.into(),
        name: format!("Camera {id}"),
        url: "rtsp://127.0.0.1:1/main".parse().unwrap(),
        sub_url: sub.then(|| "rtsp://127.0.0.1:1/sub".parse().unwrap()),
        tier: Tier::Standard,
        record,
        org: "test/node".into(),
        location: None,
        transport: None,
    }
}

async fn parts(config: &Config) -> Parts {
    let storage = Storage::open(config).await.unwrap();
    let security = Security::open(config).unwrap();
    let sources = start_sources(config).await.unwrap();
    let state = build_state(config, Instant::now(), &storage, &security, &sources).unwrap();
    let registry = CameraRegistry {
        gates: None,
        state: state.clone(),
        hub: sources.hub.clone(),
        pulls: sources.pulls.clone(),
        recorder: storage.recorder.clone(),
        idle: config.live.idle,
        devices: sources.devices.clone(),
    };
    Parts {
        storage,
        state,
        sources,
        registry,
    }
}

fn config_in(dir: &std::path::Path) -> Config {
    let mut c = Config::new(vec![dir.join("data")]);
    c.live.idle = Duration::from_millis(200);
    c
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn configured_cameras_are_listed_permissioned_and_pulled_on_their_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.cameras = vec![camera("rec", true, false), camera("ondemand", false, true)];
    let p = parts(&config).await;
    assert_eq!(p.registry.add_configured(&config), (2, 1));
    let cams = p.state.cameras.snapshot();
    assert_eq!(cams.keys().collect::<Vec<_>>(), ["ondemand", "rec"]);
    assert!(cams["ondemand"].info.has_sub && !cams["ondemand"].info.record);
    // Both are in the permission catalog: an org grant covers them.
    let snap = p.state.auth.snapshot();
    assert_eq!(snap.policy.camera_id(0), "ondemand");
    // Three channels; only the recorded main stream is pulled without viewers.
    assert_eq!(p.sources.hub.channels().len(), 3);
    wait_for("the recorded stream's pull", || p.sources.pulls.running() == 1).await;
    assert_eq!(cams["ondemand"].status(), "idle");
    // The same ids again add nothing.
    assert_eq!(p.registry.add(vec![configured(&config.cameras[0], &config)]), 0);
    p.sources.pulls.stop_all().await;
    p.storage.close().await.unwrap();
}

#[tokio::test]
async fn an_on_demand_pull_runs_while_watched_and_stops_after_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.cameras = vec![camera("cam", false, true)];
    let p = parts(&config).await;
    p.registry.add_configured(&config);
    assert_eq!(p.sources.pulls.running(), 0);
    let viewer = p
        .sources
        .hub
        .watch(&StreamId::new("cam", StreamKind::Sub), hub::Output::Mp4)
        .unwrap();
    wait_for("the pull to start", || p.sources.pulls.running() == 1).await;
    drop(viewer);
    wait_for("the pull to stop after idle", || p.sources.pulls.running() == 0).await;
    p.storage.close().await.unwrap();
}

#[tokio::test]
async fn a_gb28181_camera_without_the_section_is_listed_but_not_pulled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    let mut c = camera("34020000001310000001", true, false);
    c.url = "gb28181://34020000001180000001".parse().unwrap();
    config.cameras = vec![c];
    let p = parts(&config).await;
    assert_eq!(p.registry.add_configured(&config), (1, 1));
    assert!(p.state.cameras.contains_key("34020000001310000001"));
    assert!(p.sources.hub.channels().is_empty());
    p.storage.close().await.unwrap();
}

#[test]
fn catalog_channels_become_cameras_under_the_device() {
    let g = config::Gb28181Config {
        id: "34020000002000000001".into(),
        domain: "3402000000".into(),
        listen: "127.0.0.1:5060".parse().unwrap(),
        password: "12345678".into(),
        media_ip: "127.0.0.1".parse().unwrap(),
        media_transport: gb28181::sdp::MediaTransport::TcpPassive,
        keepalive_interval: Duration::from_secs(60),
        keepalive_misses: 3,
        request_timeout: Duration::from_secs(10),
        charset: gb28181::manscdp::Charset::Auto,
        devices: Vec::new(),
        adopt: true,
        record_discovered: false,
        org: "city/gb".into(),
        uppers: Vec::new(),
    };
    let item = gb28181::manscdp::CatalogItem {
        device_id: "34020000001310000007".into(),
        name: "x".repeat(300),
        location: Some((121.6, 38.9)),
        ..Default::default()
    };
    let cam = adoption::adopted(
        "34020000001180000001",
        &item,
        &[],
        &g,
        &config::PullSettings::default(),
        "n",
    )
    .unwrap();
    assert_eq!(cam.info.org, "city/gb/34020000001180000001");
    assert_eq!(cam.info.location, Some((38.9, 121.6)));
    assert_eq!(cam.info.name.chars().count(), 128);
    assert!(!cam.info.record);
    assert_eq!(
        cam.device,
        Some(("34020000001180000001".into(), "34020000001310000007".into()))
    );
    let hostile = gb28181::manscdp::CatalogItem {
        device_id: "../../etc".into(),
        ..Default::default()
    };
    assert!(adoption::adopted("d", &hostile, &[], &g, &config::PullSettings::default(), "n").is_none());
    let unnamed = gb28181::manscdp::CatalogItem {
        device_id: "34020000001310000008".into(),
        name: "   ".into(),
        ..Default::default()
    };
    let cam = adoption::adopted("d", &unnamed, &[], &g, &config::PullSettings::default(), "n").unwrap();
    assert_eq!(cam.info.name, "34020000001310000008");
}
