//! What both roles of the crate share: the platform toward devices and lower platforms
//! ([`crate::platform`]) and the link toward an upper platform ([`crate::upper`]). Header
//! fields read out of SIP messages, responses built from requests, branches and tags, and the
//! retransmission timers of RFC 3261 §17 that every transaction over UDP needs.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::platform::{Peer, Transport};
use crate::sip::{Message, StartLine};

/// RFC 3261 T1: the first retransmission interval over UDP.
pub const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: the longest retransmission interval of non-INVITE requests and 2xx answers.
pub const T2: Duration = Duration::from_secs(4);
/// How long an answered request's response is kept for its retransmissions.
pub const RESPONSE_CACHE: Duration = Duration::from_secs(32);
/// Longest id accepted from a peer (GB ids are 20 digits; some tools use shorter ones).
pub const MAX_ID: usize = 32;

/// The user part of a SIP URI inside a header value (`"x" <sip:USER@host>;tag=..`).
pub fn uri_user(v: &str) -> Option<&str> {
    let at = v.find("sip:")? + 4;
    let rest = &v[at..];
    let end = rest.find(['@', '>', ';', ':'])?;
    if rest.as_bytes().get(end) != Some(&b'@') {
        return None;
    }
    Some(&rest[..end])
}

/// The `tag` parameter of a From or To value.
pub fn tag_of(v: &str) -> Option<&str> {
    let at = v.find(";tag=")? + 5;
    let rest = &v[at..];
    Some(&rest[..rest.find([';', ' ', '>']).unwrap_or(rest.len())])
}

/// The `branch` parameter of a Via value.
pub fn branch_of(via: &str) -> Option<&str> {
    let at = via.find("branch=")? + 7;
    let rest = &via[at..];
    Some(&rest[..rest.find([';', ' ', ',']).unwrap_or(rest.len())])
}

/// The CSeq number and method (upper case).
pub fn cseq_of(m: &Message) -> Option<(u32, String)> {
    let v = m.header("CSeq")?;
    let mut p = v.split_whitespace();
    Some((p.next()?.parse().ok()?, p.next()?.to_ascii_uppercase()))
}

/// True for an id a peer may use: ASCII letters and digits, at most [`MAX_ID`].
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The `Expires` header, or the `expires` parameter of the Contact.
pub fn expires_of(m: &Message) -> Option<u64> {
    if let Some(e) = m.header("Expires") {
        return e.trim().parse().ok();
    }
    let c = m.header("Contact")?;
    let at = c.to_ascii_lowercase().find("expires=")? + 8;
    c[at..].split(|ch: char| !ch.is_ascii_digit()).next()?.parse().ok()
}

/// The transport's name in a Via.
pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    }
}

/// A Via value for a request of ours sent from `local` over `transport`, with `branch`.
pub fn via(local: SocketAddr, transport: Transport, branch: &str) -> String {
    format!("SIP/2.0/{} {local};rport;branch={branch}", transport_name(transport))
}

/// A reason phrase safe to put in a status line: a reason may quote what the peer sent (a
/// parser's error), which must never break the line or add headers (found by fuzzing).
pub fn clean_reason(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect()
}

/// The response to request `req` from `from` with `code` and `reason`: its Vias (with
/// `rport` filled in, RFC 3581), From, To (with `to_tag` added when it has none and the
/// response is final or provisional above 100), Call-ID and CSeq, then `extra` headers and
/// `body`.
pub fn response_to(
    req: &Message,
    from: Peer,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: Vec<(String, String)>,
    body: Bytes,
) -> Message {
    let mut headers: Vec<(String, String)> = req
        .headers_named("Via")
        .map(|v| {
            let mut v = v.to_owned();
            if v.contains(";rport") && !v.contains(";rport=") {
                v = v.replacen(
                    ";rport",
                    &format!(";rport={};received={}", from.addr.port(), from.addr.ip()),
                    1,
                );
            }
            ("Via".to_owned(), v)
        })
        .collect();
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = req.header(name) {
            let mut v = v.to_owned();
            if name == "To" && tag_of(&v).is_none() && code > 100 {
                v.push_str(&format!(";tag={to_tag}"));
            }
            headers.push((name.to_owned(), v));
        }
    }
    headers.push(("User-Agent".into(), "Sharpeye".into()));
    headers.extend(extra);
    Message {
        start: StartLine::Response {
            code,
            reason: clean_reason(reason),
        },
        headers,
        body,
    }
}

