//! What the upper sends us: MANSCDP queries and controls, the catalog SUBSCRIBE, and INVITE
//! dialogs (100 Trying at once, the node's answer resent until the ACK, BYE, CANCEL and INFO).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Dialog, DialogId, DialogPhase, Query, Subscription, UpperEvent, UpperLink, UpperState};
use crate::invitation::Invitation;
use crate::manscdp::Document;
use crate::platform::{Output, Peer, Transport};
use crate::sip::Message;
use crate::sipcore::{T1, T2, branch_of, cseq_of, response_to, tag_of, uri_user, valid_id};

/// Longest catalog subscription granted.
const MAX_SUBSCRIPTION: Duration = Duration::from_secs(86_400);
/// Most sessions one upper may hold at once.
pub const MAX_SESSIONS: usize = 1024;

fn contact_uri(m: &Message, from: Peer) -> String {
    m.header("Contact")
        .and_then(|c| {
            let start = c.find("sip:")?;
            let rest = &c[start..];
            let uri = &rest[..rest.find(['>', ';']).unwrap_or(rest.len())];
            (!uri.chars().any(|c| c.is_whitespace() || c.is_control())).then(|| uri.to_owned())
        })
        .unwrap_or_else(|| format!("sip:{}", from.addr))
}

impl UpperLink {
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
        let tag = self.tokens.tag();
        let data = response_to(req, from, code, reason, &tag, extra, body).to_bytes();
        self.responses.remember(now, req, &data);
        self.out.push_back(Output::Send { to: from, data });
    }

    fn simple(&mut self, now: Instant, from: Peer, req: &Message, code: u16, reason: &str) {
        self.respond(now, from, req, code, reason, Vec::new(), Bytes::new());
    }

    pub(super) fn handle_request(&mut self, now: Instant, _unix_ms: i64, from: Peer, m: Message) {
        let method = m.method().unwrap_or("").to_ascii_uppercase();
        if let Some(data) = self.responses.replay(&m) {
            self.out.push_back(Output::Send { to: from, data });
            return;
        }
        if m.header("Call-ID").is_none() || cseq_of(&m).is_none() || m.header("From").is_none() {
            self.simple(now, from, &m, 400, "Bad Request (missing Call-ID, CSeq or From)");
            return;
        }
        match method.as_str() {
            "MESSAGE" => self.handle_manscdp(now, from, &m),
            "SUBSCRIBE" => self.handle_subscribe(now, from, &m),
            "INVITE" => self.handle_invite(now, from, m),
            "ACK" => self.handle_ack(&m),
            "BYE" => self.handle_bye(now, from, &m),
            "CANCEL" => self.handle_cancel(now, from, &m),
            "INFO" => self.handle_info(now, from, &m),
            "OPTIONS" => self.simple(now, from, &m, 200, "OK"),
            _ => self.simple(now, from, &m, 405, "Method Not Allowed"),
        }
    }

    fn handle_manscdp(&mut self, now: Instant, from: Peer, m: &Message) {
        let doc = match Document::decode(&m.body, self.cfg.charset) {
            Ok(d) => d,
            Err(e) => {
                self.simple(now, from, m, 400, &format!("Bad Request ({e})"));
                return;
            }
        };
        self.simple(now, from, m, 200, "OK");
        if !matches!(self.state, UpperState::Registered { .. }) {
            // It asks before our registration is through (or after we lost it): it will ask
            // again once we are registered.
            return;
        }
        let sn = doc.sn;
        let user = end_user(m);
        let target = if doc.device_id.is_empty() {
            self.cfg.own_id.clone()
        } else {
            doc.device_id.clone()
        };
        let query = if doc.is("Query", "Catalog") {
            Some(Query::Catalog)
        } else if doc.is("Query", "DeviceInfo") {
            Some(Query::DeviceInfo { target: target.clone() })
        } else if doc.is("Query", "DeviceStatus") {
            Some(Query::DeviceStatus { target: target.clone() })
        } else if doc.is("Query", "RecordInfo") {
            let text = |n: &str| doc.element.text_of(n).unwrap_or("").trim().to_owned();
            Some(Query::RecordInfo {
                channel: target.clone(),
                start: text("StartTime"),
                end: text("EndTime"),
            })
        } else {
            None
        };
        if let Some(query) = query {
            self.emit(UpperEvent::Query { sn, query, user });
        } else if doc.is("Control", "DeviceControl") {
            let ptz = doc.element.text_of("PTZCmd").map(|p| p.trim().to_owned());
            self.emit(UpperEvent::Control {
                sn,
                channel: target,
                ptz,
                user,
            });
        }
    }

    fn handle_subscribe(&mut self, now: Instant, from: Peer, m: &Message) {
        let event = m.header("Event").unwrap_or("").to_ascii_lowercase();
        if !event.starts_with("catalog") {
            self.simple(now, from, m, 489, "Bad Event (only Catalog)");
            return;
        }
        let expires = m
            .header("Expires")
            .and_then(|e| e.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(600), Duration::from_secs)
            .min(MAX_SUBSCRIPTION);
        let call_id = m.header("Call-ID").unwrap_or("").to_owned();
        let our_tag = match &self.subscription {
            Some(s) if s.call_id == call_id => tag_of(&s.our_to).unwrap_or("").to_owned(),
            _ => self.tokens.tag(),
        };
        let mut our_to = m.header("To").unwrap_or("").to_owned();
        if tag_of(&our_to).is_none() {
            our_to.push_str(&format!(";tag={our_tag}"));
        }
        let to_tag = tag_of(&our_to).unwrap_or("").to_owned();
        let data = response_to(
            m,
            from,
            200,
            "OK",
            &to_tag,
            vec![("Expires".into(), expires.as_secs().to_string())],
            Bytes::new(),
        )
        .to_bytes();
        self.out.push_back(Output::Send { to: from, data });
        if expires.is_zero() {
            self.subscription = None;
        } else {
            let cseq = self
                .subscription
                .as_ref()
                .filter(|s| s.call_id == call_id)
                .map_or(0, |s| s.cseq);
            self.subscription = Some(Subscription {
                call_id,
                their_from: m.header("From").unwrap_or("").to_owned(),
                our_to,
                target: contact_uri(m, from),
                until: now + expires,
                cseq,
            });
        }
        self.emit(UpperEvent::CatalogSubscribed { expires });
    }

    fn dialog_of(&self, m: &Message) -> Option<DialogId> {
        let call_id = m.header("Call-ID")?;
        let their = m.header("From").and_then(tag_of).unwrap_or("");
        self.dialogs
            .iter()
            .find(|(_, d)| d.call_id == call_id && d.their_tag == their)
            .map(|(id, _)| *id)
    }

    fn handle_invite(&mut self, now: Instant, from: Peer, m: Message) {
        if let Some(dialog) = self.dialog_of(&m) {
            // A re-INVITE (session refresh): the same answer again.
            let retransmitted = self
                .dialogs
                .get(&dialog)
                .is_some_and(|d| Some(d.invite_branch.as_str()) == m.header("Via").and_then(branch_of));
            match self.dialogs.get(&dialog).map(|d| &d.phase) {
                Some(DialogPhase::Answered { response, .. }) => {
                    let data = response.clone();
                    self.out.push_back(Output::Send { to: from, data });
                }
                // The same INVITE again while we prepare the answer: still trying.
                Some(DialogPhase::Offered) if retransmitted => self.simple(now, from, &m, 100, "Trying"),
                _ => self.simple(now, from, &m, 491, "Request Pending"),
            }
            return;
        }
        if !matches!(self.state, UpperState::Registered { .. }) {
            self.simple(now, from, &m, 403, "Forbidden (not registered with you)");
            return;
        }
        if self.dialogs.len() >= MAX_SESSIONS {
            self.simple(now, from, &m, 486, "Busy Here (too many sessions)");
            return;
        }
        let invitation = match Invitation::parse(&m.body) {
            Ok(i) => i,
            Err(e) => {
                self.simple(now, from, &m, 400, &format!("Bad Request ({e})"));
                return;
            }
        };
        let uri_channel = match &m.start {
            crate::sip::StartLine::Request { uri, .. } => uri_user(&format!("<{uri}>")).map(str::to_owned),
            _ => None,
        };
        // The channel is the Request-URI's user; playback INVITEs of some uppers only name it
        // in `u=`.
        let channel = uri_channel
            .filter(|c| valid_id(c) && *c != self.cfg.own_id)
            .or_else(|| invitation.channel.clone())
            .or_else(|| m.header("To").and_then(uri_user).map(str::to_owned))
            .filter(|c| valid_id(c));
        let Some(channel) = channel else {
            self.simple(now, from, &m, 400, "Bad Request (no channel id)");
            return;
        };
        self.simple(now, from, &m, 100, "Trying");
        let dialog = self.next_dialog;
        self.next_dialog += 1;
        let user = end_user(&m);
        self.dialogs.insert(
            dialog,
            Dialog {
                call_id: m.header("Call-ID").unwrap_or("").to_owned(),
                their_tag: m.header("From").and_then(tag_of).unwrap_or("").to_owned(),
                our_tag: self.tokens.tag(),
                invite_branch: m.header("Via").and_then(branch_of).unwrap_or("").to_owned(),
                target: contact_uri(&m, from),
                from,
                channel: channel.clone(),
                phase: DialogPhase::Offered,
                cseq: 0,
                invite: m,
            },
        );
        self.emit(UpperEvent::Invite {
            dialog,
            channel,
            invitation: Box::new(invitation),
            user,
        });
    }

    /// The final answer to the INVITE of `dialog`.
    pub(super) fn answer_invite(
        &mut self,
        now: Instant,
        dialog: DialogId,
        code: u16,
        reason: &str,
        sdp: Option<String>,
    ) {
        let Some(d) = self.dialogs.get(&dialog) else { return };
        if d.phase != DialogPhase::Offered {
            return;
        }
        let mut extra = Vec::new();
        let body = match sdp {
            Some(s) => {
                extra.push(("Contact".to_owned(), format!("<sip:{}@{}>", d.channel, self.cfg.local)));
                extra.push(("Content-Type".to_owned(), "APPLICATION/SDP".to_owned()));
                Bytes::from(s)
            }
            None => Bytes::new(),
        };
        let data = response_to(&d.invite, d.from, code, reason, &d.our_tag, extra, body).to_bytes();
        let to = d.from;
        self.out.push_back(Output::Send { to, data: data.clone() });
        if !(200..300).contains(&code) {
            // A refusal: the dialog is over (the ACK to it, if any, is absorbed).
            self.dialogs.remove(&dialog);
            return;
        }
        let udp = to.transport == Transport::Udp;
        if let Some(d) = self.dialogs.get_mut(&dialog) {
            d.phase = DialogPhase::Answered {
                response: data,
                next_resend: udp.then_some(now + T1),
                interval: T1,
                give_up: now + self.cfg.ack_timeout,
            };
        }
    }

    fn handle_ack(&mut self, m: &Message) {
        let Some(dialog) = self.dialog_of(m) else { return };
        let Some(d) = self.dialogs.get_mut(&dialog) else { return };
        if matches!(d.phase, DialogPhase::Answered { .. }) {
            d.phase = DialogPhase::Confirmed;
            self.emit(UpperEvent::Acked { dialog });
        }
    }

    fn handle_bye(&mut self, now: Instant, from: Peer, m: &Message) {
        match self.dialog_of(m) {
            Some(dialog) => {
                self.simple(now, from, m, 200, "OK");
                self.dialogs.remove(&dialog);
                self.emit(UpperEvent::Ended {
                    dialog,
                    reason: format!("upper {} hung up (BYE)", self.cfg.id),
                });
            }
            None => self.simple(now, from, m, 481, "Call/Transaction Does Not Exist"),
        }
    }

    fn handle_cancel(&mut self, now: Instant, from: Peer, m: &Message) {
        let branch = m.header("Via").and_then(branch_of).unwrap_or("").to_owned();
        let found = self
            .dialogs
            .iter()
            .find(|(_, d)| d.invite_branch == branch && d.phase == DialogPhase::Offered)
            .map(|(id, _)| *id);
        match found {
            Some(dialog) => {
                self.simple(now, from, m, 200, "OK");
                self.answer_invite(now, dialog, 487, "Request Terminated", None);
                self.emit(UpperEvent::Ended {
                    dialog,
                    reason: format!("upper {} cancelled the INVITE", self.cfg.id),
                });
            }
            None => self.simple(now, from, m, 481, "Call/Transaction Does Not Exist"),
        }
    }

    fn handle_info(&mut self, now: Instant, from: Peer, m: &Message) {
        let Some(dialog) = self.dialog_of(m) else {
            self.simple(now, from, m, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let body: String = String::from_utf8_lossy(&m.body).chars().take(2000).collect();
        // MANSRTSP answers RTSP-style in the 200's body, with the request's CSeq.
        let cseq = body
            .lines()
            .find_map(|l| l.strip_prefix("CSeq:").map(str::trim))
            .and_then(|c| c.parse::<u32>().ok())
            .unwrap_or(0);
        self.respond(
            now,
            from,
            m,
            200,
            "OK",
            vec![("Content-Type".into(), "Application/MANSRTSP".into())],
            Bytes::from(format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n")),
        );
        self.emit(UpperEvent::Info { dialog, body });
    }

    /// Resends 200s not yet ACKed; drops the sessions whose ACK never came.
    pub(super) fn run_dialog_timers(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut gone = Vec::new();
        for (id, d) in &mut self.dialogs {
            if let DialogPhase::Answered {
                response,
                next_resend,
                interval,
                give_up,
            } = &mut d.phase
            {
                if now >= *give_up {
                    gone.push(*id);
                } else if next_resend.is_some_and(|t| now >= t) {
                    *interval = (*interval * 2).min(T2);
                    *next_resend = Some(now + *interval);
                    resend.push((d.from, response.clone()));
                }
            }
        }
        for (to, data) in resend {
            self.out.push_back(Output::Send { to, data });
        }
        for dialog in gone {
            self.in_dialog_request(now, dialog, "BYE", None);
            self.dialogs.remove(&dialog);
            self.emit(UpperEvent::Ended {
                dialog,
                reason: format!(
                    "upper {} never ACKed our answer within {:?}",
                    self.cfg.id, self.cfg.ack_timeout
                ),
            });
        }
    }
}

/// The end user an upper acts for (`Monitor-User-Identity`), bounded and without control
/// characters, for the audit.
fn end_user(m: &Message) -> Option<String> {
    m.header("Monitor-User-Identity")
        .map(|u| u.chars().filter(|c| !c.is_control()).take(200).collect())
}
