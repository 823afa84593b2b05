//! Our requests toward the upper: REGISTER (digest, refresh, re-register after loss),
//! Keepalive, the paced answer and NOTIFY messages (one in flight at a time, the next after
//! the previous one's final response), and requests inside its dialogs (BYE, MediaStatus),
//! with retransmission over UDP and timeouts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{DialogId, UpperConfig, UpperEvent, UpperLink, UpperState};
use crate::digest::Challenge;
use crate::platform::{Output, Transport};
use crate::sip::{Message, StartLine};
use crate::sipcore::{T1, T2, Tokens, branch_of, cseq_of, expires_of, via};

/// What a request of ours was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TxKind {
    Register {
        unregister: bool,
    },
    Keepalive,
    /// A paced MESSAGE or NOTIFY: the next one goes when this one is done.
    Paced,
    /// A request inside a session (BYE, MediaStatus).
    InDialog {
        dialog: DialogId,
        method: String,
    },
}

/// A request of ours awaiting its final response.
#[derive(Debug)]
pub(super) struct Tx {
    pub(super) kind: TxKind,
    data: Vec<u8>,
    pub(super) next_resend: Option<Instant>,
    interval: Duration,
    pub(super) deadline: Instant,
}

/// The registration's dialog state: its Call-ID, CSeq and the last challenge.
#[derive(Debug)]
pub(super) struct Registration {
    call_id: String,
    from_tag: String,
    cseq: u32,
    challenge: Option<Challenge>,
    nc: u32,
    /// A 401 answered with credentials already: another means the password is wrong.
    answered: bool,
    pub(super) refresh_at: Option<Instant>,
}

impl Registration {
    pub(super) fn new(cfg: &UpperConfig, tokens: &mut Tokens) -> Registration {
        Registration {
            call_id: format!("{}@{}", tokens.fresh(), cfg.local.ip()),
            from_tag: tokens.tag(),
            cseq: 0,
            challenge: None,
            nc: 0,
            answered: false,
            refresh_at: None,
        }
    }
}

/// Keepalive timing and the count of unanswered ones.
#[derive(Debug, Default)]
pub(super) struct Keepalive {
    pub(super) next: Option<Instant>,
    pub(super) missed: u32,
}

/// What a paced message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PacedKind {
    /// A MESSAGE outside any dialog (answers).
    Message,
    /// A NOTIFY in the catalog subscription.
    Notify,
}

/// Answers and NOTIFYs waiting to go, one at a time.
#[derive(Debug, Default)]
pub(super) struct Paced {
    queue: VecDeque<(PacedKind, Vec<u8>)>,
    in_flight: bool,
    /// When the next may go although the last has no final response (its transaction timed
    /// out or is being retransmitted): an upper that never answers must not stall the rest.
    pub(super) wake: Option<Instant>,
    pub(super) dropped: u64,
}

/// Longest wait for a paced message's final response before the next goes anyway.
const PACE_LIMIT: Duration = Duration::from_secs(2);

fn reason_for(status: Option<u16>, cfg: &UpperConfig) -> String {
    match status {
        Some(401) | Some(403) => format!(
            "upper {} refused our registration ({}): check the password, and that it knows us as {}",
            cfg.id,
            status.unwrap_or(0),
            cfg.own_id
        ),
        Some(404) => format!(
            "upper {} answered 404: the id we register to is most likely not its real id (operators often give another one), or it does not know our id {}",
            cfg.id, cfg.own_id
        ),
        Some(code) => format!("upper {} answered {code} to our REGISTER", cfg.id),
        None => format!(
            "upper {} at {} does not answer ({}): check its address, the transport and any firewall",
            cfg.id,
            cfg.addr,
            match cfg.transport {
                Transport::Udp => "UDP",
                Transport::Tcp => "TCP",
            }
        ),
    }
}

impl UpperLink {
    fn request(
        &mut self,
        method: &str,
        uri: &str,
        headers: Vec<(String, String)>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (String, Vec<u8>) {
        let branch = self.tokens.branch();
        let mut all = vec![("Via".to_owned(), via(self.cfg.local, self.cfg.transport, &branch))];
        all.extend(headers);
        all.push(("Max-Forwards".into(), "70".into()));
        all.push(("User-Agent".into(), "Sharpeye".into()));
        let body = match body {
            Some((ct, b)) => {
                all.push(("Content-Type".into(), ct.to_owned()));
                Bytes::from(b)
            }
            None => Bytes::new(),
        };
        let m = Message {
            start: StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            },
            headers: all,
            body,
        };
        (branch, m.to_bytes())
    }

