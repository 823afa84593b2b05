//! Helpers shared by tests and benchmarks; a dev-dependency only, never in the server.
//!
//! * ffprobe and ffmpeg as independent validators of every file Sharpeye writes. Their absence
//!   fails the test (with the command that installs them) rather than skipping checks.
//! * Free loopback ports, and a guard that kills a child process if a test or harness panics
//!   before stopping it.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;

/// A free loopback port (bound then released; the caller binds it right after).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("a bound socket has an address")
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

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}
