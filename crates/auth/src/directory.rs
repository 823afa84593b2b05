//! Who exists and what they were granted: users, departments, camera groups, grants and API
//! tokens, and the file that keeps the ones made through the API or the CLI.
//!
//! Entries come from two places. Those in the config file are read-only at run time (they are
//! changed by editing the config). Those made through the admin API or `sharpeye user add` are
//! kept in `<data dir>/auth/directory.json`, written whole (temp file, fsync, rename, fsync of
//! the directory) under an exclusive `flock` on `directory.lock`, so the server and the CLI never
//! overwrite each other's changes and a crash leaves either the old or the new file.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Actions, Resource, Role, Subject};

/// Where an entry was defined.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The config file: read-only at run time.
    Config,
    /// The admin API or the CLI.
    #[default]
    Api,
}

/// A user who can log in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Department id.
    #[serde(default)]
    pub department: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// A disabled user cannot log in and their tokens stop working.
    #[serde(default)]
    pub disabled: bool,
    /// Where it was defined.
    #[serde(default)]
    pub source: Source,
}

/// A department (a unit of an org: a police station, a grid office). Departments form a tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepartmentRecord {
    /// Id, used in grants (`department:ID`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The department above, if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// Where it was defined.
    #[serde(default)]
    pub source: Source,
}

/// A named set of cameras.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Id, used in grants (`group:ID`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Camera ids.
    pub cameras: Vec<String>,
    /// Where it was defined.
    #[serde(default)]
    pub source: Source,
}

/// A grant: `subject` may do `actions` over `resource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// Id (for deletion).
    pub id: String,
    /// Who.
    pub subject: Subject,
    /// What.
    pub actions: Actions,
    /// Over what.
    pub resource: Resource,
    /// Where it was defined.
    #[serde(default)]
    pub source: Source,
}

/// A scoped API token for other software (grid management, dispatch). It acts for its owner,
/// cut down to `actions` over `resources`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Id (the token's public part, for listing and revocation).
    pub id: String,
    /// What it is for ("grid-management").
    pub name: String,
    /// The user it acts for.
    pub owner: String,
    /// The most it may do.
    pub actions: Actions,
    /// Where it may do it.
    pub resources: Vec<Resource>,
    /// Unix seconds after which it stops working, if ever.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Hex SHA-256 of the secret part; the secret itself is shown once and never stored.
    pub secret_sha256: String,
    /// Unix seconds of creation.
    pub created_at: i64,
}

/// Everything the permission model is built from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Directory {
    /// Users.
    #[serde(default)]
    pub users: Vec<UserRecord>,
    /// Departments.
    #[serde(default)]
    pub departments: Vec<DepartmentRecord>,
    /// Camera groups.
    #[serde(default)]
    pub groups: Vec<GroupRecord>,
    /// Grants.
    #[serde(default)]
    pub grants: Vec<GrantRecord>,
    /// API tokens.
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
}

/// Why the directory or a change to it was refused.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The change or the file breaks a rule; the message names the entry and the rule.
    #[error("{0}")]
    Invalid(String),
    /// The entry already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The entry does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// The entry comes from the config file.
    #[error("{0} is defined in the config file; change it there")]
    ReadOnly(String),
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a directory document.
    #[error("{path} is not a valid directory file: {why}; restore it from a backup or move it away")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Longest id or name accepted (ids appear in URLs, audit entries and log lines).
pub const MAX_ID_LEN: usize = 128;

/// Checks an id: 1–128 characters of letters, digits and `-_.@/`, no `..`, not starting with
/// `/`, so that ids are safe in URLs, file names of exports and log lines.
pub fn check_id(what: &str, id: &str) -> Result<(), DirectoryError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('/')
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '/'));
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::Invalid(format!(
            "{what} {:?}: use 1–{MAX_ID_LEN} letters, digits and - _ . @ / (no leading /, no ..)",
            id.chars().take(64).collect::<String>()
        )))
    }
}

impl Directory {
    /// Adds `other`'s entries (the config's to the file's), refusing duplicates.
    pub fn merge(mut self, other: Directory) -> Result<Directory, DirectoryError> {
        self.users.extend(other.users);
        self.departments.extend(other.departments);
        self.groups.extend(other.groups);
        self.grants.extend(other.grants);
        self.tokens.extend(other.tokens);
        self.validate()?;
        Ok(self)
    }

