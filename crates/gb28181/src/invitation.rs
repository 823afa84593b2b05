//! An upper platform's INVITE offer, and our answer (gb28181-notes.md §4 and §6.4): which
//! channel, live or a recorded range, sub-stream or main, where the media goes and who opens
//! the TCP connection, and the SSRC.
//!
//! Lenient on what uppers send in the wild (four dialects of sub-stream selection, `y=` absent,
//! the channel only in `u=`), strict on what would make us send to nowhere: no `m=video`, a
//! port that is not one, no address.

use std::net::{IpAddr, SocketAddr};

use crate::sdp::{SdpError, SessionKind, parse_ssrc};

/// Longest SDP accepted.
const MAX_SDP: usize = 8 * 1024;
/// Fastest download speed honoured.
pub const MAX_DOWNLOAD_SPEED: u32 = 16;

/// How the media reaches the upper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpperMedia {
    /// RTP over UDP to this address.
    Udp(SocketAddr),
    /// RTP over TCP: the upper listens (`a=setup:passive` in its offer); we connect to this
    /// address once it has ACKed.
    WeConnect(SocketAddr),
    /// RTP over TCP: the upper connects (`a=setup:active`) to the port we answer.
    TheyConnect,
}

impl UpperMedia {
    /// `udp`, `tcp-active` (we connect) or `tcp-passive` (we listen), as logs and the API say.
    pub fn as_str(&self) -> &'static str {
        match self {
            UpperMedia::Udp(_) => "udp",
            UpperMedia::WeConnect(_) => "tcp-active",
            UpperMedia::TheyConnect => "tcp-passive",
        }
    }
}

/// What the upper asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// Live, playback or download, with the range (Unix seconds) and download speed.
    pub kind: SessionKind,
    /// The channel in `u=` (playback and download), when given.
    pub channel: Option<String>,
    /// Where media goes.
    pub media: UpperMedia,
    /// `y=` as offered (10 digits), when it is one.
    pub ssrc: Option<String>,
    /// The sub-stream was asked for (`a=streamnumber:1`, `a=stream:1`, `a=streamprofile:1`,
    /// `a=streamMode:SUB`).
    pub sub: bool,
    /// The offer's `o=` user (the upper's id, usually).
    pub origin: String,
}

fn stream_number(v: &str) -> Option<bool> {
    let (k, val) = v.split_once(':')?;
    let val = val.trim();
    match k.trim().to_ascii_lowercase().as_str() {
        "streamnumber" | "stream" | "streamprofile" => Some(val.parse::<u32>().ok()? >= 1),
        "streammode" => Some(val.eq_ignore_ascii_case("sub")),
        _ => None,
    }
}

