//! SIP messages (RFC 3261 §7) as GB/T 28181 devices send them: parsing from a datagram or a TCP
//! byte stream (`Content-Length` framing), and writing.
//!
//! Written by hand rather than with a SIP crate: the GB quirks need raw access that the
//! maintained parsers reject or normalise away (a `Date:` in the GB form, not RFC 1123; `uri`
//! and `nc` in digest credentials used exactly as sent; GB18030 bodies that are not UTF-8;
//! devices that omit `Content-Length` over UDP). Header values are kept as the raw bytes that
//! arrived (lossily shown as text); only the start line, header names and `Content-Length` are
//! interpreted. Every length is bounded, and any input gives a message, "incomplete", or an
//! error that says what is wrong, never a panic.

use bytes::Bytes;

/// Longest start line plus headers accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body accepted (catalog answers are paced in small messages; 64 KiB is generous).
pub const MAX_BODY: usize = 64 * 1024;
/// Most headers in one message, besides `Content-Length`.
pub const MAX_HEADERS: usize = 64;
/// Raw bytes a head may take beyond [`MAX_HEAD`]: its text (after replacing bytes that are not
/// UTF-8) is what must fit, and what we write back (CRLF line ends, our `Content-Length`) is
/// a little longer than what we read; the slack keeps our own output parseable.
const HEAD_SLACK: usize = 1024;

/// The first line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// `REGISTER`, `MESSAGE`, `INVITE`, ...
        method: String,
        /// The Request-URI, as sent.
        uri: String,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// A SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request or response line.
    pub start: StartLine,
    /// Headers in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, as bytes (MANSCDP bodies are often GB18030).
    pub body: Bytes,
}

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// More bytes are needed (TCP: the message has not all arrived).
    #[error("incomplete message")]
    Incomplete,
    /// The start line is not a request or response line.
    #[error("not a SIP request or response line: {0:?}")]
    BadStartLine(String),
    /// A header line has no colon or an empty name.
    #[error("bad header line {0:?}")]
    BadHeader(String),
    /// Headers longer than [`MAX_HEAD`] or more than [`MAX_HEADERS`].
    #[error("the headers are too large (over {MAX_HEAD} bytes or {MAX_HEADERS} lines)")]
    HeadTooLarge,
    /// `Content-Length` is not a number, is given twice differently, or exceeds [`MAX_BODY`].
    #[error("bad Content-Length {0:?} (at most {MAX_BODY})")]
    BadContentLength(String),
    /// Over TCP a message must say how long its body is.
    #[error("no Content-Length on a stream transport")]
    NoContentLength,
}

/// Compact header forms (RFC 3261 §7.3.3) and their full names.
const COMPACT: [(&str, &str); 8] = [
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
];

fn same_header(a: &str, b: &str) -> bool {
    let full = |n: &str| {
        COMPACT
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(n))
            .map_or(n.to_owned(), |(_, f)| (*f).to_owned())
    };
    full(a).eq_ignore_ascii_case(&full(b))
}

impl Message {
    /// The first value of header `name` (full or compact form, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order (Via can repeat).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// The request method, for requests.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The message as bytes, with `Content-Length` set to the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes())
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes())
            }
        }
        for (n, v) in &self.headers {
            if !same_header(n, "Content-Length") {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// How a message arrived, which decides how its end is found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A UDP datagram: the message is the whole datagram; without `Content-Length` the body is
    /// the rest (devices omit it).
    Datagram,
    /// A TCP stream: `Content-Length` says where the message ends.
    Stream,
}

fn find_head_end(b: &[u8]) -> Option<(usize, usize)> {
    // CRLF CRLF, or bare LF LF from sloppy devices.
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(l)) => Some(if l.0 < a.0 { l } else { a }),
        (a, l) => a.or(l),
    }
}

/// Parses one message from the start of `buf`; returns it and how many bytes it took.
/// Leading CRLFs (keep-alive pings on TCP) are skipped and counted.
pub fn parse(buf: &[u8], framing: Framing) -> Result<(Message, usize), SipError> {
    let skip = buf.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
    let b = &buf[skip..];
    let Some((head_end, body_start)) = find_head_end(b) else {
        if b.len() > MAX_HEAD + HEAD_SLACK {
            return Err(SipError::HeadTooLarge);
        }
        return Err(match framing {
            Framing::Stream => SipError::Incomplete,
            // A datagram is all there is: a message without the blank line has no body.
            Framing::Datagram if !b.is_empty() => {
                return parse_head(b, b.len(), b.len(), framing).map(|(m, n)| (m, n + skip));
            }
            Framing::Datagram => SipError::Incomplete,
        });
    };
    if head_end > MAX_HEAD + HEAD_SLACK {
        return Err(SipError::HeadTooLarge);
    }
    parse_head(b, head_end, body_start, framing).map(|(m, n)| (m, n + skip))
}

