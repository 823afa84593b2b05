//! What a node is configured with: the checked configuration, section by section.
//!
//! The binary reads and checks the TOML file (naming every mistake at once) and hands the node
//! a [`Config`]; the demo builds one in code. Where a crate already has the type for a setting
//! (a retention tier, a free-space floor, how cameras are pulled), the config uses it rather
//! than a copy. The keys are documented in `docs/config.md` and `config/example.toml`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use hierarchy::Level;
pub use hierarchy::config::{CacheConfig, Dial, LowerConfig, UpperConfig};
pub use hierarchy::link::{DEFAULT_MAIN_KBPS, DEFAULT_SUB_KBPS};
pub use ingest::rtsp::{PullSettings, RtspTransport};
pub use store::retention::{FreeFloor, Tier};
use url::Url;

/// The retention minimum of the governance-centre rules for all video; shorter values are
/// allowed (tests use seconds) but reported.
pub const RULE_STANDARD: Duration = Duration::from_secs(30 * 86_400);
/// The key-tier minimum of the governance-centre rules.
pub const RULE_KEY: Duration = Duration::from_secs(90 * 86_400);

/// `[server]`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// HTTP API and web UI address.
    pub listen: SocketAddr,
    /// RTSP re-serve address.
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

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            segment: Duration::from_secs(60),
            flush: Duration::from_millis(500),
        }
    }
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
    pub webrtc_host: Option<IpAddr>,
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

impl Default for PlaybackConfig {
    fn default() -> Self {
        PlaybackConfig {
            max_range: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[retention]`.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Guarantee of the standard tier.
    pub standard: Duration,
    /// Guarantee of the key tier.
    pub key: Duration,
    /// Free space to keep on every data disk.
    pub min_free: FreeFloor,
    /// How often retention runs (it also runs at once when a write runs out of space).
    pub interval: Duration,
}

impl Default for RetentionConfig {
    /// The rules' minimums, 5 % free, every minute.
    fn default() -> Self {
        RetentionConfig {
            standard: RULE_STANDARD,
            key: RULE_KEY,
            min_free: FreeFloor::Percent(5.0),
            interval: Duration::from_secs(60),
        }
    }
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
    /// Upper platforms we register to (cascade), `[[gb28181.upper]]`.
    pub uppers: Vec<GbUpperConfig>,
}

impl Gb28181Config {
    /// The address devices are told to send media to: `media_ip`, or loopback when that is a
    /// wildcard (reported by [`Config::warnings`]).
    pub fn media_ip(&self) -> IpAddr {
        if self.media_ip.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.media_ip
        }
    }
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
    /// Budget of the link its media crosses, kbit/s (a lower platform's registration): every
    /// live pull of its channels counts.
    pub link_kbps: Option<u64>,
    /// What one of its channels is expected to need, kbit/s (the hierarchy's main-stream
    /// default unless set).
    pub channel_kbps: Option<u64>,
}

/// One `[[gb28181.upper]]` entry: an upper platform we register to as its lower platform.
#[derive(Clone, Debug)]
pub struct GbUpperConfig {
    /// The upper's platform id.
    pub id: String,
    /// Its SIP domain.
    pub domain: String,
    /// Its SIP address.
    pub address: SocketAddr,
    /// Signalling transport toward it.
    pub transport: gb28181::platform::Transport,
    /// Our id toward it (`[gb28181] id` unless set).
    pub own_id: Option<String>,
    /// Digest username (our id unless set).
    pub username: Option<String>,
    /// Digest password.
    pub password: String,
    /// What it may see and pull: grant resources (`org:PATH`, `group:ID`, `camera:ID`, `*`).
    pub share: Vec<auth::Resource>,
    /// Which shared cameras it may steer (PTZ).
    pub ptz: Vec<auth::Resource>,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Registration lifetime asked for.
    pub expires: Duration,
    /// Charset of our bodies toward it.
    pub charset: gb28181::manscdp::Charset,
    /// Budget of the link toward it, kbit/s: every session it pulls counts.
    pub link_kbps: u64,
    /// Our MESSAGEs reuse the registration's Call-ID (`call_id = "registration"`).
    pub reuse_call_id: bool,
    /// How long the upper may take to ACK our answer to its INVITE before the session is
    /// dropped (with a BYE).
    pub ack_timeout: Duration,
}

/// `[node]`: this node's place in the hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Its id (a GB/T 28181 platform id where it has one); other nodes and audit heads name it so.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its level.
    pub level: Level,
}

impl Default for NodeIdentity {
    /// A stand-alone node.
    fn default() -> Self {
        NodeIdentity {
            id: "sharpeye".into(),
            name: "Sharpeye".into(),
            level: Level::Community,
        }
    }
}

/// `[cluster]`: this node is one of several nodes of its level sharing the cameras through etcd
/// (`docs/cluster.md`). The cluster is named by `[node] id`: every node of the level has the
/// same one, as the upper level and its audit heads see them as one node.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// etcd's client URLs (`http://host:2379`).
    pub etcd: Vec<String>,
    /// This member's name, unique in the cluster.
    pub name: String,
    /// The URL other members and clients reach this node's API at.
    pub advertise_url: String,
    /// Its capacity weight: a member of weight 2 records twice the cameras of one of weight 1.
    pub weight: f64,
    /// The lease's TTL: how long after this node dies its cameras are taken over (at most).
    pub lease: Duration,
}

/// `[events]`: the durable event log and webhook retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsSettings {
    /// At least this many of the latest events stay replayable.
    pub keep: u64,
    /// A failed webhook delivery is retried after this, doubling...
    pub retry_min: Duration,
    /// ...up to this.
    pub retry_max: Duration,
}

impl Default for EventsSettings {
    fn default() -> Self {
        EventsSettings {
            keep: 200_000,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
        }
    }
}

/// `[rates]`: how the intact rate is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RatesSettings {
    /// How often each camera's picture is decoded and measured (dark, overexposed, low
    /// contrast, blurred), where the node can decode (`gstreamer` feature).
    pub picture_every: Duration,
}

