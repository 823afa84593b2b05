//! A simulated camera: what it streams, its fault knobs, and what it has sent (for tests to
//! compare with what was recorded).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use media::WallTime;
use tokio::sync::Notify;

use crate::fixture::Fixture;

/// How a simulated camera is set up.
#[derive(Clone, Debug)]
pub struct CameraSpec {
    /// The first path segment of its URL: `rtsp://host:port/<path>`.
    pub path: String,
    /// What it streams.
    pub fixture: Arc<Fixture>,
    /// If set, DESCRIBE/SETUP/PLAY require RTSP digest authentication with these credentials.
    pub credentials: Option<(String, String)>,
    /// Clock error of the simulated camera in parts per million: positive means its clock (and
    /// so its RTP timestamps) runs fast compared with real time.
    pub drift_ppm: i32,
}

impl CameraSpec {
    /// A well-behaved camera at `path` streaming `fixture`.
    pub fn new(path: impl Into<String>, fixture: Arc<Fixture>) -> Self {
        CameraSpec {
            path: path.into(),
            fixture,
            credentials: None,
            drift_ppm: 0,
        }
    }
}

/// Transport of a session's media.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MediaTransport {
    /// RTP interleaved in the RTSP TCP connection.
    Tcp,
    /// RTP over UDP.
    Udp,
}

/// What one client session received from the camera.
#[derive(Clone, Debug)]
pub struct SessionStats {
    /// Session number within the camera, from 0.
    pub id: u64,
    /// How media was carried.
    pub transport: MediaTransport,
    /// When PLAY started it.
    pub started: WallTime,
    /// Wall time the first frame was handed to the socket.
    pub first_frame: Option<WallTime>,
    /// Wall time the last frame was handed to the socket.
    pub last_frame: Option<WallTime>,
    /// Frames written to the socket completely.
    pub frames: u64,
    /// Payload bytes written.
    pub bytes: u64,
    /// When the session ended (connection closed or torn down), if it has.
    pub ended: Option<WallTime>,
}

#[derive(Debug)]
pub(crate) struct Knobs {
    pub fixture: Arc<Fixture>,
    pub fixture_gen: u64,
    pub next_session: u64,
    pub stall_below: u64,
    pub drop_below: u64,
    pub backjump_gen: u64,
    pub backjump_ticks: u32,
    pub oversized_gen: u64,
    pub oversized_len: usize,
    pub garbage_until: Option<Instant>,
    /// Repeat one frame (the last key frame sent) instead of the fixture: a frozen picture.
    pub freeze: bool,
    /// Send every other frame: half the frame rate.
    pub half_rate: bool,
}

/// A camera's shared state; [`CameraHandle`] is its public face.
#[derive(Debug)]
pub(crate) struct CameraState {
    pub spec: CameraSpec,
    pub knobs: Mutex<Knobs>,
    pub sessions: Mutex<Vec<SessionStats>>,
    pub drop_notify: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent (plain counters).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CameraState {
    pub fn new(spec: CameraSpec) -> Arc<Self> {
        Arc::new(CameraState {
            knobs: Mutex::new(Knobs {
                fixture: spec.fixture.clone(),
                fixture_gen: 0,
                next_session: 0,
                stall_below: 0,
                drop_below: 0,
                backjump_gen: 0,
                backjump_ticks: 0,
                oversized_gen: 0,
                oversized_len: 0,
                garbage_until: None,
                freeze: false,
                half_rate: false,
            }),
            spec,
            sessions: Mutex::new(Vec::new()),
            drop_notify: Notify::new(),
        })
    }

    pub fn knobs(&self) -> MutexGuard<'_, Knobs> {
        lock(&self.knobs)
    }

