//! Live video out over HTTP: `live.mp4`, a fragmented MP4 that starts on a key frame and goes
//! on for as long as the client reads (ffplay, VLC, MSE in browsers).

use std::sync::Arc;

use auth::MediaAction;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use media::{Frame, StreamId};

use crate::access::{Caller, ClientIp, media_caller};
use crate::audit::start_viewing;
use crate::error::ApiError;
use crate::fragmented::{FrameSource, fragmented_mp4, relay_mp4};
use crate::live_socket::{self, MaybeUpgrade};
use crate::request::{QueryMap, query, stream_of};
use crate::state::AppState;

/// `GET /api/v1/cameras/{id}/live.mp4[?stream=sub]`.
pub async fn live_mp4(
    State(state): State<Arc<AppState>>,
    Path(camera): Path<String>,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
    upgrade: MaybeUpgrade,
) -> Result<Response, ApiError> {
    match upgrade.0 {
        // A browser's wall: the same answer over a WebSocket (see `crate::live_socket`), worked
        // out after the handshake: a browser opens one WebSocket to a host at a time, and an
        // on-demand stream's first key frame can take a second.
        Some(ws) => Ok(live_socket::serve(ws, camera.clone(), async move {
            live_mp4_response(&state, &camera, &headers, ip, q).await
        })),
        None => live_mp4_response(&state, &camera, &headers, ip, q).await,
    }
}

/// What `live.mp4` answers over HTTP.
async fn live_mp4_response(
    state: &Arc<AppState>,
    camera: &str,
    headers: &HeaderMap,
    ip: ClientIp,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (caller, _) = media_caller(state, headers, &q, ip, camera, MediaAction::Live)?;
    let relay = match q.get("relay").map(String::as_str) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "relay: expected 1 (a stream for another node) or 0",
            ));
        }
    };
    let stream = admit(state, &caller, stream_of(&q, camera)?)?;
    let Some(hub) = state.hub.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_live",
            "live view is not enabled on this node",
        ));
    };
    let (viewer, first) = first_key_frame(state, &hub, &stream, camera, hub::Output::Mp4).await?;
    let output = if relay { "relay" } else { "mp4" };
    let viewing = start_viewing(
        state,
        &caller.who.actor(),
        caller.ip,
        caller.on_behalf_of.clone(),
        &stream,
        output,
    )
    .await?;
    let mut r = if relay {
        relay_mp4(FrameSource::Live(viewer), first, Box::new(viewing))?
    } else {
        fragmented_mp4(FrameSource::Live(viewer), first, Box::new(viewing))?
    };
    // Below, the lower node may have fallen back to the sub-stream on its own link.
    let served = state
        .remote
        .as_ref()
        .and_then(|r| r.served(&stream))
        .unwrap_or(stream.kind());
    r.headers_mut()
        .insert(STREAM_HEADER, axum::http::HeaderValue::from_static(served.as_str()));
    if let Some(kbps) = hub.channel(&stream).and_then(|c| c.kbps()) {
        r.headers_mut().insert(KBPS_HEADER, axum::http::HeaderValue::from(kbps));
    }
    Ok(r)
}

/// The response header naming the stream served (`sub` when a link's budget had room only for
/// the sub-stream).
pub const STREAM_HEADER: &str = "x-sharpeye-stream";

/// The response header with the stream's bitrate as last measured arriving at this node,
/// kbit/s, when known: the upper node pulling it counts it at this against its link.
pub const KBPS_HEADER: &str = "x-sharpeye-kbps";

/// The stream a live view of `stream` gets: itself, or for a camera of a lower node what its
/// link admits (the sub-stream when the main one does not fit), or a 503 `link_budget`.
pub(crate) fn admit(state: &AppState, caller: &Caller, stream: StreamId) -> Result<StreamId, ApiError> {
    let Some(remote) = &state.remote else { return Ok(stream) };
    match remote.admit_live(stream.camera(), stream.kind(), &caller.end_user(&state.node.id)) {
        None => Ok(stream),
        Some(Ok(kind)) => Ok(StreamId::new(stream.camera(), kind)),
        Some(Err(e)) => Err(e.into()),
    }
}

