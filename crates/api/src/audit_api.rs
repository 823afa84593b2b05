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
    let Some(cluster) = state
        .cluster
        .get()
        .cloned()
        .filter(|_| q.get("members").is_some_and(|m| m == "all"))
    else {
        return Ok(Json(json!({ "entries": records, "next": next })));
    };
    // One query over every member's log. Each member keeps its own hash chain: entries are
    // tagged with the member, and paging (`after`, `next`) is per member.
    if q.contains_key("after") {
        return Err(ApiError::bad_request(
            "after: pages one member's log; with members=all, narrow by start and end instead",
        ));
    }
    let me = cluster.member();
    let mut entries: Vec<Value> = records
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .map(|mut v| {
            v["node"] = json!(me);
            v
        })
        .collect();
    let mut nexts = serde_json::Map::new();
    nexts.insert(me.clone(), json!(next));
    let path = format!(
        "/api/v1/audit?{}",
        q.iter()
            .filter(|(k, _)| k.as_str() != "members")
            .map(|(k, v)| format!("{k}={}", crate::state::query_escape(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let answers = tokio::task::spawn_blocking(move || cluster.ask_members(&path))
        .await
        .map_err(ApiError::internal)?;
    let mut missing = Vec::new();
    for (member, answer) in answers {
        match answer {
            Ok(v) => {
                nexts.insert(member.clone(), v["next"].clone());
                entries.extend(v["entries"].as_array().into_iter().flatten().take(limit).map(|e| {
                    let mut e = e.clone();
                    e["node"] = json!(member);
                    e
                }));
            }
            Err(why) => {
                tracing::warn!(member = %member, "audit entries not merged: {why}");
                missing.push(member);
            }
        }
    }
    entries.sort_by_cached_key(|e| {
        e["at"]
            .as_str()
            .and_then(|a| time::parse("at", a).ok())
            .map_or(i64::MIN, |t| t.as_micros())
    });
    Ok(Json(
        json!({ "entries": entries, "next": Value::Null, "next_by_member": nexts, "members_unanswered": missing }),
    ))
}

/// Most heads in one answer.
const MAX_HEADS: usize = 1000;

/// `held_since`: `node:seq` pairs, comma-separated (at most 1000).
fn held_since(v: &str) -> Result<std::collections::HashMap<String, u64>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "held_since: expected node:seq pairs separated by commas, like street-1:120,community-4:88",
        )
    };
    let pairs: Vec<&str> = v.split(',').filter(|p| !p.is_empty()).collect();
    if pairs.len() > 1000 {
        return Err(bad());
    }
    pairs
        .into_iter()
        .map(|p| {
            let (n, seq) = p.rsplit_once(':').ok_or_else(bad)?;
            Ok((n.to_owned(), seq.parse().map_err(|_| bad())?))
        })
        .collect()
}

/// `GET /api/v1/audit/heads?since=SEQ[&held_since=NODE:SEQ,...]`: `{node, key, heads, held:
/// {node: [heads]}}`: this node's signed heads after `since`, and the heads it holds for the
/// nodes below it, each node's after its own `held_since` entry (the latest [`MAX_HEADS`] of
/// each). Not secret: they only let others check this node's log.
pub async fn heads(State(state): State<Arc<AppState>>, _caller: Caller, q: QueryMap) -> Result<Json<Value>, ApiError> {
    let q = request::query(q)?;
    let since: u64 = match q.get("since") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad_request("since: expected a sequence number"))?,
    };
    let held_since = held_since(q.get("held_since").map(String::as_str).unwrap_or(""))?;
    let files = state.heads.clone();
    let node = state.node.id.clone();
    let out = tokio::task::spawn_blocking(move || {
        let tail = |v: Vec<auth::audit::heads::SignedHead>, since: u64| {
            let v: Vec<_> = v.into_iter().filter(|h| h.seq > since).collect();
            let skip = v.len().saturating_sub(MAX_HEADS);
            v.into_iter().skip(skip).collect::<Vec<_>>()
        };
        let own = tail(auth::audit::heads::read(&files.own), since);
        let mut held = serde_json::Map::new();
        for e in std::fs::read_dir(&files.held).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".jsonl") {
                let after = held_since.get(n).copied().unwrap_or(0);
                let v = tail(auth::audit::heads::read(&e.path()), after);
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

/// `GET /api/v1/audit/verify`: walks the whole hash chain as `sharpeye audit verify` does and
/// says whether it is intact, with the head to compare with a copy kept elsewhere.
pub async fn verify(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Audit, None)?;
    let dir = state.audit.dir().to_owned();
    // Entries still in the writer's buffer are not on disk yet: flush so the walk sees them.
    let audit = state.audit.clone();
    let report = tokio::task::spawn_blocking(move || {
        let _ = audit.flush();
        auth::audit::verify(&dir)
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(match report {
        Ok(r) => json!({ "intact": true, "entries": r.entries, "files": r.files, "head": r.last_hash }),
        Err(e) => json!({ "intact": false, "error": e.to_string() }),
    }))
}

#[cfg(test)]
mod tests {
    use super::held_since;

    #[test]
    fn held_since_takes_node_seq_pairs_and_refuses_anything_else() {
        let m = held_since("street-1:120,community:88,").unwrap();
        assert_eq!((m["street-1"], m["community"], m.len()), (120, 88, 2));
        assert!(held_since("").unwrap().is_empty());
        for bad in ["street", "street:-1", "a:1,b:x", ":"] {
            assert!(held_since(bad).is_err(), "{bad}");
        }
        let many = (0..1001).map(|i| format!("n{i}:1")).collect::<Vec<_>>().join(",");
        assert!(held_since(&many).is_err());
    }
}
