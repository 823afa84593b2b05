//! Evidence holds: `POST /api/v1/holds`, `GET /api/v1/holds`, `DELETE /api/v1/holds/{id}`.

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

use crate::access::Caller;
use crate::error::ApiError;
use crate::request::{QueryMap, json_body, query, window_of};
use crate::state::AppState;
use crate::time;

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
    caller: Caller,
    body: Result<Json<HoldRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body, "{\"camera\", \"start\", \"end\", \"reason\"}")?;
    caller.require(&state, auth::Action::Hold, Some(&req.camera))?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "reason: say why the range is held (1 to 1000 characters)",
        ));
    }
    let (start, end) = window_of(&req.start, &req.end, MAX_HOLD_US)?;
    let hold = place(&state, &caller, &req.camera, start, end, reason, None).await?;
    Ok((StatusCode::CREATED, Json(hold)).into_response())
}

/// Places a hold on `camera` (already checked: the caller may hold it) over [start, end),
/// on the lower node that records it when it is remote, and audits it (`incident` names the
/// incident it was placed for). Returns the hold as the API shows it.
pub(crate) async fn place(
    state: &Arc<AppState>,
    caller: &Caller,
    camera: &str,
    start: WallTime,
    end: WallTime,
    reason: &str,
    incident: Option<&str>,
) -> Result<Value, ApiError> {
    if let Some(remote) = state.remote_for(camera) {
        // Evidence stays where it is recorded: the hold is placed on the lower node.
        let body = json!({
            "camera": camera,
            "start": crate::time::query_time(start),
            "end": crate::time::query_time(end),
            "reason": reason,
        });
        let mut hold = remote
            .call(
                camera,
                "POST",
                "/api/v1/holds".into(),
                Some(body),
                caller.end_user(&state.node.id),
            )
            .await?;
        let id = crate::state::remote_id(hold["id"].as_str().unwrap_or_default(), camera)?;
        hold["id"] = json!(id);
        let mut e = caller.event("hold.create", Some(camera));
        e.target = Some(id);
        e.reason = Some(reason.to_owned());
        e.detail = json!({ "start": time::format(start), "end": time::format(end), "placed_on": "lower node", "incident": incident });
        state.audit(e).await?;
        return Ok(hold);
    }
    let st = state.clone();
    let (cam, why, user) = (camera.to_owned(), reason.to_owned(), caller.who.actor());
    let hold = tokio::task::spawn_blocking(move || st.holds.add(&cam, start, end, &why, &user))
        .await
        .map_err(ApiError::internal)??;
    tracing::info!(
        hold = hold.id,
        camera = hold.camera,
        by = hold.created_by,
        "hold placed"
    );
    let mut e = caller.event("hold.create", Some(&hold.camera));
    e.target = Some(hold.id.clone());
    e.reason = Some(hold.reason.clone());
    e.detail = json!({ "start": time::format(start), "end": time::format(end), "incident": incident });
    state.audit(e).await?;
    let out = hold_json(&hold);
    state.events.publish(crate::events::NodeEvent {
        kind: "hold.placed",
        camera: Some(hold.camera.clone()),
        data: out.clone(),
    });
    Ok(out)
}

/// `GET /api/v1/holds`: the holds on cameras the caller may hold.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Value> {
    let snap = state.auth.snapshot();
    Json(Value::Array(
        state
            .holds
            .list()
            .iter()
            .filter(|h| {
                snap.policy
                    .camera_actions(&caller.who, &h.camera)
                    .contains(auth::Action::Hold)
            })
            .map(hold_json)
            .collect(),
    ))
}

/// `DELETE /api/v1/holds/{id}`: releases a hold; its range becomes subject to retention again.
pub async fn release(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
    q: QueryMap,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let no_hold = || ApiError::not_found(format!("no hold with id {:?}", id.chars().take(32).collect::<String>()));
    if let Some((lower_id, camera)) = id.rsplit_once('@') {
        let remote = state.remote_for(camera).ok_or_else(no_hold)?;
        caller.require(&state, auth::Action::Hold, Some(camera)).map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                no_hold()
            } else {
                e
            }
        })?;
        let reason = q.get("reason").map(|r| r.chars().take(1000).collect::<String>());
        let mut path = format!("/api/v1/holds/{lower_id}");
        if let Some(r) = &reason {
            path.push_str("?reason=");
            path.push_str(&crate::state::query_escape(r));
        }
        let mut out = remote
            .call(camera, "DELETE", path, None, caller.end_user(&state.node.id))
            .await?;
        out["released"]["id"] = json!(id);
        let mut e = caller.event("hold.release", Some(camera));
        e.target = Some(id.clone());
        e.reason = reason;
        state.audit(e).await?;
        return Ok(Json(out));
    }
    let held = state
        .holds
        .list()
        .into_iter()
        .find(|h| h.id == id)
        .ok_or_else(no_hold)?;
    caller
        .require(&state, auth::Action::Hold, Some(&held.camera))
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                no_hold()
            } else {
                e
            }
        })?;
    let st = state.clone();
    let id2 = id.clone();
    let released = tokio::task::spawn_blocking(move || st.holds.release(&id2))
        .await
        .map_err(ApiError::internal)??;
    match released {
        Some(h) => {
            tracing::info!(hold = h.id, camera = h.camera, by = caller.who.actor(), "hold released");
            let mut e = caller.event("hold.release", Some(&h.camera));
            e.target = Some(h.id.clone());
            e.reason = q.get("reason").map(|r| r.chars().take(1000).collect());
            state.audit(e).await?;
            let mut data = hold_json(&h);
            data["released_by"] = json!(caller.who.actor());
            data["release_reason"] = json!(q.get("reason").map(|r| r.chars().take(1000).collect::<String>()));
            state.events.publish(crate::events::NodeEvent {
                kind: "hold.released",
                camera: Some(h.camera.clone()),
                data,
            });
            Ok(Json(json!({ "released": hold_json(&h) })))
        }
        None => Err(ApiError::not_found(format!(
            "no hold with id {:?}",
            id.chars().take(32).collect::<String>()
        ))),
    }
}
