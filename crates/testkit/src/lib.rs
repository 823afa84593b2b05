//! Helpers shared by tests and benchmarks; a dev-dependency only, never in the server.
//!
//! * ffprobe and ffmpeg as independent validators of every file Sharpeye writes. Their absence
//!   fails the test (with the command that installs them) rather than skipping checks.
//! * Free loopback ports, and a guard that kills a child process if a test or harness panics
//!   before stopping it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; the caller binds it right after).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("a bound socket has an address")
}

/// A loopback port free for both UDP and TCP (SIP listens on both, and a port free for TCP can
/// be taken for UDP by another test's media socket).
pub fn free_udp_tcp_addr() -> SocketAddr {
    for _ in 0..100 {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a loopback UDP port");
        let addr = u.local_addr().expect("a bound socket has an address");
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// Panics with install instructions unless ffmpeg and ffprobe can run.
pub fn require_ffmpeg() {
    let ok = ["ffprobe", "ffmpeg"].iter().all(|t| {
        Command::new(t)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        ok,
        "ffmpeg/ffprobe not found: run ./scripts/test.sh (it installs them) or apt-get install ffmpeg"
    );
}

/// Video packets (frames) ffprobe counts in the first video stream of `path`.
pub fn ffprobe_packets(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// What `ffmpeg -v error` prints while decoding all of `input` (a path or URL): empty when the
/// file decodes cleanly.
pub fn ffmpeg_errors(input: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", input, "-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Kills the child process `0` on drop: a failed test or benchmark must not leave a server
/// running behind it.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling a child of ours; harmless if it has already exited.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// A small file system for tests that fill a disk: `SHARPEYE_SMALL_FS` if set (an empty,
/// mounted small file system: `scripts/test.sh` mounts a 24 MB tmpfs), else a tmpfs of the
/// given size mounted here (needs root) and unmounted when dropped. Tests that use it must not
/// run at the same time: it is one file system, so holding a `SmallFs` holds a process-wide
/// lock (test binaries themselves run one after another).
pub struct SmallFs {
    /// Where it is mounted.
    pub path: std::path::PathBuf,
    mounted: bool,
    _turn: std::sync::MutexGuard<'static, ()>,
}

static SMALL_FS_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl SmallFs {
    /// Finds or mounts the small file system.
    pub fn new(megabytes: u32) -> SmallFs {
        let turn = SMALL_FS_TURN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = std::env::var_os("SHARPEYE_SMALL_FS") {
            return SmallFs {
                path: p.into(),
                mounted: false,
                _turn: turn,
            };
        }
        let path = std::env::temp_dir().join(format!("sharpeye-small-fs-{}-{megabytes}", std::process::id()));
        std::fs::create_dir_all(&path).expect("creating a mount point in the temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot mount a {megabytes} MB tmpfs at {}: run the tests as root, or mount a small file system and name it in SHARPEYE_SMALL_FS (scripts/test.sh does)",
            path.display()
        );
        SmallFs {
            path,
            mounted: true,
            _turn: turn,
        }
    }

    /// Removes the entries whose names start with `prefix`: an earlier run's leftovers would
    /// eat the space under test.
    pub fn clear(&self, prefix: &str) {
        for e in std::fs::read_dir(&self.path)
            .expect("reading the small file system")
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_dir_all(e.path());
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Writes `path` until the file system is full (`ENOSPC`), as something else filling the disk
/// would; returns the open file (drop it and remove the file to give the space back).
pub fn fill(path: &Path) -> std::fs::File {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("creating the filler file");
    let chunk = vec![0u8; 1 << 16];
    loop {
        match f.write(&chunk) {
            Ok(0) => return f,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return f,
            Err(e) => panic!("filling the disk at {}: {e}", path.display()),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// A WHEP viewer written with str0m as the offering side (a second WebRTC implementation on the
/// client side would be better; browsers are covered by tests/browser.rs). For tests and benches:
/// panics on any failure. Watches `camera` for
/// `secs` seconds and returns the video frames received; ends the session with DELETE.
pub fn whep_watch(base: &str, camera: &str, token: &str, secs: f64) -> u64 {
    whep_watch_stats(base, camera, token, secs).0
}

/// A valid WHEP offer (receive-only H.264 video) for requests that do not go on to a session.
pub fn whep_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, RtcConfig};
    str0m::crypto::from_feature_flags().install_process_default();
    let mut rtc = RtcConfig::new().clear_codecs().enable_h264(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _) = change.apply().unwrap();
    offer.to_sdp_string()
}

/// [`whep_watch`] returning (frames, payload bytes) received.
pub fn whep_watch_stats(base: &str, camera: &str, token: &str, secs: f64) -> (u64, u64) {
    use str0m::change::SdpAnswer;
    use str0m::media::{Direction, MediaKind};
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Event, Input, Output, RtcConfig};

    str0m::crypto::from_feature_flags().install_process_default();
    let mut rtc = RtcConfig::new().clear_codecs().enable_h264(true).build(Instant::now());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = socket.local_addr().unwrap();
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let resp = ureq::post(&format!("{base}/api/v1/cameras/{camera}/whep"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/sdp")
        .send(offer.to_sdp_string())
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let answer = SdpAnswer::from_sdp_string(&resp.into_body().read_to_string().unwrap()).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 2000];
    while Instant::now() < end {
        let timeout = match rtc.poll_output().unwrap() {
            Output::Timeout(t) => t,
            Output::Transmit(t) => {
                socket.send_to(&t.contents, t.destination).unwrap();
                continue;
            }
            Output::Event(Event::MediaData(d)) => {
                frames += 1;
                bytes += d.data.len() as u64;
                continue;
            }
            Output::Event(_) => continue,
        };
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait)).unwrap();
        let input = match socket.recv_from(&mut buf) {
            Ok((n, source)) => Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: local,
                    contents: buf[..n].try_into().unwrap(),
                },
            ),
            Err(_) => Input::Timeout(Instant::now()),
        };
        rtc.handle_input(input).unwrap();
    }
    let status = ureq::delete(&format!("{base}{location}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    (frames, bytes)
}

/// An etcd process (Debian's `etcd-server`, which `scripts/test.sh` installs) on loopback
/// ports with its own data directory, killed when dropped; it can be stopped and started
/// again on the same ports and data (etcd down for a while).
pub struct Etcd {
    child: Option<std::process::Child>,
    /// Its client URL.
    pub url: String,
    peer_url: String,
    dir: PathBuf,
    _tmp: Option<tempfile_dir::TempDir>,
}

mod tempfile_dir {
    /// A directory removed when dropped.
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Etcd {
    /// Starts etcd and waits until it answers; `None` when etcd is not installed.
    pub fn start() -> Option<Etcd> {
        if std::process::Command::new("etcd").arg("--version").output().is_err() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("sharpeye-etcd-{}-{}", std::process::id(), free_addr().port()));
        std::fs::create_dir_all(&dir).ok()?;
        let mut e = Etcd {
            child: None,
            url: format!("http://{}", free_addr()),
            peer_url: format!("http://{}", free_addr()),
            _tmp: Some(tempfile_dir::TempDir(dir.clone())),
            dir,
        };
        e.resume();
        Some(e)
    }

    /// Starts it again after [`Etcd::stop`] (same ports, same data) and waits until it answers.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("etcd log");
        let child = std::process::Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("etcd"))
            .args(["--listen-client-urls", &self.url, "--advertise-client-urls", &self.url])
            .args([
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
            ])
            .args(["--initial-cluster", &format!("t={}", self.peer_url)])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.child = Some(child);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(2)))
            .build()
            .into();
        let t = std::time::Instant::now();
        loop {
            let ok = agent
                .get(&format!("{}/health", self.url))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|b| b.contains("true"));
            if ok {
                return;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(20), "etcd did not come up");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills it (its data stays for [`Etcd::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