    fn start_tx(&mut self, now: Instant, branch: String, data: Vec<u8>, kind: TxKind) {
        let to = self.cfg.peer();
        self.out.push_back(Output::Send { to, data: data.clone() });
        let udp = self.cfg.transport == Transport::Udp;
        self.txs.insert(
            branch,
            Tx {
                kind,
                data,
                next_resend: udp.then_some(now + T1),
                interval: T1,
                deadline: now + self.cfg.request_timeout,
            },
        );
    }

    fn uri(&self) -> String {
        format!("sip:{}@{}", self.cfg.id, self.cfg.addr)
    }

    fn own_uri(&self) -> String {
        format!("<sip:{}@{}>", self.cfg.own_id, self.cfg.domain)
    }

    /// Sends a REGISTER now (a refresh keeps the Call-ID; after a loss there is a new one).
    pub(super) fn register(&mut self, now: Instant) {
        if !matches!(self.state, UpperState::Registered { .. }) {
            self.state = UpperState::Registering;
        }
        self.send_register(now, false);
    }

    pub(super) fn send_register(&mut self, now: Instant, unregister: bool) {
        self.reg.cseq = self.reg.cseq.wrapping_add(1).max(1);
        let uri = self.uri();
        let mut headers = vec![
            (
                "From".to_owned(),
                format!("{};tag={}", self.own_uri(), self.reg.from_tag),
            ),
            ("To".to_owned(), self.own_uri()),
            ("Call-ID".to_owned(), self.reg.call_id.clone()),
            ("CSeq".to_owned(), format!("{} REGISTER", self.reg.cseq)),
            (
                "Contact".to_owned(),
                format!("<sip:{}@{}>", self.cfg.own_id, self.cfg.local),
            ),
            (
                "Expires".to_owned(),
                if unregister { 0 } else { self.cfg.expires.as_secs() }.to_string(),
            ),
        ];
        if let Some(ch) = &self.reg.challenge {
            self.reg.nc += 1;
            let user = self.cfg.username.clone().unwrap_or_else(|| self.cfg.own_id.clone());
            let cnonce = self.tokens.tag();
            headers.push((
                "Authorization".to_owned(),
                ch.authorize(&user, &self.cfg.password, "REGISTER", &uri, self.reg.nc, &cnonce),
            ));
        }
        let (branch, data) = self.request("REGISTER", &uri, headers, None);
        self.start_tx(now, branch, data, TxKind::Register { unregister });
    }

    fn registered(&mut self, now: Instant, m: &Message) {
        let granted = expires_of(m).map(Duration::from_secs).unwrap_or(self.cfg.expires);
        let granted = if granted.is_zero() { self.cfg.expires } else { granted };
        // Refresh well before expiry: at three quarters, at least a minute ahead when it can.
        let ahead = (granted / 4).max(Duration::from_secs(60).min(granted / 2));
        self.reg.refresh_at = Some(now + granted.saturating_sub(ahead).max(Duration::from_secs(5)));
        self.reg.answered = false;
        let fresh = !matches!(self.state, UpperState::Registered { .. });
        if fresh {
            self.state = UpperState::Registered { since: now };
            self.keepalive = Keepalive {
                next: Some(now + Duration::from_millis(200)),
                missed: 0,
            };
            self.emit(UpperEvent::Registered);
        }
    }

    fn failed(&mut self, now: Instant, status: Option<u16>) {
        let reason = reason_for(status, &self.cfg);
        let was_registered = matches!(self.state, UpperState::Registered { .. });
        self.state = UpperState::Failed {
            status,
            reason: reason.clone(),
            retry_at: now + self.cfg.retry,
        };
        self.keepalive.next = None;
        self.reg.refresh_at = None;
        self.reg.challenge = None;
        self.reg.answered = false;
        if was_registered {
            self.end_all(now, "the registration with the upper was lost");
            self.emit(UpperEvent::Lost { reason: reason.clone() });
        }
        self.emit(UpperEvent::Failed { status, reason });
    }

    /// The upper is gone or forgot us: sessions end, and we register afresh (a new Call-ID,
    /// so that it asks for our catalog again).
    pub(super) fn lost(&mut self, now: Instant, reason: String) {
        self.end_all(now, "the upper stopped answering");
        self.state = UpperState::Registering;
        self.keepalive = Keepalive::default();
        self.reg = Registration::new(&self.cfg, &mut self.tokens);
        self.emit(UpperEvent::Lost { reason });
        self.send_register(now, false);
    }

