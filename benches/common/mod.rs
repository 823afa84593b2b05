//! Helpers shared by the benchmarks (each bench is its own crate and includes this module).

#![allow(dead_code, reason = "each benchmark uses a different subset")]

use std::path::Path;
use std::time::Duration;

use media::{StreamId, WallTime};
use store::SegmentRecord;

/// The `p` quantile (0..=1) of `v`.
pub fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `minutes` of real recording of the ~4 Mbit/s 1080p H.264 fixture as camera `cam` from `base`
/// (µs since the epoch) in 60 s segments, fed with simulated timing so it takes seconds.
pub fn record_minutes(data: &Path, cam: &str, base: i64, minutes: usize) -> Vec<SegmentRecord> {
    let (store, _) = store::Store::open(&[data.to_owned()]).unwrap();
    let rec = store
        .start_recorder(store::RecorderConfig {
            segment: Duration::from_secs(60),
            flush_interval: Duration::from_millis(100),
            queue_frames: 1 << 20,
            ..store::RecorderConfig::default()
        })
        .unwrap();
    let stream = StreamId::main(cam);
    for f in
        camsim::BuiltinFixture::H264_1080p
            .load()
            .frames(&stream, minutes * 60 * 25, 0, WallTime::from_micros(base))
    {
        let mut f = f;
        loop {
            match rec.try_push(f) {
                Ok(()) => break,
                Err(back) => {
                    f = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    rec.end_stream(&stream);
    rec.shutdown().unwrap();
    let all = store.disks()[0].index().all_segments().unwrap();
    all.into_iter().filter(|r| r.stream == stream).collect()
}

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// (user+system CPU seconds, RSS bytes) of a process.
pub fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / ticks_per_sec();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    (cpu, rss)
}

/// A `sharpeye run` started by a bench, killed when dropped.
pub struct RunningNode {
    /// Its process id (for its CPU and memory).
    pub pid: u32,
    _child: std::process::Child,
    _kill: testkit::KillOnDrop,
}

/// Runs `sharpeye run` with `config` (written into `dir`, its log at `RUST_LOG=log` into
/// `dir/node.log`) and returns once its API at `addr` answers.
pub fn run_node(dir: &Path, config: &str, addr: std::net::SocketAddr, log: &str) -> RunningNode {
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, config).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sharpeye"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", log)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    let kill = testkit::KillOnDrop(child.id());
    let t0 = std::time::Instant::now();
    while ureq::get(&format!("http://{addr}/healthz")).call().is_err() {
        assert!(t0.elapsed() < Duration::from_secs(30), "node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    RunningNode {
        pid: kill.0,
        _child: child,
        _kill: kill,
    }
}

/// A one-thread runtime for camsim inside a bench process (the node under test runs apart).
pub fn sim_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// `n` cameras `cam0..` of the ~4 Mbit/s 1080p H.264 fixture, each with its 320×240 H.264
/// sub-stream (`camN-sub`).
pub fn sub_streamed_1080p(n: usize) -> Vec<camsim::CameraSpec> {
    camsim::with_sub_streams(
        (0..n)
            .map(|i| camsim::CameraSpec::new(format!("cam{i}"), camsim::BuiltinFixture::H264_1080p.load()))
            .collect(),
    )
}

/// Logs in as `admin` with `password` on the node at `addr`: the `Authorization` header value.
pub fn bearer(agent: &ureq::Agent, addr: std::net::SocketAddr, password: &str) -> String {
    let login: serde_json::Value = agent
        .post(&format!("http://{addr}/api/v1/login"))
        .send_json(serde_json::json!({ "username": "admin", "password": password }))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    format!("Bearer {}", login["token"].as_str().unwrap())
}
