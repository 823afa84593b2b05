//! This node's place among the levels: `GET /api/v1/node` (who it is) and `GET /api/v1/links`
//! (its links to lower nodes, their budgets and what uses them).

use std::sync::Arc;

use auth::Action;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::access::Caller;
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
