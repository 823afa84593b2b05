//! The HTTP API (axum), mounted by the binary.
//!
//! Every `/api/v1` endpoint except `login` requires a bearer token; errors are JSON
//! `{"error":{"code","message"}}` with the right status, including for unknown routes, wrong
//! methods, oversized bodies and handler panics. The contract is `docs/api.md`.

mod error;
pub mod exports;
pub mod handlers;
mod holds;
mod live;
mod metrics;
pub mod playback;
mod ranged;
mod state;
pub mod time;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use state::{AppState, CameraEntry, CameraInfo};

/// Largest request body the API accepts (JSON requests are small).
pub const MAX_BODY: usize = 64 * 1024;

/// The router for `state`: `/api/v1/...`, `/metrics`, `/healthz` and the web page at `/`.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/login", post(handlers::login))
        .route("/logout", post(handlers::logout))
        .route("/health", get(handlers::health))
        .route("/cameras", get(handlers::cameras))
        .route("/cameras/{id}", get(handlers::camera_detail))
        .route("/cameras/{id}/recordings", get(handlers::recordings))
        .route("/cameras/{id}/playback.mp4", get(playback::playback_mp4))
        .route("/cameras/{id}/playback.m3u8", get(playback::playback_m3u8))
        .route("/cameras/{id}/live.mp4", get(live::live_mp4))
        .route("/cameras/{id}/whep", post(live::whep_offer))
        .route("/cameras/{id}/whep/{session}", axum::routing::delete(live::whep_end))
        .route("/cameras/{id}/segments/{file}", get(playback::segment_file))
        .route("/cameras/{id}/media-token", post(playback::media_token))
        .route("/exports", post(exports::create).get(exports::list))
        .route("/exports/{id}", get(exports::status))
        .route("/exports/{id}/download", get(exports::download))
        .route("/holds", post(holds::create).get(holds::list))
        .route("/holds/{id}", axum::routing::delete(holds::release));
    Router::new()
        .nest("/api/v1", v1)
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(|| async { Html(include_str!("../static/index.html")) }))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1 in docs/api.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(CatchPanicLayer::custom(|_| -> Response {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the server log",
            )
            .into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
