//! Playback and export benchmark.
//!
//! 1. Records one real hour of the ~4 Mbit/s 1080p H.264 camera through the recorder (frames fed
//!    with simulated timing, so it takes seconds).
//! 2. Builds a synthetic index of `--days` (90) days × `--cameras` (100) cameras, one entry per
//!    60 s segment, each a copy of that hour's real entries shifted in time; hard links give
//!    real files to the hours the benchmark plays.
//! 3. Serves it with a `sharpeye run` process and measures, over HTTP: time to first byte of
//!    `playback.mp4` for 1-hour ranges (p50/p99), listing a day (p50/p99, also in-process),
//!    and export throughput for the 1-hour range, warm and cold, against the disk's sequential
//!    read measured in the same run and against `ffmpeg -f concat -c copy` of the same segments.
//!
//! ```text
//! cargo bench --bench playback -- [--days 90] [--cameras 100] [--requests 200] [--data DIR]
//! ```
//! The index for 90 × 100 takes a few GB and a few minutes to generate; `--data` on a disk with
//! room. Run by hand (`scripts/bench-playback.sh`), not in CI.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::pct;
use media::{StreamId, WallTime};
use store::SegmentRecord;

/// Command-line arguments (`cargo bench --bench playback -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--days`.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// `--cameras`.
    #[arg(long, default_value_t = 100)]
    cameras: usize,
    /// `--requests`.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// `--data`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// `--no-export`.
    #[arg(long = "no-export", action = clap::ArgAction::SetFalse)]
    export: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    clap::Parser::parse()
}

/// Drops the page cache (needs root); false if it could not.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Reads the files of `segments` under `dir` in `block`-byte reads, writing them to `out` if
/// given: the bytes read (the disk's own rates the exports are measured against).
fn read_through(
    segments: &[&SegmentRecord],
    dir: &std::path::Path,
    block: usize,
    mut out: Option<&mut std::fs::File>,
) -> u64 {
    let mut n = 0u64;
    let mut buf = vec![0u8; block];
    for r in segments {
        let mut f = std::fs::File::open(store::segment_file_path(dir, r)).unwrap();
        loop {
            let k = f.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            if let Some(out) = out.as_mut() {
                out.write_all(&buf[..k]).unwrap();
            }
            n += k as u64;
        }
    }
    n
}

/// Time to the first body byte of a GET, over a fresh connection.
fn ttfb(addr: SocketAddr, path: &str, token: &str) -> (f64, u16) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 65536];
    let mut got = Vec::new();
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the body");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() > i + 4
        {
            let status = String::from_utf8_lossy(&got[9..12]).parse().unwrap_or(0);
            return (t0.elapsed().as_secs_f64() * 1000.0, status);
        }
    }
}

