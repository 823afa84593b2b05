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
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use serde_json::json;

use crate::error::ApiError;
use crate::live::{KBPS_HEADER, STREAM_HEADER};

/// The largest message a viewer may send (it has nothing to say but close).
pub const MAX_CLIENT_MESSAGE: usize = 1024;

/// Chunks of the body that are ready together go out as one message up to this size: a
/// frame's header and payload (two chunks) and a joining viewer's replayed GOP each become one
/// message, so the browser makes one `appendBuffer` where it made two per frame. On a 25-tile
/// wall, appends are what the page's one thread spends its start on.
pub const MAX_MESSAGE: usize = 4 << 20;

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
            chunk = body.next() => {
                let (message, ended) = match chunk {
                    Some(Ok(bytes)) => {
                        let (message, ended) = coalesce(bytes, &mut body);
                        (Some(message), ended)
                    }
                    Some(Err(e)) => (None, Some(Err(e))),
                    None => (None, Some(Ok(()))),
                };
                if let Some(message) = message {
                    socket.send(Message::Binary(message)).await?;
                }
                if let Some(end) = ended {
                    if let Err(e) = end {
                        tracing::debug!("live stream ended: {e}");
                    }
                    return socket.send(Message::Close(None)).await;
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `first` and whatever chunks of `body` are ready at once, up to [`MAX_MESSAGE`], as one
/// message; and how the body ended, if it did meanwhile (`Some(Ok)`: it finished).
fn coalesce<S, E>(first: Bytes, body: &mut S) -> (Bytes, Option<Result<(), E>>)
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut joined: Option<BytesMut> = None;
    let mut ended = None;
    while joined.as_ref().map_or(first.len(), BytesMut::len) < MAX_MESSAGE {
        match body.next().now_or_never() {
            Some(Some(Ok(more))) => joined
                .get_or_insert_with(|| {
                    let mut b = BytesMut::with_capacity(first.len() + more.len());
                    b.extend_from_slice(&first);
                    b
                })
                .extend_from_slice(&more),
            Some(Some(Err(e))) => {
                ended = Some(Err(e));
                break;
            }
            Some(None) => {
                ended = Some(Ok(()));
                break;
            }
            None => break,
        }
    }
    (joined.map_or(first, BytesMut::freeze), ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> Vec<Result<Bytes, std::io::Error>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Ok(Bytes::from(vec![i as u8; n])))
            .collect()
    }

    #[test]
    fn ready_chunks_become_one_message_in_order() {
        let mut body = futures::stream::iter(chunks(&[3, 5]));
        let (m, ended) = coalesce(Bytes::from_static(b"ab"), &mut body);
        assert_eq!(&m[..], b"ab\0\0\0\x01\x01\x01\x01\x01");
        assert!(matches!(ended, Some(Ok(()))), "the body finished meanwhile");
    }

    #[test]
    fn a_pending_body_sends_what_is_ready() {
        let mut body = futures::stream::iter(chunks(&[2])).chain(futures::stream::pending());
        let (m, ended) = coalesce(Bytes::from_static(b"x"), &mut body);
        assert_eq!(&m[..], b"x\0\0");
        assert!(ended.is_none());
    }

    #[test]
    fn messages_stop_growing_at_the_cap() {
        let mut body = futures::stream::iter(chunks(&[MAX_MESSAGE / 2, MAX_MESSAGE / 2, 10]));
        let (m, ended) = coalesce(Bytes::from_static(b"h"), &mut body);
        assert_eq!(
            m.len(),
            1 + MAX_MESSAGE,
            "the cap is checked before each chunk is added"
        );
        assert!(ended.is_none());
        let (rest, _) = coalesce(Bytes::new(), &mut body);
        assert_eq!(rest.len(), 10, "nothing is lost past the cap");
    }

    #[test]
    fn an_error_after_ready_chunks_keeps_them() {
        let mut items = chunks(&[4]);
        items.push(Err(std::io::Error::other("camera gone")));
        let mut body = futures::stream::iter(items);
        let (m, ended) = coalesce(Bytes::from_static(b"z"), &mut body);
        assert_eq!(m.len(), 5);
        assert!(matches!(ended, Some(Err(_))));
    }
}
