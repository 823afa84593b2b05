//! A GB/T 28181 channel as a source: INVITE the device through the SIP server, receive its
//! PS over RTP (UDP, or TCP with the device connecting to us or us to it), deliver frames, BYE
//! when stopped; retried with backoff like an RTSP pull.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gb28181::platform::{CallId, Event};
use gb28181::sdp::{Answer, MediaTransport, Offer, SessionKind, SsrcAllocator};
use gb28181::server::{SipServer, next_event};
use media::{StreamId, WallTime};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::deliver::Delivery;
use crate::ps_rtp::{EsFramer, PsRtpReceiver, PtsUnwrapper, TcpDeframer};
use crate::supervisor::{self, Ended, Retry, SourceHandle};
use crate::{FrameSink, SourceHealth};

/// How long media is still read after the session's signalling ended.
const END_DRAIN: Duration = Duration::from_secs(1);

/// How to pull one GB28181 channel.
#[derive(Clone, Debug)]
pub struct GbSourceConfig {
    /// The stream it feeds (camera id = channel id).
    pub stream: StreamId,
    /// The device (or NVR) the channel belongs to.
    pub device: String,
    /// The channel id to INVITE.
    pub channel: String,
    /// Our platform id (for the SDP `o=`).
    pub own_id: String,
    /// Our domain (for `y=` SSRCs).
    pub domain: String,
    /// Media transport.
    pub transport: MediaTransport,
    /// Live, or a device recording played back or downloaded.
    pub kind: SessionKind,
    /// A playback's speed, asked with MANSRTSP `PLAY Scale:` once it is answered.
    pub scale: Option<f64>,
    /// The address we receive media on (put in the offer's `c=`).
    pub media_ip: IpAddr,
    /// No frames for this long ends the session.
    pub watchdog: Duration,
    /// How long the INVITE may take to be answered.
    pub invite_timeout: Duration,
    /// Reconnect delays.
    pub retry: Retry,
    /// Frames above this size are dropped as corrupt.
    pub max_frame_bytes: usize,
}

/// Why a GB28181 session ended.
#[derive(Debug, thiserror::Error)]
pub enum GbError {
    /// The device is not registered.
    #[error(
        "camera {camera}: GB28181 device {device} is not registered: check that it points at this platform (id, domain, address, password)"
    )]
    NotRegistered {
        /// Camera id.
        camera: String,
        /// Device id.
        device: String,
    },
    /// The INVITE failed.
    #[error("camera {camera}: device {device} refused the live INVITE: {reason}")]
    Refused {
        /// Camera id.
        camera: String,
        /// Device id.
        device: String,
        /// What it said.
        reason: String,
    },
    /// No media arrived.
    #[error("camera {camera}: no video from device {device} for {secs:.1} s ({what})")]
    Stalled {
        /// Camera id.
        camera: String,
        /// Device id.
        device: String,
        /// Seconds.
        secs: f64,
        /// Which stage.
        what: &'static str,
    },
    /// The device or platform ended the call.
    #[error("camera {camera}: the media session with device {device} ended: {reason}")]
    Ended {
        /// Camera id.
        camera: String,
        /// Device id.
        device: String,
        /// Why.
        reason: String,
    },
    /// A media socket failed.
    #[error("camera {camera}: media socket: {detail}")]
    Io {
        /// Camera id.
        camera: String,
        /// What failed.
        detail: String,
    },
}

/// A GB28181 channel as a [`supervisor::Session`]: each session is one INVITE, hung up in
/// [`supervisor::Session::close`] however it ended.
pub struct GbSession {
    cfg: GbSourceConfig,
    sip: Arc<SipServer>,
    call: Option<CallId>,
}

impl GbSession {
    /// A session of `cfg`'s channel through `sip`.
    pub fn new(cfg: GbSourceConfig, sip: Arc<SipServer>) -> GbSession {
        GbSession { cfg, sip, call: None }
    }
}

impl supervisor::Session for GbSession {
    type Error = GbError;

    fn stream(&self) -> &StreamId {
        &self.cfg.stream
    }

    fn span(&self) -> tracing::Span {
        info_span!("camera", id = self.cfg.stream.camera(), gb_device = %self.cfg.device)
    }

    fn retry(&self) -> Retry {
        self.cfg.retry
    }

    async fn run(&mut self, sink: &dyn FrameSink, health: &SourceHealth) -> Ended<GbError> {
        let (delivered, error) = session(&self.cfg, &self.sip, sink, health, &mut self.call).await;
        Ended { delivered, error }
    }

    async fn close(&mut self) {
        if let Some(c) = self.call.take() {
            self.sip.hangup(c).await;
        }
    }
}

/// Starts supervising a GB28181 channel that delivers to `sink`, reporting into `health`.
pub fn spawn_gb(
    cfg: GbSourceConfig,
    sip: Arc<SipServer>,
    sink: Arc<dyn FrameSink>,
    health: Arc<SourceHealth>,
) -> SourceHandle {
    supervisor::spawn(GbSession::new(cfg, sip), sink, health)
}

