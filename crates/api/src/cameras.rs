//! Cameras: the list a caller may see, one camera with its health, and what is recorded.

use std::sync::Arc;

use auth::Action;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::access::{Caller, no_camera};
use crate::error::ApiError;
use crate::request::{QueryMap, query, stream_of, window};
use crate::state::{AppState, CameraEntry};
use crate::time;

type AppStateArc = State<Arc<AppState>>;

fn camera_json(state: &AppState, c: &CameraEntry) -> Value {
    // The fixed part is a JSON object without its closing brace: the listing's own form.
    let mut text = c.fixed_json().to_owned();
    let status = c.status();
    push_live(&mut text, state, &c.info.id);
    push_intact(&mut text, status, state.rates.faults().get(&c.info.id).copied());
    text.push('}');
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({}));
    v["status"] = json!(status);
    if let Some(why) = c.status_reason() {
        v["status_reason"] = json!(why);
    }
    v
}

/// Appends `,"intact":true` for an online camera whose video is usable, or
/// `,"intact":false,"intact_cause":".."` for one whose video is not (nothing for one that is
/// not online: its status says it).
fn push_intact(out: &mut String, status: &str, fault: Option<rates::Cause>) {
    if status != "online" {
        return;
    }
    match fault {
        None => out.push_str(",\"intact\":true"),
        Some(f) => {
            out.push_str(",\"intact\":false,\"intact_cause\":\"");
            out.push_str(f.as_str());
            out.push('"');
        }
    }
}

/// Appends what is known of the camera's live streams: `,"kbps":{"main":..,"sub":..}` with the
/// rates they were last measured arriving at (an upper node counts a pull across its link at
/// these, since what it measures itself is capped by the link), and
/// `,"media":{"main":{"codec","width","height"},..}` from their last key frames (a player
/// picks the stream it can decode before asking for it: a browser without H.265 takes the
/// H.264 sub-stream at once instead of failing first).
fn push_live(out: &mut String, state: &AppState, camera: &str) {
    let Some(hub) = &state.hub else { return };
    let channel = |kind| hub.channel(&media::StreamId::new(camera, kind));
    let kinds = [media::StreamKind::Main, media::StreamKind::Sub, media::StreamKind::H264];
    let mut kbps = Vec::new();
    let mut media = Vec::new();
    for kind in kinds {
        let Some(c) = channel(kind) else { continue };
        if let Some(k) = c.kbps() {
            kbps.push(format!("\"{}\":{k}", kind.as_str()));
        }
        if let Some(p) = c.params() {
            media.push(format!(
                "\"{}\":{}",
                kind.as_str(),
                json!({ "codec": p.codec_string(), "width": p.width(), "height": p.height() })
            ));
        }
    }
    if !kbps.is_empty() {
        out.push_str(&format!(",\"kbps\":{{{}}}", kbps.join(",")));
    }
    if !media.is_empty() {
        out.push_str(&format!(",\"media\":{{{}}}", media.join(",")));
    }
}

/// `GET /api/v1/cameras`: only the cameras the caller has some action on, each with the
/// actions they have; with a place (`near=LAT,LON&radius=M`, `sees=LAT,LON`, `grid=ID`,
/// `polygon=LAT,LON;...`, see [`crate::spatial`]) only those there, nearest first with
/// `distance_m` where the place is a point. The answer is written as text from each camera's
/// pre-serialized fixed fields plus its status and the caller's actions: a dispatch room's
/// software lists often, and building a JSON tree per camera per request was most of the cost.
pub async fn cameras(State(state): AppStateArc, caller: Caller, q: QueryMap) -> Result<Response, ApiError> {
    let q = query(q)?;
    let selection = crate::spatial::select(&state, &q)?;
    let snap = state.auth.snapshot();
    let cameras = state.cameras.snapshot();
    let faults = state.rates.faults();
    let mut out = String::with_capacity(64 + cameras.len().min(4096) * 320);
    out.push('[');
    match selection {
        None => {
            for &(i, actions) in snap.policy.visible_cameras(&caller.who).iter() {
                if let Some(c) = cameras.get(snap.policy.camera_id(i)) {
                    write_entry(&mut out, &state, &faults, c, actions, None);
                }
            }
        }
        Some(found) => {
            for (id, distance) in found {
                let actions = snap.policy.camera_actions(&caller.who, &id);
                if let (false, Some(c)) = (actions.is_empty(), cameras.get(&id)) {
                    write_entry(&mut out, &state, &faults, c, actions, distance);
                }
            }
        }
    }
    out.push(']');
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// Appends one camera's listing entry (after a comma unless it is the first).
fn write_entry(
    out: &mut String,
    state: &AppState,
    faults: &std::collections::HashMap<String, rates::Cause>,
    c: &CameraEntry,
    actions: auth::Actions,
    distance: Option<f64>,
) {
    if out.len() > 1 {
        out.push(',');
    }
    out.push_str(c.fixed_json());
    out.push_str(",\"status\":\"");
    let status = c.status();
    out.push_str(status);
    if let Some(why) = c.status_reason() {
        out.push_str("\",\"status_reason\":");
        out.push_str(&Value::String(why).to_string());
    } else {
        out.push('"');
    }
    push_intact(out, status, faults.get(&c.info.id).copied());
    if let Some(d) = distance {
        out.push_str(&format!(",\"distance_m\":{d}"));
    }
    push_live(out, state, &c.info.id);
    out.push_str(",\"actions\":[");
    for (k, a) in actions.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(a.as_str());
        out.push('"');
    }
    out.push_str("]}");
}