impl Default for RatesSettings {
    /// A minute: a fault that lasts is caught within one, at a key frame's decode per camera.
    fn default() -> Self {
        RatesSettings {
            picture_every: Duration::from_secs(60),
        }
    }
}

/// `[audit]`: how the audit log is anchored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// How often the log's head is signed (and offered to the upper level).
    pub head_every: Duration,
}

impl Default for AuditSettings {
    /// Every minute, as the rules' tamper evidence asks at least.
    fn default() -> Self {
        AuditSettings {
            head_every: Duration::from_secs(60),
        }
    }
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
    /// Role.
    pub role: auth::Role,
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

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    /// What it sees (heading, field of view, range), when given.
    pub view: Option<places::View>,
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
    pub transport: Option<RtspTransport>,
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
    pub ingest: PullSettings,
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
    /// `[node]`.
    pub node: NodeIdentity,
    /// `[[lower]]`.
    pub lower: Vec<LowerConfig>,
    /// `[[upper]]`.
    pub upper: Vec<UpperConfig>,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[audit]`.
    pub audit: AuditSettings,
    /// `[places] grids`: the grid cells (网格) of the GeoJSON file it names.
    pub grids: Vec<places::Grid>,
    /// `[events]`.
    pub events: EventsSettings,
    /// `[rates]`.
    pub rates: RatesSettings,
    /// `[cluster]`, when this node is one of several of its level.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// A node serving `data_dirs` on the default addresses with every other section at its
    /// default: the start of a config built in code (the demo, tests).
    pub fn new(data_dirs: Vec<PathBuf>) -> Config {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                rtsp_listen: None,
                data_dirs,
            },
            recording: RecordingConfig::default(),
            retention: RetentionConfig::default(),
            playback: PlaybackConfig::default(),
            live: LiveConfig::default(),
            ingest: PullSettings::default(),
            gb28181: None,
            auth: AuthSettings::default(),
            users: Vec::new(),
            departments: Vec::new(),
            groups: Vec::new(),
            grants: Vec::new(),
            cameras: Vec::new(),
            node: NodeIdentity::default(),
            lower: Vec::new(),
            upper: Vec::new(),
            cache: CacheConfig::default(),
            audit: AuditSettings::default(),
            grids: Vec::new(),
            events: EventsSettings::default(),
            rates: RatesSettings::default(),
            cluster: None,
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
                    role: u.role,
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
            for u in g.uppers.iter().filter(|u| u.share.is_empty()) {
                w.push(format!(
                    "gb28181.upper {} has no `share`: it sees no camera; add share = [\"org:...\"] (grant resources)",
                    u.id
                ));
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
