//! GB/T 28181 cascade toward upper platforms, on loopback, against a real `sharpeye run` and
//! simulated cameras (camsim); the uppers are scripted here over UDP:
//!
//! 1. **Cold INVITEs**: `--uppers` upper platforms (one `[[gb28181.upper]]` each) INVITE
//!    `--uppers` different on-demand channels at the same instant (nothing is being pulled);
//!    reported: INVITE to the first PS packet at the upper, p50/p99/max, against the goal of
//!    the key-frame interval (1 s in the fixture) + 200 ms.
//! 2. **Relay cost**: one upper pulls `--channels` channels of the 4 Mbit/s 1080p fixture as PS
//!    over RTP (UDP) for `--seconds`; the same channels are then relayed by the node's RTSP
//!    re-serve to as many RTSP clients (TCP interleaved) for as long, in the same run. Reported:
//!    the node's CPU per relayed channel (% of one core, ingest included, as it is for both)
//!    and the ratio PS / RTSP, against the goal of 1.5.
//!
//! ```text
//! cargo bench --bench cascade -- [--uppers 100] [--channels 200] [--seconds 20]
//! ```
//! Run by hand, not in CI.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{pct, usage};
use gb28181::sip::{self, Framing, Message, StartLine};

/// Command-line arguments (`cargo bench --bench cascade -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--uppers`: uppers INVITEing at once in the cold test.
    #[arg(long, default_value_t = 100)]
    uppers: usize,
    /// `--channels`: channels relayed in the cost test.
    #[arg(long, default_value_t = 200)]
    channels: usize,
    /// `--seconds`: how long each relay is measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const PASSWORD: &str = "bench-password";
const OWN: &str = "21020000002000000010";
const DOMAIN: &str = "2102000000";

fn channel(i: usize) -> String {
    format!("2102000000132{i:07}")
}

fn upper_id(i: usize) -> String {
    format!("2102000000200{:07}", 1000 + i)
}

struct Node {
    pid: u32,
    addr: SocketAddr,
    rtsp: SocketAddr,
    sip: SocketAddr,
    _run: common::RunningNode,
    _dir: tempfile::TempDir,
}

/// A node with `cameras` on-demand cameras of camsim at `sim` and an upper entry per address.
fn start_node(sim: SocketAddr, cameras: usize, uppers: &[SocketAddr]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (addr, rtsp, sip) = (testkit::free_addr(), testkit::free_addr(), testkit::free_addr());
    let mut config = format!(
        "[server]\nlisten = \"{addr}\"\nrtsp_listen = \"{rtsp}\"\ndata_dirs = [\"{}\"]\n\n[live]\nidle = \"1s\"\nmax_viewers = 100000\n\n[[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\nrole = \"admin\"\n\n",
        dir.path().join("data").display()
    );
    for i in 0..cameras {
        config.push_str(&format!(
            "[[cameras]]\nid = \"{}\"\nurl = \"rtsp://{sim}/c{i}\"\nrecord = false\norg = \"bench\"\n\n",
            channel(i)
        ));
    }
    config.push_str(&format!(
        "[gb28181]\nid = \"{OWN}\"\ndomain = \"{DOMAIN}\"\nlisten = \"{sip}\"\npassword = \"{PASSWORD}\"\n\n"
    ));
    for (i, u) in uppers.iter().enumerate() {
        config.push_str(&format!(
            "[[gb28181.upper]]\nid = \"{}\"\ndomain = \"{DOMAIN}\"\naddress = \"{u}\"\npassword = \"x\"\nshare = [\"*\"]\nkeepalive = \"60s\"\nlink_mbps = 10000\n\n",
            upper_id(i)
        ));
    }
    let run = common::run_node(dir.path(), &config, addr, "warn,node::cascade=info");
    Node {
        pid: run.pid,
        addr,
        rtsp,
        sip,
        _run: run,
        _dir: dir,
    }
}

