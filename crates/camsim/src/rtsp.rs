//! The RTSP side of a simulated camera: request parsing and responses, with no sockets.
//!
//! [`Conn`] holds one client connection's protocol state; [`Conn::handle`] turns one request
//! into a response and an [`Action`] for the I/O layer. The one concession to I/O is binding a
//! UDP socket pair at SETUP, because the response must name the ports.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use md5::{Digest, Md5};
use rtsp_types::{Method, Request, Response, StatusCode, Version, headers};

use crate::camera::CameraState;

/// Requests larger than this are refused: no camera needs more, and it bounds memory.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;

/// How media of a set-up session is carried.
#[derive(Debug)]
pub(crate) enum SetupTransport {
    /// Interleaved in the RTSP connection on this channel (RTCP on the next).
    Interleaved { rtp_channel: u8 },
    /// UDP from `socket` to the client's RTP port.
    Udp { socket: UdpSocket, client: SocketAddr },
}

/// What the I/O layer must do after sending the response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing more.
    None,
    /// Start streaming with these initial RTP sequence number and timestamp.
    Play { seq: u16, rtptime: u32 },
    /// Close the connection.
    Close,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub camera: Option<Arc<CameraState>>,
    pub transport: Option<SetupTransport>,
    pub playing: bool,
    session_id: String,
    nonce: String,
    local: SocketAddr,
    peer: SocketAddr,
}

impl Conn {
    pub fn new(local: SocketAddr, peer: SocketAddr) -> Self {
        Conn {
            camera: None,
            transport: None,
            playing: false,
            session_id: format!("{:016X}", rand::random::<u64>()),
            nonce: format!("{:032x}", rand::random::<u128>()),
            local,
            peer,
        }
    }

    /// Answers one request.
    pub fn handle(
        &mut self,
        req: &Request<Vec<u8>>,
        cameras: &HashMap<String, Arc<CameraState>>,
    ) -> (Response<Vec<u8>>, Action) {
        let cseq = req.header(&headers::CSEQ).map(|v| v.as_str().to_owned());
        let (mut resp, action) = self.respond(req, cameras);
        if let Some(c) = cseq {
            resp.insert_header(headers::CSEQ, c);
        }
        resp.insert_header(headers::SERVER, "sharpeye-camsim");
        (resp, action)
    }

    fn respond(
        &mut self,
        req: &Request<Vec<u8>>,
        cameras: &HashMap<String, Arc<CameraState>>,
    ) -> (Response<Vec<u8>>, Action) {
        let status = |s| (Response::builder(Version::V1_0, s).build(Vec::new()), Action::None);
        if let Method::Options = req.method() {
            let r = Response::builder(Version::V1_0, StatusCode::Ok)
                .header(
                    headers::PUBLIC,
                    "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
                )
                .build(Vec::new());
            return (r, Action::None);
        }
        let path = req
            .request_uri()
            .and_then(|u| u.path_segments())
            .and_then(|mut s| s.find(|p| !p.is_empty()))
            .map(str::to_owned);
        let Some(camera) = path.and_then(|p| cameras.get(&p).cloned()) else {
            return status(StatusCode::NotFound);
        };
        if let Some(bound) = &self.camera
            && !Arc::ptr_eq(bound, &camera)
        {
            return status(StatusCode::AggregateOperationNotAllowed);
        }
        if let Some((user, pass)) = &camera.spec.credentials
            && !self.authorized(req, user, pass)
        {
            let r = Response::builder(Version::V1_0, StatusCode::Unauthorized)
                .header(
                    headers::WWW_AUTHENTICATE,
                    format!("Digest realm=\"camsim\", nonce=\"{}\"", self.nonce),
                )
                .build(Vec::new());
            return (r, Action::None);
        }
        match req.method() {
            Method::Describe => {
                let base = format!("rtsp://{}/{}/", self.local, camera.spec.path);
                let sdp = self.sdp(&camera);
                self.camera = Some(camera);
                let r = Response::builder(Version::V1_0, StatusCode::Ok)
                    .header(headers::CONTENT_TYPE, "application/sdp")
                    .header(headers::CONTENT_BASE, base)
                    .build(sdp.into_bytes());
                (r, Action::None)
            }
            Method::Setup => self.setup(req, camera),
            Method::Play => {
                if self.transport.is_none() {
                    return status(StatusCode::MethodNotValidInThisState);
                }
                let (seq, rtptime) = (rand::random::<u16>(), rand::random::<u32>());
                self.playing = true;
                let url = format!("rtsp://{}/{}/trackID=0", self.local, camera.spec.path);
                let r = Response::builder(Version::V1_0, StatusCode::Ok)
                    .header(headers::SESSION, self.session_id.clone())
                    .header(headers::RANGE, "npt=now-")
                    .header(headers::RTP_INFO, format!("url={url};seq={seq};rtptime={rtptime}"))
                    .build(Vec::new());
                (r, Action::Play { seq, rtptime })
            }
            Method::GetParameter | Method::SetParameter => {
                let r = Response::builder(Version::V1_0, StatusCode::Ok)
                    .header(headers::SESSION, self.session_id.clone())
                    .build(Vec::new());
                (r, Action::None)
            }
            Method::Teardown => {
                let r = Response::builder(Version::V1_0, StatusCode::Ok).build(Vec::new());
                (r, Action::Close)
            }
            _ => status(StatusCode::MethodNotAllowed),
        }
    }