    /// Checks every rule and names the first broken one: unique ids, valid ids, known
    /// references, departments without cycles, grants of node-wide actions only over `*`.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        fn unique<'a>(what: &str, ids: impl Iterator<Item = &'a str>) -> Result<HashSet<&'a str>, DirectoryError> {
            let mut seen = HashSet::new();
            for id in ids {
                check_id(what, id)?;
                if !seen.insert(id) {
                    return Err(DirectoryError::Exists(format!("{what} {id:?}")));
                }
            }
            Ok(seen)
        }
        let users = unique("user", self.users.iter().map(|u| u.name.as_str()))?;
        let depts = unique("department", self.departments.iter().map(|d| d.id.as_str()))?;
        let groups = unique("group", self.groups.iter().map(|g| g.id.as_str()))?;
        unique("grant", self.grants.iter().map(|g| g.id.as_str()))?;
        unique("token", self.tokens.iter().map(|t| t.id.as_str()))?;
        for u in &self.users {
            if let Some(d) = &u.department
                && !depts.contains(d.as_str())
            {
                return Err(DirectoryError::Invalid(format!(
                    "user {:?}: department {d:?} does not exist",
                    u.name
                )));
            }
        }
        let parents: HashMap<&str, Option<&str>> = self
            .departments
            .iter()
            .map(|d| (d.id.as_str(), d.parent.as_deref()))
            .collect();
        for d in &self.departments {
            let mut at = d.parent.as_deref();
            let mut steps = 0;
            while let Some(p) = at {
                if !depts.contains(p) {
                    return Err(DirectoryError::Invalid(format!(
                        "department {:?}: parent {p:?} does not exist",
                        d.id
                    )));
                }
                steps += 1;
                if p == d.id || steps > self.departments.len() {
                    return Err(DirectoryError::Invalid(format!(
                        "department {:?}: its parents form a cycle",
                        d.id
                    )));
                }
                at = parents.get(p).copied().flatten();
            }
        }
        for g in &self.groups {
            for c in &g.cameras {
                check_id(&format!("group {:?}: camera", g.id), c)?;
            }
        }
        for g in &self.grants {
            let who = |ok: bool, what: &str| {
                if ok {
                    Ok(())
                } else {
                    Err(DirectoryError::Invalid(format!(
                        "grant {:?}: {what} does not exist",
                        g.id
                    )))
                }
            };
            match &g.subject {
                Subject::User(u) => who(users.contains(u.as_str()), &format!("user {u:?}"))?,
                Subject::Department(d) => who(depts.contains(d.as_str()), &format!("department {d:?}"))?,
                Subject::Role(_) => {}
            }
            match &g.resource {
                Resource::Group(id) => who(groups.contains(id.as_str()), &format!("group {id:?}"))?,
                Resource::Camera(c) => check_id("camera", c)?,
                Resource::Org(o) => check_id("org", o)?,
                Resource::All => {}
            }
            if g.actions.is_empty() {
                return Err(DirectoryError::Invalid(format!("grant {:?}: no actions", g.id)));
            }
            if !matches!(g.resource, Resource::All) && !(g.actions & !Actions::CAMERA).is_empty() {
                return Err(DirectoryError::Invalid(format!(
                    "grant {:?}: admin, audit and metrics are node-wide; grant them over \"*\"",
                    g.id
                )));
            }
        }
        for t in &self.tokens {
            who_owns(t, &users)?;
        }
        Ok(())
    }

    /// Only the entries made through the API (what the file keeps).
    pub fn api_part(&self) -> Directory {
        Directory {
            users: self.users.iter().filter(|u| u.source == Source::Api).cloned().collect(),
            departments: self
                .departments
                .iter()
                .filter(|d| d.source == Source::Api)
                .cloned()
                .collect(),
            groups: self
                .groups
                .iter()
                .filter(|g| g.source == Source::Api)
                .cloned()
                .collect(),
            grants: self
                .grants
                .iter()
                .filter(|g| g.source == Source::Api)
                .cloned()
                .collect(),
            tokens: self.tokens.clone(),
        }
    }
}