/// The camera if the caller has any action on it; 404 otherwise (as for unknown cameras).
fn visible_camera(state: &AppState, caller: &Caller, id: &str) -> Result<std::sync::Arc<CameraEntry>, ApiError> {
    let c = state.cameras.get(id).ok_or_else(|| no_camera(id))?;
    if state.auth.snapshot().policy.camera_actions(&caller.who, id).is_empty() {
        return Err(no_camera(id));
    }
    Ok(c)
}

/// `GET /api/v1/cameras/{id}`.
pub async fn camera_detail(
    State(state): AppStateArc,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let c = visible_camera(&state, &caller, &id)?;
    let mut v = camera_json(&state, &c);
    v["actions"] = json!(state.auth.snapshot().policy.camera_actions(&caller.who, &id).names());
    if let Some(h) = &c.main {
        let s = h.snapshot();
        v["health"] = json!({
            "main": {
                "phase": s.phase.as_str(),
                "since": time::format(s.since),
                "last_error": s.last_error,
                "last_error_at": s.last_error_at.map(time::format),
                "sessions": s.sessions,
                "frames": s.frames,
                "bytes": s.bytes,
                "dropped_frames": s.dropped_frames,
                "discontinuities": s.discontinuities,
                "last_frame": s.last_frame.map(time::format),
                "codec": s.codec,
                "width": s.resolution.map(|r| r.0),
                "height": s.resolution.map(|r| r.1),
            }
        });
    }
    Ok(Json(v))
}

/// `GET /api/v1/cameras/{id}/recordings?start=&end=[&stream=main|sub]`.
pub async fn recordings(
    State(state): AppStateArc,
    Path(id): Path<String>,
    q: QueryMap,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    caller.require(&state, Action::Playback, Some(&id))?;
    let (start, end) = window(&q, state.max_listing_us)?;
    let stream = stream_of(&q, &id)?;
    if let Some(remote) = state.remote_for(&id) {
        let path = format!(
            "/api/v1/cameras/{id}/recordings?start={}&end={}&stream={}",
            crate::time::query_time(start),
            crate::time::query_time(end),
            stream.kind().as_str()
        );
        let v = remote
            .call(&id, "GET", path, None, caller.end_user(&state.node.id))
            .await?;
        // Passed on as ranges of two times each, whatever else the lower node sent.
        let ranges: Vec<Value> = v["ranges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let (a, b) = (r["start"].as_str()?, r["end"].as_str()?);
                let (a, b) = (time::parse("start", a).ok()?, time::parse("end", b).ok()?);
                (a < b).then(|| json!({ "start": time::format(a), "end": time::format(b) }))
            })
            .collect();
        return Ok(Json(json!({ "ranges": ranges })));
    }
    let store = state.store.clone();
    let kind = stream.kind().as_str();
    let ranges = tokio::task::spawn_blocking(move || store.recordings(&stream, start, end))
        .await
        .map_err(ApiError::internal)??;
    let mut spans: Vec<(i64, i64)> = ranges
        .iter()
        .map(|r| (r.start.as_micros(), r.end.as_micros()))
        .collect();
    // In a cluster, what the other members recorded of this camera (before a failover, after
    // a handover) is part of its recordings: asked once each, answered from their own index.
    let mut missing = Vec::new();
    let mut down = Vec::new();
    if let Some(cluster) = state.cluster.get().cloned().filter(|_| !q.contains_key("local")) {
        down = cluster.members_down();
        let path = format!(
            "/api/v1/cameras/{id}/recordings?start={}&end={}&stream={kind}&local=1",
            crate::time::query_time(start),
            crate::time::query_time(end),
        );
        let answers = tokio::task::spawn_blocking(move || cluster.ask_members(&path))
            .await
            .map_err(ApiError::internal)?;
        for (member, answer) in answers {
            match answer {
                Ok(v) => spans.extend(v["ranges"].as_array().into_iter().flatten().filter_map(|r| {
                    let (a, b) = (r["start"].as_str()?, r["end"].as_str()?);
                    let (a, b) = (time::parse("start", a).ok()?, time::parse("end", b).ok()?);
                    (a < b).then(|| (a.as_micros(), b.as_micros()))
                })),
                Err(why) => {
                    tracing::warn!(camera = %id, member = %member, "recordings not merged: {why}");
                    missing.push(member);
                }
            }
        }
        spans = merge_spans(spans);
    }
    let ranges: Vec<Value> = spans
        .iter()
        .map(|(a, b)| {
            json!({
                "start": time::format(media::WallTime::from_micros(*a)),
                "end": time::format(media::WallTime::from_micros(*b)),
            })
        })
        .collect();
    let mut answer = json!({ "ranges": ranges });
    if !missing.is_empty() {
        answer["members_unanswered"] = json!(missing);
    }
    // A member that is down holds its recordings on its own disk: say that the ranges may lack
    // them, rather than let a gap read as "nothing was recorded".
    if !down.is_empty() {
        answer["members_down"] = json!(down);
    }
    Ok(Json(answer))
}

/// Ranges from several members as one list: sorted, and joined where they touch (two
/// members' stamps of one boundary frame differ by milliseconds).
fn merge_spans(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    const TOUCH_US: i64 = 20_000;
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 + TOUCH_US => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}
