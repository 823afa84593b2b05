//! The tokio side: accepting RTSP connections, answering requests with [`crate::proto`], and
//! sending a hub viewer's frames as RTP, interleaved or over UDP.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use hub::{Hub, JoinError, Output, Viewer};
use media::{Frame, StreamId};
use rtsp_types::{Method, Request, Response, StatusCode, headers};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::proto::{self, Parsed, Transport};

/// Decides whether a request may watch a stream (a media token from the URL, or `user:password`
/// from `Authorization: Basic`) and accounts for viewings. Given by the binary, which owns
/// users, grants, token keys and the audit log.
pub trait Authorize: Send + Sync + 'static {
    /// The caller's name if they may watch `stream` live, None otherwise.
    fn authorize(
        &self,
        stream: &StreamId,
        token: Option<&str>,
        basic: Option<(&str, &str)>,
        peer: SocketAddr,
    ) -> Option<String>;

    /// Called when `who` starts playing `stream`. The guard it resolves to is kept for the
    /// session's life and dropped when it ends, however it ends; None refuses the PLAY (503),
    /// e.g. when the viewing cannot be audited.
    fn playing(&self, stream: &StreamId, who: &str, peer: SocketAddr) -> BoxFuture<'static, Option<Box<dyn Send>>>;

    /// The stream `who` gets when asking for `stream`: itself, or (a camera of a lower node
    /// whose link has room only for it) the sub-stream; `Err` says why none (503).
    fn admit(&self, stream: &StreamId, _who: &str) -> Result<StreamId, String> {
        Ok(stream.clone())
    }
}

/// Settings of the re-serve.
#[derive(Clone, Copy, Debug)]
pub struct RtspConfig {
    /// How long DESCRIBE waits for the stream's first key frame.
    pub start_timeout: Duration,
}

