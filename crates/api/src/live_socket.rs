//! Live fragmented MP4 over a WebSocket: `GET /api/v1/cameras/{id}/live.mp4` with an upgrade.
//!
//! A browser opens at most six HTTP/1.1 connections to one host, and an fMP4 tile holds one for
//! as long as it plays, so a page could play at most six tiles over MSE (a 25-tile wall forced
//! onto MSE left most tiles waiting). WebSockets are not counted against that limit. The bytes
//! are exactly the HTTP response's; what the HTTP response says in its status and headers comes
//! first as one text message, since a browser's WebSocket cannot read either:
//!
//! ```text
//! {"stream": "main", "kbps": 4300}                     then binary messages: the fMP4 bytes
//! {"error": {"code": "...", "message": "...", "status": 403}}   then a close
//! ```
//!
//! The client sends nothing that matters: its messages are read (to notice a close) and
//! dropped, and any message larger than [`MAX_CLIENT_MESSAGE`] ends the socket.

use axum::extract::FromRequestParts;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

use crate::error::ApiError;
use crate::live::{KBPS_HEADER, STREAM_HEADER};

/// The largest message a viewer may send (it has nothing to say but close).
pub const MAX_CLIENT_MESSAGE: usize = 1024;

/// A WebSocket upgrade when the request asks for one (`Upgrade: websocket`), else nothing: the
/// same URL serves plain HTTP.
pub struct MaybeUpgrade(pub Option<WebSocketUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let asks = parts
            .headers
            .get(axum::http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if !asks {
            return Ok(MaybeUpgrade(None));
        }
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(|u| MaybeUpgrade(Some(u)))
            .map_err(|e| ApiError::bad_request(format!("WebSocket upgrade refused: {}", e.body_text())))
    }
}

/// Answers `upgrade` at once, then with what the HTTP request would have got once `answer` has
/// it: its headers as the first message and its body as binary messages, or its error as the
/// only message. The handshake does not wait for `answer`: browsers open one WebSocket to a host
/// at a time, so a wall's tiles would otherwise start one after another.
pub fn serve(
    upgrade: WebSocketUpgrade,
    camera: String,
    answer: impl Future<Output = Result<Response, ApiError>> + Send + 'static,
) -> Response {
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let span = tracing::debug_span!("live_socket", camera = %camera);
            let _ = tracing::Instrument::instrument(run(socket, answer), span).await;
        })
        .into_response()
}

/// Why a socket ended (logged at debug: a viewer closing is the normal end).
async fn run(
    mut socket: WebSocket,
    answer: impl Future<Output = Result<Response, ApiError>>,
) -> Result<(), axum::Error> {
    let response = match answer.await {
        Ok(r) => r,
        Err(e) => {
            let text = json!({"error": {"code": e.code, "message": e.message, "status": e.status.as_u16()}});
            socket.send(Message::Text(text.to_string().into())).await?;
            return socket.send(Message::Close(None)).await;
        }
    };
    let (parts, body) = response.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut head = json!({ "stream": header(STREAM_HEADER) });
    if let Some(kbps) = header(KBPS_HEADER).and_then(|k| k.parse::<u64>().ok()) {
        head["kbps"] = json!(kbps);
    }
    drop(parts);
    // Dropping the body (when the viewer goes) ends the viewing and audits its stop.
    let mut body = body.into_data_stream();
    socket.send(Message::Text(head.to_string().into())).await?;
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) => socket.send(Message::Binary(bytes)).await?,
                Some(Err(e)) => {
                    tracing::debug!("live stream ended: {e}");
                    return socket.send(Message::Close(None)).await;
                }
                None => return socket.send(Message::Close(None)).await,
            },
            msg = socket.recv() => match msg {
                None | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(_)) => {}
            },
        }
    }
}
