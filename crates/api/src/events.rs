//! The node's events: what happened (a camera going offline, a disk alarm, an export done, a
//! hold placed), numbered and written to the durable event log ([`eventlog`]) before they are
//! announced on a broadcast channel. `GET /api/v1/events` ([`crate::event_stream`]) follows the
//! channel and replays from the log (a reconnect's `Last-Event-ID`, a subscriber that fell
//! behind); webhooks ([`crate::webhooks`]) deliver from the log.

use std::path::Path;
use std::sync::{Arc, Mutex};

use eventlog::{EventLog, Limits, Stored};
use media::WallTime;
use serde_json::Value;
use tokio::sync::broadcast;

/// Events a live subscriber may fall behind before it reads from the log instead.
pub const BACKLOG: usize = 1024;

/// One event to publish.
#[derive(Clone, Debug)]
pub struct NodeEvent {
    /// `camera.online`, `camera.offline`, `camera.alarm`, `disk.alarm`, `export.done`,
    /// `export.failed`, `device.online`, `device.offline`, `wall.changed`, `hold.placed`, ...
    pub kind: &'static str,
    /// The camera concerned, if any.
    pub camera: Option<String>,
    /// The event's fields.
    pub data: Value,
}

/// The event log and its channel.
pub struct Events {
    log: EventLog,
    tx: broadcast::Sender<Arc<Stored>>,
    /// Held while numbering and announcing, so the channel carries events in number order.
    order: Mutex<()>,
    /// True once the node stops: open event streams end, so that they do not hold the HTTP
    /// server's graceful shutdown open (a dispatch room's screens never hang up by themselves).
    closed: tokio::sync::watch::Sender<bool>,
}

impl Events {
    /// The events of the log in `dir`, numbering on from its last.
    pub fn open(dir: &Path, limits: Limits) -> Result<Events, eventlog::EventLogError> {
        let opened = EventLog::open(dir, limits)?;
        tracing::info!(last_seq = opened.last_seq, cut_bytes = opened.cut_bytes, dir = %dir.display(), "event log opened");
        Ok(Events {
            log: opened.log,
            tx: broadcast::channel(BACKLOG).0,
            order: Mutex::new(()),
            closed: tokio::sync::watch::channel(false).0,
        })
    }

    /// Numbers, writes and announces an event.
    pub fn publish(&self, e: NodeEvent) -> Arc<Stored> {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self
            .log
            .append(WallTime::now().as_micros(), e.kind, e.camera.as_deref(), e.data);
        let _ = self.tx.send(stored.clone());
        stored
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stored>> {
        self.tx.subscribe()
    }

    /// The log, to replay from.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Ends every subscriber's stream (the node is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`Events::close`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}
