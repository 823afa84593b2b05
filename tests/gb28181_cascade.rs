//! GB/T 28181 cascade between two real Sharpeye nodes: node A (a street, the lower platform)
//! registers to node B (the district, the upper platform) over SIP and shares three of its five
//! cameras; B adopts them under A's org nodes, watches them live as PS over RTP (one session at
//! A whatever the number of viewers at B), lists and plays back A's recordings, is refused what
//! A does not share, and follows A through a restart.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const A_ID: &str = "21020000002000000010";
const B_ID: &str = "21020000002000000001";
const CASCADE_PW: &str = "cascade-pw-1";
/// Shared with B (org `dalian/xigang/...`).
const SHARED: [&str; 3] = ["21020000001320000001", "21020000001320000002", "21020000001320000003"];
/// Not shared (org `dalian/shahekou`).
const PRIVATE: [&str; 2] = ["21020000001320000004", "21020000001320000005"];

fn sim() -> Sim {
    Sim::start(
        SHARED
            .iter()
            .chain(PRIVATE.iter())
            .map(|c| camsim::CameraSpec::new(*c, camsim::BuiltinFixture::H264_240p.load()))
            .collect(),
    )
}

/// A: five recorded cameras, an upper link to B sharing `org:dalian/xigang`.
fn lower_config(addr: SocketAddr, data: &Path, sip: SocketAddr, upper_sip: SocketAddr, sim: &Sim) -> String {
    let orgs = [
        "dalian/xigang/renmin",
        "dalian/xigang/renmin",
        "dalian/xigang/bayi",
        "dalian/shahekou",
        "dalian/shahekou",
    ];
    let cams: String = SHARED
        .iter()
        .chain(PRIVATE.iter())
        .zip(orgs)
        .map(|(id, org)| {
            format!(
                "[[cameras]]\nid = \"{id}\"\nname = \"cam {id}\"\nurl = \"{}\"\ntier = \"standard\"\norg = \"{org}\"\n\n",
                sim.url(id)
            )
        })
        .collect();
    let base = config_toml(addr, data, "segment = \"2s\"", &cams);
    format!(
        "[node]\nid = \"street-a\"\nname = \"Xigang street\"\nlevel = \"street\"\n\n{base}\n[gb28181]\nid = \"{A_ID}\"\ndomain = \"2102000000\"\nlisten = \"{sip}\"\npassword = \"device-pw\"\n\n[[gb28181.upper]]\nid = \"{B_ID}\"\ndomain = \"2102000000\"\naddress = \"{upper_sip}\"\ntransport = \"udp\"\npassword = \"{CASCADE_PW}\"\nkeepalive = \"1s\"\nshare = [\"org:dalian/xigang\"]\n"
    )
}

/// B: no cameras of its own but one configured channel of A that A does not share; adopts what
/// A's catalog lists, on demand, under `city/gb/<A>/...`.
fn upper_config(addr: SocketAddr, data: &Path, sip: SocketAddr, media: &str) -> String {
    let cams = format!(
        "[[cameras]]\nid = \"{}\"\nname = \"not shared\"\nurl = \"gb28181://{A_ID}/{}\"\nrecord = false\norg = \"city/manual\"\n",
        PRIVATE[0], PRIVATE[0]
    );
    let base = config_toml(addr, data, "", &cams);
    format!(
        "[node]\nid = \"district-b\"\nname = \"District\"\nlevel = \"district\"\n\n{base}\n[gb28181]\nid = \"{B_ID}\"\ndomain = \"2102000000\"\nlisten = \"{sip}\"\npassword = \"{CASCADE_PW}\"\nmedia_transport = \"{media}\"\nkeepalive_interval = \"1s\"\nkeepalive_misses = 3\nrequest_timeout = \"5s\"\nrecord_discovered = false\norg = \"city/gb\"\n"
    )
}

fn adopted(node: &mut Node) -> Vec<Value> {
    let (_, cams) = node.get("/api/v1/cameras");
    cams.as_array()
        .map(|a| a.iter().filter(|c| c["id"] != PRIVATE[0]).cloned().collect())
        .unwrap_or_default()
}

