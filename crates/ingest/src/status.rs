//! What a source reports about itself: the basis of camera health in the API.

use std::sync::{Mutex, MutexGuard};

use media::WallTime;

/// Where a source is in its life cycle.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SourcePhase {
    /// Opening the RTSP session.
    Connecting,
    /// Receiving frames.
    Streaming,
    /// The last session failed; waiting before the next attempt.
    Retrying,
    /// Shut down.
    Stopped,
}

impl SourcePhase {
    /// Lower-case name for the API (`connecting`, `streaming`, `retrying`, `stopped`).
    pub const fn as_str(self) -> &'static str {
        match self {
            SourcePhase::Connecting => "connecting",
            SourcePhase::Streaming => "streaming",
            SourcePhase::Retrying => "retrying",
            SourcePhase::Stopped => "stopped",
        }
    }
}

/// A snapshot of a source's state and counters.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    /// Current phase.
    pub phase: SourcePhase,
    /// When the phase was entered.
    pub since: WallTime,
    /// The last error, worded for an operator (camera, peer, what to do); cleared when frames
    /// flow again.
    pub last_error: Option<String>,
    /// When `last_error` happened.
    pub last_error_at: Option<WallTime>,
    /// Sessions opened so far.
    pub sessions: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Frames dropped (waiting for a key frame, oversized, ...).
    pub dropped_frames: u64,
    /// Timestamp discontinuities seen inside sessions.
    pub discontinuities: u64,
    /// Arrival of the last delivered frame.
    pub last_frame: Option<WallTime>,
    /// RFC 6381 codec string of the current parameters.
    pub codec: Option<String>,
    /// Current picture size.
    pub resolution: Option<(u32, u32)>,
}

/// Shared, lock-protected [`SourceStatus`] a source updates and the API reads.
#[derive(Debug)]
pub struct SourceHealth(Mutex<SourceStatus>);

impl Default for SourceHealth {
    fn default() -> Self {
        SourceHealth(Mutex::new(SourceStatus {
            phase: SourcePhase::Connecting,
            since: WallTime::now(),
            last_error: None,
            last_error_at: None,
            sessions: 0,
            frames: 0,
            bytes: 0,
            dropped_frames: 0,
            discontinuities: 0,
            last_frame: None,
            codec: None,
            resolution: None,
        }))
    }
}

impl SourceHealth {
    /// A copy of the current status.
    pub fn snapshot(&self) -> SourceStatus {
        self.lock().clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SourceStatus> {
        // Only counters live behind this lock; a panicked writer leaves nothing half-done.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the phase (a source does; the node marks on-demand streams stopped until wanted).
    pub fn set_phase(&self, phase: SourcePhase) {
        let mut s = self.lock();
        if s.phase != phase {
            s.phase = phase;
            s.since = WallTime::now();
        }
    }

    /// A session is streaming: counted, and the phase set.
    pub fn session_started(&self) {
        self.lock().sessions += 1;
        self.set_phase(SourcePhase::Streaming);
    }

    /// Records why the source is not getting video (a source does; the node does for a pull it
    /// refused to start, say over a link budget).
    pub fn set_error(&self, message: String) {
        let mut s = self.lock();
        s.last_error = Some(message);
        s.last_error_at = Some(WallTime::now());
    }
}
