//! One RTSP session through `retina`, turned into [`Frame`]s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use media::{StreamId, StreamParams, WallTime};
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, UdpTransportOptions};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tracing::info;
use url::Url;

use crate::deliver::Delivery;
use crate::supervisor::{self, Ended, Retry, SourceHandle};
use crate::{FrameSink, SourceHealth};

/// How RTP travels from the camera.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: the default, reliable through NAT and firewalls.
    #[default]
    Tcp,
    /// Separate UDP ports: less latency on a clean LAN, lossy elsewhere.
    Udp,
}

/// How cameras are pulled: the node's `[ingest]` settings, shared by every source and
/// overridable per camera (the transport).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSettings {
    /// TCP or UDP (RTSP only).
    pub transport: RtspTransport,
    /// A session without a frame for this long is considered stalled and reopened.
    pub watchdog: Duration,
    /// Limit for each RTSP request (connect, DESCRIBE, SETUP, PLAY).
    pub request_timeout: Duration,
    /// Reconnect delays.
    pub retry: Retry,
    /// Frames larger than this are dropped as corrupt.
    pub max_frame_bytes: usize,
}

impl Default for PullSettings {
    /// TCP, 4 s watchdog, 5 s request timeout, reconnect 250 ms → 1.5 s (30 s for
    /// configuration errors), 16 MiB frame limit.
    fn default() -> Self {
        PullSettings {
            transport: RtspTransport::Tcp,
            watchdog: Duration::from_secs(4),
            request_timeout: Duration::from_secs(5),
            retry: Retry::default(),
            max_frame_bytes: 16 << 20,
        }
    }
}

/// Settings of one RTSP source.
#[derive(Clone, Debug)]
pub struct RtspSourceConfig {
    /// The stream the frames belong to.
    pub stream: StreamId,
    /// The camera URL; user name and password in it are used for RTSP authentication and never
    /// logged.
    pub url: Url,
    /// Transport, timeouts, reconnect delays, frame limit.
    pub pull: PullSettings,
}

impl RtspSourceConfig {
    /// `stream` at `url` with the default [`PullSettings`].
    pub fn new(stream: StreamId, url: Url) -> Self {
        RtspSourceConfig {
            stream,
            url,
            pull: PullSettings::default(),
        }
    }

    /// `host:port` of the camera, for messages (never includes credentials).
    pub fn peer(&self) -> String {
        format!(
            "{}:{}",
            self.url.host_str().unwrap_or("?"),
            self.url.port().unwrap_or(554)
        )
    }
}

/// Why a session ended. Every message names the camera and the peer and, where there is one,
/// what the operator should do.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// TCP connection failed.
    #[error(
        "camera {camera}: cannot connect to {peer} ({detail}): check that the camera is powered and reachable and that its url in the config is right"
    )]
    Connect {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
        /// The socket error.
        detail: String,
    },
    /// RTSP 401.
    #[error(
        "camera {camera}: RTSP 401 Unauthorized from {peer}: check the user name and password in the camera's url in the config"
    )]
    Unauthorized {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
    },
    /// RTSP 404.
    #[error("camera {camera}: RTSP 404 Not Found from {peer}: check the stream path in the camera's url in the config")]
    NotFound {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
    },
    /// Another RTSP error status.
    #[error("camera {camera}: RTSP {status} from {peer}: {detail}")]
    Status {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
        /// The status code.
        status: u16,
        /// retina's description.
        detail: String,
    },
    /// No frame within the watchdog interval.
    #[error("camera {camera}: no frames for {secs:.1} s from {peer}: the camera stalled; reconnecting")]
    Stalled {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
        /// The watchdog interval.
        secs: f64,
    },
    /// An RTSP request got no answer in time.
    #[error(
        "camera {camera}: no answer from {peer} to {step} within {secs:.1} s: check the network path to the camera"
    )]
    Timeout {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
        /// Which request.
        step: &'static str,
        /// The limit.
        secs: f64,
    },
    /// The camera offers no usable video stream.
    #[error(
        "camera {camera}: {peer} offers no H.264 or H.265 video stream (found: {found}): set the camera's encoder to H.264 or H.265"
    )]
    NoVideo {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
        /// The streams it did offer.
        found: String,
    },
    /// The parameter sets cannot be parsed.
    #[error(
        "camera {camera}: unusable codec parameters from {peer}: {source}: check the camera's encoder settings or firmware"
    )]
    BadParams {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
        /// The parser's error.
        source: media::ParamsError,
    },
    /// Corrupt RTP, a protocol violation or a dropped connection inside a session.
    #[error("camera {camera}: stream from {peer} failed: {detail}")]
    Stream {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
        /// retina's description.
        detail: String,
    },
    /// The camera ended the session cleanly.
    #[error("camera {camera}: {peer} ended the session")]
    Closed {
        /// Camera id.
        camera: String,
        /// host:port.
        peer: String,
    },
}

