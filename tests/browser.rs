//! The web page's live wall in Debian's headless Chromium (driven by playwright-core from
//! `tests/browser/`): it logs in and an H.264 camera's tile decodes frames over WebRTC (WHEP)
//! from a real node pulling camsim. `scripts/test.sh` installs Chromium and the npm package.

mod common;

use std::process::Command;

use camsim::{BuiltinFixture, CameraSpec};
use common::*;

#[test]
fn the_live_wall_decodes_h264_over_webrtc_in_chromium() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists() && std::path::Path::new("/usr/bin/chromium").exists(),
        "needs Chromium and playwright-core: apt-get install chromium && npm ci --prefix tests/browser (scripts/test.sh does both)"
    );
    let Setup {
        sim,
        dir: _dir,
        mut node,
    } = node_with(
        vec![
            CameraSpec::new("cam0", BuiltinFixture::H264_240p.load()),
            CameraSpec::new("cam1", BuiltinFixture::H264_1080p.load()),
        ],
        "",
        "",
    );
    let out = Command::new("node")
        .arg(browser_dir.join("wall.mjs"))
        .args([&node.url("/"), PASSWORD, "cam1", "40"])
        .output()
        .expect("running node (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stats: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_default();
    assert!(
        out.status.success(),
        "no decoded WebRTC frames: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log_text()
    );
    println!("wall: {stats}");
    let tile = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["camera"] == "cam1")
        .unwrap();
    assert_eq!(tile["kind"], "webrtc");
    assert!(tile["frames"].as_u64().unwrap() > 25, "{tile}");
    // The browser's session is a hub viewer: the metrics count it on the WebRTC output.
    let metrics = node.metrics();
    assert!(metrics.contains("sharpeye_live_upstream_sessions{camera=\"cam1\",stream=\"main\"} 1"));
    assert_eq!(
        sim.cam("cam1").sessions().len(),
        1,
        "the wall and recording share one upstream"
    );
    assert!(node.terminate().success());
}
