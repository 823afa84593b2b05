//! Webhook fan-out: events published at a fixed rate into the real event log, delivered by the
//! real delivery loop (`api::webhooks`) to N receivers on loopback (HTTP/1.1 keep-alive, each
//! answering 204 at once). Reported: events/s offered and delivered per subscriber, and the
//! lag from publishing an event to its receiver having it (p50/p99/max), against one
//! subscriber at the same rate in the same run (the baseline). Goal: 10,000 events/s to 100
//! subscribers with lag ≤ 1 s.
//!
//! ```text
//! cargo bench --bench webhooks -- [--subscribers 100] [--rate 10000] [--seconds 10]
//! ```
//! Run by hand, not in CI.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pct;

/// Command-line arguments (`cargo bench --bench webhooks -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--subscribers`.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// `--rate`: events per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// `--seconds`.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

struct NoFacts;
impl eventlog::webhook::CameraFacts for NoFacts {
    fn org(&self, _: &str) -> Option<String> {
        None
    }
    fn in_grid(&self, _: &str, _: &str) -> bool {
        false
    }
}

/// Batches received: (arrival, last seq, events in it).
type Arrivals = Arc<Mutex<Vec<(Instant, u64, u64)>>>;

/// A receiver on loopback: reads each request, notes its `x-sharpeye-sequence`, answers 204.
fn receiver(arrivals: Arrivals) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let arrivals = arrivals.clone();
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                let mut body = Vec::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut len, mut seq) = (0usize, (0u64, 0u64));
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or((h, ""));
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "x-sharpeye-sequence" => {
                                let (a, b) = v.trim().split_once('-').unwrap_or(("0", "0"));
                                seq = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                            }
                            _ => {}
                        }
                    }
                    body.resize(len, 0);
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    arrivals
                        .lock()
                        .unwrap()
                        .push((Instant::now(), seq.1, seq.1 + 1 - seq.0));
                    if w.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// One run: `subscribers` receivers, `rate` events/s for `seconds`. Returns the report line.
fn run(rt: &tokio::runtime::Runtime, subscribers: usize, rate: u64, seconds: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(api::events::Events::open(&dir.path().join("events"), eventlog::Limits::default()).unwrap());
    let webhooks = Arc::new(eventlog::webhook::Subscriptions::open(&dir.path().join("events/webhooks.json")).unwrap());
    let arrivals: Vec<Arrivals> = (0..subscribers).map(|_| Arrivals::default()).collect();
    for (i, a) in arrivals.iter().enumerate() {
        let url = receiver(a.clone());
        let sub = eventlog::webhook::NewSubscription {
            url,
            kinds: vec![],
            cameras: vec![],
            org: None,
            grid: None,
            secret: "bench-secret-0123456789".into(),
            max_failures: Some(10),
            from: None,
        }
        .check(format!("wh{i}"), "bench", 0, 0, 1)
        .unwrap();
        webhooks.add(sub).unwrap();
    }
    let d = Arc::new(api::webhooks::Deliveries {
        events: events.clone(),
        webhooks: webhooks.clone(),
        node: "bench".into(),
        retry: api::webhooks::Retry::default(),
        facts: Arc::new(NoFacts),
    });
    let _guard = rt.enter();
    api::webhooks::spawn_all(&d);
    let sync = {
        let e = events.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let e = e.clone();
                let _ = tokio::task::spawn_blocking(move || e.log().sync()).await;
            }
        })
    };
    // Publish at the rate, in 1 ms steps, noting when each event went out.
    let total = rate * seconds;
    let mut published = Vec::with_capacity(total as usize + 1);
    published.push(Instant::now());
    let start = Instant::now();
    let mut n = 0u64;
    while n < total {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while n < due.min(total) {
            let e = events.publish(api::events::NodeEvent {
                kind: "camera.offline",
                camera: Some(format!("cam{}", n % 1000)),
                data: serde_json::json!({ "camera": format!("cam{}", n % 1000), "status": "offline", "n": n }),
            });
            debug_assert_eq!(e.seq, n + 1);
            published.push(Instant::now());
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let offered = total as f64 / start.elapsed().as_secs_f64();
    // Let the last deliveries land (at most 10 s).
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10)
        && arrivals
            .iter()
            .any(|a| a.lock().unwrap().last().is_none_or(|l| l.1 < total))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    sync.abort();
    let mut lags = Vec::new();
    let mut delivered = Vec::new();
    for a in &arrivals {
        let a = a.lock().unwrap();
        delivered.push(a.iter().map(|x| x.2).sum::<u64>() as f64);
        for &(at, last, _) in a.iter() {
            if let Some(p) = published.get(last as usize) {
                lags.push(at.duration_since(*p).as_secs_f64() * 1e3);
            }
        }
    }
    let complete = delivered.iter().filter(|d| **d as u64 >= total).count();
    events.close();
    format!(
        "{subscribers:>4} subscribers, {offered:>8.0} events/s offered: {complete}/{subscribers} got all {total}; per-batch lag p50 {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms; {} batches",
        pct(lags.clone(), 0.5),
        pct(lags.clone(), 0.99),
        lags.iter().copied().fold(0.0, f64::max),
        lags.len()
    )
}

fn main() {
    let args: Args = clap::Parser::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("baseline: {}", run(&rt, 1, args.rate, args.seconds.min(5)));
    println!("fan-out:  {}", run(&rt, args.subscribers, args.rate, args.seconds));
}
