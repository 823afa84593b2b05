//! WebRTC playback by WHEP (RFC 9725 draft): an SDP offer in, an SDP answer out, then a hub
//! viewer's H.264 frames go to the browser as RTP over DTLS-SRTP, without transcoding.
//!
//! Built on `str0m`, a sans-IO WebRTC stack: each session is one `Rtc` state machine driven by
//! a small tokio task that feeds it UDP datagrams, frames and time. The server is ICE-lite with
//! one host candidate per session (the node's address toward the viewer), which is what a
//! server with a reachable address needs; TURN and TCP candidates are out of scope.
//! See `docs/architecture.md` for why str0m rather than the `webrtc` crate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hub::Viewer;
use media::{Frame, VideoCodec};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tracing::{Instrument, debug, info, info_span, warn};

/// Why a WHEP offer was refused.
#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    /// The body is not an SDP offer str0m accepts.
    #[error("the body is not a usable SDP offer: {0}")]
    BadOffer(String),
    /// The stream's codec cannot go to a browser without transcoding.
    #[error("this stream is {0:?}; WebRTC playback needs H.264 (use live.mp4 for H.265)")]
    Codec(VideoCodec),
    /// The offer has no video the answer could send H.264 on.
    #[error("the offer has no receive-only video with H.264 (packetization-mode 1)")]
    NoH264,
    /// No UDP port for the session.
    #[error("cannot open a UDP port for the session: {0}")]
    Io(#[from] std::io::Error),
}

/// Counters of the WHEP output.
#[derive(Debug, Default)]
pub struct WhepStats {
    /// Sessions created.
    pub sessions: AtomicU64,
    /// Sessions whose DTLS handshake completed.
    pub connected: AtomicU64,
    /// Video frames written to connected sessions.
    pub frames_out: AtomicU64,
}

/// The node's WHEP sessions.
pub struct Whep {
    host: IpAddr,
    sessions: Mutex<HashMap<String, oneshot::Sender<()>>>,
    stats: Arc<WhepStats>,
    /// A session that never connects is dropped after this long.
    connect_timeout: Duration,
}

impl std::fmt::Debug for Whep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whep").field("host", &self.host).finish()
    }
}

impl Whep {
    /// Sessions offer `host` as their candidate address.
    pub fn new(host: IpAddr) -> Arc<Whep> {
        str0m::crypto::from_feature_flags().install_process_default();
        Arc::new(Whep {
            host,
            sessions: Mutex::new(HashMap::new()),
            stats: Arc::default(),
            connect_timeout: Duration::from_secs(15),
        })
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<WhepStats> {
        &self.stats
    }

    /// Sessions running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks that `offer` is an SDP offer str0m accepts, before any resource is taken for it.
    pub fn check_offer(offer: &str) -> Result<(), WhepError> {
        SdpOffer::from_sdp_string(offer)
            .map(|_| ())
            .map_err(|e| WhepError::BadOffer(e.to_string()))
    }

    /// Answers `offer` and starts a session sending `viewer`'s frames (the first one, a key
    /// frame, already taken: `first`). `guard` is kept for the session's life and dropped when
    /// it ends, however it ends (the API audits the viewing's end with it). Returns the session
    /// id and the SDP answer.
    pub async fn create(
        self: &Arc<Self>,
        offer: &str,
        viewer: Viewer,
        first: Frame,
        guard: Box<dyn Send>,
    ) -> Result<(String, String), WhepError> {
        if first.params.codec() != VideoCodec::H264 {
            return Err(WhepError::Codec(first.params.codec()));
        }
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| WhepError::BadOffer(e.to_string()))?;
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .build(Instant::now());
        let socket = UdpSocket::bind(SocketAddr::new(self.host, 0)).await?;
        let local = socket.local_addr()?;
        let candidate = Candidate::host(local, "udp").map_err(|e| WhepError::BadOffer(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WhepError::BadOffer(e.to_string()))?;
        let id = format!("{:032x}", rand::random::<u128>());
        let (stop_tx, stop_rx) = oneshot::channel();
        self.lock().insert(id.clone(), stop_tx);
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            rtc,
            socket,
            local,
            mid: None,
            pt: None,
            connected: false,
            waiting_key: true,
            stats: self.stats.clone(),
        };
        let span = info_span!("whep", stream = %first.stream, session = &id[..8]);
        let (whep, sid) = (self.clone(), id.clone());
        let deadline = Instant::now() + self.connect_timeout;
        tokio::spawn(
            async move {
                session.run(viewer, first, stop_rx, deadline).await;
                whep.lock().remove(&sid);
                drop(guard);
            }
            .instrument(span),
        );
        Ok((id, answer.to_sdp_string()))
    }

