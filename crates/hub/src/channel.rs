//! One stream's fan-out point: frames in from the one upstream, out to every viewer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::{Frame, StreamId};
use tokio::sync::mpsc;

use crate::demand::{Action, Demand};

/// What a viewer watches through, for metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// `live.mp4` over HTTP.
    Mp4,
    /// RTSP re-serve.
    Rtsp,
    /// WebRTC (WHEP).
    Webrtc,
    /// PS over RTP toward a GB/T 28181 upper platform.
    Gb28181,
    /// A transcode into the camera's `h264` stream (the `transcode` crate).
    Transcode,
    /// In-process consumers (tests, relays).
    Other,
}

impl Output {
    /// Every output, in metric order.
    pub const ALL: [Output; 6] = [
        Output::Mp4,
        Output::Rtsp,
        Output::Webrtc,
        Output::Gb28181,
        Output::Transcode,
        Output::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Output::Mp4 => "mp4",
            Output::Rtsp => "rtsp",
            Output::Webrtc => "webrtc",
            Output::Gb28181 => "gb28181",
            Output::Transcode => "transcode",
            Output::Other => "other",
        }
    }
}

/// Limits of one channel.
#[derive(Copy, Clone, Debug)]
pub struct ChannelLimits {
    /// Frames a viewer's queue holds; past that the viewer lags and skips to the next key frame.
    pub queue_frames: usize,
    /// A viewer whose queue took nothing for this long is dropped.
    pub dead_after: Duration,
    /// Largest GOP kept for new viewers; a longer one is not cached.
    pub gop_cache_bytes: usize,
    /// Most viewers of this stream.
    pub max_viewers: usize,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        ChannelLimits {
            queue_frames: 256,
            dead_after: Duration::from_secs(10),
            gop_cache_bytes: 16 << 20,
            max_viewers: 200,
        }
    }
}

/// Counters of one channel (exposed as Prometheus metrics).
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// Frames received from upstream.
    pub frames_in: AtomicU64,
    /// Payload bytes handed to viewers.
    pub bytes_out: AtomicU64,
    /// Viewers dropped for not reading.
    pub dropped_viewers: AtomicU64,
    /// Times a viewer lagged and skipped to the next key frame.
    pub skipped_gops: AtomicU64,
    /// Upstream pulls started.
    pub upstream_starts: AtomicU64,
}

struct Viewer {
    id: u64,
    output: Output,
    tx: mpsc::Sender<Frame>,
    /// Waiting for a key frame (new without a cached GOP, or lagging).
    needs_key: bool,
    last_taken: Instant,
}

struct Inner {
    gop: VecDeque<Frame>,
    gop_bytes: usize,
    viewers: Vec<Viewer>,
    next_id: u64,
    demand: Demand,
    rate: crate::rate::Rate,
    /// The parameters of the last key frame: what a player needs to know before it asks.
    params: Option<Arc<media::StreamParams>>,
}

/// One stream's fan-out.
pub struct Channel {
    stream: StreamId,
    limits: ChannelLimits,
    inner: Mutex<Inner>,
    stats: ChannelStats,
    /// Called with the demand's decisions (start or stop the pull); set by the hub.
    control: crate::Control,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("stream", &self.stream).finish()
    }
}

/// Why a viewer could not join.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    /// The stream has its maximum number of viewers.
    #[error("stream {stream} already has its maximum of {max} viewers; try the sub-stream or later")]
    StreamFull {
        /// The stream.
        stream: String,
        /// Its cap.
        max: usize,
    },
    /// The node has its maximum number of viewers.
    #[error("this node already serves its maximum of {max} live viewers; try later")]
    NodeFull {
        /// The node's cap.
        max: usize,
    },
    /// No such stream on this node.
    #[error("camera stream {stream} is not configured on this node")]
    Unknown {
        /// The stream asked for.
        stream: String,
    },
}