/// 200 OK to a request of the node (REGISTER, keepalive, answers).
fn ok_to(req: &Message) -> Vec<u8> {
    let mut headers: Vec<(String, String)> = ["Via", "From", "To", "Call-ID", "CSeq"]
        .iter()
        .filter_map(|h| req.header(h).map(|v| ((*h).to_owned(), v.to_owned())))
        .collect();
    if req.method() == Some("REGISTER") {
        headers.push(("Expires".into(), "3600".into()));
    }
    Message {
        start: StartLine::Response {
            code: 200,
            reason: "OK".into(),
        },
        headers,
        body: Default::default(),
    }
    .to_bytes()
}

#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    upper: &str,
    from: SocketAddr,
    to: SocketAddr,
    ch: &str,
    call: &str,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: APPLICATION/SDP\r\n"
    };
    format!(
        "{method} sip:{ch}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};rport;branch=z9hG4bK{call}{method}\r\nFrom: <sip:{upper}@{DOMAIN}>;tag=t{call}\r\n{extra}Call-ID: {call}\r\nCSeq: {} {method}\r\nContact: <sip:{upper}@{from}>\r\nMax-Forwards: 70\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        if method == "BYE" { 2 } else { 1 },
        body.len()
    )
    .into_bytes()
}

/// A scripted upper: answers the node's requests; once `go` is passed, INVITEs each of
/// `channels` to its own media socket (ACKing each 200), keeps the sessions up until `stop`,
/// then BYEs them. Returns each session's INVITE-to-first-packet time.
#[allow(clippy::too_many_arguments)]
fn upper(
    id: String,
    sock: UdpSocket,
    node_sip: SocketAddr,
    channels: Vec<String>,
    registered: Arc<Barrier>,
    go: Arc<Barrier>,
    stop: Arc<Barrier>,
    rt: tokio::runtime::Handle,
    bytes: Arc<AtomicU64>,
) -> Vec<Option<f64>> {
    let me = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let mut buf = vec![0u8; 65_536];
    let refusals = AtomicU64::new(0);
    let serve = |sock: &UdpSocket, buf: &mut [u8]| -> Option<Message> {
        let (n, from) = sock.recv_from(buf).ok()?;
        let (m, _) = sip::parse(&buf[..n], Framing::Datagram).ok()?;
        if m.method().is_some() && m.method() != Some("ACK") {
            let _ = sock.send_to(&ok_to(&m), from);
        }
        Some(m)
    };
    // Registered: the node's REGISTER answered.
    loop {
        if let Some(m) = serve(&sock, &mut buf)
            && m.method() == Some("REGISTER")
        {
            break;
        }
    }
    registered.wait();
    // Media sockets, drained by the runtime: the first packet's time and the bytes.
    let mut firsts = Vec::new();
    let mut ports = Vec::new();
    for _ in &channels {
        let s = rt.block_on(tokio::net::UdpSocket::bind("127.0.0.1:0")).unwrap();
        ports.push(s.local_addr().unwrap().port());
        let first = Arc::new(std::sync::Mutex::new(None::<Instant>));
        firsts.push(first.clone());
        let bytes = bytes.clone();
        rt.spawn(async move {
            let mut b = vec![0u8; 65_536];
            while let Ok(n) = s.recv(&mut b).await {
                first.lock().unwrap().get_or_insert_with(Instant::now);
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    go.wait();
    let mut sent = Vec::new();
    let mut invites = Vec::new();
    for (i, ch) in channels.iter().enumerate() {
        let sdp = format!(
            "v=0\r\no={id} 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {} RTP/AVP 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0{:09}\r\n",
            ports[i],
            200_000_000 + i
        );
        let to = format!(
            "To: <sip:{ch}@{DOMAIN}>\r\nSubject: {ch}:0{:09},{id}:0\r\n",
            200_000_000 + i
        );
        sent.push(Instant::now());
        let invite = request("INVITE", &id, me, node_sip, ch, &format!("{id}-{i}"), &to, &sdp);
        let _ = sock.send_to(&invite, node_sip);
        invites.push(invite);
    }
    let mut to_tags: Vec<Option<String>> = vec![None; channels.len()];
    // As a UAC over UDP does: the INVITE again every 500 ms until something answers it.
    let mut answered = vec![false; channels.len()];
    let mut resend_at = Instant::now() + Duration::from_millis(500);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let (stop, done) = (stop.clone(), done.clone());
        std::thread::spawn(move || {
            stop.wait();
            done.store(true, Ordering::Relaxed);
        })
    };
    while !done.load(Ordering::Relaxed) {
        if Instant::now() >= resend_at {
            resend_at += Duration::from_millis(500);
            for (_, invite) in invites.iter().enumerate().filter(|(i, _)| !answered[*i]) {
                let _ = sock.send_to(invite, node_sip);
            }
        }
        let Some(m) = serve(&sock, &mut buf) else { continue };
        if let (StartLine::Response { .. }, Some(i)) = (
            &m.start,
            m.header("Call-ID")
                .and_then(|c| c.rsplit('-').next())
                .and_then(|n| n.parse::<usize>().ok()),
        ) && i < answered.len()
        {
            answered[i] = true;
        }
        if let StartLine::Response { code, .. } = &m.start
            && *code >= 300
        {
            refusals.fetch_add(1, Ordering::Relaxed);
        }
        let (StartLine::Response { code: 200, .. }, Some(call)) = (&m.start, m.header("Call-ID")) else {
            continue;
        };
        let Some(i) = call.rsplit('-').next().and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if i >= channels.len() || !m.header("CSeq").is_some_and(|c| c.contains("INVITE")) {
            continue;
        }
        // Every 200 is ACKed (a resent one means our ACK was lost).
        let to = m.header("To").unwrap_or("").to_owned();
        let extra = format!("To: {to}\r\n");
        let _ = sock.send_to(
            &request("ACK", &id, me, node_sip, &channels[i], call, &extra, ""),
            node_sip,
        );
        to_tags[i] = Some(to);
    }
    let _ = waiter.join();
    for (i, to) in to_tags.iter().enumerate() {
        if let Some(to) = to {
            let extra = format!("To: {to}\r\n");
            let _ = sock.send_to(
                &request("BYE", &id, me, node_sip, &channels[i], &format!("{id}-{i}"), &extra, ""),
                node_sip,
            );
        }
    }
    firsts
        .iter()
        .zip(sent)
        .map(|(f, at)| f.lock().unwrap().map(|t| t.duration_since(at).as_secs_f64() * 1000.0))
        .collect()
}

fn camsim(rt: &tokio::runtime::Runtime, n: usize, fixture: camsim::BuiltinFixture) -> (camsim::Camsim, SocketAddr) {
    let fx = fixture.load();
    let cams = camsim::Cameras::new(
        (0..n)
            .map(|i| camsim::CameraSpec::new(format!("c{i}"), fx.clone()))
            .collect::<Vec<_>>(),
    );
    let sim = rt
        .block_on(camsim::Camsim::start("127.0.0.1:0".parse().unwrap(), cams))
        .unwrap();
    let addr = sim.local_addr();
    (sim, addr)
}

/// Starts `uppers` scripted uppers, each with its `channels`; returns their threads and the
/// barriers (registered, go, stop) the caller passes with them.
#[allow(clippy::type_complexity)]
fn uppers(
    socks: Vec<UdpSocket>,
    node_sip: SocketAddr,
    channels: Vec<Vec<String>>,
    rt: &tokio::runtime::Runtime,
    bytes: &Arc<AtomicU64>,
) -> (Vec<std::thread::JoinHandle<Vec<Option<f64>>>>, [Arc<Barrier>; 3]) {
    let n = socks.len() + 1;
    let barriers = [
        Arc::new(Barrier::new(n)),
        Arc::new(Barrier::new(n)),
        Arc::new(Barrier::new(n)),
    ];
    let threads = socks
        .into_iter()
        .zip(channels)
        .enumerate()
        .map(|(i, (sock, chs))| {
            let [r, g, s] = barriers.clone();
            let (h, b) = (rt.handle().clone(), bytes.clone());
            std::thread::spawn(move || upper(upper_id(i), sock, node_sip, chs, r, g, s, h, b))
        })
        .collect();
    (threads, barriers)
}

fn summary(v: &[f64]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(v.to_vec(), 0.5),
        pct(v.to_vec(), 0.99),
        v.iter().copied().fold(0.0, f64::max)
    )
}

fn cold_invites(a: &Args, rt: &tokio::runtime::Runtime) {
    let (sim, sim_addr) = camsim(rt, a.uppers, camsim::BuiltinFixture::H264_240p);
    let socks: Vec<UdpSocket> = (0..a.uppers).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let node = start_node(sim_addr, a.uppers, &addrs);
    let bytes = Arc::new(AtomicU64::new(0));
    let (threads, [registered, go, stop]) = uppers(
        socks,
        node.sip,
        (0..a.uppers).map(|i| vec![channel(i)]).collect(),
        rt,
        &bytes,
    );
    registered.wait();
    // Every upper registered; the catalog and keepalives settle before the burst.
    std::thread::sleep(Duration::from_secs(2));
    go.wait();
    std::thread::sleep(Duration::from_secs(5));
    stop.wait();
    let ttfp: Vec<Option<f64>> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let got: Vec<f64> = ttfp.iter().flatten().copied().collect();
    println!(
        "cold INVITEs: {} uppers x 1 channel at once (on demand, 240p, key frame every 1 s): {} of {} got PS; INVITE to first PS packet {}",
        a.uppers,
        got.len(),
        ttfp.len(),
        summary(&got)
    );
    if got.len() < ttfp.len() {
        let log = std::fs::read_to_string(node._dir.path().join("node.log")).unwrap_or_default();
        let _ = std::fs::write("/tmp/cascade-bench-node.log", &log);
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("refused") || l.contains("WARN"))
            .take(20)
            .collect();
        println!("  node log (refusals and warnings):\n{}", refused.join("\n"));
    }
    let goal = 1000.0 + 200.0;
    println!(
        "  goal p99 <= key-frame interval + 200 ms = {goal:.0} ms: {}",
        if pct(got.clone(), 0.99) <= goal && got.len() == ttfp.len() {
            "met"
        } else {
            "MISSED"
        }
    );
    drop(node);
    rt.block_on(sim.stop());
}

/// One RTSP response's head (its body, if any, read and dropped); `None` when the connection
/// ends.
async fn rtsp_head(rd: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut all = String::new();
    loop {
        let mut l = String::new();
        if rd.read_line(&mut l).await.ok()? == 0 {
            return None;
        }
        if l.trim().is_empty() {
            break;
        }
        all.push_str(&l);
    }
    let len: usize = all
        .lines()
        .find_map(|l| {
            l.strip_prefix("Content-Length:")
                .or_else(|| l.strip_prefix("content-length:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).await.ok()?;
    Some(all)
}

/// RTSP/TCP viewers of each channel through the node's re-serve: bytes read.
fn rtsp_viewers(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    n: usize,
    bytes: &Arc<AtomicU64>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
    let token = {
        let mut r = ureq::post(&format!("http://{}/api/v1/login", node.addr))
            .send_json(serde_json::json!({"username": "admin", "password": PASSWORD}))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["token"].as_str().unwrap().to_owned()
    };
    for i in 0..n {
        let mut r = ureq::post(&format!(
            "http://{}/api/v1/cameras/{}/media-token",
            node.addr,
            channel(i)
        ))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(serde_json::json!({"action": "live"}))
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let url = format!(
            "rtsp://{}/cameras/{}?token={}",
            node.rtsp,
            channel(i),
            v["token"].as_str().unwrap()
        );
        let (bytes, stop) = (bytes.clone(), stop.clone());
        rt.spawn(async move {
            let Ok(s) = tokio::net::TcpStream::connect(url.split('/').nth(2).unwrap()).await else {
                return;
            };
            let (rd, mut wr) = s.into_split();
            let mut rd = BufReader::with_capacity(256 * 1024, rd);
            let _ = wr
                .write_all(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").as_bytes())
                .await;
            if rtsp_head(&mut rd).await.is_none() {
                return;
            }
            let track = format!("{}/trackID=0", url.split('?').next().unwrap_or(&url));
            let _ = wr
                .write_all(
                    format!(
                        "SETUP {track} RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            let Some(h) = rtsp_head(&mut rd).await else { return };
            let session = h
                .lines()
                .find_map(|l| l.strip_prefix("Session:"))
                .map(|s| s.split(';').next().unwrap_or("").trim().to_owned())
                .unwrap_or_default();
            let _ = wr
                .write_all(format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n").as_bytes())
                .await;
            if rtsp_head(&mut rd).await.is_none() {
                return;
            }
            let mut buf = vec![0u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        });
    }
}

fn cpu_over(pid: u32, secs: u64) -> f64 {
    let (c0, t0) = (usage(pid).0, Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    (usage(pid).0 - c0) / t0.elapsed().as_secs_f64() * 100.0
}

fn relay_cost(a: &Args, rt: &tokio::runtime::Runtime) {
    let n = a.channels;
    let (sim, sim_addr) = camsim(rt, n, camsim::BuiltinFixture::H264_1080p);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let node = start_node(sim_addr, n, &[sock.local_addr().unwrap()]);
    // The upper registers now and waits (it is not pulling anything yet).
    let gb_bytes = Arc::new(AtomicU64::new(0));
    let (threads, [registered, go, end]) =
        uppers(vec![sock], node.sip, vec![(0..n).map(channel).collect()], rt, &gb_bytes);
    registered.wait();
    let idle = cpu_over(node.pid, 3);
    // RTSP re-serve: one client per channel.
    let rtsp_bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    rtsp_viewers(rt, &node, n, &rtsp_bytes, &stop);
    std::thread::sleep(Duration::from_secs(5));
    let b0 = rtsp_bytes.load(Ordering::Relaxed);
    let rtsp_cpu = cpu_over(node.pid, a.seconds);
    let rtsp_mbps = (rtsp_bytes.load(Ordering::Relaxed) - b0) as f64 * 8.0 / a.seconds as f64 / 1e6;
    stop.store(true, Ordering::Relaxed);
    // The pulls stop (idle 1 s) before the GB/T 28181 relay starts them again.
    std::thread::sleep(Duration::from_secs(5));
    go.wait();
    std::thread::sleep(Duration::from_secs(5));
    let b0 = gb_bytes.load(Ordering::Relaxed);
    let gb_cpu = cpu_over(node.pid, a.seconds);
    let gb_mbps = (gb_bytes.load(Ordering::Relaxed) - b0) as f64 * 8.0 / a.seconds as f64 / 1e6;
    end.wait();
    let got = threads.into_iter().flat_map(|t| t.join().unwrap()).flatten().count();
    let per = |cpu: f64| (cpu - idle) / n as f64;
    println!(
        "relay cost: {n} channels of 1080p H.264 (~4 Mbit/s), node CPU over {} s (% of one core; ingest from camsim included), idle node {idle:.1} %",
        a.seconds
    );
    println!(
        "  RTSP re-serve (TCP interleaved): {rtsp_cpu:.1} % total, {:.3} % per channel, {rtsp_mbps:.0} Mbit/s out",
        per(rtsp_cpu)
    );
    println!(
        "  GB/T 28181 PS over RTP (UDP): {gb_cpu:.1} % total, {:.3} % per channel, {gb_mbps:.0} Mbit/s out, {got} of {n} sessions sent",
        per(gb_cpu)
    );
    if got < n {
        let log = std::fs::read_to_string(node._dir.path().join("node.log")).unwrap_or_default();
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("refused")).take(5).collect();
        println!("  refusals:\n{}", refused.join("\n"));
    }
    let ratio = per(gb_cpu) / per(rtsp_cpu);
    println!(
        "  PS / RTSP per channel: {ratio:.2} (goal <= 1.5: {})",
        if ratio <= 1.5 { "met" } else { "MISSED" }
    );
    drop(node);
    rt.block_on(sim.stop());
}

fn main() {
    let a: Args = clap::Parser::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    cold_invites(&a, &rt);
    relay_cost(&a, &rt);
}
