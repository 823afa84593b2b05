//! `GET /api/v1/cameras/{id}/snapshot.jpg[?at=][&stream=]`: a JPEG of the live picture, or of
//! the recorded instant `at` (decoded from the key frame before it, so it is that frame, not
//! the nearest key frame). For incident records and grid-system pages. Decoding is the
//! `transcode` crate's (GStreamer, the `gstreamer` feature); a build without it answers 501
//! naming the feature, after the caller's rights are checked as for any other request.

use std::sync::Arc;
use std::time::Duration;

use auth::MediaAction;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::{Frame, StreamId, WallTime};
use serde_json::json;

use crate::access::{ClientIp, media_caller};
use crate::error::ApiError;
use crate::request::{QueryMap, query, stream_of};
use crate::state::AppState;
use crate::time;

/// JPEG quality of snapshots: near-lossless for evidence pages.
const QUALITY: u8 = 90;
/// How far back from `at` the key frame may be (a camera's GOP is seconds, rarely a minute).
const MAX_GOP_US: i64 = 60_000_000;

fn not_built() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_built",
        "this node cannot decode pictures: snapshots need a build with `--features gstreamer` (and GStreamer installed; see docs/ui.md)",
    )
}

fn decode_failed(camera: &str, e: transcode::TranscodeError) -> ApiError {
    match e {
        transcode::TranscodeError::NotBuilt => not_built(),
        other => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "decode_failed",
            format!("camera {camera}: the picture could not be decoded: {other}"),
        ),
    }
}

/// `GET /api/v1/cameras/{id}/snapshot.jpg`.
pub async fn snapshot(
    State(state): State<Arc<AppState>>,
    Path(camera): Path<String>,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let at = q.get("at").map(|a| time::parse("at", a)).transpose()?;
    let action = if at.is_some() {
        MediaAction::Playback
    } else {
        MediaAction::Live
    };
    let (caller, _) = media_caller(&state, &headers, &q, ip, &camera, action)?;
    let stream = stream_of(&q, &camera)?;
    if let Some(remote) = state.remote_for(&camera) {
        return relayed(&state, remote, &caller, &camera, &stream, at, &headers).await;
    }
    if !transcode::AVAILABLE {
        return Err(not_built());
    }
    let frames = match at {
        Some(at) => recorded(&state, &stream, at).await?,
        None => live(&state, &stream).await?,
    };
    let cam = camera.clone();
    let shot = tokio::task::spawn_blocking(move || {
        transcode::snapshot::jpeg(&frames, transcode::snapshot::MAX_HEIGHT, QUALITY)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| decode_failed(&cam, e))?;
    let mut e = caller.event("snapshot", Some(&camera));
    e.detail = json!({ "at": at.map(time::format), "frame": time::format(shot.at), "stream": stream.kind().as_str() });
    state.audit(e).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::HeaderName::from_static("x-sharpeye-frame-time"),
                time::format(shot.at),
            ),
        ],
        shot.jpeg,
    )
        .into_response())
}

/// A lower node's camera: its node makes the picture (it holds the recording and the live
/// stream, and only a JPEG crosses the link), admitted on the link like a recording; an
/// instant that has settled is kept in the temporary cache. The lower node's refusals (501
/// where it was built without decoding) pass through as it said them.
async fn relayed(
    state: &Arc<AppState>,
    remote: Arc<dyn crate::remote_access::RemoteAccess>,
    caller: &crate::access::Caller,
    camera: &str,
    stream: &StreamId,
    at: Option<WallTime>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut path = format!(
        "/api/v1/cameras/{camera}/snapshot.jpg?stream={}",
        stream.kind().as_str()
    );
    if let Some(at) = at {
        path.push_str(&format!("&at={}", time::query_time(at)));
    }
    let mut e = caller.event("snapshot", Some(camera));
    e.detail = json!({ "at": at.map(time::format), "stream": stream.kind().as_str(), "from": "lower node" });
    state.audit(e).await?;
    let method = axum::http::Method::GET;
    let body = remote
        .recorded(
            camera,
            crate::remote_access::RemoteRequest {
                cacheable: at.is_some_and(|at| WallTime::now().micros_since(at) > crate::playback::SETTLED_US),
                ..crate::remote_access::RemoteRequest::for_client(
                    path,
                    &method,
                    headers,
                    caller.end_user(&state.node.id),
                )
            },
        )
        .await?;
    let mut r = crate::relayed::serve(body, &method, headers, "image/jpeg")?;
    // A live picture is of its moment: not for a browser's cache (the relayed default).
    if at.is_none() {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    }
    Ok(r)
}

/// The frames from the key frame before `at` to the frame at `at`.
async fn recorded(state: &Arc<AppState>, stream: &StreamId, at: WallTime) -> Result<Vec<Frame>, ApiError> {
    let (st, s) = (state.clone(), stream.clone());
    let nothing = || {
        ApiError::not_found(format!(
            "camera {}: nothing recorded at {}",
            stream.camera(),
            time::format(at)
        ))
    };
    let frames = tokio::task::spawn_blocking(move || -> Result<Vec<Frame>, ApiError> {
        let plan = store::playback::plan(
            &st.store,
            &st.samples,
            &store::playback::PlaybackRequest {
                stream: s.clone(),
                start: at,
                end: at.add_micros(1_000),
                speed: 1,
            },
        )
        .map_err(|_| {
            ApiError::not_found(format!(
                "camera {}: nothing recorded at {}",
                s.camera(),
                time::format(at)
            ))
        })?;
        let mut out = Vec::new();
        for f in store::playback::PlanFrames::new(plan, s.clone()) {
            let f = f.map_err(ApiError::internal)?;
            if f.wall_time > at {
                break;
            }
            out.push(f);
            if out.len() > 10_000 {
                break;
            }
        }
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)??;
    let frames = transcode::snapshot::frames_for(frames, at).ok_or_else(nothing)?;
    match frames.last() {
        Some(f) if at.micros_since(f.wall_time) <= MAX_GOP_US => Ok(frames),
        _ => Err(nothing()),
    }
}

/// The cached GOP of the live stream up to its newest frame, or the next key frame when none
/// is cached (the stream was idle), within `[live] start_timeout`.
async fn live(state: &Arc<AppState>, stream: &StreamId) -> Result<Vec<Frame>, ApiError> {
    let hub = state.hub.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_live",
            "live view is not enabled on this node",
        )
    })?;
    let mut viewer = hub.watch(stream, hub::Output::Other).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_video",
            format!("camera {}: {e}", stream.camera()),
        )
    })?;
    let mut frames: Vec<Frame> = Vec::new();
    while let Some(f) = viewer.try_recv() {
        frames.push(f);
    }
    if !frames.iter().any(|f| f.key) {
        let wait = state.live_start_timeout.max(Duration::from_secs(1));
        let first = tokio::time::timeout(wait, async {
            loop {
                match viewer.recv().await {
                    Some(f) if f.key => return Some(f),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_video",
                format!(
                    "camera {}: no key frame within {wait:?}; is it online?",
                    stream.camera()
                ),
            )
        })?;
        frames = vec![first];
    }
    let last = frames.last().map_or(WallTime::from_micros(0), |f| f.wall_time);
    transcode::snapshot::frames_for(frames, last).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_video",
            format!("camera {}: no key frame yet", stream.camera()),
        )
    })
}
