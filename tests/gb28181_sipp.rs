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

/// sipp as a foreign upper platform (`tests/sipp/upper_cascade.xml`): our node registers with
/// digest, keeps alive, answers the catalog (checked here field by field from sipp's message
/// trace), answers a live INVITE with a valid SDP (`y=` echoed, PS), sends PS over RTP to the
/// offered port — demuxed and decoded by ffmpeg — and stops on BYE.
#[test]
fn sipp_upper_platform_gets_our_catalog_and_live_ps() {
    if !have_sipp() || !have_ffmpeg() {
        eprintln!("sipp or ffmpeg missing: skipped");
        return;
    }
    const OWN: &str = "34020000002000000010";
    const UPPER: &str = "34020000002000000001";
    const CAM: &str = "34020000001320000001";
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/upper_cascade.xml");
    let sim = Sim::start(vec![
        camsim::CameraSpec::new(CAM, camsim::BuiltinFixture::H264_240p.load()),
        camsim::CameraSpec::new("private", camsim::BuiltinFixture::H264_240p.load()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    let upper_port = free_udp_tcp_addr().port();
    let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    media
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let media_port = media.local_addr().unwrap().port();
    let cameras = format!(
        "[[cameras]]\nid = \"{CAM}\"\nname = \"Gate\"\nurl = \"{}\"\norg = \"xigang\"\n\n[[cameras]]\nid = \"private\"\nurl = \"{}\"\norg = \"elsewhere\"\n",
        sim.url(CAM),
        sim.url("private")
    );
    let config = format!(
        "[node]\nid = \"street\"\nname = \"Street\"\nlevel = \"street\"\n\n{}\n[gb28181]\nid = \"{OWN}\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"device-pw\"\n\n[[gb28181.upper]]\nid = \"{UPPER}\"\ndomain = \"3402000000\"\naddress = \"127.0.0.1:{upper_port}\"\npassword = \"12345678\"\nshare = [\"org:xigang\"]\ncall_id = \"registration\"\n",
        config_with(addr, &dir.path().join("data"), "", "", &cameras)
    );
    let messages = dir.path().join("sipp-messages.log");
    let mut sipp = Command::new("sipp")
        .current_dir(dir.path())
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &upper_port.to_string()])
        .args(["-key", "ps_port", &media_port.to_string()])
        .args([
            "-m",
            "1",
            "-timeout",
            "40s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-trace_msg",
        ])
        .arg("-message_file")
        .arg(&messages)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let node = Node::start(dir.path(), &config, addr);
    // Collect RTP until sipp is done (it hangs up 4 s after the ACK).
    let mut packets: Vec<(Instant, Vec<u8>)> = Vec::new();
    let started = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let status = loop {
        if let Ok((n, _)) = media.recv_from(&mut buf) {
            packets.push((Instant::now(), buf[..n].to_vec()));
        }
        if let Some(s) = sipp.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed().as_secs() < 45, "sipp did not finish");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(sipp.stderr.as_mut().unwrap(), &mut err).unwrap();
    let trace = std::fs::read_to_string(&messages).unwrap_or_default();
    assert!(status.success(), "sipp: {status:?} {err}\n{trace}\n{}", node.log_text());
    let bye_at = Instant::now();

    // The catalog, field by field: one business group under us, one virtual organisation
    // under it, the one shared channel under that; SumNum 3; the private camera absent.
    let bodies: Vec<&str> = trace
        .split("<Response>")
        .skip(1)
        .filter(|b| b.contains("<CmdType>Catalog</CmdType>"))
        .map(|b| b.split("</Response>").next().unwrap_or(b))
        .collect();
    assert_eq!(bodies.len(), 2, "the catalog paged by size into two messages:\n{trace}");
    let items: Vec<&str> = bodies.iter().flat_map(|b| b.split("<Item>").skip(1)).collect();
    let body = bodies.concat();
    assert!(bodies.iter().all(|b| b.contains("<SumNum>3</SumNum>")), "{body}");
    let field = |item: &str, tag: &str| -> String {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        item.split_once(open.as_str())
            .and_then(|(_, r)| r.split_once(close.as_str()))
            .map(|(v, _)| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(items.len(), 3, "{body}");
    assert!(!body.contains("private"), "{body}");
    let kind = |item: &str| field(item, "DeviceID").get(10..13).unwrap_or("").to_owned();
    let group = items.iter().find(|i| kind(i) == "215").expect("a business group");
    let org = items.iter().find(|i| kind(i) == "216").expect("a virtual organisation");
    let channel = items.iter().find(|i| field(i, "DeviceID") == CAM).expect("the channel");
    let (group_id, org_id) = (field(group, "DeviceID"), field(org, "DeviceID"));
    assert!(group_id.starts_with("3402000000") && group_id.len() == 20, "{group_id}");
    assert_eq!(field(group, "ParentID"), OWN);
    assert_eq!(field(group, "Name"), "Street");
    assert_eq!(field(org, "ParentID"), group_id);
    assert_eq!(field(org, "BusinessGroupID"), group_id);
    assert_eq!(field(org, "Name"), "xigang");
    assert_eq!(field(channel, "ParentID"), org_id);
    assert_eq!(field(channel, "Name"), "Gate");
    // The camera may still be connecting when the catalog is asked, a second after start.
    assert!(["ON", "OFF"].contains(&field(channel, "Status").as_str()), "{channel}");
    assert_eq!(field(channel, "Parental"), "0");

    // The answer's SDP is valid: PS, our real port, the offer's SSRC (sipp checked y= too).
    let answer = trace
        .split("SIP/2.0 200 OK")
        .find(|m| m.contains("s=Play"))
        .unwrap_or_else(|| panic!("no INVITE answer in the trace:\n{trace}"));
    assert!(
        answer.contains("y=0200000001") && !answer.contains("y=null"),
        "{answer}"
    );
    assert!(!answer.contains("m=video 0 "), "{answer}");

    // PS over RTP reached the offered port, SSRC 200000001; ffmpeg decodes the PS stream.
    assert!(
        packets.len() > 50,
        "{} RTP packets\n{}\n{trace}",
        packets.len(),
        node.log_text()
    );
    let mut ps = Vec::new();
    for (_, p) in &packets {
        assert!(p.len() > 12 && p[0] >> 6 == 2, "not RTP");
        assert_eq!(p[1] & 0x7f, 96, "payload type");
        assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), 200_000_001, "SSRC");
        let cc = usize::from(p[0] & 0x0f);
        ps.extend_from_slice(&p[12 + 4 * cc..]);
    }
    let out = dir.path().join("upper.ps");
    std::fs::write(&out, &ps).unwrap();
    let (errors, frames) = decode_args(&["-f", "mpeg", "-i", out.to_str().unwrap()]);
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 50, "{frames} frames decoded from the PS");

    // BYE stopped the media.
    let mut late = 0;
    while bye_at.elapsed() < std::time::Duration::from_millis(1500) {
        if media.recv_from(&mut buf).is_ok() && bye_at.elapsed() > std::time::Duration::from_millis(500) {
            late += 1;
        }
    }
    assert_eq!(late, 0, "RTP still arriving after the BYE");
    let (_, uppers) = {
        let mut node = node;
        let u = node.get("/api/v1/gb28181/uppers");
        assert!(node.terminate().success());
        u
    };
    assert_eq!(uppers["uppers"][0]["registered"], true, "{uppers}");
    assert_eq!(uppers["uppers"][0]["sessions"], 0, "{uppers}");
    drop(sim);
}
