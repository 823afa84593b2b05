//! The node's events: what happened (a camera going offline, a disk alarm, an export done),
//! published on a broadcast channel that `GET /api/v1/events` ([`crate::event_stream`]) and
//! other listeners subscribe to; a subscriber that falls more than [`BACKLOG`] events behind is
//! told how many it missed rather than slowing the others.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for slow subscribers.
pub const BACKLOG: usize = 1024;

/// One event.
#[derive(Clone, Debug)]
pub struct NodeEvent {
    /// `camera.online`, `camera.offline`, `camera.alarm`, `disk.alarm`, `export.done`,
    /// `export.failed`, `device.online`, `device.offline`, `wall.changed`.
    pub kind: &'static str,
    /// The camera concerned, if any.
    pub camera: Option<String>,
    /// The event's fields.
    pub data: Value,
}

/// The event channel.
pub struct Events {
    tx: broadcast::Sender<Arc<NodeEvent>>,
    /// True once the node stops: open event streams end, so that they do not hold the HTTP
    /// server's graceful shutdown open (a dispatch room's screens never hang up by themselves).
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
            closed: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Events {
    /// Publishes an event to current subscribers.
    pub fn publish(&self, e: NodeEvent) {
        let _ = self.tx.send(Arc::new(e));
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<NodeEvent>> {
        self.tx.subscribe()
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
