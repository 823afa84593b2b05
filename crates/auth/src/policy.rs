//! The compiled permission model: answers "may this caller do this to that camera" in well
//! under a microsecond, and "which cameras may this caller see" once per caller per change.
//!
//! A `Policy` is immutable. It is rebuilt from the directory and the camera catalog whenever
//! either changes, and swapped in whole, so a check never sees half a change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::directory::Directory;
use crate::model::{Action, Actions, Resource, Role, org_within};

/// A camera as the permission model knows it: its id and where it sits in the org tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraRef {
    /// Camera id.
    pub id: String,
    /// Org path (`dalian/xigang/renmin-road`), may be empty.
    pub org: String,
}

/// How a caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A session from login (or a password on RTSP).
    Session,
    /// A scoped API token.
    ApiToken(Arc<TokenScope>),
    /// A signed media URL for one camera and action.
    MediaToken,
}

/// What an API token is limited to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenScope {
    /// Token id.
    pub id: String,
    /// Token name ("grid-management").
    pub name: String,
    /// Its actions.
    pub actions: Actions,
    /// Its resources.
    pub resources: Vec<Resource>,
}

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user (for a token, its owner).
    pub user: String,
    /// The user's role now.
    pub role: Role,
    /// The user's department now.
    pub department: Option<String>,
    /// How they authenticated.
    pub via: Via,
}

impl Principal {
    /// How audit entries name the caller: the user, or `token:NAME@owner` for an API token.
    pub fn actor(&self) -> String {
        match &self.via {
            Via::ApiToken(t) => format!("token:{}@{}", t.name, self.user),
            _ => self.user.clone(),
        }
    }
}

/// The answer to "may they?".
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Yes.
    Allow,
    /// No, and the caller may know the thing exists (403).
    Forbidden,
    /// No, and the caller may not even see it (answered like an unknown camera: 404).
    Hidden,
}

#[derive(Clone, Debug)]
enum Covers {
    All,
    Camera(u32),
    Group(u32),
    Org(String),
    Nothing,
}

#[derive(Clone, Debug)]
struct CompiledGrant {
    actions: Actions,
    covers: Covers,
}

/// The cameras a caller may see, as catalog indices, with what they may do to each.
pub type Visible = Arc<[(u32, Actions)]>;

/// Whose visible cameras: a user, and the API token they act through, if any.
type VisibleKey = (String, Option<String>);

/// A user's current role and department, as checks need them.
#[derive(Clone, Debug)]
pub struct UserView {
    /// Role.
    pub role: Role,
    /// Department.
    pub department: Option<String>,
    /// Disabled users are refused.
    pub disabled: bool,
}

/// The compiled model.
#[derive(Debug)]
pub struct Policy {
    cams: HashMap<String, u32>,
    cam_ids: Vec<String>,
    cam_org: Vec<String>,
    cam_groups: Vec<Vec<u32>>,
    groups: HashMap<String, u32>,
    by_user: HashMap<String, Vec<CompiledGrant>>,
    by_role: [Vec<CompiledGrant>; 5],
    by_dept: HashMap<String, Vec<CompiledGrant>>,
    /// Each department with its ancestors, nearest first.
    dept_chain: HashMap<String, Vec<String>>,
    users: HashMap<String, UserView>,
    visible: Mutex<HashMap<VisibleKey, Visible>>,
}

