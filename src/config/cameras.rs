//! `[[cameras]]`: the node's own cameras, their URLs, tiers, places and transports.

use std::collections::BTreeMap;

use node::config::{CameraConfig, Location, Tier};
use toml::{Table, Value};
use url::Url;

use super::check::{Checker, join, type_name};

impl Checker {
    pub(super) fn url(&mut self, path: &str, t: &Table, key: &str, required: bool) -> Option<Url> {
        let s = if required {
            self.required_string(path, t, key, "an rtsp:// URL")?
        } else {
            self.string(path, t, key)?
        };
        match Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "rtsp" | "rtsps") && u.host_str().is_some_and(|h| !h.is_empty()) => Some(u),
            // A GB/T 28181 channel: gb28181://DEVICE[/CHANNEL] (the channel defaults to the camera id).
            Ok(u)
                if u.scheme() == "gb28181"
                    && u.host_str()
                        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric()))
                    && key == "url" =>
            {
                Some(u)
            }
            // A lower node's camera, named as an operator might try to record it here.
            Ok(u) if u.scheme() == "sharpeye" => {
                self.problem(
                    join(path, key),
                    "a lower node's camera cannot be configured here: the rules say an upper level does not aggregate or store lower-level video, it calls it up on demand with a temporary cache; its cameras are adopted through its [[lower]] link and pulled when someone watches",
                );
                None
            }
            Ok(u) => {
                self.problem(
                    join(path, key),
                    format!(
                        "scheme {:?} or host is wrong; expected rtsp://[user:password@]host[:port]/path or gb28181://DEVICE-ID[/CHANNEL-ID]",
                        u.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                // Never echo the value: it may hold a password.
                self.problem(
                    join(path, key),
                    format!("not a valid URL ({e}); expected rtsp://[user:password@]host[:port]/path"),
                );
                None
            }
        }
    }

    pub(super) fn cameras(&mut self, root: &Table) -> Vec<CameraConfig> {
        let mut out = Vec::new();
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        for (path, t) in self.array_of_tables(root, "cameras") {
            self.known(
                &path,
                t,
                &[
                    "id",
                    "name",
                    "url",
                    "sub_url",
                    "tier",
                    "record",
                    "org",
                    "location",
                    "transport",
                ],
            );
            let id = self.required_string(&path, t, "id", "a camera id (letters, digits, '-', '_', '.')");
            if let Some(id) = &id {
                let ok = id.len() <= 64
                    && !id.starts_with('.')
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok {
                    self.problem(join(&path, "id"), format!("{id:?} is not a valid id; use up to 64 letters, digits, '-', '_' or '.', not starting with '.'"));
                }
                if let Some(first) = ids.insert(id.clone(), path.clone()) {
                    self.problem(join(&path, "id"), format!("{id:?} is already used by {first}"));
                }
            }
            let name = self.string(&path, t, "name");
            let url = self.url(&path, t, "url", true);
            let sub_url = self.url(&path, t, "sub_url", false);
            let tier = match self.string(&path, t, "tier").as_deref() {
                None | Some("standard") => Tier::Standard,
                Some("key") => Tier::Key,
                Some(other) => {
                    self.problem(
                        join(&path, "tier"),
                        format!("{other:?} is not a tier; expected \"standard\" or \"key\""),
                    );
                    Tier::Standard
                }
            };
            let record = self.bool(&path, t, "record", true);
            let org = self.string(&path, t, "org").unwrap_or_default();
            if !org.is_empty() && org.split('/').any(|s| s.trim().is_empty()) {
                self.problem(
                    join(&path, "org"),
                    format!("{org:?} has an empty part; expected a path like \"dalian/xigang/renmin-road\""),
                );
            }
            let location = match t.get("location") {
                None => None,
                Some(Value::Table(l)) => self.location(&join(&path, "location"), l),
                Some(v) => {
                    self.problem(
                        join(&path, "location"),
                        format!("expected {{ lat = .., lon = .. }}, got {}", type_name(v)),
                    );
                    None
                }
            };
            let transport = self.transport(&path, t);
            if let (Some(id), Some(url)) = (id, url) {
                out.push(CameraConfig {
                    name: name.unwrap_or_else(|| id.clone()),
                    id,
                    url,
                    sub_url,
                    tier,
                    record,
                    org,
                    location,
                    transport,
                });
            }
        }
        out
    }

    pub(super) fn location(&mut self, path: &str, t: &Table) -> Option<Location> {
        self.known(path, t, &["lat", "lon", "heading", "fov", "range_m"]);
        let mut coord = |key: &str, limit: f64| -> Option<f64> {
            let v = match t.get(key) {
                Some(Value::Float(f)) => *f,
                Some(Value::Integer(i)) => *i as f64,
                Some(v) => {
                    self.problem(join(path, key), format!("expected a number, got {}", type_name(v)));
                    return None;
                }
                None => {
                    self.problem(join(path, key), "missing");
                    return None;
                }
            };
            if !(-limit..=limit).contains(&v) {
                self.problem(join(path, key), format!("{v} is outside -{limit}..{limit}"));
                return None;
            }
            Some(v)
        };
        let lat = coord("lat", 90.0);
        let lon = coord("lon", 180.0);
        let view = self.view(path, t);
        Some(Location {
            lat: lat?,
            lon: lon?,
            view,
        })
    }

    /// `heading` and `fov` (degrees) and `range_m` of a camera's location: given together or
    /// not at all, since a heading without a field of view says nothing about what is seen.
    fn view(&mut self, path: &str, t: &Table) -> Option<places::View> {
        let mut num = |key: &str| -> Option<f64> {
            match t.get(key) {
                None => None,
                Some(Value::Float(f)) => Some(*f),
                Some(Value::Integer(i)) => Some(*i as f64),
                Some(v) => {
                    self.problem(join(path, key), format!("expected a number, got {}", type_name(v)));
                    None
                }
            }
        };
        let (heading, fov, range) = (num("heading"), num("fov"), num("range_m"));
        match (heading, fov) {
            (None, None) if range.is_none() => None,
            (Some(h), Some(f)) => match places::View::new(h, f, range) {
                Ok(v) => Some(v),
                Err(places::PlacesError::Invalid { what, message }) => {
                    self.problem(join(path, &what), message);
                    None
                }
                Err(e) => {
                    self.problem(path.to_owned(), e.to_string());
                    None
                }
            },
            _ => {
                self.problem(
                    path.to_owned(),
                    "give heading (degrees clockwise from north) and fov (degrees) together, and range_m only with them",
                );
                None
            }
        }
    }
}