fn status(node: &mut Node, camera: &str) -> String {
    node.get(&format!("/api/v1/cameras/{camera}")).1["status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn upper_sessions(a: &mut Node) -> i64 {
    let (_, u) = a.get("/api/v1/gb28181/uppers");
    u["uppers"][0]["sessions"].as_i64().unwrap_or(-1)
}

/// A pair: camsim, A (with `synth` recorded before it starts) and B; returns once B lists
/// A's shared cameras.
struct Pair {
    sim: Sim,
    a: Node,
    b: Node,
    a_config: String,
    a_addr: SocketAddr,
    // After the nodes: their logs are printed from their drops when a test fails.
    dir: tempfile::TempDir,
}

fn pair(media: &str, synth: Option<i64>) -> Pair {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    if let Some(base_us) = synth {
        synthesize(
            &a_dir.join("data"),
            base_us,
            4,
            &[Stretch {
                camera: SHARED[0],
                fixture: camsim::BuiltinFixture::H264_240p,
                offset_s: 0.0,
                seconds: 70.0,
            }],
        );
    }
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let (a_sip, b_sip) = (free_udp_tcp_addr(), free_udp_tcp_addr());
    let mut b = Node::start(&b_dir, &upper_config(b_addr, &b_dir.join("data"), b_sip, media), b_addr);
    let a_config = lower_config(a_addr, &a_dir.join("data"), a_sip, b_sip, &sim);
    let a = Node::start(&a_dir, &a_config, a_addr);
    let mut cams = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            cams = adopted(&mut b);
            cams.len() >= 3
        }),
        "B did not adopt A's cameras: {cams:?}\nA:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    Pair {
        sim,
        dir,
        a,
        b,
        a_config,
        a_addr,
    }
}

#[test]
fn a_street_node_cascades_to_a_district_node_over_gb28181() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg missing: skipped");
        return;
    }
    let base_us = (now_us() / 1_000_000 - 900) * 1_000_000;
    let Pair {
        sim,
        dir,
        mut a,
        mut b,
        a_config,
        a_addr,
    } = pair("tcp-passive", Some(base_us));

    // Exactly the shared three, under A's org nodes (A's node name, then its org path).
    let cams = adopted(&mut b);
    let ids: BTreeSet<&str> = cams.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, SHARED.iter().copied().collect(), "{cams:?}");
    let org_of = |id: &str| {
        cams.iter().find(|c| c["id"] == id).unwrap()["org"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        org_of(SHARED[0]),
        format!("city/gb/{A_ID}/Xigang street/dalian/xigang/renmin")
    );
    assert_eq!(
        org_of(SHARED[2]),
        format!("city/gb/{A_ID}/Xigang street/dalian/xigang/bayi")
    );
    assert!(
        cams.iter().all(|c| c["recording"] == false),
        "B never records them: {cams:?}"
    );
    // Online as A's catalog (or its change notifications, once A's cameras are up) says.
    for id in SHARED {
        assert!(
            wait_until(Duration::from_secs(20), || status(&mut b, id) == "online"),
            "{id} is {} at B\nB:\n{}",
            status(&mut b, id),
            b.log_text()
        );
    }
    let (_, uppers) = a.get("/api/v1/gb28181/uppers");
    assert_eq!(uppers["uppers"][0]["registered"], true, "{uppers}");
    assert_eq!(uppers["uppers"][0]["shared"], 3, "{uppers}");

    // Live at B: PS over RTP from A, remuxed to fMP4, decodes in ffmpeg.
    let token = media_token(&mut b, SHARED[1], "live");
    let live = b.url(&format!("/api/v1/cameras/{}/live.mp4?token={token}", SHARED[1]));
    let (errors, frames) = copy_and_decode(&live, Some(2), &dir.path().join("live.mp4"));
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 25, "{frames} frames");

    // Ten viewers at B cost one session at A (and A's one pull of the camera).
    let readers: Vec<_> = (0..10).map(|_| watch(live.clone(), Duration::from_secs(5))).collect();
    let mut seen = BTreeSet::new();
    let watch_until = Instant::now() + Duration::from_secs(4);
    std::thread::sleep(Duration::from_millis(1500));
    while Instant::now() < watch_until {
        seen.insert(upper_sessions(&mut a));
        std::thread::sleep(Duration::from_millis(200));
    }
    let bytes: Vec<usize> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(bytes.iter().all(|b| *b > 10_000), "every viewer got video: {bytes:?}");
    assert_eq!(seen, BTreeSet::from([1]), "sessions at A while 10 watched at B");
    assert_eq!(sim.cam(SHARED[1]).active_sessions(), 1, "A pulls the camera once");

    // RecordInfo from B lists A's recordings of the channel.
    let window = format!("start={}&end={}", at(base_us, -60.0), at(base_us, 600.0));
    let (st, recs) = b.get(&format!("/api/v1/cameras/{}/device-recordings?{window}", SHARED[0]));
    assert_eq!(st, 200, "{recs}");
    let list = recs["recordings"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{recs}");
    let (s, e) = (
        parse_time(list[0]["start"].as_str().unwrap()),
        parse_time(list[0]["end"].as_str().unwrap()),
    );
    assert!((s - base_us).abs() <= 1_000_000, "{recs}");
    assert!((e - (base_us + 70_000_000)).abs() <= 2_000_000, "{recs}");

    // 60 s of A's recording played back at B over PS (s=Playback, sped up by MANSRTSP Scale),
    // then downloaded at 4× (s=Download): both decode to 60 s (± one frame).
    let ptoken = media_token(&mut b, SHARED[0], "playback");
    let range = format!("start={}&end={}", at(base_us, 5.0), at(base_us, 65.0));
    // The download must take at most a third of real time (20 s); the played-back one is paced
    // by MANSRTSP Scale 4, which the test allows more slack on a loaded machine.
    for (what, mode, out, limit) in [
        ("playback", "scale=4", "playback.mp4", 30),
        ("download", "download=4", "download.mp4", 20),
    ] {
        let url = b.url(&format!(
            "/api/v1/cameras/{}/playback.mp4?source=device&{mode}&{range}&token={ptoken}",
            SHARED[0]
        ));
        let started = Instant::now();
        let (errors, frames) = copy_and_decode(&url, None, &dir.path().join(out));
        let took = started.elapsed();
        assert!(errors.is_empty(), "{what}: {errors}");
        assert!((1499..=1501).contains(&frames), "{what}: {frames} frames");
        let d = duration(&dir.path().join(out));
        assert!((d - 60.0).abs() <= 0.041, "{what}: {d} s");
        assert!(took <= Duration::from_secs(limit), "{what} at 4× took {took:?}");
    }

    // A channel A does not share: A answers B's INVITE 404, B's viewer gets an error.
    let ntoken = media_token(&mut b, PRIVATE[0], "live");
    let url = b.url(&format!("/api/v1/cameras/{}/live.mp4?token={ntoken}", PRIVATE[0]));
    let st = agent()
        .get(&url)
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| match e {
            ureq::Error::StatusCode(c) => c,
            _ => 0,
        });
    assert!(st >= 400, "a non-shared channel was served ({st})");
    assert!(
        wait_until(Duration::from_secs(5), || a.log_text().contains("INVITE refused")),
        "{}",
        a.log_text()
    );

    // A restarts: B sees its channels offline, then online again, none twice.
    assert!(a.terminate().success());
    assert!(
        wait_until(Duration::from_secs(15), || status(&mut b, SHARED[0]) == "offline"),
        "B still shows {} as {}",
        SHARED[0],
        status(&mut b, SHARED[0])
    );
    let a_dir = dir.path().join("a");
    let a = Node::start(&a_dir, &a_config, a_addr);
    assert!(
        wait_until(Duration::from_secs(30), || SHARED
            .iter()
            .all(|id| status(&mut b, id) == "online")),
        "B:\n{}",
        b.log_text()
    );
    let (_, all) = b.get("/api/v1/cameras");
    let all = all.as_array().unwrap().clone();
    let ids: Vec<&str> = all.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 4, "three adopted and one configured, no duplicates: {ids:?}");
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    drop(sim);
}

