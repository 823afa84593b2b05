//! Grid cells (网格): `POST /api/v1/grids` imports GeoJSON, `GET /api/v1/grids[/{id}]` reads
//! them, `DELETE /api/v1/grids/{id}` removes an imported one. `GET /api/v1/cameras?grid=ID`
//! ([`crate::spatial`]) lists the cameras inside one.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use places::{GridSource, PlacesError};
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest GeoJSON import: a city's few thousand cells with detailed boundaries. Read here,
/// past the API's usual 64 KiB body limit.
pub const MAX_IMPORT: usize = 32 << 20;

fn refused(e: PlacesError) -> ApiError {
    match e {
        PlacesError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        PlacesError::Configured(_) => ApiError::new(StatusCode::CONFLICT, "configured", e.to_string()),
        PlacesError::Io { .. } => ApiError::internal(e),
    }
}

fn summary(state: &AppState, g: &places::Grid) -> Value {
    let (lo, hi) = g.bbox();
    let cameras = state.spatial.of(&state.cameras).in_grid(g).len();
    json!({
        "id": g.id,
        "name": g.name,
        "source": g.source.as_str(),
        "bbox": [lo[0], lo[1], hi[0], hi[1]],
        "cameras": cameras,
    })
}

/// `GET /api/v1/grids`: every cell with its name, box and how many cameras it holds (all the
/// node's, not only the caller's: the count reveals no camera).
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Value> {
    let grids = state.grids.snapshot();
    Json(Value::Array(grids.values().map(|g| summary(&state, g)).collect()))
}

/// `GET /api/v1/grids/{id}`: one cell as a GeoJSON `Feature`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let g = state
        .grids
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no grid cell {:?}", id.chars().take(64).collect::<String>())))?;
    Ok(Json(places::geojson::to_feature(&g)))
}

/// `POST /api/v1/grids`: imports a GeoJSON `Feature` or `FeatureCollection` of Polygon or
/// MultiPolygon cells (all or none), replacing imported cells with the same ids. Audited.
pub async fn import(State(state): State<Arc<AppState>>, caller: Caller, body: Body) -> Result<Response, ApiError> {
    caller.require(&state, auth::Action::Admin, None)?;
    let bytes = axum::body::to_bytes(body, MAX_IMPORT).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the GeoJSON is larger than {} MiB; import it in parts",
                MAX_IMPORT >> 20
            ),
        )
    })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("expected a GeoJSON Feature or FeatureCollection: {e}")))?;
    let grids = places::geojson::parse_grids(&v, GridSource::Api).map_err(refused)?;
    let ids: Vec<String> = grids.iter().map(|g| g.id.clone()).collect();
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.grids.put(grids))
        .await
        .map_err(ApiError::internal)?
        .map_err(refused)?;
    let mut e = caller.event("grid.import", None);
    e.detail = json!({ "grids": ids.len(), "ids": ids.iter().take(100).collect::<Vec<_>>() });
    state.audit(e).await?;
    tracing::info!(grids = ids.len(), by = caller.who.actor(), "grid cells imported");
    Ok((StatusCode::CREATED, Json(json!({ "imported": ids }))).into_response())
}

/// `DELETE /api/v1/grids/{id}`: removes an imported cell (409 for one from the config file).
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&state, auth::Action::Admin, None)?;
    let st = state.clone();
    let id2 = id.clone();
    let removed = tokio::task::spawn_blocking(move || st.grids.remove(&id2))
        .await
        .map_err(ApiError::internal)?
        .map_err(refused)?;
    let Some(g) = removed else {
        return Err(ApiError::not_found(format!(
            "no grid cell {:?}",
            id.chars().take(64).collect::<String>()
        )));
    };
    let mut e = caller.event("grid.delete", None);
    e.target = Some(g.id.clone());
    state.audit(e).await?;
    Ok(Json(json!({ "deleted": g.id })))
}
