//! The TOML configuration: parsed and checked in one pass that collects every problem.
//!
//! serde stops at the first error; an operator fixing a 200-camera file wants all of them at
//! once, each naming its key (`cameras[12].tier`) and what is expected. So the file is read as
//! a TOML tree and walked by hand, and `Config` is built only if nothing is wrong. Keys are
//! documented in `docs/config.md` and `config/example.toml`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};
use url::Url;

/// The retention tier of a camera.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tier {
    /// At least `[retention] standard` (30 days by the rules).
    Standard,
    /// Key areas and sites: at least `[retention] key` (90 days by the rules).
    Key,
}

impl Tier {
    /// `standard` or `key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Key => "key",
        }
    }
}

/// RTSP transport for a camera.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Interleaved over the RTSP TCP connection.
    Tcp,
    /// Separate UDP ports.
    Udp,
}

/// `[server]`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// HTTP API and web UI address.
    pub listen: SocketAddr,
    /// RTSP re-serve address (used from the live-relay work on).
    pub rtsp_listen: Option<SocketAddr>,
    /// Data directories (one per disk).
    pub data_dirs: Vec<PathBuf>,
}

/// `[recording]`.
#[derive(Clone, Debug)]
pub struct RecordingConfig {
    /// Target segment length.
    pub segment: Duration,
    /// Flush/durability interval (at most 1 s).
    pub flush: Duration,
}

/// `[live]`: live view and relay.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// How long a live request waits for the first key frame before a 503.
    pub start_timeout: Duration,
    /// An on-demand pull stops this long after its last viewer.
    pub idle: Duration,
    /// Most viewers of one stream.
    pub max_viewers_per_stream: usize,
    /// Most live viewers on the node.
    pub max_viewers: usize,
    /// Frames a viewer's queue holds before it lags and skips to the next key frame.
    pub queue_frames: usize,
    /// A viewer that reads nothing for this long is dropped.
    pub dead_after: Duration,
    /// The address WebRTC sessions offer browsers (default: the HTTP listen address).
    pub webrtc_host: Option<std::net::IpAddr>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            start_timeout: Duration::from_secs(10),
            idle: Duration::from_secs(15),
            max_viewers_per_stream: 200,
            max_viewers: 2000,
            queue_frames: 256,
            dead_after: Duration::from_secs(10),
            webrtc_host: None,
        }
    }
}

/// `[playback]`.
#[derive(Clone, Debug)]
pub struct PlaybackConfig {
    /// Longest range playback, HLS and export accept.
    pub max_range: Duration,
}

/// `[retention]`.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Guarantee of the standard tier.
    pub standard: Duration,
    /// Guarantee of the key tier.
    pub key: Duration,
    /// Free space to keep on every data disk.
    pub min_free: MinFree,
    /// How often retention runs (it also runs at once when a write runs out of space).
    pub interval: Duration,
}

/// `[retention] min_free`: bytes or a percentage of each disk.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum MinFree {
    /// At least this many bytes.
    Bytes(u64),
    /// At least this percentage of the disk.
    Percent(f64),
}

/// Parses `"10%"`, `"50GB"`, `"512MiB"`, `"1000000"`.
pub fn parse_min_free(s: &str) -> Option<MinFree> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().ok()?;
        return (0.0..=90.0).contains(&v).then_some(MinFree::Percent(v));
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
    (v >= 0.0).then_some(MinFree::Bytes((v * mult) as u64))
}

/// `[ingest]`: how cameras are pulled.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Default RTSP transport.
    pub transport: Transport,
    /// A session without frames this long is reopened.
    pub watchdog: Duration,
    /// Per-request RTSP timeout.
    pub request_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay after transient failures.
    pub reconnect_max: Duration,
    /// Reconnect delay after configuration errors (401, 404).
    pub reconnect_slow: Duration,
    /// Frames above this size are dropped as corrupt.
    pub max_frame_bytes: usize,
}

