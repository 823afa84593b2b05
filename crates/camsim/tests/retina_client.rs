//! camsim against a real RTSP client: retina, over real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use camsim::{BuiltinFixture, CameraSpec, Cameras, Camsim};
use futures::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, ParametersRef};

struct Received {
    timestamps: Vec<i64>,
    keys: Vec<bool>,
    dims: Vec<(u32, u32)>,
}

async fn pull(
    url: &str,
    transport: Transport,
    frames: usize,
    creds: Option<(&str, &str)>,
) -> Result<Received, retina::Error> {
    let url = url::Url::parse(url).unwrap();
    let opts = SessionOptions::default().creds(creds.map(|(u, p)| retina::client::Credentials {
        username: u.into(),
        password: p.into(),
    }));
    let mut session = Session::describe(url, opts).await?;
    session.setup(0, SetupOptions::default().transport(transport)).await?;
    let mut demuxed = session.play(PlayOptions::default()).await?.demuxed()?;
    let mut r = Received {
        timestamps: vec![],
        keys: vec![],
        dims: vec![],
    };
    while r.timestamps.len() < frames {
        let item = tokio::time::timeout(Duration::from_secs(5), demuxed.next())
            .await
            .expect("a frame within 5 s")
            .expect("stream continues")?;
        if let CodecItem::VideoFrame(f) = item {
            r.timestamps.push(f.timestamp().elapsed());
            r.keys.push(f.is_random_access_point());
            if let Some(ParametersRef::Video(v)) = demuxed.streams()[0].parameters() {
                r.dims.push(v.pixel_dimensions());
            }
        }
    }
    Ok(r)
}

async fn start(specs: Vec<CameraSpec>) -> (Camsim, Cameras) {
    let cams = Cameras::new(specs);
    let sim = Camsim::start("127.0.0.1:0".parse::<SocketAddr>().unwrap(), cams.clone())
        .await
        .unwrap();
    (sim, cams)
}

#[tokio::test]
async fn retina_reads_h264_and_h265_over_tcp_and_udp_with_advancing_timestamps() {
    let (sim, cams) = start(camsim::mixed_cameras(2, false)).await;
    for (path, transport) in [
        ("cam0", Transport::Tcp(Default::default())),
        ("cam1", Transport::Tcp(Default::default())),
        ("cam0", Transport::Udp(Default::default())),
    ] {
        // 110 frames: more than one loop of the 100-frame clip.
        let r = pull(&sim.url(path), transport, 110, None).await.unwrap();
        for w in r.timestamps.windows(2) {
            assert_eq!(w[1] - w[0], 3600, "{path}: timestamps advance one frame at a time");
        }
        let keys: Vec<usize> = r.keys.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect();
        assert_eq!(keys, vec![0, 25, 50, 75, 100], "{path}");
        assert!(r.dims.iter().all(|d| *d == (320, 240)));
    }
    let sessions = cams.get("cam0").unwrap().sessions();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s.frames >= 110));
    sim.stop().await;
}

#[tokio::test]
async fn switching_fixture_changes_resolution_at_a_key_frame() {
    let (sim, cams) = start(camsim::mixed_cameras(1, false)).await;
    let cam = cams.get("cam0").unwrap();
    let url = sim.url("cam0");
    let task = tokio::spawn(async move { pull(&url, Transport::Tcp(Default::default()), 40, None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cam.switch_fixture(BuiltinFixture::H264_1080p.load());
    let r = task.await.unwrap().unwrap();
    assert_eq!(r.dims.first(), Some(&(320, 240)));
    assert_eq!(r.dims.last(), Some(&(1920, 1080)));
    let switch = r.dims.iter().position(|d| *d == (1920, 1080)).unwrap();
    assert!(r.keys[switch], "the new resolution starts with a key frame");
    for w in r.timestamps.windows(2) {
        assert_eq!(w[1] - w[0], 3600);
    }
    sim.stop().await;
}

#[tokio::test]
async fn digest_auth_and_unknown_paths() {
    let mut spec = CameraSpec::new("secure", BuiltinFixture::H265_240p.load());
    spec.credentials = Some(("admin".into(), "s3cret".into()));
    let (sim, _cams) = start(vec![spec]).await;
    let url = sim.url("secure");
    let ok = pull(&url, Transport::Tcp(Default::default()), 5, Some(("admin", "s3cret"))).await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    let denied = pull(&url, Transport::Tcp(Default::default()), 5, Some(("admin", "wrong"))).await;
    assert_eq!(denied.err().and_then(|e| e.status_code()), Some(401));
    let none = pull(&url, Transport::Tcp(Default::default()), 5, None).await;
    assert_eq!(none.err().and_then(|e| e.status_code()), Some(401));
    let missing = pull(&sim.url("nope"), Transport::Tcp(Default::default()), 5, None).await;
    assert_eq!(missing.err().and_then(|e| e.status_code()), Some(404));
    sim.stop().await;
}

#[tokio::test]
async fn stall_keeps_the_socket_but_stops_frames() {
    let (sim, cams) = start(camsim::mixed_cameras(1, false)).await;
    let cam = cams.get("cam0").unwrap();
    let url = url::Url::parse(&sim.url("cam0")).unwrap();
    let mut session = Session::describe(url, SessionOptions::default()).await.unwrap();
    session.setup(0, SetupOptions::default()).await.unwrap();
    let mut demuxed = session.play(PlayOptions::default()).await.unwrap().demuxed().unwrap();
    demuxed.next().await.unwrap().unwrap();
    cam.stall();
    let sent = cam.frames_sent();
    // Drain what was in flight, then nothing more may arrive.
    let quiet = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if tokio::time::timeout(Duration::from_millis(300), demuxed.next())
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_ok(), "frames kept arriving after stall");
    assert!(cam.frames_sent() <= sent + 1);
    assert_eq!(cam.active_sessions(), 1, "the stalled session keeps its connection");
    cam.drop_connections();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cam.active_sessions(), 0);
    sim.stop().await;
}