    fn setup(&mut self, req: &Request<Vec<u8>>, camera: Arc<CameraState>) -> (Response<Vec<u8>>, Action) {
        let status = |s| (Response::builder(Version::V1_0, s).build(Vec::new()), Action::None);
        let Ok(Some(transports)) = req.typed_header::<headers::Transports>() else {
            return status(StatusCode::UnsupportedTransport);
        };
        let rtp = transports.iter().find_map(|t| match t {
            headers::Transport::Rtp(r) => Some(r),
            _ => None,
        });
        let Some(rtp) = rtp else {
            return status(StatusCode::UnsupportedTransport);
        };
        let tcp = matches!(rtp.lower_transport, Some(headers::RtpLowerTransport::Tcp));
        let (transport, reply) = if tcp {
            let (a, b) = rtp.params.interleaved.unwrap_or((0, Some(1)));
            let b = b.unwrap_or(a.wrapping_add(1));
            (
                SetupTransport::Interleaved { rtp_channel: a },
                format!("RTP/AVP/TCP;unicast;interleaved={a}-{b}"),
            )
        } else {
            let Some((client_rtp, client_rtcp)) = rtp.params.client_port else {
                return status(StatusCode::UnsupportedTransport);
            };
            let client_rtcp = client_rtcp.unwrap_or(client_rtp.wrapping_add(1));
            let Some((sock, rtp_port)) = bind_udp_pair(self.local.ip()) else {
                return status(StatusCode::InternalServerError);
            };
            let (a, b) = (rtp_port, rtp_port + 1);
            (
                SetupTransport::Udp {
                    socket: sock,
                    client: SocketAddr::new(self.peer.ip(), client_rtp),
                },
                format!("RTP/AVP;unicast;client_port={client_rtp}-{client_rtcp};server_port={a}-{b}"),
            )
        };
        self.transport = Some(transport);
        self.camera = Some(camera);
        let r = Response::builder(Version::V1_0, StatusCode::Ok)
            .header(headers::TRANSPORT, reply)
            .header(headers::SESSION, format!("{};timeout=60", self.session_id))
            .build(Vec::new());
        (r, Action::None)
    }

    fn sdp(&self, camera: &CameraState) -> String {
        let fixture = camera.knobs().fixture.clone();
        format!(
            "v=0\r\no=- {id} 1 IN IP4 {ip}\r\ns=camsim {path}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=control:*\r\na=tool:sharpeye-camsim\r\nm=video 0 RTP/AVP 96\r\n\
             a=rtpmap:96 {enc}/90000\r\na=fmtp:96 {fmtp}\r\na=framerate:{fps}\r\na=control:trackID=0\r\n",
            id = rand::random::<u32>(),
            ip = self.local.ip(),
            path = camera.spec.path,
            enc = fixture.encoding_name(),
            fmtp = fixture.fmtp,
            fps = 90_000 / fixture.frame_ticks.max(1),
        )
    }

    fn authorized(&self, req: &Request<Vec<u8>>, user: &str, pass: &str) -> bool {
        let Some(value) = req.header(&headers::AUTHORIZATION) else {
            return false;
        };
        let Some(params) = value.as_str().strip_prefix("Digest ") else {
            return false;
        };
        let p = parse_auth_params(params);
        let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
        if get("username") != user || get("nonce") != self.nonce {
            return false;
        }
        let hex = |s: String| format!("{:x}", Md5::digest(s.as_bytes()));
        let ha1 = hex(format!("{user}:{}:{pass}", get("realm")));
        let ha2 = hex(format!("{}:{}", method_name(req.method()), get("uri")));
        let expected = match p.get("qop") {
            Some(qop) => hex(format!(
                "{ha1}:{}:{}:{}:{qop}:{ha2}",
                self.nonce,
                get("nc"),
                get("cnonce")
            )),
            None => hex(format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        get("realm") == "camsim" && get("response") == expected
    }
}

/// Binds an RTP socket on an even port whose odd neighbour (RTCP) is free too, as RFC 3550
/// expects and clients check. The RTCP socket is only probed, not kept: camsim sends no RTCP.
fn bind_udp_pair(ip: std::net::IpAddr) -> Option<(UdpSocket, u16)> {
    for _ in 0..100 {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).ok()?;
        let port = sock.local_addr().ok()?.port();
        if port % 2 == 0 && port < u16::MAX && UdpSocket::bind(SocketAddr::new(ip, port + 1)).is_ok() {
            return Some((sock, port));
        }
    }
    None
}

fn method_name(m: &Method) -> &str {
    m.into()
}

/// Parses `k="v", k2=v2` authentication parameters.
fn parse_auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            value = quoted[..end].to_owned();
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.insert(key, value);
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use rtspd::framing::{Parsed, parse_next};

