//! GB/T 28181 signalling against sipp, an independent SIP implementation, running the shared
//! scripted device (`../shared/peers/sipp/device_uac.xml`, with `ooc_device.xml` for requests
//! outside its call): REGISTER with digest, keepalive, catalog query and answer, live INVITE,
//! ACK and BYE must all complete, or sipp exits non-zero.

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
    let sip = free_addr();
    let cameras = format!("[[cameras]]\nid = \"{DEVICE}\"\nurl = \"gb28181://{DEVICE}\"\norg = \"test/gb\"\n");
    let config = format!(
        "{}\n[gb28181]\nid = \"34020000002000000001\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"12345678\"\nmedia_transport = \"udp\"\nrequest_timeout = \"5s\"\n\n[[gb28181.devices]]\nid = \"{DEVICE}\"\n# sipp routes every request by the registration's Call-ID.\ncall_id = \"registration\"\n",
        config_with(addr, &dir.path().join("data"), "", "watchdog = \"2s\"", &cameras)
    );
    let node = Node::start(dir.path(), &config, addr);
    let port = free_addr().port();
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