/// Random hex tokens for branches, tags and Call-IDs.
#[derive(Debug)]
pub struct Tokens(u64);

impl Default for Tokens {
    fn default() -> Self {
        Tokens(rand::random())
    }
}

impl Tokens {
    /// 16 hex digits, never the same twice in a row.
    pub fn fresh(&mut self) -> String {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        format!("{:016x}", self.0 ^ rand::random::<u64>())
    }

    /// A new branch (with the RFC 3261 magic cookie).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.fresh())
    }

    /// A new tag.
    pub fn tag(&mut self) -> String {
        self.fresh()[..10].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Framing, parse};

    #[test]
    fn fields_and_responses() {
        let raw = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKx1\r\nFrom: <sip:3402@3402000000>;tag=f1\r\nTo: <sip:9@3402000000>\r\nCall-ID: c1\r\nCSeq: 7 message\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
        let (m, _) = parse(raw, Framing::Datagram).unwrap();
        assert_eq!(uri_user(m.header("From").unwrap()), Some("3402"));
        assert_eq!(tag_of(m.header("From").unwrap()), Some("f1"));
        assert_eq!(branch_of(m.header("Via").unwrap()), Some("z9hG4bKx1"));
        assert_eq!(cseq_of(&m), Some((7, "MESSAGE".to_owned())));
        assert_eq!(expires_of(&m), Some(600));
        let from = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.7:5070".parse().unwrap(),
        };
        let r = response_to(&m, from, 400, "bad\r\nX-Evil: 1", "t9", vec![], Bytes::new());
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 400 bad  X-Evil: 1\r\n"), "{text}");
        assert!(text.contains(";rport=5070;received=192.0.2.7"));
        assert!(text.contains("To: <sip:9@3402000000>;tag=t9\r\n"));
        assert!(!valid_id("../x") && valid_id("34020000001320000001"));
        let mut t = Tokens::default();
        assert_ne!(t.fresh(), t.fresh());
        assert!(t.branch().starts_with("z9hG4bK"));
    }
}

/// Answers already sent, by the request's branch and method, so that a retransmitted request
/// gets the same answer again (RFC 3261 §17.2) rather than being handled twice; each is kept
/// [`RESPONSE_CACHE`]. Shared by the platform and the upper links.
#[derive(Debug, Default)]
pub struct Answered(std::collections::HashMap<String, (Vec<u8>, std::time::Instant)>);

impl Answered {
    fn key(req: &Message) -> Option<String> {
        let b = req.header("Via").and_then(branch_of)?;
        Some(format!("{b}/{}", req.method().unwrap_or("")))
    }

    /// Remembers `data` as the answer to `req`.
    pub fn remember(&mut self, now: std::time::Instant, req: &Message, data: &[u8]) {
        if let Some(k) = Self::key(req) {
            self.0.insert(k, (data.to_vec(), now + RESPONSE_CACHE));
        }
    }

    /// The answer already sent to `req`, if it is a retransmission.
    pub fn replay(&self, req: &Message) -> Option<Vec<u8>> {
        self.0.get(&Self::key(req)?).map(|(d, _)| d.clone())
    }

    /// Forgets answers older than [`RESPONSE_CACHE`].
    pub fn expire(&mut self, now: std::time::Instant) {
        self.0.retain(|_, (_, until)| *until > now);
    }
}
