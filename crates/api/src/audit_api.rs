//! `GET /api/v1/audit`: the audit log, for auditors and administrators. Reading the log is
//! itself audited.

use std::sync::Arc;

use auth::Action;
use auth::audit::{Filter, query};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::request::{self, QueryMap};
use crate::state::AppState;
use crate::time;

/// Most entries in one answer; page with `after`.
const MAX_LIMIT: usize = 10_000;

/// `GET /api/v1/audit?start=&end=&user=&camera=&action=&after=&limit=`: entries oldest first.
/// `action` matches exactly, or as a prefix when it ends with `.` (`live.`). The answer's
/// `next` is the `after` of the next page, when there is one.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller, q: QueryMap) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Audit, None)?;
    let q = request::query(q)?;
    let when = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k).map(|v| time::parse(k, v).map(|t| t.as_micros())).transpose()
    };
    let number = |k: &str| -> Result<Option<u64>, ApiError> {
        q.get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("{k}: expected a whole number")))
            })
            .transpose()
    };
    let filter = Filter {
        start_us: when("start")?,
        end_us: when("end")?,
        actor: q.get("user").cloned(),
        camera: q.get("camera").cloned(),
        action: q.get("action").cloned(),
        after_seq: number("after")?,
    };
    let limit = number("limit")?.unwrap_or(1000) as usize;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!("limit: expected 1 to {MAX_LIMIT}")));
    }
    let dir = state.audit.dir().to_owned();
    let (records, more) = tokio::task::spawn_blocking(move || query(&dir, &filter, limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let next = if more { records.last().map(|r| r.seq) } else { None };
    let mut e = caller.event("audit.read", None);
    e.detail = json!({ "query": q, "entries": records.len() });
    state.audit(e).await?;
    Ok(Json(json!({ "entries": records, "next": next })))
}
