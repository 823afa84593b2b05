//! Levels calling each other up, measured across the shaped three-level topology: community,
//! street and district `sharpeye run` processes, each in a network namespace this bench makes
//! (and removes), joined by veth pairs shaped with `tc` (community–street `--community-mbps`,
//! 10 by default; street–district 100). The community serves camsim cameras (1080p H.264,
//! GOP 1 s, 240p sub-streams), half recorded there, half pulled only on demand. Without root
//! (no namespaces) or with `--loopback`, the same three nodes run on loopback and only the
//! budgets hold the links back; the output says which.
//!
//! Reported:
//! * time to first frame at the district, cold (nobody watching at the street or the district;
//!   "fully cold" when the community does not record the camera either, so its own pull starts
//!   too) and warm (another viewer of a stream already crossing);
//! * added latency per hop, p50/p99: the same frame (by the wall time the community gave it,
//!   which every level keeps) arriving at relay clients of the community, the street and the
//!   district; on shaped links this includes putting each frame on the wire at the link's rate;
//! * link use against budget with `--viewers` district viewers spread over every camera: what
//!   was admitted (main, sub-stream fallback, 503), what the street counted, what its meter
//!   measured and — independently — the bytes the community's veth sent, per second;
//! * playback first byte at the district, cache miss and hit.
//!
//! ```text
//! cargo bench --bench hierarchy -- [--cameras 10] [--viewers 50] [--seconds 20] [--ranges 10]
//!     [--range-seconds 10] [--community-mbps 10] [--loopback]
//! ```
//! Goals (issue 12): cold TTFF ≤ key-frame interval (1 s) + 300 ms per hop; added latency per
//! hop p99 < 50 ms; link use ≤ budget always; cache hit first byte p99 < 30 ms. Run by hand
//! (as root for the namespaces).

mod common;
#[path = "../tests/common/netns.rs"]
#[allow(dead_code, reason = "shared with the tests, which use more of it")]
mod netns;

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
use netns::Netns;
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
    #[arg(long, default_value_t = 10)]
    ranges: usize,
    /// Length of each played-back range, seconds.
    #[arg(long, default_value_t = 10)]
    range_seconds: i64,
    /// Budget (and `tc` rate) of the street's link to the community, Mbit/s.
    #[arg(long, default_value_t = 10)]
    community_mbps: u32,
    /// Run on loopback even where network namespaces can be made.
    #[arg(long)]
    loopback: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const PASSWORD: &str = "bench-password";

/// Where one node runs: its namespace (none on loopback) and the address it serves.
#[derive(Clone)]
struct Place {
    ns: Option<String>,
    addr: SocketAddr,
}

impl Place {
    /// Runs `f` with sockets in this place's namespace.
    fn on<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.ns {
            Some(ns) => netns::in_ns(ns, f),
            None => f(),
        }
    }

    /// Runs `f` on a new thread with sockets in this place's namespace.
    fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let me = self.clone();
        std::thread::spawn(move || me.on(f))
    }
}

/// The three places and, when shaped, the namespaces (removed on drop) and the community's end
/// of its link.
struct Topology {
    places: [Place; 3],
    _namespaces: Vec<Netns>,
    community_dev: Option<(String, String)>,
}

fn loopback() -> Topology {
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    Topology {
        places: [0, 1, 2].map(|_| Place { ns: None, addr: free() }),
        _namespaces: Vec::new(),
        community_dev: None,
    }
}

