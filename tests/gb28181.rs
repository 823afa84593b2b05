//! GB/T 28181 devices as cameras, against a real `sharpeye run`: a third-party device library
//! (gb28181-rs) registers with digest auth, keeps alive, answers the catalog and streams PS over
//! RTP when invited; the node records it, serves it live, and tracks it online and offline.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gb28181_rs::config::Transport as SipTransport;
use gb28181_rs::mock::MockFrameHub;
use gb28181_rs::{AccessUnit, Gb28181Config, Gb28181Server, Nalu};

const PLATFORM: &str = "34020000002000000001";
const DEVICE: &str = "34020000001320000001";
const DEV_PASSWORD: &str = "gb-device-pw";

fn gb_config(listen: SocketAddr, data: &std::path::Path, sip: SocketAddr, media: &str) -> String {
    let cameras = format!(
        "[[cameras]]\nid = \"{DEVICE}\"\nname = \"GB gate\"\nurl = \"gb28181://{DEVICE}\"\ntier = \"key\"\norg = \"test/gb\"\n"
    );
    let base = config_toml(listen, data, "segment = \"4s\"", &cameras);
    format!(
        "{base}\n[gb28181]\nid = \"{PLATFORM}\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"{DEV_PASSWORD}\"\nmedia_transport = \"{media}\"\nkeepalive_interval = \"1s\"\nkeepalive_misses = 3\nrequest_timeout = \"5s\"\n"
    )
}

#[derive(Default)]
struct DeviceCounters {
    registered: AtomicU64,
    started: AtomicU64,
    stopped: AtomicU64,
}

impl gb28181_rs::metrics::MetricsHooks for DeviceCounters {
    fn register_ok(&self) {
        self.registered.fetch_add(1, Ordering::Relaxed);
    }
    fn invite_session_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }
    fn invite_session_stopped(&self) {
        self.stopped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The 240p H.264 fixture as the device library's access units (SPS and PPS before each IDR).
fn access_units() -> Vec<(bool, Vec<Nalu>)> {
    let fixture = camsim::BuiltinFixture::H264_240p.load();
    let params = fixture.params.clone().unwrap();
    let nalu = |d: &[u8]| {
        let t = d[0] & 0x1F;
        Nalu {
            nalu_type: t,
            data: d.to_vec(),
            is_idr: t == 5,
            is_sps: t == 7,
            is_pps: t == 8,
            is_aud: t == 9,
        }
    };
    fixture
        .frames
        .iter()
        .map(|f| {
            let mut nalus = Vec::new();
            if f.key {
                nalus.push(nalu(params.sps()));
                nalus.push(nalu(params.pps()));
            }
            nalus.extend(media::rtp::length_prefixed_nals(&f.avcc).map(nalu));
            (f.key, nalus)
        })
        .collect()
}

/// A device on its own runtime, fed 25 fps until dropped.
struct Device {
    rt: tokio::runtime::Runtime,
    handle: Option<gb28181_rs::ServerHandle>,
    counters: Arc<DeviceCounters>,
    feeder: Option<tokio::task::JoinHandle<()>>,
}

impl Device {
    fn start(sip: SocketAddr, password: &str, transport: SipTransport) -> Device {
        Device::start_with(sip, password, transport, Vec::new())
    }

    fn start_with(
        sip: SocketAddr,
        password: &str,
        transport: SipTransport,
        extra_channels: Vec<gb28181_rs::CatalogChannel>,
    ) -> Device {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let counters = Arc::new(DeviceCounters::default());
        let hub = Arc::new(MockFrameHub::new());
        let cfg = Gb28181Config {
            platform_sip_address: sip.ip().to_string(),
            platform_sip_port: sip.port(),
            sip_domain: "3402000000".into(),
            device_id: DEVICE.into(),
            password: password.into(),
            local_sip_port: free_udp_tcp_addr().port(),
            transport,
            register_interval_secs: 3600,
            heartbeat_interval_secs: 1,
            heartbeat_timeout_count: 3,
            device_name: Some("gb28181-rs camera".into()),
            extra_channels,
            ..Gb28181Config::default()
        };
        // The library binds 0.0.0.0:PORT for UDP and TCP: a port free for TCP a moment ago can
        // be taken for UDP by a parallel test's media socket; try a few.
        let mut cfg = cfg;
        let mut attempt = 0;
        let handle = loop {
            match rt.block_on(
                Gb28181Server::new(cfg.clone(), hub.clone())
                    .with_metrics(counters.clone())
                    .spawn(),
            ) {
                Ok(h) => break h,
                Err(e) if attempt < 5 => {
                    eprintln!("device port {}: {e}; another one", cfg.local_sip_port);
                    attempt += 1;
                    cfg.local_sip_port = free_udp_tcp_addr().port();
                }
                Err(e) => panic!("starting the gb28181-rs device: {e:?}"),
            }
        };
        let units = access_units();
        let feeder = rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            // Capture times on the frame schedule, as an encoder stamps them: the library
            // derives PTS from their differences, and a loaded test machine's late ticks must
            // not become timestamps 1/90000 s apart.
            let t0 = Instant::now();
            for (n, (key, nalus)) in units.iter().cycle().enumerate() {
                tick.tick().await;
                hub.write(AccessUnit {
                    nalus: nalus.clone(),
                    timestamp: t0 + Duration::from_millis(40 * n as u64),
                    is_key_frame: *key,
                });
            }
        });
        Device {
            rt,
            handle: Some(handle),
            counters,
            feeder: Some(feeder),
        }
    }

    /// Stops without unregistering, as a device that loses power.
    fn kill(mut self) {
        if let Some(f) = self.feeder.take() {
            f.abort();
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        self.rt.shutdown_timeout(Duration::from_secs(2));
    }
}

