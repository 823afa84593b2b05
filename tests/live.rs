//! Live view over HTTP (`live.mp4`) from a real node pulling camsim: ffmpeg decodes it, one
//! upstream serves many viewers, on-demand pulls start with the first viewer and stop after the
//! last, and failures answer clearly.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use camsim::{BuiltinFixture, CameraSpec};
use common::*;

#[test]
fn live_mp4_starts_on_a_key_frame_and_decodes_in_ffmpeg() {
    let Setup { sim, dir, mut node } =
        node_with(vec![CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load())], "", "");
    let t = media_token(&mut node, "cam0", "live");
    let url = node.url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}"));
    let out = dir.path().join("live.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i", &url, "-t", "6", "-c", "copy"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let (errors, frames) = decode(out.to_str().unwrap());
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 125, "{frames} frames in 6 s of 25 fps");
    // The first frame is a key frame: ffprobe sees a key packet first.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            "-read_intervals",
            "%+#1",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&probe.stdout).starts_with('K'), "{probe:?}");
    // The recording went on meanwhile, from the same single session.
    assert_eq!(
        sim.cam("cam0").sessions().len(),
        1,
        "one upstream for recording and live"
    );
    assert!(node.terminate().success());
}

/// Reads `url` for `secs` seconds; returns the bytes read.
fn watch(url: String, secs: f64) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let resp = ureq::get(&url).call().unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body().into_reader();
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        while Instant::now() < end {
            match body.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => panic!("{e}"),
            }
        }
        n
    })
}

#[test]
fn on_demand_one_upstream_for_many_viewers_closed_after_idle() {
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_240p.load())]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cams = camera_toml("cam0", &sim.url("cam0")).replace("tier =", "record = false\ntier =");
    let config =
        config_toml(addr, &dir.path().join("data"), "", &cams).replace("[ingest]", "[live]\nidle = \"1s\"\n\n[ingest]");
    let mut node = Node::start(dir.path(), &config, addr);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.cam("cam0").sessions().len(), 0, "nothing pulled before a viewer");
    let (_, cam) = node.get("/api/v1/cameras/cam0");
    assert_eq!(cam["status"], "idle", "{cam}");
    let t = media_token(&mut node, "cam0", "live");
    let url = node.url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}"));
    let viewers: Vec<_> = (0..10).map(|i| watch(url.clone(), 2.0 + f64::from(i) * 0.1)).collect();
    for v in viewers {
        assert!(v.join().unwrap() > 10_000, "every viewer got video");
    }
    let left = Instant::now();
    assert_eq!(sim.cam("cam0").sessions().len(), 1, "exactly one upstream session");
    let metrics = node.metrics();
    for line in [
        "sharpeye_live_upstream_starts_total{camera=\"cam0\",stream=\"main\"} 1",
        "sharpeye_live_dropped_viewers_total{camera=\"cam0\",stream=\"main\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let bytes_out: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sharpeye_live_bytes_out_total{camera=\"cam0\",stream=\"main\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes_out > 100_000, "{bytes_out}");
    assert!(
        wait_until(Duration::from_secs(5), || sim.cam("cam0").active_sessions() == 0),
        "the upstream did not close"
    );
    let took = left.elapsed();
    assert!(
        took <= Duration::from_secs(2) + Duration::from_millis(500),
        "closed after {took:?} (idle 1 s)"
    );
    // A later viewer starts a new pull.
    assert!(watch(url, 1.5).join().unwrap() > 10_000);
    assert_eq!(sim.cam("cam0").sessions().len(), 2);
    let log = node.log_text();
    assert!(log.contains("no viewers left: stopping the pull"), "{log}");
    assert!(node.terminate().success());
}

