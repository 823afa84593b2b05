//! GB/T 28181 signalling against sipp, an independent SIP implementation, running the shared
//! scripted device (`../shared/peers/sipp/device_uac.xml`, with `ooc_device.xml` for requests
//! outside its call): REGISTER with digest, keepalive, catalog query and answer, live INVITE,
//! ACK and BYE must all complete, or sipp exits non-zero. Our own scenario
//! (`tests/sipp/device_records_ptz.xml`) answers RecordInfo in two messages and checks the
//! exact PTZ command the API sends.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

const DEVICE: &str = "34020000001320000001";

fn sipp_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/sipp");
    dir.join("device_uac.xml").exists().then_some(dir)
}

fn have_sipp() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn sipp_device_registers_keeps_alive_answers_the_catalog_and_is_invited() {
    let (Some(scenarios), true) = (sipp_dir(), have_sipp()) else {
        // CI installs sip-tester and has ../shared; a bare checkout may have neither.
        eprintln!("sipp or the shared scenarios are missing: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    let cameras = format!("[[cameras]]\nid = \"{DEVICE}\"\nurl = \"gb28181://{DEVICE}\"\norg = \"test/gb\"\n");
    let config = format!(
        "{}\n[gb28181]\nid = \"34020000002000000001\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"12345678\"\nmedia_transport = \"udp\"\nrequest_timeout = \"5s\"\n\n[[gb28181.devices]]\nid = \"{DEVICE}\"\n# sipp routes every request by the registration's Call-ID, and its script expects no\n# queries but the catalog.\ncall_id = \"registration\"\ndevice_info = false\n",
        config_with(addr, &dir.path().join("data"), "", "watchdog = \"2s\"", &cameras)
    );
    let node = Node::start(dir.path(), &config, addr);
    let port = free_udp_tcp_addr().port();
    let started = Instant::now();
    let out = Command::new("sipp")
        .current_dir(dir.path())
        .args(["-sf"])
        .arg(scenarios.join("device_uac.xml"))
        .args(["-oocsf"])
        .arg(scenarios.join("ooc_device.xml"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-s", "34020000002000000001", "-au", DEVICE, "-ap", "12345678"])
        .args(["-m", "1", "-timeout", "40s", "-timeout_error", "-nostdin", "-trace_err"])
        .arg(sip.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let errors = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("errors"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        out.status.success(),
        "sipp exited {:?} after {:?}\nstderr: {}\nerrors: {errors}\nnode:\n{}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr),
        node.log_text()
    );
    let log = node.log_text();
    assert!(log.contains("GB28181 device registered"), "{log}");
    assert!(log.contains("channels=1"), "the catalog's one item arrived:\n{log}");
    assert!(log.contains("GB28181 session answered"), "{log}");
    // sipp sends no media: the watchdog ends the session, and the BYE is what let sipp finish.
    assert!(log.contains("no video from device"), "{log}");
    assert!(node.terminate().success());
}

#[test]
fn device_recordings_are_gathered_and_ptz_commands_are_exact() {
    if !have_sipp() {
        eprintln!("sipp missing: skipped");
        return;
    }
    const NVR: &str = "34020000001320000009";
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/device_records_ptz.xml");
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    let cameras =
        format!("[[cameras]]\nid = \"{NVR}\"\nurl = \"gb28181://{NVR}\"\nrecord = false\norg = \"test/gb\"\n");
    let config = format!(
        "{}\n[gb28181]\nid = \"34020000002000000001\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"12345678\"\nrequest_timeout = \"3s\"\n\n[[gb28181.devices]]\nid = \"{NVR}\"\ncall_id = \"registration\"\ndevice_info = false\n",
        config_with(addr, &dir.path().join("data"), "", "", &cameras)
    );
    let mut node = Node::start(dir.path(), &config, addr);
    // Device functions on a camera that is not a device channel, before the device is there.
    let (status, body) = node.get(&format!(
        "/api/v1/cameras/{NVR}/device-recordings?start=2026-11-23T08:00:00%2B08:00&end=2026-11-23T10:00:00%2B08:00"
    ));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "device_offline");
    let port = free_udp_tcp_addr().port();
    let mut sipp = Command::new("sipp")
        .current_dir(dir.path())
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-s", "34020000002000000001", "-au", NVR, "-ap", "12345678"])
        .args(["-m", "1", "-timeout", "60s", "-timeout_error", "-nostdin", "-trace_err"])
        .arg(sip.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(std::time::Duration::from_secs(20), || {
            let (_, d) = node.get("/api/v1/gb28181/devices");
            d["devices"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["id"] == NVR && x["online"] == true))
        }),
        "{}",
        node.log_text()
    );
    // The catalog came before RecordInfo can be asked (sipp answers in order).
    assert!(wait_until(std::time::Duration::from_secs(10), || node
        .log_text()
        .contains("GB28181 catalog")));
    let (status, body) = node.get(&format!(
        "/api/v1/cameras/{NVR}/device-recordings?start=2026-11-23T08:00:00%2B08:00&end=2026-11-23T10:00:00%2B08:00"
    ));
    assert_eq!(status, 200, "{body}\n{}", node.log_text());
    let recs = body["recordings"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "both messages gathered: {body}");
    // Device local time (UTC+8) as UTC, sorted by start.
    assert_eq!(
        parse_time(recs[0]["start"].as_str().unwrap()),
        parse_time("2026-11-23T00:00:00Z")
    );
    assert_eq!(recs[0]["name"], "rec-a");
    assert_eq!(recs[1]["type"], "alarm");
    assert_eq!(recs[1]["file_size"], 2048);
    // PTZ: bad input is refused before anything is sent; the real command is exact (sipp checks).
    let token = node.token();
    let ptz = node.url(&format!("/api/v1/cameras/{NVR}/ptz"));
    let (status, body) = post_json(&ptz, &serde_json::json!({"pan": 5}), Some(&token));
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_raw(&ptz, "application/json", "{\"pan\": 1, \"bogus\": true}", Some(&token));
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_json(&ptz, &serde_json::json!({"pan": 1, "speed": 64}), Some(&token));
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = sipp.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed().as_secs() < 30, "sipp did not finish");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(sipp.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "sipp: {status:?} {err}\n{}", node.log_text());
    // PTZ is audited.
    let (_, audit) = node.get("/api/v1/audit?action=ptz");
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
    assert!(node.terminate().success());
}
