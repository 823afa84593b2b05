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
