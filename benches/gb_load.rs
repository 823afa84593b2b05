//! GB/T 28181 at scale on one node, against simulated devices (camsim::gbdevice) in this
//! process, on loopback:
//!
//! 1. **Registration and keepalive**: `--devices` devices register with digest auth (and answer
//!    the catalog query that follows), then keep alive every `--keepalive-s`. Reported: the time
//!    until all are registered, the node's CPU (% of one core) and RSS over `--seconds` of steady
//!    keepalives, and, as the baseline measured in the same run, the idle node's CPU before the
//!    devices came.
//! 2. **INVITE to first frame**: `--invites` cameras on demand, each a one-channel device, are
//!    opened by as many concurrent `live.mp4` viewers; reported: time from the request (which
//!    INVITEs the device: TCP-passive media, PS over RTP) to the first media fragment at the
//!    viewer, p50/p95/max. Baseline in the same run: the same number of RTSP cameras on demand
//!    (camsim, same fixture) opened the same way.
//!
//! ```text
//! cargo bench --bench gb_load -- [--devices 10000] [--keepalive-s 60] [--seconds 120] [--invites 200]
//! ```
//! Run by hand, not in CI.

mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{pct, usage};

/// Command-line arguments (`cargo bench --bench gb_load -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--devices`.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// `--keepalive-s`.
    #[arg(long, default_value_t = 60)]
    keepalive_s: u64,
    /// `--seconds`.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// `--invites`.
    #[arg(long, default_value_t = 200)]
    invites: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    clap::Parser::parse()
}

const PASSWORD: &str = "bench-password";
const PLATFORM: &str = "34020000002000000001";

fn device_id(n: usize) -> String {
    format!("3402000000132{n:07}")
}

