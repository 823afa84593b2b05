//! The link toward one upper platform (级联, gb28181-notes.md §6) as a sans-IO state machine:
//! we register to it like a device whose children are the channels we share, keep alive,
//! answer its queries (the node supplies what to say), take its INVITEs for live video,
//! playback and download (the node supplies the media and the answer), and end media sessions
//! either way.
//!
//! Fed with [`UpperLink::handle_message`] for what [`UpperLink::accepts`] (the upper's requests
//! and the responses to ours) and [`UpperLink::handle_timeout`]; what it wants done comes out of
//! [`UpperLink::poll_output`], as for [`crate::platform::Platform`] whose [`Output`] it shares.
//!
//! Split in three: this module (configuration, state, the API the node calls), `requests` (what
//! the upper sends us) and `outgoing` (our requests: registration, keepalive, the paced answers,
//! NOTIFYs and in-dialog requests, with their retransmissions).

mod outgoing;
mod requests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::invitation::Invitation;
use crate::manscdp::Charset;
use crate::manscdp_out::{CatalogEntry, ListAnswer, RecordEntry};
use crate::platform::{Event, Output, Peer, Transport};
use crate::sip::Message;
use crate::sipcore::{Answered, Tokens, branch_of, uri_user};

/// How to reach and present ourselves to one upper platform.
#[derive(Clone, Debug)]
pub struct UpperConfig {
    /// The upper's platform id.
    pub id: String,
    /// The upper's SIP domain (also the digest realm it usually uses).
    pub domain: String,
    /// Its SIP address.
    pub addr: SocketAddr,
    /// Signalling transport toward it.
    pub transport: Transport,
    /// Our id toward it.
    pub own_id: String,
    /// Our SIP address as it reaches us (Via, Contact).
    pub local: SocketAddr,
    /// Digest username (our id unless set).
    pub username: Option<String>,
    /// Digest password.
    pub password: String,
    /// Registration lifetime asked for.
    pub expires: Duration,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Unanswered keepalives before the upper is taken as lost and we register again.
    pub keepalive_misses: u32,
    /// Charset of our bodies.
    pub charset: Charset,
    /// How long a request of ours waits for its final response.
    pub request_timeout: Duration,
    /// How long after our 200 to an INVITE the ACK may take before the session is dropped.
    pub ack_timeout: Duration,
    /// Wait before registering again after a failure (the standard asks for at least 60 s).
    pub retry: Duration,
    /// Largest SIP message we send (a UDP datagram must stay under the MTU).
    pub max_message: usize,
    /// Offset of device-local time from UTC, seconds (China: 8 h).
    pub utc_offset_secs: i64,
    /// Our MESSAGEs (keepalives, answers) reuse the registration's Call-ID, for uppers and
    /// tools that route every request by it (sipp); else each has its own.
    pub reuse_call_id: bool,
}

impl UpperConfig {
    /// Defaults for an upper `id` in `domain` at `addr`, to which we are `own_id` at `local`.
    pub fn new(
        id: &str,
        domain: &str,
        addr: SocketAddr,
        own_id: &str,
        local: SocketAddr,
        password: &str,
    ) -> UpperConfig {
        UpperConfig {
            id: id.to_owned(),
            domain: domain.to_owned(),
            addr,
            transport: Transport::Udp,
            own_id: own_id.to_owned(),
            local,
            username: None,
            password: password.to_owned(),
            expires: Duration::from_secs(3600),
            keepalive: Duration::from_secs(60),
            keepalive_misses: 3,
            charset: Charset::Gb18030,
            request_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(60),
            retry: Duration::from_secs(60),
            max_message: 1300,
            utc_offset_secs: 8 * 3600,
            reuse_call_id: false,
        }
    }

    fn peer(&self) -> Peer {
        Peer {
            transport: self.transport,
            addr: self.addr,
        }
    }
}

/// Where the registration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpperState {
    /// Not started.
    Idle,
    /// A REGISTER is out.
    Registering,
    /// Registered and keeping alive.
    Registered {
        /// Since when.
        since: Instant,
    },
    /// The last attempt failed; the next is at `retry_at`.
    Failed {
        /// The upper's status, `None` when it did not answer.
        status: Option<u16>,
        /// What that most likely means, for the operator.
        reason: String,
        /// When we try again.
        retry_at: Instant,
    },
}

/// Identifies a media session the upper invited.
pub type DialogId = u64;

