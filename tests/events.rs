//! Durable events through a real `sharpeye` process: an SSE client that resumes with
//! `Last-Event-ID` across a `kill -9` gets every event once and in order; a webhook receiver
//! that fails and recovers (across a `kill -9` too) gets every event it asked for, signed;
//! one that never answers is dead-lettered and revived.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camsim::{BuiltinFixture, CameraSpec};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// One SSE event: (id, kind, data).
type Sse = (Option<u64>, String, Value);

/// Follows `/api/v1/events` (from `last_id` when given), sending each event to the channel
/// until the connection ends.
fn follow(base: &str, token: &str, last_id: Option<u64>) -> mpsc::Receiver<Sse> {
    let (tx, rx) = mpsc::channel();
    let (url, token) = (format!("{base}/api/v1/events"), token.to_owned());
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let mut req = agent.get(&url).header("Authorization", &format!("Bearer {token}"));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", &id.to_string());
        }
        let Ok(resp) = req.call() else { return };
        let (mut id, mut kind) = (None, String::new());
        for line in BufReader::new(resp.into_body().into_reader()).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(k) = line.strip_prefix("event: ") {
                kind = k.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ")
                && tx
                    .send((id.take(), kind.clone(), serde_json::from_str(d).unwrap()))
                    .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Places a hold on `cam` over its first recorded seconds: (the hold's id).
fn hold(node: &mut Node, cam: &str, n: usize) -> String {
    let start = now_us() - 3_600_000_000 + n as i64 * 1_000_000;
    let (s, h) = node.post(
        "/api/v1/holds",
        &json!({ "camera": cam, "start": rfc3339(start), "end": rfc3339(start + 1_000_000), "reason": format!("case {n}") }),
    );
    assert_eq!(s, 201, "{h}");
    h["id"].as_str().unwrap().to_owned()
}

fn node_config(dir: &std::path::Path, sim: &Sim, addr: std::net::SocketAddr) -> String {
    config_toml(addr, &dir.join("data"), "", &camera_toml("cam0", &sim.url("cam0"))).replace(
        "[ingest]",
        "[events]\nretry_min = \"200ms\"\nretry_max = \"1s\"\n\n[retention]\nstandard = \"3650d\"\nkey = \"3650d\"\n\n[ingest]",
    )
}

/// Collects events from `rx` until `done` says so (or 30 s pass).
fn collect(rx: &mpsc::Receiver<Sse>, got: &mut Vec<Sse>, mut done: impl FnMut(&[Sse]) -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !done(got) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "events so far: {got:?}");
        if let Ok(e) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
            got.push(e);
        }
    }
}