/// `[gb28181]`.
#[derive(Clone, Debug)]
pub struct Gb28181Config {
    /// This platform's 20-digit id.
    pub id: String,
    /// The 10-digit domain.
    pub domain: String,
    /// SIP address (UDP and TCP).
    pub listen: SocketAddr,
    /// Default device password (devices not pre-declared register with it).
    pub password: String,
    /// The address offered to devices for media (`c=` in the INVITE's SDP).
    pub media_ip: IpAddr,
    /// Media transport: TCP with the device connecting (default), TCP with us connecting, UDP.
    pub media_transport: gb28181::sdp::MediaTransport,
    /// Expected keepalive interval of devices.
    pub keepalive_interval: Duration,
    /// Missed keepalives before a device is offline.
    pub keepalive_misses: u32,
    /// How long an INVITE or query may take to be answered.
    pub request_timeout: Duration,
    /// Charset of device bodies unless a device says otherwise.
    pub charset: gb28181::manscdp::Charset,
    /// Pre-declared devices.
    pub devices: Vec<GbDeviceConfig>,
    /// Channels in device catalogs become cameras (id = channel id).
    pub adopt: bool,
    /// Adopted channels are recorded (standard tier); else live on demand.
    pub record_discovered: bool,
    /// Org path prefix of adopted channels: `<org>/<device id>`.
    pub org: String,
}

/// One `[[gb28181.devices]]` entry.
#[derive(Clone, Debug)]
pub struct GbDeviceConfig {
    /// Device id.
    pub id: String,
    /// Its own password.
    pub password: Option<String>,
    /// Its charset.
    pub charset: Option<gb28181::manscdp::Charset>,
    /// Its Call-ID policy.
    pub call_id: gb28181::platform::CallIdPolicy,
    /// Ask it DeviceInfo and DeviceStatus after it registers.
    pub device_info: bool,
}

/// `[auth]`: sessions and media URLs.
#[derive(Clone, Copy, Debug)]
pub struct AuthSettings {
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// How long a signed media URL lasts at most.
    pub media_token_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl: Duration::from_secs(12 * 3600),
            media_token_ttl: Duration::from_secs(3600),
        }
    }
}

/// One `[[users]]` entry.
#[derive(Clone, Debug)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Plain password (hashed at start-up) or an argon2id PHC hash.
    pub secret: Secret,
    /// Role name.
    pub role: String,
    /// Department, if any.
    pub department: Option<String>,
}

/// A password as written in the config.
#[derive(Clone)]
pub enum Secret {
    /// `password = "..."`.
    Plain(String),
    /// `password_hash = "$argon2id$..."`.
    Hash(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Plain(..)",
            Secret::Hash(_) => "Hash(..)",
        })
    }
}

/// A camera's position.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Location {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// One `[[cameras]]` entry.
#[derive(Clone, Debug)]
pub struct CameraConfig {
    /// Stable id (a GB/T 28181 20-digit id where the camera has one).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Main stream URL.
    pub url: Url,
    /// Sub-stream URL.
    pub sub_url: Option<Url>,
    /// Retention tier.
    pub tier: Tier,
    /// Record continuously (false: live on demand only).
    pub record: bool,
    /// Org/grid path, e.g. `dalian/xigang/renmin-road`.
    pub org: String,
    /// Position.
    pub location: Option<Location>,
    /// Transport override.
    pub transport: Option<Transport>,
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[recording]`.
    pub recording: RecordingConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[playback]`.
    pub playback: PlaybackConfig,
    /// `[live]`.
    pub live: LiveConfig,
    /// `[ingest]`.
    pub ingest: IngestConfig,
    /// `[gb28181]`.
    pub gb28181: Option<Gb28181Config>,
    /// `[auth]`.
    pub auth: AuthSettings,
    /// `[[users]]`.
    pub users: Vec<UserConfig>,
    /// `[[departments]]`.
    pub departments: Vec<auth::DepartmentRecord>,
    /// `[[groups]]` (camera groups).
    pub groups: Vec<auth::GroupRecord>,
    /// `[[grants]]`.
    pub grants: Vec<auth::GrantRecord>,
    /// `[[cameras]]`.
    pub cameras: Vec<CameraConfig>,
}

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

/// Values below the rules' minimums are allowed (tests use seconds) but reported.
pub const RULE_STANDARD: Duration = Duration::from_secs(30 * 86_400);
/// The key-tier minimum of the governance-centre rules.
pub const RULE_KEY: Duration = Duration::from_secs(90 * 86_400);

