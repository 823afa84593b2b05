//! Live video out over HTTP: `live.mp4`, a fragmented MP4 that starts on a key frame and goes
//! on for as long as the client reads (ffplay, VLC, MSE in browsers).

use std::collections::HashMap;
use std::sync::Arc;

use auth::MediaAction;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use media::Frame;
use media::fmp4::{Sample, write_fragment_header, write_ftyp, write_moov};

use crate::ApiError;
use crate::access::{Caller, ClientIp, Viewing, media_caller};
use crate::playback::stream_of;
use crate::state::AppState;

/// `GET /api/v1/cameras/{id}/live.mp4[?stream=sub]`.
pub async fn live_mp4(
    State(state): State<Arc<AppState>>,
    Path(camera): Path<String>,
    headers: HeaderMap,
    ip: ClientIp,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (caller, _) = media_caller(&state, &headers, &q, ip, &camera, MediaAction::Live)?;
    let stream = stream_of(&q, &camera)?;
    let Some(hub) = state.hub.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_live",
            "live view is not enabled on this node",
        ));
    };
    let (viewer, first) = first_key_frame(&state, &hub, &stream, &camera, hub::Output::Mp4).await?;
    let viewing = start_viewing(&state, &caller, &stream, "mp4").await?;
    fragmented_mp4(FrameSource::Live(viewer), first, Box::new(viewing))
}

/// A chunked fragmented-MP4 answer of `source`'s frames from `first` (a key frame) on;
/// `guard` lives as long as the response (it audits the end of a live viewing).
pub(crate) fn fragmented_mp4(source: FrameSource, first: Frame, guard: Box<dyn Send>) -> Result<Response, ApiError> {
    let mut init = Vec::with_capacity(1024);
    write_ftyp(&mut init).map_err(ApiError::internal)?;
    write_moov(&first.params, &mut init).map_err(ApiError::internal)?;
    let body = futures::stream::unfold(
        Fragmenter {
            viewer: source,
            held: Some(first),
            origin: None,
            sequence: 1,
            init: Some(Bytes::from(init)),
            payload: None,
            _guard: guard,
        },
        |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((Ok::<Bytes, std::io::Error>(chunk), f))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "video/mp4"), (header::CACHE_CONTROL, "no-store")],
        Body::from_stream(body),
    )
        .into_response())
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

/// Where a fragmented MP4's frames come from.
pub(crate) enum FrameSource {
    /// A live channel.
    Live(hub::Viewer),
    /// A recording a GB/T 28181 device is sending.
    Device(crate::devices::DevicePlayback),
}

impl FrameSource {
    async fn recv(&mut self) -> Option<Frame> {
        match self {
            FrameSource::Live(v) => v.recv().await,
            FrameSource::Device(p) => p.frames.recv().await,
        }
    }
}

/// Turns a source's frames into `moof`+`mdat` chunks, one per frame. A frame is sent when the
/// next arrives, which gives its exact duration (one frame of latency).
struct Fragmenter {
    viewer: FrameSource,
    held: Option<Frame>,
    /// Media time of the first frame: the file's time zero.
    origin: Option<i64>,
    sequence: u32,
    init: Option<Bytes>,
    /// A frame's payload, sent as its own chunk after its header so it is never copied.
    payload: Option<Bytes>,
    /// Lives as long as the response (audits the end of a live viewing, hangs up a device).
    _guard: Box<dyn Send>,
}

/// Audits the start of a live viewing (durably: if it cannot be audited it is not served) and
/// returns the guard that audits its end.
async fn start_viewing(
    state: &AppState,
    caller: &Caller,
    stream: &media::StreamId,
    output: &str,
) -> Result<Viewing, ApiError> {
    let mut e = caller.event("live.start", Some(stream.camera()));
    e.detail = serde_json::json!({ "stream": stream.kind().as_str(), "output": output });
    Viewing::start(state.audit.clone(), e).await.map_err(|err| {
        tracing::error!("audit log: {err}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log cannot be written, so live view is refused; see the server log",
        )
    })
}

impl Fragmenter {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.init.take().or_else(|| self.payload.take()) {
            return Some(first);
        }
        let held = self.held.take()?;
        let next = self.viewer.recv().await?;
        // A new run or new codec parameters need a new init segment: end this response and let
        // the client reconnect (players do).
        if next.discontinuity || (!Arc::ptr_eq(&next.params, &held.params) && *next.params != *held.params) {
            return None;
        }
        let origin = *self.origin.get_or_insert(held.media_time);
        let duration = (next.media_time - held.media_time).clamp(1, i64::from(u32::MAX)) as u32;
        let mut out = Vec::with_capacity(128);
        write_fragment_header(
            &mut out,
            self.sequence,
            (held.media_time - origin).max(0) as u64,
            &[Sample {
                duration,
                size: held.data.len() as u32,
                key: held.key,
            }],
            None,
        )
        .ok()?;
        self.payload = Some(held.data.clone());
        self.sequence = self.sequence.wrapping_add(1);
        self.held = Some(next);
        Some(Bytes::from(out))
    }
}

/// `POST /api/v1/cameras/{id}/whep[?stream=sub]`: an SDP offer in (`application/sdp`), 201 with
/// the SDP answer and the session's URL in `Location` out. The session is a hub viewer.
pub async fn whep_offer(
    State(state): State<Arc<AppState>>,
    Path(camera): Path<String>,
    headers: HeaderMap,
    ip: ClientIp,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (caller, _) = media_caller(&state, &headers, &q, ip, &camera, MediaAction::Live)?;
    let stream = stream_of(&q, &camera)?;
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
    let viewing = start_viewing(&state, &caller, &stream, "webrtc").await?;
    let (id, answer) = whep
        .create(offer, viewer, first, Box::new(viewing))
        .await
        .map_err(|e| match e {
            whep::WhepError::Io(e) => ApiError::internal(e),
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
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))?;
    // The session's end (live.stop) is audited by the session itself when it stops.
    media_caller(&state, &headers, &q, ip, &camera, MediaAction::Live)?;
    match &state.whep {
        Some(w) if w.end(&session) => Ok(StatusCode::OK.into_response()),
        _ => Err(ApiError::not_found("no such WebRTC session")),
    }
}
