//! Webhook subscriptions: what another system (the grid-management or dispatch module) wants
//! to hear, where, and how far it has heard. Delivery is at least once: a subscription's
//! cursor (the last event it acknowledged) is durable, every event carries its sequence number
//! for the receiver to drop repeats, and a receiver that keeps failing is retried with
//! exponential backoff and jitter until [`Subscription::max_failures`], then dead-lettered
//! (kept, visible, revived by an operator) rather than retried for ever.
//!
//! The delivery loop (HTTP) is the API's; this module holds the rules: filters, the backoff,
//! the request body and its signature, and the subscriptions' file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::EventLogError;
use crate::record::Stored;

/// Most subscriptions a node keeps.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Most events one delivery carries.
pub const MAX_BATCH: usize = 500;

/// Which events a subscription wants. Empty lists mean "any".
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Filter {
    /// Event kinds, exact (`camera.offline`) or a prefix ending in `.` (`camera.`).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Camera ids.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// An org path: cameras at or under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// A grid cell id: cameras inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<String>,
}

/// What a filter needs to know about a camera, asked only for events that name one.
pub trait CameraFacts {
    /// The camera's org path, if it exists.
    fn org(&self, camera: &str) -> Option<String>;
    /// Is the camera inside grid cell `grid`?
    fn in_grid(&self, camera: &str, grid: &str) -> bool;
}

impl Filter {
    /// Does `e` pass? Events without a camera pass camera, org and grid conditions only when
    /// none is set (a disk alarm is not "in" an org).
    pub fn matches(&self, e: &Stored, facts: &dyn CameraFacts) -> bool {
        if !self.kinds.is_empty()
            && !self.kinds.iter().any(|k| {
                if k.ends_with('.') {
                    e.kind.starts_with(k.as_str())
                } else {
                    e.kind == *k
                }
            })
        {
            return false;
        }
        if self.cameras.is_empty() && self.org.is_none() && self.grid.is_none() {
            return true;
        }
        let Some(camera) = e.camera.as_deref() else {
            return false;
        };
        if !self.cameras.is_empty() && !self.cameras.iter().any(|c| c == camera) {
            return false;
        }
        if let Some(org) = &self.org {
            let Some(o) = facts.org(camera) else { return false };
            if !(o == *org || o.starts_with(&format!("{org}/"))) {
                return false;
            }
        }
        if let Some(g) = &self.grid
            && !facts.in_grid(camera, g)
        {
            return false;
        }
        true
    }
}

/// Where a subscription stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Delivering (or retrying after failures).
    Active,
    /// Dead-lettered after `max_failures` failures in a row; kept with its cursor until an
    /// operator revives or deletes it.
    Dead,
}

/// One subscription.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// Where events are POSTed (`http://`).
    pub url: String,
    /// Which events.
    #[serde(default)]
    pub filter: Filter,
    /// The HMAC-SHA256 key of its signatures.
    pub secret: String,
    /// Failures in a row before it is dead-lettered.
    pub max_failures: u32,
    /// Who made it.
    pub created_by: String,
    /// When (microseconds since the epoch).
    pub created_us: i64,
    /// The last event number it acknowledged (or skipped as not wanted).
    pub cursor: u64,
    /// Active or dead.
    pub state: State,
    /// Failures in a row.
    pub failures: u32,
    /// The last failure's reason.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Events delivered.
    #[serde(default)]
    pub delivered: u64,
    /// Events it can no longer get: dropped from the log while it was behind.
    #[serde(default)]
    pub missed: u64,
}

/// A new subscription as asked (`POST /api/v1/webhooks`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Receiver URL.
    pub url: String,
    /// Event kinds.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Camera ids.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Org path.
    pub org: Option<String>,
    /// Grid cell id.
    pub grid: Option<String>,
    /// Signing key, 16 to 256 characters.
    pub secret: String,
    /// Failures in a row before dead-lettering (default 10).
    pub max_failures: Option<u32>,
    /// `"now"` (the default): events from now on; `"oldest"`: everything the log still holds.
    pub from: Option<String>,
}