struct Node {
    run: common::RunningNode,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start_node(gb: &str, cameras: &str) -> (Node, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let addr = testkit::free_addr();
    let sip = testkit::free_addr();
    let config = format!(
        "[server]\nlisten = \"{addr}\"\ndata_dirs = [\"{}\"]\n\n[[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\nrole = \"admin\"\n\n[gb28181]\nid = \"{PLATFORM}\"\ndomain = \"3402000000\"\nlisten = \"{sip}\"\npassword = \"{PASSWORD}\"\n{gb}\n{cameras}",
        dir.path().join("data").display()
    );
    let run = common::run_node(dir.path(), &config, addr, "warn");
    (Node { run, addr, _dir: dir }, sip)
}

fn token(addr: SocketAddr) -> String {
    let mut r = ureq::post(&format!("http://{addr}/api/v1/login"))
        .send_json(serde_json::json!({"username": "admin", "password": PASSWORD}))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn spec(
    id: String,
    sip: SocketAddr,
    keepalive: Duration,
    fixture: &Arc<camsim::Fixture>,
) -> camsim::gbdevice::GbDeviceSpec {
    camsim::gbdevice::GbDeviceSpec {
        id,
        password: PASSWORD.into(),
        platform: sip,
        platform_id: PLATFORM.into(),
        domain: "3402000000".into(),
        channels: Vec::new(),
        groups: Vec::new(),
        parents: Default::default(),
        catalog_page: 0,
        keepalive,
        fixture: fixture.clone(),
        recordings: Vec::new(),
    }
}

fn registration(a: &Args, rt: &tokio::runtime::Runtime) {
    let (node, sip) = start_node(
        &format!("keepalive_interval = \"{}s\"\nadopt = false\n", a.keepalive_s),
        "",
    );
    let pid = node.run.pid;
    std::thread::sleep(Duration::from_secs(2));
    let (c0, _) = usage(pid);
    std::thread::sleep(Duration::from_secs(5));
    let (c1, rss_idle) = usage(pid);
    let idle_pct = (c1 - c0) / 5.0 * 100.0;

    let fixture = camsim::BuiltinFixture::H264_240p.load();
    let keepalive = Duration::from_secs(a.keepalive_s);
    let t0 = Instant::now();
    let devices: Vec<camsim::gbdevice::GbDevice> = rt.block_on(async {
        let mut v = Vec::with_capacity(a.devices);
        for n in 0..a.devices {
            v.push(
                camsim::gbdevice::GbDevice::start(spec(device_id(n), sip, keepalive, &fixture))
                    .await
                    .unwrap(),
            );
        }
        v
    });
    let registered = |d: &[camsim::gbdevice::GbDevice]| {
        d.iter()
            .filter(|d| d.stats.registered.load(Ordering::Relaxed) > 0)
            .count()
    };
    while registered(&devices) < a.devices {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "only {} of {} registered",
            registered(&devices),
            a.devices
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reg_time = t0.elapsed();
    // Let the registration burst and the catalog queries settle, then measure a steady window.
    std::thread::sleep(Duration::from_secs(5));
    let keepalives = |d: &[camsim::gbdevice::GbDevice]| {
        d.iter()
            .map(|d| d.stats.keepalives.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let (k0, (c0, _)) = (keepalives(&devices), usage(pid));
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs(a.seconds));
    let (k1, (c1, rss)) = (keepalives(&devices), usage(pid));
    let secs = t1.elapsed().as_secs_f64();
    let cpu_pct = (c1 - c0) / secs * 100.0;
    let online = {
        let t = token(node.addr);
        let mut r = ureq::get(&format!("http://{}/api/v1/gb28181/devices", node.addr))
            .header("Authorization", &format!("Bearer {t}"))
            .call()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["devices"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|d| d["online"] == true).count())
    };
    println!(
        "\n== registration and keepalive: {} devices, keepalive every {} s ==",
        a.devices, a.keepalive_s
    );
    println!(
        "all registered (digest, catalog queried) in {:.2} s",
        reg_time.as_secs_f64()
    );
    println!(
        "steady {:.0} s: {} keepalives answered ({:.0}/s), {online} devices online",
        secs,
        k1 - k0,
        (k1 - k0) as f64 / secs
    );
    println!(
        "node CPU {:.2} % of a core (idle node before the devices: {:.2} %), RSS {:.1} MiB (idle {:.1} MiB, {:.1} KiB per device)",
        cpu_pct,
        idle_pct,
        rss as f64 / 1048576.0,
        rss_idle as f64 / 1048576.0,
        (rss.saturating_sub(rss_idle)) as f64 / 1024.0 / a.devices as f64
    );
    drop(devices);
    drop(node);
}

/// Time from each `live.mp4` request to its first media fragment, all started at once.
fn ttff(addr: SocketAddr, cameras: &[String]) -> Vec<f64> {
    let t = Arc::new(token(addr));
    let barrier = Arc::new(std::sync::Barrier::new(cameras.len()));
    let handles: Vec<_> = cameras
        .iter()
        .cloned()
        .map(|cam| {
            let (t, barrier) = (t.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let Ok(resp) = agent
                    .get(&format!("http://{addr}/api/v1/cameras/{cam}/live.mp4"))
                    .header("Authorization", &format!("Bearer {t}"))
                    .call()
                else {
                    return f64::NAN;
                };
                let mut body = resp.into_body().into_reader();
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The init segment comes first; a `moof` is the first frame.
                while !seen.windows(4).any(|w| w == b"moof") {
                    match body.read(&mut buf) {
                        Ok(0) | Err(_) => return f64::NAN,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                start.elapsed().as_secs_f64() * 1000.0
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(f64::NAN)).collect()
}

fn summary(name: &str, v: &[f64]) -> String {
    let ok: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if ok.is_empty() {
        return format!("{name}: none of {} got a frame", v.len());
    }
    format!(
        "{name}: {} of {} got a frame; p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ok.len(),
        v.len(),
        pct(ok.clone(), 0.5),
        pct(ok.clone(), 0.95),
        pct(ok, 1.0)
    )
}

fn invites(a: &Args, rt: &tokio::runtime::Runtime) {
    let n = a.invites;
    let fixture = camsim::BuiltinFixture::H264_240p.load();
    // The RTSP baseline's cameras, in the same node.
    let specs: Vec<camsim::CameraSpec> = (0..n)
        .map(|i| camsim::CameraSpec::new(format!("rtsp{i}"), fixture.clone()))
        .collect();
    let sim = rt
        .block_on(camsim::Camsim::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            camsim::Cameras::new(specs),
        ))
        .unwrap();
    let rtsp_cams: String = (0..n)
        .map(|i| {
            format!(
                "[[cameras]]\nid = \"rtsp{i}\"\nurl = \"rtsp://{}/rtsp{i}\"\nrecord = false\n\n",
                sim.local_addr()
            )
        })
        .collect();
    let (node, sip) = start_node(
        "record_discovered = false\nmedia_transport = \"tcp-passive\"\n",
        &rtsp_cams,
    );
    let devices: Vec<camsim::gbdevice::GbDevice> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(
                camsim::gbdevice::GbDevice::start(spec(device_id(900_000 + i), sip, Duration::from_secs(30), &fixture))
                    .await
                    .unwrap(),
            );
        }
        v
    });
    // Wait until every device's channel is a camera.
    let t = token(node.addr);
    let t0 = Instant::now();
    loop {
        let mut r = ureq::get(&format!("http://{}/api/v1/cameras", node.addr))
            .header("Authorization", &format!("Bearer {t}"))
            .call()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        if v.as_array().map_or(0, |a| a.len()) >= 2 * n {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "catalogs did not arrive");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rtsp: Vec<String> = (0..n).map(|i| format!("rtsp{i}")).collect();
    let gb: Vec<String> = (0..n).map(|i| device_id(900_000 + i)).collect();
    let base = ttff(node.addr, &rtsp);
    std::thread::sleep(Duration::from_secs(2));
    let got = ttff(node.addr, &gb);
    let invited = devices
        .iter()
        .filter(|d| d.stats.invites.load(Ordering::Relaxed) > 0)
        .count();
    println!("\n== {n} concurrent INVITEs: request to first frame at a live.mp4 viewer ==");
    println!("{}", summary("GB/T 28181 (INVITE, TCP-passive PS/RTP)", &got));
    println!(
        "{}",
        summary("baseline, RTSP on demand (same node, same fixture)", &base)
    );
    let ok = |v: &[f64]| v.iter().copied().filter(|x| x.is_finite()).collect::<Vec<f64>>();
    if !ok(&got).is_empty() && !ok(&base).is_empty() {
        println!(
            "ratio GB / RTSP: p50 {:.2}, p95 {:.2} ({invited} devices invited)",
            pct(ok(&got), 0.5) / pct(ok(&base), 0.5),
            pct(ok(&got), 0.95) / pct(ok(&base), 0.95)
        );
    }
    drop(devices);
    drop(node);
    rt.block_on(sim.stop());
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    registration(&a, &rt);
    if a.invites > 0 {
        invites(&a, &rt);
    }
}
