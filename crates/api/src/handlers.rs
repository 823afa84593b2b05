//! The `/api/v1` handlers: one function per resource.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use auth::Action;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::{StreamId, StreamKind, WallTime};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Caller, ClientIp, bearer, no_camera};
use crate::state::{AppState, CameraEntry};
use crate::{ApiError, time};

type AppStateArc = State<Arc<AppState>>;

/// `POST /api/v1/login` body.
#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// Longest user name accepted at login (longer ones are refused before any work).
const MAX_NAME: usize = 128;

/// `POST /api/v1/login`: every attempt is audited, successful or not (the name tried is kept,
/// never the password).
pub async fn login(
    State(state): AppStateArc,
    ClientIp(ip): ClientIp,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| json_rejection(e, "{\"username\": ..., \"password\": ...}"))?;
    if req.username.is_empty() || req.username.len() > MAX_NAME || req.password.len() > 1024 {
        return Err(ApiError::bad_request(format!(
            "username must be 1 to {MAX_NAME} bytes and password at most 1024"
        )));
    }
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let auth = state.auth.clone();
    let name = req.username.clone();
    let result = tokio::task::spawn_blocking(move || auth.login(&req.username, &req.password, ip))
        .await
        .map_err(ApiError::internal)?;
    let mut event = auth::audit::Event {
        actor: name,
        ip: ip.map(|i| i.to_string()),
        action: "login".into(),
        outcome: "ok".into(),
        camera: None,
        target: None,
        reason: None,
        detail: Value::Null,
    };
    match result {
        Ok((session, _)) => {
            state.audit(event).await?;
            Ok(Json(json!({ "token": session.token, "expires_at": time::format(session.expires_at) })).into_response())
        }
        Err(e @ auth::AuthError::Throttled { retry_after }) => {
            event.outcome = "throttled".into();
            state.audit(event).await?;
            let mut r =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", e.to_string()).into_response();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after.as_secs().max(1)),
            );
            Ok(r)
        }
        Err(e) => {
            event.outcome = "failed".into();
            state.audit(event).await?;
            Err(ApiError::unauthorized(e.to_string()))
        }
    }
}

/// Maps a JSON body rejection to the API's error form, keeping 413 for oversized bodies and
/// 415 for a wrong content type; `expected` describes the body for a 400.
pub(crate) fn json_rejection(e: JsonRejection, expected: &str) -> ApiError {
    match e.status().as_u16() {
        413 => ApiError::new(
            e.status(),
            "payload_too_large",
            format!("the body is larger than {} bytes", crate::MAX_BODY),
        ),
        415 => ApiError::new(
            e.status(),
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        _ => ApiError::bad_request(format!("expected a JSON body {expected}: {}", e.body_text())),
    }
}

/// `POST /api/v1/logout`.
pub async fn logout(State(state): AppStateArc, headers: HeaderMap, caller: Caller) -> Result<Json<Value>, ApiError> {
    if let Some(t) = bearer(&headers) {
        state.auth.logout(t);
    }
    state.audit(caller.event("logout", None)).await?;
    Ok(Json(json!({})))
}

/// `GET /api/v1/me`: the caller, their role and department, node-wide actions, and how many
/// cameras they see (a UI shows or hides its admin and audit pages by this).
pub async fn me(State(state): AppStateArc, caller: Caller) -> Json<Value> {
    let snap = state.auth.snapshot();
    let p = &caller.who;
    let via = match &p.via {
        auth::Via::Session => json!({ "kind": "session" }),
        auth::Via::MediaToken => json!({ "kind": "media_token" }),
        auth::Via::ApiToken(t) => json!({ "kind": "api_token", "id": t.id, "name": t.name }),
    };
    Json(json!({
        "user": p.user,
        "role": p.role.as_str(),
        "department": p.department,
        "via": via,
        "node_actions": snap.policy.node_actions(p).names(),
        "cameras_visible": snap.policy.visible_cameras(p).len(),
    }))
}

fn camera_json(c: &CameraEntry) -> Value {
    let i = &c.info;
    let mut streams = vec!["main"];
    if i.has_sub {
        streams.push("sub");
    }
    json!({
        "id": i.id,
        "name": i.name,
        "tier": i.tier,
        "org": i.org,
        "status": c.status(),
        "recording": i.record,
        "location": i.location.map(|(lat, lon)| json!({ "lat": lat, "lon": lon })),
        "streams": streams,
    })
}

/// `GET /api/v1/cameras`: only the cameras the caller has some action on, each with the
/// actions they have. The answer is written as text from each camera's pre-serialized fixed
/// fields plus its status and the caller's actions: a dispatch room's software lists often,
/// and building a JSON tree per camera per request was most of the cost.
pub async fn cameras(State(state): AppStateArc, caller: Caller) -> Response {
    let snap = state.auth.snapshot();
    let visible = snap.policy.visible_cameras(&caller.who);
    let mut out = String::with_capacity(64 + visible.len() * 320);
    out.push('[');
    let cameras = state.cameras.snapshot();
    for &(i, actions) in visible.iter() {
        let Some(c) = cameras.get(snap.policy.camera_id(i)) else {
            continue;
        };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(c.fixed_json());
        out.push_str(",\"status\":\"");
        out.push_str(c.status());
        out.push_str("\",\"actions\":[");
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
    out.push(']');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
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
    let mut v = camera_json(&c);
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

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    q.get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("missing query parameter {name} (an RFC 3339 time)")))
}

