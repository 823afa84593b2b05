//! What a member asks the others directly, over their API (`advertise_url`): whether they reach
//! etcd. While etcd does not answer this member, it goes on recording past its lease only if
//! every other member it knew says etcd is down for it too — then nobody can claim its
//! cameras. A member that cannot be asked, or that reaches etcd, means this one may be the one
//! cut off, and must stop when its lease would have expired.

use std::time::Duration;

use serde_json::Value;

/// Whether the member at `url` says it reaches etcd: `Some(false)` when it says etcd is down
/// for it too, `None` when it cannot be asked or answers something else.
pub fn reaches_etcd(agent: &ureq::Agent, url: &str) -> Option<bool> {
    let mut resp = agent
        .get(&format!("{}/api/v1/cluster/etcd", url.trim_end_matches('/')))
        .call()
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let text = resp.body_mut().with_config().limit(4096).read_to_string().ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["etcd_reachable"].as_bool()
}

/// An agent for asking peers, each call bounded by `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Whether etcd is down for every member of `others` (their URLs), so that this member may go
/// on recording what it holds: all must answer, and all must say so. With no other member,
/// nobody can take anything over without etcd either.
pub fn all_confirm_down(agent: &ureq::Agent, others: &[crate::MemberInfo]) -> bool {
    others.iter().all(|m| reaches_etcd(agent, &m.url) == Some(false))
}
