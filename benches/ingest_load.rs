//! Ingest-and-record load harness.
//!
//! N camsim cameras (one fixture, default the ~4 Mbit/s 1080p H.264 clip) are recorded for a
//! while by a `sharpeye run` child process over loopback RTSP/TCP; then, in the same run, the
//! same cameras are recorded by GStreamer (`rtspsrc ! rtph264depay ! h264parse ! splitmuxsink`).
//! Prints, for each recorder: CPU per camera (% of one core, the recorder process only), RSS per
//! camera, frames lost (sent by camsim minus found on disk) and MB/s written, and the ratio of
//! the two CPU figures.
//!
//! ```text
//! cargo bench --bench ingest_load -- --cameras 100 --seconds 60 [--fixture h264_1080p]
//!                                    [--gst-cameras 100] [--no-gstreamer] [--data DIR] [--pin]
//! ```
//! With `--pin`, camsim (this process) runs on CPU 1 and each recorder on CPU 0 alone: a run
//! without loss at N cameras says one core records N such cameras.
//! `scripts/bench-ingest.sh` installs GStreamer and ffmpeg first. Not run in CI.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::usage;

/// Command-line arguments (`cargo bench --bench ingest_load -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--cameras`.
    #[arg(long, default_value_t = 100)]
    cameras: usize,
    /// `--seconds`.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// `--fixture`.
    #[arg(long, default_value = "h264_1080p")]
    fixture: String,
    /// `--gst-cameras`.
    #[arg(long)]
    gst_cameras: Option<usize>,
    /// `--no-gstreamer`.
    #[arg(long = "no-gstreamer", action = clap::ArgAction::SetFalse)]
    gstreamer: bool,
    /// `--data`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// `--pin`: camsim (this process) on CPU 1, the recorder on CPU 0, so that the recorder's
    /// figures are those of one core of its own (cameras recorded per core).
    #[arg(long)]
    pin: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    clap::Parser::parse()
}

fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("wchar:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Figures {
    name: &'static str,
    cameras: usize,
    cpu_pct_per_camera: f64,
    rss_mib_per_camera: f64,
    sent: u64,
    recorded: u64,
    mb_per_s: f64,
}

fn report(f: &Figures) {
    println!(
        "{:<10} cameras {:>5}  cpu/camera {:>7.3} % of a core  rss/camera {:>6.3} MiB  frames sent {:>8}  recorded {:>8}  lost {:>6}  written {:>7.1} MB/s",
        f.name,
        f.cameras,
        f.cpu_pct_per_camera,
        f.rss_mib_per_camera,
        f.sent,
        f.recorded,
        f.sent as i64 - f.recorded as i64,
        f.mb_per_s
    );
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn frames_by_session(cams: &camsim::Cameras, from_session: &HashMap<String, usize>) -> u64 {
    cams.all()
        .iter()
        .map(|c| {
            c.sessions()
                .iter()
                .skip(from_session[c.path()])
                .map(|s| s.frames)
                .sum::<u64>()
        })
        .sum()
}

fn session_marks(cams: &camsim::Cameras) -> HashMap<String, usize> {
    cams.all()
        .iter()
        .map(|c| (c.path().to_owned(), c.sessions().len()))
        .collect()
}

/// Measures one recorder process between warm-up and the end, then stalls the cameras so the
/// last frames land, and stops it with `stop`.
fn measure(
    name: &'static str,
    child: &mut Child,
    cams: &camsim::Cameras,
    n: usize,
    seconds: u64,
    stop: impl FnOnce(&mut Child),
) -> (Figures, HashMap<String, usize>) {
    let marks = session_marks(cams);
    let started = wait_for(Duration::from_secs(60), || {
        cams.all().iter().all(|c| c.sessions().len() > marks[c.path()])
    });
    assert!(started, "{name}: not every camera connected within 60 s");
    std::thread::sleep(Duration::from_secs(5));
    let pid = child.id();
    let (cpu0, _) = usage(pid);
    let w0 = written_bytes(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, rss) = usage(pid);
    let w1 = written_bytes(pid);
    let elapsed = t0.elapsed().as_secs_f64();
    for c in cams.all() {
        c.stall();
    }
    std::thread::sleep(Duration::from_secs(2));
    stop(child);
    let sent = frames_by_session(cams, &marks);
    (
        Figures {
            name,
            cameras: n,
            cpu_pct_per_camera: (cpu1 - cpu0) / elapsed / n as f64 * 100.0,
            rss_mib_per_camera: rss as f64 / n as f64 / 1_048_576.0,
            sent,
            recorded: 0,
            mb_per_s: (w1 - w0) as f64 / elapsed / 1e6,
        },
        marks,
    )
}

/// Prints the recorder's own counters (where frames went) from `/api/v1/health`.
fn print_health(addr: SocketAddr) {
    use std::io::{Read, Write};
    let call = |req: String| -> String {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return String::new();
        };
        let _ = s.write_all(req.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    };
    let body = r#"{"username":"admin","password":"bench-password"}"#;
    let login = call(format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let token = serde_json::from_str::<serde_json::Value>(&login)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let health = call(format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    ));
    let v: serde_json::Value = serde_json::from_str(&health).unwrap_or_default();
    println!("sharpeye recorder counters: {}", v["recorder"]);
}

fn count_frames_ffprobe(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| testkit::ffprobe_packets(&e.path())).sum())
        .unwrap_or(0)
}