impl IngestError {
    /// True for failures that reconnecting soon cannot fix: the configuration or the camera's
    /// set-up must change first.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            IngestError::Unauthorized { .. } | IngestError::NotFound { .. } | IngestError::NoVideo { .. }
        )
    }

    fn from_retina(cfg: &RtspSourceConfig, e: &retina::Error) -> Self {
        let camera = cfg.stream.camera().to_owned();
        let peer = cfg.peer();
        let detail = e.to_string();
        match e.status_code() {
            Some(401) => IngestError::Unauthorized { camera, peer },
            Some(404) => IngestError::NotFound { camera, peer },
            Some(status) => IngestError::Status {
                camera,
                peer,
                status,
                detail,
            },
            // retina reports socket failures as "Unable to connect to RTSP server: ...".
            None if detail.contains("Unable to connect") => IngestError::Connect { camera, peer, detail },
            None => IngestError::Stream { camera, peer, detail },
        }
    }
}

/// Splits credentials out of the URL: retina takes them separately, and they must never be
/// logged.
fn split_credentials(url: &Url) -> (Url, Option<retina::client::Credentials>) {
    if url.username().is_empty() {
        return (url.clone(), None);
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let creds = retina::client::Credentials {
        username: decode(url.username()),
        password: decode(url.password().unwrap_or("")),
    };
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    (bare, Some(creds))
}

fn params_of(p: Option<ParametersRef<'_>>) -> Option<Result<StreamParams, media::ParamsError>> {
    let Some(ParametersRef::Video(v)) = p else {
        return None;
    };
    match v.codec_params() {
        VideoParametersCodec::H264 { sps, pps } => Some(StreamParams::h264(sps, pps)),
        VideoParametersCodec::H265 { vps, sps, pps } => Some(StreamParams::h265(vps, sps, pps)),
        _ => None,
    }
}

async fn step<T>(
    cfg: &RtspSourceConfig,
    name: &'static str,
    fut: impl Future<Output = Result<T, retina::Error>>,
) -> Result<T, IngestError> {
    match tokio::time::timeout(cfg.pull.request_timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(IngestError::from_retina(cfg, &e)),
        Err(_) => Err(IngestError::Timeout {
            camera: cfg.stream.camera().to_owned(),
            peer: cfg.peer(),
            step: name,
            secs: cfg.pull.request_timeout.as_secs_f64(),
        }),
    }
}

/// An RTSP camera as a [`supervisor::Session`].
pub struct RtspSession(pub RtspSourceConfig);

impl supervisor::Session for RtspSession {
    type Error = IngestError;

    fn stream(&self) -> &StreamId {
        &self.0.stream
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "camera",
            id = self.0.stream.camera(),
            stream = self.0.stream.kind().as_str()
        )
    }

    fn retry(&self) -> Retry {
        self.0.pull.retry
    }

    async fn run(&mut self, sink: &dyn FrameSink, health: &SourceHealth) -> Ended<IngestError> {
        let cfg = &self.0;
        let mut delivered = false;
        let error = match session(cfg, sink, health, &mut delivered).await {
            Ok(()) => IngestError::Closed {
                camera: cfg.stream.camera().to_owned(),
                peer: cfg.peer(),
            },
            Err(e) => e,
        };
        Ended { delivered, error }
    }

    fn needs_operator(error: &IngestError) -> bool {
        error.needs_operator()
    }
}

