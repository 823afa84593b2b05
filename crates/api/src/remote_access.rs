//! What the API needs of the links to lower nodes, as a trait the node implements: admission of
//! live views across a link's budget, and the links' state. The API knows no HTTP client and no
//! cache; the `hierarchy` crate does.

use std::path::PathBuf;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use media::StreamKind;
use serde_json::Value;

/// Why a remote camera cannot be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The link's budget has no room (503 `link_budget`).
    #[error("{0}")]
    Budget(String),
    /// The lower node cannot be reached (503 `lower_unreachable`).
    #[error("{0}")]
    Unreachable(String),
    /// The lower node answered with an error (its status, code and message are passed on).
    #[error("{message}")]
    Lower {
        /// HTTP status.
        status: u16,
        /// Its error code.
        code: String,
        /// Its message, naming the lower node.
        message: String,
    },
}

/// The lower node's error codes passed on as they are; any other becomes `lower_error`.
const PASSED_ON: [&str; 11] = [
    "not_found",
    "nothing_recorded",
    "bad_request",
    "range_too_long",
    "forbidden",
    "no_video",
    "link_budget",
    "lower_unreachable",
    "not_ready",
    "not_built",
    "decode_failed",
];

impl From<RemoteError> for crate::error::ApiError {
    fn from(e: RemoteError) -> Self {
        use axum::http::StatusCode;
        let (status, code, message) = match e {
            RemoteError::Budget(m) => (StatusCode::SERVICE_UNAVAILABLE, "link_budget", m),
            RemoteError::Unreachable(m) => (StatusCode::SERVICE_UNAVAILABLE, "lower_unreachable", m),
            RemoteError::Lower { status, code, message } => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                PASSED_ON.into_iter().find(|c| *c == code).unwrap_or("lower_error"),
                message,
            ),
        };
        crate::error::ApiError::new(status, code, message)
    }
}

/// A request for a lower node's recorded video (playback, HLS, a segment's bytes, an export
/// package).
#[derive(Clone, Debug)]
pub struct RemoteRequest {
    /// Path and query on the lower node.
    pub path: String,
    /// The client's `Range`.
    pub range: Option<String>,
    /// A `HEAD`.
    pub head: bool,
    /// The user it is for (`alice@district-1`).
    pub who: String,
    /// The answer cannot change, so the temporary cache may keep it.
    pub cacheable: bool,
    /// Playback speed (the transfer needs the bitrate × this).
    pub speed: u32,
    /// How long the answer plays (the range ÷ speed), when it is a playback of a range.
    pub plays_for: Option<std::time::Duration>,
}

impl RemoteRequest {
    /// `path` on the lower node for a client's `method` and `headers` (its `Range`; `HEAD`
    /// asks for headers only), for `who`: not cacheable, at 1×, of unknown duration.
    pub fn for_client(path: String, method: &axum::http::Method, headers: &axum::http::HeaderMap, who: String) -> Self {
        RemoteRequest {
            path,
            range: headers
                .get(axum::http::header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            head: method == axum::http::Method::HEAD,
            who,
            cacheable: false,
            speed: 1,
            plays_for: None,
        }
    }
}

/// A lower node's recorded answer.
pub enum RemoteBody {
    /// From the temporary cache: a whole answer (`whole`: any range of it may be served) or
    /// one range's answer, replayed as it came.
    File {
        /// The cached bytes.
        path: PathBuf,
        /// Their length.
        len: u64,
        /// The lower node's headers.
        headers: Vec<(String, String)>,
        /// A whole answer, not a range of one.
        whole: bool,
    },
    /// Streamed from the lower node as it arrives.
    Stream {
        /// Its status.
        status: u16,
        /// Its headers.
        headers: Vec<(String, String)>,
        /// Its body.
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

/// What the node does for cameras of lower nodes.
pub trait RemoteAccess: Send + Sync {
    /// True for a camera of a lower node.
    fn is_remote(&self, camera: &str) -> bool;

    /// Fetches recorded video of `camera` from its lower node (or the temporary cache).
    fn recorded(&self, camera: &str, req: RemoteRequest) -> BoxFuture<'static, Result<RemoteBody, RemoteError>>;

    /// A JSON request about `camera` to its lower node (`GET` recordings, `POST` an export or a
    /// hold, `DELETE` a hold...), for `who`.
    fn call(
        &self,
        camera: &str,
        method: &str,
        path: String,
        body: Option<Value>,
        who: String,
    ) -> BoxFuture<'static, Result<Value, RemoteError>>;

    /// For a camera of a lower node, admits a live view of its `kind` stream across the link,
    /// on behalf of `who` (this node's user, for the lower node's audit): the stream to watch
    /// (the sub-stream when the main one does not fit) or why not. `None` for this node's own
    /// cameras.
    fn admit_live(&self, camera: &str, kind: StreamKind, who: &str) -> Option<Result<StreamKind, RemoteError>>;

    /// What a lower node last served for this node's pull of `stream` (the sub-stream, when its
    /// own link had room only for that), if it differs from `stream` itself; `None` for a
    /// camera of this node or while unknown.
    fn served(&self, stream: &media::StreamId) -> Option<StreamKind> {
        let _ = stream;
        None
    }

    /// The links, as `GET /api/v1/links` lists them.
    fn links(&self) -> Vec<Value>;

    /// A lower node dialing up on link `link` with `token`: what to run on the upgraded
    /// connection, or why it is refused (an unknown link, one that does not dial up, a wrong
    /// token: one answer for all, so nothing is revealed).
    fn tunnel(
        &self,
        link: &str,
        token: &str,
    ) -> Option<Box<dyn FnOnce(hyper::upgrade::Upgraded) -> BoxFuture<'static, ()> + Send>>;

    /// The temporary cache's figures for health (`bytes`, `max_bytes`, `entries`, `hits`,
    /// `misses`, `hit_rate`, ...).
    fn cache(&self) -> Value;
}
