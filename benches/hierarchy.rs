//! Levels calling each other up, measured: a community node (camsim cameras, half recorded,
//! half pulled only on demand), a street node above it and a district above that, all real
//! `sharpeye run` processes on loopback.
//!
//! Reported:
//! * time to first frame at the district, cold (nobody watching at the street or the district;
//!   "fully cold" when the community does not record the camera either, so its own pull starts
//!   too) and warm (another viewer of a stream already crossing);
//! * added latency per hop, p50/p99: the same frame (by the wall time the community gave it,
//!   which every level keeps) arriving at relay clients of the community, the street and the
//!   district;
//! * link use against budget with `--viewers` district viewers of every camera;
//! * playback first byte at the district, cache miss and hit.
//!
//! ```text
//! cargo bench --bench hierarchy -- [--cameras 10] [--viewers 50] [--seconds 20] [--ranges 20]
//! ```
//! Goals (issue 12): cold TTFF ≤ key-frame interval (1 s) + 300 ms per hop; added latency per
//! hop p99 < 50 ms; link use ≤ budget always; cache hit first byte p99 < 30 ms. Run by hand.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::pct;
use media::fmp4_stream::Fmp4StreamReader;
use media::{StreamId, WallTime};
use serde_json::{Value, json};

/// Command-line arguments (`cargo bench --bench hierarchy -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// Cameras at the community (half recorded there, half on demand only).
    #[arg(long, default_value_t = 10)]
    cameras: usize,
    /// District viewers for the link-use run, spread over every camera.
    #[arg(long, default_value_t = 50)]
    viewers: usize,
    /// Length of the link-use run and of the latency run, seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Recorded ranges played back at the district (each missed, then hit).
    #[arg(long, default_value_t = 20)]
    ranges: usize,
    /// Budget of the street's link to the community, Mbit/s.
    #[arg(long, default_value_t = 30)]
    community_mbps: u32,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const PASSWORD: &str = "bench-password";

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A `sharpeye run` process.
struct Proc(Child, SocketAddr, String);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn start(dir: &Path, config: &str, addr: SocketAddr) -> Proc {
    let cfg = dir.join("sharpeye.toml");
    std::fs::write(&cfg, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sharpeye"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while agent().get(&format!("http://{addr}/healthz")).call().is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "node at {addr} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, login) = post(
        &format!("http://{addr}/api/v1/login"),
        None,
        json!({"username": "admin", "password": PASSWORD}),
    );
    Proc(child, addr, login["token"].as_str().unwrap().to_owned())
}

fn post(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = agent().post(url);
    if let Some(t) = token {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = r.send_json(body).unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_json().unwrap_or(Value::Null),
    )
}

fn get(p: &Proc, path: &str) -> Value {
    agent()
        .get(&format!("http://{}{path}", p.1))
        .header("Authorization", &format!("Bearer {}", p.2))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap_or(Value::Null)
}

fn config(id: &str, level: &str, addr: SocketAddr, data: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"{addr}\"\ndata_dirs = [\"{}\"]\n\n[node]\nid = \"{id}\"\nlevel = \"{level}\"\n\n[live]\nidle = \"2s\"\nstart_timeout = \"10s\"\nmax_viewers_per_stream = 1000\n\n[playback]\nmax_range = \"2h\"\n\n[[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\nrole = \"admin\"\n\n{extra}",
        data.display()
    )
}