    pub(super) fn send_keepalive(&mut self, now: Instant) {
        self.keepalive.next = Some(now + self.cfg.keepalive);
        if !matches!(self.state, UpperState::Registered { .. }) {
            return;
        }
        let sn = self.next_sn();
        let body = crate::manscdp_out::keepalive(sn, &self.cfg.own_id, self.cfg.charset);
        let bytes = crate::manscdp::encode_text(&body, self.cfg.charset);
        let headers = self.message_headers();
        let (branch, data) = self.request(
            "MESSAGE",
            &format!("sip:{}@{}", self.cfg.id, self.cfg.domain),
            headers,
            Some(("Application/MANSCDP+xml", bytes)),
        );
        self.start_tx(now, branch, data, TxKind::Keepalive);
    }

    fn message_headers(&mut self) -> Vec<(String, String)> {
        let tag = self.tokens.tag();
        let (call_id, cseq) = if self.cfg.reuse_call_id {
            // In the registration's Call-ID the CSeq goes on rising with the REGISTERs'.
            self.reg.cseq = self.reg.cseq.wrapping_add(1).max(1);
            (self.reg.call_id.clone(), self.reg.cseq)
        } else {
            (format!("{}@{}", self.tokens.fresh(), self.cfg.local.ip()), 1)
        };
        vec![
            ("From".to_owned(), format!("{};tag={tag}", self.own_uri())),
            ("To".to_owned(), format!("<sip:{}@{}>", self.cfg.id, self.cfg.domain)),
            ("Call-ID".to_owned(), call_id),
            ("CSeq".to_owned(), format!("{cseq} MESSAGE")),
        ]
    }

    /// Queues MESSAGE bodies to go one after the other.
    pub(super) fn queue_messages(&mut self, now: Instant, bodies: Vec<Vec<u8>>) {
        for b in bodies {
            self.paced_push(now, PacedKind::Message, b);
        }
    }

    pub(super) fn paced_push(&mut self, now: Instant, kind: PacedKind, body: Vec<u8>) {
        if self.paced.queue.len() >= super::MAX_QUEUED {
            self.paced.dropped += 1;
            return;
        }
        self.paced.queue.push_back((kind, body));
        if !self.paced.in_flight {
            self.send_next_paced(now);
        }
    }

    pub(super) fn send_next_paced(&mut self, now: Instant) {
        self.paced.in_flight = false;
        self.paced.wake = None;
        let Some((kind, body)) = self.paced.queue.pop_front() else {
            return;
        };
        let (branch, data) = match kind {
            PacedKind::Message => {
                let headers = self.message_headers();
                self.request(
                    "MESSAGE",
                    &format!("sip:{}@{}", self.cfg.id, self.cfg.domain),
                    headers,
                    Some(("Application/MANSCDP+xml", body)),
                )
            }
            PacedKind::Notify => {
                let Some(s) = self.subscription.as_mut() else {
                    // The subscription ended while this waited: drop it, go on.
                    return self.send_next_paced(now);
                };
                s.cseq += 1;
                let left = s.until.saturating_duration_since(now).as_secs();
                let headers = vec![
                    ("From".to_owned(), s.our_to.clone()),
                    ("To".to_owned(), s.their_from.clone()),
                    ("Call-ID".to_owned(), s.call_id.clone()),
                    ("CSeq".to_owned(), format!("{} NOTIFY", s.cseq)),
                    ("Event".to_owned(), "Catalog".to_owned()),
                    ("Subscription-State".to_owned(), format!("active;expires={left}")),
                ];
                let target = s.target.clone();
                self.request("NOTIFY", &target, headers, Some(("Application/MANSCDP+xml", body)))
            }
        };
        self.paced.in_flight = true;
        self.paced.wake = Some(now + PACE_LIMIT);
        self.start_tx(now, branch, data, TxKind::Paced);
    }

    /// Sends `method` inside `dialog` (BYE, or a MediaStatus MESSAGE).
    pub(super) fn in_dialog_request(
        &mut self,
        now: Instant,
        dialog: DialogId,
        method: &str,
        body: Option<(&str, Vec<u8>)>,
    ) {
        let Some(d) = self.dialogs.get_mut(&dialog) else { return };
        d.cseq += 1;
        let to = d.invite.header("From").unwrap_or("").to_owned();
        let mut from = d.invite.header("To").unwrap_or("").to_owned();
        if crate::sipcore::tag_of(&from).is_none() {
            from.push_str(&format!(";tag={}", d.our_tag));
        }
        let headers = vec![
            ("From".to_owned(), from),
            ("To".to_owned(), to),
            ("Call-ID".to_owned(), d.call_id.clone()),
            ("CSeq".to_owned(), format!("{} {method}", d.cseq)),
        ];
        let target = d.target.clone();
        let (branch, data) = self.request(method, &target, headers, body);
        self.start_tx(
            now,
            branch,
            data,
            TxKind::InDialog {
                dialog,
                method: method.to_owned(),
            },
        );
    }