impl NewSubscription {
    /// Checks every field and makes the subscription (`last_seq`/`first_seq`: the log's now).
    pub fn check(
        self,
        id: String,
        by: &str,
        now_us: i64,
        last_seq: u64,
        first_seq: u64,
    ) -> Result<Subscription, EventLogError> {
        check_url(&self.url)?;
        if self.kinds.len() > 100 {
            return Err(EventLogError::invalid("kinds", "at most 100 kinds"));
        }
        for (i, k) in self.kinds.iter().enumerate() {
            let ok = !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
            if !ok {
                return Err(EventLogError::invalid(
                    format!("kinds[{i}]"),
                    "an event kind like \"camera.offline\", or a prefix like \"camera.\"",
                ));
            }
        }
        if self.cameras.len() > 10_000 || self.cameras.iter().any(|c| c.is_empty() || c.len() > 64) {
            return Err(EventLogError::invalid("cameras", "up to 10,000 camera ids"));
        }
        if let Some(o) = &self.org
            && (o.is_empty() || o.len() > 256 || o.split('/').any(|s| s.trim().is_empty()))
        {
            return Err(EventLogError::invalid("org", "an org path like \"dalian/xigang\""));
        }
        if let Some(g) = &self.grid
            && (g.is_empty() || g.len() > 64)
        {
            return Err(EventLogError::invalid("grid", "a grid cell id"));
        }
        let n = self.secret.chars().count();
        if !(16..=256).contains(&n) {
            return Err(EventLogError::invalid(
                "secret",
                "16 to 256 characters; the receiver checks each delivery's signature with it",
            ));
        }
        let max_failures = self.max_failures.unwrap_or(10);
        if !(1..=1000).contains(&max_failures) {
            return Err(EventLogError::invalid("max_failures", "1 to 1000"));
        }
        let cursor = match self.from.as_deref() {
            None | Some("now") => last_seq,
            Some("oldest") => first_seq.saturating_sub(1),
            Some(_) => return Err(EventLogError::invalid("from", "\"now\" or \"oldest\"")),
        };
        Ok(Subscription {
            id,
            url: self.url,
            filter: Filter {
                kinds: self.kinds,
                cameras: self.cameras,
                org: self.org,
                grid: self.grid,
            },
            secret: self.secret,
            max_failures,
            created_by: by.to_owned(),
            created_us: now_us,
            cursor,
            state: State::Active,
            failures: 0,
            last_error: None,
            delivered: 0,
            missed: 0,
        })
    }
}

/// A receiver URL: `http://host[:port]/path`. HTTPS is not offered by this build (it would
/// bring a TLS stack into the default build): receivers on the video private network take
/// plain HTTP, and the signature proves the sender.
pub fn check_url(url: &str) -> Result<(), EventLogError> {
    let bad = |m: &str| EventLogError::invalid("url", m);
    if url.len() > 2048 {
        return Err(bad("at most 2048 characters"));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected http://host[:port]/path (https is not supported: put the receiver behind a plain HTTP address on the video network)"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("expected http://host[:port]/path with a host and no credentials"));
    }
    Ok(())
}