#[test]
fn an_event_stream_resumed_after_kill_9_gets_every_event_once_and_in_order() {
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_240p.load())]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = node_config(dir.path(), &sim, addr);
    let mut node = Node::start(dir.path(), &config, addr);
    let token = node.token();
    // Two screens: one reads all along; the other stops reading after the first holds (a
    // network blip), so what it missed must come from the log on disk after the restart.
    let (rx_a, rx_b) = (follow(&node.url(""), &token, None), follow(&node.url(""), &token, None));
    std::thread::sleep(Duration::from_millis(300));
    let mut holds = Vec::new();
    for n in 0..20 {
        holds.push(hold(&mut node, "cam0", n));
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    collect(&rx_a, &mut a, |g| {
        g.iter().filter(|e| e.1 == "hold.placed").count() >= 20
    });
    collect(&rx_b, &mut b, |g| {
        g.iter().filter(|e| e.1 == "hold.placed").count() >= 20
    });
    drop(rx_b);
    // More while A listens, then kill -9 at once: some of these A may not have read.
    for n in 20..40 {
        holds.push(hold(&mut node, "cam0", n));
    }
    node.kill();
    // A's connection ends; whatever it delivered before is kept.
    while let Ok(e) = rx_a.recv_timeout(Duration::from_secs(2)) {
        a.push(e);
    }
    let (a_before, b_before) = (a.len(), b.len());
    let last = |g: &[Sse]| g.iter().filter_map(|e| e.0).max().unwrap();
    let (last_a, last_b) = (last(&a), last(&b));

    let mut node = Node::start(dir.path(), &config, addr);
    let token = node.token();
    let (rx_a, rx_b) = (
        follow(&node.url(""), &token, Some(last_a)),
        follow(&node.url(""), &token, Some(last_b)),
    );
    std::thread::sleep(Duration::from_millis(300));
    for n in 40..50 {
        holds.push(hold(&mut node, "cam0", n));
    }
    let all_placed = |g: &[Sse]| {
        let placed: std::collections::HashSet<&str> = g
            .iter()
            .filter(|e| e.1 == "hold.placed")
            .filter_map(|e| e.2["id"].as_str())
            .collect();
        holds.iter().all(|h| placed.contains(h.as_str()))
    };
    collect(&rx_a, &mut a, all_placed);
    collect(&rx_b, &mut b, all_placed);
    // Every event has an id, and the ids run on by one: nothing missing, nothing twice, in
    // order, across the kill (an administrator may see every event).
    let mut ids = Vec::new();
    for (name, got) in [("A", &a), ("B", &b)] {
        ids = got
            .iter()
            .map(|e| e.0.unwrap_or_else(|| panic!("{name}: an event without id: {e:?}")))
            .collect::<Vec<u64>>();
        for w in ids.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{name}: ids {ids:?}");
        }
        let placed: Vec<&str> = got
            .iter()
            .filter(|e| e.1 == "hold.placed")
            .filter_map(|e| e.2["id"].as_str())
            .collect();
        assert_eq!(
            placed,
            holds.iter().map(String::as_str).collect::<Vec<_>>(),
            "{name}: each hold once, in the order placed"
        );
    }
    let replayed = b[b_before..].iter().filter(|e| e.1 == "hold.placed").count();
    assert!(
        replayed >= 30,
        "B got the 20 holds it missed from the log, then the 10 new: {replayed}"
    );
    println!(
        "A: {a_before} events before the kill, {} after resuming from {last_a}; B: {b_before} before, {} after resuming from {last_b}",
        a.len() - a_before,
        b.len() - b_before
    );

    // A malformed Last-Event-ID is refused; one from the future is simply caught up to now.
    let (s, v) = {
        let resp = agent()
            .get(&node.url("/api/v1/events"))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Last-Event-ID", "yesterday")
            .call()
            .unwrap();
        (
            resp.status().as_u16(),
            resp.into_body().read_to_string().unwrap_or_default(),
        )
    };
    assert_eq!(s, 400, "{v}");
    assert!(v.contains("Last-Event-ID"), "{v}");
    let rx = follow(&node.url(""), &token, Some(u64::MAX / 2));
    hold(&mut node, "cam0", 99);
    let mut late = Vec::new();
    collect(&rx, &mut late, |g| g.iter().any(|e| e.1 == "hold.placed"));
    assert_eq!(late.last().unwrap().0, Some(ids.last().unwrap() + late.len() as u64));
    node.kill();
}

/// One request a receiver got: its headers (lower-case names) and body.
type Received = (Vec<(String, String)>, String);

/// What a receiver got, shared with its threads.
type Inbox = Arc<Mutex<Vec<Received>>>;