fn who_owns(t: &TokenRecord, users: &HashSet<&str>) -> Result<(), DirectoryError> {
    if users.contains(t.owner.as_str()) {
        Ok(())
    } else {
        Err(DirectoryError::Invalid(format!(
            "token {:?}: owner {:?} does not exist",
            t.id, t.owner
        )))
    }
}

/// The file holding the entries made through the API or the CLI.
#[derive(Debug, Clone)]
pub struct DirectoryFile {
    dir: PathBuf,
}

/// A file's identity, to notice changes made by another process.
pub type FileStamp = Option<(u64, i64, i64, u64)>;

impl DirectoryFile {
    /// The file in `<data dir>/auth`, creating the folder (mode 0700) if needed.
    pub fn new(auth_dir: &Path) -> Result<DirectoryFile, DirectoryError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(auth_dir)
            .map_err(|source| DirectoryError::Io {
                path: auth_dir.to_owned(),
                source,
            })?;
        Ok(DirectoryFile {
            dir: auth_dir.to_owned(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("directory.json")
    }

    /// Its current identity (inode, mtime, size), or None if absent.
    pub fn stamp(&self) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.path()).ok()?;
        Some((m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
    }

    /// Reads the file (empty if it does not exist yet).
    pub fn load(&self) -> Result<Directory, DirectoryError> {
        let path = self.path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Directory::default()),
            Err(source) => return Err(DirectoryError::Io { path, source }),
        };
        let mut d: Directory = serde_json::from_slice(&text).map_err(|e| DirectoryError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        // Whatever the file says, its entries are API-made: the config is the only other source.
        d.users.iter_mut().for_each(|u| u.source = Source::Api);
        d.departments.iter_mut().for_each(|x| x.source = Source::Api);
        d.groups.iter_mut().for_each(|x| x.source = Source::Api);
        d.grants.iter_mut().for_each(|x| x.source = Source::Api);
        Ok(d)
    }

    /// Applies `change` to the file's entries under the lock: `change` sees the file merged with
    /// `config` (so it can check references and collisions against everything), the result is
    /// validated and the API part written back. Returns the merged directory.
    pub fn update<T>(
        &self,
        config: &Directory,
        change: impl FnOnce(&mut Directory) -> Result<T, DirectoryError>,
    ) -> Result<(Directory, T), DirectoryError> {
        let _lock = self.lock()?;
        let mut merged = config.clone().merge(self.load()?)?;
        let out = change(&mut merged)?;
        merged.validate()?;
        self.write(&merged.api_part())?;
        Ok((merged, out))
    }

    /// The file's bytes as they are (`None` when it does not exist yet): what a cluster member
    /// shares with the others.
    pub fn raw(&self) -> Result<Option<Vec<u8>>, DirectoryError> {
        let _lock = self.lock()?;
        match std::fs::read(self.path()) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DirectoryError::Io {
                path: self.path(),
                source,
            }),
        }
    }

    /// Replaces the file with `bytes` from another cluster member, under the lock, if they are
    /// a directory whose references hold together with `config`'s entries, and only while the
    /// file still holds `expected` (`None`: no file): whether it was replaced. So a change the
    /// API made since the member read the file is not overwritten (its next sync merges it). A
    /// running node picks the new file up as it does the CLI's changes.
    pub fn replace_raw_if(
        &self,
        config: &Directory,
        expected: Option<&[u8]>,
        bytes: &[u8],
    ) -> Result<bool, DirectoryError> {
        let _lock = self.lock()?;
        let current = match std::fs::read(self.path()) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(DirectoryError::Io {
                    path: self.path(),
                    source,
                });
            }
        };
        if current.as_deref() != expected {
            return Ok(false);
        }
        let d = Self::parse_shared(&self.path(), bytes)?;
        config.clone().merge(d.clone())?.validate()?;
        self.write(&d)?;
        Ok(true)
    }

    /// Reads a directory received from another cluster member, or says why it cannot be.
    fn parse_shared(path: &Path, bytes: &[u8]) -> Result<Directory, DirectoryError> {
        serde_json::from_slice(bytes).map_err(|e| DirectoryError::Corrupt {
            path: path.to_owned(),
            why: format!("a directory from another member is not readable: {e}"),
        })
    }

    fn lock(&self) -> Result<File, DirectoryError> {
        let path = self.dir.join("directory.lock");
        let io = |source| DirectoryError::Io {
            path: path.clone(),
            source,
        };
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io(e.into()))?;
        Ok(f)
    }

    fn write(&self, d: &Directory) -> Result<(), DirectoryError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path();
        let tmp = self.dir.join("directory.json.tmp");
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| DirectoryError::Io { path: p, source }
        };
        let body = serde_json::to_vec_pretty(d).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
        let mut f = File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, dept: Option<&str>) -> UserRecord {
        UserRecord {
            name: name.into(),
            role: Role::Viewer,
            department: dept.map(Into::into),
            password_hash: "x".into(),
            disabled: false,
            source: Source::Api,
        }
    }

    fn dept(id: &str, parent: Option<&str>) -> DepartmentRecord {
        DepartmentRecord {
            id: id.into(),
            name: id.into(),
            parent: parent.map(Into::into),
            source: Source::Api,
        }
    }

    fn grant(id: &str, s: &str, a: &[&str], r: &str) -> GrantRecord {
        GrantRecord {
            id: id.into(),
            subject: Subject::parse(s).unwrap(),
            actions: Actions::parse(a).unwrap(),
            resource: Resource::parse(r).unwrap(),
            source: Source::Api,
        }
    }

    #[test]
    fn rules_are_enforced_with_names() {
        let ok = Directory {
            users: vec![user("alice", Some("a"))],
            departments: vec![dept("city", None), dept("a", Some("city"))],
            grants: vec![grant("g1", "department:a", &["live"], "org:dalian")],
            ..Default::default()
        };
        ok.validate().unwrap();
        let cases: Vec<(Directory, &str)> = vec![
            (
                Directory {
                    users: vec![user("alice", None), user("alice", None)],
                    ..Default::default()
                },
                "user \"alice\" already exists",
            ),
            (
                Directory {
                    users: vec![user("bob", Some("nowhere"))],
                    ..Default::default()
                },
                "department \"nowhere\" does not exist",
            ),
            (
                Directory {
                    departments: vec![dept("a", Some("b")), dept("b", Some("a"))],
                    ..Default::default()
                },
                "cycle",
            ),
            (
                Directory {
                    grants: vec![grant("g", "user:ghost", &["live"], "*")],
                    ..Default::default()
                },
                "user \"ghost\" does not exist",
            ),
            (
                Directory {
                    grants: vec![grant("g", "role:viewer", &["admin"], "group:x")],
                    groups: vec![GroupRecord {
                        id: "x".into(),
                        name: "x".into(),
                        cameras: vec![],
                        source: Source::Api,
                    }],
                    ..Default::default()
                },
                "node-wide",
            ),
            (
                Directory {
                    users: vec![user("../etc/passwd", None)],
                    ..Default::default()
                },
                "no ..",
            ),
        ];
        for (d, want) in cases {
            let e = d.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn file_updates_are_atomic_and_keep_config_out() {
        let tmp = tempfile::tempdir().unwrap();
        let f = DirectoryFile::new(&tmp.path().join("auth")).unwrap();
        let config = Directory {
            departments: vec![DepartmentRecord {
                source: Source::Config,
                ..dept("city", None)
            }],
            ..Default::default()
        };
        assert!(f.stamp().is_none());
        let (merged, ()) = f
            .update(&config, |d| {
                d.users.push(user("alice", Some("city")));
                Ok(())
            })
            .unwrap();
        assert_eq!(merged.users.len(), 1);
        let stamp = f.stamp();
        assert!(stamp.is_some());
        let on_disk = f.load().unwrap();
        assert_eq!(on_disk.users.len(), 1);
        assert!(
            on_disk.departments.is_empty(),
            "config entries are not written to the file"
        );
        // A refused change leaves the file as it was.
        let e = f
            .update(&config, |d| {
                d.users.push(user("bob", Some("nowhere")));
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(e, DirectoryError::Invalid(_)));
        assert_eq!(f.load().unwrap(), on_disk);
        assert_eq!(f.stamp(), stamp);
        std::fs::write(f.path(), b"{not json").unwrap();
        assert!(matches!(f.load(), Err(DirectoryError::Corrupt { .. })));
    }
}
