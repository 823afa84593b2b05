//! Helpers for the end-to-end tests: a `sharpeye` process, an in-process camsim, HTTP calls,
//! and ffprobe/ffmpeg validation.
#![allow(dead_code)]

pub mod levels;
pub mod netns;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PASSWORD: &str = "e2e-password-1";

pub use testkit::free_addr;
#[allow(unused_imports, reason = "used by the GB/T 28181 test crates only")]
pub use testkit::free_udp_tcp_addr;

/// A camera entry for a config.
pub fn camera_toml(id: &str, url: &str) -> String {
    format!("[[cameras]]\nid = \"{id}\"\nname = \"{id}\"\nurl = \"{url}\"\ntier = \"standard\"\norg = \"test/e2e\"\n\n")
}

/// A whole config: `[recording]` lines, extra `[ingest]` lines, then cameras.
pub fn config_with(listen: SocketAddr, data: &Path, recording: &str, ingest: &str, cameras: &str) -> String {
    format!(
        "[server]\nlisten = \"{listen}\"\ndata_dirs = [\"{}\"]\n\n[recording]\n{recording}\n\n[ingest]\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n{ingest}\n\n[[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\nrole = \"admin\"\n\n{cameras}",
        data.display()
    )
}

/// A whole config with default ingest settings.
pub fn config_toml(listen: SocketAddr, data: &Path, recording: &str, cameras: &str) -> String {
    config_with(listen, data, recording, "", cameras)
}

/// A node recording simulated cameras, as most end-to-end tests start: the simulator, the
/// test's temporary directory (the node's data is in `data/` inside it) and the node.
pub struct Setup {
    // Fields drop in this order: the node first, so that a failing test's node log is printed
    // before its directory is removed.
    pub node: Node,
    pub sim: Sim,
    pub dir: tempfile::TempDir,
}

/// Starts camsim with `specs` and a node with a `[[cameras]]` entry for each (named after the
/// spec), `recording` lines in `[recording]`, and `extra_toml` (whole sections: `[live]`,
/// `[retention]`, ...) before `[ingest]`.
pub fn node_with(specs: Vec<camsim::CameraSpec>, recording: &str, extra_toml: &str) -> Setup {
    let ids: Vec<String> = specs.iter().map(|s| s.path.clone()).collect();
    let sim = Sim::start(specs);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cams: String = ids.iter().map(|id| camera_toml(id, &sim.url(id))).collect();
    let config = config_toml(addr, &dir.path().join("data"), recording, &cams)
        .replace("[ingest]", &format!("{extra_toml}\n\n[ingest]"));
    let node = Node::start(dir.path(), &config, addr);
    Setup { sim, dir, node }
}

/// A running `sharpeye run` process.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub token: Option<String>,
    /// The network namespace it runs in (its API is reachable only from there).
    pub ns: Option<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sharpeye")
}

impl Node {
    /// Starts `sharpeye run` with `config` (written into `dir`) and waits until its API answers.
    pub fn start(dir: &Path, config: &str, addr: SocketAddr) -> Node {
        Node::start_in(None, dir, config, addr, addr)
    }

