//! The vocabulary of permissions: actions, roles, subjects, resources and grants.
//!
//! A grant gives a subject (a user, every user of a role, or every user of a department and its
//! sub-departments) a set of actions over a resource (one camera, a camera group, an org subtree
//! or everything). What a user may finally do is the union of the grants that reach them, cut
//! down to their role's ceiling; an API token is cut down further to its own scope. Anything not
//! granted is denied. `docs/permissions.md` explains the model with examples.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Something a caller does.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Watch live video (live.mp4, WHEP, RTSP).
    Live,
    /// Watch recordings (playback.mp4, HLS, recording listings).
    Playback,
    /// Export evidence packages.
    Export,
    /// Create and release evidence holds.
    Hold,
    /// Steer PTZ cameras.
    Ptz,
    /// Manage users, departments, groups, grants and tokens.
    Admin,
    /// Read the audit log.
    Audit,
    /// Scrape Prometheus metrics.
    Metrics,
}

impl Action {
    /// Every action, in bit order.
    pub const ALL: [Action; 8] = [
        Action::Live,
        Action::Playback,
        Action::Export,
        Action::Hold,
        Action::Ptz,
        Action::Admin,
        Action::Audit,
        Action::Metrics,
    ];

    /// Its name in config, the API and audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Live => "live",
            Action::Playback => "playback",
            Action::Export => "export",
            Action::Hold => "hold",
            Action::Ptz => "ptz",
            Action::Admin => "admin",
            Action::Audit => "audit",
            Action::Metrics => "metrics",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// True for actions on cameras; false for node-wide ones (admin, audit, metrics), which
    /// only a grant over `*` gives.
    pub fn is_camera_action(self) -> bool {
        Actions::CAMERA.contains(self)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of actions (a bit mask).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Actions(u16);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);
    /// Every action.
    pub const ALL: Actions = Actions(0xff);
    /// The actions that apply to cameras; having any of them on a camera makes it visible.
    pub const CAMERA: Actions = Actions(0b1_1111);

    /// The set holding `actions`.
    pub fn of(actions: &[Action]) -> Actions {
        Actions(actions.iter().fold(0, |m, a| m | a.bit()))
    }

    /// True if `a` is in the set.
    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    /// True if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in the set, in order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Their names.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Action::as_str).collect()
    }

    /// Parses a list of names, naming the first unknown one.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Actions, String> {
        let mut m = Actions::NONE;
        for n in names {
            let a = Action::parse(n.as_ref()).ok_or_else(|| {
                format!(
                    "{:?} is not an action (expected one of {})",
                    n.as_ref(),
                    Actions::ALL.names().join(", ")
                )
            })?;
            m = m | Actions::of(&[a]);
        }
        Ok(m)
    }
}

impl std::ops::BitOr for Actions {
    type Output = Actions;
    fn bitor(self, o: Actions) -> Actions {
        Actions(self.0 | o.0)
    }
}

impl std::ops::BitAnd for Actions {
    type Output = Actions;
    fn bitand(self, o: Actions) -> Actions {
        Actions(self.0 & o.0)
    }
}

impl std::ops::Not for Actions {
    type Output = Actions;
    fn not(self) -> Actions {
        Actions(!self.0 & Actions::ALL.0)
    }
}

impl Serialize for Actions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Actions, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Actions::parse(&names).map_err(serde::de::Error::custom)
    }
}

/// A role: the most a user may do, whatever grants say.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Watches live video and recordings.
    Viewer,
    /// Also steers PTZ cameras.
    Operator,
    /// Runs incidents: also exports evidence and holds recordings.
    Dispatcher,
    /// Reads the audit log (and nothing else unless granted: auditors check, they do not watch).
    Auditor,
    /// Administers everything.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Dispatcher,
        Role::Auditor,
        Role::Admin,
    ];

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Dispatcher => "dispatcher",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// The most this role may do.
    pub fn ceiling(self) -> Actions {
        use Action::*;
        match self {
            Role::Viewer => Actions::of(&[Live, Playback]),
            Role::Operator => Actions::of(&[Live, Playback, Ptz]),
            Role::Dispatcher => Actions::of(&[Live, Playback, Export, Hold, Ptz]),
            Role::Auditor => Actions::of(&[Audit, Playback]),
            Role::Admin => Actions::ALL,
        }
    }

    /// What the role has without any grant: administrators everything everywhere, auditors
    /// the audit log. Everyone else starts with nothing.
    pub fn implicit(self) -> Actions {
        match self {
            Role::Admin => Actions::ALL,
            Role::Auditor => Actions::of(&[Action::Audit]),
            _ => Actions::NONE,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let s = String::deserialize(d)?;
        Role::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a role (expected viewer, operator, dispatcher, auditor or admin)"
            ))
        })
    }
}