/// SSRC counters are per node: a shared allocator keeps concurrent sessions apart.
fn next_ssrc(domain: &str, history: bool) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut a = SsrcAllocator::new(domain);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 9999;
    for _ in 0..n {
        a.allocate(history);
    }
    a.allocate(history)
}

/// Runs one session (a device playback or download): frames to `sink` until the device says
/// the file is done (MediaStatus 121, which hangs up), hangs up, the watchdog fires or
/// `cancel` (the viewer left). The call is always hung up.
pub async fn run_once(
    cfg: GbSourceConfig,
    sip: Arc<SipServer>,
    sink: Arc<dyn FrameSink>,
    cancel: CancellationToken,
) -> Result<(), GbError> {
    use supervisor::Session;
    let health = SourceHealth::default();
    let mut session = GbSession::new(cfg, sip);
    let result = tokio::select! {
        _ = cancel.cancelled() => None,
        r = session.run(sink.as_ref(), &health) => Some(r.error),
    };
    session.close().await;
    sink.end_of_stream(session.stream());
    match result {
        None | Some(GbError::Ended { .. }) => Ok(()),
        Some(e) => Err(e),
    }
}

enum Media {
    Udp(UdpSocket),
    Passive(TcpListener),
    Active,
}

async fn wait_call(events: &mut broadcast::Receiver<Event>, call: CallId) -> Result<Answer, String> {
    next_event(events, |e| match e {
        Event::CallAnswered { call: c, answer } if c == call => Some(Ok(answer)),
        Event::CallFailed { call: c, reason, .. } | Event::CallEnded { call: c, reason } if c == call => {
            Some(Err(reason))
        }
        _ => None,
    })
    .await
    .unwrap_or_else(|| Err("the SIP server stopped".into()))
}

async fn call_ended(mut events: broadcast::Receiver<Event>, call: CallId) -> String {
    next_event(&mut events, |e| match e {
        Event::CallEnded { call: c, reason } if c == call => Some(reason),
        _ => None,
    })
    .await
    .unwrap_or_else(|| "the SIP server stopped".into())
}

async fn session(
    cfg: &GbSourceConfig,
    sip: &SipServer,
    sink: &dyn FrameSink,
    health: &SourceHealth,
    call_out: &mut Option<CallId>,
) -> (bool, GbError) {
    let camera = cfg.stream.camera().to_owned();
    let io = |e: std::io::Error| GbError::Io {
        camera: camera.clone(),
        detail: e.to_string(),
    };
    let bind = SocketAddr::new(cfg.media_ip, 0);
    let media = match cfg.transport {
        MediaTransport::Udp => UdpSocket::bind(bind).await.map(Media::Udp),
        MediaTransport::TcpPassive => TcpListener::bind(bind).await.map(Media::Passive),
        MediaTransport::TcpActive => Ok(Media::Active),
    };
    let media = match media {
        Ok(m) => m,
        Err(e) => return (false, io(e)),
    };
    let port = match &media {
        Media::Udp(s) => s.local_addr().map(|a| a.port()),
        Media::Passive(l) => l.local_addr().map(|a| a.port()),
        Media::Active => Ok(9),
    };
    let port = match port {
        Ok(p) => p,
        Err(e) => return (false, io(e)),
    };
    let offer = Offer {
        own_id: cfg.own_id.clone(),
        channel: cfg.channel.clone(),
        ip: cfg.media_ip,
        port,
        transport: cfg.transport,
        kind: cfg.kind,
        ssrc: next_ssrc(&cfg.domain, !matches!(cfg.kind, SessionKind::Play)),
    };
    let mut events = sip.subscribe();
    let call = match sip.invite(&cfg.device, offer).await {
        Ok(c) => c,
        Err(_) => {
            return (
                false,
                GbError::NotRegistered {
                    camera,
                    device: cfg.device.clone(),
                },
            );
        }
    };
    *call_out = Some(call);
    let answer = match tokio::time::timeout(
        cfg.invite_timeout + Duration::from_secs(2),
        wait_call(&mut events, call),
    )
    .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(reason)) => {
            *call_out = None;
            return (
                false,
                GbError::Refused {
                    camera,
                    device: cfg.device.clone(),
                    reason,
                },
            );
        }
        Err(_) => {
            return (
                false,
                GbError::Refused {
                    camera,
                    device: cfg.device.clone(),
                    reason: "no answer".into(),
                },
            );
        }
    };
    info!(peer = %SocketAddr::new(answer.ip, answer.port), ssrc = ?answer.ssrc, transport = ?cfg.transport, "camera {camera}: GB28181 session answered");
    health.session_started();
    if let (Some(scale), SessionKind::Playback { .. }) = (cfg.scale, cfg.kind) {
        sip.info(call, gb28181::mansrtsp::play(1, Some(scale), None)).await;
    }
    let peer = format!("{}:{}", answer.ip, answer.port);
    let mut delivery = Delivery::new(&cfg.stream, peer, sink, health, cfg.max_frame_bytes);
    if let SessionKind::Playback { start, .. } | SessionKind::Download { start, .. } = cfg.kind {
        delivery = delivery.recording_from(WallTime::from_micros(start.saturating_mul(1_000_000)));
    }
    let ended = call_ended(sip.subscribe(), call);
    tokio::pin!(ended);
    let stalled = |what| GbError::Stalled {
        camera: camera.clone(),
        device: cfg.device.clone(),
        secs: cfg.watchdog.as_secs_f64(),
        what,
    };
    let result = {
        let receiving = receive(cfg, media, &answer, &mut delivery);
        tokio::pin!(receiving);
        tokio::select! {
        reason = &mut ended => {
            *call_out = None;
            // The signalling ended (a playback's MediaStatus 121, a BYE) while the last media
            // may still be in flight on another path: take what arrives within a moment.
            let _ = tokio::time::timeout(END_DRAIN, &mut receiving).await;
            GbError::Ended { camera: camera.clone(), device: cfg.device.clone(), reason }
        }
        e = &mut receiving => match e {
            ReceiveEnd::Stalled(what) => stalled(what),
            ReceiveEnd::Io(e) => io(e),
        },
        }
    };
    (delivery.delivered, result)
}