    /// As [`Node::start`], inside network namespace `ns` (when given), listening on `listen`
    /// (a wildcard, say) and reached at `addr`.
    pub fn start_in(ns: Option<&str>, dir: &Path, config: &str, addr: SocketAddr, listen: SocketAddr) -> Node {
        let cfg = dir.join("sharpeye.toml");
        std::fs::write(&cfg, config).unwrap();
        let n = std::fs::read_dir(dir).unwrap().count();
        let log = dir.join(format!("node-{n}.log"));
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin()]);
                c
            }
            None => Command::new(bin()),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&cfg)
            // SHARPEYE_TEST_LOG=debug (or a filter) when a test needs more of the node's log.
            .env(
                "RUST_LOG",
                std::env::var("SHARPEYE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut node = Node {
            child,
            addr,
            log,
            token: None,
            ns: ns.map(str::to_owned),
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("sharpeye exited early ({status}):\n{}", node.log_text());
            }
            // Our own process must have bound the port: a free port handed out by the OS can be
            // taken by a node another test starts at the same time.
            if node
                .log_text()
                .contains(&format!("HTTP API listening on http://{listen}"))
                && node.http(|| ureq::get(&format!("http://{addr}/healthz")).call().is_ok())
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "API did not come up:\n{}",
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        node
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `f` where the node can be reached (inside its namespace, if it has one).
    pub fn http<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.ns {
            Some(ns) => netns::in_ns(ns, f),
            None => f(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Logs in as admin (once) and returns the token.
    pub fn token(&mut self) -> String {
        if self.token.is_none() {
            let url = self.url("/api/v1/login");
            let (status, body) = self.http(|| {
                post_json(
                    &url,
                    &serde_json::json!({"username": "admin", "password": PASSWORD}),
                    None,
                )
            });
            assert_eq!(status, 200, "{body}");
            self.token = Some(body["token"].as_str().unwrap().to_owned());
        }
        self.token.clone().unwrap()
    }

    /// `/metrics` as text (authenticated).
    pub fn metrics(&mut self) -> String {
        let token = self.token();
        let url = self.url("/metrics");
        self.http(|| {
            let resp = ureq::get(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .call()
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().read_to_string().unwrap()
        })
    }

    /// An authenticated POST of JSON: (status, JSON body).
    pub fn post(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let t = self.token();
        let url = self.url(path);
        self.http(|| post_json(&url, body, Some(&t)))
    }

    /// An authenticated GET: (status, JSON body).
    pub fn get(&mut self, path: &str) -> (u16, Value) {
        let t = self.token();
        let url = self.url(path);
        self.http(|| get_json(&url, Some(&t)))
    }

    /// Recorded ranges of a camera as (start µs, end µs).
    pub fn ranges(&mut self, camera: &str, from_us: i64, to_us: i64) -> Vec<(i64, i64)> {
        self.ranges_with(camera, from_us, to_us, "")
    }

    /// As [`Node::ranges`], with `extra` query parameters (`&local=1`).
    pub fn ranges_with(&mut self, camera: &str, from_us: i64, to_us: i64, extra: &str) -> Vec<(i64, i64)> {
        // Times go out at millisecond precision: keep the window non-empty when asked at once.
        let to_us = to_us.max(from_us + 1000);
        let path = format!(
            "/api/v1/cameras/{camera}/recordings?start={}&end={}{extra}",
            rfc3339(from_us),
            rfc3339(to_us)
        );
        let (status, body) = self.get(&path);
        assert_eq!(status, 200, "{body}");
        body["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    parse_time(r["start"].as_str().unwrap()),
                    parse_time(r["end"].as_str().unwrap()),
                )
            })
            .collect()
    }

    /// Sends a signal and waits for the process.
    pub fn signal(mut self, sig: i32) -> ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    /// SIGTERM: a clean stop.
    pub fn terminate(self) -> ExitStatus {
        self.signal(libc::SIGTERM)
    }

    /// SIGKILL: a crash.
    pub fn kill(self) {
        self.signal(libc::SIGKILL);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test's output then says what the node saw (CI keeps nothing else).
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "--- last {} lines of {} ---\n{}\n--- end of node log ---",
                tail.len(),
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// How much of a node's log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

/// An HTTP client that returns error statuses instead of failing, with a 20 s limit.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

pub fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn post_json(url: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    post_raw(url, "application/json", &body.to_string(), token)
}

pub fn post_raw(url: &str, content_type: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = agent().post(url).header("Content-Type", content_type);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn now_us() -> i64 {
    media::WallTime::now().as_micros()
}

/// RFC 3339 UTC with microseconds.
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = store::layout::utc_date(media::WallTime::from_micros(us));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses what the API returns (RFC 3339 with any offset) to µs since the epoch.
pub fn parse_time(s: &str) -> i64 {
    // The API's own parser is the reference for its output.
    api::time::parse("t", s).unwrap().as_micros()
}

/// Checks that ffmpeg and ffprobe are installed (panicking with the fix if not).
pub fn have_ffmpeg() -> bool {
    testkit::require_ffmpeg();
    true
}

/// Frames ffprobe counts in a file, and what `ffmpeg -v error` prints decoding all of it.
pub fn probe(path: &Path) -> (u64, String) {
    (
        testkit::ffprobe_packets(path),
        testkit::ffmpeg_errors(&path.to_string_lossy()),
    )
}

/// Every segment in a (stopped node's) data directory, from the index.
pub fn indexed_segments(data: &Path) -> Vec<(PathBuf, store::SegmentRecord)> {
    let (s, _) = store::Store::open(&[data.to_owned()]).unwrap();
    let recs = s.disks()[0].index().all_segments().unwrap();
    recs.into_iter()
        .map(|r| (store::segment_file_path(data, &r), r))
        .collect()
}

/// Starts camsim on a free port with `specs` inside a dedicated runtime.
pub struct Sim {
    pub rt: tokio::runtime::Runtime,
    pub cams: camsim::Cameras,
    pub sim: Option<camsim::Camsim>,
    pub addr: SocketAddr,
}

impl Sim {
    pub fn start(specs: Vec<camsim::CameraSpec>) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cams = camsim::Cameras::new(specs);
        let sim = rt
            .block_on(camsim::Camsim::start("127.0.0.1:0".parse().unwrap(), cams.clone()))
            .unwrap();
        let addr = sim.local_addr();
        Sim {
            rt,
            cams,
            sim: Some(sim),
            addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://{}/{path}", self.addr)
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.sim.take() {
            self.rt.block_on(s.stop());
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let sim = self
            .rt
            .block_on(camsim::Camsim::start(self.addr, self.cams.clone()))
            .unwrap();
        self.sim = Some(sim);
    }

    pub fn cam(&self, path: &str) -> camsim::CameraHandle {
        self.cams.get(path).unwrap()
    }
}

/// Polls `f` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Sends raw bytes as an HTTP request and returns (status, body). Write errors are ignored:
/// a server may answer and close before a large body is fully sent, and the answer is what
/// the test wants.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// One continuous stretch of synthetic recording: seconds after the base time, and its length.
pub struct Stretch {
    pub camera: &'static str,
    pub fixture: camsim::BuiltinFixture,
    pub offset_s: f64,
    pub seconds: f64,
}

/// Records synthetic stretches into `data` through the real recorder (the camera's timing is
/// simulated, so ten minutes take a second). Frames of a stretch are 25 fps; wall time of frame
/// n is `base + offset + n × 40 ms`. Returns after a clean shutdown.
pub fn synthesize(data: &Path, base_us: i64, segment_s: u64, stretches: &[Stretch]) {
    let (store, _) = store::Store::open(&[data.to_owned()]).unwrap();
    let rec = store
        .start_recorder(store::RecorderConfig {
            segment: Duration::from_secs(segment_s),
            flush_interval: Duration::from_millis(100),
            queue_frames: 1 << 20,
            ..store::RecorderConfig::default()
        })
        .unwrap();
    for s in stretches {
        let stream = media::StreamId::main(s.camera);
        let n = (s.seconds * 25.0).round() as usize;
        let wall = media::WallTime::from_micros(base_us + (s.offset_s * 1e6) as i64);
        let media_start = 1_000_000 + (s.offset_s * 90_000.0) as i64;
        for f in s.fixture.load().frames(&stream, n, media_start, wall) {
            while let Err(f2) = rec.try_push(f.clone()) {
                drop(f2);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        rec.end_stream(&stream);
    }
    rec.shutdown().unwrap();
}

/// An RFC 3339 time `offset` seconds after `base`, percent-encoded for a query string.
pub fn at(base_us: i64, offset_s: f64) -> String {
    rfc3339(base_us + (offset_s * 1e6).round() as i64)
}

/// Downloads `url` with a bearer token: (status, headers, body).
pub fn fetch(url: &str, token: &str, extra: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = agent().get(url).header("Authorization", &format!("Bearer {token}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap_or_default();
    (status, headers, body)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// ffprobe's format duration in seconds.
pub fn duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(-1.0)
}

/// The first frame ffmpeg displays from `input`, as 8-bit luma (a fingerprint).
pub fn first_frame(input: &str, select: Option<u32>) -> Vec<u8> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-i", input]);
    if let Some(n) = select {
        cmd.args(["-vf", &format!("select=eq(n\\,{n})")]);
    }
    let out = cmd
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// What `ffmpeg -v error` says decoding all of `input`, and the number of frames it decoded.
pub fn decode(input: &str) -> (String, u64) {
    decode_args(&["-i", input])
}

/// As [`decode`], with the input given by `args` (`-i` and its options).
pub fn decode_args(args: &[&str]) -> (String, u64) {
    decode_args_in(None, args)
}

/// As [`decode_args`], with ffmpeg run inside network namespace `ns` when given.
pub fn decode_args_in(ns: Option<&str>, args: &[&str]) -> (String, u64) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ffmpeg"]);
            c
        }
        None => Command::new("ffmpeg"),
    };
    let out = cmd
        .args(["-v", "error"])
        .args(args)
        .args(["-f", "null", "-", "-progress", "pipe:1", "-nostats"])
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .next_back()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (String::from_utf8_lossy(&out.stderr).trim().to_owned(), frames)
}

#[allow(unused_imports, reason = "used by some test crates only")]
pub use testkit::whep_watch;

/// The node's config: two departments with disjoint camera groups, a user of each role in
/// department A, a viewer in department B, and a user that admin calls act on.
pub fn permissions_config(
    addr: std::net::SocketAddr,
    rtsp: std::net::SocketAddr,
    data: &std::path::Path,
    sim: &Sim,
) -> String {
    let mut c = format!(
        "[server]\nlisten = \"{addr}\"\nrtsp_listen = \"{rtsp}\"\ndata_dirs = [\"{}\"]\n\n[ingest]\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n\n",
        data.display()
    );
    for (name, role, dept) in [
        ("admin", "admin", ""),
        ("viewer", "viewer", "dept-a"),
        ("operator", "operator", "dept-a"),
        ("dispatcher", "dispatcher", "dept-a"),
        ("auditor", "auditor", "dept-a"),
        ("bviewer", "viewer", "dept-b"),
        ("target", "viewer", ""),
    ] {
        c += &format!("[[users]]\nname = \"{name}\"\npassword = \"{PASSWORD}\"\nrole = \"{role}\"\n");
        if !dept.is_empty() {
            c += &format!("department = \"{dept}\"\n");
        }
        c += "\n";
    }
    c += "[[departments]]\nid = \"dept-a\"\nname = \"Station A\"\n\n[[departments]]\nid = \"dept-b\"\nname = \"Station B\"\n\n";
    c += "[[groups]]\nid = \"ga\"\ncameras = [\"cam0\", \"cam1\"]\n\n[[groups]]\nid = \"gb\"\ncameras = [\"cam2\", \"cam3\"]\n\n";
    c += "[[grants]]\nsubject = \"department:dept-a\"\nactions = [\"live\", \"playback\", \"export\", \"hold\", \"ptz\"]\nresource = \"group:ga\"\n\n";
    c += "[[grants]]\nsubject = \"department:dept-b\"\nactions = [\"live\", \"playback\"]\nresource = \"group:gb\"\n\n";
    for (i, cam) in ["cam0", "cam1", "cam2", "cam3"].iter().enumerate() {
        c += &camera_toml(cam, &sim.url(cam)).replace("test/e2e", if i < 2 { "test/a" } else { "test/b" });
    }
    c
}

/// A node with [`permissions_config`] over [`four_cameras`]: (the cameras, the test's directory
/// holding config and data, the node, its RTSP address).
pub fn permissions_node() -> (Sim, tempfile::TempDir, Node, SocketAddr) {
    let sim = four_cameras();
    let dir = tempfile::tempdir().unwrap();
    let (addr, rtsp) = (free_addr(), free_addr());
    let config = permissions_config(addr, rtsp, &dir.path().join("data"), &sim);
    let node = Node::start(dir.path(), &config, addr);
    (sim, dir, node, rtsp)
}

pub fn four_cameras() -> Sim {
    Sim::start(
        ["cam0", "cam1", "cam2", "cam3"]
            .iter()
            .map(|c| camsim::CameraSpec::new(*c, camsim::BuiltinFixture::H264_240p.load()))
            .collect(),
    )
}

/// One RTSP request on a new connection: (status, response text).
pub fn raw_rtsp(addr: SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

/// Logs `user` in with the test password; returns the session token.
pub fn login(base: &str, user: &str) -> String {
    let (s, b) = post_json(
        &format!("{base}/api/v1/login"),
        &serde_json::json!({"username": user, "password": PASSWORD}),
        None,
    );
    assert_eq!(s, 200, "{user}: {b}");
    b["token"].as_str().unwrap().to_owned()
}

/// Listens to `/api/v1/events` for `secs` seconds: every (event kind, data) received.
pub fn listen(base: &str, token: &str, secs: u64) -> std::thread::JoinHandle<Vec<(String, Value)>> {
    let (url, token) = (format!("{base}/api/v1/events"), token.to_owned());
    std::thread::spawn(move || {
        use std::io::BufRead;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(secs)))
            .build()
            .into();
        let resp = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
        let mut got = Vec::new();
        let mut kind = String::new();
        for line in std::io::BufReader::new(resp.into_body().into_reader()).lines() {
            let Ok(line) = line else { break };
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                got.push((kind.clone(), serde_json::from_str(d).unwrap()));
            }
        }
        got
    })
}

/// A signed media token of `node`'s admin for `camera` and `action` (`live`, `playback`, ...).
pub fn media_token(node: &mut Node, camera: &str, action: &str) -> String {
    let token = node.token();
    let url = node.url(&format!("/api/v1/cameras/{camera}/media-token"));
    let (status, body) = node.http(|| post_json(&url, &serde_json::json!({ "action": action }), Some(&token)));
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// ffmpeg copies `url` (the first `secs` seconds if given) into `out`, which must succeed;
/// then what decoding `out` says and how many frames it decoded.
pub fn copy_and_decode(url: &str, secs: Option<u32>, out: &Path) -> (String, u64) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-i", url]);
    if let Some(s) = secs {
        cmd.args(["-t", &s.to_string()]);
    }
    let st = cmd.args(["-c", "copy"]).arg(out).status().unwrap();
    assert!(st.success(), "ffmpeg could not read {url}");
    decode(out.to_str().unwrap())
}

/// A simulated GB/T 28181 device or lower platform `id` registering to `platform_id` at
/// `platform` with `password`, its `channels` directly under it, keeping alive every second,
/// in the platform's SIP domain (the first ten digits of its id). Tests change other fields with
/// `GbDeviceSpec { field, ..gb_device(...) }`.
pub fn gb_device(
    id: &str,
    password: &str,
    platform: SocketAddr,
    platform_id: &str,
    channels: Vec<(String, String)>,
) -> camsim::gbdevice::GbDeviceSpec {
    camsim::gbdevice::GbDeviceSpec {
        id: id.into(),
        password: password.into(),
        platform,
        platform_id: platform_id.into(),
        domain: platform_id.chars().take(10).collect(),
        channels,
        groups: Vec::new(),
        parents: Default::default(),
        catalog_page: 0,
        keepalive: Duration::from_secs(1),
        fixture: camsim::BuiltinFixture::H264_240p.load(),
        recordings: Vec::new(),
    }
}