#[test]
fn no_video_is_a_503_with_the_reason_and_no_credentials_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let dead = free_addr();
    let cams = camera_toml("cam0", &format!("rtsp://{dead}/nothing")).replace("tier =", "record = false\ntier =");
    let config = config_toml(addr, &dir.path().join("data"), "", &cams)
        .replace("[ingest]", "[live]\nstart_timeout = \"1500ms\"\n\n[ingest]");
    let mut node = Node::start(dir.path(), &config, addr);
    let (status, body) = get_json(&node.url("/api/v1/cameras/cam0/live.mp4"), None);
    assert_eq!(status, 401, "{body}");
    let token = node.token();
    let t0 = Instant::now();
    let (status, body) = get_json(&node.url("/api/v1/cameras/cam0/live.mp4"), Some(&token));
    assert_eq!(status, 503, "{body}");
    assert!(t0.elapsed() >= Duration::from_millis(1400));
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("sent no key frame within 1.5 s"), "{msg}");
    assert!(
        msg.contains(&dead.to_string()) || msg.contains("refused"),
        "names why: {msg}"
    );
    assert_eq!(body["error"]["code"], "no_video");
    let (status, _) = get_json(&node.url("/api/v1/cameras/nope/live.mp4"), Some(&token));
    assert_eq!(status, 404);
    let (status, _) = get_json(&node.url("/api/v1/cameras/cam0/live.mp4?stream=sub"), Some(&token));
    assert_eq!(status, 404, "no sub-stream configured");
    assert!(node.terminate().success());
}

/// A config with RTSP re-serve on `rtsp` and `cams`.
fn rtsp_config(
    addr: std::net::SocketAddr,
    rtsp: std::net::SocketAddr,
    data: &std::path::Path,
    cams: &str,
    live: &str,
) -> String {
    config_toml(addr, data, "", cams)
        .replace("data_dirs", &format!("rtsp_listen = \"{rtsp}\"\ndata_dirs"))
        .replace("[ingest]", &format!("[live]\n{live}\n\n[ingest]"))
}

#[test]
fn ffmpeg_reads_the_rtsp_reserve_h264_and_h265_over_tcp_and_udp() {
    // UDP from the 240p camera: a 1080p key frame is a burst of ~150 datagrams that a loaded
    // test machine's client may drop (pacing UDP bursts is a noted follow-up).
    let sim = Sim::start(vec![
        CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load()),
        CameraSpec::new("cam1", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("cam2", BuiltinFixture::H265_240p.load()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (addr, rtsp) = (free_addr(), free_addr());
    let cams = ["cam0", "cam1", "cam2"].map(|c| camera_toml(c, &sim.url(c))).concat();
    let config = rtsp_config(addr, rtsp, &dir.path().join("data"), &cams, "");
    let mut node = Node::start(dir.path(), &config, addr);
    let t = media_token(&mut node, "cam0", "live");
    let t2 = media_token(&mut node, "cam2", "live");
    for (transport, url) in [
        ("tcp", format!("rtsp://{rtsp}/cameras/cam0?token={t}")),
        ("tcp", format!("rtsp://{rtsp}/cameras/cam2?token={t2}")),
        ("udp", format!("rtsp://admin:{PASSWORD}@{rtsp}/cameras/cam1")),
    ] {
        let out = dir.path().join(format!("rtsp-{transport}-{}.mp4", url.len()));
        let status = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-rtsp_transport",
                transport,
                "-i",
                &url,
                "-t",
                "5",
                "-c",
                "copy",
            ])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "{transport}");
        let (errors, frames) = decode(out.to_str().unwrap());
        assert!(errors.is_empty(), "{transport}: {errors}");
        assert!(frames >= 110, "{transport}: {frames} frames in 5 s of 25 fps");
    }
    // Without credentials: 401, and ffmpeg fails.
    let (status, _) = raw_rtsp(
        rtsp,
        "DESCRIBE rtsp://127.0.0.1/cameras/cam0 RTSP/1.0\r\nCSeq: 1\r\n\r\n",
    );
    assert_eq!(status, 401);
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            &format!("rtsp://{rtsp}/cameras/cam0"),
            "-t",
            "1",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        sim.cam("cam0").sessions().len(),
        1,
        "recording and every RTSP viewer share one session"
    );
    assert!(node.terminate().success());
}