/// Joins `stream` and waits for its first key frame (up to `[live] start_timeout`); the errors
/// are the API's answers (404 unknown stream, 503 full or no video, with the camera's last
/// error).
async fn first_key_frame(
    state: &AppState,
    hub: &hub::Hub,
    stream: &media::StreamId,
    camera: &str,
    output: hub::Output,
) -> Result<(hub::Viewer, Frame), ApiError> {
    let mut viewer = hub.watch(stream, output).map_err(|e| match e {
        hub::JoinError::Unknown { .. } => {
            ApiError::not_found(format!("camera {camera} has no {} stream", stream.kind().as_str()))
        }
        other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_viewers", other.to_string()),
    })?;
    match tokio::time::timeout(state.live_start_timeout, viewer.recv()).await {
        Ok(Some(f)) => Ok((viewer, f)),
        Ok(None) | Err(_) => {
            let why = state
                .cameras
                .get(camera)
                .and_then(|c| c.main.as_ref().and_then(|h| h.snapshot().last_error))
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_video",
                format!(
                    "camera {camera} sent no key frame within {} s{why}",
                    state.live_start_timeout.as_secs_f32()
                ),
            ))
        }
    }
}

/// `POST /api/v1/cameras/{id}/whep[?stream=sub]`: an SDP offer in (`application/sdp`), 201 with
/// the SDP answer and the session's URL in `Location` out. The session is a hub viewer.
pub async fn whep_offer(
    State(state): State<Arc<AppState>>,
    Path(camera): Path<String>,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (caller, _) = media_caller(&state, &headers, &q, ip, &camera, MediaAction::Live)?;
    let stream = admit(&state, &caller, stream_of(&q, &camera)?)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the SDP offer as Content-Type: application/sdp",
        ));
    }
    let offer = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the SDP offer is not UTF-8"))?;
    let (Some(hub), Some(whep)) = (state.hub.clone(), state.whep.clone()) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_live",
            "WebRTC is not enabled on this node",
        ));
    };
    // A bad offer is refused before the camera is joined or the viewing audited.
    whep::Whep::check_offer(offer).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (viewer, first) = first_key_frame(&state, &hub, &stream, &camera, hub::Output::Webrtc).await?;
    let viewing = start_viewing(
        &state,
        &caller.who.actor(),
        caller.ip,
        caller.on_behalf_of.clone(),
        &stream,
        "webrtc",
    )
    .await?;
    let (id, answer) = whep
        .create(offer, viewer, first, Box::new(viewing))
        .await
        .map_err(|e| match e {
            whep::WhepError::Io(e) => ApiError::internal(e),
            // A player falls back on this (fMP4, the sub-stream): say so with its own code.
            whep::WhepError::Codec(c) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "codec",
                format!("camera {camera}: its {} stream cannot go over WebRTC; use live.mp4 or the H.264 sub-stream (?stream=sub)", c.as_str()),
            ),
            other => ApiError::bad_request(other.to_string()),
        })?;
    let location = format!("/api/v1/cameras/{camera}/whep/{id}");
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response())
}

/// `DELETE /api/v1/cameras/{id}/whep/{session}`: ends a WebRTC session.
pub async fn whep_end(
    State(state): State<Arc<AppState>>,
    Path((camera, session)): Path<(String, String)>,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    // The session's end (live.stop) is audited by the session itself when it stops.
    media_caller(&state, &headers, &q, ip, &camera, MediaAction::Live)?;
    match &state.whep {
        Some(w) if w.end(&session) => Ok(StatusCode::OK.into_response()),
        _ => Err(ApiError::not_found("no such WebRTC session")),
    }
}