fn http_json(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let (y, m, d) = store::layout::utc_date(WallTime::from_micros(us));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        us.rem_euclid(1_000_000)
    )
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let root = a.data.clone().unwrap_or_else(|| tmp.path().to_owned());
    let data = root.join("bench-data");
    let template_dir = root.join("template");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&template_dir);
    let day_us = 86_400_000_000i64;
    // Midnight UTC `days` days ago: day d of camera c spans [t0 + d·day, t0 + (d+1)·day).
    let t0 = (WallTime::now().as_micros() / day_us - a.days) * day_us;

    let t = Instant::now();
    let hour = common::record_minutes(&template_dir, "template", t0, 61);
    let hour_bytes: u64 = hour.iter().map(|r| r.bytes).sum();
    println!(
        "template: {} segments, {:.2} GB for 61 min of 1080p H.264 recorded in {:.1} s",
        hour.len(),
        hour_bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );

    // The synthetic index: every camera, every day, every hour: the template hour shifted.
    let t = Instant::now();
    std::fs::create_dir_all(data.join("segments")).unwrap();
    let index = store::index::Index::open(&data.join("index.redb")).unwrap();
    let per_hour: Vec<&SegmentRecord> = hour
        .iter()
        .filter(|r| r.end.as_micros() <= t0 + 3_600_000_000)
        .collect();
    let mut batch = Vec::with_capacity(100_000);
    let mut total = 0u64;
    for c in 0..a.cameras {
        let stream = StreamId::main(format!("cam{c}"));
        let mut seq = 0u64;
        for h in 0..a.days * 24 {
            for r in &per_hour {
                seq += 1;
                let mut x = (*r).clone();
                x.stream = stream.clone();
                x.seq = seq;
                let shift = h * 3_600_000_000;
                x.start = x.start.add_micros(shift);
                x.end = x.end.add_micros(shift);
                batch.push(x);
                if batch.len() == batch.capacity() {
                    index.put(&batch).unwrap();
                    total += batch.len() as u64;
                    batch.clear();
                }
            }
        }
    }
    index.put(&batch).unwrap();
    total += batch.len() as u64;
    drop(index);
    let index_bytes = std::fs::metadata(data.join("index.redb")).unwrap().len();
    let camera_days = (a.cameras as i64 * a.days) as f64;
    println!(
        "index: {total} segment entries ({} cameras × {} days) in {:.1} s, {:.2} GB: {:.1} KB per camera-day",
        a.cameras,
        a.days,
        t.elapsed().as_secs_f64(),
        index_bytes as f64 / 1e9,
        index_bytes as f64 / camera_days / 1024.0
    );

    // Real files for the hours played: hard links to the template's.
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let hours: Vec<(usize, i64)> = (0..20)
        .map(|_| (rnd(a.cameras as u64) as usize, rnd((a.days * 24) as u64) as i64))
        .collect();
    assert!(
        a.requests > hours.len(),
        "--requests must exceed {} (the first requests of the hours)",
        hours.len()
    );
    for &(c, h) in &hours {
        for (i, r) in per_hour.iter().enumerate() {
            let seq = h as u64 * per_hour.len() as u64 + i as u64 + 1;
            let mut x = (*r).clone();
            x.stream = StreamId::main(format!("cam{c}"));
            x.seq = seq;
            x.start = x.start.add_micros(h * 3_600_000_000);
            let dst = store::segment_file_path(&data, &x);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            let _ = std::fs::hard_link(store::segment_file_path(&template_dir, r), &dst);
        }
    }

    // The bench's own writes (the template hour, the index: gigabytes) are flushed before
    // anything is timed, so that the server's syncs (each playback's audit entry) do not queue
    // behind them.
    let _ = Command::new("sync").status();

    // The server.
    let addr = testkit::free_addr();
    let mut config = format!(
        "[server]\nlisten = \"{addr}\"\ndata_dirs = [\"{}\"]\n[playback]\nmax_range = \"25h\"\n[retention]\nstandard = \"3650d\"\nkey = \"3650d\"\n[[users]]\nname = \"admin\"\npassword = \"bench-password\"\nrole = \"admin\"\n",
        data.display()
    );
    for c in 0..a.cameras {
        config.push_str(&format!(
            "[[cameras]]\nid = \"cam{c}\"\nurl = \"rtsp://127.0.0.1:1/x\"\nrecord = false\n"
        ));
    }
    let cfg = root.join("bench.toml");
    std::fs::write(&cfg, config).unwrap();
    let t = Instant::now();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_sharpeye"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = testkit::KillOnDrop(child.id());
    while TcpStream::connect(addr).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("server up in {:.2} s", t.elapsed().as_secs_f64());
    let login = http_json(
        addr,
        "POST",
        "/api/v1/login",
        None,
        Some(r#"{"username":"admin","password":"bench-password"}"#),
    );
    let token = login["token"].as_str().unwrap().to_owned();

    // TTFB of playback.mp4: the first request of each hour, the whole hour (its 60 segments'
    // sample tables read from the files), then repeated 59-minute requests at other start
    // offsets (tables cached, new moov). The first requests used to be 59 minutes too, which
    // left each hour's last segment to the "cached" requests: their slowest were table reads.
    let mut first = Vec::new();
    let mut repeat = Vec::new();
    for i in 0..a.requests {
        let (c, h) = hours[i % hours.len()];
        let is_first = i < hours.len();
        let offset_s = if is_first { 0 } else { 1 + rnd(58) as i64 };
        let start = t0 + h * 3_600_000_000 + offset_s * 1_000_000;
        let len = if is_first {
            3_600_000_000
        } else {
            3_600_000_000 - 60_000_000
        };
        let path = format!(
            "/api/v1/cameras/cam{c}/playback.mp4?start={}&end={}",
            rfc3339(start),
            rfc3339(start + len)
        );
        let (ms, status) = ttfb(addr, &path, &token);
        assert_eq!(status, 200, "{path}");
        if i < hours.len() {
            first.push(ms)
        } else {
            repeat.push(ms)
        }
    }
    println!(
        "playback.mp4 TTFB: first request of an hour (60 min) p50 {:.1} ms p99 {:.1} ms ({} requests); later, 59-min ranges, tables cached, p50 {:.1} ms p99 {:.1} ms ({} requests)",
        pct(first.clone(), 0.5),
        pct(first.clone(), 0.99),
        first.len(),
        pct(repeat.clone(), 0.5),
        pct(repeat.clone(), 0.99),
        repeat.len()
    );

    // Listing a day.
    let mut http = Vec::new();
    for _ in 0..a.requests {
        let c = rnd(a.cameras as u64);
        let d = rnd(a.days as u64) as i64;
        let path = format!(
            "/api/v1/cameras/cam{c}/recordings?start={}&end={}",
            rfc3339(t0 + d * day_us),
            rfc3339(t0 + (d + 1) * day_us)
        );
        let (ms, status) = ttfb(addr, &path, &token);
        assert_eq!(status, 200);
        http.push(ms);
    }
    println!(
        "listing a day over HTTP: p50 {:.2} ms p99 {:.2} ms",
        pct(http.clone(), 0.5),
        pct(http, 0.99)
    );

    if !a.export {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
        return;
    }

    // Export of the template hour, warm then cold, against the disk and ffmpeg.

    let (c, h) = hours[0];
    let start = t0 + h * 3_600_000_000;
    let body = format!(
        r#"{{"camera":"cam{c}","start":"{}","end":"{}","reason":"benchmark"}}"#,
        rfc3339(start),
        rfc3339(start + 3_600_000_000)
    );
    let export = |label: &str| -> f64 {
        let t = Instant::now();
        let job = http_json(addr, "POST", "/api/v1/exports", Some(&token), Some(&body));
        let id = job["id"].as_str().expect("export started").to_owned();
        let mut copied_at = None;
        loop {
            let j = http_json(addr, "GET", &format!("/api/v1/exports/{id}"), Some(&token), None);
            let (done, total) = (
                j["bytes_done"].as_u64().unwrap_or(0),
                j["bytes_total"].as_u64().unwrap_or(1),
            );
            // Progress is reported every 8 MB: within the last step, copying is over and the
            // package's fsync is what remains.
            if copied_at.is_none() && total > 1 && done + (8 << 20) >= total {
                copied_at = Some(t.elapsed().as_secs_f64());
            }
            if j["status"] == "done" {
                let secs = t.elapsed().as_secs_f64();
                let bytes = j["bytes_total"].as_u64().unwrap_or(0) as f64;
                let copy = copied_at.unwrap_or(secs);
                println!(
                    "export {label}: {:.2} GB durable in {:.2} s = {:.2} GB/s (assembly {:.2} s = {:.2} GB/s, then fsync)",
                    bytes / 1e9,
                    secs,
                    bytes / secs / 1e9,
                    copy,
                    bytes / copy / 1e9
                );
                return bytes / secs;
            }
            assert_ne!(j["status"], "failed", "{j}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Streaming the hour as playback.mp4 (the read path an export's MP4 comes from), warm.
    for _ in 0..2 {
        let path = format!(
            "/api/v1/cameras/cam{c}/playback.mp4?start={}&end={}",
            rfc3339(start),
            rfc3339(start + 3_540_000_000)
        );
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = s.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "playback.mp4 of the hour streamed over HTTP (warm): {:.2} GB in {:.2} s = {:.2} GB/s",
            n as f64 / 1e9,
            secs,
            n as f64 / secs / 1e9
        );
    }
    // Warm: the files were just read by playback and listing.
    let _ = export("warm (page cache)");
    let warm = export("warm (page cache)");
    let cold = if drop_caches() {
        Some(export("cold (caches dropped)"))
    } else {
        None
    };
    // The read path alone: the package written to memory (tmpfs), so that the disk only reads,
    // as when exports go to another volume. Above, reading and writing shared the one disk.
    let shm = PathBuf::from(format!("/dev/shm/sharpeye-bench-exports-{}", std::process::id()));
    let cold_read = if std::fs::create_dir_all(&shm).is_ok() {
        let exports = data.join("exports");
        std::fs::rename(&exports, data.join("exports.disk")).unwrap();
        std::os::unix::fs::symlink(&shm, &exports).unwrap();
        let rate = drop_caches().then(|| export("cold, package to tmpfs (read path alone)"));
        let _ = std::fs::remove_dir_all(&shm);
        rate
    } else {
        None
    };
    // The disk's sequential read, in the same run: the template hour's files, caches dropped.
    let seq_read = if drop_caches() {
        let t = Instant::now();
        let n = read_through(&per_hour, &template_dir, 1 << 20, None);
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!("disk sequential read (caches dropped): {:.2} GB/s", rate / 1e9);
        Some(rate)
    } else {
        println!("disk sequential read: skipped (cannot drop caches without root)");
        None
    };
    // The disk copying to itself, in the same run: the hour's files read cold and written into
    // one file beside the exports, then synced. A cold export onto the disk it reads from does
    // this much I/O too, so this, not the read alone, is its ceiling.
    let seq_copy = if drop_caches() {
        let dest = data.join("bench-copy.bin");
        let t = Instant::now();
        let mut out = std::fs::File::create(&dest).unwrap();
        let n = read_through(&per_hour, &template_dir, 8 << 20, Some(&mut out));
        out.sync_all().unwrap();
        let rate = n as f64 / t.elapsed().as_secs_f64();
        drop(out);
        let _ = std::fs::remove_file(&dest);
        println!(
            "disk copying to itself (caches dropped, synced): {:.2} GB/s",
            rate / 1e9
        );
        Some(rate)
    } else {
        None
    };
    if let (Some(c), Some(s)) = (cold, seq_read) {
        println!(
            "export cold / disk read: {:.0} % (the package written to the same disk: it both reads and writes)",
            c / s * 100.0
        );
    }
    if let (Some(c), Some(s)) = (cold, seq_copy) {
        println!("export cold / the disk copying to itself: {:.0} %", c / s * 100.0);
    }
    if let (Some(c), Some(s)) = (cold_read, seq_read) {
        println!("export cold, package to tmpfs / disk read: {:.0} %", c / s * 100.0);
    }
    // ffmpeg concatenating the same segments without re-encoding, warm.
    let list = root.join("concat.txt");
    let mut l = String::new();
    for r in &per_hour {
        l.push_str(&format!(
            "file '{}'\n",
            store::segment_file_path(&template_dir, r).display()
        ));
    }
    std::fs::write(&list, l).unwrap();
    for r in &per_hour {
        let _ = std::fs::read(store::segment_file_path(&template_dir, r));
    }
    let out = root.join("ffmpeg-concat.mp4");
    let t = Instant::now();
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "concat", "-safe", "0", "-i"])
        .arg(&list)
        .args(["-c", "copy"])
        .arg(&out)
        .status();
    match st {
        Ok(s) if s.success() => {
            let secs = t.elapsed().as_secs_f64();
            let rate = hour_bytes as f64 / secs;
            println!(
                "ffmpeg -f concat -c copy (warm): {secs:.2} s = {:.2} GB/s; sharpeye export is {:.1}× faster",
                rate / 1e9,
                warm / rate
            );
        }
        _ => println!("ffmpeg: not available"),
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}
