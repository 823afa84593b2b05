//! One long-lived task per camera stream: open a session, deliver frames, and when it ends,
//! report why, wait (backoff with jitter) and open another, until stopped.
//!
//! Every kind of source (an RTSP camera, a GB/T 28181 channel, a stream pulled from a lower
//! node) is a [`Session`]: the supervisor owns the one reconnect and logging policy, so a camera
//! that flaps is retried and reported the same way whatever it speaks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use media::StreamId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, warn};

use crate::backoff::Backoff;
use crate::{FrameSink, SourceHealth, SourcePhase};

/// A session that streamed at least this long proves the camera works: the backoff restarts.
const HEALTHY_SESSION: Duration = Duration::from_secs(5);
/// The same error is logged at most this often per camera; health always has the latest.
const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Reconnect delays of a source.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// First reconnect delay.
    pub min: Duration,
    /// Largest reconnect delay after transient failures (camera down, stalled, network).
    pub max: Duration,
    /// Reconnect delay after failures that retrying soon cannot fix (wrong credentials or path).
    pub slow: Duration,
}

impl Default for Retry {
    /// 250 ms doubling to 1.5 s; 30 s after configuration errors.
    fn default() -> Self {
        Retry {
            min: Duration::from_millis(250),
            max: Duration::from_millis(1500),
            slow: Duration::from_secs(30),
        }
    }
}

/// How one session of a source ended.
#[derive(Debug)]
pub struct Ended<E> {
    /// At least one frame was delivered.
    pub delivered: bool,
    /// Why it ended.
    pub error: E,
}

/// One kind of source, as the supervisor drives it: open a session and run it until it ends.
pub trait Session: Send + 'static {
    /// Why a session ended; its text is logged and shown in health, so it names the camera,
    /// the peer and what to do.
    type Error: std::fmt::Display + Send;

    /// The stream the source feeds.
    fn stream(&self) -> &StreamId;

    /// The tracing span its task runs in (camera, stream, peer).
    fn span(&self) -> Span;

    /// Reconnect delays.
    fn retry(&self) -> Retry;

    /// Runs one session, delivering frames to `sink`, until it fails or the peer ends it.
    /// Cancelling (dropping) the future must leave the source in a state [`Session::close`]
    /// can clean up.
    fn run<'a>(
        &'a mut self,
        sink: &'a dyn FrameSink,
        health: &'a SourceHealth,
    ) -> impl Future<Output = Ended<Self::Error>> + Send + 'a;

    /// Releases what a session left open (a call to hang up), after it ended or was cancelled.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// True for failures that reconnecting soon cannot fix: the slow delay applies.
    fn needs_operator(_error: &Self::Error) -> bool {
        false
    }
}

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

    /// Stops the source (tearing down its session) and waits for it.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Starts supervising `session`, delivering to `sink` and reporting into `health` (an
/// on-demand stream keeps one status across the pulls its viewers start and stop).
pub fn spawn<S: Session>(session: S, sink: Arc<dyn FrameSink>, health: Arc<SourceHealth>) -> SourceHandle {
    let cancel = CancellationToken::new();
    let span = session.span();
    let task = tokio::spawn(supervise(session, sink, health.clone(), cancel.clone()).instrument(span));
    SourceHandle { health, cancel, task }
}

async fn supervise<S: Session>(
    mut session: S,
    sink: Arc<dyn FrameSink>,
    health: Arc<SourceHealth>,
    cancel: CancellationToken,
) {
    let retry = session.retry();
    let stream = session.stream().clone();
    let mut backoff = Backoff::new(retry.min, retry.max);
    let mut last_logged: Option<(String, Instant)> = None;
    loop {
        health.set_phase(SourcePhase::Connecting);
        let started = Instant::now();
        let ended = tokio::select! {
            _ = cancel.cancelled() => None,
            e = session.run(sink.as_ref(), &health) => Some(e),
        };
        session.close().await;
        let Some(Ended { delivered, error }) = ended else { break };
        if delivered {
            sink.end_of_stream(&stream);
            if started.elapsed() >= HEALTHY_SESSION {
                backoff.reset();
            }
        }
        let delay = if S::needs_operator(&error) {
            backoff.slow_delay(retry.slow)
        } else {
            backoff.next_delay()
        };
        let message = error.to_string();
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
    sink.end_of_stream(&stream);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use media::Frame;

    use super::*;

    #[derive(Default)]
    struct Ends(Mutex<Vec<String>>);

    impl FrameSink for Ends {
        fn frame(&self, _frame: Frame) {}
        fn end_of_stream(&self, stream: &StreamId) {
            self.0.lock().unwrap().push(stream.to_string());
        }
    }

    /// Fails at once every time, counting its runs and closes.
    struct Failing {
        stream: StreamId,
        runs: Arc<AtomicUsize>,
        closes: Arc<AtomicUsize>,
    }

    impl Session for Failing {
        type Error = String;
        fn stream(&self) -> &StreamId {
            &self.stream
        }
        fn span(&self) -> Span {
            Span::none()
        }
        fn retry(&self) -> Retry {
            Retry {
                min: Duration::from_millis(10),
                max: Duration::from_millis(40),
                slow: Duration::from_secs(3600),
            }
        }
        async fn run(&mut self, _: &dyn FrameSink, _: &SourceHealth) -> Ended<String> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ended {
                delivered: false,
                error: "camera x: refused".into(),
            }
        }
        async fn close(&mut self) {
            self.closes.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn retries_with_backoff_closes_every_session_and_reports_the_error() {
        let (runs, closes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let s = Failing {
            stream: StreamId::main("x"),
            runs: runs.clone(),
            closes: closes.clone(),
        };
        let sink = Arc::new(Ends::default());
        let health = Arc::new(SourceHealth::default());
        let h = spawn(s, sink.clone(), health.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = runs.load(Ordering::SeqCst);
        // 10 → 40 ms steps with jitter in the upper half: between 300/40 and 300/5 runs.
        assert!((5..=60).contains(&n), "{n} runs");
        assert_eq!(health.snapshot().last_error.as_deref(), Some("camera x: refused"));
        h.stop().await;
        // Every session is closed; a stop that comes before a session started closes it too.
        let (c, r) = (closes.load(Ordering::SeqCst), runs.load(Ordering::SeqCst));
        assert!(c == r || c == r + 1, "{c} closes for {r} runs");
        assert_eq!(health.snapshot().phase, SourcePhase::Stopped);
        // Nothing was delivered: only the final end of stream.
        assert_eq!(sink.0.lock().unwrap().as_slice(), ["x/main"]);
    }

    /// A failure that needs an operator waits the slow delay.
    struct NeedsOperator(Failing);

    impl Session for NeedsOperator {
        type Error = String;
        fn stream(&self) -> &StreamId {
            self.0.stream()
        }
        fn span(&self) -> Span {
            Span::none()
        }
        fn retry(&self) -> Retry {
            self.0.retry()
        }
        async fn run(&mut self, sink: &dyn FrameSink, health: &SourceHealth) -> Ended<String> {
            self.0.run(sink, health).await
        }
        fn needs_operator(_: &String) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_configuration_error_waits_the_slow_delay() {
        let runs = Arc::new(AtomicUsize::new(0));
        let s = NeedsOperator(Failing {
            stream: StreamId::main("y"),
            runs: runs.clone(),
            closes: Arc::default(),
        });
        let h = spawn(s, Arc::new(Ends::default()), Arc::new(SourceHealth::default()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        h.stop().await;
    }
}