/// Keeps this process (and the threads it starts from now on) on `cpu`.
fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it; the call only
    // reads the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "cannot pin the harness to CPU {cpu}"
        );
    }
}

/// A command for `program`, run on CPU 0 alone when pinning.
fn recorder_command(program: &str, pin: bool) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", program]);
        c
    } else {
        Command::new(program)
    }
}

fn main() {
    let a = args();
    if a.pin {
        pin_self(1);
    }
    let fixture =
        camsim::BuiltinFixture::parse(&a.fixture).expect("--fixture: h264_1080p, h264_240p, h265_1080p or h265_240p");
    let tmp = tempfile::tempdir().unwrap();
    let base = a.data.clone().unwrap_or_else(|| tmp.path().to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cams = camsim::Cameras::new((0..a.cameras).map(|i| camsim::CameraSpec::new(format!("cam{i}"), fixture.load())));
    let sim = rt
        .block_on(camsim::Camsim::start("127.0.0.1:0".parse().unwrap(), cams.clone()))
        .unwrap();
    println!(
        "ingest_load: {} cameras of {} (~{:.1} Mbit/s each), {} s measured after 5 s warm-up, camsim at {}{}",
        a.cameras,
        a.fixture,
        fixture.load().bitrate() as f64 / 1e6,
        a.seconds,
        sim.local_addr(),
        if a.pin {
            ", camsim on CPU 1, recorders on CPU 0"
        } else {
            ""
        }
    );

    // Sharpeye.
    let data = base.join("sharpeye-data");
    let listen = testkit::free_addr();
    let mut config = format!(
        "[server]\nlisten = \"{listen}\"\ndata_dirs = [\"{}\"]\n[recording]\nsegment = \"60s\"\n[[users]]\nname = \"admin\"\npassword = \"bench-password\"\nrole = \"admin\"\n",
        data.display()
    );
    for i in 0..a.cameras {
        config.push_str(&format!(
            "[[cameras]]\nid = \"cam{i}\"\nurl = \"{}\"\n",
            sim.url(&format!("cam{i}"))
        ));
    }
    let cfg_path = base.join("bench.toml");
    std::fs::write(&cfg_path, config).unwrap();
    let mut child = recorder_command(env!("CARGO_BIN_EXE_sharpeye"), a.pin)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _guard = testkit::KillOnDrop(child.id());
    let health_addr = listen;
    let (mut ours, _) = measure("sharpeye", &mut child, &cams, a.cameras, a.seconds, |c| {
        print_health(health_addr);
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    });
    let (store, _) = store::Store::open(std::slice::from_ref(&data)).unwrap();
    ours.recorded = store.disks()[0]
        .index()
        .all_segments()
        .unwrap()
        .iter()
        .map(|r| r.frames)
        .sum();
    drop(store);
    report(&ours);

    // GStreamer, same cameras, fresh sessions.
    let gst_n = a.gst_cameras.unwrap_or(a.cameras).min(a.cameras);
    let have_gst = Command::new("gst-launch-1.0")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    rt.block_on(sim.stop());
    if a.gstreamer && have_gst && fixture.name().starts_with("h264") {
        // A fresh camera set and server for GStreamer, so that its counts are its own.
        let gcams =
            camsim::Cameras::new((0..gst_n).map(|i| camsim::CameraSpec::new(format!("cam{i}"), fixture.load())));
        let gsim = rt
            .block_on(camsim::Camsim::start("127.0.0.1:0".parse().unwrap(), gcams.clone()))
            .unwrap();
        let gdir = base.join("gst-data");
        std::fs::create_dir_all(&gdir).unwrap();
        let mut pipeline: Vec<String> = Vec::new();
        for i in 0..gst_n {
            pipeline.extend(
                format!(
                    "rtspsrc location={} protocols=tcp latency=0 ! rtph264depay ! h264parse ! splitmuxsink max-size-time=60000000000 location={}/cam{i}-%05d.mp4",
                    gsim.url(&format!("cam{i}")),
                    gdir.display()
                )
                .split(' ')
                .map(str::to_owned),
            );
        }
        let mut g = recorder_command("gst-launch-1.0", a.pin)
            .arg("-q")
            .arg("-e")
            .args(&pipeline)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _gst_guard = testkit::KillOnDrop(g.id());
        let (mut theirs, _) = measure("gstreamer", &mut g, &gcams, gst_n, a.seconds, |c| {
            // SAFETY: sending a signal to our own child; -e turns SIGINT into EOS so files finish.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        });
        theirs.recorded = count_frames_ffprobe(&gdir);
        report(&theirs);
        println!(
            "ratio: sharpeye uses {:.3}x GStreamer's CPU per camera ({:.1}x less)",
            ours.cpu_pct_per_camera / theirs.cpu_pct_per_camera,
            theirs.cpu_pct_per_camera / ours.cpu_pct_per_camera
        );
        rt.block_on(gsim.stop());
    } else {
        println!("gstreamer: skipped (needs gst-launch-1.0 and an H.264 fixture; scripts/bench-ingest.sh installs it)");
    }
}
