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

/// Most heads in one answer.
const MAX_HEADS: usize = 1000;

/// `GET /api/v1/audit/heads?since=SEQ`: `{node, key, heads, held: {node: [heads]}}`: this
/// node's signed heads after `since` (the latest [`MAX_HEADS`]), and every head it holds for the
/// nodes below it. Not secret: they only let others check this node's log.
pub async fn heads(State(state): State<Arc<AppState>>, _caller: Caller, q: QueryMap) -> Result<Json<Value>, ApiError> {
    let q = request::query(q)?;
    let since: u64 = match q.get("since") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad_request("since: expected a sequence number"))?,
    };
    let files = state.heads.clone();
    let node = state.node.id.clone();
    let out = tokio::task::spawn_blocking(move || {
        let tail = |v: Vec<auth::audit::heads::SignedHead>| {
            let v: Vec<_> = v.into_iter().filter(|h| h.seq > since).collect();
            let skip = v.len().saturating_sub(MAX_HEADS);
            v.into_iter().skip(skip).collect::<Vec<_>>()
        };
        let own = tail(auth::audit::heads::read(&files.own));
        let mut held = serde_json::Map::new();
        for e in std::fs::read_dir(&files.held).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".jsonl") {
                let v = tail(auth::audit::heads::read(&e.path()));
                held.insert(n.to_owned(), json!(v));
            }
        }
        let key = own.last().map(|h| h.key.clone());
        json!({ "node": node, "key": key, "heads": own, "held": held })
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(out))
}
