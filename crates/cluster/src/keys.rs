//! Where a cluster keeps what in etcd: every key a member reads or writes, in one place, so
//! that two members built from different modules can never disagree on a spelling.
//!
//! All under `/sharpeye/<cluster>/` (the level's `[node] id`):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `members/<name>` | `{url, weight}` | the member's |
//! | `known/<name>` | `{url, weight}`: every member that ever joined, until forgotten | none |
//! | `drain/<name>` | why it is drained | none |
//! | `owners/<camera>` | the member recording it (a claim; its revision the fencing token) | the claimer's |
//! | `handover/<camera>` | wall time (µs) of the key frame its last owner stopped before | the old owner's |
//! | `holds/<id>` | a hold (JSON) | none |
//! | `released/<id>` | a released hold's tombstone: who released it, when (JSON) | none |
//! | `directory` | the users-and-grants directory file | none |
//! | `secret` | the node credential's secret (hex) | none |

/// `members/`: the live members' entries.
pub fn members(cluster: &str) -> String {
    format!("/sharpeye/{cluster}/members/")
}

/// `members/<name>`: member `name`'s entry, under its lease.
pub fn member(cluster: &str, name: &str) -> String {
    format!("{}{name}", members(cluster))
}

/// `known/<name>`.
pub fn known_member(cluster: &str, name: &str) -> String {
    format!("{}{name}", known(cluster))
}

/// `known/`: every member that has joined and not been forgotten (`sharpeye cluster forget`),
/// live or not: one known but not live is down, and its recordings are missing from merged
/// answers until it returns.
pub fn known(cluster: &str) -> String {
    format!("/sharpeye/{cluster}/known/")
}

/// `drain/`: the drained members.
pub fn drains(cluster: &str) -> String {
    format!("/sharpeye/{cluster}/drain/")
}

/// `drain/<name>`.
pub fn drain(cluster: &str, name: &str) -> String {
    format!("{}{name}", drains(cluster))
}

/// `owners/<camera>`: the claim on `camera` (`camera` empty: the prefix of every claim).
pub fn owner(cluster: &str, camera: &str) -> String {
    format!("/sharpeye/{cluster}/owners/{camera}")
}

/// `handover/<camera>`.
pub fn handover(cluster: &str, camera: &str) -> String {
    format!("/sharpeye/{cluster}/handover/{camera}")
}

/// `holds/`: the cluster's holds (`holds/<id>`).
pub fn holds(cluster: &str) -> String {
    format!("/sharpeye/{cluster}/holds/")
}

/// `released/<id>`: a released hold's tombstone, so that a member that was down when it was
/// released releases it too instead of sharing it again.
pub fn released_hold(cluster: &str, id: &str) -> String {
    format!("/sharpeye/{cluster}/released/{id}")
}

/// `directory`.
pub fn directory(cluster: &str) -> String {
    format!("/sharpeye/{cluster}/directory")
}

/// `secret`.
pub fn secret(cluster: &str) -> String {
    format!("/sharpeye/{cluster}/secret")
}
