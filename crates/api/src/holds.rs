//! Evidence holds: `POST /api/v1/holds`, `GET /api/v1/holds`, `DELETE /api/v1/holds/{id}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use media::WallTime;
use serde::Deserialize;
use serde_json::{Value, json};
use store::holds::Hold;

use crate::handlers::{Caller, window};
use crate::state::AppState;
use crate::{ApiError, time};

/// Longest hold: ten years (evidence can be kept for very long; this only catches typos).
const MAX_HOLD_US: i64 = 10 * 366 * 86_400 * 1_000_000;

fn hold_json(h: &Hold) -> Value {
    json!({
        "id": h.id,
        "camera": h.camera,
        "start": time::format(WallTime::from_micros(h.start_us)),
        "end": time::format(WallTime::from_micros(h.end_us)),
        "reason": h.reason,
        "created_by": h.created_by,
        "created": time::format(WallTime::from_micros(h.created_us)),
    })
}

/// `POST /api/v1/holds` body.
#[derive(Deserialize)]
pub struct HoldRequest {
    camera: String,
    start: String,
    end: String,
    reason: String,
}

/// `POST /api/v1/holds`: pins a range of a camera (all its streams) against deletion. Durable on
/// every data disk before the answer.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    body: Result<Json<HoldRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"camera\", \"start\", \"end\", \"reason\"}} as JSON: {}",
            e.body_text()
        ))
    })?;
    crate::playback::camera_exists(&state, &req.camera)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "reason: say why the range is held (1 to 1000 characters)",
        ));
    }
    let q = HashMap::from([("start".to_owned(), req.start), ("end".to_owned(), req.end)]);
    let (start, end) = window(&q, MAX_HOLD_US)?;
    let st = state.clone();
    let (camera, reason, user) = (req.camera, reason.to_owned(), who.user);
    let hold = tokio::task::spawn_blocking(move || st.holds.add(&camera, start, end, &reason, &user))
        .await
        .map_err(ApiError::internal)??;
    tracing::info!(
        hold = hold.id,
        camera = hold.camera,
        by = hold.created_by,
        "hold placed"
    );
    Ok((StatusCode::CREATED, Json(hold_json(&hold))).into_response())
}

/// `GET /api/v1/holds`.
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Value> {
    Json(Value::Array(state.holds.list().iter().map(hold_json).collect()))
}

/// `DELETE /api/v1/holds/{id}`: releases a hold; its range becomes subject to retention again.
pub async fn release(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
) -> Result<Json<Value>, ApiError> {
    let st = state.clone();
    let id2 = id.clone();
    let released = tokio::task::spawn_blocking(move || st.holds.release(&id2))
        .await
        .map_err(ApiError::internal)??;
    match released {
        Some(h) => {
            tracing::info!(hold = h.id, camera = h.camera, by = who.user, "hold released");
            Ok(Json(json!({ "released": hold_json(&h) })))
        }
        None => Err(ApiError::not_found(format!(
            "no hold with id {:?}",
            id.chars().take(32).collect::<String>()
        ))),
    }
}