/// Live video from A to B over the other media transports B may offer: UDP, and TCP with A
/// listening and B connecting (the test above has B listening and A connecting).
#[test]
fn live_cascade_over_udp_and_tcp_active() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg missing: skipped");
        return;
    }
    // B's choice, and what it means from A's side.
    for (media, at_a) in [("udp", "udp"), ("tcp-active", "tcp-passive")] {
        let Pair {
            sim, dir, mut a, mut b, ..
        } = pair(media, None);
        assert!(
            wait_until(Duration::from_secs(20), || status(&mut b, SHARED[2]) == "online"),
            "{media}"
        );
        let token = media_token(&mut b, SHARED[2], "live");
        let live = b.url(&format!("/api/v1/cameras/{}/live.mp4?token={token}", SHARED[2]));
        let (errors, frames) = copy_and_decode(&live, Some(2), &dir.path().join("live.mp4"));
        assert!(errors.is_empty(), "{media}: {errors}\nA:\n{}", a.log_text());
        assert!(frames >= 25, "{media}: {frames} frames");
        let accepted = a
            .log_text()
            .lines()
            .filter(|l| l.contains("INVITE accepted"))
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert!(
            accepted.iter().any(|l| l.contains(&format!("media=\"{at_a}\""))),
            "{media}: {accepted:?}"
        );
        // The viewer left: B hangs up after its idle time, and A's session ends.
        assert!(
            wait_until(Duration::from_secs(30), || upper_sessions(&mut a) == 0),
            "{media}: A still sends"
        );
        assert!(a.terminate().success());
        assert!(b.terminate().success());
        drop(sim);
    }
}