/// A running RTSP re-serve.
pub struct RtspServer {
    local: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl RtspServer {
    /// Listens on `addr` and serves `hub`'s streams.
    pub async fn bind(
        addr: SocketAddr,
        hub: Arc<Hub>,
        auth: Arc<dyn Authorize>,
        config: RtspConfig,
    ) -> std::io::Result<RtspServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = Arc::new(Ctx {
            hub,
            auth,
            config,
            packets: Arc::default(),
        });
        tracker.spawn(crate::framing::accept_loop(
            listener,
            cancel.clone(),
            tracker.clone(),
            |peer| info_span!("rtsp", %peer),
            {
                let cancel = cancel.clone();
                move |stream, peer| serve(stream, peer, ctx.clone(), cancel.clone())
            },
        ));
        info!("RTSP re-serve listening on rtsp://{local}/cameras/{{id}}");
        Ok(RtspServer { local, cancel, tracker })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Closes the listener and every session, and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

struct Ctx {
    hub: Arc<Hub>,
    auth: Arc<dyn Authorize>,
    config: RtspConfig,
    packets: Arc<PacketCache>,
}

/// The RTP payloads of each stream's latest frame, so that a thousand viewers of a stream
/// packetize each frame once between them instead of once each. An entry keeps the frame's
/// payload alive, so its address cannot be reused by another frame while it is compared.
#[derive(Default)]
struct PacketCache(std::sync::Mutex<HashMap<StreamId, Packetized>>);

/// A frame's payload and its RTP payloads.
type Packetized = (Bytes, Arc<[Bytes]>);

impl PacketCache {
    fn payloads(&self, f: &Frame) -> Arc<[Bytes]> {
        let same = |a: &Bytes| a.as_ptr() == f.data.as_ptr() && a.len() == f.data.len();
        if let Some((data, p)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&f.stream)
            && same(data)
        {
            return p.clone();
        }
        let p: Arc<[Bytes]> = media::rtp::packetize(
            f.params.codec(),
            media::rtp::length_prefixed_nals(&f.data),
            media::rtp::MAX_PAYLOAD,
        )
        .into();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(f.stream.clone(), (f.data.clone(), p.clone()));
        p
    }
}

/// One connection's state between requests.
struct Conn {
    session: String,
    /// The stream chosen at DESCRIBE (or SETUP), its viewer and first frame.
    watching: Option<(StreamId, Viewer, Frame)>,
    transport: Option<(Transport, Option<Arc<UdpSocket>>)>,
    playing: Option<tokio::task::JoinHandle<()>>,
    /// The stream this connection has authenticated for. Later requests on the connection for
    /// that stream need no credentials again: a token in the DESCRIBE URL is not carried into
    /// the SETUP URL clients build from the SDP, and a password check costs an argon2id hash.
    allowed: Option<(StreamId, String)>,
    /// The audit guard of the playing session: dropped with the connection.
    viewing: Option<Box<dyn Send>>,
    local: SocketAddr,
    peer: SocketAddr,
}

async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>, cancel: CancellationToken) {
    let local = stream.local_addr().unwrap_or(peer);
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(Mutex::new(wr));
    let mut conn = Conn {
        session: format!("{:016X}", rand::random::<u64>()),
        watching: None,
        transport: None,
        playing: None,
        allowed: None,
        viewing: None,
        local,
        peer,
    };
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    'conn: loop {
        loop {
            match proto::parse_next(&mut buf) {
                Parsed::Request(req) => {
                    let (resp, close) = handle(&mut conn, &req, &ctx, &wr).await;
                    if write_response(&wr, resp).await.is_err() || close {
                        break 'conn;
                    }
                }
                Parsed::Ignored => {}
                Parsed::Incomplete => break,
                Parsed::Bad => {
                    let _ = write_response(&wr, proto::reply(StatusCode::BadRequest)).await;
                    break 'conn;
                }
            }
        }
        let n = tokio::select! {
            _ = cancel.cancelled() => break,
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    if let Some(p) = conn.playing.take() {
        p.abort();
    }
    drop(conn.viewing.take());
    debug!("connection closed");
}

async fn write_response(wr: &Mutex<OwnedWriteHalf>, resp: Response<Vec<u8>>) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    resp.write(&mut out).map_err(std::io::Error::other)?;
    wr.lock().await.write_all(&out).await
}

/// Answers one request; true if the connection must close after the response.
async fn handle(
    conn: &mut Conn,
    req: &Request<Vec<u8>>,
    ctx: &Ctx,
    wr: &Arc<Mutex<OwnedWriteHalf>>,
) -> (Response<Vec<u8>>, bool) {
    let cseq = req.header(&headers::CSEQ).map(|v| v.as_str().to_owned());
    let (mut resp, close) = respond(conn, req, ctx, wr).await;
    if let Some(c) = cseq {
        resp.insert_header(headers::CSEQ, c);
    }
    resp.insert_header(headers::SERVER, "sharpeye");
    (resp, close)
}

async fn respond(
    conn: &mut Conn,
    req: &Request<Vec<u8>>,
    ctx: &Ctx,
    wr: &Arc<Mutex<OwnedWriteHalf>>,
) -> (Response<Vec<u8>>, bool) {
    let status = |s| (proto::reply(s), false);
    match req.method() {
        Method::Options => {
            let r = rtsp_types::Response::builder(rtsp_types::Version::V1_0, StatusCode::Ok)
                .header(headers::PUBLIC, proto::PUBLIC)
                .build(Vec::new());
            return (r, false);
        }
        Method::Teardown => return (proto::reply(StatusCode::Ok), true),
        Method::GetParameter => {
            let r = rtsp_types::Response::builder(rtsp_types::Version::V1_0, StatusCode::Ok)
                .header(headers::SESSION, conn.session.clone())
                .build(Vec::new());
            return (r, false);
        }
        _ => {}
    }
    let Ok(target) = proto::target(req.request_uri()) else {
        return status(StatusCode::NotFound);
    };
    let basic = proto::basic_credentials(req);
    // Authorization is per camera: a link's budget may have switched the client to the
    // sub-stream, whose URLs it then uses.
    let known = conn
        .allowed
        .as_ref()
        .filter(|(s, _)| s.camera() == target.stream.camera())
        .map(|(_, who)| who.clone());
    let who = known.or_else(|| {
        ctx.auth.authorize(
            &target.stream,
            target.token.as_deref(),
            basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            conn.peer,
        )
    });
    let who = if let Some(who) = who {
        conn.allowed = Some((target.stream.clone(), who.clone()));
        who
    } else {
        if basic.is_some() || target.token.is_some() {
            warn!(stream = %target.stream, "RTSP request refused: bad credentials or token");
        }
        let r = rtsp_types::Response::builder(rtsp_types::Version::V1_0, StatusCode::Unauthorized)
            .header(headers::WWW_AUTHENTICATE, "Basic realm=\"sharpeye\"")
            .build(Vec::new());
        return (r, false);
    };
    if let Some((s, _, _)) = &conn.watching
        && *s != target.stream
    {
        return status(StatusCode::AggregateOperationNotAllowed);
    }
    let wanted = if conn.watching.is_none() {
        match ctx.auth.admit(&target.stream, &who) {
            Ok(s) => s,
            Err(why) => {
                warn!(stream = %target.stream, "RTSP request refused: {why}");
                return status(StatusCode::ServiceUnavailable);
            }
        }
    } else {
        target.stream.clone()
    };
    match req.method() {
        Method::Describe => {
            if conn.watching.is_none() {
                match watch(ctx, &wanted).await {
                    Ok(w) => conn.watching = Some(w),
                    Err((code, why)) => {
                        warn!(stream = %target.stream, "DESCRIBE refused: {why}");
                        return status(code);
                    }
                }
            }
            let Some((stream, _, first)) = &conn.watching else {
                return status(StatusCode::InternalServerError);
            };
            let sdp = proto::sdp(stream, &first.params, conn.local.ip());
            let base = format!(
                "rtsp://{}/cameras/{}{}/",
                conn.local,
                stream.camera(),
                if stream.kind() == media::StreamKind::Sub {
                    "/sub"
                } else {
                    ""
                }
            );
            let r = rtsp_types::Response::builder(rtsp_types::Version::V1_0, StatusCode::Ok)
                .header(headers::CONTENT_TYPE, "application/sdp")
                .header(headers::CONTENT_BASE, base)
                .build(sdp.into_bytes());
            (r, false)
        }
        Method::Setup => {
            if conn.watching.is_none() {
                match watch(ctx, &wanted).await {
                    Ok(w) => conn.watching = Some(w),
                    Err((code, _)) => return status(code),
                }
            }
            let Some(t) = proto::requested_transport(req) else {
                return status(StatusCode::UnsupportedTransport);
            };
            let (socket, server_port) = match t {
                Transport::Interleaved { .. } => (None, None),
                Transport::Udp { .. } => match bind_udp_pair(conn.local.ip()).await {
                    Some((s, port)) => (Some(Arc::new(s)), Some(port)),
                    None => return status(StatusCode::InternalServerError),
                },
            };
            conn.transport = Some((t, socket));
            let r = rtsp_types::Response::builder(rtsp_types::Version::V1_0, StatusCode::Ok)
                .header(headers::TRANSPORT, proto::transport_reply(t, server_port))
                .header(headers::SESSION, format!("{};timeout=60", conn.session))
                .build(Vec::new());
            (r, false)
        }
        Method::Play => {
            let (Some((t, socket)), Some((stream, viewer, first))) = (conn.transport.take(), conn.watching.take())
            else {
                return status(StatusCode::MethodNotValidInThisState);
            };
            let who = conn.allowed.as_ref().map(|(_, w)| w.clone()).unwrap_or_default();
            match ctx.auth.playing(&stream, &who, conn.peer).await {
                Some(guard) => conn.viewing = Some(guard),
                None => return status(StatusCode::ServiceUnavailable),
            }
            let (seq, rtptime) = (rand::random::<u16>(), rand::random::<u32>());
            let sink = match (t, socket) {
                (Transport::Interleaved { rtp }, _) => Sink::Tcp {
                    wr: wr.clone(),
                    channel: rtp,
                },
                (Transport::Udp { rtp, .. }, Some(socket)) => Sink::Udp {
                    socket,
                    to: SocketAddr::new(conn.peer.ip(), rtp),
                },
                (Transport::Udp { .. }, None) => return status(StatusCode::InternalServerError),
            };
            info!(stream = %stream, who, "RTSP viewer playing");
            let sender = Sender {
                packets: ctx.packets.clone(),
                sink,
                seq,
                rtptime,
                ssrc: rand::random(),
                origin: first.media_time,
                buf: Vec::with_capacity(64 * 1024),
            };
            let control = format!(
                "rtsp://{}/cameras/{}{}/trackID=0",
                conn.local,
                stream.camera(),
                if stream.kind() == media::StreamKind::Sub {
                    "/sub"
                } else {
                    ""
                }
            );
            // The response goes out before the first packet: the task waits for the lock.
            conn.playing = Some(tokio::spawn(sender.run(viewer, first).in_current_span()));
            let r = rtsp_types::Response::builder(rtsp_types::Version::V1_0, StatusCode::Ok)
                .header(headers::SESSION, conn.session.clone())
                .header(headers::RANGE, "npt=now-")
                .header(headers::RTP_INFO, format!("url={control};seq={seq};rtptime={rtptime}"))
                .build(Vec::new());
            (r, false)
        }
        _ => status(StatusCode::MethodNotAllowed),
    }
}

/// Joins the stream and waits for its first key frame.
async fn watch(ctx: &Ctx, stream: &StreamId) -> Result<(StreamId, Viewer, Frame), (StatusCode, String)> {
    let mut viewer = ctx.hub.watch(stream, Output::Rtsp).map_err(|e| match e {
        JoinError::Unknown { .. } => (StatusCode::NotFound, e.to_string()),
        other => (StatusCode::ServiceUnavailable, other.to_string()),
    })?;
    match tokio::time::timeout(ctx.config.start_timeout, viewer.recv()).await {
        Ok(Some(first)) => Ok((stream.clone(), viewer, first)),
        _ => Err((
            StatusCode::ServiceUnavailable,
            format!("no key frame within {:.1} s", ctx.config.start_timeout.as_secs_f32()),
        )),
    }
}

async fn bind_udp_pair(ip: std::net::IpAddr) -> Option<(UdpSocket, u16)> {
    for _ in 0..100 {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).await.ok()?;
        let port = sock.local_addr().ok()?.port();
        if port % 2 == 0 && port < u16::MAX && std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1)).is_ok() {
            return Some((sock, port));
        }
    }
    None
}

