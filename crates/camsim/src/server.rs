//! The tokio side: accepting RTSP connections and pacing frames out to each session.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info_span;

use crate::camera::{CameraHandle, CameraSpec, CameraState};
use crate::fixture::{Fixture, MAX_PAYLOAD};
use rtspd::framing::{Parsed, bad_request, parse_next};

use crate::rtsp::{Action, Conn, MAX_REQUEST, SetupTransport};
use media::rtp::packetize;

/// A set of simulated cameras, addressed by path. Outlives servers: stop a [`Camsim`] and start
/// another on the same port with the same `Cameras` to simulate a camera outage, and the
/// per-session statistics carry on.
#[derive(Clone, Debug)]
pub struct Cameras(Arc<HashMap<String, Arc<CameraState>>>);

impl Cameras {
    /// Cameras from their specs. Paths must be distinct; a later duplicate replaces an earlier one.
    pub fn new(specs: impl IntoIterator<Item = CameraSpec>) -> Self {
        Cameras(Arc::new(
            specs
                .into_iter()
                .map(|s| (s.path.clone(), CameraState::new(s)))
                .collect(),
        ))
    }

    /// The camera at `path`.
    pub fn get(&self, path: &str) -> Option<CameraHandle> {
        self.0.get(path).cloned().map(CameraHandle)
    }

    /// Every camera, in no particular order.
    pub fn all(&self) -> Vec<CameraHandle> {
        self.0.values().cloned().map(CameraHandle).collect()
    }

    /// Number of cameras.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no cameras.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A running camera simulator: one RTSP listener serving every camera of a [`Cameras`] set.
pub struct Camsim {
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Camsim {
    /// Binds `listen` (port 0 picks a free port) and starts serving.
    pub async fn start(listen: SocketAddr, cameras: Cameras) -> io::Result<Camsim> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (c, t) = (cancel.clone(), tracker.clone());
        tracker.spawn(rtspd::framing::accept_loop(
            listener,
            c.clone(),
            t,
            |peer| info_span!("camsim_conn", %peer),
            move |stream, peer| serve(stream, peer, cameras.clone(), c.clone()),
        ));
        Ok(Camsim { addr, cancel, tracker })
    }

    /// The address the RTSP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `rtsp://ADDR/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("rtsp://{}/{path}", self.addr)
    }

    /// Closes the listener and every connection, and waits until all are gone.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Streams one session's frames.
struct Player {
    session: u64,
    media: PlayMedia,
    fixture: Arc<Fixture>,
    fixture_gen: u64,
    backjump_gen: u64,
    oversized_gen: u64,
    index: usize,
    seq: u16,
    rtptime: u32,
    ssrc: u32,
    start: Instant,
    period: Duration,
    sent: u32,
    next_due: Instant,
    buf: Vec<u8>,
    /// The last key frame sent (what a frozen camera repeats).
    last_key: usize,
}

enum PlayMedia {
    Tcp { channel: u8 },
    Udp { socket: UdpSocket, client: SocketAddr },
}

impl Player {
    fn new(cam: &CameraState, conn: &mut Conn, seq: u16, rtptime: u32) -> io::Result<Player> {
        let media = match conn.transport.take() {
            Some(SetupTransport::Udp { socket, client }) => {
                socket.set_nonblocking(true)?;
                PlayMedia::Udp {
                    socket: UdpSocket::from_std(socket)?,
                    client,
                }
            }
            Some(SetupTransport::Interleaved { rtp_channel }) => PlayMedia::Tcp { channel: rtp_channel },
            None => return Err(io::Error::other("PLAY without SETUP")),
        };
        let session = cam.open_session(transport_of(&media));
        let k = cam.knobs();
        let nominal = Duration::from_secs_f64(f64::from(k.fixture.frame_ticks) / 90_000.0);
        // A camera whose clock runs fast stamps a frame's worth of ticks in less real time.
        let period = nominal.div_f64(1.0 + f64::from(cam.spec.drift_ppm) * 1e-6);
        let start = Instant::now();
        Ok(Player {
            session,
            media,
            fixture: k.fixture.clone(),
            fixture_gen: k.fixture_gen,
            backjump_gen: k.backjump_gen,
            oversized_gen: k.oversized_gen,
            index: 0,
            seq,
            rtptime,
            ssrc: rand::random(),
            start,
            period,
            sent: 0,
            next_due: start,
            buf: Vec::with_capacity(64 * 1024),
            last_key: 0,
        })
    }

    fn stalled(&self, cam: &CameraState) -> bool {
        self.session < cam.knobs().stall_below
    }

