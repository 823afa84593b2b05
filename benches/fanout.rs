//! Live fan-out benchmark: one ~4 Mbit/s 1080p H.264 camera (camsim) re-served to `--viewers`
//! clients over loopback, by Sharpeye (RTSP/TCP and live.mp4) and, in the same run, by
//! GStreamer's RTSP server relaying the same camera over one shared upstream.
//!
//! Reported per server: delivered Gbit/s, server CPU seconds per Gbit delivered (from
//! `/proc/PID/stat`), time to first frame cold (first viewer, upstream idle) and warm (p50/p99 of
//! the others), and added latency: a frame's arrival at a viewer minus its arrival at a client
//! connected straight to the camera (p50/p99 over all RTSP viewers' frames; matched by RTP
//! timestamp offset found from frame sizes).
//!
//! ```text
//! cargo bench --bench fanout -- [--viewers 1000] [--seconds 15] [--no-gstreamer] [--separate]
//! ```
//! By default the clients run in this process on the same 2 cores, so absolute Gbit/s are
//! bounded by them too; the ratio against GStreamer is measured under the same handicap. With
//! `--separate` the RTSP viewers run in a child process pinned with camsim to CPU 1 and each
//! server is pinned alone to CPU 0: the server's latency is then its own, on one core. Run by hand
//! (`scripts/bench-fanout.sh`), not in CI.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::pct;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Command-line arguments (`cargo bench --bench fanout -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--viewers`.
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// `--seconds`.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// `--no-gstreamer`.
    #[arg(long = "no-gstreamer", action = clap::ArgAction::SetFalse)]
    gstreamer: bool,
    /// `--whep`.
    #[arg(long, default_value_t = 50)]
    whep: usize,
    /// `--separate`: the RTSP viewers (all but the first, cold one) run in a process of their
    /// own on CPU 1 with camsim, and each server alone on CPU 0, so that the viewers' scheduling
    /// is not the server's.
    #[arg(long)]
    separate: bool,
    /// Internal: run as that viewers' process (`--viewer-child URL`), driven over stdin.
    #[arg(long, hide = true)]
    viewer_child: Option<String>,
    /// Internal: how many viewers the child runs.
    #[arg(long, hide = true, default_value_t = 0)]
    count: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    clap::Parser::parse()
}

/// One complete frame as a client saw it.
#[derive(Clone, Copy)]
struct Seen {
    at: Instant,
    ts: u32,
    size: usize,
}

/// What one viewer measured.
#[derive(Default)]
struct ViewerLog {
    connected: Option<Instant>,
    first_frame: Option<Instant>,
    frames: Vec<Seen>,
}

/// Shared by all viewers: bytes received (for throughput), and a stop flag.
struct Shared {
    bytes: AtomicU64,
    stop: AtomicBool,
}