fn camera_status(node: &mut Node) -> String {
    let (_, body) = node.get(&format!("/api/v1/cameras/{DEVICE}"));
    body["status"].as_str().unwrap_or("").to_owned()
}

fn run_device_against_node(media: &str, sip_transport: SipTransport) {
    if !have_ffmpeg() {
        eprintln!("ffmpeg missing: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    let data = dir.path().join("data");
    let mut node = Node::start(dir.path(), &gb_config(addr, &data, sip, media), addr);

    // A wrong password is refused (and named in the log); the right one registers.
    let bad = Device::start(sip, "not-the-password", sip_transport);
    assert!(
        wait_until(Duration::from_secs(15), || node
            .log_text()
            .contains("registration refused")),
        "{}",
        node.log_text()
    );
    bad.kill();
    let device = Device::start(sip, DEV_PASSWORD, sip_transport);
    assert!(
        wait_until(Duration::from_secs(20), || camera_status(&mut node) == "online"),
        "camera did not come online:\n{}",
        node.log_text()
    );
    assert!(device.counters.registered.load(Ordering::Relaxed) >= 1);
    assert!(node.log_text().contains("GB28181 catalog"), "{}", node.log_text());
    // Recorded: a continuous range of several seconds.
    let mut ranges = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            ranges = node.ranges(DEVICE, now_us() - 120_000_000, now_us());
            ranges.last().is_some_and(|r| r.1 - r.0 > 5_000_000)
        }),
        "{ranges:?}\n{}",
        node.log_text()
    );
    // Live: live.mp4 decodes in ffmpeg.
    let token = media_token(&mut node, DEVICE, "live");
    let url = node.url(&format!("/api/v1/cameras/{DEVICE}/live.mp4?token={token}"));
    let (errors, frames) = copy_and_decode(&url, Some(3), &dir.path().join("live.mp4"));
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 50, "{frames} frames in 3 s of 25 fps");
    eprintln!("live.mp4: {frames} frames decoded; recorded {ranges:?}");

    // Keepalive loss (the device dies): offline after interval × misses; its call ends.
    device.kill();
    assert!(
        wait_until(Duration::from_secs(15), || node
            .log_text()
            .contains("GB28181 device offline")),
        "{}",
        node.log_text()
    );
    assert!(wait_until(Duration::from_secs(15), || camera_status(&mut node) != "online"));
    // It comes back: online and recording again.
    let device = Device::start(sip, DEV_PASSWORD, sip_transport);
    assert!(
        wait_until(Duration::from_secs(25), || camera_status(&mut node) == "online"),
        "camera did not come back:\n{}",
        node.log_text()
    );
    // Stopping the node BYEs the device's session.
    let counters = device.counters.clone();
    assert!(node.terminate().success());
    assert!(
        wait_until(Duration::from_secs(5), || counters.stopped.load(Ordering::Relaxed) >= 1),
        "the device saw no BYE"
    );
    device.kill();
    // Every recorded segment decodes.
    let segments = indexed_segments(&data);
    assert!(segments.len() >= 2, "{}", segments.len());
    eprintln!(
        "{} segments, {} frames",
        segments.len(),
        segments.iter().map(|s| s.1.frames).sum::<u64>()
    );
    for (path, rec) in segments {
        let (errors, frames) = decode(path.to_str().unwrap());
        assert!(errors.is_empty(), "{}: {errors}", path.display());
        assert_eq!(frames, rec.frames, "{}", path.display());
    }
}

