//! Shared by the SIP state-machine targets: what the machine under test last sent (branch,
//! Call-ID, tag, CSeq, challenge nonce), so the fuzzer's datagrams can answer it through
//! `$` placeholders.

use gb28181::sip::{Message, StartLine};

/// The parts of the machine's last request (and last challenge) a scripted peer echoes.
#[derive(Default)]
pub struct Seen {
    pub branch: String,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: String,
    pub nonce: String,
}

/// The value of `key` (`branch=`, `;tag=`, `nonce="`) in a header value.
pub fn param<'a>(v: &'a str, key: &str) -> Option<&'a str> {
    let at = v.find(key)? + key.len();
    let rest = &v[at..];
    Some(&rest[..rest.find([';', ' ', ',', '>', '"']).unwrap_or(rest.len())])
}

impl Seen {
    /// Remembers what `m`, sent by the machine, says.
    pub fn remember(&mut self, m: &Message) {
        match &m.start {
            StartLine::Request { .. } => {
                if let Some(b) = m.header("Via").and_then(|v| param(v, "branch=")) {
                    self.branch = b.to_owned();
                }
                self.call_id = m.header("Call-ID").unwrap_or("").to_owned();
                if let Some(t) = m.header("From").and_then(|v| param(v, ";tag=")) {
                    self.from_tag = t.to_owned();
                }
                if let Some(n) = m.header("CSeq").and_then(|c| c.split_whitespace().next()) {
                    self.cseq = n.to_owned();
                }
            }
            StartLine::Response { .. } => {
                if let Some(n) = m.header("WWW-Authenticate").and_then(|v| param(v, "nonce=\"")) {
                    self.nonce = n.to_owned();
                }
            }
        }
    }

    /// `datagram` with `$B` branch, `$C` Call-ID, `$T` From tag, `$S` CSeq number, `$N` nonce
    /// and the `extra` placeholders (`$` + letter) replaced.
    pub fn substitute(&self, datagram: &[u8], extra: &dyn Fn(u8) -> Option<String>) -> Vec<u8> {
        if !datagram.contains(&b'$') {
            return datagram.to_vec();
        }
        let mut out = Vec::with_capacity(datagram.len() + 64);
        let mut i = 0;
        while i < datagram.len() {
            let value = match (datagram[i], datagram.get(i + 1)) {
                (b'$', Some(b'B')) => Some(self.branch.clone()),
                (b'$', Some(b'C')) => Some(self.call_id.clone()),
                (b'$', Some(b'T')) => Some(self.from_tag.clone()),
                (b'$', Some(b'S')) => Some(self.cseq.clone()),
                (b'$', Some(b'N')) => Some(self.nonce.clone()),
                (b'$', Some(&c)) => extra(c),
                _ => None,
            };
            match value {
                Some(v) => {
                    out.extend_from_slice(v.as_bytes());
                    i += 2;
                }
                None => {
                    out.push(datagram[i]);
                    i += 1;
                }
            }
        }
        out
    }
}
