//! A lower node that answers badly (malformed JSON, entries with hostile ids and sizes, endless
//! bodies, silence in the middle of an answer, garbage for video) costs the upper a clear error
//! naming the link, never a panic, never unbounded memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hierarchy::catalog::RemoteCamera;
use hierarchy::client::{Call, ClientError, LowerClient};
use hierarchy::config::{Dial, LowerConfig};
use hierarchy::remote::RemoteSource;
use hierarchy::sync::CatalogSink;
use hierarchy::{Link, LinkState};
use ingest::supervisor::Retry;
use ingest::{FrameSink, SourceHealth};
use media::{Frame, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the fake lower node answers on each path.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Malformed,
    Hostile,
    Huge,
    Silent,
    Garbage,
}

/// A fake lower node: one HTTP/1.1 answer per connection.
async fn fake_lower(mode: Mode) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let path = String::from_utf8_lossy(&head)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_owned();
                let ok = |body: &str| {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                match (mode, path.as_str()) {
                    (Mode::Malformed, "/api/v1/cameras") => {
                        let _ = s.write_all(ok("[{\"id\": \"cam1\", \"name\": ").as_bytes()).await;
                    }
                    (Mode::Hostile, "/api/v1/cameras") => {
                        let good = serde_json::json!({"id": "good", "name": "Gate", "tier": "standard", "org": "a",
                            "status": "online", "streams": ["main"], "node": "lower", "path": []});
                        let mut evil = good.clone();
                        evil["id"] = serde_json::json!("../../etc/passwd");
                        let mut long = good.clone();
                        long["id"] = serde_json::json!("long");
                        long["name"] = serde_json::json!("x".repeat(100_000));
                        let mut deep = good.clone();
                        deep["id"] = serde_json::json!("deep");
                        deep["path"] = serde_json::json!(vec!["n"; 50]);
                        let mut ctrl = good.clone();
                        ctrl["id"] = serde_json::json!("ctrl");
                        ctrl["org"] = serde_json::json!("a\u{0}b\nc");
                        let body = serde_json::json!([good, evil, long, deep, ctrl, 17, null]).to_string();
                        let _ = s.write_all(ok(&body).as_bytes()).await;
                    }
                    (Mode::Huge, "/api/v1/cameras") => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200000000\r\n\r\n[")
                            .await;
                        let chunk = vec![b' '; 1 << 20];
                        for _ in 0..200 {
                            if s.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                    (Mode::Silent, _) => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n[{\"id\"")
                            .await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    (Mode::Garbage, p) if p.contains("live.mp4") => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\n\r\n").await;
                        // A box that claims 2 GB, then noise.
                        let _ = s.write_all(&[0x7f, 0xff, 0xff, 0xff, b'm', b'd', b'a', b't']).await;
                        let _ = s.write_all(&vec![0xAB; 1 << 16]).await;
                    }
                    (_, "/api/v1/events") => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                            .await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    _ => {
                        let body = "{\"error\":{\"code\":\"not_found\",\"message\":\"no\\nsuch\\u0000thing\"}}";
                        let _ = s
                            .write_all(
                                format!("HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                                    .as_bytes(),
                            )
                            .await;
                    }
                }
            });
        }
    });
    addr
}

fn link_to(addr: std::net::SocketAddr) -> Arc<Link> {
    let cfg = LowerConfig {
        id: "lower".into(),
        url: Some(format!("http://{addr}").parse().unwrap()),
        token: "sk_0123456789abcdef".into(),
        link_kbps: 10_000,
        org: "up".into(),
        dial: Dial::Down,
        main_kbps: hierarchy::link::DEFAULT_MAIN_KBPS,
        sub_kbps: hierarchy::link::DEFAULT_SUB_KBPS,
    };
    Link::new(
        cfg.clone(),
        LowerClient::direct(&cfg.id, cfg.url.clone().unwrap(), &cfg.token).shared(),
    )
}

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl CatalogSink for Seen {
    fn added(&self, _: &Arc<Link>, cameras: Vec<RemoteCamera>) {
        self.0.lock().unwrap().extend(cameras.into_iter().map(|c| c.id));
    }
    fn removed(&self, _: &Arc<Link>, _: Vec<String>) {}
    fn status(&self, _: &Arc<Link>, _: &str, _: &str, _: Option<String>) {}
    fn intact(&self, _: &Arc<Link>, _: &str, _: Option<String>) {}
}

