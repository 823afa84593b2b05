//! The SDP of GB/T 28181 media sessions (gb28181-notes.md §4): the platform's offer for live
//! (`s=Play`), playback (`s=Playback`) and download (`s=Download`), the device's answer, and
//! the `y=` SSRC allocator.
//!
//! Written by hand: the GB lines `y=`, `f=` and `u=` are outside RFC 4566, the SDP crates drop
//! or reject them, and an answer is a dozen lines.

use std::net::IpAddr;

/// Longest SDP accepted.
const MAX_SDP: usize = 8 * 1024;

/// What the session is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// Live video.
    Play,
    /// A device recording played at its pace, between two Unix times.
    Playback {
        /// Start, Unix seconds.
        start: i64,
        /// End, Unix seconds.
        end: i64,
    },
    /// A device recording sent as fast as `speed` allows.
    Download {
        /// Start, Unix seconds.
        start: i64,
        /// End, Unix seconds.
        end: i64,
        /// `downloadspeed` (1, 2, 4, ...).
        speed: u32,
    },
}

/// How media travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaTransport {
    /// RTP over UDP.
    Udp,
    /// RTP over TCP (RFC 4571) with the platform listening and the device connecting
    /// (`a=setup:passive` in our offer): the default, it crosses NAT toward the device.
    TcpPassive,
    /// RTP over TCP with the platform connecting to the device's answer address.
    TcpActive,
}

impl MediaTransport {
    /// Reads a config value: `udp`, `tcp-passive`, `tcp-active`.
    pub fn parse(s: &str) -> Option<MediaTransport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(MediaTransport::Udp),
            "tcp-passive" | "tcp" => Some(MediaTransport::TcpPassive),
            "tcp-active" => Some(MediaTransport::TcpActive),
            _ => None,
        }
    }
}

/// The platform's offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Our platform id (the `o=` user).
    pub own_id: String,
    /// The channel asked for (the `u=` line for playback).
    pub channel: String,
    /// Where the device sends media (or, TCP-active, our address).
    pub ip: IpAddr,
    /// Our port (0 for TCP-active, where we connect out).
    pub port: u16,
    /// Transport.
    pub transport: MediaTransport,
    /// Kind.
    pub kind: SessionKind,
    /// The 10-digit SSRC.
    pub ssrc: String,
}

impl Offer {
    /// The SDP text.
    pub fn to_sdp(&self) -> String {
        let ipv = if self.ip.is_ipv6() { "IP6" } else { "IP4" };
        let (name, times) = match self.kind {
            SessionKind::Play => ("Play", "0 0".to_owned()),
            SessionKind::Playback { start, end } => ("Playback", format!("{start} {end}")),
            SessionKind::Download { start, end, .. } => ("Download", format!("{start} {end}")),
        };
        let proto = match self.transport {
            MediaTransport::Udp => "RTP/AVP",
            _ => "TCP/RTP/AVP",
        };
        let mut s = format!("v=0\r\no={} 0 0 IN {ipv} {}\r\ns={name}\r\n", self.own_id, self.ip);
        if !matches!(self.kind, SessionKind::Play) {
            s.push_str(&format!("u={}:0\r\n", self.channel));
        }
        s.push_str(&format!(
            "c=IN {ipv} {}\r\nt={times}\r\nm=video {} {proto} 96 98 100\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\na=rtpmap:98 H264/90000\r\na=rtpmap:100 H265/90000\r\n",
            self.ip, self.port
        ));
        match self.transport {
            MediaTransport::Udp => {}
            MediaTransport::TcpPassive => s.push_str("a=setup:passive\r\na=connection:new\r\n"),
            MediaTransport::TcpActive => s.push_str("a=setup:active\r\na=connection:new\r\n"),
        }
        if let SessionKind::Download { speed, .. } = self.kind {
            s.push_str(&format!("a=downloadspeed:{speed}\r\n"));
        }
        s.push_str(&format!("y={}\r\n", self.ssrc));
        s
    }
}