/// How long to wait after the `failures`-th failure in a row: doubling from `min` up to `max`,
/// times 0.8 to 1.2 by `jitter` (0..1), so receivers that fail together are not retried in step.
pub fn backoff(failures: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let doubled = min.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    doubled.min(max).mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// A delivery's body: `{"node", "webhook", "events": [...]}`, each event as the log has it
/// (`seq`, `at_us`, `kind`, `camera`, `data`).
pub fn body(node: &str, webhook: &str, events: &[std::sync::Arc<Stored>]) -> String {
    let mut out = String::with_capacity(64 + events.iter().map(|e| e.line.len() + 1).sum::<usize>());
    out.push_str("{\"node\":");
    out.push_str(&serde_json::Value::String(node.to_owned()).to_string());
    out.push_str(",\"webhook\":");
    out.push_str(&serde_json::Value::String(webhook.to_owned()).to_string());
    out.push_str(",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&e.line);
    }
    out.push_str("]}");
    out
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`: the `x-sharpeye-signature` header.
/// The timestamp (`x-sharpeye-timestamp`, Unix seconds) is signed too, so a receiver can refuse
/// an old delivery replayed.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(67);
    hex.push_str("v1=");
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The node's subscriptions, kept in one JSON file replaced atomically.
#[derive(Debug)]
pub struct Subscriptions {
    path: PathBuf,
    list: Mutex<(BTreeMap<String, Subscription>, bool)>,
}

impl Subscriptions {
    /// Reads the file at `path` (absent: none). One that cannot be read is moved aside with a
    /// warning: the node must still start.
    pub fn open(path: &Path) -> Result<Subscriptions, EventLogError> {
        let mut map = BTreeMap::new();
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<Subscription>>(&bytes) {
                Ok(list) => {
                    for s in list {
                        map.insert(s.id.clone(), s);
                    }
                }
                Err(e) => {
                    let aside = path.with_extension("unreadable");
                    std::fs::rename(path, &aside).map_err(EventLogError::io(path, "move aside"))?;
                    tracing::warn!(file = %path.display(), %e, "webhook subscriptions unreadable; moved aside, starting without them");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EventLogError::io(path, "read")(e)),
        }
        Ok(Subscriptions {
            path: path.to_owned(),
            list: Mutex::new((map, false)),
        })
    }

    /// Every subscription now.
    pub fn list(&self) -> Vec<Subscription> {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .values()
            .cloned()
            .collect()
    }

    /// One.
    pub fn get(&self, id: &str) -> Option<Subscription> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).0.get(id).cloned()
    }

    /// Adds one, durable before it returns.
    pub fn add(&self, s: Subscription) -> Result<(), EventLogError> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() >= MAX_SUBSCRIPTIONS {
            return Err(EventLogError::invalid(
                "url",
                format!("this node keeps at most {MAX_SUBSCRIPTIONS} webhooks"),
            ));
        }
        g.0.insert(s.id.clone(), s);
        self.persist(&g.0)?;
        g.1 = false;
        Ok(())
    }

    /// Removes one, durable before it returns.
    pub fn remove(&self, id: &str) -> Result<Option<Subscription>, EventLogError> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let removed = g.0.remove(id);
        if removed.is_some() {
            self.persist(&g.0)?;
            g.1 = false;
        }
        Ok(removed)
    }

    /// Changes one (a delivery's outcome); written by [`Subscriptions::flush`], or at once when
    /// `durable_now` (a state change an operator must see survive a restart).
    pub fn update(
        &self,
        id: &str,
        durable_now: bool,
        f: impl FnOnce(&mut Subscription),
    ) -> Result<Option<Subscription>, EventLogError> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = g.0.get_mut(id) else { return Ok(None) };
        f(s);
        let out = s.clone();
        if durable_now {
            self.persist(&g.0)?;
            g.1 = false;
        } else {
            g.1 = true;
        }
        Ok(Some(out))
    }

    /// Writes the cursors if any moved since the last write.
    pub fn flush(&self) -> Result<(), EventLogError> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if g.1 {
            self.persist(&g.0)?;
            g.1 = false;
        }
        Ok(())
    }

    fn persist(&self, map: &BTreeMap<String, Subscription>) -> Result<(), EventLogError> {
        let list: Vec<&Subscription> = map.values().collect();
        let text = serde_json::to_vec_pretty(&list).map_err(|e| EventLogError::Line(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(EventLogError::io(dir, "create directory"))?;
        }
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(EventLogError::io(&tmp, "create"))?;
            f.write_all(&text).map_err(EventLogError::io(&tmp, "write"))?;
            f.sync_all().map_err(EventLogError::io(&tmp, "fsync"))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(EventLogError::io(&self.path, "rename"))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(EventLogError::io(dir, "fsync directory"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Facts;
    impl CameraFacts for Facts {
        fn org(&self, camera: &str) -> Option<String> {
            Some(if camera == "cam1" {
                "city/east/a".into()
            } else {
                "city/west".into()
            })
        }
        fn in_grid(&self, camera: &str, grid: &str) -> bool {
            camera == "cam1" && grid == "g1"
        }
    }

    fn ev(kind: &str, camera: Option<&str>) -> Stored {
        Stored::new(1, 0, kind, camera, json!({}))
    }

    #[test]
    fn filters_by_kind_prefix_camera_org_and_grid() {
        let any = Filter::default();
        assert!(any.matches(&ev("disk.alarm", None), &Facts));
        let f = Filter {
            kinds: vec!["camera.".into(), "hold.placed".into()],
            ..Filter::default()
        };
        assert!(f.matches(&ev("camera.offline", Some("cam1")), &Facts));
        assert!(f.matches(&ev("hold.placed", Some("cam1")), &Facts));
        assert!(!f.matches(&ev("hold.released", Some("cam1")), &Facts));
        assert!(!f.matches(&ev("cameras", Some("cam1")), &Facts));
        let org = Filter {
            org: Some("city/east".into()),
            ..Filter::default()
        };
        assert!(org.matches(&ev("camera.offline", Some("cam1")), &Facts));
        assert!(!org.matches(&ev("camera.offline", Some("cam2")), &Facts));
        assert!(!org.matches(&ev("disk.alarm", None), &Facts));
        let grid = Filter {
            grid: Some("g1".into()),
            cameras: vec!["cam1".into()],
            ..Filter::default()
        };
        assert!(grid.matches(&ev("x", Some("cam1")), &Facts));
        assert!(!grid.matches(&ev("x", Some("cam2")), &Facts));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(backoff(1, min, max, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(3, min, max, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(30, min, max, 0.5), Duration::from_secs(300));
        assert_eq!(backoff(3, min, max, 0.0), Duration::from_millis(3200));
        assert_eq!(backoff(3, min, max, 1.0), Duration::from_millis(4800));
        assert_eq!(backoff(0, min, max, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_time_and_body() {
        // RFC 4231 test case 2 checks the primitive: key "Jefe".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let s = sign("a-secret-of-16-chars", 1700000000, "{}");
        assert!(s.starts_with("v1=") && s.len() == 67);
        assert_ne!(s, sign("a-secret-of-16-chars", 1700000001, "{}"));
        let events = vec![std::sync::Arc::new(ev("a", None))];
        let b = body("node-1", "wh1", &events);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["events"][0]["kind"], "a");
        assert_eq!(v["node"], "node-1");
    }

    #[test]
    fn new_subscriptions_are_checked_field_by_field() {
        let ok = || NewSubscription {
            url: "http://10.0.0.5:8080/hooks".into(),
            kinds: vec![],
            cameras: vec![],
            org: None,
            grid: None,
            secret: "0123456789abcdef".into(),
            max_failures: None,
            from: None,
        };
        let s = ok().check("w1".into(), "admin", 0, 42, 10).unwrap();
        assert_eq!((s.cursor, s.max_failures, s.state), (42, 10, State::Active));
        let oldest = NewSubscription {
            from: Some("oldest".into()),
            ..ok()
        }
        .check("w".into(), "a", 0, 42, 10)
        .unwrap();
        assert_eq!(oldest.cursor, 9);
        let cases: Vec<(NewSubscription, &str)> = vec![
            (
                NewSubscription {
                    url: "https://x/".into(),
                    ..ok()
                },
                "url",
            ),
            (
                NewSubscription {
                    url: "http://".into(),
                    ..ok()
                },
                "url",
            ),
            (
                NewSubscription {
                    url: "http://u:p@x/".into(),
                    ..ok()
                },
                "url",
            ),
            (
                NewSubscription {
                    url: "ftp://x/".into(),
                    ..ok()
                },
                "url",
            ),
            (
                NewSubscription {
                    url: "http://x/ y".into(),
                    ..ok()
                },
                "url",
            ),
            (
                NewSubscription {
                    kinds: vec!["Camera!".into()],
                    ..ok()
                },
                "kinds[0]",
            ),
            (
                NewSubscription {
                    secret: "short".into(),
                    ..ok()
                },
                "secret",
            ),
            (
                NewSubscription {
                    max_failures: Some(0),
                    ..ok()
                },
                "max_failures",
            ),
            (
                NewSubscription {
                    org: Some("a//b".into()),
                    ..ok()
                },
                "org",
            ),
            (
                NewSubscription {
                    from: Some("yesterday".into()),
                    ..ok()
                },
                "from",
            ),
        ];
        for (n, field) in cases {
            match n.check("w".into(), "a", 0, 0, 1) {
                Err(EventLogError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn subscriptions_and_their_cursors_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.json");
        let subs = Subscriptions::open(&path).unwrap();
        let s = NewSubscription {
            url: "http://127.0.0.1:9/h".into(),
            kinds: vec![],
            cameras: vec![],
            org: None,
            grid: None,
            secret: "0123456789abcdef".into(),
            max_failures: Some(3),
            from: None,
        }
        .check("w1".into(), "admin", 0, 5, 1)
        .unwrap();
        subs.add(s).unwrap();
        subs.update("w1", false, |s| s.cursor = 9).unwrap();
        subs.flush().unwrap();
        subs.update("w1", false, |s| s.cursor = 11).unwrap();
        drop(subs);
        let again = Subscriptions::open(&path).unwrap();
        assert_eq!(
            again.get("w1").unwrap().cursor,
            9,
            "an unflushed cursor is re-delivered: at least once"
        );
        assert!(again.remove("w1").unwrap().is_some());
        std::fs::write(&path, b"[{").unwrap();
        assert!(Subscriptions::open(&path).unwrap().list().is_empty());
        assert!(dir.path().join("webhooks.unreadable").exists());
    }
}