fn shaped(community_mbps: u32) -> Topology {
    let tag = std::process::id() % 100_000;
    let names = ["c", "s", "d"].map(|l| format!("sb{tag}{l}"));
    let ns: Vec<Netns> = names.iter().map(|n| Netns::new(n)).collect();
    let (cs, sd) = (format!("sb{tag}x"), format!("sb{tag}y"));
    netns::link(&ns[0], "10.232.1.1", &ns[1], "10.232.1.2", &cs);
    netns::link(&ns[1], "10.232.2.1", &ns[2], "10.232.2.2", &sd);
    let thin = format!("{community_mbps}mbit");
    netns::shape(&ns[0], &format!("{cs}a"), &thin);
    netns::shape(&ns[1], &format!("{cs}b"), &thin);
    netns::shape(&ns[1], &format!("{sd}a"), "100mbit");
    netns::shape(&ns[2], &format!("{sd}b"), "100mbit");
    let at = |i: usize, ip: &str| Place {
        ns: Some(names[i].clone()),
        addr: format!("{ip}:8080").parse().unwrap(),
    };
    Topology {
        places: [at(0, "10.232.1.1"), at(1, "10.232.2.1"), at(2, "10.232.2.2")],
        community_dev: Some((names[0].clone(), format!("{cs}a"))),
        _namespaces: ns,
    }
}

/// Bytes the community's end of its link has sent, read inside its namespace.
fn tx_bytes(ns: &str, dev: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/statistics/tx_bytes"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A `sharpeye run` process and how to reach it.
struct Proc {
    child: Child,
    place: Place,
    token: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.place.addr)
    }

    fn get(&self, path: &str) -> Value {
        let (url, token) = (self.url(path), self.token.clone());
        self.place.on(move || {
            agent()
                .get(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json().ok())
                .unwrap_or(Value::Null)
        })
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (url, token) = (self.url(path), self.token.clone());
        self.place.on(move || post(&url, Some(&token), body))
    }
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

fn start(dir: &Path, config: &str, place: &Place) -> Proc {
    let cfg = dir.join("sharpeye.toml");
    std::fs::write(&cfg, config).unwrap();
    let bin = env!("CARGO_BIN_EXE_sharpeye");
    let mut cmd = match &place.ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, bin]);
            c
        }
        None => Command::new(bin),
    };
    let child = cmd
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    let addr = place.addr;
    let token = place.on(move || {
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
        login["token"].as_str().unwrap().to_owned()
    });
    Proc {
        child,
        place: place.clone(),
        token,
    }
}

fn config(id: &str, level: &str, place: &Place, data: &Path, extra: &str) -> String {
    let listen = match place.ns {
        Some(_) => format!("0.0.0.0:{}", place.addr.port()),
        None => place.addr.to_string(),
    };
    format!(
        "[server]\nlisten = \"{listen}\"\ndata_dirs = [\"{}\"]\n\n[node]\nid = \"{id}\"\nlevel = \"{level}\"\n\n[live]\nidle = \"2s\"\nstart_timeout = \"10s\"\nmax_viewers_per_stream = 1000\n\n[playback]\nmax_range = \"2h\"\n\n[[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\nrole = \"admin\"\n\n{extra}",
        data.display()
    )
}