/// What the device answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Where its media comes from (or, TCP-active, where we connect).
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// True for `TCP/RTP/AVP`.
    pub tcp: bool,
    /// `a=setup:` as answered.
    pub setup: Option<String>,
    /// `y=` as answered: devices may answer another SSRC than offered (Hikvision).
    pub ssrc: Option<u32>,
    /// Payload types with their encoding names (`PS`, `H264`, ...).
    pub rtpmap: Vec<(u8, String)>,
    /// `a=filesize:` for downloads.
    pub file_size: Option<u64>,
}

/// Why an SDP answer is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// Longer than allowed.
    #[error("SDP of {0} bytes is too long")]
    TooLong(usize),
    /// A required line is missing or unreadable.
    #[error("SDP has no usable {0} line")]
    Missing(&'static str),
}

/// Parses a 10-digit decimal `y=` value into the 32-bit RTP SSRC.
pub fn parse_ssrc(s: &str) -> Option<u32> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .and_then(|v| u32::try_from(v).ok())
}

impl Answer {
    /// Parses the device's SDP.
    pub fn parse(body: &[u8]) -> Result<Answer, SdpError> {
        if body.len() > MAX_SDP {
            return Err(SdpError::TooLong(body.len()));
        }
        let text = String::from_utf8_lossy(body);
        let mut session_ip = None;
        let mut media_ip = None;
        let mut media = None;
        let mut a = Answer {
            ip: IpAddr::from([0, 0, 0, 0]),
            port: 0,
            tcp: false,
            setup: None,
            ssrc: None,
            rtpmap: Vec::new(),
            file_size: None,
        };
        for line in text.lines().map(str::trim) {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k {
                "c" => {
                    let ip = crate::sdp::connection_ip(v);
                    if media.is_some() {
                        media_ip = ip;
                    } else {
                        session_ip = ip;
                    }
                }
                "m" if media.is_none() => {
                    let mut p = v.split_whitespace();
                    if p.next() == Some("video") {
                        let port = p.next().and_then(|x| x.split('/').next()?.parse::<u16>().ok());
                        let proto = p.next().unwrap_or("");
                        media = port.map(|port| (port, proto.to_ascii_uppercase().starts_with("TCP")));
                    }
                }
                "a" => {
                    if let Some(s) = v.strip_prefix("setup:") {
                        a.setup = Some(s.trim().to_ascii_lowercase());
                    } else if let Some(m) = v.strip_prefix("rtpmap:") {
                        let mut p = m.split_whitespace();
                        if let (Some(Ok(pt)), Some(enc)) = (p.next().map(str::parse::<u8>), p.next()) {
                            a.rtpmap
                                .push((pt, enc.split('/').next().unwrap_or("").to_ascii_uppercase()));
                        }
                    } else if let Some(f) = v.strip_prefix("filesize:") {
                        a.file_size = f.trim().parse().ok();
                    }
                }
                "y" => a.ssrc = parse_ssrc(v),
                _ => {}
            }
        }
        let (port, tcp) = media.ok_or(SdpError::Missing("m=video"))?;
        a.ip = media_ip.or(session_ip).ok_or(SdpError::Missing("c="))?;
        a.port = port;
        a.tcp = tcp;
        Ok(a)
    }
}

/// Allocates `y=` SSRCs: digit 1 is 0 (live) or 1 (history), digits 2-6 are digits 4-8 of the
/// 10-digit domain, digits 7-10 a counter, as the standard lays out.
#[derive(Clone, Debug)]
pub struct SsrcAllocator {
    domain_part: String,
    next: u32,
}

impl SsrcAllocator {
    /// An allocator for `domain` (10 digits; anything else contributes zeros).
    pub fn new(domain: &str) -> SsrcAllocator {
        let d: String = domain.chars().filter(char::is_ascii_digit).collect();
        let part = if d.len() >= 8 {
            d[3..8].to_owned()
        } else {
            "00000".to_owned()
        };
        SsrcAllocator {
            domain_part: part,
            next: 1,
        }
    }