fn token_for(p: &Proc, name: &str) -> String {
    let (s, b) = post(
        &format!("http://{}/api/v1/tokens", p.1),
        Some(&p.2),
        json!({"name": name, "actions": ["live", "playback", "export", "hold"], "resources": ["*"]}),
    );
    assert_eq!(s, 201, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

/// A relay client: each frame's arrival, by the wall time the recording node gave it.
struct Arrivals {
    first: Option<Duration>,
    frames: HashMap<i64, Instant>,
}

/// Reads `url` (a live.mp4, relay or not) until `stop` or `limit`: the time to the first
/// frame from the request, and each frame's arrival by its wall time (relay framing only).
fn read_stream(url: String, token: String, stop: Arc<AtomicBool>, limit: Duration) -> Arrivals {
    let t0 = Instant::now();
    let mut out = Arrivals {
        first: None,
        frames: HashMap::new(),
    };
    let Ok(resp) = agent()
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
    else {
        return out;
    };
    if resp.status() != 200 {
        return out;
    }
    let relay = url.contains("relay=1");
    let mut body = resp.into_body().into_reader();
    let mut reader = Fmp4StreamReader::new(StreamId::main("bench"), 32 << 20);
    let mut buf = vec![0u8; 1 << 16];
    let mut seen = 0usize;
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
        let n = match std::io::Read::read(&mut body, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        seen += n;
        if relay {
            if reader.push(&buf[..n], WallTime::now()).is_err() {
                break;
            }
            while let Some(f) = reader.poll() {
                out.first.get_or_insert(t0.elapsed());
                out.frames.insert(f.wall_time.as_micros(), now);
            }
        } else if seen > 4096 {
            out.first.get_or_insert(t0.elapsed());
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn show(name: &str, v: Vec<f64>) {
    if v.is_empty() {
        println!("  {name:<52} (no samples)");
        return;
    }
    let n = v.len();
    println!(
        "  {name:<52} p50 {:>8.1}  p99 {:>8.1}  max {:>8.1}  (n={n})",
        pct(v.clone(), 0.5),
        pct(v.clone(), 0.99),
        pct(v, 1.0)
    );
}

/// Per-hop added latency (ms) of frames seen by both `near` (lower) and `far` (upper).
fn hop(near: &Arrivals, far: &Arrivals) -> Vec<f64> {
    far.frames
        .iter()
        .filter_map(|(k, at)| near.frames.get(k).map(|n| ms(at.saturating_duration_since(*n))))
        .collect()
}

fn main() {
    let a: Args = clap::Parser::parse();
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("n{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    // Cameras (1080p H.264, 240p sub-streams) in this process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let specs = camsim::with_sub_streams(
        (0..a.cameras)
            .map(|i| camsim::CameraSpec::new(format!("cam{i}"), camsim::BuiltinFixture::H264_1080p.load()))
            .collect(),
    );
    let sim = rt
        .block_on(camsim::Camsim::start(
            "127.0.0.1:0".parse().unwrap(),
            camsim::Cameras::new(specs),
        ))
        .unwrap();
    // Thirty minutes of cam0 recorded an hour ago, to play back.
    let base = (WallTime::now().as_micros() / 1_000_000 - 3600) * 1_000_000;
    let data0 = dirs[0].join("data");
    common::record_minutes(&data0, "cam0", base, 30);
    let cams: String = (0..a.cameras)
        .map(|i| {
            format!(
                "[[cameras]]\nid = \"cam{i}\"\nurl = \"rtsp://{}/cam{i}\"\nsub_url = \"rtsp://{}/cam{i}-sub\"\norg = \"gate\"\nrecord = {}\n\n",
                sim.local_addr(),
                sim.local_addr(),
                i < a.cameras / 2
            )
        })
        .collect();
    let (ca, sa, da) = (free_addr(), free_addr(), free_addr());
    let community = start(&dirs[0], &config("community", "community", ca, &data0, &cams), ca);
    let t1 = token_for(&community, "street");
    let street = start(
        &dirs[1],
        &config(
            "street",
            "street",
            sa,
            &dirs[1].join("data"),
            &format!(
                "[[lower]]\nid = \"community\"\nurl = \"http://{ca}\"\ntoken = \"{t1}\"\nlink_mbps = {}\norg = \"city/street/community\"\n\n",
                a.community_mbps
            ),
        ),
        sa,
    );
    let t2 = token_for(&street, "district");
    let district = start(
        &dirs[2],
        &config(
            "district",
            "district",
            da,
            &dirs[2].join("data"),
            &format!(
                "[[lower]]\nid = \"street\"\nurl = \"http://{sa}\"\ntoken = \"{t2}\"\nlink_mbps = 1000\norg = \"city/street\"\n\n[cache]\nsize = \"2GB\"\n\n"
            ),
        ),
        da,
    );
    let t = Instant::now();
    while get(&district, "/api/v1/cameras").as_array().map_or(0, |c| c.len()) < a.cameras {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the district did not list every camera"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let dtoken = district.2.clone();
    let live = |p: &Proc, cam: &str, relay: bool| {
        format!(
            "http://{}/api/v1/cameras/{cam}/live.mp4{}",
            p.1,
            if relay { "?relay=1" } else { "" }
        )
    };
    println!(
        "\nhierarchy bench: {} cameras at the community (1080p H.264, GOP 1 s), loopback",
        a.cameras
    );

    // 1. Cold and warm time to first frame at the district.
    let mut cold = Vec::new();
    let mut fully_cold = Vec::new();
    for i in 0..a.cameras {
        let stop = Arc::new(AtomicBool::new(false));
        let r = read_stream(
            live(&district, &format!("cam{i}"), true),
            dtoken.clone(),
            stop,
            Duration::from_secs(3),
        );
        if let Some(f) = r.first {
            if i < a.cameras / 2 { &mut cold } else { &mut fully_cold }.push(ms(f));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let holder = {
        let (u, t, s) = (live(&district, "cam0", true), dtoken.clone(), stop.clone());
        std::thread::spawn(move || read_stream(u, t, s, Duration::from_secs(60)))
    };
    std::thread::sleep(Duration::from_secs(2));
    let mut warm = Vec::new();
    for _ in 0..20 {
        let s = Arc::new(AtomicBool::new(false));
        if let Some(f) = read_stream(live(&district, "cam0", true), dtoken.clone(), s, Duration::from_secs(2)).first {
            warm.push(ms(f));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = holder.join();
    println!("time to first frame at the district (ms):");
    show("cold (the community records it; 2 hops idle)", cold);
    show("fully cold (the community pulls the camera too)", fully_cold);
    show("warm (the stream already crosses both links)", warm);

    // 2. Added latency per hop (relay framing: live.mp4?relay=1, what nodes pull each other
    // with).
    {
        let relay = true;
        let stop = Arc::new(AtomicBool::new(false));
        let lim = Duration::from_secs(a.seconds.min(15) + 5);
        let clients: Vec<_> = [
            (&district, dtoken.clone()),
            (&street, street.2.clone()),
            (&community, community.2.clone()),
        ]
        .into_iter()
        .map(|(p, t)| {
            let (u, s) = (live(p, "cam1", relay), stop.clone());
            std::thread::spawn(move || read_stream(u, t, s, lim))
        })
        .collect();
        std::thread::sleep(Duration::from_secs(a.seconds.min(15)));
        stop.store(true, Ordering::Relaxed);
        let r: Vec<Arrivals> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        println!("added latency per hop (ms), relay framing (live.mp4?relay=1):");
        show("community -> street", hop(&r[2], &r[1]));
        show("street -> district", hop(&r[1], &r[0]));
    }

    // 3. Link use against budget: `viewers` at the district over every camera.
    let stop = Arc::new(AtomicBool::new(false));
    let viewers: Vec<_> = (0..a.viewers)
        .map(|v| {
            let (u, t, s) = (
                live(&district, &format!("cam{}", v % a.cameras), false),
                dtoken.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || read_stream(u, t, s, Duration::from_secs(600)))
        })
        .collect();
    let (mut peak_s, mut peak_d, mut used_s) = (0.0f64, 0.0f64, 0.0f64);
    let mut over = 0;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    while t.elapsed() < Duration::from_secs(a.seconds) {
        let ls = get(&street, "/api/v1/links")["links"][0].clone();
        let ld = get(&district, "/api/v1/links")["links"][0].clone();
        let m = ls["measured_mbps"].as_f64().unwrap_or(0.0);
        peak_s = peak_s.max(m);
        used_s = used_s.max(ls["in_use_mbps"].as_f64().unwrap_or(0.0));
        peak_d = peak_d.max(ld["measured_mbps"].as_f64().unwrap_or(0.0));
        if m > f64::from(a.community_mbps) * 1.05 {
            over += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let ls = get(&street, "/api/v1/links")["links"][0].clone();
    stop.store(true, Ordering::Relaxed);
    let served = viewers
        .into_iter()
        .map(|v| v.join().unwrap())
        .filter(|a| a.first.is_some())
        .count();
    println!("link use with {} district viewers of {} cameras:", a.viewers, a.cameras);
    println!(
        "  street <- community: budget {} Mbit/s, counted max {used_s:.1}, measured peak {peak_s:.1} (samples over budget: {over}); pulls {}, refusals {}",
        a.community_mbps, ls["pulls"], ls["refusals"]
    );
    println!(
        "  district <- street: measured peak {peak_d:.1} Mbit/s; viewers served {served}/{}",
        a.viewers
    );

    // 4. Playback first byte at the district: a miss, then a hit, per range.
    std::thread::sleep(Duration::from_secs(3));
    let (mut miss, mut hit) = (Vec::new(), Vec::new());
    for k in 0..a.ranges {
        let from = base + (k as i64 % 25) * 60_000_000 + 7_000_000;
        let fmt = |us: i64| jiff::Timestamp::from_microsecond(us).unwrap().to_string();
        let url = format!(
            "http://{}/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
            district.1,
            fmt(from),
            fmt(from + 60_000_000)
        );
        for list in [&mut miss, &mut hit] {
            let t = Instant::now();
            let resp = agent()
                .get(&url)
                .header("Authorization", &format!("Bearer {dtoken}"))
                .call()
                .unwrap();
            let mut body = resp.into_body().into_reader();
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut body, &mut b);
            list.push(ms(t.elapsed()));
            let _ = std::io::copy(&mut body, &mut std::io::sink());
        }
    }
    println!("playback first byte at the district (ms), 1-minute 1080p ranges:");
    show("cache miss (fetched through the street)", miss);
    show("cache hit", hit);
    let h = get(&district, "/api/v1/health");
    println!("  cache: {}", h["cache"]);
    drop((community, street, district));
    rt.block_on(sim.stop());
}