/// A query the upper made about us or one of our channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Our catalog.
    Catalog,
    /// DeviceInfo of `target` (our id or a channel).
    DeviceInfo {
        /// Who it is about.
        target: String,
    },
    /// DeviceStatus of `target`.
    DeviceStatus {
        /// Who it is about.
        target: String,
    },
    /// Recordings of `channel` between two device-local times.
    RecordInfo {
        /// The channel.
        channel: String,
        /// `StartTime`.
        start: String,
        /// `EndTime`.
        end: String,
    },
}

/// What happened on the link, for the node.
#[derive(Clone, Debug, PartialEq)]
pub enum UpperEvent {
    /// Registered (again).
    Registered,
    /// A registration failed; it is tried again after `[retry]`.
    Failed {
        /// The upper's status, `None` when it did not answer.
        status: Option<u16>,
        /// What it most likely means.
        reason: String,
    },
    /// We were registered and lost it (keepalives unanswered or refused); registering again.
    Lost {
        /// Why.
        reason: String,
    },
    /// A query to answer with the SN (see [`UpperLink::answer_catalog`] and the others).
    Query {
        /// The upper's SN.
        sn: u64,
        /// What it asks.
        query: Query,
        /// The end user it asks for (`Monitor-User-Identity`), when it says.
        user: Option<String>,
    },
    /// A DeviceControl for `channel` (PTZ when `ptz` is set).
    Control {
        /// The upper's SN.
        sn: u64,
        /// The channel.
        channel: String,
        /// `PTZCmd`, 16 hex digits.
        ptz: Option<String>,
        /// The end user it acts for (`Monitor-User-Identity`), when it says.
        user: Option<String>,
    },
    /// The upper subscribed to catalog changes (`expires` zero: it unsubscribed).
    CatalogSubscribed {
        /// For how long.
        expires: Duration,
    },
    /// An INVITE to answer ([`UpperLink::accept`] or [`UpperLink::reject`]); 100 Trying is sent.
    Invite {
        /// The session.
        dialog: DialogId,
        /// The channel (Request-URI, else `u=`).
        channel: String,
        /// The offer.
        invitation: Box<Invitation>,
        /// `Monitor-User-Identity`, when the upper says who is watching.
        user: Option<String>,
    },
    /// The upper ACKed our answer: media may flow (UDP and TCP where we connect).
    Acked {
        /// The session.
        dialog: DialogId,
    },
    /// Playback control (MANSRTSP) in a session.
    Info {
        /// The session.
        dialog: DialogId,
        /// The body.
        body: String,
    },
    /// A session ended (the upper's BYE or CANCEL, no ACK in time, or registration lost).
    Ended {
        /// The session.
        dialog: DialogId,
        /// Why.
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DialogPhase {
    /// INVITE in, no final answer yet.
    Offered,
    /// 200 sent, waiting for the ACK (resent over UDP until then).
    Answered {
        response: Vec<u8>,
        next_resend: Option<Instant>,
        interval: Duration,
        give_up: Instant,
    },
    /// ACKed.
    Confirmed,
}

#[derive(Debug)]
struct Dialog {
    call_id: String,
    their_tag: String,
    our_tag: String,
    /// The INVITE, for the final response.
    invite: Message,
    invite_branch: String,
    from: Peer,
    /// Where in-dialog requests of ours go (the upper's Contact).
    target: String,
    channel: String,
    phase: DialogPhase,
    cseq: u32,
}

/// The catalog subscription the upper holds.
#[derive(Debug)]
struct Subscription {
    call_id: String,
    their_from: String,
    our_to: String,
    target: String,
    until: Instant,
    cseq: u32,
}

/// The link toward one upper platform.
pub struct UpperLink {
    cfg: UpperConfig,
    state: UpperState,
    reg: outgoing::Registration,
    keepalive: outgoing::Keepalive,
    txs: HashMap<String, outgoing::Tx>,
    paced: outgoing::Paced,
    dialogs: HashMap<DialogId, Dialog>,
    subscription: Option<Subscription>,
    responses: Answered,
    out: VecDeque<Output>,
    tokens: Tokens,
    next_dialog: DialogId,
    next_sn: u64,
    last_keepalive_ok: Option<Instant>,
}

/// Most answer messages queued toward one upper; past it an answer is dropped (an upper
/// flooding us with queries must not make us hold its answers without end).
pub const MAX_QUEUED: usize = 4096;

impl UpperLink {
    /// A link with `cfg`, not started.
    pub fn new(cfg: UpperConfig) -> UpperLink {
        let mut tokens = Tokens::default();
        let reg = outgoing::Registration::new(&cfg, &mut tokens);
        UpperLink {
            cfg,
            state: UpperState::Idle,
            reg,
            keepalive: outgoing::Keepalive::default(),
            txs: HashMap::new(),
            paced: outgoing::Paced::default(),
            dialogs: HashMap::new(),
            subscription: None,
            responses: Answered::default(),
            out: VecDeque::new(),
            tokens,
            next_dialog: 1,
            next_sn: 1,
            last_keepalive_ok: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &UpperConfig {
        &self.cfg
    }

    /// The upper's id.
    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// Where the registration stands.
    pub fn state(&self) -> &UpperState {
        &self.state
    }

    /// When the upper last answered a keepalive.
    pub fn last_keepalive(&self) -> Option<Instant> {
        self.last_keepalive_ok
    }

    /// Media sessions open with it.
    pub fn sessions(&self) -> usize {
        self.dialogs.len()
    }

    /// Starts registering.
    pub fn start(&mut self, now: Instant) {
        self.register(now);
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn emit(&mut self, event: UpperEvent) {
        self.out.push_back(Output::Event(Event::Upper {
            upper: self.cfg.id.clone(),
            event,
        }));
    }

    /// True if `m` is for this link: a response to one of our requests, or a request from the
    /// upper (its id in From, or in one of our dialogs).
    pub fn accepts(&self, m: &Message) -> bool {
        if m.method().is_none() {
            return m
                .header("Via")
                .and_then(branch_of)
                .is_some_and(|b| self.txs.contains_key(b));
        }
        if m.header("From").and_then(uri_user) == Some(self.cfg.id.as_str()) {
            return true;
        }
        let Some(call_id) = m.header("Call-ID") else {
            return false;
        };
        self.dialogs.values().any(|d| d.call_id == call_id)
            || self.subscription.as_ref().is_some_and(|s| s.call_id == call_id)
    }

    /// Feeds a message [`UpperLink::accepts`]. `unix_ms` is the wall clock.
    pub fn handle_message(&mut self, now: Instant, unix_ms: i64, from: Peer, m: Message) {
        if m.method().is_some() {
            self.handle_request(now, unix_ms, from, m);
        } else {
            self.handle_response(now, &m);
        }
    }

    /// When [`UpperLink::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let txs = self
            .txs
            .values()
            .flat_map(|t| [t.next_resend, Some(t.deadline)])
            .flatten();
        let dialogs = self.dialogs.values().flat_map(|d| match &d.phase {
            DialogPhase::Answered {
                next_resend, give_up, ..
            } => [*next_resend, Some(*give_up)],
            _ => [None, None],
        });
        let own = [
            self.reg.refresh_at,
            self.keepalive.next,
            match &self.state {
                UpperState::Failed { retry_at, .. } => Some(*retry_at),
                _ => None,
            },
            self.subscription.as_ref().map(|s| s.until),
            self.paced.wake,
        ];
        txs.chain(dialogs.flatten()).chain(own.into_iter().flatten()).min()
    }

    /// Runs timers: retransmissions, timeouts, refresh, keepalive, retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run_transactions(now);
        self.run_dialog_timers(now);
        if let UpperState::Failed { retry_at, .. } = &self.state
            && now >= *retry_at
        {
            self.register(now);
        }
        if self.reg.refresh_at.is_some_and(|t| now >= t) {
            self.reg.refresh_at = None;
            self.register(now);
        }
        if self.keepalive.next.is_some_and(|t| now >= t) {
            self.send_keepalive(now);
        }
        if self.subscription.as_ref().is_some_and(|s| now >= s.until) {
            self.subscription = None;
            self.emit(UpperEvent::CatalogSubscribed {
                expires: Duration::ZERO,
            });
        }
        if self.paced.wake.is_some_and(|t| now >= t) {
            self.paced.wake = None;
            self.send_next_paced(now);
        }
        self.responses.expire(now);
    }

    fn next_sn(&mut self) -> u64 {
        let sn = self.next_sn;
        self.next_sn += 1;
        sn
    }

    /// Most bytes of a body that keep a MESSAGE toward the upper within `max_message`.
    fn max_body(&self) -> usize {
        // Our MESSAGE headers take about 420 bytes (ids, Via, tags, Call-ID).
        self.cfg.max_message.saturating_sub(450).max(200)
    }

    /// Answers a Catalog query with `entries` (channels and the org nodes that place them),
    /// cut by size and sent one message after the other.
    pub fn answer_catalog(&mut self, now: Instant, sn: u64, entries: &[CatalogEntry]) {
        let items: Vec<String> = entries.iter().map(|e| e.item_xml(None)).collect();
        let own = self.cfg.own_id.clone();
        let bodies = ListAnswer {
            cmd: "Catalog",
            sn,
            device_id: &own,
            name: None,
            list: "DeviceList",
            items: &items,
            root: "Response",
        }
        .bodies(self.cfg.charset, self.max_body());
        self.queue_messages(now, bodies);
    }

    /// Answers a RecordInfo query about `channel` (named `name`) with `records`.
    pub fn answer_records(&mut self, now: Instant, sn: u64, channel: &str, name: &str, records: &[RecordEntry]) {
        let own = self.cfg.own_id.clone();
        let items: Vec<String> = records.iter().map(|r| r.item_xml(&own)).collect();
        let bodies = ListAnswer {
            cmd: "RecordInfo",
            sn,
            device_id: channel,
            name: Some(name),
            list: "RecordList",
            items: &items,
            root: "Response",
        }
        .bodies(self.cfg.charset, self.max_body());
        self.queue_messages(now, bodies);
    }

    /// Sends a single MANSCDP body (a DeviceInfo, DeviceStatus or DeviceControl answer).
    pub fn answer(&mut self, now: Instant, body: &str) {
        let bytes = crate::manscdp::encode_text(body, self.cfg.charset);
        self.queue_messages(now, vec![bytes]);
    }

    /// Tells a subscribed upper of catalog changes (`ADD`, `DEL`, `ON`, `OFF`, `UPDATE` per
    /// entry); nothing when it holds no subscription.
    pub fn notify_catalog(&mut self, now: Instant, changes: &[(CatalogEntry, &str)]) {
        if self.subscription.is_none() || changes.is_empty() {
            return;
        }
        let items: Vec<String> = changes.iter().map(|(e, ev)| e.item_xml(Some(ev))).collect();
        let sn = self.next_sn();
        let own = self.cfg.own_id.clone();
        let bodies = ListAnswer {
            cmd: "Catalog",
            sn,
            device_id: &own,
            name: None,
            list: "DeviceList",
            items: &items,
            root: "Notify",
        }
        .bodies(self.cfg.charset, self.max_body());
        for b in bodies {
            self.paced_push(now, outgoing::PacedKind::Notify, b);
        }
    }

    /// Answers the INVITE of `dialog` with 200 and `sdp`; the answer is resent until the ACK.
    pub fn accept(&mut self, now: Instant, dialog: DialogId, sdp: String) {
        self.answer_invite(now, dialog, 200, "OK", Some(sdp));
    }

    /// Refuses the INVITE of `dialog` with `code` (404 not shared, 486 busy, 488 bad offer,
    /// 503 no room on the link).
    pub fn reject(&mut self, now: Instant, dialog: DialogId, code: u16, reason: &str) {
        self.answer_invite(now, dialog, code, reason, None);
    }

    /// Ends a session from our side (the camera went away, the recording ended): BYE.
    pub fn hangup(&mut self, now: Instant, dialog: DialogId) {
        self.bye(now, dialog);
    }

    /// Tells the upper a playback or download reached its end (MediaStatus 121 in the dialog).
    pub fn media_status(&mut self, now: Instant, dialog: DialogId) {
        let Some(d) = self.dialogs.get(&dialog) else { return };
        let channel = d.channel.clone();
        let sn = self.next_sn();
        let body = crate::manscdp_out::media_status(sn, &channel, self.cfg.charset);
        let bytes = crate::manscdp::encode_text(&body, self.cfg.charset);
        self.in_dialog_request(now, dialog, "MESSAGE", Some(("Application/MANSCDP+xml", bytes)));
    }

    /// Unregisters (Expires 0) and ends every session: the node is stopping.
    pub fn stop(&mut self, now: Instant) {
        let dialogs: Vec<DialogId> = self.dialogs.keys().copied().collect();
        for d in dialogs {
            self.bye(now, d);
        }
        if matches!(self.state, UpperState::Registered { .. }) {
            self.send_register(now, true);
        }
        self.keepalive.next = None;
        self.reg.refresh_at = None;
        self.state = UpperState::Idle;
    }
}

#[cfg(test)]
mod tests;