    /// Sends the next frame and schedules the one after.
    async fn send_frame(&mut self, cam: &CameraState, wr: &mut OwnedWriteHalf) -> io::Result<()> {
        let (garbage, oversized, freeze, half_rate) = {
            let k = cam.knobs();
            if k.fixture_gen != self.fixture_gen {
                self.fixture_gen = k.fixture_gen;
                self.fixture = k.fixture.clone();
                self.index = 0;
                self.last_key = 0;
            }
            if k.backjump_gen != self.backjump_gen {
                self.backjump_gen = k.backjump_gen;
                self.rtptime = self.rtptime.wrapping_sub(k.backjump_ticks);
            }
            let oversized = (k.oversized_gen != self.oversized_gen).then_some(k.oversized_len);
            self.oversized_gen = k.oversized_gen;
            let garbage = k.garbage_until.is_some_and(|t| std::time::Instant::now() < t);
            (garbage, oversized, k.freeze, k.half_rate)
        };
        if !freeze && self.fixture.frames[self.index].key {
            self.last_key = self.index;
        }
        let shown = if freeze { self.last_key } else { self.index };
        let mut packets: Vec<Bytes> = match oversized {
            Some(len) => {
                // A non-IDR slice NAL unit of the requested size. Its body has no zero bytes:
                // depacketizers strip trailing zeros and would shrink an all-zero body away.
                let mut nal = vec![0x5au8; len.max(2)];
                nal[0] = match self.fixture.codec {
                    media::VideoCodec::H264 => 0x41,
                    media::VideoCodec::H265 => 0x02,
                };
                if self.fixture.codec == media::VideoCodec::H265 {
                    nal[1] = 0x01;
                }
                packetize(self.fixture.codec, [nal.as_slice()], MAX_PAYLOAD)
            }
            None => self.fixture.frames[shown].packets.clone(),
        };
        if garbage {
            for p in &mut packets {
                let mut junk = vec![0u8; p.len()];
                rand::fill(&mut junk[..]);
                *p = Bytes::from(junk);
            }
        }
        let bytes: usize = packets.iter().map(Bytes::len).sum();
        let last = packets.len().saturating_sub(1);
        match &self.media {
            PlayMedia::Tcp { channel } => {
                self.buf.clear();
                for (i, p) in packets.iter().enumerate() {
                    self.buf.push(b'$');
                    self.buf.push(*channel);
                    self.buf.extend_from_slice(&((12 + p.len()) as u16).to_be_bytes());
                    rtp_header(&mut self.buf, i == last, self.seq, self.rtptime, self.ssrc);
                    self.buf.extend_from_slice(p);
                    self.seq = self.seq.wrapping_add(1);
                }
                wr.write_all(&self.buf).await?;
            }
            PlayMedia::Udp { socket, client } => {
                for (i, p) in packets.iter().enumerate() {
                    self.buf.clear();
                    rtp_header(&mut self.buf, i == last, self.seq, self.rtptime, self.ssrc);
                    self.buf.extend_from_slice(p);
                    self.seq = self.seq.wrapping_add(1);
                    // A full socket buffer loses the packet, as UDP does on a real network.
                    let _ = socket.send_to(&self.buf, *client).await;
                }
            }
        }
        cam.record_frame(self.session, bytes);
        // At half rate the frame after is skipped: the picture and the clock move on by two.
        let step = if half_rate { 2 } else { 1 };
        self.rtptime = self.rtptime.wrapping_add(self.fixture.frame_ticks * step);
        self.index = (self.index + step as usize) % self.fixture.frames.len();
        self.sent += step;
        self.next_due = self.start + self.period * self.sent;
        Ok(())
    }
}

fn rtp_header(buf: &mut Vec<u8>, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    buf.push(0x80);
    buf.push(96 | (u8::from(marker) << 7));
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
}

fn transport_of(media: &PlayMedia) -> crate::camera::MediaTransport {
    match media {
        PlayMedia::Tcp { .. } => crate::camera::MediaTransport::Tcp,
        PlayMedia::Udp { .. } => crate::camera::MediaTransport::Udp,
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, cameras: Cameras, cancel: CancellationToken) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut conn = Conn::new(local, peer);
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut player: Option<Player> = None;
    let mut out = Vec::new();
    'conn: loop {
        let cam = conn.camera.clone();
        let notified = cam.as_ref().map(|c| c.drop_notify.notified());
        tokio::pin!(notified);
        if let Some(n) = notified.as_mut().as_pin_mut() {
            n.enable();
        }
        if let (Some(c), Some(p)) = (&cam, &player)
            && p.session < c.knobs().drop_below
        {
            break;
        }
        let due = match (&cam, &player) {
            (Some(c), Some(p)) if !p.stalled(c) => Some(p.next_due),
            _ => None,
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = async { notified.as_mut().as_pin_mut().expect("guarded").await }, if cam.is_some() => continue,
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                if let (Some(c), Some(p)) = (&cam, player.as_mut())
                    && p.send_frame(c, &mut wr).await.is_err()
                {
                    break;
                }
            }
            r = rd.read_buf(&mut inbuf) => {
                if !matches!(r, Ok(n) if n > 0) {
                    break;
                }
                loop {
                    let req = match parse_next(&mut inbuf, MAX_REQUEST) {
                        Parsed::Request(r) => r,
                        Parsed::Ignored => continue,
                        Parsed::Incomplete => break,
                        Parsed::Bad => {
                            out.clear();
                            let _ = bad_request().write(&mut out);
                            let _ = wr.write_all(&out).await;
                            break 'conn;
                        }
                    };
                    let (resp, action) = conn.handle(&req, &cameras.0);
                    out.clear();
                    if resp.write(&mut out).is_err() || wr.write_all(&out).await.is_err() {
                        break 'conn;
                    }
                    match action {
                        Action::None => {}
                        Action::Close => break 'conn,
                        Action::Play { seq, rtptime } => {
                            let Some(c) = conn.camera.clone() else { break 'conn };
                            if player.is_none() {
                                match Player::new(&c, &mut conn, seq, rtptime) {
                                    Ok(p) => player = Some(p),
                                    Err(_) => break 'conn,
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if let (Some(c), Some(p)) = (&conn.camera, &player) {
        c.close_session(p.session);
    }
    let _ = wr.shutdown().await;
}