fn stream_param(q: &HashMap<String, String>, camera: &str) -> Result<StreamId, ApiError> {
    let kind = match q.get("stream").map(String::as_str) {
        None => StreamKind::Main,
        Some(s) => StreamKind::parse(s).ok_or_else(|| ApiError::bad_request("stream: expected main or sub"))?,
    };
    Ok(StreamId::new(camera, kind))
}

/// A validated `start`/`end` window.
pub fn window(q: &HashMap<String, String>, max_us: i64) -> Result<(WallTime, WallTime), ApiError> {
    let start = time::parse("start", param(q, "start")?)?;
    let end = time::parse("end", param(q, "end")?)?;
    if end <= start {
        return Err(ApiError::bad_request("end must be after start"));
    }
    if end.micros_since(start) > max_us {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "range_too_long",
            format!(
                "the range is longer than the maximum of {} hours; split it",
                max_us / 3_600_000_000
            ),
        ));
    }
    Ok((start, end))
}

/// `GET /api/v1/cameras/{id}/recordings?start=&end=[&stream=main|sub]`.
pub async fn recordings(
    State(state): AppStateArc,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    caller.require(&state, Action::Playback, Some(&id))?;
    let (start, end) = window(&q, state.max_listing_us)?;
    let stream = stream_param(&q, &id)?;
    let store = state.store.clone();
    let ranges = tokio::task::spawn_blocking(move || store.recordings(&stream, start, end))
        .await
        .map_err(ApiError::internal)??;
    let ranges: Vec<Value> = ranges
        .iter()
        .map(|r| json!({ "start": time::format(r.start), "end": time::format(r.end) }))
        .collect();
    Ok(Json(json!({ "ranges": ranges })))
}

/// `GET /api/v1/health`.
pub async fn health(State(state): AppStateArc, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let st = state.clone();
    let reports = tokio::task::spawn_blocking(move || {
        store::retention::disk_reports(&st.store, &st.holds, &st.retention_policy, WallTime::now())
    })
    .await
    .map_err(ApiError::internal)??;
    let tier = |u: &store::retention::TierUsage| {
        json!({
            "bytes": u.bytes,
            "bytes_per_day": u.bytes_per_day.round(),
            "guarantee_days": u.guarantee_days,
            "forecast_days": (u.forecast_days * 100.0).round() / 100.0,
            "guarantee_met": u.forecast_days + 1e-9 >= u.guarantee_days,
        })
    };
    let disks: Vec<Value> = reports
        .iter()
        .map(|d| {
            json!({
                "path": d.path.display().to_string(),
                "total_bytes": d.total,
                "free_bytes": d.free,
                "min_free_bytes": d.floor,
                "recording_blocked": d.blocked,
                "held_bytes": d.held_bytes,
                "tiers": { "standard": tier(&d.standard), "key": tier(&d.key) },
            })
        })
        .collect();
    let alarms: Vec<Value> = state
        .retention
        .as_ref()
        .map(|r| r.alarms())
        .unwrap_or_default()
        .iter()
        .map(|a| json!({ "at": time::format(a.at), "message": a.alarm.to_string() }))
        .collect();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for c in state.cameras.snapshot().values() {
        *counts.entry(c.status()).or_default() += 1;
    }
    let recorder = state.recorder.as_ref().map(|r| {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "frames_written": g(&r.frames_written),
            "bytes_written": g(&r.bytes_written),
            "frames_refused": g(&r.frames_refused),
            "segments_opened": g(&r.segments_opened),
            "segments_closed": g(&r.segments_closed),
            "write_errors": g(&r.write_errors),
            "sync_errors": g(&r.sync_errors),
            "last_sync_ms": g(&r.last_sync_us) as f64 / 1000.0,
            "max_sync_ms": g(&r.max_sync_us) as f64 / 1000.0,
        })
    });
    let total = state.cameras.len() as u64;
    let online = counts.get("online").copied().unwrap_or(0);
    let degraded = state
        .recorder
        .as_ref()
        .is_some_and(|r| r.write_errors.load(Ordering::Relaxed) + r.sync_errors.load(Ordering::Relaxed) > 0)
        || reports.iter().any(|d| d.blocked);
    Ok(Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "disks": disks,
        "alarms": alarms,
        "holds": state.holds.list().len(),
        "cameras": {
            "total": total,
            "online": online,
            "connecting": counts.get("connecting").copied().unwrap_or(0),
            "offline": counts.get("offline").copied().unwrap_or(0),
            "idle": counts.get("idle").copied().unwrap_or(0),
            "online_rate": if total == 0 { 1.0 } else { online as f64 / total as f64 },
        },
        "recorder": recorder,
    })))
}
