//! The `/api/v1` handlers: one function per resource.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use media::{StreamId, StreamKind, WallTime};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{AppState, CameraEntry};
use crate::{ApiError, time};

type AppStateArc = State<Arc<AppState>>;

/// A verified caller: every `/api/v1` handler but login takes one.
pub struct Caller(pub auth::Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing bearer token: log in with POST /api/v1/login and send Authorization: Bearer <token>",
            )
        })?;
        state
            .auth
            .verify(token)
            .map(Caller)
            .map_err(|e| ApiError::unauthorized(e.to_string()))
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// `POST /api/v1/login` body.
#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /api/v1/login`.
pub async fn login(
    State(state): AppStateArc,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(req) = body.map_err(json_rejection)?;
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let auth = state.auth.clone();
    let session = tokio::task::spawn_blocking(move || auth.login(&req.username, &req.password))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    Ok(Json(
        json!({ "token": session.token, "expires_at": time::format(session.expires_at) }),
    ))
}

/// Maps a JSON body rejection to the API's error form, keeping 413 for oversized bodies and
/// 415 for a wrong content type.
fn json_rejection(e: JsonRejection) -> ApiError {
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
        _ => ApiError::bad_request(format!(
            "expected a JSON body {{\"username\": ..., \"password\": ...}}: {}",
            e.body_text()
        )),
    }
}

/// `POST /api/v1/logout`.
pub async fn logout(State(state): AppStateArc, headers: HeaderMap, _caller: Caller) -> Json<Value> {
    if let Some(t) = bearer(&headers) {
        state.auth.logout(t);
    }
    Json(json!({}))
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

/// `GET /api/v1/cameras`.
pub async fn cameras(State(state): AppStateArc, _caller: Caller) -> Json<Value> {
    Json(Value::Array(state.cameras.values().map(camera_json).collect()))
}

fn camera<'a>(state: &'a AppState, id: &str) -> Result<&'a CameraEntry, ApiError> {
    state
        .cameras
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no camera with id {:?}", truncate(id))))
}

/// Ids from URLs are echoed in messages; keep hostile ones short.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `GET /api/v1/cameras/{id}`.
pub async fn camera_detail(
    State(state): AppStateArc,
    Path(id): Path<String>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let c = camera(&state, &id)?;
    let mut v = camera_json(c);
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
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    camera(&state, &id)?;
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
    for c in state.cameras.values() {
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
