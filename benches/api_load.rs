//! API load: 200 concurrent clients listing cameras on a node with 10,000 cameras, 500 groups,
//! 1,000 grants and 1,000 users (a city's platform), each client logged in as a different
//! user so that every listing is cut to that user's grants.
//!
//! Two runs: paced (each client lists every `--interval-ms`, as video walls and dispatch
//! software refresh) and closed-loop (each client lists again as soon as it has an answer: the
//! node's saturation). Reported: requests/s, p50/p99/max latency, cameras per answer; and, in
//! the same run, the baseline of the same clients on `/healthz` (the HTTP floor: no auth, no
//! body). The clients run in this process on the same 2 cores as the node.
//!
//! ```text
//! cargo bench --bench api_load -- [--clients 200] [--seconds 10] [--interval-ms 200]
//! ```
//! Run by hand (`scripts/bench-authz.sh`), not in CI.

mod common;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::pct;

/// Command-line arguments (`cargo bench --bench api_load -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--clients`.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// `--seconds`.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// `--interval-ms`.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    clap::Parser::parse()
}

const PASSWORD: &str = "bench-password";

/// The config: cameras are live-on-demand (`record = false`) so nothing is pulled; users share
/// one precomputed hash so that start-up does not hash a thousand passwords.
fn config(addr: std::net::SocketAddr, data: &std::path::Path) -> String {
    let hash = auth::hash_password(PASSWORD);
    let mut c = format!(
        "[server]\nlisten = \"{addr}\"\ndata_dirs = [\"{}\"]\n\n",
        data.display()
    );
    for d in 0..10 {
        let _ = write!(c, "[[departments]]\nid = \"d{d}\"\n\n");
        for s in 0..9 {
            let _ = write!(c, "[[departments]]\nid = \"d{d}-s{s}\"\nparent = \"d{d}\"\n\n");
        }
    }
    for u in 0..1000 {
        let role = if u == 0 {
            "admin"
        } else {
            ["viewer", "operator", "dispatcher"][u % 3]
        };
        let _ = write!(
            c,
            "[[users]]\nname = \"user{u}\"\npassword_hash = \"{hash}\"\nrole = \"{role}\"\ndepartment = \"d{}-s{}\"\n\n",
            u % 10,
            (u / 10) % 9
        );
    }
    // Deterministic spread: group g holds 20 cameras scattered over the city.
    for g in 0..500 {
        let cams: Vec<String> = (0..20)
            .map(|k| format!("\"3402000000132{:07}\"", (g * 7919 + k * 104_729) % 10_000))
            .collect();
        let _ = write!(c, "[[groups]]\nid = \"g{g}\"\ncameras = [{}]\n\n", cams.join(", "));
    }
    for i in 0..1000 {
        let dept = format!("d{}-s{}", i % 10, (i / 10) % 9);
        let resource = if i % 4 == 3 {
            format!("org:dalian/d{}/s{}", i % 10, i % 50)
        } else {
            format!("group:g{}", (i * 31) % 500)
        };
        let _ = write!(
            c,
            "[[grants]]\nsubject = \"department:{dept}\"\nactions = [\"live\", \"playback\"]\nresource = \"{resource}\"\n\n"
        );
    }
    for i in 0..10_000 {
        let _ = write!(
            c,
            "[[cameras]]\nid = \"3402000000132{i:07}\"\nname = \"camera {i}\"\nurl = \"rtsp://127.0.0.1:9/cam{i}\"\nrecord = false\norg = \"dalian/d{}/s{}\"\n\n",
            i / 1000,
            (i / 20) % 50
        );
    }
    c
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Runs `clients` threads against `path` for `secs`, each pausing `interval` between requests
/// (0: closed loop). Returns (latencies in ms, requests, mean body bytes).
fn load(base: &str, tokens: &[String], path: &str, secs: u64, interval: Duration) -> (Vec<f64>, usize, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let (url, t, stop) = (format!("{base}{path}"), t.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                // Spread the paced clients' phases over the interval.
                std::thread::sleep(interval.mul_f64(k as f64 / 200.0 % 1.0));
                let mut lat = Vec::new();
                let mut bytes = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let body = agent
                        .get(&url)
                        .header("Authorization", &format!("Bearer {t}"))
                        .call()
                        .unwrap()
                        .into_body()
                        .read_to_vec()
                        .unwrap();
                    lat.push(start.elapsed().as_secs_f64() * 1e3);
                    bytes += body.len();
                    if !interval.is_zero() {
                        std::thread::sleep(interval.saturating_sub(start.elapsed()));
                    }
                }
                (lat, bytes)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut bytes = 0;
    for h in handles {
        let (l, b) = h.join().unwrap();
        all.extend(l);
        bytes += b;
    }
    let n = all.len();
    (all, n, bytes as f64 / n.max(1) as f64)
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let addr = testkit::free_addr();
    let cfg = dir.path().join("sharpeye.toml");
    std::fs::write(&cfg, config(addr, &dir.path().join("data"))).unwrap();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sharpeye"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _kill = testkit::KillOnDrop(child.id());
    let base = format!("http://{addr}");
    let up = Instant::now();
    while ureq::get(&format!("{base}/healthz")).call().is_err() {
        assert!(up.elapsed() < Duration::from_secs(60), "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "api_load: node with 10000 cameras, 500 groups, 1000 grants, 1000 users up in {:.1} s",
        up.elapsed().as_secs_f64()
    );
    let tokens: Vec<String> = (0..a.clients)
        .map(|i| {
            let body: serde_json::Value = ureq::post(&format!("{base}/api/v1/login"))
                .send_json(serde_json::json!({"username": format!("user{}", 1 + i * 997 % 999), "password": PASSWORD}))
                .unwrap()
                .into_body()
                .read_json()
                .unwrap();
            body["token"].as_str().unwrap().to_owned()
        })
        .collect();
    let report = |what: &str, (lat, n, bytes): (Vec<f64>, usize, f64), secs: u64| {
        println!(
            "api_load {what}: {} clients, {:.0} req/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} bytes/answer",
            a.clients,
            n as f64 / secs as f64,
            pct(lat.clone(), 0.5),
            pct(lat.clone(), 0.99),
            pct(lat, 1.0),
            bytes
        );
    };
    let interval = Duration::from_millis(a.interval_ms);
    report(
        "baseline GET /healthz, paced",
        load(&base, &tokens, "/healthz", a.seconds, interval),
        a.seconds,
    );
    report(
        "GET /api/v1/cameras, paced",
        load(&base, &tokens, "/api/v1/cameras", a.seconds, interval),
        a.seconds,
    );
    report(
        "baseline GET /healthz, closed loop",
        load(&base, &tokens, "/healthz", a.seconds, Duration::ZERO),
        a.seconds,
    );
    report(
        "GET /api/v1/cameras, closed loop",
        load(&base, &tokens, "/api/v1/cameras", a.seconds, Duration::ZERO),
        a.seconds,
    );
    let _ = child.kill();
    let _ = child.wait();
}
