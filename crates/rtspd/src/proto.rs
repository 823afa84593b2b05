//! The RTSP protocol of the re-serve, with no sockets: taking requests off a byte buffer, what a
//! request asks for (stream, credentials, transport), and the responses and SDP.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use media::{StreamId, StreamKind, StreamParams};
use rtsp_types::{Method, Request, Response, StatusCode, Version, headers};

/// Requests larger than this are refused: it bounds memory per connection.
pub const MAX_REQUEST: usize = 16 * 1024;

pub use crate::framing::Parsed;

/// Takes the next request off the front of `buf` (at most [`MAX_REQUEST`] bytes).
pub fn parse_next(buf: &mut Vec<u8>) -> Parsed {
    crate::framing::parse_next(buf, MAX_REQUEST)
}

/// What a request's URL names: `rtsp://HOST:PORT/cameras/{id}[/sub][/trackID=0][?token=...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The stream.
    pub stream: StreamId,
    /// A media token from the query, if any.
    pub token: Option<String>,
}

/// Why a URL names no stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// No URL, or not `/cameras/{id}[/sub]`.
    NotFound,
}

/// Reads the stream and token from a request URL.
pub fn target(url: Option<&url::Url>) -> Result<Target, TargetError> {
    let url = url.ok_or(TargetError::NotFound)?;
    let segs: Vec<&str> = url
        .path_segments()
        .ok_or(TargetError::NotFound)?
        .filter(|s| !s.is_empty())
        .collect();
    let (camera, rest) = match segs.as_slice() {
        ["cameras", id, rest @ ..] => (*id, rest),
        _ => return Err(TargetError::NotFound),
    };
    // The SETUP URL carries the track control after the stream.
    let rest: Vec<&str> = rest.iter().copied().filter(|s| !s.starts_with("trackID=")).collect();
    let kind = match rest.as_slice() {
        [] | ["main"] => StreamKind::Main,
        ["sub"] => StreamKind::Sub,
        _ => return Err(TargetError::NotFound),
    };
    let camera = percent_decode(camera).ok_or(TargetError::NotFound)?;
    if camera.is_empty() || camera.len() > 128 || camera.contains(['/', '\0']) {
        return Err(TargetError::NotFound);
    }
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    Ok(Target {
        stream: StreamId::new(camera, kind),
        token,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

/// `user:password` from an `Authorization: Basic` header.
pub fn basic_credentials(req: &Request<Vec<u8>>) -> Option<(String, String)> {
    let value = req.header(&headers::AUTHORIZATION)?.as_str();
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// How the client asked to receive media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Interleaved in the RTSP connection: RTP on this channel, RTCP on the next.
    Interleaved {
        /// RTP channel.
        rtp: u8,
    },
    /// UDP to these client ports.
    Udp {
        /// Client RTP port.
        rtp: u16,
        /// Client RTCP port.
        rtcp: u16,
    },
}

/// The transport the client asks for in SETUP (the first RTP/AVP one), or `None`.
pub fn requested_transport(req: &Request<Vec<u8>>) -> Option<Transport> {
    let Ok(Some(transports)) = req.typed_header::<headers::Transports>() else {
        return None;
    };
    transports.iter().find_map(|t| match t {
        headers::Transport::Rtp(r) => {
            if matches!(r.lower_transport, Some(headers::RtpLowerTransport::Tcp)) {
                let (a, _) = r.params.interleaved.unwrap_or((0, Some(1)));
                Some(Transport::Interleaved { rtp: a })
            } else {
                let (rtp, rtcp) = r.params.client_port?;
                Some(Transport::Udp {
                    rtp,
                    rtcp: rtcp.unwrap_or(rtp.wrapping_add(1)),
                })
            }
        }
        _ => None,
    })
}

/// The `Transport` header answering `t`; `server_rtp` is our UDP RTP port.
pub fn transport_reply(t: Transport, server_rtp: Option<u16>) -> String {
    match t {
        Transport::Interleaved { rtp } => {
            format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{}", rtp.wrapping_add(1))
        }
        Transport::Udp { rtp, rtcp } => {
            let s = server_rtp.unwrap_or(0);
            format!(
                "RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port={s}-{}",
                s.wrapping_add(1)
            )
        }
    }
}

/// The SDP describing a stream with `params`.
pub fn sdp(stream: &StreamId, params: &StreamParams, origin_ip: std::net::IpAddr) -> String {
    let fps = params
        .frame_rate()
        .map(|r| format!("a=framerate:{:.3}\r\n", r.fps()))
        .unwrap_or_default();
    format!(
        "v=0\r\no=- {id} 1 IN {ipv} {ip}\r\ns=sharpeye {stream}\r\nc=IN {ipv} {any}\r\nt=0 0\r\n\
         a=control:*\r\na=tool:sharpeye\r\na=range:npt=now-\r\nm=video 0 RTP/AVP 96\r\n\
         a=rtpmap:96 {enc}/90000\r\na=fmtp:96 {fmtp}\r\n{fps}a=control:trackID=0\r\n",
        id = rand::random::<u32>(),
        ipv = if origin_ip.is_ipv4() { "IP4" } else { "IP6" },
        ip = origin_ip,
        any = if origin_ip.is_ipv4() { "0.0.0.0" } else { "::" },
        enc = media::rtp::encoding_name(params.codec()),
        fmtp = media::rtp::fmtp(params),
    )
}

/// A response with `status` and no body.
pub fn reply(status: StatusCode) -> Response<Vec<u8>> {
    Response::builder(Version::V1_0, status).build(Vec::new())
}

/// The methods this server answers.
pub const PUBLIC: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER";

/// The method name, for logs.
pub fn method_name(m: &Method) -> &str {
    m.into()
}

/// Lower-cased parameter map of a header value like `k="v", k2=v2` (for logs and tests).
pub fn params(s: &str) -> HashMap<String, String> {
    s.split([',', ';'])
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Request<Vec<u8>> {
        let mut buf = text.as_bytes().to_vec();
        match parse_next(&mut buf) {
            Parsed::Request(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn targets_name_camera_stream_and_token() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let t = target(Some(&u("rtsp://h:1/cameras/cam%2D1/sub/trackID=0?token=abc"))).unwrap();
        assert_eq!(t.stream, StreamId::new("cam-1", StreamKind::Sub));
        assert_eq!(t.token.as_deref(), Some("abc"));
        assert_eq!(
            target(Some(&u("rtsp://h:1/cameras/c"))).unwrap().stream,
            StreamId::main("c")
        );
        for bad in [
            "rtsp://h:1/",
            "rtsp://h:1/cam0",
            "rtsp://h:1/cameras/",
            "rtsp://h:1/cameras/c/other",
            "rtsp://h:1/cameras/a%2Fb",
            "rtsp://h:1/cameras/%00",
        ] {
            assert_eq!(target(Some(&u(bad))), Err(TargetError::NotFound), "{bad}");
        }
        assert_eq!(target(None), Err(TargetError::NotFound));
    }

    #[test]
    fn transports_and_credentials_are_read() {
        let r = req(
            "SETUP rtsp://h/cameras/c/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nAuthorization: Basic YWRtaW46c2VjcmV0\r\n\r\n",
        );
        assert_eq!(requested_transport(&r), Some(Transport::Interleaved { rtp: 2 }));
        assert_eq!(basic_credentials(&r), Some(("admin".into(), "secret".into())));
        let r = req(
            "SETUP rtsp://h/cameras/c RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
        );
        assert_eq!(requested_transport(&r), Some(Transport::Udp { rtp: 5000, rtcp: 5001 }));
        assert_eq!(basic_credentials(&r), None);
        let r = req("SETUP rtsp://h/cameras/c RTSP/1.0\r\nCSeq: 3\r\nTransport: garbage\r\n\r\n");
        assert_eq!(requested_transport(&r), None);
    }

    #[test]
    fn hostile_input_is_bad_or_incomplete_never_a_panic() {
        let mut b = b"$\x00\x00\x04abcdOPTIONS rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec();
        assert!(matches!(parse_next(&mut b), Parsed::Ignored));
        assert!(matches!(parse_next(&mut b), Parsed::Request(_)));
        let mut b = b"$\x00\xff".to_vec();
        assert!(matches!(parse_next(&mut b), Parsed::Incomplete));
        let mut b = vec![b'A'; MAX_REQUEST + 10];
        assert!(matches!(parse_next(&mut b), Parsed::Bad));
        let mut b = b"\x00\x01\x02\r\n\r\n".to_vec();
        assert!(matches!(parse_next(&mut b), Parsed::Bad));
        let mut b = b"DESCRIBE rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\n".to_vec();
        assert!(!matches!(parse_next(&mut b), Parsed::Request(_)));
        let r = req("SETUP rtsp://h/cameras/c RTSP/1.0\r\nCSeq: 3\r\nAuthorization: Basic !!!\r\n\r\n");
        assert_eq!(basic_credentials(&r), None);
    }
}
