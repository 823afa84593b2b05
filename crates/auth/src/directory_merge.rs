//! Three-way merge of the directory between cluster members.
//!
//! Every member of a level's cluster keeps its own copy of the directory file, and etcd holds
//! the cluster's. When two administrators change it through two members between two syncs,
//! taking either whole file would silently drop the other's change (a user created, a token
//! revoked). Instead each member merges entry by entry against the version both last agreed
//! on: an entry changed on one side only takes that side's change, an entry changed on both
//! sides the same way is taken once, and only an entry changed differently on both sides is a
//! conflict, settled for the version already in etcd (it was committed first) and named so
//! that an operator can look at it.

use std::collections::{HashMap, HashSet};

use crate::directory::{DepartmentRecord, Directory, GrantRecord, GroupRecord, TokenRecord, UserRecord};

/// The outcome of [`merge3`]: the merged directory and the entries both sides changed
/// differently (kept as `theirs` had them), as `"user alice"`-style names.
#[derive(Debug, Default)]
pub struct Merged {
    /// The directory with both sides' changes.
    pub directory: Directory,
    /// Entries changed differently on both sides; `theirs` was kept.
    pub conflicts: Vec<String>,
}

/// Merges `ours` (this member's file) and `theirs` (etcd's) against `base`, the version both
/// started from. Entries keep `theirs`' order, followed by those only `ours` added, in ours'.
pub fn merge3(base: &Directory, ours: &Directory, theirs: &Directory) -> Merged {
    let mut conflicts = Vec::new();
    let directory = Directory {
        users: merge_list(
            "user",
            &base.users,
            &ours.users,
            &theirs.users,
            |u: &UserRecord| &u.name,
            &mut conflicts,
        ),
        departments: merge_list(
            "department",
            &base.departments,
            &ours.departments,
            &theirs.departments,
            |d: &DepartmentRecord| &d.id,
            &mut conflicts,
        ),
        groups: merge_list(
            "group",
            &base.groups,
            &ours.groups,
            &theirs.groups,
            |g: &GroupRecord| &g.id,
            &mut conflicts,
        ),
        grants: merge_list(
            "grant",
            &base.grants,
            &ours.grants,
            &theirs.grants,
            |g: &GrantRecord| &g.id,
            &mut conflicts,
        ),
        tokens: merge_list(
            "token",
            &base.tokens,
            &ours.tokens,
            &theirs.tokens,
            |t: &TokenRecord| &t.id,
            &mut conflicts,
        ),
    };
    Merged { directory, conflicts }
}

