//! This node's place among the levels: `GET /api/v1/node` (who it is) and `GET /api/v1/links`
//! (its links to lower nodes, their budgets and what uses them).

use std::sync::Arc;

use auth::Action;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::access::{Caller, bearer};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/v1/node`: id, name and level.
pub async fn node(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Value> {
    let n = &state.node;
    Json(json!({ "id": n.id, "name": n.name, "level": n.level }))
}

/// `GET /api/v1/links`: each link with `id, budget_mbps, in_use_mbps, pulls, refusals, state`.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Admin, None)?;
    let links = state.remote.as_ref().map(|r| r.links()).unwrap_or_default();
    Ok(Json(json!({ "links": links })))
}

/// `GET /api/v1/links/{id}/tunnel` (`Upgrade: sharpeye-tunnel/1`): a lower node that cannot be
/// reached from here connects out and hands this node the connection (see
/// `hierarchy::tunnel`). Authenticated by the link's token; 101 and the connection is the
/// link's from then on.
pub async fn tunnel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    mut req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{StatusCode, header};
    let refused = || ApiError::unauthorized("no lower node dials up here with this id and token");
    let token = bearer(req.headers()).ok_or_else(refused)?.to_owned();
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(hierarchy_protocol()));
    let run = state
        .remote
        .as_ref()
        .and_then(|r| r.tunnel(&id, &token))
        .ok_or_else(refused)?;
    if !wants {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!("send Upgrade: {}", hierarchy_protocol()),
        ));
    }
    let on_upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("the connection cannot be upgraded"))?;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(upgraded).await,
            Err(e) => tracing::warn!(link = %id, "tunnel upgrade failed: {e}"),
        }
    });
    axum::response::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, hierarchy_protocol())
        .body(axum::body::Body::empty())
        .map_err(ApiError::internal)
}

/// The tunnel's upgrade protocol (`hierarchy::tunnel::PROTOCOL`; the API does not depend on
/// that crate).
const fn hierarchy_protocol() -> &'static str {
    "sharpeye-tunnel/1"
}
