//! The dispatch-room wall in headless Chromium against a real `sharpeye run` recording camsim's
//! cameras (1080p H.264 main, 320×240 H.264 sub), driven through the public API as a dispatch
//! module would: a layout is pushed to a named wall (`PUT /api/v1/walls/bench`) and a kiosk
//! screen (`/wall/bench`, 1920×1080, device token) shows it.
//!
//! Two phases, each `--minutes` long:
//! 1. **16 tiles** (4×4, the screen picks main streams: tiles are 250 px high);
//! 2. **25 tiles pushed on sub-streams** (5×5, `stream: "sub"`).
//!
//! Halfway through each, one camera goes dark (the node's pull of it fails). Reported per phase:
//! time from the page's navigation to every tile decoding (goal < 2 s); the browser's memory
//! (RSS of all its processes) after the first minute and at the end, and their ratio (goal:
//! no growth, ≤ 1.10); frames decoded and dropped per tile (min / median / max), the longest
//! stretch any *other* tile went without a new frame after the failure (goal: < 2 s, no tile
//! stalls while another fails); and the node's CPU against a baseline measured in the same run
//! while it only recorded (the ratio is what the wall costs the server). Each minute it also
//! prints the browser's proportional memory (PSS: anonymous, file, shared) by Chromium process
//! type, since summed RSS counts the pages processes share once per process.
//!
//! ```text
//! cargo bench --bench wall -- [--minutes 10] [--every 5]
//! ```
//! Run by hand, not in CI (it needs Chromium and playwright-core, as `scripts/test.sh` installs).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pct, usage};
use serde_json::{Value, json};

/// Command-line arguments (`cargo bench --bench wall -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--minutes`: length of each phase.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// `--every`: seconds between samples.
    #[arg(long, default_value_t = 5)]
    every: u64,
    /// `--only`: run one phase (`16` or `25`).
    #[arg(long)]
    only: Option<usize>,
    /// `--transport fmp4|webrtc`: the kiosk page plays every H.264 tile over MSE, or over
    /// WebRTC first (`?transport=`), instead of its own choice (WebRTC up to 16 tiles, fMP4 above).
    #[arg(long)]
    transport: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const PASSWORD: &str = "bench-password";
const CAMERAS: usize = 25;

/// `pid` and all its descendants (Chromium's browser, renderer, GPU and utility processes).
/// Children are listed per thread: Chromium's browser starts its network service from a pool
/// thread, so every thread's `children` is read, not only the main thread's.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        all.push(p);
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            stack.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    all
}

/// RSS of `pid` and all its descendants.
fn tree_rss(pid: u32) -> u64 {
    tree(pid).into_iter().map(|p| usage(p).1).sum()
}

/// Proportional memory (from `/proc/PID/smaps_rollup`, in bytes) of the processes of one type.
/// Unlike RSS, a page shared by several processes (libraries, the shared-memory frame pools
/// between renderer, GPU and browser processes) is split between them, so sums count it once.
#[derive(Default, Clone, Copy)]
struct Pss {
    /// How many processes of this type.
    procs: u32,
    /// `Pss`: all their memory (= `anon` + `file` + `shmem`).
    total: u64,
    /// `Pss_Anon`: private and anonymous memory (heaps, decoders' buffers).
    anon: u64,
    /// `Pss_File`: mapped files (the binary, libraries, fonts, resource packs).
    file: u64,
    /// `Pss_Shmem`: shared memory (frame pools, Mojo data pipes between processes).
    shmem: u64,
    /// `Rss`, summed as `tree_rss` does, to compare.
    rss: u64,
}