enum Sink {
    Tcp {
        wr: Arc<Mutex<OwnedWriteHalf>>,
        channel: u8,
    },
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
}

/// Bytes before each payload on an interleaved TCP connection: `$`, channel, length, RTP header.
const TCP_PACKET_HEAD: usize = 4 + 12;

/// The most buffers one `writev` takes (Linux's `IOV_MAX`); a larger frame is written in turns.
const MAX_IOVECS: usize = 1024;

/// Writes every byte of `slices` with vectored writes, however the kernel splits them.
async fn write_all_vectored<W: AsyncWrite + Unpin>(w: &mut W, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        let k = slices.len().min(MAX_IOVECS);
        let n = w.write_vectored(&slices[..k]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Datagrams a UDP viewer is sent back to back (~45 KB): a key frame's larger burst is spread
/// into bursts this size `UDP_PAUSE` apart. A 200 KB key frame sent at once overflows a
/// receiver's default socket buffer (~200 KB) and the queue of a thin link's router, where it
/// is lost whole; paced, it takes ~4 ms longer to arrive.
const UDP_BURST: usize = 32;
/// The pause between two bursts of one frame.
const UDP_PAUSE: Duration = Duration::from_millis(1);

/// Sends one viewer's frames as RTP.
struct Sender {
    packets: Arc<PacketCache>,
    sink: Sink,
    seq: u16,
    rtptime: u32,
    ssrc: u32,
    origin: i64,
    buf: Vec<u8>,
}

impl Sender {
    async fn run(mut self, mut viewer: Viewer, first: Frame) {
        let params = first.params.clone();
        let mut frame = first;
        loop {
            if self.send(&frame).await.is_err() {
                return;
            }
            let Some(next) = viewer.recv().await else {
                debug!("viewer dropped by the hub");
                return;
            };
            // The SDP described these parameters; a change needs a new DESCRIBE.
            if next.discontinuity || (!Arc::ptr_eq(&next.params, &params) && *next.params != *params) {
                info!("stream parameters changed: ending the RTSP session");
                if let Sink::Tcp { wr, .. } = &self.sink {
                    let _ = wr.lock().await.shutdown().await;
                }
                return;
            }
            frame = next;
        }
    }

    async fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        let ts = self.rtptime.wrapping_add((f.media_time - self.origin) as u32);
        let payloads = self.packets.payloads(f);
        let n = payloads.len();
        match &self.sink {
            Sink::Tcp { wr, channel } => {
                // Only the 16 bytes of framing and RTP header are this viewer's; the payloads
                // are shared by every viewer of the stream and go to the socket from where
                // they are (one writev), not copied into a buffer per viewer first: for a
                // thousand viewers of a 200 KB key frame that copy was 200 MB.
                self.buf.clear();
                for (i, p) in payloads.iter().enumerate() {
                    let len = (12 + p.len()) as u16;
                    self.buf.extend_from_slice(&[b'$', *channel]);
                    self.buf.extend_from_slice(&len.to_be_bytes());
                    media::rtp::write_header(&mut self.buf, i + 1 == n, self.seq, ts, self.ssrc);
                    self.seq = self.seq.wrapping_add(1);
                }
                let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * n);
                for (head, p) in self.buf.chunks(TCP_PACKET_HEAD).zip(payloads.iter()) {
                    slices.push(IoSlice::new(head));
                    slices.push(IoSlice::new(p));
                }
                write_all_vectored(&mut *wr.lock().await, &mut slices).await
            }
            Sink::Udp { socket, to } => {
                for (i, p) in payloads.iter().enumerate() {
                    if i > 0 && i % UDP_BURST == 0 {
                        tokio::time::sleep(UDP_PAUSE).await;
                    }
                    self.buf.clear();
                    media::rtp::write_header(&mut self.buf, i + 1 == n, self.seq, ts, self.ssrc);
                    self.buf.extend_from_slice(p);
                    self.seq = self.seq.wrapping_add(1);
                    // A lost datagram is the client's RTP to recover from; only a dead socket
                    // ends the session.
                    if let Err(e) = socket.send_to(&self.buf, to).await
                        && e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::ConnectionRefused
                    {
                        return Err(e);
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket that takes at most `step` bytes and at most `iovecs` buffers per write, as a
    /// kernel under pressure does, and refuses more than Linux's IOV_MAX buffers at once.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            if bufs.len() > MAX_IOVECS {
                return Poll::Ready(Err(std::io::ErrorKind::InvalidInput.into()));
            }
            self.calls += 1;
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.got.extend_from_slice(&b[..k]);
                left -= k;
                n += k;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn vectored_writes_deliver_every_byte_in_order_whatever_the_kernel_takes() {
        // 3,000 buffers (a 2 MB key frame's packets and heads): more than one writev may take.
        let parts: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![i as u8; 1 + (i as usize * 7) % 40]).collect();
        let expected: Vec<u8> = parts.concat();
        for step in [1, 5, 16, 1400, usize::MAX] {
            let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let mut w = Trickle {
                got: Vec::new(),
                step,
                calls: 0,
            };
            write_all_vectored(&mut w, &mut slices).await.unwrap();
            assert!(w.got == expected, "bytes differ when the socket takes {step} at a time");
            if step == usize::MAX {
                assert_eq!(w.calls, 3, "1,024 buffers per call");
            }
        }
    }

    /// A 1080p key frame (~100 datagrams) reaches a UDP viewer whole and in order, in bursts of
    /// `UDP_BURST` at least `UDP_PAUSE` apart rather than all at once.
    #[tokio::test]
    async fn udp_key_frames_are_paced_in_bursts_and_arrive_whole() {
        let key = camsim::BuiltinFixture::H264_1080p
            .load()
            .frames(&StreamId::main("cam0"), 1, 0, media::WallTime::now())
            .into_iter()
            .next()
            .unwrap();
        assert!(key.key);
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = rx.local_addr().unwrap();
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let mut sender = Sender {
            packets: Arc::new(PacketCache::default()),
            sink: Sink::Udp { socket, to },
            seq: 100,
            rtptime: 0,
            ssrc: 7,
            origin: key.media_time,
            buf: Vec::new(),
        };
        let expected = sender.packets.payloads(&key).len();
        assert!(expected > 2 * UDP_BURST, "a key frame of {expected} packets");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while got.len() < expected {
                let Ok(n) = rx.recv(&mut buf) else { break };
                got.push((std::time::Instant::now(), u16::from_be_bytes([buf[2], buf[3]]), n));
            }
            got
        });
        sender.send(&key).await.unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expected, "every datagram arrives");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.1, 100 + i as u16, "in order");
        }
        let pauses = (expected - 1) / UDP_BURST;
        let spread = got[expected - 1].0 - got[0].0;
        assert!(
            spread >= UDP_PAUSE * pauses as u32,
            "{expected} datagrams arrived within {spread:?}"
        );
        for burst in got.chunks(UDP_BURST) {
            let within = burst[burst.len() - 1].0 - burst[0].0;
            assert!(within < spread, "a burst is sent back to back");
        }
    }

    #[tokio::test]
    async fn a_socket_that_takes_nothing_is_an_error_not_a_spin() {
        let data = [1u8; 10];
        let mut slices = [IoSlice::new(&data)];
        let mut w = Trickle {
            got: Vec::new(),
            step: 0,
            calls: 0,
        };
        let e = write_all_vectored(&mut w, &mut slices).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    }
}