fn token_for(p: &Proc, name: &str) -> String {
    let (s, b) = p.post(
        "/api/v1/tokens",
        json!({"name": name, "actions": ["live", "playback", "export", "hold"], "resources": ["*"]}),
    );
    assert_eq!(s, 201, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

/// A relay client: each frame's arrival, by the wall time the recording node gave it.
struct Arrivals {
    first: Option<Duration>,
    /// Arrival and size of each frame, by its wall time.
    frames: HashMap<i64, (Instant, usize)>,
    /// The stream served (`x-sharpeye-stream`), or the error status.
    served: String,
}

/// Reads `url` (a live.mp4, relay or not) until `stop` or `limit`: the time to the first
/// frame from the request, and each frame's arrival by its wall time (relay framing only).
fn read_stream(url: String, token: String, stop: Arc<AtomicBool>, limit: Duration) -> Arrivals {
    let t0 = Instant::now();
    let mut out = Arrivals {
        first: None,
        frames: HashMap::new(),
        served: String::new(),
    };
    let Ok(resp) = agent()
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
    else {
        out.served = "error".into();
        return out;
    };
    if resp.status() != 200 {
        out.served = resp.status().as_u16().to_string();
        return out;
    }
    out.served = resp
        .headers()
        .get("x-sharpeye-stream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("main")
        .to_owned();
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
                out.frames.insert(f.wall_time.as_micros(), (now, f.data.len()));
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
        .filter_map(|(k, (at, _))| near.frames.get(k).map(|(n, _)| ms(at.saturating_duration_since(*n))))
        .collect()
}

/// As [`hop`], less what a wire of `mbps` must take: each frame leaves when it arrived below or
/// when the wire finished the frame before, whichever is later, and takes its size over the
/// rate (a first-in first-out link). What is left is what the nodes add.
fn hop_beyond_wire(near: &Arrivals, far: &Arrivals, mbps: f64) -> Vec<f64> {
    let mut both: Vec<(Instant, Instant, usize)> = far
        .frames
        .iter()
        .filter_map(|(k, (at, len))| near.frames.get(k).map(|(n, _)| (*n, *at, *len)))
        .collect();
    both.sort_by_key(|(n, _, _)| *n);
    let mut free: Option<Instant> = None;
    both.into_iter()
        .map(|(n, at, len)| {
            let leaves = free.map_or(n, |f| f.max(n));
            let done = leaves + Duration::from_secs_f64(len as f64 * 8.0 / (mbps * 1e6));
            free = Some(done);
            ms(at.saturating_duration_since(done))
        })
        .collect()
}

fn live(p: &Proc, cam: &str, relay: bool) -> String {
    p.url(&format!(
        "/api/v1/cameras/{cam}/live.mp4{}",
        if relay { "?relay=1" } else { "" }
    ))
}

/// Reads a relay stream of `cam` at `p` on its own thread, in `p`'s namespace.
fn reader(
    p: &Proc,
    cam: &str,
    relay: bool,
    stop: &Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<Arrivals> {
    let (u, t, s) = (live(p, cam, relay), p.token.clone(), stop.clone());
    p.place.spawn(move || read_stream(u, t, s, limit))
}

fn main() {
    let a: Args = clap::Parser::parse();
    let shaped_ok = !a.loopback && netns::available();
    if !a.loopback && !shaped_ok {
        eprintln!(
            "\n!!!!! network namespaces cannot be made here (not root?): running on loopback, links held back by their budgets only\n"
        );
    }
    let topo = if shaped_ok {
        shaped(a.community_mbps)
    } else {
        loopback()
    };
    let [cp, sp, dp] = topo.places.clone();
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("n{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    // Cameras (1080p H.264, 240p sub-streams) in this process, beside the community node.
    let rt = common::sim_runtime();
    let specs = common::sub_streamed_1080p(a.cameras);
    let sim = cp.on(|| {
        rt.block_on(camsim::Camsim::start(
            "127.0.0.1:0".parse().unwrap(),
            camsim::Cameras::new(specs),
        ))
        .unwrap()
    });
    // Half an hour of cam0 recorded an hour ago, to play back.
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
    let community = start(&dirs[0], &config("community", "community", &cp, &data0, &cams), &cp);
    let t1 = token_for(&community, "street");
    let community_url = match &topo.community_dev {
        Some(_) => "http://10.232.1.1:8080".to_owned(),
        None => format!("http://{}", cp.addr),
    };
    let street = start(
        &dirs[1],
        &config(
            "street",
            "street",
            &sp,
            &dirs[1].join("data"),
            &format!(
                "[[lower]]\nid = \"community\"\nurl = \"{community_url}\"\ntoken = \"{t1}\"\nlink_mbps = {}\norg = \"city/street/community\"\n\n",
                a.community_mbps
            ),
        ),
        &sp,
    );
    let t2 = token_for(&street, "district");
    let district = start(
        &dirs[2],
        &config(
            "district",
            "district",
            &dp,
            &dirs[2].join("data"),
            &format!(
                "[[lower]]\nid = \"street\"\nurl = \"http://{}\"\ntoken = \"{t2}\"\nlink_mbps = 100\norg = \"city/street\"\n\n[cache]\nsize = \"2GB\"\n\n",
                sp.addr
            ),
        ),
        &dp,
    );
    let t = Instant::now();
    while district.get("/api/v1/cameras").as_array().map_or(0, |c| c.len()) < a.cameras {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the district did not list every camera"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "\nhierarchy bench: {} cameras at the community (1080p H.264 ~4 Mbit/s, GOP 1 s, 240p sub-streams); {}",
        a.cameras,
        if shaped_ok {
            format!(
                "network namespaces, community-street {} Mbit/s, street-district 100 Mbit/s (tc tbf)",
                a.community_mbps
            )
        } else {
            format!(
                "loopback, community link budget {} Mbit/s enforced in software only",
                a.community_mbps
            )
        }
    );

    // 1. Cold and warm time to first frame at the district (one viewer at a time, so each
    // fits the thin link).
    let mut cold = Vec::new();
    let mut fully_cold = Vec::new();
    for i in 0..a.cameras {
        let stop = Arc::new(AtomicBool::new(false));
        let r = reader(&district, &format!("cam{i}"), true, &stop, Duration::from_secs(3))
            .join()
            .unwrap();
        if let Some(f) = r.first {
            if i < a.cameras / 2 { &mut cold } else { &mut fully_cold }.push(ms(f));
        }
        // Let the pulls go idle (2 s) before the next camera, so the link is free again.
        std::thread::sleep(Duration::from_millis(2500));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let holder = reader(&district, "cam0", true, &stop, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let mut warm = Vec::new();
    for _ in 0..20 {
        let s = Arc::new(AtomicBool::new(false));
        if let Some(f) = reader(&district, "cam0", true, &s, Duration::from_secs(2))
            .join()
            .unwrap()
            .first
        {
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
    // with), once the pulls above have gone idle so that only this stream crosses.
    std::thread::sleep(Duration::from_secs(3));
    {
        let stop = Arc::new(AtomicBool::new(false));
        let lim = Duration::from_secs(a.seconds.min(15) + 5);
        let clients: Vec<_> = [&district, &street, &community]
            .into_iter()
            .map(|p| reader(p, "cam1", true, &stop, lim))
            .collect();
        std::thread::sleep(Duration::from_secs(a.seconds.min(15)));
        stop.store(true, Ordering::Relaxed);
        let r: Vec<Arrivals> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        println!("added latency per hop (ms), relay framing (live.mp4?relay=1):");
        show("community -> street", hop(&r[2], &r[1]));
        show("street -> district", hop(&r[1], &r[0]));
        if shaped_ok {
            let thin = f64::from(a.community_mbps);
            println!("  less the time the shaped wire itself takes (frames queued at the link rate):");
            show("community -> street", hop_beyond_wire(&r[2], &r[1], thin));
            show("street -> district", hop_beyond_wire(&r[1], &r[0], 100.0));
        }
    }
    std::thread::sleep(Duration::from_secs(3));

    // 3. Link use against budget: `viewers` at the district over every camera.
    let stop = Arc::new(AtomicBool::new(false));
    let viewers: Vec<_> = (0..a.viewers)
        .map(|v| {
            let h = reader(
                &district,
                &format!("cam{}", v % a.cameras),
                false,
                &stop,
                Duration::from_secs(600),
            );
            std::thread::sleep(Duration::from_millis(50));
            h
        })
        .collect();
    let (mut peak_s, mut peak_d, mut used_s) = (0.0f64, 0.0f64, 0.0f64);
    let mut wire: Vec<f64> = Vec::new();
    let mut over = 0;
    let mut last_tx = topo
        .community_dev
        .as_ref()
        .map(|(ns, dev)| (Instant::now(), tx_bytes(ns, dev)));
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    while t.elapsed() < Duration::from_secs(a.seconds) {
        let ls = street.get("/api/v1/links")["links"][0].clone();
        let ld = district.get("/api/v1/links")["links"][0].clone();
        let m = ls["measured_mbps"].as_f64().unwrap_or(0.0);
        peak_s = peak_s.max(m);
        used_s = used_s.max(ls["in_use_mbps"].as_f64().unwrap_or(0.0));
        peak_d = peak_d.max(ld["measured_mbps"].as_f64().unwrap_or(0.0));
        if m > f64::from(a.community_mbps) * 1.05 {
            over += 1;
        }
        if let (Some((ns, dev)), Some((at, bytes))) = (&topo.community_dev, last_tx) {
            let now = (Instant::now(), tx_bytes(ns, dev));
            wire.push((now.1 - bytes) as f64 * 8.0 / now.0.duration_since(at).as_secs_f64() / 1e6);
            last_tx = Some(now);
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let ls = street.get("/api/v1/links")["links"][0].clone();
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<String> = viewers.into_iter().map(|v| v.join().unwrap().served).collect();
    let count = |s: &str| outcomes.iter().filter(|o| o.as_str() == s).count();
    println!("link use with {} district viewers of {} cameras:", a.viewers, a.cameras);
    println!(
        "  admitted: {} main, {} sub-stream fallback, {} refused 503 link_budget, {} other",
        count("main"),
        count("sub"),
        count("503"),
        a.viewers - count("main") - count("sub") - count("503")
    );
    println!(
        "  street <- community: budget {} Mbit/s, counted max {used_s:.1}, its meter's peak {peak_s:.1} (samples over budget +5%: {over}); pulls {}, refusals {}, shed {}",
        a.community_mbps, ls["pulls"], ls["refusals"], ls["shed"]
    );
    if !wire.is_empty() {
        show("community veth sent per second (Mbit/s)", wire);
    }
    println!("  district <- street: its meter's peak {peak_d:.1} Mbit/s");

    // 4. Playback first byte at the district: a miss, then a hit, per range.
    std::thread::sleep(Duration::from_secs(3));
    let (mut miss, mut hit) = (Vec::new(), Vec::new());
    let mut bytes = 0u64;
    let fetch_all = Instant::now();
    for k in 0..a.ranges {
        let from = base + (k as i64 % 25) * 60_000_000 + 7_000_000;
        let fmt = |us: i64| jiff::Timestamp::from_microsecond(us).unwrap().to_string();
        let url = district.url(&format!(
            "/api/v1/cameras/cam0/playback.mp4?start={}&end={}",
            fmt(from),
            fmt(from + a.range_seconds * 1_000_000)
        ));
        for list in [&mut miss, &mut hit] {
            let (u, tok) = (url.clone(), district.token.clone());
            let (first, n) = dp.on(move || {
                let t = Instant::now();
                let resp = agent()
                    .get(&u)
                    .header("Authorization", &format!("Bearer {tok}"))
                    .call()
                    .unwrap();
                assert_eq!(resp.status(), 200, "{u}");
                let mut body = resp.into_body().into_reader();
                let mut b = [0u8; 1];
                let _ = std::io::Read::read(&mut body, &mut b);
                let first = t.elapsed();
                (first, std::io::copy(&mut body, &mut std::io::sink()).unwrap_or(0) + 1)
            });
            list.push(ms(first));
            bytes += n;
        }
    }
    println!(
        "playback first byte at the district (ms), {}-second 1080p ranges ({:.1} MB fetched in {:.1} s):",
        a.range_seconds,
        bytes as f64 / 1e6,
        fetch_all.elapsed().as_secs_f64()
    );
    show("cache miss (fetched through the street)", miss);
    show("cache hit", hit);
    let h = district.get("/api/v1/health");
    println!("  district cache: {}", h["cache"]);
    drop((community, street, district));
    rt.block_on(sim.stop());
    drop(topo);
}