fn parse_head(b: &[u8], head_end: usize, body_start: usize, framing: Framing) -> Result<(Message, usize), SipError> {
    let head = String::from_utf8_lossy(&b[..head_end]);
    if head.len() > MAX_HEAD {
        return Err(SipError::HeadTooLarge);
    }
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let start = start_line(first)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: a continuation of the previous header's value.
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                None => return Err(SipError::BadHeader(line.chars().take(80).collect())),
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(SipError::BadHeader(line.chars().take(80).collect()));
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SipError::BadHeader(line.chars().take(80).collect()));
        }
        if headers
            .iter()
            .filter(|(n, _)| !same_header(n, "Content-Length"))
            .count()
            == MAX_HEADERS
            && !same_header(name, "Content-Length")
        {
            return Err(SipError::HeadTooLarge);
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut length: Option<usize> = None;
    for (n, v) in &headers {
        if same_header(n, "Content-Length") {
            let l: usize = v
                .parse()
                .ok()
                .filter(|&l| l <= MAX_BODY)
                .ok_or_else(|| SipError::BadContentLength(v.chars().take(20).collect()))?;
            if length.is_some_and(|x| x != l) {
                return Err(SipError::BadContentLength(v.chars().take(20).collect()));
            }
            length = Some(l);
        }
    }
    let available = b.len() - body_start.min(b.len());
    let body_len = match (length, framing) {
        (Some(l), Framing::Stream) if available < l => return Err(SipError::Incomplete),
        (Some(l), Framing::Datagram) if available < l => {
            // A datagram cut short: what there is is the body (lenient, as devices are).
            available
        }
        (Some(l), _) => l,
        (None, Framing::Stream) => return Err(SipError::NoContentLength),
        (None, Framing::Datagram) => available.min(MAX_BODY),
    };
    let body = Bytes::copy_from_slice(&b[body_start.min(b.len())..body_start.min(b.len()) + body_len]);
    Ok((
        Message { start, headers, body },
        (body_start + body_len).min(b.len()).max(head_end),
    ))
}

