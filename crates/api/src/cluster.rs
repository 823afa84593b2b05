//! `GET /api/v1/cluster`: this node's cluster (several nodes of one level on etcd) as the node
//! sees it — members, the cameras each owns, its lease — through [`ClusterAccess`], which the
//! node implements so that `api` does not depend on the `cluster` crate.

use std::sync::Arc;

use auth::Action;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A cluster member's view, for the API.
pub trait ClusterAccess: Send + Sync {
    /// `{name, cluster, state, lease, members:[{name, url, weight, cameras, load}], recording}`.
    fn status(&self) -> Value;
    /// Whether the cluster is degraded (etcd unreachable, or this member's lease lost): said
    /// in health too.
    fn degraded(&self) -> Option<String>;
    /// Whether etcd answered this member's last round.
    fn etcd_reachable(&self) -> bool;
    /// The member a request comes from, when `token` is the cluster's node credential and
    /// `member` (the `x-sharpeye-node` header) names it.
    fn node_caller(&self, token: &str, member: Option<&str>) -> Option<String>;
    /// `GET path` on every other live member with the node credential (blocking: call it off
    /// the runtime's threads): each member's name and its JSON answer or why there is none.
    fn ask_members(&self, path: &str) -> Vec<(String, Result<Value, String>)>;
    /// The other live members' segments of `stream` overlapping `[start, end)`, fetched into
    /// this member's cluster cache and scanned (blocking): what playback plans over beside its
    /// own. A member that cannot be reached contributes nothing (its part shows as a gap).
    fn segments(&self, stream: &media::StreamId, start: media::WallTime, end: media::WallTime) -> Vec<MemberSegment>;
    /// This member's name.
    fn member(&self) -> String;
    /// Members that joined before but are not live now: their recordings are missing from
    /// merged answers until they return, which the answers say.
    fn members_down(&self) -> Vec<String>;
}

/// Another member's segment fetched here: whose, where it is now, and its record.
pub type MemberSegment = (String, std::path::PathBuf, store::SegmentRecord);

/// The segments of `extra` as playback plans over them.
pub fn planned(extra: &[MemberSegment]) -> Vec<(std::path::PathBuf, store::SegmentRecord)> {
    extra.iter().map(|(_, p, r)| (p.clone(), r.clone())).collect()
}

/// Plans `req` over what this member recorded and, only where that does not cover the whole
/// range (a gap, a late start, an early end), over the other members' segments too, fetched
/// here (`cluster`: `None` for a node alone). Returns the plan and the segments fetched, which
/// an export packages with its own.
pub fn plan_over_members(
    cluster: Option<&dyn ClusterAccess>,
    store: &store::Store,
    samples: &store::playback::SampleCache,
    req: &store::playback::PlaybackRequest,
) -> Result<(store::playback::PlaybackPlan, Vec<MemberSegment>), store::playback::PlanError> {
    use store::playback::{PlanError, plan, plan_with};
    let own = plan(store, samples, req);
    let Some(cluster) = cluster else {
        return own.map(|p| (p, Vec::new()));
    };
    match own {
        // Members never record a camera at the same time: nothing of theirs can be in it.
        Ok(p) if p.gaps.is_empty() && p.truncated.is_none() && p.first == req.start && p.last == req.end => {
            return Ok((p, Vec::new()));
        }
        Ok(_) | Err(PlanError::NothingRecorded) => {}
        Err(e) => return Err(e),
    }
    let extra = cluster.segments(&req.stream, req.start, req.end);
    plan_with(store, samples, req, planned(&extra)).map(|p| (p, extra))
}

/// The header a member names itself in when it calls another.
pub const NODE_HEADER: &str = "x-sharpeye-node";

/// `GET /api/v1/cluster`: the cluster as this node sees it; `{"state":"standalone"}` for a node
/// without `[cluster]`.
pub async fn status(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Admin, None)?;
    Ok(Json(match state.cluster.get() {
        Some(c) => c.status(),
        None => json!({ "state": "standalone", "name": state.node.id, "members": [] }),
    }))
}

/// `GET /api/v1/cluster/etcd`: whether this node reaches etcd. Public: a member that lost etcd
/// asks the others before it goes on recording past its lease (`cluster::peers`); it says
/// nothing else. `null` on a node without `[cluster]`.
pub async fn etcd(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "etcd_reachable": state.cluster.get().map(|c| c.etcd_reachable()) }))
}