const ROLES: [&str; 5] = ["viewer", "operator", "dispatcher", "auditor", "admin"];

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            problems: vec![Problem {
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(&text).map_err(|problems| ConfigError {
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

    /// The config's users, departments, groups and grants as the permission model's
    /// directory; `hash` gives each user's argon2id hash (plain passwords are hashed at start).
    pub fn directory(&self, hash: impl Fn(&UserConfig) -> String) -> auth::Directory {
        auth::Directory {
            users: self
                .users
                .iter()
                .map(|u| auth::UserRecord {
                    name: u.name.clone(),
                    role: auth::Role::parse(&u.role).unwrap_or(auth::Role::Viewer),
                    department: u.department.clone(),
                    password_hash: hash(u),
                    disabled: false,
                    source: auth::Source::Config,
                })
                .collect(),
            departments: self.departments.clone(),
            groups: self.groups.clone(),
            grants: self.grants.clone(),
            tokens: Vec::new(),
        }
    }

    /// Things that are allowed but an operator should know (e.g. retention below the rules).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.retention.standard < RULE_STANDARD {
            w.push(format!(
                "retention.standard is {}, below the 30 days the rules require for all video",
                humantime::format_duration(self.retention.standard)
            ));
        }
        if self.retention.key < RULE_KEY {
            w.push(format!(
                "retention.key is {}, below the 90 days the rules require for key areas",
                humantime::format_duration(self.retention.key)
            ));
        }
        if self.users.is_empty() {
            w.push("no [[users]]: nobody can log in to the API".into());
        }
        if let Some(g) = &self.gb28181 {
            if g.media_ip.is_unspecified() {
                w.push("gb28181.media_ip is a wildcard address: devices are offered 127.0.0.1 and can reach it only on this machine; set it to this node's address on the video network".into());
            }
            let gb_cameras = self.cameras.iter().filter(|c| c.url.scheme() == "gb28181").count();
            if gb_cameras == 0 {
                w.push("gb28181 is configured but no [[cameras]] has a gb28181:// url: registered devices are listed but not recorded".into());
            }
        } else if self.cameras.iter().any(|c| c.url.scheme() == "gb28181") {
            w.push("cameras with gb28181:// urls need a [gb28181] section".into());
        }
        w
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

fn type_name(v: &Value) -> &'static str {
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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Checker {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Reports keys of `t` not in `allowed`.
    fn known(&mut self, path: &str, t: &Table, allowed: &[&str]) {
        for k in t.keys() {
            if !allowed.contains(&k.as_str()) {
                self.problem(
                    join(path, k),
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }

    fn section<'a>(&mut self, root: &'a Table, name: &str) -> Option<&'a Table> {
        match root.get(name) {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(v) => {
                self.problem(name, format!("expected a table [{name}], got {}", type_name(v)));
                None
            }
        }
    }

    fn string(&mut self, path: &str, t: &Table, key: &str) -> Option<String> {
        match t.get(key)? {
            Value::String(s) => Some(s.clone()),
            v => {
                self.problem(join(path, key), format!("expected a string, got {}", type_name(v)));
                None
            }
        }
    }

    fn required_string(&mut self, path: &str, t: &Table, key: &str, what: &str) -> Option<String> {
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

    fn bool(&mut self, path: &str, t: &Table, key: &str, default: bool) -> bool {
        match t.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(v) => {
                self.problem(join(path, key), format!("expected true or false, got {}", type_name(v)));
                default
            }
        }
    }

    fn duration(
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

    fn addr(&mut self, path: &str, t: &Table, key: &str) -> Option<SocketAddr> {
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
        };
        // References between users, departments, groups and grants are checked by the same
        // rules the admin API applies, so that the server never refuses a checked config.
        if let Err(e) = config.directory(|_| "$argon2id$unchecked".into()).validate() {
            self.problem("grants", e.to_string());
        }
        Some(config)
    }

    fn server(&mut self, root: &Table) -> Option<ServerConfig> {
        let Some(t) = self.section(root, "server") else {
            self.problem("server", "missing; expected a [server] table with at least data_dirs");
            return None;
        };
        self.known("server", t, &["listen", "rtsp_listen", "data_dirs"]);
        let listen = if t.contains_key("listen") {
            self.addr("server", t, "listen")
        } else {
            Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
        };
        let rtsp_listen = self.addr("server", t, "rtsp_listen");
        let data_dirs = match t.get("data_dirs") {
            None => {
                self.problem(
                    "server.data_dirs",
                    "missing; expected a list of directories, like [\"/var/lib/sharpeye/disk1\"]",
                );
                Vec::new()
            }
            Some(Value::Array(a)) => {
                let mut dirs = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => dirs.push(PathBuf::from(s)),
                        v => self.problem(
                            format!("server.data_dirs[{i}]"),
                            format!("expected a directory path, got {}", type_name(v)),
                        ),
                    }
                }
                if a.is_empty() {
                    self.problem("server.data_dirs", "empty; expected at least one directory");
                }
                let unique: HashSet<&PathBuf> = dirs.iter().collect();
                if unique.len() != dirs.len() {
                    self.problem("server.data_dirs", "lists the same directory twice");
                }
                dirs
            }
            Some(v) => {
                self.problem(
                    "server.data_dirs",
                    format!("expected a list of directories, got {}", type_name(v)),
                );
                Vec::new()
            }
        };
        if let (Some(a), Some(b)) = (listen, rtsp_listen)
            && a == b
        {
            self.problem("server.rtsp_listen", "is the same address as server.listen");
        }
        Some(ServerConfig {
            listen: listen?,
            rtsp_listen,
            data_dirs,
        })
    }

    fn recording(&mut self, root: &Table) -> RecordingConfig {
        let empty = Table::new();
        let t = self.section(root, "recording").unwrap_or(&empty);
        self.known("recording", t, &["segment", "flush"]);
        RecordingConfig {
            segment: self.duration(
                "recording",
                t,
                "segment",
                Duration::from_secs(60),
                Duration::from_secs(1),
                Duration::from_secs(3600),
            ),
            flush: self.duration(
                "recording",
                t,
                "flush",
                Duration::from_millis(500),
                Duration::from_millis(10),
                Duration::from_secs(1),
            ),
        }
    }

    fn retention(&mut self, root: &Table) -> RetentionConfig {
        let empty = Table::new();
        let t = self.section(root, "retention").unwrap_or(&empty);
        self.known("retention", t, &["standard", "key", "min_free", "interval"]);
        let max = Duration::from_secs(100 * 365 * 86_400);
        let min_free = match t.get("min_free") {
            None => MinFree::Percent(5.0),
            Some(Value::Integer(n)) if *n >= 0 => MinFree::Bytes(*n as u64),
            Some(Value::String(v)) => parse_min_free(v).unwrap_or_else(|| {
                self.problem(
                    "retention.min_free",
                    format!("{v:?} is not a size; expected a percentage of each disk (\"5%\", up to 90%) or bytes (\"50GB\", \"512MiB\")"),
                );
                MinFree::Percent(5.0)
            }),
            Some(v) => {
                self.problem("retention.min_free", format!("expected a string like \"5%\" or \"50GB\", got {}", type_name(v)));
                MinFree::Percent(5.0)
            }
        };
        let r = RetentionConfig {
            standard: self.duration("retention", t, "standard", RULE_STANDARD, Duration::from_secs(1), max),
            key: self.duration("retention", t, "key", RULE_KEY, Duration::from_secs(1), max),
            min_free,
            interval: self.duration(
                "retention",
                t,
                "interval",
                Duration::from_secs(60),
                Duration::from_millis(50),
                Duration::from_secs(86_400),
            ),
        };
        if r.key < r.standard {
            self.problem(
                "retention.key",
                "is shorter than retention.standard; key areas must be kept at least as long",
            );
        }
        r
    }

    fn playback(&mut self, root: &Table) -> PlaybackConfig {
        let empty = Table::new();
        let t = self.section(root, "playback").unwrap_or(&empty);
        self.known("playback", t, &["max_range"]);
        PlaybackConfig {
            max_range: self.duration(
                "playback",
                t,
                "max_range",
                Duration::from_secs(24 * 3600),
                Duration::from_secs(1),
                Duration::from_secs(31 * 86_400),
            ),
        }
    }

    fn count(&mut self, path: &str, t: &Table, key: &str, default: usize, min: usize, max: usize) -> usize {
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

    fn live(&mut self, root: &Table) -> LiveConfig {
        let empty = Table::new();
        let t = self.section(root, "live").unwrap_or(&empty);
        self.known(
            "live",
            t,
            &[
                "start_timeout",
                "idle",
                "max_viewers_per_stream",
                "max_viewers",
                "queue_frames",
                "dead_after",
                "webrtc_host",
            ],
        );
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        LiveConfig {
            start_timeout: self.duration("live", t, "start_timeout", s(10), ms(100), s(120)),
            idle: self.duration("live", t, "idle", s(15), ms(0), s(3600)),
            max_viewers_per_stream: self.count("live", t, "max_viewers_per_stream", 200, 1, 100_000),
            max_viewers: self.count("live", t, "max_viewers", 2000, 1, 1_000_000),
            queue_frames: self.count("live", t, "queue_frames", 256, 8, 100_000),
            dead_after: self.duration("live", t, "dead_after", s(10), ms(100), s(600)),
            webrtc_host: match t.get("webrtc_host") {
                None => None,
                Some(Value::String(v)) => match v.parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.problem("live.webrtc_host", format!("{v:?} is not an IP address"));
                        None
                    }
                },
                Some(v) => {
                    self.problem(
                        "live.webrtc_host",
                        format!("expected an IP address as a string, got {v}"),
                    );
                    None
                }
            },
        }
    }

    fn charset(&mut self, path: &str, t: &Table) -> Option<gb28181::manscdp::Charset> {
        let c = self.string(path, t, "charset")?;
        let parsed = gb28181::manscdp::Charset::parse(&c);
        if parsed.is_none() {
            self.problem(
                join(path, "charset"),
                format!("{c:?} is not a charset; expected \"auto\", \"gb18030\" (also for GB2312/GBK) or \"utf-8\""),
            );
        }
        parsed
    }

    fn transport(&mut self, path: &str, t: &Table) -> Option<Transport> {
        match self.string(path, t, "transport")?.as_str() {
            "tcp" => Some(Transport::Tcp),
            "udp" => Some(Transport::Udp),
            other => {
                self.problem(
                    join(path, "transport"),
                    format!("{other:?} is not a transport; expected \"tcp\" or \"udp\""),
                );
                None
            }
        }
    }

    fn ingest(&mut self, root: &Table) -> IngestConfig {
        let empty = Table::new();
        let t = self.section(root, "ingest").unwrap_or(&empty);
        self.known(
            "ingest",
            t,
            &[
                "transport",
                "watchdog",
                "request_timeout",
                "reconnect_min",
                "reconnect_max",
                "reconnect_slow",
                "max_frame_bytes",
            ],
        );
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let max_frame_bytes = match t.get("max_frame_bytes") {
            None => 16 << 20,
            Some(Value::Integer(n)) if (65_536..=1 << 30).contains(n) => *n as usize,
            Some(v) => {
                self.problem(
                    "ingest.max_frame_bytes",
                    format!("expected an integer between 65536 and 1073741824, got {v}"),
                );
                16 << 20
            }
        };
        IngestConfig {
            transport: self.transport("ingest", t).unwrap_or(Transport::Tcp),
            watchdog: self.duration("ingest", t, "watchdog", s(4), ms(200), s(300)),
            request_timeout: self.duration("ingest", t, "request_timeout", s(5), ms(100), s(300)),
            reconnect_min: self.duration("ingest", t, "reconnect_min", ms(250), ms(10), s(600)),
            reconnect_max: self.duration("ingest", t, "reconnect_max", ms(1500), ms(10), s(3600)),
            reconnect_slow: self.duration("ingest", t, "reconnect_slow", s(30), ms(10), s(3600)),
            max_frame_bytes,
        }
    }

    fn gb28181(&mut self, root: &Table) -> Option<Gb28181Config> {
        let t = self.section(root, "gb28181")?;
        self.known(
            "gb28181",
            t,
            &[
                "id",
                "domain",
                "listen",
                "password",
                "media_ip",
                "media_transport",
                "keepalive_interval",
                "keepalive_misses",
                "request_timeout",
                "charset",
                "devices",
                "adopt",
                "record_discovered",
                "org",
            ],
        );
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let id = self.required_string("gb28181", t, "id", "this platform's 20-digit GB/T 28181 id");
        if let Some(id) = &id
            && !digits(id, 20)
        {
            self.problem("gb28181.id", format!("{id:?} is not a 20-digit GB/T 28181 id"));
        }
        let domain = self.required_string("gb28181", t, "domain", "the 10-digit SIP domain");
        if let Some(d) = &domain
            && !digits(d, 10)
        {
            self.problem("gb28181.domain", format!("{d:?} is not a 10-digit domain"));
        }
        let listen = if t.contains_key("listen") {
            self.addr("gb28181", t, "listen")
        } else {
            Some(SocketAddr::from(([0, 0, 0, 0], 5060)))
        };
        let password = self.required_string("gb28181", t, "password", "the default device password");
        let media_ip = match self.string("gb28181", t, "media_ip") {
            None => listen.map(|l| l.ip()),
            Some(ip) => match ip.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.problem("gb28181.media_ip", format!("{ip:?} is not an IP address"));
                    None
                }
            },
        };
        let media_transport = match self.string("gb28181", t, "media_transport") {
            None => gb28181::sdp::MediaTransport::TcpPassive,
            Some(m) => gb28181::sdp::MediaTransport::parse(&m).unwrap_or_else(|| {
                self.problem(
                    "gb28181.media_transport",
                    format!("{m:?} is not a media transport; expected \"tcp-passive\" (the device connects to us), \"tcp-active\" (we connect to it) or \"udp\""),
                );
                gb28181::sdp::MediaTransport::TcpPassive
            }),
        };
        let s = Duration::from_secs;
        let keepalive_interval = self.duration("gb28181", t, "keepalive_interval", s(60), s(1), s(3600));
        let keepalive_misses = match t.get("keepalive_misses") {
            None => 3,
            Some(Value::Integer(n)) if (1..=100).contains(n) => *n as u32,
            Some(v) => {
                self.problem(
                    "gb28181.keepalive_misses",
                    format!("expected a whole number from 1 to 100, got {v}"),
                );
                3
            }
        };
        let request_timeout = self.duration(
            "gb28181",
            t,
            "request_timeout",
            s(10),
            Duration::from_millis(500),
            s(120),
        );
        let charset = self.charset("gb28181", t).unwrap_or_default();
        let mut devices = Vec::new();
        match t.get("devices") {
            None => {}
            Some(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    let path = format!("gb28181.devices[{i}]");
                    let Value::Table(d) = v else {
                        self.problem(path, format!("expected a table, got {}", type_name(v)));
                        continue;
                    };
                    self.known(&path, d, &["id", "password", "charset", "call_id", "device_info"]);
                    let device_info = self.bool(&path, d, "device_info", true);
                    let id = self.required_string(&path, d, "id", "the device's id");
                    if let Some(id) = &id
                        && !(id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
                    {
                        self.problem(
                            join(&path, "id"),
                            format!("{id:?} is not a device id (up to 32 letters and digits)"),
                        );
                    }
                    let password = self.string(&path, d, "password");
                    let charset = self.charset(&path, d);
                    let call_id = match self.string(&path, d, "call_id").as_deref() {
                        None | Some("fresh") => gb28181::platform::CallIdPolicy::Fresh,
                        Some("registration") => gb28181::platform::CallIdPolicy::Registration,
                        Some(other) => {
                            self.problem(
                                join(&path, "call_id"),
                                format!("{other:?}: expected \"fresh\" or \"registration\""),
                            );
                            gb28181::platform::CallIdPolicy::Fresh
                        }
                    };
                    if let Some(id) = id {
                        devices.push(GbDeviceConfig {
                            id,
                            password,
                            charset,
                            call_id,
                            device_info,
                        });
                    }
                }
            }
            Some(v) => self.problem(
                "gb28181.devices",
                format!("expected [[gb28181.devices]] tables, got {}", type_name(v)),
            ),
        }
        let adopt = self.bool("gb28181", t, "adopt", true);
        let record_discovered = self.bool("gb28181", t, "record_discovered", true);
        let org = match self.string("gb28181", t, "org") {
            Some(o) if !o.trim().is_empty() && !o.split('/').any(|p| p.trim().is_empty()) => o,
            Some(o) => {
                self.problem(
                    "gb28181.org",
                    format!("{o:?} is not an org path like \"dalian/xigang\""),
                );
                "gb28181".into()
            }
            None => "gb28181".into(),
        };
        Some(Gb28181Config {
            id: id?,
            domain: domain?,
            listen: listen?,
            password: password?,
            media_ip: media_ip?,
            media_transport,
            keepalive_interval,
            keepalive_misses,
            request_timeout,
            charset,
            devices,
            adopt,
            record_discovered,
            org,
        })
    }

    fn array_of_tables<'a>(&mut self, root: &'a Table, key: &str) -> Vec<(String, &'a Table)> {
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

    fn auth(&mut self, root: &Table) -> AuthSettings {
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

    fn strings(&mut self, path: &str, t: &Table, key: &str) -> Option<Vec<String>> {
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

    fn departments(&mut self, root: &Table) -> Vec<auth::DepartmentRecord> {
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

    fn groups(&mut self, root: &Table) -> Vec<auth::GroupRecord> {
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

    fn grants(&mut self, root: &Table) -> Vec<auth::GrantRecord> {
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

    fn users(&mut self, root: &Table) -> Vec<UserConfig> {
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
            let role = self.required_string(&path, t, "role", &format!("one of {}", ROLES.join(", ")));
            if let Some(r) = &role
                && !ROLES.contains(&r.as_str())
            {
                self.problem(
                    join(&path, "role"),
                    format!("{r:?} is not a role; expected one of {}", ROLES.join(", ")),
                );
            }
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

    fn url(&mut self, path: &str, t: &Table, key: &str, required: bool) -> Option<Url> {
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

    fn cameras(&mut self, root: &Table) -> Vec<CameraConfig> {
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

    fn location(&mut self, path: &str, t: &Table) -> Option<Location> {
        self.known(path, t, &["lat", "lon"]);
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
        Some(Location { lat: lat?, lon: lon? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
rtsp_listen = "127.0.0.1:8554"
data_dirs = ["/var/lib/sharpeye/disk1"]

[recording]
segment = "60s"

[retention]
standard = "30d"
key = "90d"

[gb28181]
id = "34020000002000000001"
domain = "3402000000"
listen = "127.0.0.1:5060"
password = "12345678"

[[users]]
name = "admin"
password = "change-me"
role = "admin"

[[cameras]]
id = "34020000001320000001"
name = "East gate"
url = "rtsp://user:pass@10.0.0.5/stream1"
sub_url = "rtsp://user:pass@10.0.0.5/stream2"
tier = "key"
record = true
org = "dalian/xigang/renmin-road"
location = { lat = 38.914, lon = 121.614 }
"#;

    #[test]
    fn the_api_md_example_parses() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.cameras.len(), 1);
        assert_eq!(c.cameras[0].tier, Tier::Key);
        assert_eq!(c.retention.key, Duration::from_secs(90 * 86_400));
        assert_eq!(c.recording.segment, Duration::from_secs(60));
        assert_eq!(c.gb28181.as_ref().unwrap().domain, "3402000000");
        assert_eq!(
            c.cameras[0].location,
            Some(Location {
                lat: 38.914,
                lon: 121.614
            })
        );
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("gb28181"));
    }

    fn problems(text: &str) -> Vec<String> {
        Config::parse(text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn gb28181_mistakes_are_named() {
        let bad = r#"
[server]
data_dirs = ["/d"]

[gb28181]
id = "3402"
domain = "3402000000"
password = "12345678"
media_ip = "not-an-ip"
media_transport = "sctp"
keepalive_misses = 0
charset = "latin1"
org = "a//b"
colour = "red"

[[gb28181.devices]]
id = "bad id!"
call_id = "sometimes"

[[cameras]]
id = "c1"
url = "gb28181://"
"#;
        let p = problems(bad);
        for key in [
            "gb28181.id",
            "gb28181.media_ip",
            "gb28181.media_transport",
            "gb28181.keepalive_misses",
            "gb28181.charset",
            "gb28181.org",
            "gb28181.colour",
            "gb28181.devices[0].id",
            "gb28181.devices[0].call_id",
            "cameras[0].url",
        ] {
            assert!(p.iter().any(|m| m.starts_with(key)), "{key} not named in {p:#?}");
        }
        // A valid section with a declared channel parses, and a missing section is a warning.
        let good = "[server]\ndata_dirs = [\"/d\"]\n[gb28181]\nid = \"34020000002000000001\"\ndomain = \"3402000000\"\npassword = \"12345678\"\nlisten = \"127.0.0.1:5060\"\n[[cameras]]\nid = \"34020000001310000001\"\nurl = \"gb28181://34020000001180000001/34020000001310000001\"\n";
        let c = Config::parse(good).unwrap();
        let g = c.gb28181.as_ref().unwrap();
        assert_eq!(g.media_transport, gb28181::sdp::MediaTransport::TcpPassive);
        assert!(g.adopt && g.record_discovered);
        assert_eq!(c.cameras[0].url.host_str(), Some("34020000001180000001"));
        let orphan = Config::parse(
            "[server]\ndata_dirs = [\"/d\"]\n[[cameras]]\nid = \"c\"\nurl = \"gb28181://34020000001180000001\"\n",
        )
        .unwrap();
        assert!(orphan.warnings().iter().any(|w| w.contains("need a [gb28181] section")));
    }

    #[test]
    fn permission_mistakes_are_named() {
        let bad = r#"
[server]
data_dirs = ["/d"]

[[users]]
name = "amy"
password = "long-enough"
role = "viewer"
department = "east"

[[departments]]
id = "east"
parent = "west"

[[departments]]
name = "no id"

[[groups]]
id = "gates"

[[grants]]
subject = "team:east"
actions = ["live", "fly"]
resource = "street:x"

[[grants]]
subject = "department:east"
actions = "live"
resource = "group:gates"
"#;
        let p = problems(bad);
        for want in [
            "departments[1].id: missing",
            "groups[0].cameras: missing",
            "grants[0].subject: \"team:east\" is not a subject",
            "grants[0].actions: \"fly\" is not an action",
            "grants[0].resource: \"street:x\" is not a resource",
            "grants[1].actions: expected a list of strings",
            "grants: department \"east\": parent \"west\" does not exist",
        ] {
            assert!(p.iter().any(|x| x.contains(want)), "missing {want:?} in {p:#?}");
        }
        // References are checked with the same rules as the admin API.
        let unknown_group = r#"
[server]
data_dirs = ["/d"]
[[grants]]
subject = "role:viewer"
actions = ["live"]
resource = "group:nowhere"
[[grants]]
subject = "role:viewer"
actions = ["admin"]
resource = "org:dalian"
"#;
        let p = problems(unknown_group);
        assert!(
            p.iter().any(|x| x.contains("group \"nowhere\" does not exist")),
            "{p:#?}"
        );
    }

    #[test]
    fn every_mistake_is_named_at_once() {
        let bad = r#"
[server]
listen = "localhost"
data_dirs = []
colour = "blue"

[recording]
segment = "60"
flush = "5s"

[retention]
standard = "90d"
key = "30d"

[[users]]
name = "admin"
password = "short"
role = "root"

[[users]]
name = "admin"
password_hash = "md5:abc"
role = "viewer"

[[cameras]]
id = "cam/1"
url = "http://10.0.0.5/stream"
tier = "gold"
location = { lat = 123.0, lon = 10 }

[[cameras]]
id = "cam2"
url = "rtsp://10.0.0.6/s"
transport = "sctp"
record = "yes"

[[cameras]]
id = "cam2"
"#;
        let p = problems(bad);
        let expect = [
            "server.listen: \"localhost\" is not an address",
            "server.data_dirs: empty",
            "server.colour: unknown key",
            "recording.segment: \"60\" is not a duration",
            "recording.flush: \"5s\" is out of range",
            "retention.key: is shorter than retention.standard",
            "users[0].password: shorter than 8 characters",
            "users[0].role: \"root\" is not a role",
            "users[1].name: user \"admin\" is defined twice",
            "users[1].password_hash: expected an argon2id hash",
            "cameras[0].id: \"cam/1\" is not a valid id",
            "cameras[0].url: scheme \"http\"",
            "cameras[0].tier: \"gold\" is not a tier",
            "cameras[0].location.lat: 123 is outside -90..90",
            "cameras[1].transport: \"sctp\" is not a transport",
            "cameras[1].record: expected true or false",
            "cameras[2].id: \"cam2\" is already used by cameras[1]",
            "cameras[2].url: missing",
        ];
        for e in expect {
            assert!(
                p.iter().any(|x| x.starts_with(e)),
                "missing {e:?} in:\n{}",
                p.join("\n")
            );
        }
        assert_eq!(p.len(), expect.len(), "unexpected extra problems:\n{}", p.join("\n"));
    }

    #[test]
    fn syntax_errors_and_wrong_types_are_reported() {
        assert!(problems("[server\n")[0].starts_with("not valid TOML"));
        let p = problems("server = 3");
        assert!(p[0].starts_with("server: expected a table"), "{p:?}");
        let p = problems("[server]\ndata_dirs = \"/x\"\n[[cameras]]\nid = 5\nurl = \"rtsp://h/\"");
        assert!(
            p.iter().any(|x| x.starts_with("server.data_dirs: expected a list")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x.starts_with("cameras[0].id: expected a string")),
            "{p:?}"
        );
        let p = problems("");
        assert!(p[0].starts_with("server: missing"));
    }

    #[test]
    fn min_free_forms() {
        assert_eq!(parse_min_free("10%"), Some(MinFree::Percent(10.0)));
        assert_eq!(parse_min_free("50GB"), Some(MinFree::Bytes(50_000_000_000)));
        assert_eq!(parse_min_free("512MiB"), Some(MinFree::Bytes(512 << 20)));
        assert_eq!(parse_min_free("1000"), Some(MinFree::Bytes(1000)));
        for bad in ["", "95%", "-1", "lots", "5 parsecs"] {
            assert_eq!(parse_min_free(bad), None, "{bad}");
        }
        let p = problems("[server]\ndata_dirs=[\"/d\"]\n[retention]\nmin_free=\"lots\"");
        assert!(p[0].starts_with("retention.min_free: \"lots\" is not a size"), "{p:?}");
    }

    #[test]
    fn url_problems_never_echo_the_value() {
        let p = problems("[server]\ndata_dirs=[\"/d\"]\n[[cameras]]\nid=\"c\"\nurl=\"rtsp://u:sEcReT@[bad\"");
        assert_eq!(p.len(), 1);
        assert!(!p[0].contains("sEcReT"), "{}", p[0]);
    }

    #[test]
    fn short_retention_is_a_warning_not_an_error() {
        let c = Config::parse("[server]\ndata_dirs=[\"/d\"]\n[retention]\nstandard=\"20s\"\nkey=\"40s\"").unwrap();
        let w = c.warnings();
        assert!(w.iter().any(|x| x.contains("below the 30 days")));
        assert!(w.iter().any(|x| x.contains("below the 90 days")));
    }
}