async fn down_reason(link: &Arc<Link>, limit: Duration) -> String {
    let t = Instant::now();
    loop {
        if let LinkState::Down { reason, .. } = link.state() {
            return reason;
        }
        assert!(t.elapsed() < limit, "the link is not down: {:?}", link.state());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn malformed_huge_and_silent_listings_mark_the_link_down_with_the_reason() {
    for (mode, want, limit) in [
        (Mode::Malformed, "not JSON", 5),
        (Mode::Huge, "larger than", 20),
        (Mode::Silent, "silent for", 20),
    ] {
        let link = link_to(fake_lower(mode).await);
        let seen = Arc::new(Seen::default());
        let task = hierarchy::sync::spawn_sync(
            link.clone(),
            seen.clone(),
            Duration::from_secs(30),
            Duration::from_secs(1),
        );
        let reason = down_reason(&link, Duration::from_secs(limit)).await;
        assert!(reason.contains(want) && reason.contains("lower node lower"), "{reason}");
        assert!(seen.0.lock().unwrap().is_empty());
        task.abort();
    }
}

#[tokio::test]
async fn hostile_entries_are_left_out_and_the_rest_adopted() {
    let link = link_to(fake_lower(Mode::Hostile).await);
    let seen = Arc::new(Seen::default());
    let task = hierarchy::sync::spawn_sync(
        link.clone(),
        seen.clone(),
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    let t = Instant::now();
    while seen.0.lock().unwrap().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*seen.0.lock().unwrap(), ["good"]);
    assert!(matches!(link.state(), LinkState::Up { .. }));
    task.abort();
}

#[tokio::test]
async fn the_lower_node_s_error_is_passed_on_without_its_control_characters() {
    let link = link_to(fake_lower(Mode::Malformed).await);
    let e = link
        .client()
        .json(Call::get("/api/v1/cameras/x/recordings", None))
        .await
        .unwrap_err();
    match &e {
        ClientError::Status {
            status, code, message, ..
        } => {
            assert_eq!((*status, code.as_str()), (404, "not_found"));
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
        other => panic!("{other:?}"),
    }
    // And nothing outside the API is ever asked for.
    assert!(link.client().json(Call::get("/etc/passwd", None)).await.is_err());
}

#[derive(Default)]
struct Frames(Mutex<usize>);

impl FrameSink for Frames {
    fn frame(&self, _: Frame) {
        *self.0.lock().unwrap() += 1;
    }
    fn end_of_stream(&self, _: &StreamId) {}
}

#[tokio::test]
async fn garbage_instead_of_video_is_an_error_in_health_and_no_frame() {
    let link = link_to(fake_lower(Mode::Garbage).await);
    let source = RemoteSource {
        link: link.clone(),
        stream: StreamId::main("x"),
        watchdog: Duration::from_secs(2),
        retry: Retry::default(),
        max_frame_bytes: 1 << 20,
    };
    let sink = Arc::new(Frames::default());
    let health = Arc::new(SourceHealth::default());
    let h = source.spawn(sink.clone(), health.clone());
    let t = Instant::now();
    let err = loop {
        if let Some(e) = health.snapshot().last_error {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(err.contains("larger than") && err.contains("camera x"), "{err}");
    assert_eq!(*sink.0.lock().unwrap(), 0);
    h.stop().await;
    source.stopped();
    assert_eq!(link.usage().2, 0, "the pull still counts against the link");
}