    use super::*;
    use crate::camera::CameraSpec;
    use crate::fixture::BuiltinFixture;

    fn cams(creds: Option<(&str, &str)>) -> HashMap<String, Arc<CameraState>> {
        let mut spec = CameraSpec::new("cam0", BuiltinFixture::H264_240p.load());
        spec.credentials = creds.map(|(u, p)| (u.to_owned(), p.to_owned()));
        HashMap::from([("cam0".to_owned(), CameraState::new(spec))])
    }

    fn req(text: &str) -> Request<Vec<u8>> {
        let mut buf = text.as_bytes().to_vec();
        match parse_next(&mut buf, MAX_REQUEST) {
            Parsed::Request(r) => *r,
            _ => panic!("not a request: {text}"),
        }
    }

    fn conn() -> Conn {
        Conn::new("127.0.0.1:554".parse().unwrap(), "127.0.0.1:40000".parse().unwrap())
    }

    #[test]
    fn describe_setup_play_over_tcp() {
        let cams = cams(None);
        let mut c = conn();
        let (r, _) = c.handle(
            &req("DESCRIBE rtsp://127.0.0.1:554/cam0 RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            &cams,
        );
        assert_eq!(r.status(), StatusCode::Ok);
        let sdp = String::from_utf8(r.body().clone()).unwrap();
        assert!(
            sdp.contains("H264/90000") && sdp.contains("sprop-parameter-sets="),
            "{sdp}"
        );
        let (r, _) = c.handle(
            &req("SETUP rtsp://127.0.0.1:554/cam0/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"),
            &cams,
        );
        assert_eq!(r.status(), StatusCode::Ok);
        assert!(
            r.header(&headers::TRANSPORT)
                .unwrap()
                .as_str()
                .contains("interleaved=0-1")
        );
        let (r, a) = c.handle(
            &req("PLAY rtsp://127.0.0.1:554/cam0/ RTSP/1.0\r\nCSeq: 3\r\n\r\n"),
            &cams,
        );
        assert_eq!(r.status(), StatusCode::Ok);
        assert!(matches!(a, Action::Play { .. }));
        assert_eq!(r.header(&headers::CSEQ).unwrap().as_str(), "3");
    }

    #[test]
    fn unknown_path_is_404_and_play_before_setup_is_455() {
        let cams = cams(None);
        let mut c = conn();
        let (r, _) = c.handle(
            &req("DESCRIBE rtsp://127.0.0.1:554/nope RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            &cams,
        );
        assert_eq!(r.status(), StatusCode::NotFound);
        let (r, _) = c.handle(
            &req("PLAY rtsp://127.0.0.1:554/cam0 RTSP/1.0\r\nCSeq: 2\r\n\r\n"),
            &cams,
        );
        assert_eq!(r.status(), StatusCode::MethodNotValidInThisState);
    }

    #[test]
    fn digest_auth_is_enforced() {
        let cams = cams(Some(("admin", "secret")));
        let mut c = conn();
        let (r, _) = c.handle(
            &req("DESCRIBE rtsp://127.0.0.1:554/cam0 RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            &cams,
        );
        assert_eq!(r.status(), StatusCode::Unauthorized);
        let nonce = c.nonce.clone();
        let hex = |s: String| format!("{:x}", Md5::digest(s.as_bytes()));
        let uri = "rtsp://127.0.0.1:554/cam0";
        let ha1 = hex("admin:camsim:secret".into());
        let ha2 = hex(format!("DESCRIBE:{uri}"));
        let good = hex(format!("{ha1}:{nonce}:{ha2}"));
        let text = format!(
            "DESCRIBE {uri} RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Digest username=\"admin\", realm=\"camsim\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{good}\"\r\n\r\n"
        );
        assert_eq!(c.handle(&req(&text), &cams).0.status(), StatusCode::Ok);
        let bad = text.replace(&good, &"0".repeat(32));
        assert_eq!(c.handle(&req(&bad), &cams).0.status(), StatusCode::Unauthorized);
    }

    #[test]
    fn garbage_input_is_bad_and_partial_input_waits() {
        let mut buf = b"DESCRIBE rtsp://x/cam0 RTSP/1.0\r\nCSeq: 1\r\n".to_vec();
        assert!(matches!(parse_next(&mut buf, MAX_REQUEST), Parsed::Incomplete));
        let mut junk = b"\x01\x02 not rtsp at all\r\n\r\n".to_vec();
        assert!(matches!(parse_next(&mut junk, MAX_REQUEST), Parsed::Bad));
        let mut huge = vec![b'A'; MAX_REQUEST + 10];
        assert!(matches!(parse_next(&mut huge, MAX_REQUEST), Parsed::Bad));
    }

    #[test]
    fn auth_params_parse_quoted_and_bare_values() {
        let p = parse_auth_params(r#"username="a b", qop=auth, nc=00000001, uri="rtsp://x/y,z""#);
        assert_eq!(p["username"], "a b");
        assert_eq!(p["qop"], "auth");
        assert_eq!(p["nc"], "00000001");
        assert_eq!(p["uri"], "rtsp://x/y,z");
    }
}
