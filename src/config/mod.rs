//! The TOML configuration: read and checked in one pass that collects every problem.
//!
//! serde stops at the first error; an operator fixing a 200-camera file wants all of them at
//! once, each naming its key (`cameras[12].tier`) and what is expected. So the file is read as
//! a TOML tree and walked by hand, one module per section over the shared primitives of
//! [`check`], and the node's [`Config`] is built only if nothing is wrong. Keys are documented
//! in `docs/config.md` and `config/example.toml`.

mod access;
mod cameras;
mod check;
mod cluster;
mod gb28181;
mod gb28181_upper;
mod hierarchy;
mod ingest;
mod places;
mod server;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use node::config::*;
use toml::Table;

use check::Checker;

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a path (`cameras[2].tier`), or empty for the file as a whole.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Why a config could not be used: every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {} problem{}:\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// Everything wrong with it.
    pub problems: Vec<Problem>,
}

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.display().to_string(),
        problems: vec![Problem {
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse(&text).map_err(|problems| ConfigError {
        path: path.display().to_string(),
        problems,
    })
}

/// Parses and checks config text; relative data directories stay relative.
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let root: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![Problem {
                key: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }]);
        }
    };
    let mut c = Checker::default();
    let config = c.config(&root);
    match config {
        Some(cfg) if c.problems.is_empty() => Ok(cfg),
        _ => Err(c.problems),
    }
}

/// Parses `"10%"`, `"50GB"`, `"512MiB"`, `"1000000"`.
pub fn parse_min_free(s: &str) -> Option<FreeFloor> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().ok()?;
        return (0.0..=90.0).contains(&v).then_some(FreeFloor::Percent(v));
    }
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024f64.powi(4),
        _ => return None,
    };
    (v >= 0.0).then_some(FreeFloor::Bytes((v * mult) as u64))
}

impl Checker {
    /// The whole file: every section, then the references between users, departments, groups
    /// and grants.
    fn config(&mut self, root: &Table) -> Option<Config> {
        self.known(
            "",
            root,
            &[
                "server",
                "recording",
                "retention",
                "playback",
                "live",
                "ingest",
                "gb28181",
                "auth",
                "users",
                "departments",
                "groups",
                "grants",
                "cameras",
                "node",
                "lower",
                "upper",
                "cache",
                "audit",
                "places",
                "events",
                "rates",
                "cluster",
            ],
        );
        let server = self.server(root);
        let recording = self.recording(root);
        let retention = self.retention(root);
        let playback = self.playback(root);
        let live = self.live(root);
        let ingest = self.ingest(root);
        let gb28181 = self.gb28181(root);
        let auth = self.auth(root);
        let users = self.users(root);
        let departments = self.departments(root);
        let groups = self.groups(root);
        let grants = self.grants(root);
        let cameras = self.cameras(root);
        let linked = root.contains_key("lower") || root.contains_key("upper");
        let node = self.node_identity(root, linked);
        let lower = self.lowers(root, &node.id);
        let upper = self.uppers(root, &node.id);
        let cache = self.cache(root);
        let audit = self.audit(root);
        let grids = self.places(root);
        let events = self.events(root);
        let rates = self.rates(root);
        let cluster = self.cluster(root);
        let config = Config {
            server: server?,
            recording,
            retention,
            playback,
            live,
            ingest,
            gb28181,
            auth,
            users,
            departments,
            groups,
            grants,
            cameras,
            node,
            lower,
            upper,
            cache,
            audit,
            grids,
            events,
            rates,
            cluster,
        };
        // References between users, departments, groups and grants are checked by the same
        // rules the admin API applies, so that the server never refuses a checked config.
        if let Err(e) = config.directory(|_| "$argon2id$unchecked".into()).validate() {
            self.problem("grants", e.to_string());
        }
        Some(config)
    }
}
