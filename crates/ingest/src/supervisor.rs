//! One long-lived task per camera stream: open a session, deliver frames, and when it ends,
//! report why, wait (backoff with jitter) and open another, until stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::backoff::Backoff;
use crate::rtsp::{RtspSourceConfig, run_session};
use crate::{FrameSink, SourceHealth, SourcePhase};

/// A session that streamed at least this long proves the camera works: the backoff restarts.
const HEALTHY_SESSION: Duration = Duration::from_secs(5);
/// The same error is logged at most this often per camera; health always has the latest.
const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A running source; dropping it does not stop it, [`SourceHandle::stop`] does.
pub struct SourceHandle {
    health: Arc<SourceHealth>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl SourceHandle {
    /// The source's live status.
    pub fn health(&self) -> &Arc<SourceHealth> {
        &self.health
    }

    /// A handle for a source task started elsewhere in this crate (GB28181).
    pub(crate) fn from_parts(health: Arc<SourceHealth>, cancel: CancellationToken, task: JoinHandle<()>) -> Self {
        SourceHandle { health, cancel, task }
    }

    /// Stops the source (tearing down its session) and waits for it.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Starts supervising an RTSP source that delivers to `sink`.
pub fn spawn_rtsp(cfg: RtspSourceConfig, sink: Arc<dyn FrameSink>) -> SourceHandle {
    spawn_rtsp_with_health(cfg, sink, Arc::new(SourceHealth::default()))
}

/// Like [`spawn_rtsp`], reporting into an existing `health`: an on-demand stream keeps one
/// status across the pulls its viewers start and stop.
pub fn spawn_rtsp_with_health(
    cfg: RtspSourceConfig,
    sink: Arc<dyn FrameSink>,
    health: Arc<SourceHealth>,
) -> SourceHandle {
    let cancel = CancellationToken::new();
    let span = info_span!("camera", id = cfg.stream.camera(), stream = cfg.stream.kind().as_str());
    let task = tokio::spawn(supervise(cfg, sink, health.clone(), cancel.clone()).instrument(span));
    SourceHandle { health, cancel, task }
}

async fn supervise(
    cfg: RtspSourceConfig,
    sink: Arc<dyn FrameSink>,
    health: Arc<SourceHealth>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut last_logged: Option<(String, Instant)> = None;
    loop {
        health.set_phase(SourcePhase::Connecting);
        let started = Instant::now();
        let (delivered, err) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = run_session(&cfg, sink.as_ref(), &health) => r,
        };
        if delivered {
            sink.end_of_stream(&cfg.stream);
        }
        if delivered && started.elapsed() >= HEALTHY_SESSION {
            backoff.reset();
        }
        let delay = if err.needs_operator() {
            backoff.slow_delay(cfg.reconnect_slow)
        } else {
            backoff.next_delay()
        };
        let message = err.to_string();
        let repeat = last_logged
            .as_ref()
            .is_some_and(|(m, at)| *m == message && at.elapsed() < REPEAT_LOG_INTERVAL);
        if !repeat {
            warn!(retry_in_ms = delay.as_millis() as u64, "{message}");
            last_logged = Some((message.clone(), Instant::now()));
        }
        health.set_error(message);
        health.set_phase(SourcePhase::Retrying);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    health.set_phase(SourcePhase::Stopped);
    sink.end_of_stream(&cfg.stream);
}