impl Invitation {
    /// Parses the upper's offer.
    pub fn parse(body: &[u8]) -> Result<Invitation, SdpError> {
        if body.len() > MAX_SDP {
            return Err(SdpError::TooLong(body.len()));
        }
        let text = String::from_utf8_lossy(body);
        let (mut session_ip, mut media_ip): (Option<IpAddr>, Option<IpAddr>) = (None, None);
        let mut media: Option<(u16, bool)> = None;
        let mut name = String::new();
        let mut channel = None;
        let mut times = (0i64, 0i64);
        let mut setup = None;
        let mut speed = 1u32;
        let mut ssrc = None;
        let mut sub = false;
        let mut origin = String::new();
        for line in text.lines().map(str::trim) {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k {
                "o" => origin = v.split_whitespace().next().unwrap_or("").chars().take(32).collect(),
                "s" => name = v.trim().to_ascii_lowercase(),
                "u" => {
                    channel = v
                        .split(':')
                        .next()
                        .map(str::trim)
                        .filter(|c| crate::sipcore::valid_id(c))
                        .map(str::to_owned)
                }
                "c" => {
                    let ip = crate::sdp::connection_ip(v);
                    if media.is_some() {
                        media_ip = ip;
                    } else {
                        session_ip = ip;
                    }
                }
                "t" => {
                    let mut p = v.split_whitespace().map(|x| x.parse::<i64>());
                    if let (Some(Ok(a)), Some(Ok(b))) = (p.next(), p.next()) {
                        times = (a, b);
                    }
                }
                "m" if media.is_none() => {
                    let mut p = v.split_whitespace();
                    if p.next() == Some("video") {
                        let port = p
                            .next()
                            .and_then(|x| x.split('/').next()?.parse::<u16>().ok())
                            .ok_or(SdpError::Missing("m=video port"))?;
                        let tcp = p.next().unwrap_or("").to_ascii_uppercase().starts_with("TCP");
                        media = Some((port, tcp));
                    }
                }
                "a" => {
                    if let Some(s) = v.strip_prefix("setup:") {
                        setup = Some(s.trim().to_ascii_lowercase());
                    } else if let Some(s) = v.strip_prefix("downloadspeed:") {
                        speed = s.trim().parse::<u32>().unwrap_or(1).clamp(1, MAX_DOWNLOAD_SPEED);
                    } else if let Some(s) = stream_number(v) {
                        sub |= s;
                    }
                }
                "y" => ssrc = parse_ssrc(v).map(|_| v.trim().to_owned()),
                _ => {}
            }
        }
        let (port, tcp) = media.ok_or(SdpError::Missing("m=video"))?;
        let ip = media_ip.or(session_ip).ok_or(SdpError::Missing("c="))?;
        if ip.is_unspecified() && !(tcp && setup.as_deref() == Some("active")) {
            return Err(SdpError::Missing("c= address to send to"));
        }
        let kind = match name.as_str() {
            "playback" | "download" if times.1 <= times.0 || times.0 <= 0 => return Err(SdpError::Missing("t= range")),
            "playback" => SessionKind::Playback {
                start: times.0,
                end: times.1,
            },
            "download" => SessionKind::Download {
                start: times.0,
                end: times.1,
                speed,
            },
            _ => SessionKind::Play,
        };
        let media = match (tcp, setup.as_deref()) {
            (false, _) if port == 0 => return Err(SdpError::Missing("m=video port")),
            (false, _) => UpperMedia::Udp(SocketAddr::new(ip, port)),
            // The upper connects to us: its own port does not matter.
            (true, Some("active")) => UpperMedia::TheyConnect,
            (true, _) if port == 0 => return Err(SdpError::Missing("m=video port")),
            (true, _) => UpperMedia::WeConnect(SocketAddr::new(ip, port)),
        };
        Ok(Invitation {
            kind,
            channel,
            media,
            ssrc,
            sub,
            origin,
        })
    }
}