/// Starts supervising an RTSP source that delivers to `sink`, reporting into `health`.
pub fn spawn_rtsp(cfg: RtspSourceConfig, sink: Arc<dyn FrameSink>, health: Arc<SourceHealth>) -> SourceHandle {
    supervisor::spawn(RtspSession(cfg), sink, health)
}

async fn session(
    cfg: &RtspSourceConfig,
    sink: &dyn FrameSink,
    health: &SourceHealth,
    delivered: &mut bool,
) -> Result<(), IngestError> {
    let camera = cfg.stream.camera();
    let (url, creds) = split_credentials(&cfg.url);
    let opts = SessionOptions::default().creds(creds).user_agent("sharpeye".to_owned());
    let mut session = step(cfg, "DESCRIBE", Session::describe(url, opts)).await?;
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"));
    let Some(video) = video else {
        let found = session
            .streams()
            .iter()
            .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(IngestError::NoVideo {
            camera: camera.to_owned(),
            peer: cfg.peer(),
            found,
        });
    };
    let transport = match cfg.pull.transport {
        RtspTransport::Tcp => retina::client::Transport::Tcp(TcpTransportOptions::default()),
        RtspTransport::Udp => retina::client::Transport::Udp(UdpTransportOptions::default()),
    };
    let setup = SetupOptions::default()
        .transport(transport)
        .frame_format(FrameFormat::MP4);
    step(cfg, "SETUP", session.setup(video, setup)).await?;
    let playing = step(cfg, "PLAY", session.play(PlayOptions::default())).await?;
    let mut demuxed = playing.demuxed().map_err(|e| IngestError::from_retina(cfg, &e))?;
    health.session_started();
    info!(peer = %cfg.peer(), transport = ?cfg.pull.transport, "camera {camera}: session playing");

    let mut delivery = Delivery::new(&cfg.stream, cfg.peer(), sink, health, cfg.pull.max_frame_bytes);
    let result = loop {
        let item = match tokio::time::timeout(cfg.pull.watchdog, demuxed.next()).await {
            Err(_) => {
                break Err(IngestError::Stalled {
                    camera: camera.to_owned(),
                    peer: cfg.peer(),
                    secs: cfg.pull.watchdog.as_secs_f64(),
                });
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(IngestError::from_retina(cfg, &e)),
            Ok(Some(Ok(item))) => item,
        };
        let CodecItem::VideoFrame(f) = item else {
            continue;
        };
        if f.stream_id() != video {
            continue;
        }
        let arrival = WallTime::now();
        if !delivery.has_params() || f.has_new_parameters() {
            match params_of(demuxed.streams()[video].parameters()) {
                Some(Ok(p)) => delivery.set_params(Arc::new(p)),
                Some(Err(source)) => {
                    break Err(IngestError::BadParams {
                        camera: camera.to_owned(),
                        peer: cfg.peer(),
                        source,
                    });
                }
                None => {
                    break Err(IngestError::Stream {
                        camera: camera.to_owned(),
                        peer: cfg.peer(),
                        detail: "frame without H.264/H.265 parameters".into(),
                    });
                }
            }
        }
        let media_time = f.timestamp().timestamp();
        let key = f.is_random_access_point();
        delivery.deliver(media_time, key, Bytes::from(f.into_data()), arrival);
    };
    *delivered |= delivery.delivered;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_and_decoded() {
        let u = Url::parse("rtsp://ad%40min:p%3Ass@10.0.0.5:8554/stream1").unwrap();
        let (bare, creds) = split_credentials(&u);
        assert_eq!(bare.as_str(), "rtsp://10.0.0.5:8554/stream1");
        let c = creds.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("ad@min", "p:ss"));
        let (_, none) = split_credentials(&Url::parse("rtsp://10.0.0.5/s").unwrap());
        assert!(none.is_none());
    }

    #[test]
    fn peer_never_shows_credentials() {
        let cfg = RtspSourceConfig::new(StreamId::main("c"), Url::parse("rtsp://u:secret@cam.local/s").unwrap());
        assert_eq!(cfg.peer(), "cam.local:554");
    }
}
