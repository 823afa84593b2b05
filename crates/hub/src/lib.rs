//! Live fan-out: per (camera, stream) one [`Channel`] fed by one upstream pull, whatever the
//! number of viewers.
//!
//! * [`demand`]: when the pull runs (sans-IO: viewer events and time in, start/stop out).
//! * [`channel`]: the fan-out with its GOP cache and bounded per-viewer queues.
//! * [`Hub`]: the node's channels, the per-node viewer cap and the ticker that stops idle pulls.
//!
//! The hub knows nothing of RTSP or HTTP: the binary gives it a function that starts and stops
//! pulls, and outputs (live.mp4, RTSP re-serve, WHEP) join channels as viewers.

pub mod channel;
pub mod demand;
mod rate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

pub use channel::{Channel, ChannelLimits, ChannelStats, JoinError, Output, Subscription};
pub use demand::{Action, Demand};
use media::StreamId;

/// Starts (`Action::Start`) or stops (`Action::Stop`) a stream's pull.
pub type Control = Arc<dyn Fn(&StreamId, Action) + Send + Sync>;

/// How a stream's pull is driven.
#[derive(Copy, Clone, Debug)]
pub struct StreamPolicy {
    /// Recorded streams run always.
    pub pinned: bool,
    /// An on-demand pull stops this long after its last viewer.
    pub idle: Duration,
}

/// The node's live channels.
pub struct Hub {
    /// Cameras can be added at run time (GB/T 28181 catalogs): behind a lock read on every
    /// join and tick, written only when a stream is added.
    channels: RwLock<HashMap<StreamId, Arc<Channel>>>,
    limits: ChannelLimits,
    control: Control,
    max_viewers: usize,
    viewers: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("channels", &self.read().len()).finish()
    }
}

/// A viewer of the hub: a channel subscription that also counts against the node's cap.
#[derive(Debug)]
pub struct Viewer {
    sub: Subscription,
    _slot: NodeSlot,
}

#[derive(Debug)]
struct NodeSlot(Arc<AtomicUsize>);

impl Drop for NodeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Viewer {
    /// The next frame; `None` once the viewer was dropped for not reading.
    pub async fn recv(&mut self) -> Option<media::Frame> {
        self.sub.recv().await
    }

    /// The channel watched.
    pub fn channel(&self) -> &Arc<Channel> {
        self.sub.channel()
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<media::Frame> {
        self.sub.try_recv()
    }
}

impl Hub {
    /// A hub for `streams`, each with its policy; `control` starts and stops pulls; at most
    /// `max_viewers` viewers on the node.
    pub fn new(
        streams: impl IntoIterator<Item = (StreamId, StreamPolicy)>,
        limits: ChannelLimits,
        max_viewers: usize,
        control: Control,
    ) -> Arc<Hub> {
        let channels = streams
            .into_iter()
            .map(|(s, p)| {
                let ch = Channel::new(s.clone(), limits, Demand::new(p.idle, p.pinned), control.clone());
                (s, ch)
            })
            .collect();
        Arc::new(Hub {
            channels: RwLock::new(channels),
            limits,
            control,
            max_viewers,
            viewers: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Starts pinned streams' pulls and a ticker that stops idle ones; the ticker ends with the
    /// hub. Needs a tokio runtime.
    pub fn start(self: &Arc<Self>) {
        let now = Instant::now();
        for c in self.channels() {
            c.tick(now);
        }
        let weak: Weak<Hub> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let Some(hub) = weak.upgrade() else { return };
                let now = Instant::now();
                for c in hub.channels() {
                    c.tick(now);
                }
            }
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<StreamId, Arc<Channel>>> {
        // The map is only inserted into; a panicked writer leaves it whole.
        self.channels.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel of `stream`.
    pub fn channel(&self, stream: &StreamId) -> Option<Arc<Channel>> {
        self.read().get(stream).cloned()
    }

    /// Every channel.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.read().values().cloned().collect()
    }

    /// Adds a stream found at run time (a pinned one starts at once; needs the runtime the
    /// hub was started on). An existing stream is left as it is.
    pub fn add_stream(&self, stream: StreamId, policy: StreamPolicy) -> Arc<Channel> {
        let ch = {
            let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
            if let Some(ch) = map.get(&stream) {
                return ch.clone();
            }
            let ch = Channel::new(
                stream.clone(),
                self.limits,
                Demand::new(policy.idle, policy.pinned),
                self.control.clone(),
            );
            map.insert(stream, ch.clone());
            ch
        };
        // Outside the lock: the control may look the channel up.
        ch.tick(Instant::now());
        ch
    }

    /// Removes a stream (its camera is gone: a lower node stopped sharing it). Its viewers get
    /// nothing more; the caller stops its pull.
    pub fn remove_stream(&self, stream: &StreamId) -> Option<Arc<Channel>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner()).remove(stream)
    }

    /// Joins `stream` as a viewer through `output`.
    pub fn watch(&self, stream: &StreamId, output: Output) -> Result<Viewer, JoinError> {
        let ch = self.channel(stream).ok_or_else(|| JoinError::Unknown {
            stream: stream.to_string(),
        })?;
        if self.viewers.fetch_add(1, Ordering::Relaxed) >= self.max_viewers {
            self.viewers.fetch_sub(1, Ordering::Relaxed);
            return Err(JoinError::NodeFull { max: self.max_viewers });
        }
        let slot = NodeSlot(self.viewers.clone());
        let sub = ch.join(output)?;
        Ok(Viewer { sub, _slot: slot })
    }

    /// Viewers on the node.
    pub fn viewer_count(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }
}