    /// BYE in `dialog` (or, before our final answer, a 487-like refusal), and it is gone.
    pub(super) fn bye(&mut self, now: Instant, dialog: DialogId) {
        let Some(d) = self.dialogs.get(&dialog) else { return };
        if d.phase == super::DialogPhase::Offered {
            self.answer_invite(now, dialog, 480, "Temporarily Unavailable", None);
            return;
        }
        self.in_dialog_request(now, dialog, "BYE", None);
        self.dialogs.remove(&dialog);
    }

    /// Ends every session (without telling the upper, which is gone), each with an event.
    pub(super) fn end_all(&mut self, _now: Instant, reason: &str) {
        let ids: Vec<DialogId> = self.dialogs.keys().copied().collect();
        for dialog in ids {
            self.dialogs.remove(&dialog);
            self.emit(UpperEvent::Ended {
                dialog,
                reason: reason.to_owned(),
            });
        }
        self.subscription = None;
    }

    pub(super) fn handle_response(&mut self, now: Instant, m: &Message) {
        let Some(branch) = m.header("Via").and_then(branch_of).map(str::to_owned) else {
            return;
        };
        let Some(code) = (match &m.start {
            StartLine::Response { code, .. } => Some(*code),
            _ => None,
        }) else {
            return;
        };
        if code < 200 {
            if let Some(tx) = self.txs.get_mut(&branch) {
                tx.next_resend = None;
            }
            return;
        }
        let Some(tx) = self.txs.remove(&branch) else { return };
        if cseq_of(m).is_none() {
            return;
        }
        self.finish(now, tx.kind, Some(code), m);
    }

    fn finish(&mut self, now: Instant, kind: TxKind, code: Option<u16>, m: &Message) {
        match kind {
            TxKind::Register { unregister: true } => {}
            TxKind::Register { unregister: false } => match code {
                Some(200..=299) => self.registered(now, m),
                Some(401) | Some(407) if !self.reg.answered => {
                    let header = m
                        .header("WWW-Authenticate")
                        .or_else(|| m.header("Proxy-Authenticate"))
                        .unwrap_or("");
                    match Challenge::parse(header) {
                        Ok(c) => {
                            self.reg.challenge = Some(c);
                            self.reg.nc = 0;
                            self.reg.answered = true;
                            self.send_register(now, false);
                        }
                        Err(_) => self.failed(now, code),
                    }
                }
                // A stale nonce is not a wrong password: answer the new one.
                Some(401) if Challenge::parse(m.header("WWW-Authenticate").unwrap_or("")).is_ok_and(|c| c.stale) => {
                    self.reg.answered = false;
                    self.finish(now, TxKind::Register { unregister: false }, code, m);
                }
                other => self.failed(now, other),
            },
            TxKind::Keepalive => match code {
                Some(200..=299) => {
                    self.keepalive.missed = 0;
                    self.last_keepalive_ok = Some(now);
                }
                // It forgot us (restarted): register again at once.
                Some(_) => self.lost(
                    now,
                    format!(
                        "upper {} answered our keepalive with {}: it no longer knows us",
                        self.cfg.id,
                        code.unwrap_or(0)
                    ),
                ),
                None => {
                    self.keepalive.missed += 1;
                    if self.keepalive.missed >= self.cfg.keepalive_misses.max(1) {
                        let n = self.keepalive.missed;
                        self.lost(now, format!("upper {} left {n} keepalives unanswered", self.cfg.id));
                    }
                }
            },
            TxKind::Paced => self.send_next_paced(now),
            TxKind::InDialog { dialog, method } => {
                if method == "BYE" {
                    self.dialogs.remove(&dialog);
                }
            }
        }
    }

    pub(super) fn run_transactions(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut expired = Vec::new();
        for (branch, tx) in &mut self.txs {
            if now >= tx.deadline {
                expired.push(branch.clone());
            } else if tx.next_resend.is_some_and(|t| now >= t) {
                tx.interval = (tx.interval * 2).min(T2);
                tx.next_resend = Some(now + tx.interval);
                resend.push(tx.data.clone());
            }
        }
        let to = self.cfg.peer();
        for data in resend {
            self.out.push_back(Output::Send { to, data });
        }
        let empty = Message {
            start: StartLine::Response {
                code: 408,
                reason: String::new(),
            },
            headers: Vec::new(),
            body: Bytes::new(),
        };
        for branch in expired {
            if let Some(tx) = self.txs.remove(&branch) {
                self.finish(now, tx.kind, None, &empty);
            }
        }
    }
}
