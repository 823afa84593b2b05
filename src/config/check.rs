//! The checking primitives every section shares: typed reads of a TOML table that record a
//! [`Problem`] naming the key instead of stopping at the first one.

use std::net::SocketAddr;
use std::time::Duration;

use toml::{Table, Value};

use super::Problem;

/// Collects every problem found while a config is read.
#[derive(Default)]
pub(super) struct Checker {
    /// What was found wrong so far.
    pub(super) problems: Vec<Problem>,
}

/// "a string", "an integer", ...: what a value is, for messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// `path.key`, or `key` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The table an absent optional section reads as: every key at its default.
static EMPTY: std::sync::LazyLock<Table> = std::sync::LazyLock::new(Table::new);

impl Checker {
    /// Records that `key` is wrong: `message` says how and what is expected.
    pub(super) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Reports keys of `t` not in `allowed`.
    pub(super) fn known(&mut self, path: &str, t: &Table, allowed: &[&str]) {
        for k in t.keys() {
            if !allowed.contains(&k.as_str()) {
                self.problem(
                    join(path, k),
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }

    /// The table `[name]`, if present; a problem if it is not a table.
    pub(super) fn section<'a>(&mut self, root: &'a Table, name: &str) -> Option<&'a Table> {
        match root.get(name) {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(v) => {
                self.problem(name, format!("expected a table [{name}], got {}", type_name(v)));
                None
            }
        }
    }

    /// An optional section: its table, or an empty one (every key at its default) when absent.
    pub(super) fn optional_section<'a>(&mut self, root: &'a Table, name: &str) -> &'a Table {
        self.section(root, name).unwrap_or(&EMPTY)
    }

    /// `key` of `t` as a string, if present; a problem if it is something else.
    pub(super) fn string(&mut self, path: &str, t: &Table, key: &str) -> Option<String> {
        match t.get(key)? {
            Value::String(s) => Some(s.clone()),
            v => {
                self.problem(join(path, key), format!("expected a string, got {}", type_name(v)));
                None
            }
        }
    }

    /// `key` of `t` as a non-empty string; a problem naming `what` is expected otherwise.
    pub(super) fn required_string(&mut self, path: &str, t: &Table, key: &str, what: &str) -> Option<String> {
        if !t.contains_key(key) {
            self.problem(join(path, key), format!("missing; expected {what}"));
            return None;
        }
        let s = self.string(path, t, key)?;
        if s.trim().is_empty() {
            self.problem(join(path, key), format!("empty; expected {what}"));
            return None;
        }
        Some(s)
    }

    /// `key` of `t` as true or false (`default` when absent).
    pub(super) fn bool(&mut self, path: &str, t: &Table, key: &str, default: bool) -> bool {
        match t.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(v) => {
                self.problem(join(path, key), format!("expected true or false, got {}", type_name(v)));
                default
            }
        }
    }

    /// `key` of `t` as Mbit/s from `min` to 100,000, in kbit/s; `None` when absent (or wrong).
    pub(super) fn mbps(&mut self, path: &str, t: &Table, key: &str, min: f64) -> Option<u64> {
        let mbps = match t.get(key)? {
            Value::Integer(n) => *n as f64,
            Value::Float(f) => *f,
            v => {
                self.problem(
                    join(path, key),
                    format!("expected a number of Mbit/s from {min} to 100000, got {}", type_name(v)),
                );
                return None;
            }
        };
        if !(min..=100_000.0).contains(&mbps) {
            self.problem(
                join(path, key),
                format!("expected a number of Mbit/s from {min} to 100000, got {mbps}"),
            );
            return None;
        }
        Some((mbps * 1000.0).round() as u64)
    }

    /// `key` of `t` as a duration with a unit between `min` and `max` (`default` when absent).
    pub(super) fn duration(
        &mut self,
        path: &str,
        t: &Table,
        key: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(s) = self.string(path, t, key) else {
            return default;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d < min || d > max => {
                self.problem(
                    join(path, key),
                    format!(
                        "{s:?} is out of range; expected between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(_) => {
                self.problem(join(path, key), format!("{s:?} is not a duration; expected a number with a unit, like \"500ms\", \"20s\", \"15m\" or \"30d\""));
                default
            }
        }
    }

    /// `key` of `t` as `IP:PORT`, if present.
    pub(super) fn addr(&mut self, path: &str, t: &Table, key: &str) -> Option<SocketAddr> {
        let s = self.string(path, t, key)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    join(path, key),
                    format!("{s:?} is not an address; expected IP:PORT like \"127.0.0.1:8080\""),
                );
                None
            }
        }
    }

    /// `key` of `t` as an integer between `min` and `max` (`default` when absent).
    pub(super) fn count(&mut self, path: &str, t: &Table, key: &str, default: usize, min: usize, max: usize) -> usize {
        match t.get(key) {
            None => default,
            Some(Value::Integer(n)) if (min as i64..=max as i64).contains(n) => *n as usize,
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("expected an integer between {min} and {max}, got {v}"),
                );
                default
            }
        }
    }

    /// `key` of `t` as a list of strings, if present.
    pub(super) fn strings(&mut self, path: &str, t: &Table, key: &str) -> Option<Vec<String>> {
        match t.get(key)? {
            Value::Array(a) if a.iter().all(|v| v.is_str()) => {
                Some(a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            }
            v => {
                self.problem(
                    join(path, key),
                    format!("expected a list of strings, got {}", type_name(v)),
                );
                None
            }
        }
    }

    /// `[[key]]` entries of `root`, each with its path (`key[i]`).
    pub(super) fn array_of_tables<'a>(&mut self, root: &'a Table, key: &str) -> Vec<(String, &'a Table)> {
        match root.get(key) {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::Table(t) => Some((format!("{key}[{i}]"), t)),
                    v => {
                        self.problem(
                            format!("{key}[{i}]"),
                            format!("expected a table [[{key}]], got {}", type_name(v)),
                        );
                        None
                    }
                })
                .collect(),
            Some(v) => {
                self.problem(key, format!("expected [[{key}]] tables, got {}", type_name(v)));
                Vec::new()
            }
        }
    }
}