#[test]
fn gb28181_rs_device_over_udp_signalling_and_tcp_passive_media() {
    run_device_against_node("tcp-passive", SipTransport::Udp);
}

#[test]
fn gb28181_rs_device_over_tcp_signalling_and_udp_media() {
    run_device_against_node("udp", SipTransport::TcpOut);
}

#[test]
fn gb28181_rs_device_with_tcp_active_media() {
    run_device_against_node("tcp-active", SipTransport::Udp);
}

#[test]
fn catalog_channels_become_cameras_live_on_demand() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg missing: skipped");
        return;
    }
    const EXTRA: &str = "34020000001310000002";
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    // No [[cameras]]: everything comes from the device's catalog.
    let config = format!(
        "{}\n[gb28181]\nid = \"{PLATFORM}\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"{DEV_PASSWORD}\"\nkeepalive_interval = \"1s\"\nrecord_discovered = false\norg = \"dalian/gb\"\n",
        config_toml(addr, &dir.path().join("data"), "", "")
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let (_, before) = node.get("/api/v1/cameras");
    assert_eq!(before.as_array().unwrap().len(), 0);
    let channel = gb28181_rs::CatalogChannel {
        device_id: EXTRA.into(),
        name: "北门 channel 2".into(),
        manufacturer: "test".into(),
        model: "sim".into(),
        status: "ON".into(),
        ptz_type: Some(1),
        photoelectric_imaging_type: None,
    };
    let device = Device::start_with(sip, DEV_PASSWORD, SipTransport::Udp, vec![channel]);
    let mut cams = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            cams = node.get("/api/v1/cameras").1;
            cams.as_array().is_some_and(|a| a.len() == 2)
        }),
        "{cams}\n{}",
        node.log_text()
    );
    let extra = cams
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == EXTRA)
        .unwrap()
        .clone();
    assert_eq!(extra["name"], "北门 channel 2");
    assert_eq!(extra["org"], format!("dalian/gb/{DEVICE}"));
    assert_eq!(extra["recording"], false);
    // Live on demand: the first viewer's request INVITEs the channel; ffmpeg decodes it.
    let token = media_token(&mut node, EXTRA, "live");
    let url = node.url(&format!("/api/v1/cameras/{EXTRA}/live.mp4?token={token}"));
    let (errors, frames) = copy_and_decode(&url, Some(2), &dir.path().join("extra.mp4"));
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 25, "{frames}");
    // The viewer left: after the idle time the pull stops and the device gets its BYE.
    let counters = device.counters.clone();
    assert!(
        wait_until(Duration::from_secs(30), || counters.stopped.load(Ordering::Relaxed)
            >= 1),
        "no BYE after the last viewer left:\n{}",
        node.log_text()
    );
    assert!(node.terminate().success());
    device.kill();
}

