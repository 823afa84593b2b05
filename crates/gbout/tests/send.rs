//! Sessions toward a stand-in upper on loopback: what arrives (UDP datagrams, or RFC 4571
//! framed TCP either way) is read back as RTP, demuxed as PS, and compared with what was sent;
//! recorded sessions keep the pace asked (download speed, Scale, pause, seek).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use camsim::BuiltinFixture;
use gb28181::invitation::UpperMedia;
use gbout::{Control, Ended, Prepared, Stats};
use hub::{ChannelLimits, Hub, Output, StreamPolicy};
use media::ps::{PsDemuxer, PsFrame};
use media::{Frame, StreamId, WallTime};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SSRC: u32 = 0x05F5_E101;

fn frames(n: usize) -> Vec<Frame> {
    BuiltinFixture::H264_240p.load().frames(
        &StreamId::main("cam"),
        n,
        0,
        WallTime::from_micros(1_795_420_800_000_000),
    )
}

/// Reads RTP packets (checking payload type and SSRC) into PS frames.
struct Receiver {
    demux: PsDemuxer,
    got: Vec<PsFrame>,
    last_seq: Option<u16>,
}

impl Receiver {
    fn new() -> Receiver {
        Receiver {
            demux: PsDemuxer::new(),
            got: Vec::new(),
            last_seq: None,
        }
    }

    fn packet(&mut self, p: &[u8]) {
        assert!(p.len() > 12);
        assert_eq!(p[1] & 0x7F, 96, "payload type 96");
        assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), SSRC);
        let seq = u16::from_be_bytes([p[2], p[3]]);
        if let Some(l) = self.last_seq {
            assert_eq!(seq, l.wrapping_add(1), "no packet lost or reordered");
        }
        self.last_seq = Some(seq);
        self.demux.push(&p[12..]);
        if p[1] & 0x80 != 0 {
            self.demux.end_of_frame();
        }
        self.got.extend(std::iter::from_fn(|| self.demux.poll()));
    }
}

async fn read_udp(sock: UdpSocket, want: usize) -> Vec<PsFrame> {
    let mut r = Receiver::new();
    let mut buf = vec![0u8; 2048];
    while r.got.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
            .await
            .expect("packets keep coming")
            .unwrap();
        r.packet(&buf[..n]);
    }
    r.got
}

async fn read_tcp(mut s: TcpStream, want: usize) -> Vec<PsFrame> {
    let mut r = Receiver::new();
    while r.got.len() < want {
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
            .await
            .expect("packets keep coming")
            .unwrap();
        let mut p = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut p).await.unwrap();
        r.packet(&p);
    }
    r.got
}

fn hub() -> Arc<Hub> {
    Hub::new(
        [(
            StreamId::main("cam"),
            StreamPolicy {
                pinned: false,
                idle: Duration::from_secs(5),
            },
        )],
        ChannelLimits::default(),
        10,
        Arc::new(|_s: &StreamId, _a| {}),
    )
}

