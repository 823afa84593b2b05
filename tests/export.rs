//! Evidence export end to end: a signed package from a real process, verified offline by
//! `sharpeye verify-export`, and every kind of tampering caught and named.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use camsim::BuiltinFixture;
use common::*;
use serde_json::json;

fn verify(path: &Path, key: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("verify-export").arg(path);
    if let Some(k) = key {
        cmd.args(["--key", k]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn unzip(zip_path: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).unwrap();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        std::fs::write(to.join(f.name().unwrap().as_ref()), buf).unwrap();
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn export_round_trip_and_every_tampering_is_named() {
    assert!(have_ffmpeg());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = (now_us() / 1_000_000 - 7200) * 1_000_000;
    synthesize(
        &data,
        base,
        60,
        &[
            Stretch {
                camera: "cam",
                fixture: BuiltinFixture::H264_240p,
                offset_s: 0.0,
                seconds: 150.0,
            },
            Stretch {
                camera: "cam",
                fixture: BuiltinFixture::H264_240p,
                offset_s: 160.0,
                seconds: 40.0,
            },
            // The camera was reconfigured to H.265: the export gets a second file.
            Stretch {
                camera: "cam",
                fixture: BuiltinFixture::H265_240p,
                offset_s: 200.0,
                seconds: 30.0,
            },
        ],
    );
    let addr = free_addr();
    let config = config_toml(addr, &data, "", &camera_toml("cam", "rtsp://127.0.0.1:1/x"));
    let mut node = Node::start(dir.path(), &config, addr);
    let token = node.token();

    // Bad requests first.
    let ex = node.url("/api/v1/exports");
    let bad = |body: serde_json::Value| post_json(&ex, &body, Some(&token));
    assert_eq!(
        bad(json!({"camera": "cam", "start": at(base, 10.0), "end": at(base, 20.0)})).0,
        400,
        "reason is required"
    );
    assert_eq!(
        bad(json!({"camera": "cam", "start": at(base, 10.0), "end": at(base, 20.0), "reason": "  "})).0,
        400
    );
    assert_eq!(
        bad(json!({"camera": "nope", "start": at(base, 10.0), "end": at(base, 20.0), "reason": "x"})).0,
        404
    );
    assert_eq!(
        bad(json!({"camera": "cam", "start": at(base, 20.0), "end": at(base, 10.0), "reason": "x"})).0,
        400
    );
    assert_eq!(
        bad(json!({"camera": "cam", "start": at(base, 900.0), "end": at(base, 990.0), "reason": "x"})).0,
        404
    );
    assert_eq!(post_json(&ex, &json!({}), None).0, 401);

    // 30 s .. 225 s: across segment boundaries, a 10 s gap and a codec change.
    let (status, job) = bad(
        json!({"camera": "cam", "start": at(base, 30.0), "end": at(base, 225.0), "reason": "case 2026-1123: theft at the east gate"}),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let mut done = serde_json::Value::Null;
    assert!(wait_until(Duration::from_secs(60), || {
        done = node.get(&format!("/api/v1/exports/{id}")).1;
        done["status"] == "done" || done["status"] == "failed"
    }));
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["progress"], 1.0);
    let files = done["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "one file per codec: {done}");
    assert_eq!(done["gaps"].as_array().unwrap().len(), 1, "{done}");

    // Download with a media token bound to the camera and the export action.
    let (_, mt) = post_json(
        &node.url("/api/v1/cameras/cam/media-token"),
        &json!({"action": "export"}),
        Some(&token),
    );
    let url = node.url(&format!(
        "/api/v1/exports/{id}/download?token={}",
        mt["token"].as_str().unwrap()
    ));
    let mut resp = ureq::get(&url).call().unwrap();
    assert_eq!(resp.headers().get("content-type").unwrap(), "application/zip");
    let zip_bytes = resp.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
    let (_, wrong) = post_json(
        &node.url("/api/v1/cameras/cam/media-token"),
        &json!({"action": "playback"}),
        Some(&token),
    );
    let wrong_url = node.url(&format!(
        "/api/v1/exports/{id}/download?token={}",
        wrong["token"].as_str().unwrap()
    ));
    assert_eq!(
        get_json(&wrong_url, None).0,
        401,
        "a playback token does not download exports"
    );
    let pkg = dir.path().join("package.zip");
    std::fs::write(&pkg, &zip_bytes).unwrap();

    let (ok, out) = verify(&pkg, None);
    assert!(ok, "{out}");
    assert!(out.contains("intact: 2 file(s)"), "{out}");
    assert!(out.contains("case 2026-1123: theft at the east gate"), "{out}");

    // The files inside are standard MP4s of what was asked for.
    let folder = dir.path().join("extracted");
    unzip(&pkg, &folder);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["requested"]["start"].as_str().map(parse_time),
        Some(base + 30_000_000)
    );
    assert_eq!(manifest["exported_by"], "admin");
    let names: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    let d1 = duration(&folder.join(&names[0]));
    let d2 = duration(&folder.join(&names[1]));
    // 30..150 and 160..200 of H.264 (gap collapsed), then 200..225 of H.265.
    assert!((d1 - 160.0).abs() <= 0.04, "{d1}");
    assert!((d2 - 25.0).abs() <= 0.04, "{d2}");
    for n in &names {
        assert!(decode(folder.join(n).to_str().unwrap()).0.is_empty());
    }
    let (ok, out) = verify(&folder, None);
    assert!(ok, "an extracted folder verifies too: {out}");

    // Pinning the node's key: right key passes, another fails.
    let pubkey = manifest["node"]["public_key"].as_str().unwrap().to_owned();
    assert!(verify(&pkg, Some(&pubkey)).0);
    let (ok, out) = verify(
        &pkg,
        Some("MCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    );
    assert!(!ok && out.contains("not by the trusted key"), "{out}");

    // Tampering, each on a fresh copy, each named.
    let case = |name: &str, change: &dyn Fn(&Path), want: &str| {
        let copy = dir.path().join(format!("t-{name}"));
        unzip(&pkg, &copy);
        change(&copy);
        let (ok, out) = verify(&copy, None);
        assert!(!ok, "{name}: verify must fail:\n{out}");
        assert!(out.contains(want), "{name}: expected {want:?} in:\n{out}");
    };
    case(
        "mp4-byte",
        &|d| flip_byte(&d.join(&names[0]), 5000),
        &format!("file {}: SHA-256", names[0]),
    );
    case(
        "manifest-byte",
        &|d| {
            let p = d.join("manifest.json");
            let t = std::fs::read_to_string(&p).unwrap().replacen("theft", "thEft", 1);
            std::fs::write(p, t).unwrap();
        },
        "signature does not match manifest.json",
    );
    case(
        "removed-file",
        &|d| std::fs::remove_file(d.join(&names[1])).unwrap(),
        &format!("file {} listed in the manifest is missing", names[1]),
    );
    case(
        "added-file",
        &|d| std::fs::write(d.join("extra.mp4"), b"x").unwrap(),
        "file extra.mp4 is not listed in the manifest",
    );
    case(
        "swapped-key",
        &|d| {
            let p = d.join("manifest.json");
            let t = std::fs::read_to_string(&p)
                .unwrap()
                .replace(&pubkey, "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
            std::fs::write(p, t).unwrap();
        },
        "signature does not match",
    );
    case(
        "no-signature",
        &|d| std::fs::remove_file(d.join("manifest.sig")).unwrap(),
        "manifest.sig is missing",
    );
    // A byte flipped inside the zip itself.
    let mut z = zip_bytes.clone();
    let mid = z.len() / 2;
    z[mid] ^= 0x40;
    let bad_zip = dir.path().join("bad.zip");
    std::fs::File::create(&bad_zip).unwrap().write_all(&z).unwrap();
    let (ok, out) = verify(&bad_zip, None);
    assert!(!ok && out.contains("the file was changed"), "{out}");

    // Exports survive a restart.
    assert!(node.terminate().success());
    let mut node = Node::start(dir.path(), &config, addr);
    assert_eq!(node.get(&format!("/api/v1/exports/{id}")).1["status"], "done");
    assert!(node.terminate().success());
}
