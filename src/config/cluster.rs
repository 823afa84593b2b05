//! `[cluster]`: several nodes of one level sharing its cameras through etcd.

use std::time::Duration;

use toml::{Table, Value};

use super::ClusterConfig;
use super::check::{Checker, join, type_name};

impl Checker {
    /// `[cluster]`, if present: etcd's URLs, this member's name and advertised URL, its weight
    /// and lease.
    pub(super) fn cluster(&mut self, root: &Table) -> Option<ClusterConfig> {
        let t = self.section(root, "cluster")?;
        self.known("cluster", t, &["etcd", "name", "advertise_url", "weight", "lease"]);
        let etcd = self.strings("cluster", t, "etcd").unwrap_or_default();
        if etcd.is_empty() && t.get("etcd").is_none_or(Value::is_array) {
            self.problem(
                join("cluster", "etcd"),
                "missing or empty; expected etcd's client URLs, like [\"http://127.0.0.1:2379\"]",
            );
        }
        for (i, u) in etcd.iter().enumerate() {
            if !http_url(u) {
                self.problem(
                    format!("cluster.etcd[{i}]"),
                    format!("{u:?} is not an http:// or https:// URL of etcd's client port"),
                );
            }
        }
        let name = self.required_string(
            "cluster",
            t,
            "name",
            "this member's name, unique in the cluster (\"rec-1\")",
        );
        if let Some(n) = &name
            && (n.len() > 64 || !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            self.problem(
                join("cluster", "name"),
                format!("{n:?}: expected at most 64 letters, digits, '-', '_' or '.'"),
            );
        }
        let advertise_url = self.required_string(
            "cluster",
            t,
            "advertise_url",
            "the URL the other members reach this node's API at (\"http://10.0.0.21:8080\")",
        );
        if let Some(u) = advertise_url.as_deref().filter(|u| !http_url(u)) {
            self.problem(
                join("cluster", "advertise_url"),
                format!("{u:?} is not an http:// or https:// URL"),
            );
        }
        let weight = match t.get("weight") {
            None => 1.0,
            Some(Value::Integer(n)) if (1..=1000).contains(n) => *n as f64,
            Some(Value::Float(f)) if (0.01..=1000.0).contains(f) => *f,
            Some(v) => {
                self.problem(
                    join("cluster", "weight"),
                    format!(
                        "expected a number from 0.01 to 1000 (its share of the cameras), got {}",
                        match v {
                            Value::Integer(_) | Value::Float(_) => v.to_string(),
                            _ => type_name(v).to_owned(),
                        }
                    ),
                );
                1.0
            }
        };
        let lease = self.duration(
            "cluster",
            t,
            "lease",
            Duration::from_secs(3),
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        Some(ClusterConfig {
            etcd,
            name: name?,
            advertise_url: advertise_url?,
            weight,
            lease,
        })
    }
}

/// Whether `u` is an http:// or https:// URL.
fn http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://")) && url::Url::parse(u).is_ok()
}