/// Who a grant is for. Written `user:NAME`, `role:ROLE` or `department:ID`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// One user.
    User(String),
    /// Every user with this role.
    Role(Role),
    /// Every user of this department or of any department below it.
    Department(String),
}

impl Subject {
    /// Parses `kind:name`.
    pub fn parse(s: &str) -> Result<Subject, String> {
        let bad = || format!("{s:?} is not a subject: expected user:NAME, role:ROLE or department:ID");
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "user" => Ok(Subject::User(name.to_owned())),
            "department" => Ok(Subject::Department(name.to_owned())),
            "role" => Role::parse(name)
                .map(Subject::Role)
                .ok_or_else(|| format!("{name:?} is not a role")),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(n) => write!(f, "user:{n}"),
            Subject::Role(r) => write!(f, "role:{r}"),
            Subject::Department(d) => write!(f, "department:{d}"),
        }
    }
}

/// What a grant covers. Written `*`, `camera:ID`, `group:ID` or `org:PATH`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Every camera, and the node itself (admin, audit, metrics).
    All,
    /// One camera.
    Camera(String),
    /// The cameras of a group.
    Group(String),
    /// Cameras whose org path is this path or below it (`dalian/xigang` covers
    /// `dalian/xigang/renmin-road` but not `dalian/xigangbei`).
    Org(String),
}

impl Resource {
    /// Parses the written form.
    pub fn parse(s: &str) -> Result<Resource, String> {
        if s == "*" {
            return Ok(Resource::All);
        }
        let bad = || format!("{s:?} is not a resource: expected *, camera:ID, group:ID or org:PATH");
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let name = name.trim_end_matches('/');
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "camera" => Ok(Resource::Camera(name.to_owned())),
            "group" => Ok(Resource::Group(name.to_owned())),
            "org" => Ok(Resource::Org(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::All => f.write_str("*"),
            Resource::Camera(c) => write!(f, "camera:{c}"),
            Resource::Group(g) => write!(f, "group:{g}"),
            Resource::Org(o) => write!(f, "org:{o}"),
        }
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(Subject);
string_serde!(Resource);

/// True if `org` is `prefix` or lies below it, on `/` boundaries.
pub fn org_within(org: &str, prefix: &str) -> bool {
    org.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(r.implicit() & r.ceiling(), r.implicit());
        }
        for s in ["user:alice", "role:viewer", "department:xigang/patrol"] {
            assert_eq!(Subject::parse(s).unwrap().to_string(), s);
        }
        for s in ["*", "camera:34020000001320000001", "group:east", "org:dalian/xigang"] {
            assert_eq!(Resource::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Resource::parse("org:dalian/").unwrap(), Resource::Org("dalian".into()));
    }

    #[test]
    fn bad_names_are_explained() {
        for s in ["", "alice", "user:", "role:root", "team:x", ":x"] {
            assert!(Subject::parse(s).is_err(), "{s}");
        }
        for s in ["", "camera", "camera:", "org:/", "site:x", "**"] {
            assert!(Resource::parse(s).is_err(), "{s}");
        }
        let e = Actions::parse(&["live", "fly"]).unwrap_err();
        assert!(e.contains("\"fly\"") && e.contains("playback"), "{e}");
    }

    #[test]
    fn org_subtrees_stop_at_slashes() {
        assert!(org_within("dalian/xigang", "dalian/xigang"));
        assert!(org_within("dalian/xigang/renmin", "dalian/xigang"));
        assert!(!org_within("dalian/xigangbei", "dalian/xigang"));
        assert!(!org_within("dalian", "dalian/xigang"));
    }

    #[test]
    fn action_sets() {
        let s = Actions::of(&[Action::Live, Action::Audit]);
        assert!(s.contains(Action::Live) && s.contains(Action::Audit) && !s.contains(Action::Export));
        assert_eq!(s.names(), ["live", "audit"]);
        assert!(Action::Hold.is_camera_action() && !Action::Admin.is_camera_action());
        assert_eq!((s & Actions::CAMERA).names(), ["live"]);
    }
}