/// Sends 60 live frames through `media` and checks they all arrive as sent.
async fn live_over(media: UpperMedia, receive: impl std::future::Future<Output = Vec<PsFrame>> + Send + 'static) {
    let hub = hub();
    let viewer = hub.watch(&StreamId::main("cam"), Output::Gb28181).unwrap();
    let prepared = Prepared::bind(media, "127.0.0.1".parse().unwrap()).await.unwrap();
    assert_ne!(prepared.port(), 0);
    let rx = tokio::spawn(receive);
    let sink = prepared.open(Duration::from_secs(5)).await.unwrap();
    let stop = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let task = tokio::spawn(gbout::live(sink, viewer, SSRC, stop.clone(), stats.clone()));
    let ch = hub.channel(&StreamId::main("cam")).unwrap();
    let sent = frames(60);
    for f in &sent {
        ch.publish(f);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = rx.await.unwrap();
    assert_eq!(got.len(), 60);
    for (g, s) in got.iter().zip(&sent) {
        let mut annexb = Vec::new();
        media::ps_mux::write_annexb(s, &mut annexb);
        assert_eq!(&g.data[..], &annexb[..]);
        assert_eq!(g.key, s.key);
        assert_eq!(g.pts, Some((s.media_time - sent[0].media_time) as u64));
    }
    assert_eq!(stats.frames.load(std::sync::atomic::Ordering::Relaxed), 60);
    stop.cancel();
    assert!(matches!(task.await.unwrap(), Ended::Stopped));
}

#[tokio::test]
async fn live_over_udp() {
    let upper = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dest = upper.local_addr().unwrap();
    live_over(UpperMedia::Udp(dest), read_udp(upper, 60)).await;
}

#[tokio::test]
async fn live_over_tcp_with_us_connecting() {
    let upper = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = upper.local_addr().unwrap();
    live_over(UpperMedia::WeConnect(dest), async move {
        let (s, _) = upper.accept().await.unwrap();
        read_tcp(s, 60).await
    })
    .await;
}

#[tokio::test]
async fn live_over_tcp_with_the_upper_connecting() {
    let prepared = Prepared::bind(UpperMedia::TheyConnect, "127.0.0.1".parse().unwrap())
        .await
        .unwrap();
    let to: SocketAddr = format!("127.0.0.1:{}", prepared.port()).parse().unwrap();
    let rx = tokio::spawn(async move { read_tcp(TcpStream::connect(to).await.unwrap(), 30).await });
    let sink = prepared.open(Duration::from_secs(5)).await.unwrap();
    let (tx, frames_rx) = mpsc::channel(100);
    for f in frames(30) {
        tx.send(f).await.unwrap();
    }
    drop(tx);
    let (_c, controls) = mpsc::channel(1);
    let mut once = Some(frames_rx);
    let ended = gbout::recorded(
        sink,
        move |_| once.take().unwrap_or_else(|| mpsc::channel(1).1),
        16.0,
        controls,
        SSRC,
        CancellationToken::new(),
        Arc::new(Stats::default()),
    )
    .await;
    assert!(matches!(ended, Ended::Complete));
    assert_eq!(rx.await.unwrap().len(), 30);
}

#[tokio::test]
async fn a_live_session_ends_when_its_camera_goes_away_and_an_upper_that_never_connects_is_an_error() {
    let hub = hub();
    let viewer = hub.watch(&StreamId::main("cam"), Output::Gb28181).unwrap();
    let upper = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sink = Prepared::bind(
        UpperMedia::Udp(upper.local_addr().unwrap()),
        "127.0.0.1".parse().unwrap(),
    )
    .await
    .unwrap()
    .open(Duration::from_secs(1))
    .await
    .unwrap();
    let task = tokio::spawn(gbout::live(
        sink,
        viewer,
        SSRC,
        CancellationToken::new(),
        Arc::new(Stats::default()),
    ));
    hub.channel(&StreamId::main("cam")).unwrap().close_viewers();
    assert!(matches!(task.await.unwrap(), Ended::Upstream));
    let p = Prepared::bind(UpperMedia::TheyConnect, "127.0.0.1".parse().unwrap())
        .await
        .unwrap();
    let e = p.open(Duration::from_millis(200)).await.err().unwrap().to_string();
    assert!(e.contains("did not connect"), "{e}");
    // Nobody listens where we should connect.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let p = Prepared::bind(UpperMedia::WeConnect(closed), "127.0.0.1".parse().unwrap())
        .await
        .unwrap();
    let e = p.open(Duration::from_secs(1)).await.err().unwrap().to_string();
    assert!(e.contains(&closed.to_string()), "{e}");
}

/// A recorded session of 50 frames (2 s of video) to a UDP upper: how long it takes, and
/// what arrives.
async fn recorded_run(speed: f64, controls: Vec<(Duration, Control)>) -> (Duration, Vec<PsFrame>, Vec<f64>) {
    let upper = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sink = Prepared::bind(
        UpperMedia::Udp(upper.local_addr().unwrap()),
        "127.0.0.1".parse().unwrap(),
    )
    .await
    .unwrap()
    .open(Duration::from_secs(1))
    .await
    .unwrap();
    let all = frames(50);
    let opened = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o = opened.clone();
    let open = move |offset: f64| {
        o.lock().unwrap().push(offset);
        let (tx, rx) = mpsc::channel(8);
        let from = all
            .iter()
            .position(|f| (f.media_time - all[0].media_time) as f64 / 90_000.0 >= offset)
            .unwrap_or(all.len());
        let rest: Vec<Frame> = all[from..].to_vec();
        tokio::spawn(async move {
            for f in rest {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
        });
        rx
    };
    let (ctx, crx) = mpsc::channel(8);
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for (at, c) in controls {
            tokio::time::sleep_until(start + at).await;
            let _ = ctx.send(c).await;
        }
    });
    let t = Instant::now();
    let reader = tokio::spawn(async move {
        let mut r = Receiver::new();
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1500), upper.recv(&mut buf)).await {
            r.packet(&buf[..n]);
        }
        r.demux.finish();
        r.got.extend(std::iter::from_fn(|| r.demux.poll()));
        r.got
    });
    let ended = gbout::recorded(
        sink,
        open,
        speed,
        crx,
        SSRC,
        CancellationToken::new(),
        Arc::new(Stats::default()),
    )
    .await;
    let took = t.elapsed();
    assert!(matches!(ended, Ended::Complete));
    let got = reader.await.unwrap();
    let offsets = opened.lock().unwrap().clone();
    (took, got, offsets)
}

#[tokio::test]
async fn recorded_frames_keep_the_pace_asked() {
    // 2 s of video at 4×: about half a second.
    let (took, got, _) = recorded_run(4.0, vec![]).await;
    assert_eq!(got.len(), 50);
    assert!((0.4..1.0).contains(&took.as_secs_f64()), "{took:?}");
    // At 1×, switched to 8× a quarter second in: well under the 2 s.
    let (took, got, _) = recorded_run(1.0, vec![(Duration::from_millis(250), Control::Scale(8.0))]).await;
    assert_eq!(got.len(), 50);
    assert!((0.35..1.2).contains(&took.as_secs_f64()), "{took:?}");
    // Paused for a second at 8×: the pause shows.
    let (took, _, _) = recorded_run(
        8.0,
        vec![
            (Duration::from_millis(50), Control::Pause),
            (Duration::from_millis(1050), Control::Resume),
        ],
    )
    .await;
    assert!(took.as_secs_f64() > 1.1, "{took:?}");
}

#[tokio::test]
async fn a_seek_reopens_the_source_at_the_offset() {
    let (_, got, offsets) = recorded_run(2.0, vec![(Duration::from_millis(100), Control::Seek(1.0))]).await;
    assert_eq!(offsets, [0.0, 1.0]);
    // The frames from 1 s on arrive after the seek: the last 25, whatever came before.
    assert!(got.len() >= 25 && got.len() < 50, "{}", got.len());
    assert!(got.iter().rev().take(25).all(|f| f.pts.is_some()));
}