/// A foreign lower platform with 5,000 channels under three levels of org nodes (our simulated
/// device, answering its catalog in 256 messages): all adopted under the right tree in under
/// ten seconds, with one rebuild of the permission catalog for the whole catalog.
#[test]
fn a_lower_platform_with_5000_channels_is_adopted_under_its_tree() {
    const LOWER: &str = "21020000002000000077";
    const BG: &str = "21020000002150000001";
    let dir = tempfile::tempdir().unwrap();
    let (addr, sip) = (free_addr(), free_udp_tcp_addr());
    let config = upper_config(addr, &dir.path().join("data"), sip, "udp");
    let mut b = Node::start(dir.path(), &config, addr);
    let rebuilds = |b: &mut Node| -> u64 {
        b.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("sharpeye_permission_rebuilds_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let before = rebuilds(&mut b);
    // BG → 10 districts → 10 streets each → 50 channels each.
    let mut groups = vec![(BG.to_owned(), "Lower city".to_owned(), LOWER.to_owned())];
    let mut channels = Vec::new();
    let mut parents = std::collections::HashMap::new();
    for d in 0..10 {
        let district = format!("2102000000216{:07}", 1000 + d);
        groups.push((district.clone(), format!("district {d}"), BG.to_owned()));
        for s in 0..10 {
            let street = format!("2102000000216{:07}", 2000 + d * 10 + s);
            groups.push((street.clone(), format!("street {d}-{s}"), district.clone()));
            for c in 0..50 {
                let id = format!("2102000000131{:07}", (d * 10 + s) * 50 + c);
                parents.insert(id.clone(), street.clone());
                channels.push((id, format!("cam {d}-{s}-{c}")));
            }
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let lower = rt
        .block_on(camsim::gbdevice::GbDevice::start(camsim::gbdevice::GbDeviceSpec {
            groups,
            parents,
            catalog_page: 20,
            ..gb_device(LOWER, CASCADE_PW, sip, B_ID, channels)
        }))
        .unwrap();
    let mut n = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            n = adopted(&mut b).len();
            n == 5000
        }),
        "{n} of 5000 adopted in {:?}\n{}",
        started.elapsed(),
        b.log_text()
    );
    let took = started.elapsed();
    eprintln!("5000 channels adopted in {took:?}");
    let cams = adopted(&mut b);
    let cam = cams.iter().find(|c| c["id"] == "21020000001310004321").unwrap();
    // Channel 4321 = street 86 (district 8, street 6), channel 21.
    assert_eq!(cam["org"], format!("city/gb/{LOWER}/Lower city/district 8/street 8-6"));
    assert_eq!(cam["name"], "cam 8-6-21");
    assert_eq!(cam["status"], "online");
    assert_eq!(rebuilds(&mut b) - before, 1, "one permission rebuild for the catalog");
    // A platform's catalog changes are subscribed to.
    assert!(wait_until(Duration::from_secs(5), || lower
        .stats
        .subscriptions
        .load(std::sync::atomic::Ordering::Relaxed)
        >= 1));
    lower.kill();
    assert!(b.terminate().success());
}

/// A hostile upper platform, scripted here over a raw UDP socket: INVITEs for an unknown
/// channel, without `m=`, with absurd ports, one never ACKed; BYE for a dialog that does not
/// exist; a flood of RecordInfo queries; garbage. Each gets a clear answer, the node stays up,
/// and nothing leaks: no hub viewer, no session and no socket is left behind.
#[test]
fn a_hostile_upper_gets_clear_answers_and_leaks_nothing() {
    use gb28181::sip::{Message, StartLine};
    const CAM: &str = "21020000001320000001";
    let sim = Sim::start(vec![camsim::CameraSpec::new(
        CAM,
        camsim::BuiltinFixture::H264_240p.load(),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let (addr, sip_addr) = (free_addr(), free_udp_tcp_addr());
    let upper = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    upper.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let upper_addr = upper.local_addr().unwrap();
    let cams = format!(
        "[[cameras]]\nid = \"{CAM}\"\nurl = \"{}\"\norg = \"xigang\"\n",
        sim.url(CAM)
    );
    let config = format!(
        "{}\n[gb28181]\nid = \"{A_ID}\"\ndomain = \"2102000000\"\nlisten = \"{sip_addr}\"\npassword = \"device-pw\"\nrecord_discovered = false\norg = \"xigang/gb\"\n\n[[gb28181.upper]]\nid = \"{B_ID}\"\ndomain = \"2102000000\"\naddress = \"{upper_addr}\"\npassword = \"x\"\nkeepalive = \"1s\"\nack_timeout = \"2s\"\nshare = [\"org:xigang\"]\nptz = [\"org:xigang/gb\"]\n",
        config_toml(addr, &dir.path().join("data"), "", &cams)
    );
    let mut node = Node::start(dir.path(), &config, addr);
    let pid = node.child.id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };

    let pump = scripted_upper;
    assert!(
        wait_until(Duration::from_secs(10), || {
            pump(&upper, 200);
            node.get("/api/v1/gb28181/uppers").1["uppers"][0]["registered"] == true
        }),
        "{}",
        node.log_text()
    );
    assert!(wait_until(Duration::from_secs(10), || {
        pump(&upper, 100);
        node.get(&format!("/api/v1/cameras/{CAM}")).1["status"] == "online"
    }));
    // A GB/T 28181 device's channel, adopted here and shared: its alarm is passed up.
    const CH: &str = "21020000001320000002";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device = rt
        .block_on(camsim::gbdevice::GbDevice::start(gb_device(
            "21020000001180000001",
            "device-pw",
            sip_addr,
            A_ID,
            vec![(CH.into(), "NVR channel".into())],
        )))
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        pump(&upper, 100);
        node.get(&format!("/api/v1/cameras/{CH}")).0 == 200
    }));
    rt.block_on(device.alarm(CH, 1, 2, "周界入侵 intrusion"));
    let mut alarm = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            alarm = pump(&upper, 200).into_iter().find(|m| {
                let body = String::from_utf8_lossy(&m.body);
                body.contains("<CmdType>Alarm</CmdType>")
            });
            alarm.is_some()
        }),
        "no alarm passed up\n{}",
        node.log_text()
    );
    let body = gb28181::manscdp::decode_text(&alarm.unwrap().body, gb28181::manscdp::Charset::Gb18030);
    assert!(body.contains(&format!("<DeviceID>{CH}</DeviceID>")), "{body}");
    assert!(
        body.contains("<AlarmPriority>1</AlarmPriority>") && body.contains("周界入侵"),
        "{body}"
    );
    // PTZ from the upper: forwarded to the device's channel (its ptz list covers it), refused
    // for the RTSP camera (not in that list); both audited as the upper, with the end user.
    let ptz = |call: &str, channel: &str| {
        let body = format!(
            "<?xml version=\"1.0\"?>\r\n<Control>\r\n<CmdType>DeviceControl</CmdType>\r\n<SN>77</SN>\r\n<DeviceID>{channel}</DeviceID>\r\n<PTZCmd>A50F010110000026</PTZCmd>\r\n</Control>\r\n"
        );
        format!(
            "MESSAGE sip:{channel}@{sip_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {upper_addr};rport;branch=z9hG4bK{call}\r\nFrom: <sip:{B_ID}@2102000000>;tag=p{call}\r\nTo: <sip:{channel}@2102000000>\r\nCall-ID: {call}\r\nCSeq: 1 MESSAGE\r\nMonitor-User-Identity: dispatcher-7\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    upper.send_to(ptz("ptz-dev", CH).as_bytes(), sip_addr).unwrap();
    upper.send_to(ptz("ptz-rtsp", CAM).as_bytes(), sip_addr).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            pump(&upper, 100);
            device.stats.ptz.load(std::sync::atomic::Ordering::Relaxed) == 1
        }),
        "the PTZ command did not reach the device\n{}",
        node.log_text()
    );
    let mut entries = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        entries = node.get("/api/v1/audit?action=ptz").1["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        entries.len() == 2
    }));
    assert!(
        entries.iter().all(|e| e["actor"] == format!("gb28181:{B_ID}")),
        "{entries:?}"
    );
    assert!(
        entries.iter().any(|e| e["camera"] == CH && e["outcome"] == "ok"),
        "{entries:?}"
    );
    assert!(entries.iter().any(|e| e["outcome"] == "refused"), "{entries:?}");
    assert!(
        entries.iter().all(|e| e["on_behalf_of"] == "dispatcher-7"),
        "{entries:?}"
    );
    let fds_before = fds();
    let mut n = 0;
    let mut request = |method: &str, channel: &str, call: &str, ctype: &str, body: &str| -> Vec<u8> {
        n += 1;
        format!(
            "{method} sip:{channel}@{sip_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {upper_addr};rport;branch=z9hG4bKh{n}\r\nFrom: <sip:{B_ID}@2102000000>;tag=h{call}\r\nTo: <sip:{channel}@2102000000>\r\nCall-ID: {call}\r\nCSeq: {n} {method}\r\nContact: <sip:{B_ID}@{upper_addr}>\r\nMax-Forwards: 70\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let sdp = |port: &str| {
        format!(
            "v=0\r\no={B_ID} 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {port} RTP/AVP 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0200000001\r\n"
        )
    };
    let status_of = |got: &[Message], call: &str| -> Vec<u16> {
        got.iter()
            .filter(|m| m.header("Call-ID") == Some(call))
            .filter_map(|m| match &m.start {
                StartLine::Response { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    };
    let cases: [(&str, &str, String, u16); 5] = [
        ("unknown", "21020000001320009999", sdp("30000"), 404),
        (
            "no-m",
            CAM,
            "v=0\r\no=x 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\ny=0200000001\r\n".into(),
            400,
        ),
        ("port-0", CAM, sdp("0"), 400),
        ("port-huge", CAM, sdp("70000"), 400),
        ("not-a-number", "../../etc/passwd", sdp("30000"), 400),
    ];
    for (call, channel, body, want) in &cases {
        upper
            .send_to(&request("INVITE", channel, call, "APPLICATION/SDP", body), sip_addr)
            .unwrap();
        let got = pump(&upper, 1500);
        let codes = status_of(&got, call);
        assert_eq!(codes.last(), Some(want), "{call}: {codes:?}\n{}", node.log_text());
    }
    // A BYE for a dialog that does not exist.
    upper
        .send_to(&request("BYE", CAM, "nobody", "text/plain", ""), sip_addr)
        .unwrap();
    assert_eq!(status_of(&pump(&upper, 800), "nobody"), [481]);
    // An INVITE answered and never ACKed: dropped after ack_timeout with a BYE to us.
    upper
        .send_to(
            &request("INVITE", CAM, "no-ack", "APPLICATION/SDP", &sdp("30000")),
            sip_addr,
        )
        .unwrap();
    let got = pump(&upper, 4000);
    let codes = status_of(&got, "no-ack");
    assert!(codes.contains(&100) && codes.contains(&200), "{codes:?}");
    assert!(
        got.iter()
            .any(|m| m.method() == Some("BYE") && m.header("Call-ID") == Some("no-ack")),
        "no BYE after the missing ACK\n{}",
        node.log_text()
    );
    // A RecordInfo flood: every query is taken (200), the node stays responsive. (Sent in
    // bursts of 20: over loopback a burst of 300 datagrams overflows socket buffers, ours
    // included, and what is measured would be the kernel's drops.)
    let mut got = Vec::new();
    for i in 0..300 {
        if i % 20 == 0 {
            got.extend(pump(&upper, 30));
        }
        let q = format!(
            "<?xml version=\"1.0\"?>\r\n<Query>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>{i}</SN>\r\n<DeviceID>{CAM}</DeviceID>\r\n<StartTime>2026-11-01T00:00:00</StartTime>\r\n<EndTime>2026-12-31T00:00:00</EndTime>\r\n<Type>all</Type>\r\n</Query>\r\n"
        );
        upper
            .send_to(
                &request("MESSAGE", A_ID, &format!("flood{i}"), "Application/MANSCDP+xml", &q),
                sip_addr,
            )
            .unwrap();
    }
    // Garbage in between.
    for junk in [
        &b"\x00\x01\x02"[..],
        b"INVITE",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0xff; 1400],
    ] {
        upper.send_to(junk, sip_addr).unwrap();
    }
    got.extend(pump(&upper, 3000));
    let taken = got
        .iter()
        .filter(|m| m.header("Call-ID").is_some_and(|c| c.starts_with("flood")) && m.method().is_none())
        .count();
    assert!(taken >= 290, "{taken} of 300 RecordInfo queries answered 200");
    let (st, _) = node.get("/api/v1/health");
    assert_eq!(st, 200);
    // Nothing left behind: no session, no live viewer of the camera, no extra socket.
    assert!(
        wait_until(Duration::from_secs(10), || {
            pump(&upper, 100);
            node.get("/api/v1/gb28181/uppers").1["uppers"][0]["sessions"] == 0
        }),
        "{}",
        node.get("/api/v1/gb28181/uppers").1
    );
    let viewers = node
        .metrics()
        .lines()
        .filter(|l| l.starts_with("sharpeye_live_viewers{") && l.contains(CAM) && l.contains("gb28181"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert_eq!(viewers, 0.0, "hub viewers left");
    assert!(
        wait_until(Duration::from_secs(10), || fds() <= fds_before + 2),
        "sockets leaked: {} before, {} after",
        fds_before,
        fds()
    );
    assert!(node.log_text().lines().all(|l| !l.contains("panicked")));
    assert!(node.terminate().success());
    device.kill();
    drop(sim);
}

/// A lower platform registered with a link budget (`[[gb28181.devices]] link_mbps`): live pulls
/// of its channels count against it; one that does not fit is refused with the reason (no
/// INVITE goes down), and fits again once a pull stops.
#[test]
fn a_lower_platforms_registration_has_a_link_budget() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg missing: skipped");
        return;
    }
    const LOWER: &str = "21020000002000000078";
    let ch = |i: u32| format!("2102000000131000000{i}");
    let dir = tempfile::tempdir().unwrap();
    let (addr, sip) = (free_addr(), free_udp_tcp_addr());
    let config = format!(
        "{}\n[[gb28181.devices]]\nid = \"{LOWER}\"\nlink_mbps = 5\nchannel_mbps = 2\n\n[live]\nidle = \"500ms\"\nstart_timeout = \"3s\"\n",
        upper_config(addr, &dir.path().join("data"), sip, "udp")
    );
    let mut b = Node::start(dir.path(), &config, addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lower = rt
        .block_on(camsim::gbdevice::GbDevice::start(gb_device(
            LOWER,
            CASCADE_PW,
            sip,
            B_ID,
            (1..=3).map(|i| (ch(i), format!("cam {i}"))).collect(),
        )))
        .unwrap();
    assert!(wait_until(Duration::from_secs(15), || adopted(&mut b).len() == 3));
    let url = |b: &mut Node, c: &str| {
        let t = media_token(b, c, "live");
        b.url(&format!("/api/v1/cameras/{c}/live.mp4?token={t}"))
    };
    // Two channels at 2 Mbit/s fill most of the 5 Mbit/s.
    let watchers: Vec<_> = [ch(1), ch(2)]
        .into_iter()
        .map(|c| watch(url(&mut b, &c), Duration::from_secs(5)))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let third = url(&mut b, &ch(3));
    let (status, body) = match agent().get(&third).call() {
        Ok(r) => (r.status().as_u16(), String::new()),
        Err(ureq::Error::StatusCode(c)) => (c, String::new()),
        Err(e) => (0, e.to_string()),
    };
    assert_eq!(status, 503, "{body}");
    let (_, devices) = b.get("/api/v1/gb28181/devices");
    let dev = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == LOWER)
        .unwrap()
        .clone();
    assert_eq!(dev["link"]["pulls"], 2, "{dev}");
    assert!(dev["link"]["refusals"].as_u64().unwrap() >= 1, "{dev}");
    assert_eq!(
        lower.stats.invites.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "no INVITE for the refused one"
    );
    let (_, cam) = b.get(&format!("/api/v1/cameras/{}", ch(3)));
    assert!(
        cam["health"]["main"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("gb28181 device {LOWER}")) && e.contains("link_mbps")),
        "{cam}"
    );
    for w in watchers {
        assert!(w.join().unwrap() > 10_000);
    }
    // The two viewers left; after the idle time their pulls stop and free the link.
    assert!(wait_until(Duration::from_secs(10), || {
        b.get("/api/v1/gb28181/devices").1["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == LOWER && d["link"]["pulls"] == 0)
    }));
    let third = url(&mut b, &ch(3));
    let (errors, frames) = copy_and_decode(&third, Some(1), &dir.path().join("third.mp4"));
    assert!(errors.is_empty() && frames >= 10, "{errors} {frames}");
    lower.kill();
    assert!(b.terminate().success());
}

/// A scripted upper platform on `upper` for `for_ms`: answers the node's requests 200
/// (REGISTER, keepalives, answers) and returns everything that arrived, requests and responses.
fn scripted_upper(upper: &std::net::UdpSocket, for_ms: u64) -> Vec<gb28181::sip::Message> {
    use gb28181::sip::{self, Framing, Message, StartLine};
    let mut buf = vec![0u8; 65_536];
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_millis(for_ms);
    while Instant::now() < until {
        let Ok((n, from)) = upper.recv_from(&mut buf) else {
            continue;
        };
        let Ok((m, _)) = sip::parse(&buf[..n], Framing::Datagram) else {
            continue;
        };
        if m.method().is_some() && m.method() != Some("ACK") {
            let mut headers: Vec<(String, String)> = ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .filter_map(|h| m.header(h).map(|v| ((*h).to_owned(), v.to_owned())))
                .collect();
            if m.method() == Some("REGISTER") {
                headers.push(("Expires".into(), "3600".into()));
            }
            let ok = Message {
                start: StartLine::Response {
                    code: 200,
                    reason: "OK".into(),
                },
                headers,
                body: Default::default(),
            };
            let _ = upper.send_to(&ok.to_bytes(), from);
        }
        got.push(m);
    }
    got
}

/// A street node cascades to a GB/T 28181 upper the cameras of the community node below it
/// (native hierarchy): the upper's RecordInfo about such a camera is answered from the
/// community's recordings, asked through the link.
#[test]
fn recordings_of_a_lower_nodes_camera_are_listed_to_a_gb_upper() {
    use common::levels::{issue_upper_token, level_config, lower_toml, wait_for_camera};
    const CAM: &str = "21020000001320000042";
    let sim = Sim::start(vec![camsim::CameraSpec::new(
        CAM,
        camsim::BuiltinFixture::H264_240p.load(),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let (c_dir, s_dir) = (dir.path().join("community"), dir.path().join("street"));
    std::fs::create_dir_all(&c_dir).unwrap();
    std::fs::create_dir_all(&s_dir).unwrap();
    let base_us = (now_us() / 1_000_000 - 1200) * 1_000_000;
    synthesize(
        &c_dir.join("data"),
        base_us,
        4,
        &[Stretch {
            camera: CAM,
            fixture: camsim::BuiltinFixture::H264_240p,
            offset_s: 0.0,
            seconds: 30.0,
        }],
    );
    let c_addr = free_addr();
    let cams = format!(
        "[[cameras]]\nid = \"{CAM}\"\nurl = \"{}\"\norg = \"renmin\"\nrecord = false\n",
        sim.url(CAM)
    );
    let mut c = Node::start(
        &c_dir,
        &level_config("comm", "community", c_addr, None, &c_dir.join("data"), &cams),
        c_addr,
    );
    let token = issue_upper_token(&mut c, "street");
    let upper = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    upper.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let upper_addr = upper.local_addr().unwrap();
    let (s_addr, s_sip) = (free_addr(), free_udp_tcp_addr());
    let extra = format!(
        "{}[gb28181]\nid = \"{A_ID}\"\ndomain = \"2102000000\"\nlisten = \"{s_sip}\"\npassword = \"device-pw\"\n\n[[gb28181.upper]]\nid = \"{B_ID}\"\ndomain = \"2102000000\"\naddress = \"{upper_addr}\"\npassword = \"x\"\nkeepalive = \"1s\"\nshare = [\"*\"]\n",
        lower_toml(
            "comm",
            &format!("http://{c_addr}"),
            &token,
            100,
            "dalian/xigang",
            "down"
        )
    );
    let mut s = Node::start(
        &s_dir,
        &level_config("street", "street", s_addr, None, &s_dir.join("data"), &extra),
        s_addr,
    );
    wait_for_camera(&mut s, CAM, "idle", Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(10), || {
            scripted_upper(&upper, 200);
            s.get("/api/v1/gb28181/uppers").1["uppers"][0]["registered"] == true
        }),
        "{}",
        s.log_text()
    );
    let q = format!(
        "<?xml version=\"1.0\"?>\r\n<Query>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>5150</SN>\r\n<DeviceID>{CAM}</DeviceID>\r\n<StartTime>{}</StartTime>\r\n<EndTime>{}</EndTime>\r\n<Type>all</Type>\r\n</Query>\r\n",
        gb28181::gbtime::format_secs(base_us / 1_000_000 - 60, 8 * 3600),
        gb28181::gbtime::format_secs(base_us / 1_000_000 + 600, 8 * 3600)
    );
    let msg = format!(
        "MESSAGE sip:{A_ID}@{s_sip} SIP/2.0\r\nVia: SIP/2.0/UDP {upper_addr};rport;branch=z9hG4bKri1\r\nFrom: <sip:{B_ID}@2102000000>;tag=ri\r\nTo: <sip:{A_ID}@2102000000>\r\nCall-ID: ri-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n{q}",
        q.len()
    );
    upper.send_to(msg.as_bytes(), s_sip).unwrap();
    let mut answer = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            for m in scripted_upper(&upper, 200) {
                let body = gb28181::manscdp::decode_text(&m.body, gb28181::manscdp::Charset::Gb18030);
                if body.contains("<CmdType>RecordInfo</CmdType>") && body.contains("<SN>5150</SN>") {
                    answer = body;
                }
            }
            !answer.is_empty()
        }),
        "no RecordInfo answer\n{}",
        s.log_text()
    );
    assert!(answer.contains("<SumNum>1</SumNum>"), "{answer}");
    let start = gb28181::gbtime::format_secs(base_us / 1_000_000, 8 * 3600);
    assert!(answer.contains(&format!("<StartTime>{start}</StartTime>")), "{answer}");
    assert!(answer.contains(&format!("<DeviceID>{CAM}</DeviceID>")), "{answer}");
    assert!(c.terminate().success());
    assert!(s.terminate().success());
    drop(sim);
}

/// A viewer of `url` on its own thread for `for_`: the bytes it got.
fn watch(url: String, for_: Duration) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::Read;
        let Ok(resp) = agent().get(&url).call() else { return 0 };
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut got, until) = (0, Instant::now() + for_);
        while Instant::now() < until {
            match body.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    })
}