/// A webhook receiver on loopback that answers 500 to its first `fail` requests, then 204:
/// (its URL, the requests it took, how many it was sent).
fn receiver(fail: usize) -> (String, Inbox, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Inbox = Arc::default();
    let attempts: Arc<Mutex<usize>> = Arc::default();
    let (g, a) = (got.clone(), attempts.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            let (g, a) = (g.clone(), a.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                    let len: usize = headers
                        .iter()
                        .find(|h| h.0 == "content-length")
                        .map_or(0, |h| h.1.parse().unwrap());
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let n = {
                        let mut a = a.lock().unwrap();
                        *a += 1;
                        *a
                    };
                    let ok = n > fail;
                    if ok {
                        g.lock().unwrap().push((headers, String::from_utf8(body).unwrap()));
                    }
                    let status = if ok {
                        "204 No Content"
                    } else {
                        "500 Internal Server Error"
                    };
                    if w.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, got, attempts)
}

#[test]
fn a_webhook_that_fails_then_recovers_gets_every_event_signed_across_a_kill_9() {
    let sim = Sim::start(vec![CameraSpec::new("cam0", BuiltinFixture::H264_240p.load())]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = node_config(dir.path(), &sim, addr);
    let mut node = Node::start(dir.path(), &config, addr);
    let secret = "a shared secret of the dispatch module";
    let (url, got, attempts) = receiver(3);

    // Malformed subscriptions are refused by field; only administrators subscribe.
    for (body, field) in [
        (json!({ "url": "https://x/", "secret": secret }), "url"),
        (json!({ "url": url, "secret": "short" }), "secret"),
        (
            json!({ "url": url, "secret": secret, "kinds": ["Bad Kind"] }),
            "kinds[0]",
        ),
        (
            json!({ "url": url, "secret": secret, "max_failures": 0 }),
            "max_failures",
        ),
        (json!({ "url": url, "secret": secret, "from": "yesterday" }), "from"),
        (json!({ "url": url, "secret": secret, "extra": 1 }), "extra"),
        (json!({ "secret": secret }), "url"),
    ] {
        let (s, v) = node.post("/api/v1/webhooks", &body);
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    let (s, hook) = node.post(
        "/api/v1/webhooks",
        &json!({ "url": url, "secret": secret, "kinds": ["hold."] }),
    );
    assert_eq!(s, 201, "{hook}");
    assert!(hook.get("secret").is_none(), "the secret is never shown: {hook}");
    let id = hook["id"].as_str().unwrap().to_owned();

    let mut holds = Vec::new();
    for n in 0..10 {
        holds.push(hold(&mut node, "cam0", n));
    }
    // The receiver fails: kill -9 the node between its retries.
    assert!(wait_until(Duration::from_secs(10), || *attempts.lock().unwrap() >= 2));
    let (_, h) = node.get(&format!("/api/v1/webhooks/{id}"));
    assert!(
        h["failures"].as_u64().unwrap() >= 1 && h["last_error"].as_str().unwrap().contains("500"),
        "{h}"
    );
    node.kill();
    let mut node = Node::start(dir.path(), &config, addr);
    for n in 10..20 {
        holds.push(hold(&mut node, "cam0", n));
    }
    let placed = |got: &[Received]| -> Vec<(u64, String, String)> {
        let mut v: Vec<(u64, String, String)> = got
            .iter()
            .flat_map(|(_, b)| {
                serde_json::from_str::<Value>(b).unwrap()["events"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap(),
                    e["kind"].as_str().unwrap().to_owned(),
                    e["data"]["id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert!(
        wait_until(Duration::from_secs(30), || placed(&got.lock().unwrap()).len() >= 20),
        "delivered: {:?}",
        placed(&got.lock().unwrap())
    );
    let got = got.lock().unwrap().clone();
    // Every delivery is signed over its timestamp and body with the secret.
    for (headers, body) in &got {
        let h = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{}.{body}", h("x-sharpeye-timestamp")).as_bytes());
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(h("x-sharpeye-signature"), format!("v1={want}"));
        assert_eq!(h("x-sharpeye-webhook"), id);
        let v: Value = serde_json::from_str(body).unwrap();
        let seqs: Vec<u64> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "a delivery is in order: {seqs:?}");
    }
    // De-duplicated by sequence number: each hold once, in the order placed, and only holds.
    let events = placed(&got);
    assert!(events.iter().all(|e| e.1 == "hold.placed"), "{events:?}");
    assert_eq!(events.iter().map(|e| e.2.clone()).collect::<Vec<_>>(), holds);
    let (_, h) = node.get(&format!("/api/v1/webhooks/{id}"));
    assert_eq!(
        (h["state"].as_str(), h["failures"].as_u64()),
        (Some("active"), Some(0)),
        "{h}"
    );
    let metrics = node.metrics();
    let delivered = metrics
        .lines()
        .find(|l| l.starts_with("sharpeye_webhook_delivered_total") && l.contains(&id))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(
        delivered.is_some_and(|d| d >= 10),
        "the events delivered since the restart: {delivered:?}"
    );
    assert!(
        metrics.contains(&format!(
            "sharpeye_webhook_lag_events{{webhook=\"{id}\",url=\"{url}\"}} "
        )),
        "{metrics}"
    );

    // A receiver that is never there is dead-lettered after max_failures, said as an event,
    // and revived by an operator.
    let rx = follow(&node.url(""), &node.token(), None);
    let nobody = format!("http://{}/gone", free_addr());
    let (_, dead) = node.post(
        "/api/v1/webhooks",
        &json!({ "url": nobody, "secret": secret, "max_failures": 2 }),
    );
    let dead_id = dead["id"].as_str().unwrap().to_owned();
    hold(&mut node, "cam0", 30);
    assert!(wait_until(Duration::from_secs(15), || node
        .get(&format!("/api/v1/webhooks/{dead_id}"))
        .1["state"]
        == "dead"));
    let mut seen = Vec::new();
    collect(&rx, &mut seen, |g| g.iter().any(|e| e.1 == "webhook.dead"));
    assert!(node.metrics().contains(&format!(
        "sharpeye_webhook_dead{{webhook=\"{dead_id}\",url=\"{nobody}\"}} 1"
    )));
    // A ten-year guarantee cannot be met by this disk: said once, as an event.
    collect(&rx, &mut seen, |g| g.iter().any(|e| e.1 == "guarantee.at_risk"));
    let risk = seen.iter().find(|e| e.1 == "guarantee.at_risk").unwrap();
    assert_eq!(
        (risk.2["tier"].as_str(), risk.2["guarantee_days"].as_f64()),
        (Some("standard"), Some(3650.0)),
        "{risk:?}"
    );
    let (s, revived) = node.post(&format!("/api/v1/webhooks/{dead_id}/retry"), &json!({}));
    assert_eq!((s, revived["state"].as_str()), (200, Some("active")), "{revived}");
    let (s, _) = node.get("/api/v1/webhooks/nope");
    assert_eq!(s, 404);
    node.kill();
}