    pub fn sessions(&self) -> MutexGuard<'_, Vec<SessionStats>> {
        lock(&self.sessions)
    }

    /// Registers a new session and returns its id.
    pub fn open_session(&self, transport: MediaTransport) -> u64 {
        let id = {
            let mut k = self.knobs();
            k.next_session += 1;
            k.next_session - 1
        };
        self.sessions().push(SessionStats {
            id,
            transport,
            started: WallTime::now(),
            first_frame: None,
            last_frame: None,
            frames: 0,
            bytes: 0,
            ended: None,
        });
        id
    }

    pub fn record_frame(&self, id: u64, bytes: usize) {
        let now = WallTime::now();
        if let Some(s) = self.sessions().iter_mut().rev().find(|s| s.id == id) {
            s.first_frame.get_or_insert(now);
            s.last_frame = Some(now);
            s.frames += 1;
            s.bytes += bytes as u64;
        }
    }

    pub fn close_session(&self, id: u64) {
        if let Some(s) = self.sessions().iter_mut().rev().find(|s| s.id == id) {
            s.ended.get_or_insert_with(WallTime::now);
        }
    }
}

/// Control and observation of one simulated camera, for tests.
#[derive(Clone, Debug)]
pub struct CameraHandle(pub(crate) Arc<CameraState>);

impl CameraHandle {
    /// The camera's URL path segment.
    pub fn path(&self) -> &str {
        &self.0.spec.path
    }

    /// Every session so far, oldest first.
    pub fn sessions(&self) -> Vec<SessionStats> {
        self.0.sessions().clone()
    }

    /// Sessions that have not ended.
    pub fn active_sessions(&self) -> usize {
        self.0.sessions().iter().filter(|s| s.ended.is_none()).count()
    }

    /// Total frames sent over all sessions.
    pub fn frames_sent(&self) -> u64 {
        self.0.sessions().iter().map(|s| s.frames).sum()
    }

    /// Stalls every current session: it stops sending media but keeps its connection and keeps
    /// answering RTSP requests. Sessions opened later stream normally.
    pub fn stall(&self) {
        let mut k = self.0.knobs();
        k.stall_below = k.next_session;
    }

    /// Stalls every session, current and future, until [`CameraHandle::wake`]: a camera that
    /// answers RTSP but has gone dark (lens covered, encoder hung).
    pub fn go_dark(&self) {
        self.0.knobs().stall_below = u64::MAX;
    }

    /// Ends [`CameraHandle::go_dark`] and [`CameraHandle::stall`] for sessions opened from now on.
    pub fn wake(&self) {
        let mut k = self.0.knobs();
        k.stall_below = k.next_session;
    }

    /// Closes every current session's connection abruptly.
    pub fn drop_connections(&self) {
        {
            let mut k = self.0.knobs();
            k.drop_below = k.next_session;
        }
        self.0.drop_notify.notify_waiters();
    }

    /// For `duration`, replaces every RTP payload with random bytes (headers stay valid).
    pub fn send_garbage(&self, duration: Duration) {
        self.0.knobs().garbage_until = Some(Instant::now() + duration);
    }

    /// From the next frame, streams `fixture` instead (starting at its key frame), with RTP
    /// timestamps continuing: a parameter change mid-stream.
    pub fn switch_fixture(&self, fixture: Arc<Fixture>) {
        let mut k = self.0.knobs();
        k.fixture = fixture;
        k.fixture_gen += 1;
    }

    /// At the next frame of each session, moves RTP timestamps back by `by` (e.g. a camera whose
    /// clock was reset).
    pub fn jump_timestamps_back(&self, by: Duration) {
        let mut k = self.0.knobs();
        k.backjump_gen += 1;
        k.backjump_ticks = (by.as_micros() * 9 / 100).min(u128::from(u32::MAX / 2)) as u32;
    }

    /// While `on`, every session repeats its last key frame, byte for byte, at the usual rate
    /// and with advancing timestamps: a camera or DVR whose picture froze.
    pub fn freeze(&self, on: bool) {
        self.0.knobs().freeze = on;
    }

    /// While `on`, every session sends every other frame (timestamps keep the real time):
    /// half the frame rate, as an overloaded encoder or a bad link gives.
    pub fn half_frame_rate(&self, on: bool) {
        self.0.knobs().half_rate = on;
    }

    /// Sends one frame holding a single NAL unit of `len` bytes instead of the next frame.
    pub fn send_oversized_nal(&self, len: usize) {
        let mut k = self.0.knobs();
        k.oversized_gen += 1;
        k.oversized_len = len;
    }
}