impl Policy {
    /// Compiles `dir` over `cameras`. Grants naming cameras or groups that do not exist
    /// cover nothing (a camera may be added to the config later).
    pub fn build(dir: &Directory, cameras: &[CameraRef]) -> Policy {
        let cams: HashMap<String, u32> = cameras
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i as u32))
            .collect();
        let groups: HashMap<String, u32> = dir
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i as u32))
            .collect();
        let mut cam_groups = vec![Vec::new(); cameras.len()];
        for (gi, g) in dir.groups.iter().enumerate() {
            for c in &g.cameras {
                if let Some(&ci) = cams.get(c) {
                    cam_groups[ci as usize].push(gi as u32);
                }
            }
        }
        let compile = |actions: Actions, r: &Resource| CompiledGrant {
            actions,
            covers: match r {
                Resource::All => Covers::All,
                Resource::Camera(c) => cams.get(c).map_or(Covers::Nothing, |&i| Covers::Camera(i)),
                Resource::Group(g) => groups.get(g).map_or(Covers::Nothing, |&i| Covers::Group(i)),
                Resource::Org(o) => Covers::Org(o.clone()),
            },
        };
        let mut by_user: HashMap<String, Vec<CompiledGrant>> = HashMap::new();
        let mut by_role: [Vec<CompiledGrant>; 5] = Default::default();
        let mut by_dept: HashMap<String, Vec<CompiledGrant>> = HashMap::new();
        for g in &dir.grants {
            let c = compile(g.actions, &g.resource);
            match &g.subject {
                crate::Subject::User(u) => by_user.entry(u.clone()).or_default().push(c),
                crate::Subject::Role(r) => by_role[*r as usize].push(c),
                crate::Subject::Department(d) => by_dept.entry(d.clone()).or_default().push(c),
            }
        }
        let parents: HashMap<&str, Option<&str>> = dir
            .departments
            .iter()
            .map(|d| (d.id.as_str(), d.parent.as_deref()))
            .collect();
        let dept_chain = dir
            .departments
            .iter()
            .map(|d| {
                let mut chain = vec![d.id.clone()];
                let mut at = d.parent.as_deref();
                // Validation refuses cycles; the bound keeps a bad file from hanging us anyway.
                while let Some(p) = at
                    && chain.len() <= parents.len()
                {
                    chain.push(p.to_owned());
                    at = parents.get(p).copied().flatten();
                }
                (d.id.clone(), chain)
            })
            .collect();
        let users = dir
            .users
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    UserView {
                        role: u.role,
                        department: u.department.clone(),
                        disabled: u.disabled,
                    },
                )
            })
            .collect();
        Policy {
            cams,
            cam_ids: cameras.iter().map(|c| c.id.clone()).collect(),
            cam_org: cameras.iter().map(|c| c.org.clone()).collect(),
            cam_groups,
            groups,
            by_user,
            by_role,
            by_dept,
            dept_chain,
            users,
            visible: Mutex::default(),
        }
    }

    /// A user's current role and department.
    pub fn user(&self, name: &str) -> Option<&UserView> {
        self.users.get(name)
    }

    /// True if the camera is in the catalog.
    pub fn has_camera(&self, id: &str) -> bool {
        self.cams.contains_key(id)
    }

    fn covers(&self, c: &Covers, cam: u32) -> bool {
        match c {
            Covers::All => true,
            Covers::Camera(i) => *i == cam,
            Covers::Group(g) => self.cam_groups[cam as usize].contains(g),
            Covers::Org(o) => org_within(&self.cam_org[cam as usize], o),
            Covers::Nothing => false,
        }
    }

    fn resource_covers(&self, r: &Resource, cam: u32) -> bool {
        match r {
            Resource::All => true,
            Resource::Camera(c) => self.cam_ids[cam as usize] == *c,
            Resource::Group(g) => self
                .groups
                .get(g)
                .is_some_and(|gi| self.cam_groups[cam as usize].contains(gi)),
            Resource::Org(o) => org_within(&self.cam_org[cam as usize], o),
        }
    }

    /// The ids of the cameras any of `resources` covers (a node's `share` list toward an
    /// upper platform, written like grants), in catalog order.
    pub fn cameras_covered(&self, resources: &[Resource]) -> Vec<String> {
        (0..self.cam_ids.len() as u32)
            .filter(|&c| resources.iter().any(|r| self.resource_covers(r, c)))
            .map(|c| self.cam_ids[c as usize].clone())
            .collect()
    }

    /// True if any of `resources` covers camera `id`.
    pub fn covered(&self, resources: &[Resource], id: &str) -> bool {
        self.cams
            .get(id)
            .is_some_and(|&c| resources.iter().any(|r| self.resource_covers(r, c)))
    }

    fn grants_of<'a>(&'a self, p: &'a Principal) -> impl Iterator<Item = &'a CompiledGrant> + 'a {
        let user = self.by_user.get(&p.user).into_iter().flatten();
        let role = self.by_role[p.role as usize].iter();
        let depts = p
            .department
            .as_ref()
            .and_then(|d| self.dept_chain.get(d))
            .into_iter()
            .flatten()
            .filter_map(|d| self.by_dept.get(d))
            .flatten();
        user.chain(role).chain(depts)
    }

    fn camera_actions_at(&self, p: &Principal, cam: u32) -> Actions {
        let mut m = p.role.implicit();
        for g in self.grants_of(p) {
            if !(g.actions & !m).is_empty() && self.covers(&g.covers, cam) {
                m = m | g.actions;
            }
        }
        m = m & p.role.ceiling() & Actions::CAMERA;
        if let Via::ApiToken(s) = &p.via {
            if !s.resources.iter().any(|r| self.resource_covers(r, cam)) {
                return Actions::NONE;
            }
            m = m & s.actions;
        }
        m
    }

    /// What `p` may do to camera `id` (nothing if the camera is unknown).
    pub fn camera_actions(&self, p: &Principal, id: &str) -> Actions {
        match self.cams.get(id) {
            Some(&cam) => self.camera_actions_at(p, cam),
            None => Actions::NONE,
        }
    }

    /// The node-wide actions (admin, audit, metrics) `p` has: from grants over `*` only.
    pub fn node_actions(&self, p: &Principal) -> Actions {
        let mut m = p.role.implicit();
        for g in self.grants_of(p) {
            if matches!(g.covers, Covers::All) {
                m = m | g.actions;
            }
        }
        m = m & p.role.ceiling() & !Actions::CAMERA;
        if let Via::ApiToken(s) = &p.via {
            if !s.resources.contains(&Resource::All) {
                return Actions::NONE;
            }
            m = m & s.actions;
        }
        m
    }

    /// May `p` do `action` (to `camera`, for camera actions)? Cameras the caller has no
    /// action on at all are `Hidden`, so their existence does not leak.
    pub fn decide(&self, p: &Principal, action: Action, camera: Option<&str>) -> Decision {
        match camera {
            Some(id) => {
                let m = self.camera_actions(p, id);
                if m.contains(action) {
                    Decision::Allow
                } else if m.is_empty() {
                    Decision::Hidden
                } else {
                    Decision::Forbidden
                }
            }
            None if self.node_actions(p).contains(action) => Decision::Allow,
            None => Decision::Forbidden,
        }
    }

    /// The cameras `p` may see (has any action on), in catalog order, with what `p` may do to
    /// each. Computed once per caller and policy, so listings cost a lookup.
    pub fn visible_cameras(&self, p: &Principal) -> Visible {
        let key = (
            p.user.clone(),
            match &p.via {
                Via::ApiToken(s) => Some(s.id.clone()),
                _ => None,
            },
        );
        if let Some(v) = self.visible.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return v.clone();
        }
        let v: Visible = (0..self.cam_ids.len() as u32)
            .map(|c| (c, self.camera_actions_at(p, c)))
            .filter(|(_, a)| !a.is_empty())
            .collect();
        self.visible
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, v.clone());
        v
    }

    /// The id of catalog camera `i`.
    pub fn camera_id(&self, i: u32) -> &str {
        &self.cam_ids[i as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::*;
    use crate::model::Subject;

    fn cams() -> Vec<CameraRef> {
        [
            ("c1", "dalian/xigang/renmin"),
            ("c2", "dalian/xigang/bayi"),
            ("c3", "dalian/zhongshan"),
            ("c4", "dalian/xigangbei"),
        ]
        .iter()
        .map(|(i, o)| CameraRef {
            id: (*i).into(),
            org: (*o).into(),
        })
        .collect()
    }

    fn dir() -> Directory {
        let grant = |id: &str, s: &str, a: &[&str], r: &str| GrantRecord {
            id: id.into(),
            subject: Subject::parse(s).unwrap(),
            actions: Actions::parse(a).unwrap(),
            resource: Resource::parse(r).unwrap(),
            source: Source::Api,
        };
        let dept = |id: &str, parent: Option<&str>| DepartmentRecord {
            id: id.into(),
            name: id.into(),
            parent: parent.map(Into::into),
            source: Source::Api,
        };
        Directory {
            departments: vec![
                dept("city", None),
                dept("xigang", Some("city")),
                dept("zs", Some("city")),
            ],
            groups: vec![GroupRecord {
                id: "gate".into(),
                name: "gates".into(),
                cameras: vec!["c3".into()],
                source: Source::Api,
            }],
            grants: vec![
                grant(
                    "1",
                    "department:xigang",
                    &["live", "playback", "export"],
                    "org:dalian/xigang",
                ),
                grant("2", "department:zs", &["live"], "group:gate"),
                grant("3", "department:city", &["playback"], "camera:c4"),
                grant("4", "user:eve", &["live"], "camera:c2"),
                grant("5", "role:operator", &["metrics"], "*"),
            ],
            ..Default::default()
        }
    }

    fn who(user: &str, role: Role, dept: Option<&str>) -> Principal {
        Principal {
            user: user.into(),
            role,
            department: dept.map(Into::into),
            via: Via::Session,
        }
    }

    #[test]
    fn share_lists_cover_cameras_like_grants_do() {
        let p = Policy::build(&dir(), &cams());
        let r = |v: &[&str]| v.iter().map(|s| Resource::parse(s).unwrap()).collect::<Vec<_>>();
        assert_eq!(p.cameras_covered(&r(&["org:dalian/xigang"])), ["c1", "c2"]);
        assert_eq!(p.cameras_covered(&r(&["group:gate", "camera:c4"])), ["c3", "c4"]);
        assert_eq!(p.cameras_covered(&r(&["*"])).len(), 4);
        assert!(p.cameras_covered(&[]).is_empty());
        assert!(p.covered(&r(&["org:dalian"]), "c4") && !p.covered(&r(&["org:dalian/xigang"]), "c4"));
        assert!(!p.covered(&r(&["*"]), "nope"));
    }

    #[test]
    fn grants_roles_departments_and_orgs_combine() {
        let p = Policy::build(&dir(), &cams());
        let a = who("alice", Role::Viewer, Some("xigang"));
        assert_eq!(p.decide(&a, Action::Live, Some("c1")), Decision::Allow);
        assert_eq!(p.decide(&a, Action::Playback, Some("c2")), Decision::Allow);
        // The department grants export, the viewer role caps it.
        assert_eq!(p.decide(&a, Action::Export, Some("c1")), Decision::Forbidden);
        // org:dalian/xigang does not cover dalian/xigangbei; the city grant (inherited) does.
        assert_eq!(p.camera_actions(&a, "c4").names(), ["playback"]);
        assert_eq!(p.decide(&a, Action::Live, Some("c3")), Decision::Hidden);
        assert_eq!(p.decide(&a, Action::Live, Some("nope")), Decision::Hidden);
        let d = who("dan", Role::Dispatcher, Some("xigang"));
        assert_eq!(p.decide(&d, Action::Export, Some("c1")), Decision::Allow);
        let z = who("zoe", Role::Viewer, Some("zs"));
        assert_eq!(
            p.visible_cameras(&z)
                .iter()
                .map(|&(i, _)| p.camera_id(i))
                .collect::<Vec<_>>(),
            ["c3", "c4"]
        );
        let e = who("eve", Role::Viewer, None);
        assert_eq!(p.visible_cameras(&e).len(), 1);
        assert_eq!(p.decide(&e, Action::Live, Some("c2")), Decision::Allow);
        let nobody = who("nobody", Role::Viewer, None);
        assert!(p.visible_cameras(&nobody).is_empty());
        assert_eq!(p.decide(&nobody, Action::Admin, None), Decision::Forbidden);
    }

    #[test]
    fn node_wide_actions_need_star_and_role() {
        let p = Policy::build(&dir(), &cams());
        let admin = who("root", Role::Admin, None);
        assert_eq!(p.decide(&admin, Action::Admin, None), Decision::Allow);
        assert_eq!(p.decide(&admin, Action::Export, Some("c3")), Decision::Allow);
        assert_eq!(p.visible_cameras(&admin).len(), 4);
        let aud = who("audrey", Role::Auditor, None);
        assert_eq!(p.decide(&aud, Action::Audit, None), Decision::Allow);
        assert_eq!(p.decide(&aud, Action::Admin, None), Decision::Forbidden);
        assert_eq!(p.decide(&aud, Action::Live, Some("c1")), Decision::Hidden);
        let op = who("otto", Role::Operator, None);
        assert_eq!(
            p.decide(&op, Action::Metrics, None),
            Decision::Forbidden,
            "capped by role"
        );
    }

    #[test]
    fn tokens_are_cut_to_their_scope() {
        let p = Policy::build(&dir(), &cams());
        let scope = |actions: &[&str], res: &[&str]| {
            Via::ApiToken(Arc::new(TokenScope {
                id: "t1".into(),
                name: "grid".into(),
                actions: Actions::parse(actions).unwrap(),
                resources: res.iter().map(|r| Resource::parse(r).unwrap()).collect(),
            }))
        };
        let t = Principal {
            via: scope(&["live"], &["camera:c1"]),
            ..who("root", Role::Admin, None)
        };
        assert_eq!(p.decide(&t, Action::Live, Some("c1")), Decision::Allow);
        assert_eq!(p.decide(&t, Action::Playback, Some("c1")), Decision::Forbidden);
        assert_eq!(p.decide(&t, Action::Live, Some("c2")), Decision::Hidden);
        assert_eq!(p.decide(&t, Action::Admin, None), Decision::Forbidden);
        assert_eq!(t.actor(), "token:grid@root");
        // A token never exceeds its owner.
        let v = Principal {
            via: scope(&["live", "export"], &["*"]),
            ..who("alice", Role::Viewer, Some("xigang"))
        };
        assert_eq!(p.decide(&v, Action::Export, Some("c1")), Decision::Forbidden);
        assert_eq!(p.decide(&v, Action::Live, Some("c3")), Decision::Hidden);
        let m = Principal {
            via: scope(&["metrics"], &["*"]),
            ..who("root", Role::Admin, None)
        };
        assert_eq!(p.decide(&m, Action::Metrics, None), Decision::Allow);
        assert!(p.visible_cameras(&m).is_empty());
    }
}