/// One list's three-way merge, entries identified by `key` (the first entry of a key counts).
fn merge_list<T: Clone + PartialEq>(
    what: &str,
    base: &[T],
    ours: &[T],
    theirs: &[T],
    key: impl Fn(&T) -> &String,
    conflicts: &mut Vec<String>,
) -> Vec<T> {
    fn index<'a, T>(list: &'a [T], key: &impl Fn(&T) -> &String) -> HashMap<&'a str, &'a T> {
        let mut m = HashMap::with_capacity(list.len());
        for e in list {
            m.entry(key(e).as_str()).or_insert(e);
        }
        m
    }
    let (b, o, t) = (index(base, &key), index(ours, &key), index(theirs, &key));
    let mut out = Vec::with_capacity(theirs.len().max(ours.len()));
    let mut seen = HashSet::new();
    for k in theirs.iter().chain(ours).chain(base).map(|e| key(e).as_str()) {
        if !seen.insert(k) {
            continue;
        }
        let (bv, ov, tv) = (b.get(k).copied(), o.get(k).copied(), t.get(k).copied());
        let chosen = if ov == tv {
            ov
        } else if ov == bv {
            tv
        } else if tv == bv {
            ov
        } else {
            conflicts.push(format!("{what} {k}"));
            tv
        };
        out.extend(chosen.cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Source;
    use crate::model::Role;

    fn user(name: &str, role: Role) -> UserRecord {
        UserRecord {
            name: name.into(),
            role,
            department: None,
            password_hash: format!("hash-of-{name}"),
            disabled: false,
            source: Source::Api,
        }
    }

    fn users(list: &[(&str, Role)]) -> Directory {
        Directory {
            users: list.iter().map(|(n, r)| user(n, *r)).collect(),
            ..Directory::default()
        }
    }

    fn names(d: &Directory) -> Vec<(&str, Role)> {
        d.users.iter().map(|u| (u.name.as_str(), u.role)).collect()
    }

    #[test]
    fn both_sides_additions_and_removals_survive() {
        let base = users(&[("alice", Role::Viewer), ("bob", Role::Viewer), ("carol", Role::Viewer)]);
        // Here: dave added, bob removed. In etcd: erin added, carol promoted.
        let ours = users(&[("alice", Role::Viewer), ("carol", Role::Viewer), ("dave", Role::Viewer)]);
        let theirs = users(&[
            ("alice", Role::Viewer),
            ("bob", Role::Viewer),
            ("carol", Role::Admin),
            ("erin", Role::Operator),
        ]);
        let m = merge3(&base, &ours, &theirs);
        assert!(m.conflicts.is_empty(), "{:?}", m.conflicts);
        assert_eq!(
            names(&m.directory),
            vec![
                ("alice", Role::Viewer),
                ("carol", Role::Admin),
                ("erin", Role::Operator),
                ("dave", Role::Viewer)
            ]
        );
    }

    #[test]
    fn the_same_change_on_both_sides_is_taken_once() {
        let base = users(&[("alice", Role::Viewer)]);
        let both = users(&[("alice", Role::Admin), ("bob", Role::Viewer)]);
        let m = merge3(&base, &both, &both);
        assert!(m.conflicts.is_empty());
        assert_eq!(m.directory, both);
        // Removed on both sides: gone, no conflict.
        let m = merge3(&base, &Directory::default(), &Directory::default());
        assert!(m.conflicts.is_empty() && m.directory.users.is_empty());
    }

    #[test]
    fn an_entry_changed_differently_on_both_sides_keeps_etcd_s_and_is_named() {
        let base = users(&[("alice", Role::Viewer), ("bob", Role::Viewer)]);
        let ours = users(&[("alice", Role::Operator), ("bob", Role::Viewer)]);
        let theirs = users(&[("alice", Role::Admin)]);
        let m = merge3(&base, &ours, &theirs);
        assert_eq!(m.conflicts, vec!["user alice".to_owned()]);
        assert_eq!(names(&m.directory), vec![("alice", Role::Admin)]);
        // Changed here, removed there (and the reverse): a conflict, settled for etcd's.
        let m = merge3(
            &base,
            &users(&[("alice", Role::Viewer), ("bob", Role::Admin)]),
            &users(&[("alice", Role::Viewer)]),
        );
        assert_eq!(m.conflicts, vec!["user bob".to_owned()]);
        assert_eq!(names(&m.directory), vec![("alice", Role::Viewer)]);
    }

    #[test]
    fn every_list_is_merged_by_its_own_key() {
        let token = |id: &str, name: &str| TokenRecord {
            id: id.into(),
            name: name.into(),
            owner: "admin".into(),
            actions: crate::model::Actions::parse(&["live"]).unwrap(),
            resources: vec![crate::model::Resource::parse("*").unwrap()],
            expires_at: None,
            secret_sha256: format!("sha-of-{id}"),
            created_at: 0,
        };
        let base = Directory {
            tokens: vec![token("t1", "grid"), token("t2", "dispatch")],
            ..Directory::default()
        };
        // Revoked here; another made there.
        let ours = Directory {
            tokens: vec![token("t2", "dispatch")],
            ..Directory::default()
        };
        let theirs = Directory {
            tokens: vec![token("t1", "grid"), token("t2", "dispatch"), token("t3", "wall")],
            ..Directory::default()
        };
        let m = merge3(&base, &ours, &theirs);
        let ids: Vec<&str> = m.directory.tokens.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["t2", "t3"]);
    }
}
