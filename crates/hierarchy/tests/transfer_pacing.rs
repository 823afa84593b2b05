//! A recorded transfer keeps the link within its budget however fast the lower node sends: it
//! borrows what the budget has spare (an idle link's whole budget) and slows to what it was
//! admitted at once a live pull takes the room. A fake lower node answers as fast as loopback
//! allows; the upper's link is 8 Mbit/s.

use std::time::Instant;

use futures::StreamExt;
use hierarchy::Link;
use hierarchy::client::LowerClient;
use hierarchy::config::{Dial, LowerConfig};
use hierarchy::recorded::{Recorded, RecordedRequest, fetch};
use media::StreamKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A lower node answering every request with `len` bytes at once.
async fn fast_lower(len: usize) -> std::net::SocketAddr {
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
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: {len}\r\n\r\n")
                            .as_bytes(),
                    )
                    .await;
                let _ = s.write_all(&vec![7u8; len]).await;
            });
        }
    });
    addr
}

fn link(addr: std::net::SocketAddr) -> std::sync::Arc<Link> {
    let cfg = LowerConfig {
        id: "community".into(),
        url: Some(format!("http://{addr}").parse().unwrap()),
        token: "sk_0123456789abcdef".into(),
        link_kbps: 8_000,
        org: "up".into(),
        dial: Dial::Down,
        main_kbps: 6_000,
        sub_kbps: 500,
    };
    Link::new(
        cfg.clone(),
        LowerClient::direct(&cfg.id, cfg.url.clone().unwrap(), &cfg.token).shared(),
    )
}

/// Fetches the whole answer, admitted at 1 Mbit/s: bytes and seconds taken.
async fn transfer(link: &std::sync::Arc<Link>) -> (usize, f64) {
    let t = Instant::now();
    let req = RecordedRequest {
        path: "/api/v1/cameras/cam/playback.mp4?start=a&end=b".into(),
        range: None,
        head: false,
        who: "op".into(),
        cacheable: false,
        kbps: 1_000,
        plays_for: None,
    };
    let Ok(Recorded::Streamed { mut body, .. }) = fetch(link, None, req).await else {
        panic!("not streamed");
    };
    let mut n = 0;
    while let Some(chunk) = body.next().await {
        n += chunk.unwrap().len();
    }
    (n, t.elapsed().as_secs_f64())
}

#[tokio::test]
async fn a_transfer_borrows_the_spare_budget_and_never_more() {
    // 3 MB on an idle 8 Mbit/s (1 MB/s) link: about 3 s, not the 24 s its own 1 Mbit/s
    // would take, nor the blink of loopback.
    let link = link(fast_lower(3_000_000).await);
    let (n, secs) = transfer(&link).await;
    assert_eq!(n, 3_000_000);
    assert!((2.5..5.0).contains(&secs), "{secs} s");
    assert_eq!(link.usage().2, 0, "the transfer is released when done");
}

#[tokio::test]
async fn a_live_pull_takes_the_room_and_the_transfer_slows_to_its_own_rate() {
    let link = link(fast_lower(400_000).await);
    // A 6 Mbit/s main stream is admitted: 1 Mbit/s spare on top of the transfer's own.
    assert_eq!(link.admit_live("cam", StreamKind::Main, "op"), Ok(StreamKind::Main));
    let (n, secs) = transfer(&link).await;
    assert_eq!(n, 400_000);
    // 400 kB at 2 Mbit/s (250 kB/s), less the first burst: ~1.35 s.
    assert!((1.1..3.0).contains(&secs), "{secs} s");
}
