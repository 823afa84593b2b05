//! `[[gb28181.upper]]`: upper platforms we register to as a lower platform (cascade).

use std::collections::HashSet;
use std::time::Duration;

use node::config::GbUpperConfig;
use toml::{Table, Value};

use super::check::{Checker, join, type_name};

impl Checker {
    /// Resource lists (`share`, `ptz`): every entry must parse as a grant resource.
    fn resources(&mut self, path: &str, t: &Table, key: &str) -> Vec<auth::Resource> {
        match t.get(key) {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v.as_str().map(auth::Resource::parse) {
                    Some(Ok(r)) => Some(r),
                    Some(Err(e)) => {
                        self.problem(format!("{path}.{key}[{i}]"), e);
                        None
                    }
                    None => {
                        self.problem(
                            format!("{path}.{key}[{i}]"),
                            format!("expected a string, got {}", type_name(v)),
                        );
                        None
                    }
                })
                .collect(),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!(
                        "expected a list like [\"org:dalian/xigang\", \"camera:ID\"], got {}",
                        type_name(v)
                    ),
                );
                Vec::new()
            }
        }
    }

    pub(super) fn gb_uppers(&mut self, t: &Table, own_id: Option<&str>) -> Vec<GbUpperConfig> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let entries = match t.get("upper") {
            None => return out,
            Some(Value::Array(a)) => a.clone(),
            Some(v) => {
                self.problem(
                    "gb28181.upper",
                    format!("expected [[gb28181.upper]] tables, got {}", type_name(v)),
                );
                return out;
            }
        };
        for (i, v) in entries.iter().enumerate() {
            let path = format!("gb28181.upper[{i}]");
            let Value::Table(u) = v else {
                self.problem(path, format!("expected a table, got {}", type_name(v)));
                continue;
            };
            self.known(
                &path,
                u,
                &[
                    "id",
                    "domain",
                    "address",
                    "transport",
                    "own_id",
                    "username",
                    "password",
                    "share",
                    "ptz",
                    "keepalive",
                    "expires",
                    "charset",
                    "link_mbps",
                    "call_id",
                    "ack_timeout",
                ],
            );
            let id = self.required_string(&path, u, "id", "the upper platform's 20-digit id");
            if let Some(id) = &id {
                if !digits(id, 20) {
                    self.problem(join(&path, "id"), format!("{id:?} is not a 20-digit GB/T 28181 id"));
                } else if !ids.insert(id.clone()) {
                    self.problem(join(&path, "id"), format!("upper {id} is listed twice"));
                } else if Some(id.as_str()) == own_id {
                    self.problem(
                        join(&path, "id"),
                        "is this platform's own id (gb28181.id); a platform cannot be its own upper",
                    );
                }
            }
            let domain = self.required_string(&path, u, "domain", "the upper's 10-digit SIP domain");
            if let Some(d) = &domain
                && !digits(d, 10)
            {
                self.problem(join(&path, "domain"), format!("{d:?} is not a 10-digit domain"));
            }
            let address = if u.contains_key("address") {
                self.addr(&path, u, "address")
            } else {
                self.problem(
                    join(&path, "address"),
                    "missing; expected the upper's SIP address, like \"10.1.0.2:5060\"",
                );
                None
            };
            if let Some(a) = address
                && (a.ip().is_unspecified() || a.port() == 0)
            {
                self.problem(join(&path, "address"), format!("{a} is not an address one can send to"));
            }
            let transport = match self.string(&path, u, "transport").as_deref() {
                None | Some("udp") => gb28181::platform::Transport::Udp,
                Some("tcp") => gb28181::platform::Transport::Tcp,
                Some(other) => {
                    self.problem(
                        join(&path, "transport"),
                        format!("{other:?}: expected \"udp\" or \"tcp\""),
                    );
                    gb28181::platform::Transport::Udp
                }
            };
            let own = self.string(&path, u, "own_id");
            if let Some(o) = &own
                && !digits(o, 20)
            {
                self.problem(join(&path, "own_id"), format!("{o:?} is not a 20-digit GB/T 28181 id"));
            }
            let username = self.string(&path, u, "username");
            let password = self.required_string(&path, u, "password", "the password the upper gave us");
            let share = self.resources(&path, u, "share");
            let ptz = self.resources(&path, u, "ptz");
            let s = Duration::from_secs;
            let keepalive = self.duration(&path, u, "keepalive", s(60), s(1), s(3600));
            let expires = self.duration(&path, u, "expires", s(3600), s(60), s(7 * 86_400));
            let ack_timeout = self.duration(&path, u, "ack_timeout", s(60), s(1), s(300));
            let charset = self.charset(&path, u).unwrap_or(gb28181::manscdp::Charset::Gb18030);
            let link_kbps = self.mbps(&path, u, "link_mbps", 0.1).unwrap_or(100_000);
            let reuse_call_id = match self.string(&path, u, "call_id").as_deref() {
                None | Some("fresh") => false,
                Some("registration") => true,
                Some(other) => {
                    self.problem(
                        join(&path, "call_id"),
                        format!("{other:?}: expected \"fresh\" or \"registration\""),
                    );
                    false
                }
            };
            if let (Some(id), Some(domain), Some(address), Some(password)) = (id, domain, address, password) {
                out.push(GbUpperConfig {
                    id,
                    domain,
                    address,
                    transport,
                    own_id: own,
                    username,
                    password,
                    share,
                    ptz,
                    keepalive,
                    expires,
                    charset,
                    link_kbps,
                    reuse_call_id,
                    ack_timeout,
                });
            }
        }
        out
    }
}