    /// Ends a session (the WHEP resource's DELETE); false if there is none.
    pub fn end(&self, id: &str) -> bool {
        match self.lock().remove(id) {
            Some(tx) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }
}

/// One browser's session.
struct Session {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mid: Option<Mid>,
    pt: Option<str0m::format::PayloadParams>,
    connected: bool,
    /// Frames are sent from a key frame on, once connected.
    waiting_key: bool,
    stats: Arc<WhepStats>,
}

/// Most frames kept for a session that has not connected yet (10 s at 25 fps).
const MAX_HELD_FRAMES: usize = 250;

impl Session {
    async fn run(mut self, mut viewer: Viewer, first: Frame, mut stop: oneshot::Receiver<()>, deadline: Instant) {
        let mut buf = vec![0u8; 2000];
        let mut pending = Some(first);
        // The GOP so far, kept while ICE and DTLS complete: sending it on connection shows a
        // picture at once instead of after the camera's next key frame (up to a GOP later).
        let mut held: Vec<Frame> = Vec::new();
        loop {
            // Drain what str0m wants to do; it tells when it next needs time.
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(e)) => {
                        if !self.on_event(e) {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!("WebRTC session failed: {e}");
                        return;
                    }
                }
            };
            if !self.connected && Instant::now() > deadline {
                info!("WebRTC session never connected: dropped");
                return;
            }
            if let Some(f) = pending.take() {
                if self.connected {
                    // What arrived while the browser connected goes first, from its key frame.
                    for held in std::mem::take(&mut held) {
                        if !self.send(&held) {
                            return;
                        }
                    }
                    if !self.send(&f) {
                        return;
                    }
                } else if f.key {
                    held.clear();
                    held.push(f);
                } else if !held.is_empty() && held.len() < MAX_HELD_FRAMES {
                    held.push(f);
                }
            }
            let wait = timeout
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            tokio::select! {
                _ = &mut stop => {
                    debug!("session ended by DELETE");
                    self.rtc.disconnect();
                    return;
                }
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, source)) = r else { return };
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents,
                    });
                    if self.rtc.handle_input(input).is_err() {
                        return;
                    }
                }
                f = viewer.recv() => {
                    let Some(f) = f else {
                        debug!("viewer dropped by the hub");
                        return;
                    };
                    pending = Some(f);
                }
                _ = tokio::time::sleep(wait) => {
                    if self.rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Handles a str0m event; false ends the session.
    fn on_event(&mut self, e: Event) -> bool {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                info!("browser disconnected");
                false
            }
            Event::Connected => {
                self.connected = true;
                self.stats.connected.fetch_add(1, Ordering::Relaxed);
                info!("WebRTC session connected");
                true
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                self.mid = Some(m.mid);
                if let Some(w) = self.rtc.writer(m.mid) {
                    // Prefer packetization-mode 1 (FU-A), which every browser offers.
                    let h264: Vec<_> = w
                        .payload_params()
                        .filter(|p| p.spec().codec == Codec::H264)
                        .copied()
                        .collect();
                    self.pt = h264
                        .iter()
                        .find(|p| p.spec().format.packetization_mode == Some(1))
                        .or(h264.first())
                        .copied();
                }
                true
            }
            _ => true,
        }
    }

    /// Writes a frame if the session is connected; false ends the session.
    fn send(&mut self, f: &Frame) -> bool {
        let (Some(mid), Some(pt), true) = (self.mid, self.pt, self.connected) else {
            return true;
        };
        if self.waiting_key {
            if !f.key {
                return true;
            }
            self.waiting_key = false;
        }
        let Some(writer) = self.rtc.writer(mid) else {
            return true;
        };
        let data = annex_b(f);
        let rtp_time = MediaTime::from_90khz(f.media_time as u64);
        match writer.write(pt.pt(), Instant::now(), rtp_time, data) {
            Ok(()) => {
                self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                warn!("writing a frame failed: {e}");
                false
            }
        }
    }
}

/// The frame in Annex B form, with the parameter sets before a key frame (browsers need them in
/// band: the SDP answer does not carry them).
fn annex_b(f: &Frame) -> Vec<u8> {
    const START: [u8; 4] = [0, 0, 0, 1];
    let mut out = Vec::with_capacity(f.data.len() + 64);
    if f.key {
        for ps in [f.params.sps(), f.params.pps()] {
            out.extend_from_slice(&START);
            out.extend_from_slice(ps);
        }
    }
    for nal in media::rtp::length_prefixed_nals(&f.data) {
        out.extend_from_slice(&START);
        out.extend_from_slice(nal);
    }
    out
}
