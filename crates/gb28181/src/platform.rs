//! The platform side of GB/T 28181 as one sans-IO state machine: the registrar (digest MD5,
//! refresh, unregister, throttled wrong passwords), keepalive and online state, MANSCDP requests
//! and their multi-message answers, and INVITE dialogs for live, playback and download.
//!
//! Fed with [`Platform::handle_message`] (a parsed SIP message and the peer it came from) and
//! [`Platform::handle_timeout`]; what it wants done comes out of [`Platform::poll_output`]
//! (bytes to send to a peer, or an [`Event`]); [`Platform::poll_timeout`] says when to call
//! again. No sockets, no clock of its own: tests drive hours of protocol time in milliseconds.
//!
//! Requests are sent to the address the device's packets come from (not its Contact), on the
//! transport they came over, so a device behind NAT or registered over TCP is reachable.
//!
//! Why one file of this size: every handler of this role reads and writes the same device,
//! dialog and pending-request tables and the same output queue, and splitting them across
//! modules would have meant making those tables public to the crate or threading them through
//! every call. The other role, this node as the lower platform of an upper one, is not here: it
//! is `crate::upper` (its own tables, split by concern into registration and keepalive,
//! requests from the upper, and outgoing messages), and what both roles share (response
//! building, the answered-request cache, retransmission timers, ids and tags) is
//! `crate::sipcore`. About a third of this file is the registrar, a third the MANSCDP queries
//! and answers, a third the INVITE dialogs; they share every table above.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::digest::{self, Credentials};
use crate::manscdp::{self, CatalogChunk, CatalogItem, Charset, Document, RecordChunk, RecordItem};
use crate::sdp::{Answer, Offer};
use crate::sip::{Message, StartLine};
pub use crate::sipcore::uri_user;
use crate::sipcore::{Answered, T1, T2, branch_of, cseq_of, expires_of, response_to, tag_of, valid_id};

/// The transport a message travelled over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram.
    Udp,
    /// A TCP connection (the shell keeps it by peer address).
    Tcp,
}

/// Where a message came from, and where answers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Transport.
    pub transport: Transport,
    /// Source address.
    pub addr: SocketAddr,
}

/// How the platform addresses a device's requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallIdPolicy {
    /// A fresh Call-ID for every request outside a dialog (what devices expect).
    #[default]
    Fresh,
    /// The Call-ID of the device's registration, for devices (and scripted peers such as sipp)
    /// that route every request by it.
    Registration,
}

/// Settings of one device known in advance.
#[derive(Clone, Debug)]
pub struct DeviceSettings {
    /// Its own password (else the platform's).
    pub password: Option<String>,
    /// Charset of its bodies.
    pub charset: Charset,
    /// Call-ID policy.
    pub call_id: CallIdPolicy,
    /// Ask DeviceInfo and DeviceStatus after it registers (some devices, and scripted peers,
    /// mishandle queries they do not expect).
    pub ask_info: bool,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            password: None,
            charset: Charset::default(),
            call_id: CallIdPolicy::default(),
            ask_info: true,
        }
    }
}

/// Platform settings.
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    /// Our 20-digit id.
    pub id: String,
    /// Our SIP domain (10 digits); also the digest realm.
    pub domain: String,
    /// Our SIP address as devices reach it (Via, Contact).
    pub local: SocketAddr,
    /// Password of devices that have none of their own; `None`: only pre-declared devices.
    pub password: Option<String>,
    /// Pre-declared devices by id.
    pub devices: HashMap<String, DeviceSettings>,
    /// Expected keepalive interval.
    pub keepalive_interval: Duration,
    /// Missed keepalives before a device is offline.
    pub keepalive_misses: u32,
    /// How long a request waits for its final response.
    pub request_timeout: Duration,
    /// How long a multi-message answer waits for its next part.
    pub answer_timeout: Duration,
    /// Challenge with `qop="auth"`.
    pub qop: bool,
    /// Offset of the devices' local time from UTC, seconds (China: 8 h), for the `Date` header.
    pub utc_offset_secs: i64,
    /// Wrong passwords from one device or address within a minute before it is refused
    /// without checking for a minute.
    pub max_auth_failures: u32,
    /// Ask every newly registered device for its catalog.
    pub auto_catalog: bool,
}

impl PlatformConfig {
    /// Defaults for `id` in `domain` reachable at `local`.
    pub fn new(id: &str, domain: &str, local: SocketAddr) -> PlatformConfig {
        PlatformConfig {
            id: id.to_owned(),
            domain: domain.to_owned(),
            local,
            password: None,
            devices: HashMap::new(),
            keepalive_interval: Duration::from_secs(60),
            keepalive_misses: 3,
            request_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(10),
            qop: true,
            utc_offset_secs: 8 * 3600,
            max_auth_failures: 5,
            auto_catalog: true,
        }
    }
}

/// Identifies a media session.
pub type CallId = u64;

/// Why a device went offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineReason {
    /// No keepalive for `interval × misses`.
    KeepaliveLost,
    /// The registration expired without refresh.
    Expired,
    /// It unregistered.
    Unregistered,
}

