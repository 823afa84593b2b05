//! The re-serve against retina as the RTSP client, over real loopback sockets: a hub channel
//! fed with the camsim fixture at 25 fps, served over TCP and UDP, with and without credentials.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use hub::{ChannelLimits, Hub, StreamPolicy};
use media::{StreamId, WallTime};
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::CodecItem;
use rtspd::{Authorize, RtspConfig, RtspServer};

struct Creds;

/// Viewings started and ended, as the server reported them to [`Authorize::playing`].
static PLAYS: AtomicUsize = AtomicUsize::new(0);
static ENDS: AtomicUsize = AtomicUsize::new(0);

struct Ended;

impl Drop for Ended {
    fn drop(&mut self) {
        ENDS.fetch_add(1, Ordering::SeqCst);
    }
}

impl Authorize for Creds {
    fn authorize(
        &self,
        stream: &StreamId,
        token: Option<&str>,
        basic: Option<(&str, &str)>,
        _peer: std::net::SocketAddr,
    ) -> Option<String> {
        if token == Some(&format!("ok-{}", stream.camera())) {
            Some("token".into())
        } else if basic == Some(("viewer", "secret")) {
            Some("viewer".into())
        } else {
            None
        }
    }

    fn playing(
        &self,
        _stream: &StreamId,
        who: &str,
        _peer: std::net::SocketAddr,
    ) -> futures::future::BoxFuture<'static, Option<Box<dyn Send>>> {
        assert!(who == "token" || who == "viewer", "{who}");
        PLAYS.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Some(Box::new(Ended) as Box<dyn Send>) })
    }
}

/// A hub with `cam0` fed at real time by the 240p H.264 fixture until the runtime ends.
fn fed_hub() -> Arc<Hub> {
    let hub = Hub::new(
        [(
            StreamId::main("cam0"),
            StreamPolicy {
                pinned: true,
                idle: Duration::ZERO,
            },
        )],
        ChannelLimits::default(),
        100,
        Arc::new(|_s: &StreamId, _a| {}),
    );
    let ch = hub.channel(&StreamId::main("cam0")).unwrap().clone();
    tokio::spawn(async move {
        let frames =
            camsim::BuiltinFixture::H264_240p
                .load()
                .frames(&StreamId::main("cam0"), 100_000, 0, WallTime::now());
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        for f in frames {
            tick.tick().await;
            ch.publish(&f);
        }
    });
    hub
}

async fn pull(
    url: &str,
    transport: Transport,
    creds: Option<(&str, &str)>,
    frames: usize,
) -> Result<Vec<(i64, bool)>, retina::Error> {
    let url = url::Url::parse(url).unwrap();
    let opts = SessionOptions::default().creds(creds.map(|(u, p)| retina::client::Credentials {
        username: u.into(),
        password: p.into(),
    }));
    let mut session = Session::describe(url, opts).await?;
    session.setup(0, SetupOptions::default().transport(transport)).await?;
    let mut demuxed = session.play(PlayOptions::default()).await?.demuxed()?;
    let mut got = Vec::new();
    while got.len() < frames {
        let item = tokio::time::timeout(Duration::from_secs(5), demuxed.next())
            .await
            .expect("a frame within 5 s")
            .expect("stream continues")?;
        if let CodecItem::VideoFrame(f) = item {
            got.push((f.timestamp().elapsed(), f.is_random_access_point()));
        }
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retina_reads_the_reserved_stream_over_tcp_and_udp() {
    let hub = fed_hub();
    let server = RtspServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        hub.clone(),
        Arc::new(Creds),
        RtspConfig {
            start_timeout: Duration::from_secs(3),
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let with_token = format!("rtsp://{addr}/cameras/cam0?token=ok-cam0");
    let plain = format!("rtsp://{addr}/cameras/cam0");
    for (url, transport, creds) in [
        (&with_token, Transport::Tcp(Default::default()), None),
        (&plain, Transport::Udp(Default::default()), Some(("viewer", "secret"))),
    ] {
        let got = pull(url, transport, creds, 60).await.unwrap();
        assert!(got[0].1, "starts on a key frame");
        for w in got.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 3600, "timestamps advance one frame at a time");
        }
        let keys = got.iter().filter(|g| g.1).count();
        assert!((2..=3).contains(&keys), "a key frame a second: {keys}");
    }
    // Refused without credentials, with wrong ones, with another camera's token.
    for (url, creds) in [
        (plain.clone(), None),
        (plain.clone(), Some(("viewer", "wrong"))),
        (format!("rtsp://{addr}/cameras/cam0?token=ok-cam1"), None),
    ] {
        let err = pull(&url, Transport::Tcp(Default::default()), creds, 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
    // An unknown camera is a 404.
    let err = pull(
        &format!("rtsp://{addr}/cameras/nope?token=ok-nope"),
        Transport::Tcp(Default::default()),
        None,
        1,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    server.stop().await;
    // Each of the two viewings was reported playing once and ended once (the guard dropped
    // with its connection); refused requests never played.
    assert_eq!(PLAYS.load(Ordering::SeqCst), 2);
    assert_eq!(ENDS.load(Ordering::SeqCst), 2);
}
