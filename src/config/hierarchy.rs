//! `[node]`, `[[lower]]`, `[[upper]]` and `[cache]`: this node's place among the levels, the
//! lower nodes it may pull from, the upper nodes it dials, and the temporary cache of what it
//! pulled.

use std::collections::HashSet;
use std::time::Duration;

use node::config::{CacheConfig, Dial, Level, LowerConfig, NodeIdentity, UpperConfig};
use toml::{Table, Value};
use url::Url;

use super::check::{Checker, join, type_name};
use super::parse_min_free;

/// A node or link id: letters, digits, '-', '_' and '.', up to 64, not starting with '.'.
fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Checker {
    fn node_id(&mut self, path: &str, t: &Table, what: &str) -> Option<String> {
        let id = self.required_string(path, t, "id", what)?;
        if !valid_id(&id) {
            self.problem(
                join(path, "id"),
                format!("{id:?} is not a valid id; use up to 64 letters, digits, '-', '_' or '.'"),
            );
            return None;
        }
        Some(id)
    }

    fn node_url(&mut self, path: &str, t: &Table, required: bool) -> Option<Url> {
        let s = if required {
            self.required_string(path, t, "url", "the node's API, like \"http://10.0.0.9:8080\"")?
        } else {
            self.string(path, t, "url")?
        };
        match Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.username().is_empty() => {
                Some(u)
            }
            _ => {
                self.problem(
                    join(path, "url"),
                    "expected the node's API as http://HOST:PORT (no user or password: the token authenticates)",
                );
                None
            }
        }
    }

    fn link_token(&mut self, path: &str, t: &Table) -> Option<String> {
        let token = self.required_string(
            path,
            t,
            "token",
            "the API token (sk_...) the lower node issued for the upper",
        )?;
        if !token.starts_with("sk_") || token.len() < 16 || token.chars().any(char::is_whitespace) {
            // Never echo the value: it is a secret.
            self.problem(
                join(path, "token"),
                "not an API token; expected the sk_... secret POST /api/v1/tokens returned on the lower node",
            );
            return None;
        }
        Some(token)
    }

    pub(super) fn node_identity(&mut self, root: &Table, linked: bool) -> NodeIdentity {
        let d = NodeIdentity::default();
        let Some(t) = self.section(root, "node") else {
            if linked {
                self.problem(
                    "node",
                    "missing; [[lower]] and [[upper]] links need [node] with this node's id and level",
                );
            }
            return d;
        };
        self.known("node", t, &["id", "name", "level"]);
        let id = self.node_id("node", t, "this node's id, as its links and audit heads name it");
        let name = self.string("node", t, "name");
        let level = match self.string("node", t, "level") {
            None => d.level,
            Some(l) => Level::parse(&l).unwrap_or_else(|| {
                self.problem(
                    "node.level",
                    format!("{l:?} is not a level; expected community, street, district or city"),
                );
                d.level
            }),
        };
        let id = id.unwrap_or(d.id);
        NodeIdentity {
            name: name.unwrap_or_else(|| id.clone()),
            id,
            level,
        }
    }

    pub(super) fn lowers(&mut self, root: &Table, own_id: &str) -> Vec<LowerConfig> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for (path, t) in self.array_of_tables(root, "lower") {
            self.known(
                &path,
                t,
                &[
                    "id",
                    "url",
                    "token",
                    "link_mbps",
                    "org",
                    "dial",
                    "main_mbps",
                    "sub_mbps",
                ],
            );
            let id = self.node_id(&path, t, "the lower node's id");
            if let Some(id) = &id {
                if !ids.insert(id.clone()) {
                    self.problem(join(&path, "id"), format!("lower node {id:?} is listed twice"));
                } else if id == own_id {
                    self.problem(
                        join(&path, "id"),
                        "is this node's own id; a node cannot be its own lower",
                    );
                }
            }
            let dial = match self.string(&path, t, "dial").as_deref() {
                None | Some("down") => Dial::Down,
                Some("up") => Dial::Up,
                Some(other) => {
                    self.problem(
                        join(&path, "dial"),
                        format!("{other:?}: expected \"down\" (this node connects to the lower) or \"up\" (the lower connects to this node)"),
                    );
                    Dial::Down
                }
            };
            let url = self.node_url(&path, t, dial == Dial::Down);
            let token = self.link_token(&path, t);
            let link_kbps = match t.get("link_mbps") {
                None => {
                    self.problem(
                        join(&path, "link_mbps"),
                        "missing; expected the link's budget in Mbit/s, like 10",
                    );
                    None
                }
                Some(_) => self.mbps(&path, t, "link_mbps", 0.1),
            };
            let main_kbps = self.mbps(&path, t, "main_mbps", 0.01);
            let sub_kbps = self.mbps(&path, t, "sub_mbps", 0.01);
            let org = self.required_string(
                &path,
                t,
                "org",
                "where the lower node's cameras hang in this node's tree, like \"dalian/xigang/renmin\"",
            );
            if let Some(o) = &org
                && o.split('/').any(|p| p.trim().is_empty())
            {
                self.problem(
                    join(&path, "org"),
                    format!("{o:?} has an empty part; expected a path like \"dalian/xigang/renmin\""),
                );
            }
            if let (Some(id), Some(token), Some(link_kbps), Some(org)) = (id, token, link_kbps, org) {
                out.push(LowerConfig {
                    id,
                    url,
                    token,
                    link_kbps,
                    org,
                    dial,
                    main_kbps: main_kbps.unwrap_or(node::config::DEFAULT_MAIN_KBPS),
                    sub_kbps: sub_kbps.unwrap_or(node::config::DEFAULT_SUB_KBPS),
                });
            }
        }
        out
    }

    /// `key` of `t` as kbit/s, from a number of Mbit/s between `min` and 100000; `None` when
    /// absent or wrong (then a problem is noted).
    pub(super) fn uppers(&mut self, root: &Table, own_id: &str) -> Vec<UpperConfig> {
        let mut out = Vec::new();
        for (path, t) in self.array_of_tables(root, "upper") {
            self.known(&path, t, &["id", "url", "token"]);
            let id = self.node_id(&path, t, "the upper node's id");
            if id.as_deref() == Some(own_id) {
                self.problem(join(&path, "id"), "is this node's own id; a node cannot dial itself");
            }
            let url = self.node_url(&path, t, true);
            let token = self.link_token(&path, t);
            if let (Some(id), Some(url), Some(token)) = (id, url, token) {
                out.push(UpperConfig { id, url, token });
            }
        }
        out
    }

    pub(super) fn cache(&mut self, root: &Table) -> CacheConfig {
        let d = CacheConfig::default();
        let t = self.optional_section(root, "cache");
        self.known("cache", t, &["size", "max_age"]);
        let size = match t.get("size") {
            None => d.size,
            Some(Value::String(v)) => match parse_min_free(v) {
                Some(node::config::FreeFloor::Bytes(b)) if b >= 1 << 20 => b,
                _ => {
                    self.problem(
                        "cache.size",
                        format!("{v:?} is not a size of at least 1MiB; expected bytes like \"20GB\" or \"512MiB\""),
                    );
                    d.size
                }
            },
            Some(v) => {
                self.problem(
                    "cache.size",
                    format!("expected a size like \"20GB\", got {}", type_name(v)),
                );
                d.size
            }
        };
        let max_age = self.duration(
            "cache",
            t,
            "max_age",
            d.max_age,
            Duration::from_secs(60),
            Duration::from_secs(30 * 86_400),
        );
        CacheConfig { size, max_age }
    }
}
