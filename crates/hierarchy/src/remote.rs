//! A camera of a lower node as a source: one pull of its live stream across the link
//! (`live.mp4?relay=1`), read back into frames, supervised like any camera (reconnect, backoff,
//! health), counted against the link's budget while it runs.

use std::sync::Arc;
use std::time::Duration;

use ingest::deliver::Delivery;
use ingest::supervisor::{self, Ended, Retry, SourceHandle};
use ingest::{FrameSink, SourceHealth};
use media::fmp4_stream::Fmp4StreamReader;
use media::{StreamId, StreamKind, WallTime};
use tracing::info;

use crate::budget::PullKey;
use crate::client::{Call, ClientError, next_chunk};
use crate::link::Link;

/// Why a pull from a lower node ended. Messages name the camera and the link.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The request failed.
    #[error("camera {camera}: {source}")]
    Request {
        /// Camera id.
        camera: String,
        /// What the client said.
        source: ClientError,
    },
    /// The stream broke or went silent.
    #[error("camera {camera}: the stream from lower node {link} ended: {detail}")]
    Stream {
        /// Camera id.
        camera: String,
        /// The link.
        link: String,
        /// What happened.
        detail: String,
    },
    /// The link went over its budget and this pull, among the newest, was shed.
    #[error(
        "camera {camera}: link {link} has been over its budget for {grace:?}; this pull, among the newest, was stopped and its viewers disconnected (they may ask again: they get the sub-stream or 503 link_budget). Raise the link's link_mbps if its cameras need more"
    )]
    Shed {
        /// Camera id.
        camera: String,
        /// The link.
        link: String,
        /// How long the link was over budget first.
        grace: Duration,
    },
}

/// How to pull a stream of a lower node's camera.
#[derive(Clone, Debug)]
pub struct RemoteSource {
    /// The link it crosses.
    pub link: Arc<Link>,
    /// The stream (camera id as the lower node names it).
    pub stream: StreamId,
    /// No data for this long ends the session.
    pub watchdog: Duration,
    /// Reconnect delays.
    pub retry: Retry,
    /// Frames above this size are dropped as corrupt.
    pub max_frame_bytes: usize,
}

impl RemoteSource {
    /// Starts the pull, delivering to `sink` and reporting into `health`; it counts against the
    /// link from now until [`RemoteSource::stopped`].
    pub fn spawn(&self, sink: Arc<dyn FrameSink>, health: Arc<SourceHealth>) -> SourceHandle {
        let who = self.link.pull_started(&self.stream);
        supervisor::spawn(
            RemoteSession {
                source: self.clone(),
                who,
            },
            sink,
            health,
        )
    }

    /// The pull stopped (its last viewer left): it no longer counts against the link.
    pub fn stopped(&self) {
        self.link.pull_stopped(&self.stream);
    }
}

/// One supervised pull.
struct RemoteSession {
    source: RemoteSource,
    /// The user the pull was first asked for (the lower node audits it as theirs).
    who: Option<String>,
}

impl supervisor::Session for RemoteSession {
    type Error = RemoteError;

    fn stream(&self) -> &StreamId {
        &self.source.stream
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "camera",
            id = self.source.stream.camera(),
            stream = self.source.stream.kind().as_str(),
            link = self.source.link.id()
        )
    }

    fn retry(&self) -> Retry {
        self.source.retry
    }

    async fn run(&mut self, sink: &dyn FrameSink, health: &SourceHealth) -> Ended<RemoteError> {
        let s = &self.source;
        let camera = s.stream.camera().to_owned();
        let link = s.link.id().to_owned();
        let shed = |camera, link| RemoteError::Shed {
            camera,
            link,
            grace: crate::link::OVER_BUDGET_GRACE,
        };
        if s.link.is_shed(&s.stream) {
            return Ended {
                delivered: false,
                error: shed(camera, link),
            };
        }
        let path = format!(
            "/api/v1/cameras/{}/live.mp4?stream={}&relay=1",
            camera,
            s.stream.kind().as_str()
        );
        let resp = match s.link.client().send(Call::get(path, self.who.as_deref())).await {
            Ok(r) => r,
            Err(source) => {
                return Ended {
                    delivered: false,
                    error: RemoteError::Request { camera, source },
                };
            }
        };
        // What the stream needs, as measured where it arrives: counted at least that here.
        if let Some(kbps) = resp
            .headers()
            .get("x-sharpeye-kbps")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|k| *k > 0)
        {
            s.link.declare(&s.stream, kbps);
        }
        // The lower node may have served the sub-stream (its own link's budget): the frames
        // are still this stream's here, and viewers are told which they get.
        let served = match resp.headers().get("x-sharpeye-stream").map(|v| v.as_bytes()) {
            Some(b"sub") => StreamKind::Sub,
            Some(b"main") => StreamKind::Main,
            _ => s.stream.kind(),
        };
        s.link.set_served(&s.stream, served);
        let mut body = resp.into_body();
        health.session_started();
        info!("camera {camera}: pulling from lower node {link}");
        let key = PullKey::Live(s.stream.clone());
        let mut reader = Fmp4StreamReader::new(s.stream.clone(), s.max_frame_bytes.saturating_add(1 << 16));
        let mut delivery = Delivery::new(&s.stream, link.clone(), sink, health, s.max_frame_bytes);
        let detail = loop {
            match next_chunk(&mut body, s.watchdog).await {
                Ok(Some(_)) if s.link.is_shed(&s.stream) => {
                    return Ended {
                        delivered: delivery.delivered,
                        error: shed(camera, link),
                    };
                }
                Ok(Some(chunk)) => {
                    s.link.crossed(&key, chunk.len() as u64);
                    let now = WallTime::now();
                    if let Err(e) = reader.push(&chunk, now) {
                        break e.to_string();
                    }
                    while let Some(f) = reader.poll() {
                        delivery.deliver_relayed(f, now);
                    }
                }
                Ok(None) => break "the lower node closed the stream".to_owned(),
                Err(e) => break e,
            }
        };
        Ended {
            delivered: delivery.delivered,
            error: RemoteError::Stream { camera, link, detail },
        }
    }
}
