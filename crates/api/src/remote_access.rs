//! What the API needs of the links to lower nodes, as a trait the node implements: admission of
//! live views across a link's budget, and the links' state. The API knows no HTTP client and no
//! cache; the `hierarchy` crate does.

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
const PASSED_ON: [&str; 9] = [
    "not_found",
    "nothing_recorded",
    "bad_request",
    "range_too_long",
    "forbidden",
    "no_video",
    "link_budget",
    "lower_unreachable",
    "not_ready",
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

/// What the node does for cameras of lower nodes.
pub trait RemoteAccess: Send + Sync {
    /// For a camera of a lower node, admits a live view of its `kind` stream across the link,
    /// on behalf of `who` (this node's user, for the lower node's audit): the stream to watch
    /// (the sub-stream when the main one does not fit) or why not. `None` for this node's own
    /// cameras.
    fn admit_live(&self, camera: &str, kind: StreamKind, who: &str) -> Option<Result<StreamKind, RemoteError>>;

    /// The links, as `GET /api/v1/links` lists them.
    fn links(&self) -> Vec<Value>;
}
