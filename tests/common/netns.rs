//! Network namespaces a test makes for itself (and removes): hosts joined by veth pairs, with
//! `tc` shaping the links. Only addresses inside these namespaces are ever used.

use std::process::Command;

/// Runs `ip` (or `tc`, `nft`) with `args`, panicking with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when this process can make network namespaces (root, iproute2 present).
pub fn available() -> bool {
    let probe = format!("se-probe-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    }
    ok && Command::new("tc").arg("-V").output().is_ok()
}

/// A network namespace, removed (with its veth ends) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace with its loopback up.
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run("ip", &["netns", "add", name]);
        run("ip", &["-n", name, "link", "set", "lo", "up"]);
        Netns { name: name.to_owned() }
    }

    /// Runs a command inside it.
    pub fn exec(&self, cmd: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", self.name.as_str(), cmd];
        all.extend_from_slice(args);
        run("ip", &all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Joins `a` (address `a_ip`, a /24) and `b` (`b_ip`) with a veth pair named `name`a/`name`b.
pub fn link(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str, name: &str) {
    let (ea, eb) = (format!("{name}a"), format!("{name}b"));
    run("ip", &["link", "add", &ea, "type", "veth", "peer", "name", &eb]);
    run("ip", &["link", "set", &ea, "netns", &a.name]);
    run("ip", &["link", "set", &eb, "netns", &b.name]);
    run("ip", &["-n", &a.name, "addr", "add", &format!("{a_ip}/24"), "dev", &ea]);
    run("ip", &["-n", &b.name, "addr", "add", &format!("{b_ip}/24"), "dev", &eb]);
    run("ip", &["-n", &a.name, "link", "set", &ea, "up"]);
    run("ip", &["-n", &b.name, "link", "set", &eb, "up"]);
}

/// Shapes what leaves `ns` through `dev` to `rate` (`"10mbit"`).
pub fn shape(ns: &Netns, dev: &str, rate: &str) {
    run(
        "ip",
        &[
            "netns", "exec", &ns.name, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb",
            "latency", "200ms",
        ],
    );
}

/// Runs `f` on a thread inside namespace `ns`: sockets it opens live there.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}