async fn read_response(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<(u16, HashMap<String, String>, String)> {
    let mut head = Vec::new();
    loop {
        let b = r.read_u8().await?;
        head.push(b);
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Set in the viewers' process: each viewer's socket gets a receive buffer of 1 MB (several key
/// frames), so that a frame reaches the socket when the server sends it rather than when this
/// process, busy with 999 sockets on one core, has drained the one before.
static BIG_RCVBUF: AtomicBool = AtomicBool::new(false);

type Playing = (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
);

/// An RTSP/TCP viewer of `url`: DESCRIBE, SETUP (interleaved), PLAY, then frames until stop.
async fn rtsp_viewer(url: String, shared: Arc<Shared>, keep_frames: bool) -> ViewerLog {
    let mut log = ViewerLog::default();
    let Some((mut rd, _wr)) = rtsp_play(&url, &mut log, false).await else {
        return log;
    };
    let mut pkt = vec![0u8; 65536];
    let mut frames = FrameCounter::default();
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok(b) = rd.read_u8().await else { break };
        if b != b'$' {
            // An RTSP message from the server (rare): skip its head.
            continue;
        }
        let mut h = [0u8; 3];
        if rd.read_exact(&mut h).await.is_err() {
            break;
        }
        let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
        if rd.read_exact(&mut pkt[..len]).await.is_err() {
            break;
        }
        shared.bytes.fetch_add(len as u64 + 4, Ordering::Relaxed);
        if let Some((ts, size)) = frames.packet(h[0], &pkt[..len]) {
            let now = Instant::now();
            log.first_frame.get_or_insert(now);
            if keep_frames {
                log.frames.push(Seen { at: now, ts, size });
            }
        }
    }
    log
}

/// Frames from interleaved RTP packets: the video channel's payload bytes are counted until
/// the packet that ends a frame (the marker bit).
#[derive(Default)]
struct FrameCounter {
    size: usize,
}

impl FrameCounter {
    /// Takes one packet of `channel`; at a frame's last packet, that frame's RTP timestamp and
    /// payload size.
    fn packet(&mut self, channel: u8, pkt: &[u8]) -> Option<(u32, usize)> {
        if channel != 0 || pkt.len() < 12 {
            return None;
        }
        self.size += pkt.len() - 12;
        (pkt[1] & 0x80 != 0).then(|| {
            (
                u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
                std::mem::take(&mut self.size),
            )
        })
    }
}

/// Sets an integer `SOL_SOCKET` option; false if the kernel refused it.
fn socket_option(stream: &TcpStream, name: libc::c_int, value: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket we own, reading an int we own.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Connects and plays `url`; with `kernel_times`, the socket stamps every segment it receives.
async fn rtsp_play(url: &str, log: &mut ViewerLog, kernel_times: bool) -> Option<Playing> {
    let u = url::Url::parse(url).unwrap();
    let addr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
    let t0 = Instant::now();
    let stream = TcpStream::connect(&addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    if BIG_RCVBUF.load(Ordering::Relaxed) {
        socket_option(&stream, libc::SO_RCVBUF, 1 << 20);
    }
    if kernel_times {
        let flags = libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;
        assert!(
            socket_option(&stream, libc::SO_TIMESTAMPING, flags as libc::c_int),
            "SO_TIMESTAMPING"
        );
    }
    log.connected = Some(t0);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let send = |m: String| m.into_bytes();
    let _ = wr
        .write_all(&send(format!(
            "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
        )))
        .await;
    let Ok((200, headers, sdp)) = read_response(&mut rd).await else {
        return None;
    };
    let base = headers
        .get("content-base")
        .cloned()
        .unwrap_or_else(|| format!("{url}/"));
    let control = sdp
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("a=control:"))
        .unwrap_or("trackID=0")
        .to_owned();
    let setup_url = if control.starts_with("rtsp://") {
        control
    } else {
        format!("{}{}{control}", base, if base.ends_with('/') { "" } else { "/" })
    };
    let _ = wr
        .write_all(&send(format!(
            "SETUP {setup_url} RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        )))
        .await;
    let Ok((200, headers, _)) = read_response(&mut rd).await else {
        return None;
    };
    let session = headers
        .get("session")
        .map(|s| s.split(';').next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let _ = wr
        .write_all(&send(format!(
            "PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\nRange: npt=0.000-\r\n\r\n"
        )))
        .await;
    let Ok((200, _, _)) = read_response(&mut rd).await else {
        return None;
    };
    Some((rd, wr))
}

/// Reads `buf` full from `fd` (blocking); returns the kernel's receive time (CLOCK_REALTIME
/// ns) of the last segment the reads took bytes from, if the kernel stamped it.
fn read_exact_stamped(fd: i32, buf: &mut [u8]) -> std::io::Result<Option<i128>> {
    let mut done = 0;
    let mut stamp = None;
    while done < buf.len() {
        let mut iov = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: buf.len() - done,
        };
        let mut control = [0u64; 32];
        // SAFETY: a zeroed msghdr is valid; it points at the iovec and control buffer above,
        // which outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: fd is our socket; msg is set up above.
        let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // A signal, or a second without data (the socket's read timeout): read on.
            if matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            ) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        done += n as usize;
        // SAFETY: walking the control messages the kernel wrote into `control`.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPING {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    stamp = Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
    }
    Ok(stamp)
}

/// A logged RTSP viewer timed by the kernel: each frame's arrival is the software receive
/// timestamp of the TCP segment that completed it (SO_TIMESTAMPING), i.e. when the server's
/// bytes reached the socket, however late this viewer's thread gets to read them.
async fn rtsp_viewer_kernel_timed(url: String, shared: Arc<Shared>) -> ViewerLog {
    let mut log = ViewerLog::default();
    let Some((rd, wr)) = rtsp_play(&url, &mut log, true).await else {
        return log;
    };
    // Bytes read past the PLAY response during the handshake come first, untimed.
    let mut early = std::collections::VecDeque::from(rd.buffer().to_vec());
    let Ok(stream) = rd.into_inner().reunite(wr) else {
        return log;
    };
    let Ok(stream) = stream.into_std() else { return log };
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        // CLOCK_REALTIME (the stamps' clock) against Instant, taken together.
        let (i0, r0) = (Instant::now(), std::time::SystemTime::now());
        let r0 = r0.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128;
        let at = |ns: i128| {
            let d = Duration::from_nanos((ns - r0).unsigned_abs() as u64);
            if ns >= r0 { i0 + d } else { i0 - d }
        };
        let fd = stream.as_raw_fd();
        let mut read = |buf: &mut [u8]| -> std::io::Result<Option<i128>> {
            let n = early.len().min(buf.len());
            for (b, e) in buf[..n].iter_mut().zip(early.drain(..n)) {
                *b = e;
            }
            if n == buf.len() {
                return Ok(None);
            }
            read_exact_stamped(fd, &mut buf[n..])
        };
        let mut pkt = vec![0u8; 65536];
        let mut frames = FrameCounter::default();
        let mut h = [0u8; 4];
        while !shared.stop.load(Ordering::Relaxed) {
            if read(&mut h[..1]).is_err() {
                break;
            }
            if h[0] != b'$' {
                continue;
            }
            if read(&mut h[1..]).is_err() {
                break;
            }
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let Ok(stamp) = read(&mut pkt[..len]) else { break };
            shared.bytes.fetch_add(len as u64 + 4, Ordering::Relaxed);
            if let Some((ts, size)) = frames.packet(h[1], &pkt[..len])
                && let Some(now) = stamp.map(at)
            {
                log.first_frame.get_or_insert(now);
                log.frames.push(Seen { at: now, ts, size });
            }
        }
        log
    })
    .await
    .unwrap_or_default()
}

/// A live.mp4 viewer: counts bytes and the time to the first media byte.
async fn mp4_viewer(addr: SocketAddr, path: String, shared: Arc<Shared>) -> ViewerLog {
    let mut log = ViewerLog::default();
    let t0 = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return log;
    };
    log.connected = Some(t0);
    let _ = s
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await;
    let mut buf = vec![0u8; 256 * 1024];
    let mut seen = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen += n;
                // Headers and the init segment are a few hundred bytes; past 4 KB is video.
                if seen > 4096 {
                    log.first_frame.get_or_insert_with(Instant::now);
                }
                shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    log
}

/// CLOCK_MONOTONIC in nanoseconds: `Instant`'s clock, comparable between processes.
fn mono_ns() -> i128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

/// Converts between this process's `Instant`s and CLOCK_MONOTONIC nanoseconds.
#[derive(Clone, Copy)]
struct Clock {
    at: Instant,
    ns: i128,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            at: Instant::now(),
            ns: mono_ns(),
        }
    }
    fn to_ns(self, i: Instant) -> i128 {
        if i >= self.at {
            self.ns + (i - self.at).as_nanos() as i128
        } else {
            self.ns - (self.at - i).as_nanos() as i128
        }
    }
    fn to_instant(self, ns: i128) -> Instant {
        let d = Duration::from_nanos((ns - self.ns).unsigned_abs() as u64);
        if ns >= self.ns { self.at + d } else { self.at - d }
    }
}

/// The viewers' process: `count` RTSP viewers of `url`; on stdin `mark` prints the bytes
/// received so far, `stop` ends them and prints each viewer's log as a JSON line, then `end`.
fn viewer_child(url: String, count: usize) {
    use std::io::BufRead;
    BIG_RCVBUF.store(true, Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shared = Arc::new(Shared {
        bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let handles = rt.block_on(async {
        let mut h = Vec::new();
        for i in 0..count {
            // Every 10th viewer of the whole run logs frames, timed by the kernel; this child
            // holds viewers 1..
            h.push(if (i + 1) % 10 == 0 {
                tokio::spawn(rtsp_viewer_kernel_timed(url.clone(), shared.clone()))
            } else {
                tokio::spawn(rtsp_viewer(url.clone(), shared.clone(), false))
            });
            if (i + 1) % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        h
    });
    // The runtime keeps running the viewers on its thread while this one waits for commands.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let clock = Clock::now();
    rt.block_on(async {
        loop {
            let cmd = loop {
                if let Ok(c) = rx.try_recv() {
                    break c;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            match cmd.as_str() {
                "mark" => println!("bytes {}", shared.bytes.load(Ordering::Relaxed)),
                _ => break,
            }
        }
        shared.stop.store(true, Ordering::Relaxed);
        for h in handles {
            if let Ok(Ok(l)) = tokio::time::timeout(Duration::from_secs(5), h).await {
                let ns = |i: Option<Instant>| i.map(|i| clock.to_ns(i).to_string());
                let frames: Vec<serde_json::Value> = l
                    .frames
                    .iter()
                    .map(|f| serde_json::json!([clock.to_ns(f.at).to_string(), f.ts, f.size]))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"connected": ns(l.connected), "first_frame": ns(l.first_frame), "frames": frames})
                );
            }
        }
        println!("end");
    });
}

/// The parent's side of the viewers' process.
struct ViewerProcess {
    child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl ViewerProcess {
    fn start(url: &str, count: usize) -> ViewerProcess {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("taskset")
            .args(["-c", "1"])
            .arg(exe)
            .args(["--viewer-child", url, "--count", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        ViewerProcess {
            child,
            lines: std::io::BufRead::lines(std::io::BufReader::new(out)),
        }
    }
    fn say(&mut self, cmd: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }
    fn bytes(&mut self) -> u64 {
        self.say("mark");
        let l = self.lines.next().unwrap().unwrap();
        l.strip_prefix("bytes ").unwrap().parse().unwrap()
    }
    fn stop(mut self, clock: Clock) -> Vec<ViewerLog> {
        self.say("stop");
        let mut logs = Vec::new();
        for l in self.lines.by_ref().map_while(Result::ok) {
            if l == "end" {
                break;
            }
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            let at = |x: &serde_json::Value| {
                x.as_str()
                    .and_then(|s| s.parse::<i128>().ok())
                    .map(|ns| clock.to_instant(ns))
            };
            logs.push(ViewerLog {
                connected: at(&v["connected"]),
                first_frame: at(&v["first_frame"]),
                frames: v["frames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| {
                        Some(Seen {
                            at: at(&f[0])?,
                            ts: f[1].as_u64()? as u32,
                            size: f[2].as_u64()? as usize,
                        })
                    })
                    .collect(),
            });
        }
        let _ = self.child.wait();
        logs
    }
}

/// (busy, total) jiffies of each CPU, from /proc/stat.
fn cpu_times() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            let total: u64 = v.iter().take(8).sum();
            (total - idle, total)
        })
        .collect()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// For each relayed frame: its arrival and the index of the same frame in the direct session
/// (frames since that session's first), matched by the RTP timestamp offset under which non-key
/// frame sizes agree (each server picks its own timestamp base).
fn match_frames(direct: &[Seen], relayed: &[Seen]) -> Vec<(Instant, i64)> {
    let Some(first) = direct.first() else { return Vec::new() };
    let by_ts: HashMap<u32, &Seen> = direct.iter().map(|s| (s.ts, s)).collect();
    let sizes: HashMap<usize, Vec<&Seen>> = direct.iter().fold(HashMap::new(), |mut m, s| {
        m.entry(s.size).or_default().push(s);
        m
    });
    let mut votes: HashMap<u32, usize> = HashMap::new();
    for r in relayed.iter().take(200) {
        for d in sizes.get(&r.size).into_iter().flatten() {
            *votes.entry(r.ts.wrapping_sub(d.ts)).or_default() += 1;
        }
    }
    let Some((&offset, _)) = votes.iter().max_by_key(|(_, n)| **n) else {
        return Vec::new();
    };
    relayed
        .iter()
        .filter_map(|r| {
            by_ts
                .get(&r.ts.wrapping_sub(offset))
                .map(|d| (r.at, i64::from(d.ts.wrapping_sub(first.ts)) / 3600))
        })
        .collect()
}

/// Added latency (ms) of matched frames: arrival at the viewer minus the time camsim sent the
/// same frame on the relay's upstream session. Both camsim sessions start at the clip's first
/// frame and pace frame k at first + k × 40 ms, so the upstream index is the one with the same
/// position in the 100-frame clip nearest the arrival.
fn added_latency(matched: &[(Instant, i64)], upstream_first: Instant) -> Vec<f64> {
    const PERIOD_MS: f64 = 40.0;
    matched
        .iter()
        .map(|(at, j)| {
            let since = at.saturating_duration_since(upstream_first).as_secs_f64() * 1e3;
            let phase = j.rem_euclid(100);
            let approx = (since / PERIOD_MS).round() as i64;
            let i = approx - (approx - phase).rem_euclid(100);
            let i = if approx - i > 50 { i + 100 } else { i };
            since - i as f64 * PERIOD_MS
        })
        .collect()
}

struct Run {
    name: String,
    gbps: f64,
    cpu_per_gbit: f64,
    cold_ms: f64,
    warm: Vec<f64>,
    lat: Vec<f64>,
}

/// Runs `viewers` against a server, the first alone (cold), then the rest; measures a steady
/// window of `seconds`.
#[allow(clippy::too_many_arguments)]
async fn run(
    name: &str,
    pid: u32,
    camera: &camsim::CameraHandle,
    direct_url: &str,
    make: impl Fn(usize, Arc<Shared>) -> tokio::task::JoinHandle<ViewerLog>,
    viewers: usize,
    seconds: u64,
    child_url: Option<&str>,
) -> Run {
    let shared = Arc::new(Shared {
        bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    // camsim paces each session from its own start, so the reference session and the relay's
    // upstream session send frame k at different times: their first frames' times give the shift.
    let sessions_before = camera.sessions().len();
    let direct = tokio::spawn(rtsp_viewer(direct_url.to_owned(), shared.clone(), true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut handles = vec![make(0, shared.clone())];
    // Cold: wait for the first viewer's first frame before adding the others.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut child = child_url.map(|u| ViewerProcess::start(u, viewers - 1));
    if child.is_none() {
        for i in 1..viewers {
            handles.push(make(i, shared.clone()));
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(3 + viewers as u64 / 500)).await;
    let received = |child: &mut Option<ViewerProcess>| {
        shared.bytes.load(Ordering::Relaxed) + child.as_mut().map_or(0, |c| c.bytes())
    };
    let (b0, c0, t0) = (received(&mut child), cpu_seconds(pid), Instant::now());
    let cpus0 = cpu_times();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (b1, c1, dt) = (received(&mut child), cpu_seconds(pid), t0.elapsed().as_secs_f64());
    let busy: Vec<String> = cpu_times()
        .iter()
        .zip(&cpus0)
        .enumerate()
        .map(|(i, (b, a))| {
            format!(
                "CPU {i} {:.0} %",
                (b.0 - a.0) as f64 * 100.0 / (b.1 - a.1).max(1) as f64
            )
        })
        .collect();
    println!("{name}: busy during the window: {}", busy.join(", "));
    shared.stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for h in handles {
        // Viewers blocked in a read end when the server closes; do not wait for stragglers.
        if let Ok(Ok(l)) = tokio::time::timeout(Duration::from_secs(5), h).await {
            logs.push(l);
        }
    }
    if let Some(c) = child {
        logs.extend(c.stop(Clock::now()));
    }
    let direct = tokio::time::timeout(Duration::from_secs(5), direct)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let gbits = (b1 - b0) as f64 * 8.0 / 1e9;
    let ttff = |l: &ViewerLog| {
        l.first_frame
            .zip(l.connected)
            .map(|(f, c)| f.saturating_duration_since(c).as_secs_f64() * 1e3)
    };
    let cold_ms = logs.first().and_then(ttff).unwrap_or(f64::NAN);
    let warm: Vec<f64> = logs.iter().skip(1).filter_map(ttff).collect();
    // The relay's upstream: the camsim session opened after the reference one.
    let (now_i, now_w) = (Instant::now(), media::WallTime::now());
    let upstream_first = camera
        .sessions()
        .iter()
        .skip(sessions_before + 1)
        .find_map(|s| s.first_frame)
        .map(|w| now_i - Duration::from_micros(now_w.micros_since(w).max(0) as u64));
    // Only frames of the steady window count: a viewer's first frames are the cached GOP,
    // replayed at once when it joins so that it starts on a key frame, and are late by design.
    let window = |l: &ViewerLog| ViewerLog {
        connected: l.connected,
        first_frame: l.first_frame,
        frames: l
            .frames
            .iter()
            .filter(|f| f.at >= t0 && f.at <= t0 + Duration::from_secs_f64(dt))
            .copied()
            .collect(),
    };
    let logs_in_window: Vec<ViewerLog> = logs.iter().map(window).collect();
    let lat: Vec<f64> = match upstream_first {
        Some(u) => logs_in_window
            .iter()
            .flat_map(|l| added_latency(&match_frames(&direct.frames, &l.frames), u))
            .collect(),
        None => Vec::new(),
    };
    // Where the tail is: the worst added latency in each second of the run, and how many of
    // the logged frames of that second were over 20 ms.
    if let Some(u) = upstream_first {
        let mut per_second: std::collections::BTreeMap<u64, (f64, usize, usize)> = Default::default();
        for l in &logs_in_window {
            let m = match_frames(&direct.frames, &l.frames);
            for ((at, _), ms) in m.iter().zip(added_latency(&m, u)) {
                let e = per_second.entry(at.saturating_duration_since(u).as_secs()).or_default();
                e.0 = e.0.max(ms);
                e.1 += usize::from(ms > 20.0);
                e.2 += 1;
            }
        }
        let line: Vec<String> = per_second
            .iter()
            .map(|(s, (max, over, n))| format!("{s}s:{max:.0}ms({over}/{n})"))
            .collect();
        println!(
            "{name}: worst added latency per second (frames over 20 ms / frames): {}",
            line.join(" ")
        );
    }
    let got = logs.iter().filter(|l| l.first_frame.is_some()).count();
    println!("{name}: {got} of {viewers} viewers received video");
    Run {
        name: name.to_owned(),
        gbps: gbits / dt,
        cpu_per_gbit: (c1 - c0) / gbits.max(1e-9),
        cold_ms,
        warm,
        lat,
    }
}

fn report(r: &Run) {
    let p = |v: &Vec<f64>, q| if v.is_empty() { f64::NAN } else { pct(v.clone(), q) };
    println!(
        "{:<28} {:>6.2} Gbit/s  {:>6.2} CPU-s per Gbit ({:>5.2} Gbit/s per core)  TTFF cold {:>6.0} ms, warm p50 {:>5.0} / p99 {:>5.0} ms  added latency p50 {:>5.1} / p99 {:>6.1} ms",
        r.name,
        r.gbps,
        r.cpu_per_gbit,
        1.0 / r.cpu_per_gbit,
        r.cold_ms,
        p(&r.warm, 0.5),
        p(&r.warm, 0.99),
        p(&r.lat, 0.5),
        p(&r.lat, 0.99),
    );
}

fn main() {
    let a = args();
    if let Some(url) = a.viewer_child {
        viewer_child(url, a.count);
        return;
    }
    if a.separate {
        // camsim, the reference viewer and the cold viewer share CPU 1 with the viewers' process.
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the call reads the set we own.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(1, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
    }
    let server = |program: &str| {
        if a.separate {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", program]);
            c
        } else {
            Command::new(program)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cams = camsim::Cameras::new([camsim::CameraSpec::new(
        "cam0",
        camsim::BuiltinFixture::H264_1080p.load(),
    )]);
    let cam = cams.get("cam0").unwrap();
    let sim = rt
        .block_on(camsim::Camsim::start("127.0.0.1:0".parse().unwrap(), cams))
        .unwrap();
    let camera = sim.url("cam0");
    let fixture_bps = camsim::BuiltinFixture::H264_1080p.load().bitrate();
    println!(
        "camera: {camera}, {:.1} Mbit/s; {} viewers, {} s windows",
        fixture_bps as f64 / 1e6,
        a.viewers,
        a.seconds
    );

    // Sharpeye, on demand (not recording: the relay's cost alone).
    let dir = tempfile::tempdir().unwrap();
    let http = testkit::free_addr();
    let rtsp = testkit::free_addr();
    let cfg = dir.path().join("sharpeye.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{http}\"\nrtsp_listen = \"{rtsp}\"\ndata_dirs = [\"{}\"]\n\n[live]\nmax_viewers_per_stream = 100000\nmax_viewers = 100000\nidle = \"1s\"\n\n[[users]]\nname = \"admin\"\npassword = \"bench-password\"\nrole = \"admin\"\n\n[[cameras]]\nid = \"cam0\"\nname = \"cam0\"\nurl = \"{camera}\"\nrecord = false\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut node: Child = server(env!("CARGO_BIN_EXE_sharpeye"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = testkit::KillOnDrop(node.id());
    let (session, token) = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = ureq::post(&format!("http://{http}/api/v1/login"))
                .send_json(serde_json::json!({"username": "admin", "password": "bench-password"}));
            if let Ok(r) = r {
                let v: serde_json::Value = r.into_body().read_json().unwrap();
                let session = v["token"].as_str().unwrap().to_owned();
                let m: serde_json::Value = ureq::post(&format!("http://{http}/api/v1/cameras/cam0/media-token"))
                    .header("Authorization", &format!("Bearer {session}"))
                    .send_json(serde_json::json!({"action": "live", "ttl_s": 3600}))
                    .unwrap()
                    .into_body()
                    .read_json()
                    .unwrap();
                break (session, m["token"].as_str().unwrap().to_owned());
            }
            assert!(Instant::now() < deadline, "sharpeye did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut runs = Vec::new();
    let url = format!("rtsp://{rtsp}/cameras/cam0?token={token}");
    runs.push(rt.block_on(run(
        "sharpeye RTSP/TCP",
        node.id(),
        &cam,
        &camera,
        |i, s| tokio::spawn(rtsp_viewer(url.clone(), s, i % 10 == 0 && !a.separate)),
        a.viewers,
        a.seconds,
        a.separate.then_some(url.as_str()),
    )));
    // Viewers the hub gave up on for not reading (the tail of a slow client, not the server's).
    let metrics = ureq::get(&format!("http://{http}/metrics"))
        .header("Authorization", &format!("Bearer {session}"))
        .call()
        .ok()
        .and_then(|r| r.into_body().read_to_string().ok())
        .unwrap_or_default();
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("sharpeye_live_dropped_viewers_total"))
    {
        println!("after the RTSP run: {l}");
    }
    // Let the on-demand pull stop (idle 1 s), then live.mp4 from cold.
    std::thread::sleep(Duration::from_secs(3));
    let path = format!("/api/v1/cameras/cam0/live.mp4?token={token}");
    runs.push(rt.block_on(run(
        "sharpeye live.mp4",
        node.id(),
        &cam,
        &camera,
        |_, s| tokio::spawn(mp4_viewer(http, path.clone(), s)),
        a.viewers,
        a.seconds,
        None,
    )));
    // WebRTC: `--whep` str0m clients (threads in this process) for one window; the node's CPU
    // per viewer and per Gbit delivered, SRTP included.
    let mut whep_line = None;
    if a.whep > 0 {
        let base = format!("http://{http}");
        let c0 = cpu_seconds(node.id());
        let t0 = Instant::now();
        let secs = a.seconds as f64;
        let clients: Vec<_> = (0..a.whep)
            .map(|_| {
                let (base, session) = (base.clone(), session.clone());
                std::thread::spawn(move || testkit::whep_watch_stats(&base, "cam0", &session, secs))
            })
            .collect();
        let got: Vec<(u64, u64)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let (cpu, dt) = (cpu_seconds(node.id()) - c0, t0.elapsed().as_secs_f64());
        let bytes: u64 = got.iter().map(|g| g.1).sum();
        let gbits = bytes as f64 * 8.0 / 1e9;
        let receiving = got.iter().filter(|g| g.0 > 0).count();
        whep_line = Some(format!(
            "sharpeye WHEP (str0m)        {} of {} viewers received video, {:.3} Gbit/s, node CPU {:.1} % of a core per viewer, {:.2} CPU-s per Gbit",
            receiving,
            a.whep,
            gbits / dt,
            cpu / dt * 100.0 / a.whep as f64,
            cpu / gbits.max(1e-9)
        ));
    }
    let _ = node.kill();
    let _ = node.wait();

    if a.gstreamer {
        let port = testkit::free_addr().port();
        let mut gst = server("/usr/bin/python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gst-rtsp-relay.py"))
            .args([port.to_string(), camera.clone()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("GStreamer relay (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0)");
        let _g = testkit::KillOnDrop(gst.id());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(gst.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "GStreamer relay did not start");
        let gurl = format!("rtsp://127.0.0.1:{port}/cam");
        runs.push(rt.block_on(run(
            "GStreamer rtsp-server RTSP/TCP",
            gst.id(),
            &cam,
            &camera,
            |i, s| tokio::spawn(rtsp_viewer(gurl.clone(), s, i % 10 == 0 && !a.separate)),
            a.viewers,
            a.seconds,
            a.separate.then_some(gurl.as_str()),
        )));
        let _ = gst.kill();
        let _ = gst.wait();
    }
    println!();
    for r in &runs {
        report(r);
    }
    if let Some(l) = whep_line {
        println!("{l}");
    }
    if let (Some(s), Some(g)) = (runs.first(), runs.iter().find(|r| r.name.starts_with("GStreamer"))) {
        println!(
            "ratio RTSP/TCP Sharpeye vs GStreamer: {:.2}× the Gbit/s, {:.2}× less CPU per Gbit",
            s.gbps / g.gbps.max(1e-9),
            g.cpu_per_gbit / s.cpu_per_gbit.max(1e-9)
        );
    }
    rt.block_on(sim.stop());
}
