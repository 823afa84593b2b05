//! A lower node's cameras as its `GET /api/v1/cameras` lists them, checked entry by entry: an
//! entry that is malformed or hostile (a bad id, huge strings) is left out with the reason, and
//! the rest are adopted.

use serde_json::Value;

/// One camera a lower node shares.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteCamera {
    /// Its id (kept as it is across levels).
    pub id: String,
    /// Display name.
    pub name: String,
    /// `standard` or `key`.
    pub tier: String,
    /// Its org path on the lower node.
    pub org: String,
    /// `online`, `connecting`, `offline` or `idle`.
    pub status: String,
    /// Why it is not online, when the lower node says.
    pub status_reason: Option<String>,
    /// (lat, lon).
    pub location: Option<(f64, f64)>,
    /// It has a sub-stream.
    pub has_sub: bool,
    /// The node that records it.
    pub node: String,
    /// The nodes between the lower node and that one, nearest first.
    pub path: Vec<String>,
    /// The main stream's bitrate as the lower node last measured it arriving, kbit/s.
    pub main_kbps: Option<u64>,
    /// The same for the sub-stream.
    pub sub_kbps: Option<u64>,
    /// Why its video is not usable, when the lower node judged it so (`intact: false`); what
    /// the cause is named is the lower node's word ([`cause_of`]).
    pub intact_cause: Option<String>,
}

/// The cause a lower node gives for a camera's video not being usable, from a listing entry
/// or a `camera.not_intact` event: a short word, `unknown` when it gave none that is one.
pub fn cause_of(v: &Value) -> String {
    match v.as_str() {
        Some(c) if !c.is_empty() && c.len() <= 32 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            c.to_owned()
        }
        _ => "unknown".to_owned(),
    }
}

/// Bitrates above this (kbit/s) are not a camera's: a lower node claiming one is ignored rather
/// than allowed to make every pull look unaffordable.
pub const MAX_STREAM_KBPS: u64 = 200_000;

fn kbps(v: &Value, kind: &str) -> Option<u64> {
    v["kbps"][kind].as_u64().filter(|k| (1..=MAX_STREAM_KBPS).contains(k))
}

/// Most cameras read from one listing (the rules' largest city joined 25,000).
pub const MAX_CAMERAS: usize = 100_000;

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn text(v: &Value, key: &str, max: usize) -> Result<String, String> {
    match &v[key] {
        Value::String(s) if s.chars().count() <= max && !s.chars().any(char::is_control) => Ok(s.clone()),
        Value::String(_) => Err(format!(
            "{key} is longer than {max} characters or has control characters"
        )),
        Value::Null => Err(format!("{key} is missing")),
        _ => Err(format!("{key} is not a string")),
    }
}