/// What happened, for the shell and the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A device registered (or re-registered with a new Call-ID: `rebooted`).
    Registered {
        /// Device id.
        device: String,
        /// Where its packets come from.
        peer: Peer,
        /// A new registration rather than a refresh.
        fresh: bool,
    },
    /// A device is online again (keepalive after loss).
    Online {
        /// Device id.
        device: String,
    },
    /// A device went offline.
    Offline {
        /// Device id.
        device: String,
        /// Why.
        reason: OfflineReason,
    },
    /// A registration was refused for a wrong password (or throttled).
    AuthFailed {
        /// The device id it claimed.
        device: String,
        /// Where from.
        peer: Peer,
        /// Refused unchecked after too many failures.
        throttled: bool,
    },
    /// A Catalog answer: `complete` when `SumNum` items arrived, else what arrived by the timeout.
    Catalog {
        /// Device id.
        device: String,
        /// Items, deduplicated by id.
        items: Vec<CatalogItem>,
        /// All announced items arrived.
        complete: bool,
    },
    /// Changes a lower platform notified in its catalog subscription (or a device in a Catalog
    /// `Notify`): each item carries its `event` (`ADD`, `DEL`, `ON`, `OFF`, `UPDATE`, ...).
    CatalogChange {
        /// Device id.
        device: String,
        /// The changed items.
        items: Vec<CatalogItem>,
    },
    /// A RecordInfo answer.
    Records {
        /// Device id.
        device: String,
        /// The query's SN.
        sn: u64,
        /// Items.
        items: Vec<RecordItem>,
        /// All announced items arrived.
        complete: bool,
    },
    /// A DeviceInfo / DeviceStatus answer or an Alarm notify, as the document.
    Document {
        /// Device id.
        device: String,
        /// The decoded document.
        doc: Box<Document>,
    },
    /// A request of ours failed (non-2xx or no answer).
    RequestFailed {
        /// Device id.
        device: String,
        /// What it was (`Catalog`, `DeviceControl`, ...).
        what: String,
        /// The status, `None` on timeout.
        status: Option<u16>,
    },
    /// A media session was answered: media may flow.
    CallAnswered {
        /// The session.
        call: CallId,
        /// The device's SDP.
        answer: Answer,
    },
    /// A media session could not be set up.
    CallFailed {
        /// The session.
        call: CallId,
        /// The status, `None` on timeout.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
    /// A media session ended (device BYE, MediaStatus 121, or ours).
    CallEnded {
        /// The session.
        call: CallId,
        /// Why.
        reason: String,
    },
    /// Something happened on the link toward an upper platform.
    Upper {
        /// The upper's id.
        upper: String,
        /// What.
        event: crate::upper::UpperEvent,
    },
}

/// What the platform wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send bytes to a peer.
    Send {
        /// Where.
        to: Peer,
        /// The whole SIP message.
        data: Vec<u8>,
    },
    /// Something happened.
    Event(Event),
}

/// Why a request could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    /// The device is not registered.
    #[error("GB28181 device {0} is not registered (check that it points at this platform's id, domain and address)")]
    NotRegistered(String),
    /// No such session.
    #[error("no media session {0}")]
    NoCall(CallId),
}

/// A registered device as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceView {
    /// Id.
    pub id: String,
    /// Where its packets come from.
    pub peer: Peer,
    /// Online (registered and keeping alive).
    pub online: bool,
    /// `User-Agent` it sent.
    pub user_agent: Option<String>,
    /// `X-GB-Ver` it sent.
    pub gb_version: Option<String>,
}

struct Device {
    peer: Peer,
    call_id: String,
    expires_at: Instant,
    last_seen: Instant,
    online: bool,
    user_agent: Option<String>,
    gb_version: Option<String>,
    settings: DeviceSettings,
    cseq: u32,
    /// A catalog query to send: at the device's first keepalive after registering or at this
    /// time, whichever comes first (devices are busy right after REGISTER: gb28181-rs drops
    /// requests then, and a scripted sipp device expects its keepalive answered first).
    catalog_due: Option<Instant>,
    /// When the catalog subscription to this device (a lower platform) is renewed.
    subscribe_due: Option<Instant>,
}

/// A request of ours awaiting its final answer.
struct ClientTx {
    to: Peer,
    device: String,
    what: String,
    data: Vec<u8>,
    next_resend: Option<Instant>,
    interval: Duration,
    deadline: Instant,
    call: Option<CallId>,
}

enum CallState {
    Inviting,
    Established,
    Ended,
}

struct Call {
    device: String,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    request_uri: String,
    to_uri: String,
    state: CallState,
    invite_branch: String,
    ack: Option<Vec<u8>>,
}

/// What a multi-message answer has brought so far.
enum Gathered {
    /// Catalog items by id (a repeated item replaces the earlier one).
    Catalog(BTreeMap<String, CatalogItem>),
    /// RecordInfo items, duplicates dropped.
    Records(Vec<RecordItem>),
}

impl Gathered {
    fn len(&self) -> usize {
        match self {
            Gathered::Catalog(m) => m.len(),
            Gathered::Records(v) => v.len(),
        }
    }

    fn empty_like(&self) -> Gathered {
        match self {
            Gathered::Catalog(_) => Gathered::Catalog(BTreeMap::new()),
            Gathered::Records(_) => Gathered::Records(Vec::new()),
        }
    }

    fn absorb(&mut self, more: Gathered) {
        match (self, more) {
            (Gathered::Catalog(m), Gathered::Catalog(n)) => m.extend(n),
            (Gathered::Records(v), Gathered::Records(n)) => {
                for item in n {
                    if !v.contains(&item) {
                        v.push(item);
                    }
                }
            }
            // The same SN answered as both kinds: a confused device; the first kind wins.
            _ => {}
        }
    }
}

struct Aggregate {
    device: String,
    sum: usize,
    parts: Gathered,
    deadline: Instant,
    sn: u64,
}

/// The platform state machine.
pub struct Platform {
    cfg: PlatformConfig,
    devices: HashMap<String, Device>,
    nonces: HashMap<String, Instant>,
    failures: HashMap<String, (u32, Instant)>,
    txs: HashMap<String, ClientTx>,
    calls: HashMap<CallId, Call>,
    /// Calls by dialog: Call-ID and our tag (with the Registration Call-ID policy several
    /// calls share a Call-ID).
    calls_by_id: HashMap<(String, String), CallId>,
    aggregates: HashMap<(String, u64), Aggregate>,
    responses: Answered,
    out: VecDeque<Output>,
    next_call: CallId,
    next_sn: u64,
    tokens: crate::sipcore::Tokens,
}

const NONCE_LIFE: Duration = Duration::from_secs(300);
const MAX_NONCES: usize = 100_000;
/// How long a catalog subscription to a lower platform is asked to last (renewed at 90 %).
const CATALOG_SUBSCRIPTION: Duration = Duration::from_secs(3600);

/// Longest wait after a registration before its catalog is asked for.
const CATALOG_DELAY: Duration = Duration::from_secs(2);

/// `YYYY-MM-DDTHH:MM:SS.mmm` of a Unix time in milliseconds shifted by `offset` seconds.
pub fn gb_date(unix_ms: i64, offset: i64) -> String {
    crate::gbtime::format_ms(unix_ms, offset)
}