/// Chromium's type of process `pid`, from its command line: `--type=renderer`, `gpu-process`,
/// `zygote`, `utility:NetworkService` (with its `--utility-sub-type`), …; `browser` without one,
/// and the program's name for anything that is not Chromium (its crash handler).
fn chromium_type(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    // Chromium rewrites its process title: the arguments are separated by spaces, not NULs.
    let args: Vec<&str> = cmdline.split(['\0', ' ']).collect();
    let flag = |name: &str| args.iter().find_map(|a| a.strip_prefix(name));
    match (flag("--type="), flag("--utility-sub-type=")) {
        (Some("utility"), Some(sub)) => format!("utility:{}", sub.rsplit('.').next().unwrap_or(sub)),
        (Some(t), _) => t.to_owned(),
        (None, _) => match args[0].rsplit('/').next().unwrap_or("") {
            "chromium" | "chrome" | "" => "browser".to_owned(),
            other => other.to_owned(),
        },
    }
}

/// PSS of every descendant of `pid` (not `pid` itself: the driver), summed by `chromium_type`.
fn tree_pss(pid: u32) -> std::collections::BTreeMap<String, Pss> {
    let mut by_type = std::collections::BTreeMap::<String, Pss>::new();
    for p in tree(pid).into_iter().filter(|p| *p != pid) {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        let e = by_type.entry(chromium_type(p)).or_default();
        e.procs += 1;
        for line in rollup.lines() {
            let mut f = line.split_whitespace();
            let (Some(key), Some(kb)) = (f.next(), f.next().and_then(|v| v.parse::<u64>().ok())) else {
                continue;
            };
            match key {
                "Rss:" => e.rss += kb * 1024,
                "Pss:" => e.total += kb * 1024,
                "Pss_Anon:" => e.anon += kb * 1024,
                "Pss_File:" => e.file += kb * 1024,
                "Pss_Shmem:" => e.shmem += kb * 1024,
                _ => {}
            }
        }
    }
    by_type
}

/// Prints `tree_pss`'s breakdown at `t_s`: one row per process type and their sum, in MB.
fn print_pss(t_s: f64, by_type: &std::collections::BTreeMap<String, Pss>) {
    let row = |name: &str, p: &Pss| {
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "  {name:<28} {:>5} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            p.procs,
            mb(p.total),
            mb(p.anon),
            mb(p.file),
            mb(p.shmem),
            mb(p.rss)
        );
    };
    println!(
        "browser PSS at {t_s:.0} s, MB:\n  {:<28} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "process type", "procs", "Pss", "anon", "file", "shmem", "Rss"
    );
    let mut all = Pss::default();
    for (name, p) in by_type {
        row(name, p);
        all.procs += p.procs;
        all.total += p.total;
        all.anon += p.anon;
        all.file += p.file;
        all.shmem += p.shmem;
        all.rss += p.rss;
    }
    row("all", &all);
}

fn call(method: &str, url: &str, token: &str, body: Value) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let req = agent
        .run(
            ureq::http::Request::builder()
                .method(method)
                .uri(url)
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .unwrap(),
        )
        .unwrap();
    let text = req.into_body().read_to_string().unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

struct Phase {
    name: &'static str,
    layout: &'static str,
    tiles: usize,
    stream: Option<&'static str>,
}