/// A recording the device holds, served through `playback.mp4?source=device`: our own
/// simulated device (camsim::gbdevice) answers RecordInfo and plays the range back over TCP,
/// ending with MediaStatus 121; the node hangs up and the MP4 decodes.
#[test]
fn device_side_recordings_play_back_through_the_playback_endpoint() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg missing: skipped");
        return;
    }
    const NVR: &str = "34020000001180000001";
    const CH: &str = "34020000001310000001";
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    let cameras =
        format!("[[cameras]]\nid = \"{CH}\"\nurl = \"gb28181://{NVR}/{CH}\"\nrecord = false\norg = \"test/gb\"\n");
    let config = format!(
        "{}\n[gb28181]\nid = \"{PLATFORM}\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"{DEV_PASSWORD}\"\nrecord_discovered = false\n",
        config_toml(addr, &dir.path().join("data"), "", &cameras)
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = 1_795_000_000i64; // 2026-11-18T08:26:40Z
    let device = rt
        .block_on(camsim::gbdevice::GbDevice::start(camsim::gbdevice::GbDeviceSpec {
            keepalive: Duration::from_secs(5),
            recordings: vec![(base, base + 600), (base + 900, base + 1200)],
            ..gb_device(
                NVR,
                DEV_PASSWORD,
                sip,
                PLATFORM,
                vec![(CH.into(), "NVR channel 1".into())],
            )
        }))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            let (_, d) = node.get("/api/v1/gb28181/devices");
            d["devices"][0]["online"] == true
        }),
        "{}",
        node.log_text()
    );
    // What the device said of itself (DeviceInfo, asked on registration) is in the device list.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (_, d) = node.get("/api/v1/gb28181/devices");
            d["devices"][0]["info"]["manufacturer"] == "camsim" && d["devices"][0]["cameras"][0] == CH
        }),
        "{}",
        node.get("/api/v1/gb28181/devices").1
    );
    // A channel's alarm reaches event listeners as camera.alarm.
    let events = listen(&node.url(""), &node.token(), 3);
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(device.alarm(CH, 1, 2, "周界入侵 intrusion"));
    let got = events.join().unwrap();
    let alarm = got.iter().find(|(k, _)| k == "camera.alarm").map(|(_, d)| d.clone());
    let alarm = alarm.unwrap_or_else(|| panic!("no camera.alarm in {got:?}"));
    assert_eq!(alarm["camera"], CH);
    assert_eq!(alarm["priority"], 1);
    assert_eq!(alarm["description"], "周界入侵 intrusion");
    let window = format!(
        "start={}&end={}",
        rfc3339(base * 1_000_000 - 3_600_000_000),
        rfc3339((base + 3600) * 1_000_000)
    );
    let (status, body) = node.get(&format!("/api/v1/cameras/{CH}/device-recordings?{window}"));
    assert_eq!(status, 200, "{body}");
    let recs = body["recordings"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{body}");
    assert_eq!(parse_time(recs[1]["start"].as_str().unwrap()), (base + 900) * 1_000_000);
    // Eight seconds of the first recording, downloaded at 4×.
    let token = media_token(&mut node, CH, "playback");
    let range = format!(
        "start={}&end={}",
        rfc3339((base + 60) * 1_000_000),
        rfc3339((base + 68) * 1_000_000)
    );
    let url = node.url(&format!(
        "/api/v1/cameras/{CH}/playback.mp4?source=device&download=4&{range}&token={token}"
    ));
    let started = std::time::Instant::now();
    let (errors, frames) = copy_and_decode(&url, None, &dir.path().join("device.mp4"));
    let took = started.elapsed();
    assert!(errors.is_empty(), "{errors}");
    // 8 s at 25 fps (the last frame waits for a successor that never comes).
    assert!((195..=200).contains(&frames), "{frames} frames");
    assert!(took < Duration::from_secs(6), "downloaded at 4× in {took:?}");
    // The device said the file was done; the node hung up.
    assert!(wait_until(Duration::from_secs(5), || device
        .stats
        .finished
        .load(Ordering::Relaxed)
        == 1));
    assert!(wait_until(Duration::from_secs(5), || device
        .stats
        .byes
        .load(Ordering::Relaxed)
        == 1));
    // The same range played back (s=Playback) and sped up to 4× with MANSRTSP PLAY Scale.
    let url = node.url(&format!(
        "/api/v1/cameras/{CH}/playback.mp4?source=device&scale=4&{range}&token={token}"
    ));
    let started = std::time::Instant::now();
    let (errors, frames) = copy_and_decode(&url, None, &dir.path().join("device-scaled.mp4"));
    assert!(errors.is_empty(), "{errors}");
    assert!((190..=200).contains(&frames), "{frames} frames");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "scaled playback took {:?}",
        started.elapsed()
    );
    assert_eq!(device.stats.scale_changes.load(Ordering::Relaxed), 1);
    assert!(wait_until(Duration::from_secs(5), || device
        .stats
        .byes
        .load(Ordering::Relaxed)
        == 2));
    // The playback was audited with its source.
    let (_, audit) = node.get("/api/v1/audit?action=playback");
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"]["source"] == "device"),
        "{audit}"
    );
    // Not a device channel, bad parameters: clear errors.
    let (status, _) = get_json(
        &node.url(&format!(
            "/api/v1/cameras/{CH}/playback.mp4?source=nvr&{range}&token={token}"
        )),
        None,
    );
    assert_eq!(status, 400);
    let (status, _) = get_json(
        &node.url(&format!(
            "/api/v1/cameras/{CH}/playback.mp4?source=device&download=99&{range}&token={token}"
        )),
        None,
    );
    assert_eq!(status, 400);
    assert!(node.terminate().success());
    device.kill();
}