impl Channel {
    /// A channel for `stream`; `control` starts and stops its upstream.
    pub fn new(stream: StreamId, limits: ChannelLimits, demand: Demand, control: crate::Control) -> Arc<Channel> {
        Arc::new(Channel {
            stream,
            limits,
            inner: Mutex::new(Inner {
                gop: VecDeque::new(),
                gop_bytes: 0,
                viewers: Vec::new(),
                next_id: 1,
                demand,
                rate: crate::rate::Rate::default(),
                params: None,
            }),
            stats: ChannelStats::default(),
            control,
        })
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The codec parameters of the last key frame seen (codec, size), if any arrived yet.
    pub fn params(&self) -> Option<Arc<media::StreamParams>> {
        self.lock().params.clone()
    }

    /// Its counters.
    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn act(&self, action: Option<Action>) {
        if let Some(a) = action {
            if a == Action::Start {
                self.stats.upstream_starts.fetch_add(1, Ordering::Relaxed);
            }
            (self.control)(&self.stream, a);
        }
    }

    /// Hands a frame from upstream to every viewer. Never blocks: a full viewer queue makes that
    /// viewer skip to the next key frame, and a viewer that has taken nothing for `dead_after`
    /// is dropped.
    pub fn publish(&self, frame: &Frame) {
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let len = frame.data.len();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.rate.add(now, len, frame.key);
        if frame.key && inner.params.as_ref().is_none_or(|p| !Arc::ptr_eq(p, &frame.params)) {
            inner.params = Some(frame.params.clone());
        }
        if frame.key || frame.discontinuity {
            inner.gop.clear();
            inner.gop_bytes = 0;
        }
        if frame.key || !inner.gop.is_empty() {
            if inner.gop_bytes + len <= self.limits.gop_cache_bytes {
                inner.gop.push_back(frame.clone());
                inner.gop_bytes += len;
            } else {
                // A GOP this long is not worth caching: new viewers wait for the next key frame.
                inner.gop.clear();
                inner.gop_bytes = 0;
            }
        }
        let mut bytes_out = 0u64;
        let before = inner.viewers.len();
        inner.viewers.retain_mut(|v| {
            if v.needs_key && !frame.key {
                return !v.tx.is_closed();
            }
            match v.tx.try_send(frame.clone()) {
                Ok(()) => {
                    v.needs_key = false;
                    bytes_out += len as u64;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !v.needs_key {
                        v.needs_key = true;
                        self.stats.skipped_gops.fetch_add(1, Ordering::Relaxed);
                    }
                    // The queue is full when the viewer stopped taking frames; `last_taken` is
                    // refreshed whenever it has room again (see below).
                    if now.saturating_duration_since(v.last_taken) >= self.limits.dead_after {
                        self.stats.dropped_viewers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(stream = %self.stream, output = v.output.label(), "dropping a live viewer that stopped reading");
                        return false;
                    }
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        for v in &mut inner.viewers {
            if v.tx.capacity() > 0 {
                v.last_taken = now;
            }
        }
        let gone = before - inner.viewers.len();
        let mut actions = Vec::new();
        for _ in 0..gone {
            actions.push(inner.demand.leave(now));
        }
        drop(guard);
        self.stats.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        for a in actions {
            self.act(a);
        }
    }

    /// Adds a viewer: it gets the cached GOP at once (so it starts on a key frame), then every
    /// new frame. Starts the upstream if this is the first viewer of an on-demand stream.
    pub fn join(self: &Arc<Self>, output: Output) -> Result<Subscription, JoinError> {
        let now = Instant::now();
        let (tx, rx) = mpsc::channel(self.limits.queue_frames.max(1));
        let mut inner = self.lock();
        if inner.viewers.len() >= self.limits.max_viewers {
            return Err(JoinError::StreamFull {
                stream: self.stream.to_string(),
                max: self.limits.max_viewers,
            });
        }
        let mut needs_key = true;
        // Only a cached GOP that fits the queue with room to spare is replayed; otherwise the
        // viewer waits for the next key frame.
        if !inner.gop.is_empty() && inner.gop.len() < tx.max_capacity() {
            for f in &inner.gop {
                let _ = tx.try_send(f.clone());
            }
            needs_key = false;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.viewers.push(Viewer {
            id,
            output,
            tx,
            needs_key,
            last_taken: now,
        });
        let action = inner.demand.join(now);
        drop(inner);
        self.act(action);
        Ok(Subscription {
            channel: self.clone(),
            id,
            rx,
        })
    }

    fn leave(&self, id: u64) {
        let now = Instant::now();
        let mut inner = self.lock();
        let before = inner.viewers.len();
        inner.viewers.retain(|v| v.id != id);
        let action = if inner.viewers.len() < before {
            inner.demand.leave(now)
        } else {
            // Already dropped by `publish`, which told the demand then.
            None
        };
        drop(inner);
        self.act(action);
    }

    /// Lets the demand act on time passing (stops an idle pull). Called by the hub's ticker.
    pub fn tick(&self, now: Instant) {
        let action = self.lock().demand.poll(now);
        self.act(action);
    }

    /// The cached GOP: the frames from the newest key frame on (empty when none is cached).
    /// A cluster member taking a camera over starts recording from it.
    pub fn gop(&self) -> Vec<Frame> {
        self.lock().gop.iter().cloned().collect()
    }

    /// Pins the stream (its pull runs without viewers: this node records it) or unpins it
    /// (the pull stops `idle` after its last viewer).
    pub fn set_pinned(&self, pinned: bool) {
        let action = self.lock().demand.set_pinned(pinned, Instant::now());
        self.act(action);
    }

    /// Disconnects every viewer (their subscriptions end, as if dropped for not reading) and
    /// returns how many there were: the upstream was taken away from them (shed to keep a link
    /// within its budget), and a stalled view would only look like a fault.
    pub fn close_viewers(&self) -> usize {
        let now = Instant::now();
        let mut inner = self.lock();
        let gone = inner.viewers.len();
        inner.viewers.clear();
        inner.gop.clear();
        inner.gop_bytes = 0;
        let actions: Vec<_> = (0..gone).map(|_| inner.demand.leave(now)).collect();
        drop(inner);
        for a in actions {
            self.act(a);
        }
        gone
    }

    /// The stream's bitrate as last measured arriving here, kbit/s (kept after the upstream
    /// stops, as the best guess for its next start).
    pub fn kbps(&self) -> Option<u64> {
        self.lock().rate.kbps()
    }

    /// The upstream ended by itself (the camera went away): cached frames are stale.
    pub fn upstream_ended(&self) {
        let mut inner = self.lock();
        inner.rate.pause();
        inner.gop.clear();
        inner.gop_bytes = 0;
    }

    /// Viewers by output.
    pub fn viewers(&self) -> Vec<(Output, usize)> {
        let inner = self.lock();
        Output::ALL
            .iter()
            .map(|o| (*o, inner.viewers.iter().filter(|v| v.output == *o).count()))
            .collect()
    }

    /// Whether the upstream pull runs (0 or 1 upstream session).
    pub fn upstream_running(&self) -> bool {
        self.lock().demand.running()
    }
}

/// A viewer's end of a channel. Dropping it leaves.
#[derive(Debug)]
pub struct Subscription {
    channel: Arc<Channel>,
    id: u64,
    rx: mpsc::Receiver<Frame>,
}

impl Subscription {
    /// The next frame; `None` once the viewer was dropped for not reading.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }

    /// Frames queued for this viewer.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    /// The channel.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.channel.leave(self.id);
    }
}