/// Sends one RTSP request on a fresh connection; returns the status code and the response.
#[test]
fn twenty_viewers_across_rtsp_http_and_whep_share_one_on_demand_upstream() {
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_240p.load())]);
    let dir = tempfile::tempdir().unwrap();
    let (addr, rtsp) = (free_addr(), free_addr());
    let cams = camera_toml("cam0", &sim.url("cam0")).replace("tier =", "record = false\ntier =");
    let config = rtsp_config(addr, rtsp, &dir.path().join("data"), &cams, "idle = \"1s\"");
    let mut node = Node::start(dir.path(), &config, addr);
    let t = media_token(&mut node, "cam0", "live");
    let http = node.url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}"));
    let token = node.token();
    let base = node.url("");
    let base = base.trim_end_matches('/').to_owned();
    let mut viewers = Vec::new();
    for _ in 0..4 {
        let (base, token) = (base.clone(), token.clone());
        viewers.push(std::thread::spawn(move || {
            let frames = whep_watch(&base, "cam0", &token, 3.0);
            assert!(frames >= 25, "a WHEP viewer got {frames} frames in 3 s");
        }));
    }
    for i in 0..8 {
        let url = format!("rtsp://{rtsp}/cameras/cam0?token={t}");
        let transport = if i % 2 == 0 { "tcp" } else { "udp" };
        viewers.push(std::thread::spawn(move || {
            let out = Command::new("ffmpeg")
                .args([
                    "-v",
                    "error",
                    "-rtsp_transport",
                    transport,
                    "-i",
                    &url,
                    "-t",
                    "3",
                    "-f",
                    "null",
                    "-",
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }));
    }
    let readers: Vec<_> = (0..8).map(|i| watch(http.clone(), 3.0 + f64::from(i) * 0.05)).collect();
    for v in viewers {
        v.join().unwrap();
    }
    for r in readers {
        assert!(r.join().unwrap() > 10_000);
    }
    let left = Instant::now();
    assert_eq!(
        sim.cam("cam0").sessions().len(),
        1,
        "exactly one upstream session for 20 viewers"
    );
    let metrics = node.metrics();
    assert!(
        metrics.contains("sharpeye_live_upstream_starts_total{camera=\"cam0\",stream=\"main\"} 1"),
        "{metrics}"
    );
    assert!(wait_until(Duration::from_secs(5), || sim.cam("cam0").active_sessions() == 0));
    assert!(
        left.elapsed() <= Duration::from_millis(2500),
        "closed {:?} after the last viewer (idle 1 s)",
        left.elapsed()
    );
    assert!(node.terminate().success());
}

#[test]
fn a_viewer_that_stops_reading_is_dropped_and_the_others_are_unaffected() {
    let Setup {
        sim: _sim,
        dir: _dir,
        mut node,
    } = node_with(
        vec![CameraSpec::new("cam0", BuiltinFixture::H264_1080p.load())],
        "",
        "[live]\nqueue_frames = 50\ndead_after = \"2s\"",
    );
    let addr = node.addr;
    let t = media_token(&mut node, "cam0", "live");
    let url = node.url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}"));
    // The stalled viewer: sends the request and never reads the body.
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        format!("GET /api/v1/cameras/cam0/live.mp4?token={t} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    // A reading viewer alongside, timing each chunk's arrival.
    let reader = std::thread::spawn(move || {
        let resp = ureq::get(&url).call().unwrap();
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let (start, mut last, mut worst, mut n) = (Instant::now(), Instant::now(), Duration::ZERO, 0usize);
        while start.elapsed() < Duration::from_secs(12) {
            let k = body.read(&mut buf).unwrap();
            assert!(k > 0);
            n += k;
            worst = worst.max(last.elapsed());
            last = Instant::now();
        }
        (n, worst)
    });
    let (n, worst) = reader.join().unwrap();
    // ~4 Mbit/s for 12 s, and never a gap much longer than the camera's own frame spacing.
    assert!(n > 4_000_000, "{n} bytes");
    assert!(
        worst < Duration::from_millis(400),
        "the reader waited {worst:?} for data"
    );
    // The stalled one is dropped once the socket buffers and its 50-frame queue are full and
    // it has taken nothing for 2 s; its memory is that bounded queue meanwhile.
    assert!(
        wait_until(Duration::from_secs(40), || node.metrics().contains(
            "sharpeye_live_dropped_viewers_total{camera=\"cam0\",stream=\"main\"} 1"
        )),
        "the stalled viewer was not dropped:\n{}",
        node.metrics()
    );
    assert!(
        !node
            .metrics()
            .contains("sharpeye_live_skipped_gops_total{camera=\"cam0\",stream=\"main\"} 0")
    );
    drop(stalled);
    assert!(node.terminate().success());
}

/// `live.mp4` over a WebSocket (what the web UI's MSE tiles use, since a browser opens only six
/// HTTP/1.1 connections to a host): the first message says the stream served, the rest are the
/// fMP4 bytes, which ffmpeg decodes; refusals come as one message naming the status; a viewer's
/// stray or oversized messages end at most its own socket, and a closed socket is a viewer gone.
#[test]
fn live_mp4_over_a_websocket_says_its_stream_then_sends_fmp4_that_decodes() {
    use tungstenite::Message;
    let Setup {
        sim: _sim,
        dir,
        mut node,
    } = node_with(vec![CameraSpec::new("cam0", BuiltinFixture::H264_240p.load())], "", "");
    let base = node.url("").replacen("http://", "ws://", 1);
    let ws_url = |path: &str| format!("{base}{path}");
    let connect = |url: &str| {
        let (mut ws, resp) = tungstenite::connect(url).unwrap();
        assert_eq!(resp.status(), 101);
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        ws
    };
    let t = media_token(&mut node, "cam0", "live");
    let mut ws = connect(&ws_url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}")));
    let head: serde_json::Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(head["stream"], "main", "{head}");
    let mut bytes = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        match ws.read().unwrap() {
            Message::Binary(b) => bytes.extend_from_slice(&b),
            other => panic!("expected media, got {other:?}"),
        }
    }
    // Something the node does not expect from a viewer: ignored, the video goes on.
    ws.send(Message::Text("what is this?".into())).unwrap();
    assert!(ws.read().unwrap().is_binary());
    let _ = ws.close(None);
    let out = dir.path().join("ws.mp4");
    std::fs::write(&out, &bytes).unwrap();
    assert_eq!(&bytes[4..8], b"ftyp");
    let (errors, frames) = decode(out.to_str().unwrap());
    assert!(errors.is_empty(), "{errors}");
    assert!(frames >= 75, "{frames} frames in 4 s of 25 fps");

    // Refusals: the status the HTTP answer would have had, then a close.
    for (path, status, code) in [
        ("/api/v1/cameras/cam0/live.mp4?token=forged", 401, "unauthorized"),
        ("/api/v1/cameras/cam0/live.mp4?stream=sub&token=TOKEN", 404, "not_found"),
    ] {
        let t = media_token(&mut node, "cam0", "live");
        let mut ws = connect(&ws_url(&path.replace("TOKEN", &t)));
        let e: serde_json::Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(e["error"]["status"], status, "{path}: {e}");
        assert_eq!(e["error"]["code"], code, "{path}: {e}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
        assert!(
            matches!(ws.read(), Ok(Message::Close(_)) | Err(_)),
            "{path}: closed after"
        );
    }

    // An upgrade that is not a WebSocket handshake (no key, no version) is a 400 saying so.
    {
        use std::io::Write;
        let t = media_token(&mut node, "cam0", "live");
        let addr = node.url("").trim_start_matches("http://").to_owned();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /api/v1/cameras/cam0/live.mp4?token={t} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("WebSocket upgrade refused"), "{answer}");
    }

    // An oversized message ends that socket only; the node serves the next viewer.
    let t = media_token(&mut node, "cam0", "live");
    let mut ws = connect(&ws_url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}")));
    ws.read().unwrap();
    let _ = ws.send(Message::Binary(vec![0u8; 64 << 10].into()));
    let t0 = Instant::now();
    loop {
        match ws.read() {
            Ok(Message::Binary(_)) if t0.elapsed() < Duration::from_secs(10) => {}
            Ok(Message::Close(_)) | Err(_) => break,
            other => panic!("the socket stays open after a 64 KB message: {other:?}"),
        }
    }
    let t = media_token(&mut node, "cam0", "live");
    let mut ws = connect(&ws_url(&format!("/api/v1/cameras/cam0/live.mp4?token={t}")));
    ws.read().unwrap();
    assert!(ws.read().unwrap().is_binary());
    drop(ws);
    // Every socket closed: no viewer is left on the camera.
    let t0 = Instant::now();
    loop {
        let viewers: u64 = node
            .metrics()
            .lines()
            .filter(|l| l.starts_with("sharpeye_live_viewers{") && l.contains("cam0"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if viewers == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{viewers} viewers left after the sockets closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(node.terminate().success());
}
