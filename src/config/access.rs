//! `[auth]`, `[[users]]`, `[[departments]]`, `[[groups]]` and `[[grants]]`: who may log in and
//! what they may do. References between them are checked by `auth`'s own rules (see
//! `super::parse`), the same the admin API applies. Also the small sections about what the node
//! keeps of what happens: `[events]`, `[audit]` and `[rates]`.

use std::collections::HashSet;
use std::time::Duration;

use node::config::{AuditSettings, AuthSettings, EventsSettings, RatesSettings, Secret, UserConfig};
use toml::Table;

use super::check::{Checker, join};

impl Checker {
    pub(super) fn auth(&mut self, root: &Table) -> AuthSettings {
        let d = AuthSettings::default();
        let Some(t) = self.section(root, "auth") else { return d };
        self.known("auth", t, &["session_ttl", "media_token_ttl"]);
        let day = Duration::from_secs(86_400);
        AuthSettings {
            session_ttl: self.duration(
                "auth",
                t,
                "session_ttl",
                d.session_ttl,
                Duration::from_secs(1),
                30 * day,
            ),
            media_token_ttl: self.duration(
                "auth",
                t,
                "media_token_ttl",
                d.media_token_ttl,
                Duration::from_secs(1),
                day,
            ),
        }
    }

    /// `[events]`: how many events stay replayable and how webhooks are retried.
    pub(super) fn events(&mut self, root: &Table) -> EventsSettings {
        let d = EventsSettings::default();
        let t = self.optional_section(root, "events");
        self.known("events", t, &["keep", "retry_min", "retry_max"]);
        let keep = self.count("events", t, "keep", d.keep as usize, 1_000, 100_000_000) as u64;
        let retry_min = self.duration(
            "events",
            t,
            "retry_min",
            d.retry_min,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        let retry_max = self.duration(
            "events",
            t,
            "retry_max",
            d.retry_max,
            Duration::from_millis(100),
            Duration::from_secs(86_400),
        );
        if retry_max < retry_min {
            self.problem("events.retry_max", "must not be shorter than events.retry_min");
        }
        EventsSettings {
            keep,
            retry_min,
            retry_max,
        }
    }

    /// `[rates]`: how often pictures are measured for the intact rate.
    pub(super) fn rates(&mut self, root: &Table) -> RatesSettings {
        let d = RatesSettings::default();
        let t = self.optional_section(root, "rates");
        self.known("rates", t, &["picture_every"]);
        RatesSettings {
            picture_every: self.duration(
                "rates",
                t,
                "picture_every",
                d.picture_every,
                Duration::from_secs(5),
                Duration::from_secs(3600),
            ),
        }
    }

    pub(super) fn audit(&mut self, root: &Table) -> AuditSettings {
        let d = AuditSettings::default();
        let t = self.optional_section(root, "audit");
        self.known("audit", t, &["head_every"]);
        AuditSettings {
            head_every: self.duration(
                "audit",
                t,
                "head_every",
                d.head_every,
                Duration::from_millis(200),
                Duration::from_secs(60),
            ),
        }
    }

    pub(super) fn departments(&mut self, root: &Table) -> Vec<auth::DepartmentRecord> {
        let mut out = Vec::new();
        for (path, t) in self.array_of_tables(root, "departments") {
            self.known(&path, t, &["id", "name", "parent"]);
            let id = self.required_string(&path, t, "id", "a department id, used in grants as department:ID");
            let name = self.string(&path, t, "name");
            let parent = self.string(&path, t, "parent");
            if let Some(id) = id {
                out.push(auth::DepartmentRecord {
                    name: name.unwrap_or_else(|| id.clone()),
                    id,
                    parent,
                    source: auth::Source::Config,
                });
            }
        }
        out
    }

    pub(super) fn groups(&mut self, root: &Table) -> Vec<auth::GroupRecord> {
        let mut out = Vec::new();
        for (path, t) in self.array_of_tables(root, "groups") {
            self.known(&path, t, &["id", "name", "cameras"]);
            let id = self.required_string(&path, t, "id", "a group id, used in grants as group:ID");
            let name = self.string(&path, t, "name");
            let cameras = self.strings(&path, t, "cameras");
            if cameras.is_none() && !t.contains_key("cameras") {
                self.problem(join(&path, "cameras"), "missing; expected a list of camera ids");
            }
            if let (Some(id), Some(cameras)) = (id, cameras) {
                out.push(auth::GroupRecord {
                    name: name.unwrap_or_else(|| id.clone()),
                    id,
                    cameras,
                    source: auth::Source::Config,
                });
            }
        }
        out
    }

    pub(super) fn grants(&mut self, root: &Table) -> Vec<auth::GrantRecord> {
        let mut out = Vec::new();
        for (i, (path, t)) in self.array_of_tables(root, "grants").into_iter().enumerate() {
            self.known(&path, t, &["subject", "actions", "resource"]);
            let subject = self
                .required_string(&path, t, "subject", "user:NAME, role:ROLE or department:ID")
                .and_then(|s| {
                    auth::Subject::parse(&s)
                        .map_err(|e| self.problem(join(&path, "subject"), e))
                        .ok()
                });
            let actions = match self.strings(&path, t, "actions") {
                Some(a) => auth::Actions::parse(&a)
                    .map_err(|e| self.problem(join(&path, "actions"), e))
                    .ok(),
                None => {
                    if !t.contains_key("actions") {
                        self.problem(
                            join(&path, "actions"),
                            "missing; expected a list like [\"live\", \"playback\"]",
                        );
                    }
                    None
                }
            };
            let resource = self
                .required_string(&path, t, "resource", "*, camera:ID, group:ID or org:PATH")
                .and_then(|s| {
                    auth::Resource::parse(&s)
                        .map_err(|e| self.problem(join(&path, "resource"), e))
                        .ok()
                });
            if let (Some(subject), Some(actions), Some(resource)) = (subject, actions, resource) {
                out.push(auth::GrantRecord {
                    id: format!("config-{i}"),
                    subject,
                    actions,
                    resource,
                    source: auth::Source::Config,
                });
            }
        }
        out
    }

    pub(super) fn users(&mut self, root: &Table) -> Vec<UserConfig> {
        let mut out = Vec::new();
        let mut names = HashSet::new();
        for (path, t) in self.array_of_tables(root, "users") {
            self.known(&path, t, &["name", "password", "password_hash", "role", "department"]);
            let name = self.required_string(&path, t, "name", "a login name");
            if let Some(n) = &name
                && !names.insert(n.clone())
            {
                self.problem(join(&path, "name"), format!("user {n:?} is defined twice"));
            }
            let secret = match (
                self.string(&path, t, "password"),
                self.string(&path, t, "password_hash"),
            ) {
                (Some(_), Some(_)) => {
                    self.problem(&path, "has both password and password_hash; keep one");
                    None
                }
                (Some(p), None) if p.len() < 8 => {
                    self.problem(join(&path, "password"), "shorter than 8 characters");
                    None
                }
                (Some(p), None) => Some(Secret::Plain(p)),
                (None, Some(h)) if !h.starts_with("$argon2id$") => {
                    self.problem(
                        join(&path, "password_hash"),
                        "expected an argon2id hash (\"$argon2id$...\")",
                    );
                    None
                }
                (None, Some(h)) => Some(Secret::Hash(h)),
                (None, None) => {
                    self.problem(&path, "missing password or password_hash");
                    None
                }
            };
            let roles = auth::Role::ALL.map(auth::Role::as_str).join(", ");
            let role = self
                .required_string(&path, t, "role", &format!("one of {roles}"))
                .and_then(|r| match auth::Role::parse(&r) {
                    Some(role) => Some(role),
                    None => {
                        self.problem(
                            join(&path, "role"),
                            format!("{r:?} is not a role; expected one of {roles}"),
                        );
                        None
                    }
                });
            let department = self.string(&path, t, "department");
            if let (Some(name), Some(secret), Some(role)) = (name, secret, role) {
                out.push(UserConfig {
                    name,
                    secret,
                    role,
                    department,
                });
            }
        }
        out
    }
}