/// Our answer to an [`Invitation`]: we send (`a=sendonly`) PS (payload type 96) from `ip` and
/// `port` (the port the upper connects to when it is the TCP client), as `channel`, with
/// `ssrc` (never `y=null`, never port 0).
pub fn answer_sdp(channel: &str, ip: IpAddr, port: u16, inv: &Invitation, ssrc: &str) -> String {
    let ipv = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let (name, times) = match inv.kind {
        SessionKind::Play => ("Play", "0 0".to_owned()),
        SessionKind::Playback { start, end } => ("Playback", format!("{start} {end}")),
        SessionKind::Download { start, end, .. } => ("Download", format!("{start} {end}")),
    };
    let proto = match inv.media {
        UpperMedia::Udp(_) => "RTP/AVP",
        _ => "TCP/RTP/AVP",
    };
    let mut s = format!(
        "v=0\r\no={channel} 0 0 IN {ipv} {ip}\r\ns={name}\r\nc=IN {ipv} {ip}\r\nt={times}\r\nm=video {} {proto} 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\n",
        port.max(1)
    );
    match inv.media {
        UpperMedia::Udp(_) => {}
        UpperMedia::WeConnect(_) => s.push_str("a=setup:active\r\na=connection:new\r\n"),
        UpperMedia::TheyConnect => s.push_str("a=setup:passive\r\na=connection:new\r\n"),
    }
    if let SessionKind::Download { speed, .. } = inv.kind {
        s.push_str(&format!("a=downloadspeed:{speed}\r\n"));
    }
    s.push_str(&format!("y={ssrc}\r\nf=v/2/////a///\r\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "v=0\r\no=34020000002000000099 0 0 IN IP4 10.1.0.2\r\ns=Play\r\nc=IN IP4 10.1.0.2\r\nt=0 0\r\nm=video 30000 RTP/AVP 96 98 97\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0100000001\r\n";

    #[test]
    fn live_udp_with_ssrc() {
        let i = Invitation::parse(LIVE.as_bytes()).unwrap();
        assert_eq!(i.kind, SessionKind::Play);
        assert_eq!(i.media, UpperMedia::Udp("10.1.0.2:30000".parse().unwrap()));
        assert_eq!(i.ssrc.as_deref(), Some("0100000001"));
        assert!(!i.sub);
        assert_eq!(i.origin, "34020000002000000099");
        let a = answer_sdp(
            "34020000001320000001",
            "10.0.0.5".parse().unwrap(),
            40000,
            &i,
            "0100000001",
        );
        assert!(a.contains("m=video 40000 RTP/AVP 96\r\n") && a.contains("a=sendonly") && a.contains("y=0100000001"));
        assert!(!a.contains("setup"));
    }

    #[test]
    fn tcp_roles_are_complementary_and_ports_never_zero() {
        let passive = LIVE.replace("RTP/AVP 96 98 97", "TCP/RTP/AVP 96") + "a=setup:passive\r\n";
        let i = Invitation::parse(passive.as_bytes()).unwrap();
        assert_eq!(i.media, UpperMedia::WeConnect("10.1.0.2:30000".parse().unwrap()));
        let a = answer_sdp("c", "10.0.0.5".parse().unwrap(), 0, &i, "1");
        assert!(
            a.contains("a=setup:active") && a.contains("m=video 1 TCP/RTP/AVP 96"),
            "{a}"
        );
        let active = LIVE.replace("m=video 30000 RTP/AVP 96 98 97", "m=video 0 TCP/RTP/AVP 96") + "a=setup:active\r\n";
        let i = Invitation::parse(active.as_bytes()).unwrap();
        assert_eq!(i.media, UpperMedia::TheyConnect);
        assert!(answer_sdp("c", "10.0.0.5".parse().unwrap(), 41000, &i, "1").contains("a=setup:passive"));
    }

    #[test]
    fn sub_stream_in_every_dialect() {
        for attr in [
            "a=streamnumber:1",
            "a=stream:1",
            "a=streamprofile:1",
            "a=streamMode:SUB",
        ] {
            let i = Invitation::parse(format!("{LIVE}{attr}\r\n").as_bytes()).unwrap();
            assert!(i.sub, "{attr}");
        }
        for attr in ["a=streamnumber:0", "a=streamMode:MAIN", "a=stream:x"] {
            let i = Invitation::parse(format!("{LIVE}{attr}\r\n").as_bytes()).unwrap();
            assert!(!i.sub, "{attr}");
        }
    }

    #[test]
    fn playback_and_download() {
        let pb = LIVE
            .replace("s=Play", "s=Playback\r\nu=34020000001320000001:0")
            .replace("t=0 0", "t=1700000000 1700000060")
            .replace("y=0100000001", "y=1100000001");
        let i = Invitation::parse(pb.as_bytes()).unwrap();
        assert_eq!(
            i.kind,
            SessionKind::Playback {
                start: 1_700_000_000,
                end: 1_700_000_060
            }
        );
        assert_eq!(i.channel.as_deref(), Some("34020000001320000001"));
        let dl = pb.replace("s=Playback", "s=Download") + "a=downloadspeed:4\r\n";
        let i = Invitation::parse(dl.as_bytes()).unwrap();
        assert_eq!(
            i.kind,
            SessionKind::Download {
                start: 1_700_000_000,
                end: 1_700_000_060,
                speed: 4
            }
        );
        assert!(answer_sdp("c", "10.0.0.5".parse().unwrap(), 5, &i, "1100000001").contains("a=downloadspeed:4"));
        let huge = dl.replace("downloadspeed:4", "downloadspeed:4096");
        assert!(matches!(
            Invitation::parse(huge.as_bytes()).unwrap().kind,
            SessionKind::Download { speed: 16, .. }
        ));
    }

    #[test]
    fn hostile_offers_are_errors() {
        let no_m = LIVE.replace("m=video 30000 RTP/AVP 96 98 97\r\n", "");
        assert_eq!(Invitation::parse(no_m.as_bytes()), Err(SdpError::Missing("m=video")));
        for bad in [
            "m=video 99999 RTP/AVP 96",
            "m=video -1 RTP/AVP 96",
            "m=video x RTP/AVP 96",
            "m=video 0 RTP/AVP 96",
        ] {
            let s = LIVE.replace("m=video 30000 RTP/AVP 96 98 97", bad);
            assert!(Invitation::parse(s.as_bytes()).is_err(), "{bad}");
        }
        let zero_ip = LIVE.replace("c=IN IP4 10.1.0.2", "c=IN IP4 0.0.0.0");
        assert!(Invitation::parse(zero_ip.as_bytes()).is_err());
        let backwards = LIVE.replace("s=Play", "s=Playback").replace("t=0 0", "t=20 10");
        assert_eq!(
            Invitation::parse(backwards.as_bytes()),
            Err(SdpError::Missing("t= range"))
        );
        let null = LIVE.replace("y=0100000001", "y=null");
        assert_eq!(Invitation::parse(null.as_bytes()).unwrap().ssrc, None);
        assert!(Invitation::parse(&[b'a'; 9000]).is_err());
        for cut in 0..LIVE.len() {
            let _ = Invitation::parse(&LIVE.as_bytes()[..cut]);
        }
    }
}