    /// The next SSRC as its 10-digit text.
    pub fn allocate(&mut self, history: bool) -> String {
        let n = self.next;
        self.next = if self.next >= 9999 { 1 } else { self.next + 1 };
        format!("{}{}{n:04}", u8::from(history), self.domain_part)
    }
}

/// The address of a `c=` line's value (`IN IP4 10.0.0.1`, a multicast `/ttl` dropped).
pub(crate) fn connection_ip(v: &str) -> Option<std::net::IpAddr> {
    v.split_whitespace()
        .nth(2)
        .and_then(|ip| ip.split('/').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_and_answer() {
        let offer = Offer {
            own_id: "34020000002000000001".into(),
            channel: "34020000001320000001".into(),
            ip: "127.0.0.1".parse().unwrap(),
            port: 30000,
            transport: MediaTransport::TcpPassive,
            kind: SessionKind::Play,
            ssrc: "0200000001".into(),
        };
        let sdp = offer.to_sdp();
        assert!(sdp.contains("s=Play\r\n"));
        assert!(sdp.contains("m=video 30000 TCP/RTP/AVP 96"));
        assert!(sdp.contains("a=setup:passive"));
        assert!(sdp.contains("y=0200000001"));
        assert!(!sdp.contains("u="));
        let pb = Offer {
            kind: SessionKind::Download {
                start: 1700000000,
                end: 1700003600,
                speed: 4,
            },
            ..offer
        }
        .to_sdp();
        assert!(pb.contains("s=Download\r\nu=34020000001320000001:0\r\n"));
        assert!(pb.contains("t=1700000000 1700003600"));
        assert!(pb.contains("a=downloadspeed:4"));

        let answer = "v=0\r\no=34020000001320000001 0 0 IN IP4 10.0.0.5\r\ns=Play\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=video 15062 TCP/RTP/AVP 96\r\na=sendonly\r\na=setup:active\r\na=rtpmap:96 PS/90000\r\ny=0100000009\r\nf=\r\n";
        let a = Answer::parse(answer.as_bytes()).unwrap();
        assert_eq!(a.ip, "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(a.port, 15062);
        assert!(a.tcp);
        assert_eq!(a.setup.as_deref(), Some("active"));
        assert_eq!(a.ssrc, Some(100000009));
        assert_eq!(a.rtpmap, vec![(96, "PS".to_owned())]);
    }

    #[test]
    fn bad_answers() {
        assert_eq!(
            Answer::parse(b"v=0\r\nc=IN IP4 1.2.3.4\r\n"),
            Err(SdpError::Missing("m=video"))
        );
        assert_eq!(Answer::parse(b"m=video 5 RTP/AVP 96\r\n"), Err(SdpError::Missing("c=")));
        assert!(matches!(Answer::parse(&[b'a'; 9000]), Err(SdpError::TooLong(_))));
        assert_eq!(parse_ssrc("99999999999"), None);
        assert_eq!(parse_ssrc("4294967296"), None);
        assert_eq!(parse_ssrc("null"), None);
        let a = Answer::parse(b"c=IN IP4 1.2.3.4\r\nm=video 5 RTP/AVP 96\r\ny=null\r\n").unwrap();
        assert_eq!(a.ssrc, None);
        for cut in 0..40 {
            let _ = Answer::parse(&b"c=IN IP4 1.2.3.4\r\nm=video 5 RTP/AVP 96\r\n"[..cut]);
        }
    }

    #[test]
    fn ssrcs_follow_the_layout() {
        let mut a = SsrcAllocator::new("3402000000");
        assert_eq!(a.allocate(false), "0200000001");
        assert_eq!(a.allocate(true), "1200000002");
        assert_eq!(parse_ssrc("0100000001"), Some(0x05F5_E101));
    }
}