enum ReceiveEnd {
    Stalled(&'static str),
    Io(std::io::Error),
}

/// Frames out of packets, through the receiver and framer; `true` when a frame was delivered.
fn drain(rx: &mut PsRtpReceiver, framer: &mut EsFramer, pts: &mut PtsUnwrapper, delivery: &mut Delivery<'_>) -> bool {
    let mut any = false;
    while let Some(f) = rx.poll() {
        let arrival = WallTime::now();
        match framer.frame(&f) {
            Ok(Some(s)) => {
                if s.new_params || !delivery.has_params() {
                    delivery.set_params(s.params.clone());
                }
                let Some(p) = f.pts else { continue };
                delivery.deliver(pts.unwrap(p), s.key, s.data, arrival);
                any = true;
            }
            Ok(None) => {}
            Err(e) => {
                warn!("GB28181 stream: {e}; waiting for the next key frame");
                delivery.lost();
            }
        }
    }
    any
}

async fn receive(cfg: &GbSourceConfig, media: Media, answer: &Answer, delivery: &mut Delivery<'_>) -> ReceiveEnd {
    let mut rx = PsRtpReceiver::new();
    let mut framer = EsFramer::new();
    let mut pts = PtsUnwrapper::default();
    let mut buf = vec![0u8; 65_536];
    let watchdog = cfg.watchdog;
    match media {
        Media::Udp(sock) => loop {
            match tokio::time::timeout(watchdog, sock.recv_from(&mut buf)).await {
                Err(_) => return ReceiveEnd::Stalled("no RTP over UDP"),
                Ok(Err(e)) => return ReceiveEnd::Io(e),
                Ok(Ok((n, _))) => {
                    rx.push_packet(&buf[..n]);
                    drain(&mut rx, &mut framer, &mut pts, delivery);
                }
            }
        },
        Media::Passive(listener) => {
            let stream = match tokio::time::timeout(watchdog, listener.accept()).await {
                Err(_) => return ReceiveEnd::Stalled("the device did not connect for TCP media"),
                Ok(Err(e)) => return ReceiveEnd::Io(e),
                Ok(Ok((s, _))) => s,
            };
            read_tcp(stream, watchdog, &mut rx, &mut framer, &mut pts, delivery, &mut buf).await
        }
        Media::Active => {
            let addr = SocketAddr::new(answer.ip, answer.port);
            // The device may need a moment to listen; retry as Annex D asks (≥ 3 times, ≥ 1 s apart).
            let mut stream = None;
            for _ in 0..3 {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
            let Some(stream) = stream else {
                return ReceiveEnd::Stalled("cannot connect to the device for TCP media");
            };
            read_tcp(stream, watchdog, &mut rx, &mut framer, &mut pts, delivery, &mut buf).await
        }
    }
}

async fn read_tcp(
    mut stream: TcpStream,
    watchdog: Duration,
    rx: &mut PsRtpReceiver,
    framer: &mut EsFramer,
    pts: &mut PtsUnwrapper,
    delivery: &mut Delivery<'_>,
    buf: &mut [u8],
) -> ReceiveEnd {
    let _ = stream.set_nodelay(true);
    let mut deframer = TcpDeframer::default();
    let mut last_frame = tokio::time::Instant::now();
    loop {
        let n = match tokio::time::timeout(watchdog, stream.read(buf)).await {
            Err(_) => return ReceiveEnd::Stalled("no RTP over TCP"),
            Ok(Err(e)) => return ReceiveEnd::Io(e),
            Ok(Ok(0)) => return ReceiveEnd::Io(std::io::Error::other("the device closed the media connection")),
            Ok(Ok(n)) => n,
        };
        deframer.push(&buf[..n]);
        while let Some(p) = deframer.next_packet() {
            rx.push_packet(&p);
        }
        if drain(rx, framer, pts, delivery) {
            last_frame = tokio::time::Instant::now();
        } else if last_frame.elapsed() > watchdog {
            return ReceiveEnd::Stalled("RTP arrives but no frame could be decoded from it");
        }
    }
}