fn start_line(line: &str) -> Result<StartLine, SipError> {
    let bad = || SipError::BadStartLine(line.chars().take(80).collect());
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().ok().filter(|c| (100..700).contains(c)).ok_or_else(bad)?;
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some("SIP/2.0"), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.bytes().all(|c| c.is_ascii_uppercase() || c == b'-') || uri.is_empty() {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK1\r\n\
        From: <sip:34020000001320000001@3402000000>;tag=a1\r\n\
        To: <sip:34020000001320000001@3402000000>\r\n\
        Call-ID: 77@192.0.2.10\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:34020000001320000001@192.0.2.10:5060>\r\n\
        Max-Forwards: 70\r\n\
        Expires: 3600\r\n\
        X-GB-Ver: 3.0\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn a_register_parses_and_round_trips() {
        let (m, n) = parse(REGISTER.as_bytes(), Framing::Stream).unwrap();
        assert_eq!(n, REGISTER.len());
        assert_eq!(m.method(), Some("REGISTER"));
        assert_eq!(m.header("call-id"), Some("77@192.0.2.10"));
        assert_eq!(m.header("i"), Some("77@192.0.2.10"));
        assert_eq!(m.header("Expires"), Some("3600"));
        assert_eq!(m.header("X-GB-Ver"), Some("3.0"));
        let again = parse(&m.to_bytes(), Framing::Stream).unwrap().0;
        assert_eq!(again, m);
    }

    #[test]
    fn a_stream_carries_several_messages_and_pings() {
        let body = "<?xml version=\"1.0\"?><Notify><CmdType>Keepalive</CmdType></Notify>";
        let msg = format!(
            "MESSAGE sip:3402000000 SIP/2.0\r\nv: SIP/2.0/TCP 10.0.0.2:5060\r\nl: {}\r\nc: Application/MANSCDP+xml\r\n\r\n{body}",
            body.len()
        );
        let stream = format!("\r\n\r\n{REGISTER}{msg}");
        let (a, n) = parse(stream.as_bytes(), Framing::Stream).unwrap();
        assert_eq!(a.method(), Some("REGISTER"));
        let (b, m) = parse(&stream.as_bytes()[n..], Framing::Stream).unwrap();
        assert_eq!(n + m, stream.len());
        assert_eq!(&b.body[..], body.as_bytes());
        assert_eq!(b.header("Content-Type"), Some("Application/MANSCDP+xml"));
        // Every truncation of the stream is "incomplete" until the message is whole.
        for cut in 0..stream.len() - m {
            let r = parse(&stream.as_bytes()[n..n + cut.min(m - 1)], Framing::Stream);
            assert_eq!(r.unwrap_err(), SipError::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn responses_and_gb_quirks() {
        let ok = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 1.2.3.4\nDate: 2026-11-23T08:00:00.123\nWWW-Authenticate: Digest realm=\"3402000000\",\n nonce=\"abc\", algorithm=MD5\n\n";
        let (m, _) = parse(ok.as_bytes(), Framing::Datagram).unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 200,
                reason: "OK".into()
            }
        );
        // The GB Date is kept as sent, and a folded header is joined.
        assert_eq!(m.header("date"), Some("2026-11-23T08:00:00.123"));
        assert_eq!(
            m.header("WWW-Authenticate"),
            Some("Digest realm=\"3402000000\", nonce=\"abc\", algorithm=MD5")
        );
        // A datagram without Content-Length: the body is the rest.
        let d = "MESSAGE sip:x SIP/2.0\r\nVia: a\r\n\r\n<Notify/>";
        assert_eq!(
            &parse(d.as_bytes(), Framing::Datagram).unwrap().0.body[..],
            b"<Notify/>"
        );
        assert_eq!(
            parse(d.as_bytes(), Framing::Stream).unwrap_err(),
            SipError::NoContentLength
        );
        // A GB18030 body stays bytes.
        let mut g = b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 4\r\n\r\n".to_vec();
        g.extend_from_slice(&[0xC9, 0xE3, 0xCF, 0xF1]);
        assert_eq!(
            &parse(&g, Framing::Datagram).unwrap().0.body[..],
            &[0xC9, 0xE3, 0xCF, 0xF1]
        );
    }

    #[test]
    fn what_we_write_from_what_we_read_parses_again() {
        // Found by fuzzing: 64 headers and no Content-Length, and bytes that are not UTF-8,
        // made our own output too large to read back.
        let mut m = b"MESSAGE sip:x SIP/2.0\n".to_vec();
        for i in 0..MAX_HEADERS {
            m.extend_from_slice(format!("X-{i}: \u{FFFD}").as_bytes());
            m.extend_from_slice(&[0xFF; 40]);
            m.push(b'\n');
        }
        m.push(b'\n');
        let (msg, _) = parse(&m, Framing::Datagram).unwrap();
        let (again, _) = parse(&msg.to_bytes(), Framing::Stream).unwrap();
        assert_eq!(again.headers.len(), MAX_HEADERS + 1);
    }

    #[test]
    fn hostile_messages_are_refused_with_a_reason() {
        let cases: Vec<(Vec<u8>, SipError)> = vec![
            (b"HELLO\r\n\r\n".to_vec(), SipError::BadStartLine("HELLO".into())),
            (
                b"register sip:x SIP/2.0\r\n\r\n".to_vec(),
                SipError::BadStartLine("register sip:x SIP/2.0".into()),
            ),
            (
                b"SIP/2.0 99 Low\r\n\r\n".to_vec(),
                SipError::BadStartLine("SIP/2.0 99 Low".into()),
            ),
            (
                b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n".to_vec(),
                SipError::BadHeader("no colon here".into()),
            ),
            (
                b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
                SipError::BadContentLength("99999999999".into()),
            ),
            (
                b"INVITE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab".to_vec(),
                SipError::BadContentLength("2".into()),
            ),
            (
                b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n".to_vec(),
                SipError::BadContentLength("-1".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(&input, Framing::Stream).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
        let many = format!("INVITE sip:x SIP/2.0\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(
            parse(many.as_bytes(), Framing::Stream).unwrap_err(),
            SipError::HeadTooLarge
        );
        let long = vec![b'A'; MAX_HEAD + HEAD_SLACK + 10];
        assert_eq!(parse(&long, Framing::Stream).unwrap_err(), SipError::HeadTooLarge);
        // Every truncation and byte flip of a real message: a message, incomplete or an error.
        let input = REGISTER.as_bytes();
        for cut in 0..input.len() {
            for f in [Framing::Stream, Framing::Datagram] {
                let _ = parse(&input[..cut], f);
            }
            let mut flipped = input.to_vec();
            flipped[cut] ^= 0xA5;
            let _ = parse(&flipped, Framing::Datagram);
        }
    }
}