/// Hostile SIP over real sockets: garbage, truncated and oversized messages, an unknown
/// device, a wrong password, a stream that never ends its head. Each gets a clear answer (or is
/// dropped), nothing takes the server down, and a real device registers afterwards.
#[test]
fn hostile_sip_gets_clear_answers_and_the_server_stays_up() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sip = free_udp_tcp_addr();
    let config = format!(
        "{}\n[gb28181]\nid = \"{PLATFORM}\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"{DEV_PASSWORD}\"\n",
        config_toml(addr, &dir.path().join("data"), "", "")
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let ask = |msg: &[u8]| -> Option<String> {
        udp.send_to(msg, sip).unwrap();
        let mut buf = [0u8; 65536];
        udp.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let head = |method: &str, branch: &str, extra: &str| {
        format!(
            "{method} sip:{PLATFORM}@3402000000 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{branch}\r\nFrom: <sip:{DEVICE}@3402000000>;tag=x\r\nTo: <sip:{DEVICE}@3402000000>\r\nCall-ID: {branch}\r\nCSeq: 1 {method}\r\n{extra}",
            udp.local_addr().unwrap()
        )
    };
    // Bytes that are no SIP at all, and a head without a start line: dropped, no answer.
    assert_eq!(ask(&[0xff, 0x00, 0x13, 0x37, 0x80, 0x81]), None);
    assert_eq!(ask(b"hello\r\n\r\n"), None);
    // A keepalive from a device that never registered: 404, so that it registers.
    let body = format!(
        "<?xml version=\"1.0\"?><Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>{DEVICE}</DeviceID></Notify>"
    );
    let r = ask(format!(
        "{}Content-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n{body}",
        head("MESSAGE", "k1", ""),
        body.len()
    )
    .as_bytes())
    .unwrap();
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    // A huge Content-Length: refused by the parser (no answer: the datagram is not a message).
    assert_eq!(
        ask(format!("{}Content-Length: 99999999\r\n\r\nx", head("MESSAGE", "k2", "")).as_bytes()),
        None
    );
    // GB2312 bytes declared as UTF-8, from an unknown device: still a clean 404.
    let mut gb = head("MESSAGE", "k3", "Content-Type: Application/MANSCDP+xml\r\n").into_bytes();
    let xml = encoding_rs::GB18030.encode("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Notify><CmdType>Keepalive</CmdType><SN>2</SN><DeviceID>东门</DeviceID></Notify>").0;
    gb.extend_from_slice(format!("Content-Length: {}\r\n\r\n", xml.len()).as_bytes());
    gb.extend_from_slice(&xml);
    assert!(ask(&gb).unwrap().starts_with("SIP/2.0 404"));
    // A REGISTER with a forged digest: challenged again; with a malformed one: 400.
    let r = ask(format!("{}Authorization: Digest username=\"{DEVICE}\", nonce=\"made-up\", uri=\"sip:x\", response=\"00\"\r\nContent-Length: 0\r\n\r\n", head("REGISTER", "r1", "")).as_bytes()).unwrap();
    assert!(r.starts_with("SIP/2.0 401") && r.contains("algorithm=MD5"), "{r}");
    let r = ask(format!(
        "{}Authorization: Digest username=\"unterminated\r\nContent-Length: 0\r\n\r\n",
        head("REGISTER", "r2", "")
    )
    .as_bytes())
    .unwrap();
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    // A request with no Call-ID: 400.
    let r = ask(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKo\r\nFrom: <sip:a@b>;tag=1\r\nCSeq: 1 OPTIONS\r\n\r\n").unwrap();
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    // TCP: a head that never ends is cut off; a real REGISTER on a new connection is answered.
    let mut tcp = std::net::TcpStream::connect(sip).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let junk = vec![b'A'; 40_000];
    let _ = tcp.write_all(&junk);
    let mut buf = [0u8; 16];
    let closed = matches!(std::io::Read::read(&mut tcp, &mut buf), Ok(0) | Err(_));
    assert!(closed, "the server kept a connection that sent 40 KB without a message");
    let mut tcp = std::net::TcpStream::connect(sip).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(
        format!(
            "{}Content-Length: 0\r\n\r\n",
            head("REGISTER", "t1", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = [0u8; 2048];
    let n = std::io::Read::read(&mut tcp, &mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("SIP/2.0 401"));
    // After all that, a device registers and its channel is a camera.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device = rt
        .block_on(camsim::gbdevice::GbDevice::start(camsim::gbdevice::GbDeviceSpec {
            keepalive: Duration::from_secs(5),
            ..gb_device(DEVICE, DEV_PASSWORD, sip, PLATFORM, Vec::new())
        }))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || node
            .get("/api/v1/cameras")
            .1
            .as_array()
            .is_some_and(|a| a.len() == 1)),
        "{}",
        node.log_text()
    );
    assert!(node.terminate().success());
    device.kill();
}
