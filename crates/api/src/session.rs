//! Sessions: logging in and out, and who the caller is.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Caller, ClientIp, bearer};
use crate::error::ApiError;
use crate::request::json_body;
use crate::state::AppState;
use crate::time;

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
    let req = json_body(body, "{\"username\": ..., \"password\": ...}")?;
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
        on_behalf_of: None,
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