impl RemoteCamera {
    /// One listing entry, checked.
    pub fn from_json(v: &Value, link: &str) -> Result<RemoteCamera, String> {
        let id = text(v, "id", 64)?;
        if !id_ok(&id) {
            return Err(format!(
                "id {:?} is not a camera id",
                id.chars().take(64).collect::<String>()
            ));
        }
        let status = text(v, "status", 16)?;
        let streams = v["streams"].as_array().ok_or("streams is not a list")?;
        if !streams.iter().any(|s| s == "main") {
            return Err("it has no main stream".into());
        }
        let node = match &v["node"] {
            // A lower node from before node ids were listed records its cameras itself.
            Value::Null => link.to_owned(),
            _ => text(v, "node", 64)?,
        };
        if !id_ok(&node) {
            return Err("node is not a node id".into());
        }
        let path = match &v["path"] {
            Value::Null => Vec::new(),
            Value::Array(a) if a.len() <= 8 => a
                .iter()
                .map(|p| p.as_str().filter(|p| id_ok(p)).map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("path holds something that is not a node id")?,
            _ => return Err("path is not a list of at most 8 node ids".into()),
        };
        let location = match &v["location"] {
            Value::Object(o) => match (
                o.get("lat").and_then(Value::as_f64),
                o.get("lon").and_then(Value::as_f64),
            ) {
                (Some(lat), Some(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {
                    Some((lat, lon))
                }
                _ => None,
            },
            _ => None,
        };
        Ok(RemoteCamera {
            name: text(v, "name", 128)?,
            tier: match text(v, "tier", 16)?.as_str() {
                "key" => "key".into(),
                _ => "standard".into(),
            },
            org: text(v, "org", 256)?,
            status,
            status_reason: text(v, "status_reason", 300).ok(),
            location,
            has_sub: streams.iter().any(|s| s == "sub"),
            node,
            path,
            main_kbps: kbps(v, "main"),
            sub_kbps: kbps(v, "sub"),
            // Only `false` says the video is not usable: a lower node that does not judge
            // (from before the rates) leaves its online cameras counted as intact.
            intact_cause: (v["intact"] == Value::Bool(false)).then(|| cause_of(&v["intact_cause"])),
            id,
        })
    }

    /// The path as this node sees it: nothing between when the lower node records the camera,
    /// else the lower node and the path it gave.
    pub fn path_from_here(&self, link: &str) -> Vec<String> {
        if self.node == link {
            Vec::new()
        } else {
            std::iter::once(link.to_owned())
                .chain(self.path.iter().cloned())
                .collect()
        }
    }
}

/// A whole listing: the cameras that could be read, and why each other entry was left out.
pub fn parse_listing(v: &Value, link: &str) -> Result<(Vec<RemoteCamera>, Vec<String>), String> {
    let list = v.as_array().ok_or("the camera listing is not a JSON list")?;
    if list.len() > MAX_CAMERAS {
        return Err(format!(
            "a listing of {} cameras (at most {MAX_CAMERAS} are read)",
            list.len()
        ));
    }
    let mut ok = Vec::with_capacity(list.len());
    let mut bad = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, e) in list.iter().enumerate() {
        match RemoteCamera::from_json(e, link) {
            Ok(c) if seen.insert(c.id.clone()) => ok.push(c),
            Ok(c) => bad.push(format!("entry {i}: camera {} is listed twice", c.id)),
            Err(why) => bad.push(format!("entry {i}: {why}")),
        }
    }
    Ok((ok, bad))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: &str) -> Value {
        json!({"id": id, "name": "Gate", "tier": "key", "org": "renmin/gate", "status": "online",
               "recording": true, "location": {"lat": 38.9, "lon": 121.6}, "streams": ["main", "sub"],
               "node": "renmin", "path": [], "actions": ["live"]})
    }

    #[test]
    fn entries_are_read_and_bad_ones_left_out_with_the_reason() {
        let mut bad_id = entry("../x");
        bad_id["id"] = json!("../x");
        let mut huge = entry("big");
        huge["name"] = json!("n".repeat(10_000));
        let mut no_main = entry("nomain");
        no_main["streams"] = json!(["sub"]);
        let mut deep = entry("deep");
        deep["node"] = json!("community-2");
        deep["path"] = json!(["street-9"]);
        deep["kbps"] = json!({"main": 4100, "sub": 99_000_000});
        let listing = json!([entry("cam1"), bad_id, huge, no_main, entry("cam1"), deep, 42]);
        let (ok, bad) = parse_listing(&listing, "renmin").unwrap();
        assert_eq!(ok.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["cam1", "deep"]);
        assert_eq!(bad.len(), 5, "{bad:#?}");
        assert!(bad.iter().any(|b| b.contains("is not a camera id")));
        assert!(bad.iter().any(|b| b.contains("listed twice")));
        let c = &ok[0];
        assert!(c.has_sub && c.tier == "key" && c.location == Some((38.9, 121.6)));
        assert!(c.path_from_here("renmin").is_empty());
        assert_eq!(ok[1].path_from_here("renmin"), ["renmin", "street-9"]);
        // A rate the lower node measured is taken; an absurd one is not.
        assert_eq!((ok[1].main_kbps, ok[1].sub_kbps), (Some(4100), None));
        assert_eq!((c.main_kbps, c.sub_kbps), (None, None));
        assert_eq!(c.intact_cause, None);
        // A verdict of not intact is kept with its cause; a hostile or missing cause is a plain
        // word instead, and only `false` counts (a lower node that does not judge says nothing).
        for (intact, cause, want) in [
            (json!(false), json!("frozen"), Some("frozen")),
            (json!(false), json!("x\u{0}<script>".repeat(20)), Some("unknown")),
            (json!(false), Value::Null, Some("unknown")),
            (json!(false), json!(7), Some("unknown")),
            (json!("false"), json!("frozen"), None),
            (json!(true), json!("frozen"), None),
        ] {
            let mut e = entry("cam2");
            e["intact"] = intact;
            e["intact_cause"] = cause;
            let c = RemoteCamera::from_json(&e, "renmin").unwrap();
            assert_eq!(c.intact_cause.as_deref(), want, "{e}");
        }
        assert!(parse_listing(&json!({"not": "a list"}), "l").is_err());
    }
}