impl Platform {
    /// A platform with `cfg`.
    pub fn new(cfg: PlatformConfig) -> Platform {
        Platform {
            cfg,
            devices: HashMap::new(),
            nonces: HashMap::new(),
            failures: HashMap::new(),
            txs: HashMap::new(),
            calls: HashMap::new(),
            calls_by_id: HashMap::new(),
            aggregates: HashMap::new(),
            responses: Answered::default(),
            out: VecDeque::new(),
            next_call: 1,
            next_sn: 1,
            tokens: crate::sipcore::Tokens::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PlatformConfig {
        &self.cfg
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Registered devices.
    pub fn devices(&self) -> Vec<DeviceView> {
        let mut v: Vec<DeviceView> = self
            .devices
            .iter()
            .map(|(id, d)| DeviceView {
                id: id.clone(),
                peer: d.peer,
                online: d.online,
                user_agent: d.user_agent.clone(),
                gb_version: d.gb_version.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The device that owns a media session.
    pub fn call_device(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).map(|c| c.device.as_str())
    }

    /// When [`Platform::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self
            .txs
            .values()
            .flat_map(|t| [t.next_resend, Some(t.deadline)])
            .flatten();
        let agg = self.aggregates.values().map(|a| a.deadline);
        let dev = self.devices.values().flat_map(|d| {
            [
                d.online.then(|| d.last_seen + self.offline_after()),
                Some(d.expires_at),
                d.catalog_due,
            ]
        });
        tx.chain(agg).chain(dev.flatten()).min()
    }

    fn offline_after(&self) -> Duration {
        self.cfg.keepalive_interval * self.cfg.keepalive_misses.max(1)
    }

    fn token(&mut self) -> String {
        self.tokens.fresh()
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn send(&mut self, to: Peer, m: &Message) {
        self.out.push_back(Output::Send { to, data: m.to_bytes() });
    }

    /// A response to request `req` with `code`, extra headers and body; cached by branch so
    /// that a retransmitted request gets the same answer.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        now: Instant,
        from: Peer,
        req: &Message,
        code: u16,
        reason: &str,
        extra: Vec<(String, String)>,
        body: Bytes,
    ) {
        let tag = self.token()[..10].to_owned();
        let data = response_to(req, from, code, reason, &tag, extra, body).to_bytes();
        self.responses.remember(now, req, &data);
        self.out.push_back(Output::Send { to: from, data });
    }

    fn simple(&mut self, now: Instant, from: Peer, req: &Message, code: u16, reason: &str) {
        self.respond(now, from, req, code, reason, Vec::new(), Bytes::new());
    }

    /// Feeds one SIP message from `from`. `unix_ms` is the wall clock (for the `Date` header).
    pub fn handle_message(&mut self, now: Instant, unix_ms: i64, from: Peer, m: Message) {
        match &m.start {
            StartLine::Response { code, .. } => {
                let code = *code;
                self.handle_response(now, from, &m, code);
            }
            StartLine::Request { method, .. } => {
                let method = method.clone();
                // A retransmission of a request already answered: the same answer again.
                if let Some(data) = self.responses.replay(&m) {
                    self.out.push_back(Output::Send { to: from, data });
                    return;
                }
                if m.header("Call-ID").is_none() || cseq_of(&m).is_none() || m.header("From").is_none() {
                    self.simple(now, from, &m, 400, "Bad Request (missing Call-ID, CSeq or From)");
                    return;
                }
                match method.as_str() {
                    "REGISTER" => self.handle_register(now, unix_ms, from, &m),
                    "MESSAGE" => self.handle_manscdp(now, from, &m),
                    "BYE" => self.handle_bye(now, from, &m),
                    // A lower platform's catalog change, in the subscription we opened.
                    "NOTIFY" if m.body.windows(7).any(|w| w.eq_ignore_ascii_case(b"Catalog")) => {
                        self.handle_manscdp(now, from, &m)
                    }
                    "INFO" | "NOTIFY" => {
                        self.simple(now, from, &m, 200, "OK");
                        self.handle_in_dialog_notice(now, &m);
                    }
                    "OPTIONS" => self.simple(now, from, &m, 200, "OK"),
                    "ACK" => {}
                    "CANCEL" => self.simple(now, from, &m, 481, "Call/Transaction Does Not Exist"),
                    _ => self.simple(now, from, &m, 405, "Method Not Allowed"),
                }
            }
        }
    }

    fn device_settings(&self, id: &str) -> Option<DeviceSettings> {
        match self.cfg.devices.get(id) {
            Some(s) => Some(DeviceSettings {
                password: s.password.clone().or_else(|| self.cfg.password.clone()),
                ..s.clone()
            }),
            None => self.cfg.password.as_ref().map(|p| DeviceSettings {
                password: Some(p.clone()),
                ..DeviceSettings::default()
            }),
        }
    }

    fn throttled(&mut self, now: Instant, keys: &[String]) -> bool {
        keys.iter().any(|k| {
            self.failures.get(k).is_some_and(|(n, since)| {
                *n >= self.cfg.max_auth_failures && now.duration_since(*since) < Duration::from_secs(60)
            })
        })
    }

    fn fail_auth(&mut self, now: Instant, keys: &[String]) {
        for k in keys {
            let e = self.failures.entry(k.clone()).or_insert((0, now));
            if now.duration_since(e.1) >= Duration::from_secs(60) {
                *e = (0, now);
            }
            e.0 += 1;
        }
        if self.failures.len() > MAX_NONCES {
            self.failures
                .retain(|_, (_, since)| now.duration_since(*since) < Duration::from_secs(60));
        }
    }

    /// Refuses a registration with 403 and says so as [`Event::AuthFailed`].
    fn refuse(&mut self, now: Instant, from: Peer, m: &Message, reason: &str, device: String, throttled: bool) {
        self.simple(now, from, m, 403, reason);
        self.emit(Event::AuthFailed {
            device,
            peer: from,
            throttled,
        });
    }

    fn challenge(&mut self, now: Instant, from: Peer, m: &Message) {
        let nonce = self.token();
        if self.nonces.len() >= MAX_NONCES {
            self.nonces.retain(|_, t| now.duration_since(*t) < NONCE_LIFE);
        }
        self.nonces.insert(nonce.clone(), now);
        let realm = self.cfg.domain.clone();
        let value = digest::challenge(&realm, &nonce, self.cfg.qop);
        self.respond(
            now,
            from,
            m,
            401,
            "Unauthorized",
            vec![("WWW-Authenticate".into(), value)],
            Bytes::new(),
        );
    }

    fn handle_register(&mut self, now: Instant, unix_ms: i64, from: Peer, m: &Message) {
        // The From user is the device (gb28181-rs puts the domain in To).
        let Some(id) = m
            .header("From")
            .and_then(uri_user)
            .or_else(|| m.header("To").and_then(uri_user))
        else {
            self.simple(now, from, m, 400, "Bad Request (no device id in From)");
            return;
        };
        if !valid_id(id) {
            self.simple(now, from, m, 400, "Bad Request (device id)");
            return;
        }
        let id = id.to_owned();
        let Some(settings) = self.device_settings(&id) else {
            // Not pre-declared and no platform-wide password: not ours to admit.
            self.refuse(now, from, m, "Forbidden (unknown device)", id, false);
            return;
        };
        let keys = [format!("id:{id}"), format!("ip:{}", from.addr.ip())];
        if self.throttled(now, &keys) {
            self.refuse(
                now,
                from,
                m,
                "Forbidden (too many wrong passwords: wait a minute)",
                id,
                true,
            );
            return;
        }
        let Some(auth) = m.header("Authorization") else {
            self.challenge(now, from, m);
            return;
        };
        let creds = match Credentials::parse(auth) {
            Ok(c) => c,
            Err(_) => {
                self.simple(now, from, m, 400, "Bad Request (Authorization)");
                return;
            }
        };
        let fresh_nonce = self
            .nonces
            .get(&creds.nonce)
            .is_some_and(|t| now.duration_since(*t) < NONCE_LIFE);
        if !fresh_nonce {
            self.challenge(now, from, m);
            return;
        }
        let password = settings.password.clone().unwrap_or_default();
        if creds.username != id || !creds.verify("REGISTER", &password) {
            self.fail_auth(now, &keys);
            self.refuse(now, from, m, "Forbidden (wrong password)", id, false);
            return;
        }
        self.failures.remove(&keys[0]);
        let expires = expires_of(m).unwrap_or(3600).min(7 * 86_400);
        let call_id = m.header("Call-ID").unwrap_or("").to_owned();
        let mut extra = vec![
            ("Date".to_owned(), gb_date(unix_ms, self.cfg.utc_offset_secs)),
            ("Expires".to_owned(), expires.to_string()),
        ];
        if let Some(c) = m.header("Contact") {
            extra.push(("Contact".into(), c.to_owned()));
        }
        if let Some(v) = m.header("X-GB-Ver") {
            extra.push(("X-GB-Ver".into(), v.to_owned()));
        }
        self.respond(now, from, m, 200, "OK", extra, Bytes::new());
        if expires == 0 {
            if self.devices.remove(&id).is_some() {
                self.end_device_calls(&id, "the device unregistered");
                self.emit(Event::Offline {
                    device: id,
                    reason: OfflineReason::Unregistered,
                });
            }
            return;
        }
        let fresh = self.devices.get(&id).is_none_or(|d| d.call_id != call_id || !d.online);
        let cseq = self.devices.get(&id).map_or(1, |d| d.cseq);
        self.devices.insert(
            id.clone(),
            Device {
                peer: from,
                call_id,
                expires_at: now + Duration::from_secs(expires),
                last_seen: now,
                online: true,
                user_agent: m.header("User-Agent").map(str::to_owned),
                gb_version: m.header("X-GB-Ver").map(str::to_owned),
                settings,
                cseq,
                catalog_due: (fresh && self.cfg.auto_catalog).then(|| now + CATALOG_DELAY),
                subscribe_due: None,
            },
        );
        self.emit(Event::Registered {
            device: id,
            peer: from,
            fresh,
        });
    }

    fn handle_manscdp(&mut self, now: Instant, from: Peer, m: &Message) {
        let device = m.header("From").and_then(uri_user).unwrap_or("").to_owned();
        let charset = self
            .devices
            .get(&device)
            .map(|d| d.settings.charset)
            .or_else(|| self.cfg.devices.get(&device).map(|d| d.charset))
            .unwrap_or_default();
        let doc = match Document::decode(&m.body, charset) {
            Ok(d) => d,
            Err(e) => {
                let reason = format!("Bad Request ({e})");
                self.simple(now, from, m, 400, &reason);
                return;
            }
        };
        // In-dialog MediaStatus: the device finished sending a recording.
        if doc.is("Notify", "MediaStatus") {
            self.simple(now, from, m, 200, "OK");
            self.media_status(now, m);
            return;
        }
        let Some(dev) = self.devices.get_mut(&device) else {
            // Keepalive (or anything) from a device we do not know: make it register again.
            self.simple(now, from, m, 404, "Not Found (register first)");
            return;
        };
        dev.last_seen = now;
        dev.peer = from;
        let back_online = !dev.online;
        dev.online = true;
        let catalog_due = dev.catalog_due.take().is_some();
        self.simple(now, from, m, 200, "OK");
        if back_online {
            self.emit(Event::Online { device: device.clone() });
        }
        if catalog_due {
            self.learn(now, &device);
        }
        if doc.is("Notify", "Keepalive") {
            return;
        }
        if doc.cmd.eq_ignore_ascii_case("Catalog") && !doc.root.eq_ignore_ascii_case("Query") {
            let chunk = CatalogChunk::from_document(&doc);
            if doc.root.eq_ignore_ascii_case("Notify") && chunk.items.iter().any(|i| i.event.is_some()) {
                self.emit(Event::CatalogChange {
                    device,
                    items: chunk.items,
                });
                return;
            }
            let items = chunk.items.into_iter().map(|i| (i.device_id.clone(), i)).collect();
            self.gather(now, &device, doc.sn, chunk.sum_num, Gathered::Catalog(items));
            return;
        }
        if doc.is("Response", "RecordInfo") {
            let chunk = RecordChunk::from_document(&doc);
            self.gather(now, &device, doc.sn, chunk.sum_num, Gathered::Records(chunk.items));
            return;
        }
        if doc.is("Notify", "Alarm") {
            let body = manscdp::alarm_response(doc.sn, &doc.device_id);
            let _ = self.send_manscdp(now, &device, &device, "Alarm", body);
        }
        self.emit(Event::Document {
            device,
            doc: Box::new(doc),
        });
    }

    /// Adds one message of a multi-message answer (SumNum `sum`) to the answer to `sn`, and
    /// finishes it once all announced items are there.
    fn gather(&mut self, now: Instant, device: &str, sn: u64, sum: usize, parts: Gathered) {
        let deadline = now + self.cfg.answer_timeout;
        let key = (device.to_owned(), sn);
        let agg = self.aggregates.entry(key.clone()).or_insert_with(|| Aggregate {
            device: device.to_owned(),
            sum,
            parts: parts.empty_like(),
            deadline,
            sn,
        });
        agg.sum = agg.sum.max(sum);
        agg.deadline = deadline;
        agg.parts.absorb(parts);
        if agg.parts.len() >= agg.sum {
            self.finish_aggregate(&key, true);
        }
    }

    fn finish_aggregate(&mut self, key: &(String, u64), complete: bool) {
        let Some(agg) = self.aggregates.remove(key) else { return };
        let event = match agg.parts {
            Gathered::Records(items) => Event::Records {
                device: agg.device,
                sn: agg.sn,
                items,
                complete,
            },
            Gathered::Catalog(items) => Event::Catalog {
                device: agg.device,
                items: items.into_values().collect(),
                complete,
            },
        };
        self.emit(event);
    }

    /// The call a request from the device belongs to: our tag is in its To.
    fn call_of_request(&self, m: &Message) -> Option<CallId> {
        let call_id = m.header("Call-ID")?.to_owned();
        let ours = m.header("To").and_then(tag_of).unwrap_or("").to_owned();
        self.calls_by_id.get(&(call_id, ours)).copied()
    }

    fn handle_bye(&mut self, now: Instant, from: Peer, m: &Message) {
        match self.call_of_request(m) {
            Some(call) => {
                self.simple(now, from, m, 200, "OK");
                self.end_call(call, "the device hung up (BYE)");
            }
            None => self.simple(now, from, m, 481, "Call/Transaction Does Not Exist"),
        }
    }

    fn handle_in_dialog_notice(&mut self, now: Instant, m: &Message) {
        // gb28181-rs and some NVRs report the end of a file in an INFO instead of a MESSAGE:
        // a MANSCDP MediaStatus 121, or a MANSRTSP-style `MediaStatus: Play Finished`.
        let body = String::from_utf8_lossy(&m.body);
        if body.contains("MediaStatus") && (body.contains("121") || body.contains("Finished")) {
            self.media_status(now, m);
        }
    }

    fn media_status(&mut self, now: Instant, m: &Message) {
        if let Some(call) = self.call_of_request(m) {
            let _ = self.hangup(now, call);
        }
    }

    fn end_call(&mut self, call: CallId, reason: &str) {
        if let Some(c) = self.calls.remove(&call) {
            self.calls_by_id.remove(&(c.call_id, c.from_tag));
            self.emit(Event::CallEnded {
                call,
                reason: reason.to_owned(),
            });
        }
    }

    fn end_device_calls(&mut self, device: &str, reason: &str) {
        let calls: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.device == device)
            .map(|(id, _)| *id)
            .collect();
        for c in calls {
            self.end_call(c, reason);
        }
    }

    fn via(&mut self, transport: Transport) -> (String, String) {
        let branch = self.tokens.branch();
        (crate::sipcore::via(self.cfg.local, transport, &branch), branch)
    }

    /// Sends a request outside a dialog to `target` (a device or one of its channels) of a
    /// registered `device`; returns the Call-ID.
    fn request_to_device(
        &mut self,
        now: Instant,
        device: &str,
        method: &str,
        target: &str,
        body: Option<(&str, String)>,
        what: &str,
    ) -> Result<String, PlatformError> {
        self.request_with(now, device, method, target, body, what, Vec::new())
    }

    #[allow(clippy::too_many_arguments)]
    fn request_with(
        &mut self,
        now: Instant,
        device: &str,
        method: &str,
        target: &str,
        body: Option<(&str, String)>,
        what: &str,
        extra: Vec<(String, String)>,
    ) -> Result<String, PlatformError> {
        let dev = self
            .devices
            .get(device)
            .ok_or_else(|| PlatformError::NotRegistered(device.to_owned()))?;
        let peer = dev.peer;
        let charset = dev.settings.charset;
        let call_id = match dev.settings.call_id {
            CallIdPolicy::Registration => dev.call_id.clone(),
            CallIdPolicy::Fresh => format!("{}@{}", self.token(), self.cfg.local.ip()),
        };
        let cseq = self.bump_cseq(device);
        let (via, branch) = self.via(peer.transport);
        let from_tag = self.token()[..10].to_owned();
        let mut headers = vec![
            ("Via".to_owned(), via),
            (
                "From".to_owned(),
                format!("<sip:{}@{}>;tag={from_tag}", self.cfg.id, self.cfg.domain),
            ),
            ("To".to_owned(), format!("<sip:{target}@{}>", self.cfg.domain)),
            ("Call-ID".to_owned(), call_id.clone()),
            ("CSeq".to_owned(), format!("{cseq} {method}")),
            ("Max-Forwards".to_owned(), "70".to_owned()),
            ("User-Agent".to_owned(), "Sharpeye".to_owned()),
        ];
        headers.extend(extra);
        let body = match body {
            Some((ct, text)) => {
                headers.push(("Content-Type".into(), ct.to_owned()));
                Bytes::from(manscdp::encode_text(&text, charset))
            }
            None => Bytes::new(),
        };
        let m = Message {
            start: StartLine::Request {
                method: method.to_owned(),
                uri: format!("sip:{target}@{}", peer.addr),
            },
            headers,
            body,
        };
        self.start_tx(now, peer, device, what, &branch, m.to_bytes(), None);
        Ok(call_id)
    }

    fn bump_cseq(&mut self, device: &str) -> u32 {
        match self.devices.get_mut(device) {
            Some(d) => {
                d.cseq = d.cseq.wrapping_add(1).max(1);
                d.cseq
            }
            None => 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_tx(
        &mut self,
        now: Instant,
        to: Peer,
        device: &str,
        what: &str,
        branch: &str,
        data: Vec<u8>,
        call: Option<CallId>,
    ) {
        self.out.push_back(Output::Send { to, data: data.clone() });
        let udp = to.transport == Transport::Udp;
        self.txs.insert(
            branch.to_owned(),
            ClientTx {
                to,
                device: device.to_owned(),
                what: what.to_owned(),
                data,
                next_resend: udp.then_some(now + T1),
                interval: T1,
                deadline: now + self.cfg.request_timeout,
                call,
            },
        );
    }

    fn next_sn(&mut self) -> u64 {
        let sn = self.next_sn;
        self.next_sn += 1;
        sn
    }

    /// Sends a MANSCDP body to `target` (the device or one of its channels) of `device`.
    fn send_manscdp(
        &mut self,
        now: Instant,
        device: &str,
        target: &str,
        what: &str,
        body: String,
    ) -> Result<(), PlatformError> {
        self.request_to_device(
            now,
            device,
            "MESSAGE",
            target,
            Some(("Application/MANSCDP+xml", body)),
            what,
        )
        .map(|_| ())
    }

    /// Sends the `Query` `cmd` about the device itself; returns its SN.
    fn query(&mut self, now: Instant, device: &str, cmd: &str) -> Result<u64, PlatformError> {
        let sn = self.next_sn();
        self.send_manscdp(now, device, device, cmd, manscdp::query(cmd, sn, device))?;
        Ok(sn)
    }

    /// Asks a device for its catalog; the answer comes as [`Event::Catalog`].
    pub fn query_catalog(&mut self, now: Instant, device: &str) -> Result<u64, PlatformError> {
        self.query(now, device, "Catalog")
    }

    /// What a newly registered device is asked: its catalog, DeviceInfo and DeviceStatus.
    fn learn(&mut self, now: Instant, device: &str) {
        let _ = self.query(now, device, "Catalog");
        // A lower platform's catalog changes as its devices come and go: subscribe to them.
        if manscdp::type_code(device) == Some(200) {
            self.subscribe_catalog(now, device);
        }
        if self.devices.get(device).is_some_and(|d| d.settings.ask_info) {
            let _ = self.query(now, device, "DeviceInfo");
            let _ = self.query(now, device, "DeviceStatus");
        }
    }

    /// Opens (or renews) a catalog subscription to `device`: its changes come as
    /// [`Event::CatalogChange`]; renewed before it expires.
    fn subscribe_catalog(&mut self, now: Instant, device: &str) {
        let sn = self.next_sn();
        let contact = format!("<sip:{}@{}>", self.cfg.id, self.cfg.local);
        let extra = vec![
            ("Event".to_owned(), format!("Catalog;id={sn}")),
            ("Expires".to_owned(), CATALOG_SUBSCRIPTION.as_secs().to_string()),
            ("Contact".to_owned(), contact),
        ];
        let body = manscdp::query("Catalog", sn, device);
        let sent = self.request_with(
            now,
            device,
            "SUBSCRIBE",
            device,
            Some(("Application/MANSCDP+xml", body)),
            "Catalog subscription",
            extra,
        );
        if let (Ok(_), Some(d)) = (sent, self.devices.get_mut(device)) {
            d.subscribe_due = Some(now + CATALOG_SUBSCRIPTION.mul_f32(0.9));
        }
    }

    /// Asks a device for its DeviceInfo; the answer comes as [`Event::Document`].
    pub fn query_device_info(&mut self, now: Instant, device: &str) -> Result<u64, PlatformError> {
        self.query(now, device, "DeviceInfo")
    }

    /// Asks for a channel's recordings between two device-local times; the answer comes as
    /// [`Event::Records`] with the returned SN.
    pub fn query_records(
        &mut self,
        now: Instant,
        device: &str,
        channel: &str,
        start: &str,
        end: &str,
    ) -> Result<u64, PlatformError> {
        let sn = self.next_sn();
        self.send_manscdp(
            now,
            device,
            channel,
            "RecordInfo",
            manscdp::record_info_query(sn, channel, start, end),
        )?;
        Ok(sn)
    }

    /// Sends a PTZ command to a channel.
    pub fn ptz(&mut self, now: Instant, device: &str, channel: &str, cmd: &str) -> Result<(), PlatformError> {
        let sn = self.next_sn();
        self.send_manscdp(
            now,
            device,
            channel,
            "DeviceControl",
            manscdp::ptz_control(sn, channel, cmd),
        )
    }

    /// Invites a device's channel to send media as `offer` describes (its SSRC and media
    /// address). Progress comes as [`Event::CallAnswered`] / [`Event::CallFailed`].
    pub fn invite(&mut self, now: Instant, device: &str, offer: &Offer) -> Result<CallId, PlatformError> {
        let dev = self
            .devices
            .get(device)
            .ok_or_else(|| PlatformError::NotRegistered(device.to_owned()))?;
        let peer = dev.peer;
        let call_id = match dev.settings.call_id {
            CallIdPolicy::Registration => dev.call_id.clone(),
            CallIdPolicy::Fresh => format!("{}@{}", self.token(), self.cfg.local.ip()),
        };
        let cseq = self.bump_cseq(device);
        let (via, branch) = self.via(peer.transport);
        let from_tag = self.token()[..10].to_owned();
        let request_uri = format!("sip:{}@{}", offer.channel, peer.addr);
        let to_uri = format!("<sip:{}@{}>", offer.channel, self.cfg.domain);
        let m = Message {
            start: StartLine::Request {
                method: "INVITE".into(),
                uri: request_uri.clone(),
            },
            headers: vec![
                ("Via".into(), via),
                (
                    "From".into(),
                    format!("<sip:{}@{}>;tag={from_tag}", self.cfg.id, self.cfg.domain),
                ),
                ("To".into(), to_uri.clone()),
                ("Call-ID".into(), call_id.clone()),
                ("CSeq".into(), format!("{cseq} INVITE")),
                ("Contact".into(), format!("<sip:{}@{}>", self.cfg.id, self.cfg.local)),
                (
                    "Subject".into(),
                    format!("{}:{},{}:0", offer.channel, offer.ssrc, self.cfg.id),
                ),
                ("Max-Forwards".into(), "70".into()),
                ("User-Agent".into(), "Sharpeye".into()),
                ("Content-Type".into(), "APPLICATION/SDP".into()),
            ],
            body: Bytes::from(offer.to_sdp()),
        };
        let call = self.next_call;
        self.next_call += 1;
        let from_tag_key = from_tag.clone();
        self.calls.insert(
            call,
            Call {
                device: device.to_owned(),
                call_id: call_id.clone(),
                from_tag,
                to_tag: None,
                cseq,
                request_uri,
                to_uri,
                state: CallState::Inviting,
                invite_branch: branch.clone(),
                ack: None,
            },
        );
        self.calls_by_id.insert((call_id, from_tag_key), call);
        self.start_tx(now, peer, device, "INVITE", &branch, m.to_bytes(), Some(call));
        Ok(call)
    }

    /// A request inside `call`'s dialog (or, for CANCEL, its INVITE's transaction: `branch`).
    fn dialog_request(
        &mut self,
        call: CallId,
        method: &str,
        cseq: u32,
        branch: Option<&str>,
        body: Option<(&str, Bytes)>,
    ) -> Option<(Peer, String, String, Vec<u8>)> {
        let c = self.calls.get(&call)?;
        let peer = self.devices.get(&c.device)?.peer;
        let (device, request_uri, call_id, from_tag) = (
            c.device.clone(),
            c.request_uri.clone(),
            c.call_id.clone(),
            c.from_tag.clone(),
        );
        let mut to = c.to_uri.clone();
        if method != "CANCEL"
            && let Some(t) = &c.to_tag
        {
            to.push_str(&format!(";tag={t}"));
        }
        let (mut via, mut key) = self.via(peer.transport);
        if let Some(b) = branch {
            via = via.replace(&key, b);
            key = format!("{b}/cancel");
        }
        let mut headers = vec![
            ("Via".into(), via),
            (
                "From".into(),
                format!("<sip:{}@{}>;tag={from_tag}", self.cfg.id, self.cfg.domain),
            ),
            ("To".into(), to),
            ("Call-ID".into(), call_id),
            ("CSeq".into(), format!("{cseq} {method}")),
            ("Max-Forwards".into(), "70".into()),
            ("User-Agent".into(), "Sharpeye".into()),
        ];
        let body = match body {
            Some((ct, b)) => {
                headers.push(("Content-Type".into(), ct.to_owned()));
                b
            }
            None => Bytes::new(),
        };
        let m = Message {
            start: StartLine::Request {
                method: method.into(),
                uri: request_uri,
            },
            headers,
            body,
        };
        Some((peer, device, key, m.to_bytes()))
    }

    /// Sends MANSRTSP playback control (`PLAY` with `Scale`/`Range`, `PAUSE`; see
    /// [`crate::mansrtsp`]) in an established playback's dialog as an INFO.
    pub fn info(&mut self, now: Instant, call: CallId, body: &str) -> Result<(), PlatformError> {
        let c = self.calls.get_mut(&call).ok_or(PlatformError::NoCall(call))?;
        if !matches!(c.state, CallState::Established) {
            return Err(PlatformError::NoCall(call));
        }
        c.cseq = c.cseq.wrapping_add(1);
        let cseq = c.cseq;
        let body = Some(("Application/MANSRTSP", Bytes::copy_from_slice(body.as_bytes())));
        let (peer, device, branch, data) = self
            .dialog_request(call, "INFO", cseq, None, body)
            .ok_or(PlatformError::NoCall(call))?;
        self.start_tx(now, peer, &device, "INFO", &branch, data, None);
        Ok(())
    }

    /// Ends a media session: BYE when established, CANCEL while inviting.
    pub fn hangup(&mut self, now: Instant, call: CallId) -> Result<(), PlatformError> {
        let c = self.calls.get(&call).ok_or(PlatformError::NoCall(call))?;
        let (method, cseq, invite_branch) = match c.state {
            CallState::Inviting => ("CANCEL", c.cseq, Some(c.invite_branch.clone())),
            CallState::Established => ("BYE", c.cseq.wrapping_add(1), None),
            CallState::Ended => return Ok(()),
        };
        match self.dialog_request(call, method, cseq, invite_branch.as_deref(), None) {
            Some((peer, device, branch, data)) => self.start_tx(now, peer, &device, method, &branch, data, None),
            None => {
                self.end_call(call, "hung up (device gone)");
                return Ok(());
            }
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Ended;
        }
        self.end_call(call, "hung up by the platform");
        Ok(())
    }

    fn handle_response(&mut self, now: Instant, from: Peer, m: &Message, code: u16) {
        let Some(branch) = m.header("Via").and_then(branch_of).map(str::to_owned) else {
            return;
        };
        let Some((_, method)) = cseq_of(m) else { return };
        let key = if method == "CANCEL" {
            format!("{branch}/cancel")
        } else {
            branch.clone()
        };
        if method == "INVITE" {
            self.invite_response(now, from, m, code, &branch);
            return;
        }
        if code < 200 {
            if let Some(tx) = self.txs.get_mut(&key) {
                tx.next_resend = None;
            }
            return;
        }
        if let Some(tx) = self.txs.remove(&key)
            && code >= 300
        {
            self.emit(Event::RequestFailed {
                device: tx.device,
                what: tx.what,
                status: Some(code),
            });
        }
    }

    fn invite_response(&mut self, now: Instant, from: Peer, m: &Message, code: u16, branch: &str) {
        let call_id = m.header("Call-ID").unwrap_or("").to_owned();
        let ours = m.header("From").and_then(tag_of).unwrap_or("").to_owned();
        let Some(call) = self.calls_by_id.get(&(call_id.clone(), ours.clone())).copied() else {
            if (200..300).contains(&code) {
                self.answer_stray_ok(now, from, m);
            }
            return;
        };
        if code < 200 {
            if let Some(tx) = self.txs.get_mut(branch) {
                tx.next_resend = None;
            }
            return;
        }
        self.txs.remove(branch);
        let Some(c) = self.calls.get_mut(&call) else { return };
        if code >= 300 {
            // ACK for a non-2xx final answer is part of the INVITE transaction: same branch.
            let to = m.header("To").unwrap_or("").to_owned();
            let ack = Message {
                start: StartLine::Request {
                    method: "ACK".into(),
                    uri: c.request_uri.clone(),
                },
                headers: vec![
                    ("Via".into(), m.header("Via").unwrap_or("").to_owned()),
                    ("From".into(), m.header("From").unwrap_or("").to_owned()),
                    ("To".into(), to),
                    ("Call-ID".into(), call_id.clone()),
                    ("CSeq".into(), format!("{} ACK", c.cseq)),
                    ("Max-Forwards".into(), "70".into()),
                ],
                body: Bytes::new(),
            };
            self.send(from, &ack);
            let reason = match &m.start {
                StartLine::Response { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            self.calls.remove(&call);
            self.calls_by_id.remove(&(call_id.clone(), ours));
            self.emit(Event::CallFailed {
                call,
                status: Some(code),
                reason: format!("the device answered {code} {reason}"),
            });
            return;
        }
        // 2xx: retransmissions of it get the same ACK again.
        if let Some(ack) = &c.ack {
            let ack = ack.clone();
            self.out.push_back(Output::Send { to: from, data: ack });
            return;
        }
        c.to_tag = m.header("To").and_then(tag_of).map(str::to_owned);
        let answer = Answer::parse(&m.body);
        let to = m.header("To").unwrap_or("").to_owned();
        let (via, _) = {
            let t = from.transport;
            let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
            let tname = if t == Transport::Udp { "UDP" } else { "TCP" };
            (
                format!("SIP/2.0/{tname} {};rport;branch={branch}", self.cfg.local),
                branch,
            )
        };
        let c = self.calls.get_mut(&call).expect("call looked up above");
        let ack = Message {
            start: StartLine::Request {
                method: "ACK".into(),
                uri: c.request_uri.clone(),
            },
            headers: vec![
                ("Via".into(), via),
                ("From".into(), m.header("From").unwrap_or("").to_owned()),
                ("To".into(), to),
                ("Call-ID".into(), call_id.clone()),
                ("CSeq".into(), format!("{} ACK", c.cseq)),
                ("Max-Forwards".into(), "70".into()),
                ("User-Agent".into(), "Sharpeye".into()),
            ],
            body: Bytes::new(),
        };
        let data = ack.to_bytes();
        c.ack = Some(data.clone());
        self.out.push_back(Output::Send { to: from, data });
        match answer {
            Ok(answer) => {
                c.state = CallState::Established;
                self.emit(Event::CallAnswered { call, answer });
            }
            Err(e) => {
                c.state = CallState::Established;
                let _ = self.hangup(now, call);
                self.emit(Event::CallFailed {
                    call,
                    status: Some(code),
                    reason: format!("the device's SDP answer is unusable: {e}"),
                });
            }
        }
    }

    /// A 200 to an INVITE we already gave up (our CANCEL crossed it): ACK it, then BYE, so the
    /// device does not stream to nobody.
    fn answer_stray_ok(&mut self, now: Instant, from: Peer, m: &Message) {
        let Some((cseq, _)) = cseq_of(m) else { return };
        let target = m
            .header("Contact")
            .and_then(|c| {
                let start = c.find("sip:")?;
                let rest = &c[start..];
                let uri = &rest[..rest.find(['>', ';']).unwrap_or(rest.len())];
                // A Contact with spaces or control characters would make our request line
                // unparseable (found by fuzzing): use the source address instead.
                (!uri.chars().any(|c| c.is_whitespace() || c.is_control())).then(|| uri.to_owned())
            })
            .unwrap_or_else(|| format!("sip:{}", from.addr));
        for (method, n) in [("ACK", cseq), ("BYE", cseq.wrapping_add(1))] {
            let (via, branch) = self.via(from.transport);
            let req = Message {
                start: StartLine::Request {
                    method: method.into(),
                    uri: target.clone(),
                },
                headers: vec![
                    ("Via".into(), via),
                    ("From".into(), m.header("From").unwrap_or("").to_owned()),
                    ("To".into(), m.header("To").unwrap_or("").to_owned()),
                    ("Call-ID".into(), m.header("Call-ID").unwrap_or("").to_owned()),
                    ("CSeq".into(), format!("{n} {method}")),
                    ("Max-Forwards".into(), "70".into()),
                ],
                body: Bytes::new(),
            };
            if method == "BYE" {
                let device = m.header("To").and_then(uri_user).unwrap_or("").to_owned();
                self.start_tx(now, from, &device, "BYE", &branch, req.to_bytes(), None);
            } else {
                self.send(from, &req);
            }
        }
    }

    /// Runs timers: retransmissions, request and answer timeouts, keepalive loss, expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut expired = Vec::new();
        for (branch, tx) in &mut self.txs {
            if now >= tx.deadline {
                expired.push(branch.clone());
            } else if tx.next_resend.is_some_and(|t| now >= t) {
                tx.interval = (tx.interval * 2).min(T2);
                tx.next_resend = Some(now + tx.interval);
                resend.push((tx.to, tx.data.clone()));
            }
        }
        for (to, data) in resend {
            self.out.push_back(Output::Send { to, data });
        }
        for branch in expired {
            if let Some(tx) = self.txs.remove(&branch) {
                match tx.call {
                    Some(call) => {
                        let _ = self.hangup(now, call);
                        self.emit(Event::CallFailed {
                            call,
                            status: None,
                            reason: format!(
                                "the device did not answer the INVITE within {:?}",
                                self.cfg.request_timeout
                            ),
                        });
                    }
                    None => self.emit(Event::RequestFailed {
                        device: tx.device,
                        what: tx.what,
                        status: None,
                    }),
                }
            }
        }
        let done: Vec<(String, u64)> = self
            .aggregates
            .iter()
            .filter(|(_, a)| now >= a.deadline)
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            self.finish_aggregate(&k, false);
        }
        let due: Vec<String> = self
            .devices
            .iter_mut()
            .filter(|(_, d)| d.catalog_due.is_some_and(|t| now >= t))
            .map(|(id, d)| {
                d.catalog_due = None;
                id.clone()
            })
            .collect();
        for id in due {
            self.learn(now, &id);
        }
        let renew: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.online && d.subscribe_due.is_some_and(|t| now >= t))
            .map(|(id, _)| id.clone())
            .collect();
        for id in renew {
            self.subscribe_catalog(now, &id);
        }
        let offline_after = self.offline_after();
        let mut lost = Vec::new();
        let mut gone = Vec::new();
        for (id, d) in &mut self.devices {
            if now >= d.expires_at {
                gone.push(id.clone());
            } else if d.online && now.duration_since(d.last_seen) >= offline_after {
                d.online = false;
                lost.push(id.clone());
            }
        }
        for id in lost {
            self.end_device_calls(&id, "the device stopped keeping alive");
            self.emit(Event::Offline {
                device: id,
                reason: OfflineReason::KeepaliveLost,
            });
        }
        for id in gone {
            self.devices.remove(&id);
            self.end_device_calls(&id, "the device's registration expired");
            self.emit(Event::Offline {
                device: id,
                reason: OfflineReason::Expired,
            });
        }
        self.responses.expire(now);
        if self.nonces.len() > 1024 {
            self.nonces.retain(|_, t| now.duration_since(*t) < NONCE_LIFE);
        }
    }
}