fn main() {
    let args: Args = clap::Parser::parse();
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "needs playwright-core and Chromium: run scripts/test.sh once"
    );
    let rt = common::sim_runtime();
    let specs = common::sub_streamed_1080p(CAMERAS);
    let cams = camsim::Cameras::new(specs);
    let sim = rt
        .block_on(camsim::Camsim::start("127.0.0.1:0".parse().unwrap(), cams.clone()))
        .unwrap();
    let sim_addr = sim.local_addr();

    let dir = tempfile::tempdir().unwrap();
    let addr = testkit::free_addr();
    let mut config = format!(
        "[server]\nlisten = \"{addr}\"\nrtsp_listen = \"{}\"\ndata_dirs = [\"{}\"]\n\n[live]\nmax_viewers = 1000\n\n[[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\nrole = \"admin\"\n\n",
        testkit::free_addr(),
        dir.path().join("data").display()
    );
    for i in 0..CAMERAS {
        config.push_str(&format!(
            "[[cameras]]\nid = \"cam{i}\"\nurl = \"rtsp://{sim_addr}/cam{i}\"\nsub_url = \"rtsp://{sim_addr}/cam{i}-sub\"\norg = \"bench\"\n\n"
        ));
    }
    let node = common::run_node(dir.path(), &config, addr, "warn");
    let base = format!("http://{addr}/");
    let login: Value = serde_json::from_str(
        &ureq::post(&format!("{base}api/v1/login"))
            .header("Content-Type", "application/json")
            .send(json!({"username": "admin", "password": PASSWORD}).to_string())
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let admin = login["token"].as_str().unwrap().to_owned();
    let device = call(
        "POST",
        &format!("{base}api/v1/tokens"),
        &admin,
        json!({"name": "bench-wall", "actions": ["live"], "resources": ["*"]}),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The baseline: the node recording every camera, no one watching.
    std::thread::sleep(Duration::from_secs(5));
    let (c0, _) = usage(node.pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let baseline_cpu = (usage(node.pid).0 - c0) / t0.elapsed().as_secs_f64();
    println!(
        "baseline: the node records {CAMERAS} cameras at {:.1} % of a core",
        baseline_cpu * 100.0
    );

    let phases = [
        Phase {
            name: "16 tiles (4x4, screen picks the stream)",
            layout: "4x4",
            tiles: 16,
            stream: None,
        },
        Phase {
            name: "25 tiles (5x5, pushed on sub-streams)",
            layout: "5x5",
            tiles: 25,
            stream: Some("sub"),
        },
    ];
    for phase in phases {
        if args.only.is_some_and(|n| n != phase.tiles) {
            continue;
        }
        let tiles: Vec<Value> = (0..phase.tiles)
            .map(|i| match phase.stream {
                Some(s) => json!({"camera": format!("cam{i}"), "stream": s}),
                None => json!({"camera": format!("cam{i}")}),
            })
            .collect();
        call(
            "PUT",
            &format!("{base}api/v1/walls/bench"),
            &admin,
            json!({"layout": phase.layout, "tiles": tiles}),
        );
        let victim = format!("cam{}", phase.tiles - 1);
        let seconds = args.minutes * 60;
        let mut child = Command::new("node")
            .arg(browser_dir.join("wallbench.mjs"))
            .args([
                &base,
                "bench",
                &device,
                &seconds.to_string(),
                &phase.tiles.to_string(),
                &victim,
            ])
            .arg(args.every.to_string())
            .arg(args.transport.as_deref().unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut stdin = child.stdin.take().unwrap();
        let (cpu_start, _) = usage(node.pid);
        let started = Instant::now();
        // Chromium runs under the driver: its memory is the driver's process tree but the driver.
        let driver = child.id();
        let browser_rss = || tree_rss(driver).saturating_sub(usage(driver).1);
        let mut ready_ms = -1i64;
        let mut samples: Vec<(f64, u64, Vec<Value>)> = Vec::new();
        let mut killed_at: Option<f64> = None;
        // The page's JavaScript heap (what our code holds) beside the processes' RSS.
        let mut heaps: Vec<u64> = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(ms) = line.strip_prefix("READY ") {
                ready_ms = ms.trim().parse().unwrap_or(-1);
            } else if let Some(s) = line.strip_prefix("SAMPLE ") {
                let v: Value = serde_json::from_str(s).unwrap();
                let t_s = v["t_s"].as_f64().unwrap();
                samples.push((t_s, browser_rss(), v["tiles"].as_array().unwrap().clone()));
                heaps.push(v["heap"].as_u64().unwrap_or(0));
                // RSS counts shared pages once per process: each minute, PSS by process type too.
                let pss = tree_pss(driver);
                if (t_s % 60.0) < args.every as f64 {
                    print_pss(t_s, &pss);
                }
            } else if line.starts_with("NEED kill") {
                // The camera dies: both its streams.
                for path in [victim.clone(), format!("{victim}-sub")] {
                    let c = cams.get(&path).unwrap();
                    c.go_dark();
                    c.drop_connections();
                }
                killed_at = samples.last().map(|s| s.0);
                writeln!(stdin, "ok").unwrap();
            }
        }
        child.wait().unwrap();
        let cpu = (usage(node.pid).0 - cpu_start) / started.elapsed().as_secs_f64();
        for path in [victim.clone(), format!("{victim}-sub")] {
            cams.get(&path).unwrap().wake();
        }

        // Memory, minute by minute (where growth happens tells its cause: the failure, or steady play).
        let per_minute: Vec<String> = samples
            .iter()
            .zip(&heaps)
            .filter(|(s, _)| (s.0 % 60.0) < args.every as f64)
            .map(|(s, h)| {
                format!(
                    "{:.0} s {:.0} MB (JS heap {:.1} MB)",
                    s.0,
                    s.1 as f64 / 1e6,
                    *h as f64 / 1e6
                )
            })
            .collect();
        println!("browser memory by minute: {}", per_minute.join(", "));
        // Memory: after the first minute, and at the end.
        let after_minute = samples
            .iter()
            .find(|s| s.0 >= 60.0)
            .or(samples.first())
            .map_or(0, |s| s.1);
        let end_rss = samples.last().map_or(0, |s| s.1);
        // Per tile: frames and drops at the end; the longest run without a new frame after the
        // failure, for every tile but the failed camera's.
        let last = &samples.last().unwrap().2;
        let frames: Vec<f64> = last.iter().map(|t| t["frames"].as_f64().unwrap_or(0.0)).collect();
        let dropped: Vec<f64> = last.iter().map(|t| t["dropped"].as_f64().unwrap_or(0.0)).collect();
        let mut worst_gap: f64 = 0.0;
        for tile in 0..phase.tiles {
            if last[tile]["camera"] == victim.as_str() {
                continue;
            }
            let mut since = None::<f64>;
            let mut prev = -1.0;
            for (t, _, ts) in &samples {
                let f = ts[tile]["frames"].as_f64().unwrap_or(0.0);
                if killed_at.is_some_and(|k| *t >= k) {
                    let s = since.get_or_insert(*t);
                    if f > prev {
                        *s = *t;
                    }
                    worst_gap = worst_gap.max(t - *s);
                }
                prev = f;
            }
        }
        let victim_badge = last
            .iter()
            .find(|t| t["camera"] == victim.as_str())
            .and_then(|t| t["badge"].as_str())
            .unwrap_or("none")
            .to_owned();
        println!("\n== {} for {} min", phase.name, args.minutes);
        println!(
            "all tiles playing after {ready_ms} ms (goal < 2000 ms: {})",
            if (0..2000).contains(&ready_ms) { "met" } else { "MISSED" }
        );
        println!(
            "browser memory: {:.0} MB after the first minute, {:.0} MB at the end: ratio {:.2} (goal ≤ 1.10: {})",
            after_minute as f64 / 1e6,
            end_rss as f64 / 1e6,
            end_rss as f64 / after_minute.max(1) as f64,
            if end_rss as f64 <= after_minute as f64 * 1.10 {
                "met"
            } else {
                "MISSED"
            }
        );
        println!(
            "frames decoded per tile: min {:.0} median {:.0} max {:.0} (expected {} at 25 fps)",
            pct(frames.clone(), 0.0),
            pct(frames.clone(), 0.5),
            pct(frames, 1.0),
            seconds * 25
        );
        println!(
            "frames dropped per tile: min {:.0} median {:.0} max {:.0}",
            pct(dropped.clone(), 0.0),
            pct(dropped.clone(), 0.5),
            pct(dropped, 1.0)
        );
        println!(
            "{victim} failed at {:.0} s (its tile: {victim_badge}); the longest any other tile went without a new frame afterwards: {worst_gap:.1} s with samples every {} s (goal: no stall: {})",
            killed_at.unwrap_or(-1.0),
            args.every,
            if worst_gap < args.every as f64 * 1.5 {
                "met"
            } else {
                "MISSED"
            }
        );
        println!(
            "node CPU: {:.1} % of a core against {:.1} % recording only: ratio {:.2}",
            cpu * 100.0,
            baseline_cpu * 100.0,
            cpu / baseline_cpu.max(1e-9)
        );
    }
    drop(node);
    rt.block_on(sim.stop());
}
