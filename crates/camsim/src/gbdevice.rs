//! A simulated GB/T 28181 device (an IPC or a small NVR) for the demo, tests and load runs:
//! registers with digest auth over UDP, keeps alive, answers Catalog, DeviceInfo and
//! RecordInfo, counts PTZ commands, and answers INVITEs for live (`s=Play`), playback
//! (`s=Playback`) and download (`s=Download`) with a fixture muxed as PS over RTP (UDP, or TCP
//! connecting to the platform's passive port, RFC 4571). A playback ends with MediaStatus 121.
//!
//! Signalling uses Sharpeye's own SIP codec; tests also run a third-party device (gb28181-rs)
//! and sipp, so the platform is not only checked against itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gb28181::digest::Credentials;
use gb28181::sip::{self, Framing, Message, StartLine};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Fixture;

/// What a simulated device is.
#[derive(Clone)]
pub struct GbDeviceSpec {
    /// Device id (20 digits).
    pub id: String,
    /// Its password.
    pub password: String,
    /// The platform's SIP address.
    pub platform: SocketAddr,
    /// The platform's id.
    pub platform_id: String,
    /// The SIP domain.
    pub domain: String,
    /// Channels: (id, name). Empty: the device is its own only channel.
    pub channels: Vec<(String, String)>,
    /// Organisation nodes it lists before its channels, as a lower platform does:
    /// (id, name, parent id); a business group (type 215) or virtual organisation (216).
    pub groups: Vec<(String, String, String)>,
    /// A channel's `ParentID` when not the device itself: channel id → parent id.
    pub parents: std::collections::HashMap<String, String>,
    /// Catalog items per answer message (0: all in one); a platform with thousands of
    /// channels answers in many messages with one `SumNum`.
    pub catalog_page: usize,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Video it sends.
    pub fixture: Arc<Fixture>,
    /// Recordings it claims to hold, Unix seconds (RecordInfo answers, playback ranges).
    pub recordings: Vec<(i64, i64)>,
}

/// Counters of a running device.
#[derive(Debug, Default)]
pub struct GbDeviceStats {
    /// Successful registrations.
    pub registered: AtomicU64,
    /// Keepalives answered 200.
    pub keepalives: AtomicU64,
    /// Media sessions started.
    pub invites: AtomicU64,
    /// Media sessions ended by BYE.
    pub byes: AtomicU64,
    /// PTZ commands received.
    pub ptz: AtomicU64,
    /// RTP packets sent.
    pub rtp_packets: AtomicU64,
    /// Playbacks that reached their end (MediaStatus 121 sent).
    pub finished: AtomicU64,
    /// MANSRTSP speed changes received.
    pub scale_changes: AtomicU64,
    /// SUBSCRIBEs received (a platform subscribing to the catalog of a lower platform).
    pub subscriptions: AtomicU64,
}

/// A running simulated device.
pub struct GbDevice {
    /// Its counters.
    pub stats: Arc<GbDeviceStats>,
    task: JoinHandle<()>,
    local: SocketAddr,
    spec: GbDeviceSpec,
    to_sip: mpsc::Sender<Vec<u8>>,
}

impl GbDevice {
    /// Starts a device on a free UDP port of 127.0.0.1.
    pub async fn start(spec: GbDeviceSpec) -> std::io::Result<GbDevice> {
        let sock = UdpSocket::bind(("127.0.0.1", 0)).await?;
        let local = sock.local_addr()?;
        let stats = Arc::new(GbDeviceStats::default());
        let (to_sip, from_media) = mpsc::channel::<Vec<u8>>(64);
        let task = tokio::spawn(run(
            spec.clone(),
            Arc::new(sock),
            stats.clone(),
            to_sip.clone(),
            from_media,
        ));
        Ok(GbDevice {
            stats,
            task,
            local,
            spec,
            to_sip,
        })
    }

    /// Reports an alarm of `channel` (a MANSCDP Alarm Notify: priority 1-4, method 1-7).
    pub async fn alarm(&self, channel: &str, priority: u8, method: u8, description: &str) {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>{}</SN>\r\n<DeviceID>{channel}</DeviceID>\r\n<AlarmPriority>{priority}</AlarmPriority>\r\n<AlarmMethod>{method}</AlarmMethod>\r\n<AlarmTime>2026-11-23T08:00:00</AlarmTime>\r\n<AlarmDescription>{description}</AlarmDescription>\r\n</Notify>\r\n",
            rand::random::<u16>()
        );
        let bytes = gb28181::manscdp::encode_text(&body, gb28181::manscdp::Charset::Gb18030);
        let m = Message {
            start: StartLine::Request {
                method: "MESSAGE".into(),
                uri: format!("sip:{}@{}", self.spec.platform_id, self.spec.domain),
            },
            headers: vec![
                (
                    "Via".into(),
                    format!(
                        "SIP/2.0/UDP {};rport;branch=z9hG4bKal{}",
                        self.local,
                        rand::random::<u32>()
                    ),
                ),
                (
                    "From".into(),
                    format!("<sip:{}@{}>;tag=al", self.spec.id, self.spec.domain),
                ),
                (
                    "To".into(),
                    format!("<sip:{}@{}>", self.spec.platform_id, self.spec.domain),
                ),
                ("Call-ID".into(), format!("alarm-{}", rand::random::<u32>())),
                ("CSeq".into(), "1 MESSAGE".into()),
                ("Max-Forwards".into(), "70".into()),
                ("Content-Type".into(), "Application/MANSCDP+xml".into()),
            ],
            body: Bytes::from(bytes),
        };
        let _ = self.to_sip.send(m.to_bytes()).await;
    }

    /// Its SIP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops it at once (no unregister, as a device that loses power).
    pub fn kill(self) {
        self.task.abort();
    }
}

impl Drop for GbDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Session {
    stop: tokio_util::sync::CancellationToken,
    /// Playback speed × 1000, changed by MANSRTSP `Scale:` in an INFO.
    scale_milli: Arc<AtomicU64>,
}

fn header_value<'a>(m: &'a Message, name: &str) -> &'a str {
    m.header(name).unwrap_or("")
}

fn response(req: &Message, code: u16, reason: &str, tag: &str, extra: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut headers: Vec<(String, String)> = req.headers_named("Via").map(|v| ("Via".into(), v.to_owned())).collect();
    headers.push(("From".into(), header_value(req, "From").to_owned()));
    let mut to = header_value(req, "To").to_owned();
    if !to.contains(";tag=") {
        to.push_str(&format!(";tag={tag}"));
    }
    headers.push(("To".into(), to));
    headers.push(("Call-ID".into(), header_value(req, "Call-ID").to_owned()));
    headers.push(("CSeq".into(), header_value(req, "CSeq").to_owned()));
    for (k, v) in extra {
        headers.push(((*k).to_owned(), v.clone()));
    }
    Message {
        start: StartLine::Response {
            code,
            reason: reason.to_owned(),
        },
        headers,
        body: Bytes::copy_from_slice(body),
    }
    .to_bytes()
}

struct Requester {
    id: String,
    domain: String,
    platform_id: String,
    local: SocketAddr,
    cseq: u32,
    n: u64,
}

impl Requester {
    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn request(
        &mut self,
        method: &str,
        call_id: &str,
        from_tag: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Vec<u8> {
        self.cseq += 1;
        let n = self.next();
        let mut headers = vec![
            (
                "Via".to_owned(),
                format!("SIP/2.0/UDP {};rport;branch=z9hG4bKsim{}{n}", self.local, self.cseq),
            ),
            (
                "From".to_owned(),
                format!("<sip:{}@{}>;tag={from_tag}", self.id, self.domain),
            ),
            ("To".to_owned(), format!("<sip:{}@{}>", self.platform_id, self.domain)),
            ("Call-ID".to_owned(), call_id.to_owned()),
            ("CSeq".to_owned(), format!("{} {method}", self.cseq)),
            ("Max-Forwards".to_owned(), "70".to_owned()),
            ("User-Agent".to_owned(), "camsim-gb".to_owned()),
        ];
        for (k, v) in extra {
            headers.push(((*k).to_owned(), v.clone()));
        }
        Message {
            start: StartLine::Request {
                method: method.to_owned(),
                uri: format!("sip:{}@{}", self.platform_id, self.domain),
            },
            headers,
            body: Bytes::copy_from_slice(body),
        }
        .to_bytes()
    }
}

fn manscdp() -> [(&'static str, String); 1] {
    [("Content-Type", "Application/MANSCDP+xml".to_owned())]
}

/// The catalog answer to query `sn`: groups, then channels, `catalog_page` items per message.
fn catalog_pages(spec: &GbDeviceSpec, channels: &[(String, String)], sn: u64) -> Vec<String> {
    let mut items: Vec<String> = spec
        .groups
        .iter()
        .map(|(id, name, parent)| {
            let bg = if id.get(10..13) == Some("216") {
                // A virtual organisation names its business group: the first 215 above it.
                spec.groups
                    .iter()
                    .find(|(g, _, _)| g.get(10..13) == Some("215"))
                    .map(|(g, _, _)| format!("<BusinessGroupID>{g}</BusinessGroupID>\r\n"))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            format!("<Item>\r\n<DeviceID>{id}</DeviceID>\r\n<Name>{name}</Name>\r\n<ParentID>{parent}</ParentID>\r\n{bg}</Item>\r\n")
        })
        .collect();
    items.extend(channels.iter().map(|(id, name)| {
        let parent = spec.parents.get(id).unwrap_or(&spec.id);
        format!(
            "<Item>\r\n<DeviceID>{id}</DeviceID>\r\n<Name>{name}</Name>\r\n<Manufacturer>camsim</Manufacturer>\r\n<Model>gb</Model>\r\n<Owner>0</Owner>\r\n<CivilCode>340200</CivilCode>\r\n<Address>sim</Address>\r\n<Parental>0</Parental>\r\n<ParentID>{parent}</ParentID>\r\n<RegisterWay>1</RegisterWay>\r\n<Secrecy>0</Secrecy>\r\n<Status>ON</Status>\r\n</Item>\r\n"
        )
    }));
    let total = items.len();
    let page = if spec.catalog_page == 0 {
        total.max(1)
    } else {
        spec.catalog_page
    };
    items
        .chunks(page)
        .map(|chunk| {
            format!(
                "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<SumNum>{total}</SumNum>\r\n<DeviceList Num=\"{}\">\r\n{}</DeviceList>\r\n</Response>\r\n",
                spec.id,
                chunk.len(),
                chunk.concat()
            )
        })
        .collect()
}

fn sn_of(body: &str) -> u64 {
    body.split("<SN>")
        .nth(1)
        .and_then(|r| r.split("</SN>").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn tag_between<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(body[start..end].trim())
}

async fn run(
    spec: GbDeviceSpec,
    sock: Arc<UdpSocket>,
    stats: Arc<GbDeviceStats>,
    to_sip: mpsc::Sender<Vec<u8>>,
    mut from_media: mpsc::Receiver<Vec<u8>>,
) {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut req = Requester {
        id: spec.id.clone(),
        domain: spec.domain.clone(),
        platform_id: spec.platform_id.clone(),
        local,
        cseq: 0,
        n: rand::random::<u32>() as u64,
    };
    let reg_call = format!("reg-{}-{}@{local}", spec.id, rand::random::<u32>());
    let channels: Vec<(String, String)> = if spec.channels.is_empty() {
        vec![(spec.id.clone(), format!("Sim {}", spec.id))]
    } else {
        spec.channels.clone()
    };
    let mut buf = vec![0u8; 65_536];
    let mut sessions: std::collections::HashMap<String, Session> = Default::default();
    let mut registered = false;
    let mut auth: Option<String> = None;
    let mut next_register = tokio::time::Instant::now();
    let mut next_keepalive = tokio::time::Instant::now() + spec.keepalive;
    let mut keepalive_sn = 0u64;
    loop {
        let wake = if registered { next_keepalive } else { next_register };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                if registered {
                    keepalive_sn += 1;
                    let body = format!("<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{keepalive_sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n", spec.id);
                    let call = format!("ka-{}-{keepalive_sn}", spec.id);
                    let m = req.request("MESSAGE", &call, "ka", &manscdp(), body.as_bytes());
                    let _ = sock.send_to(&m, spec.platform).await;
                    // After the first (prompt) one, a random phase: a thousand devices that
                    // registered together do not keep alive in the same second.
                    next_keepalive = if keepalive_sn == 1 {
                        tokio::time::Instant::now() + spec.keepalive.mul_f64(rand::random::<f64>())
                    } else {
                        next_keepalive + spec.keepalive
                    };
                } else {
                    let mut extra = vec![
                        ("Contact", format!("<sip:{}@{local}>", spec.id)),
                        ("Expires", "3600".to_owned()),
                    ];
                    if let Some(a) = &auth {
                        extra.push(("Authorization", a.clone()));
                    }
                    let m = req.request("REGISTER", &reg_call, "reg", &extra, b"");
                    let _ = sock.send_to(&m, spec.platform).await;
                    next_register = tokio::time::Instant::now() + Duration::from_secs(2);
                }
            }
            Some(data) = from_media.recv() => {
                let _ = sock.send_to(&data, spec.platform).await;
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Ok((m, _)) = sip::parse(&buf[..n], Framing::Datagram) else { continue };
                match &m.start {
                    StartLine::Response { code, .. } => {
                        let cseq = header_value(&m, "CSeq");
                        if cseq.ends_with("REGISTER") {
                            match code {
                                401 => {
                                    let www = header_value(&m, "WWW-Authenticate");
                                    let param = |name: &str| {
                                        www.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_owned()
                                    };
                                    let qop = www.contains("qop");
                                    let uri = format!("sip:{}@{}", spec.platform_id, spec.domain);
                                    let mut c = Credentials {
                                        username: spec.id.clone(),
                                        realm: param("realm"),
                                        nonce: param("nonce"),
                                        uri: uri.clone(),
                                        qop: qop.then(|| "auth".to_owned()),
                                        nc: qop.then(|| "00000001".to_owned()),
                                        cnonce: qop.then(|| format!("{:08x}", rand::random::<u32>())),
                                        ..Credentials::default()
                                    };
                                    c.response = c.expected("REGISTER", &spec.password);
                                    let mut a = format!(
                                        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{}\", algorithm=MD5",
                                        c.username, c.realm, c.nonce, c.response
                                    );
                                    if let Some(cn) = &c.cnonce {
                                        a.push_str(&format!(", qop=auth, nc=00000001, cnonce=\"{cn}\""));
                                    }
                                    let retry = auth.is_none();
                                    auth = Some(a);
                                    if retry {
                                        next_register = tokio::time::Instant::now();
                                    }
                                }
                                200 => {
                                    registered = true;
                                    stats.registered.fetch_add(1, Ordering::Relaxed);
                                    // The first keepalive soon after registering (as devices do).
                                    next_keepalive = tokio::time::Instant::now() + Duration::from_millis(100);
                                }
                                _ => {
                                    auth = None;
                                    next_register = tokio::time::Instant::now() + Duration::from_secs(2);
                                }
                            }
                        } else if cseq.ends_with("MESSAGE") && *code == 200 && header_value(&m, "Call-ID").starts_with("ka-") {
                            stats.keepalives.fetch_add(1, Ordering::Relaxed);
                        } else if cseq.ends_with("MESSAGE") && *code == 404 {
                            // The platform forgot us (restart): register again.
                            registered = false;
                            auth = None;
                            next_register = tokio::time::Instant::now();
                        }
                    }
                    StartLine::Request { method, .. } => {
                        let method = method.clone();
                        let tag = format!("d{}", req.next());
                        match method.as_str() {
                            "MESSAGE" => {
                                let _ = sock.send_to(&response(&m, 200, "OK", &tag, &[], b""), from).await;
                                let body = String::from_utf8_lossy(&m.body).into_owned();
                                let sn = sn_of(&body);
                                let answer = if body.contains("<CmdType>Catalog</CmdType>") {
                                    let mut pages = catalog_pages(&spec, &channels, sn);
                                    let last = pages.pop();
                                    for page in pages {
                                        let call = format!("ans-{}-{}", spec.id, req.next());
                                        let m = req.request("MESSAGE", &call, "ans", &manscdp(), page.as_bytes());
                                        let _ = sock.send_to(&m, from).await;
                                        // Paced, as platforms do: a burst of hundreds of
                                        // datagrams overflows the receiver's socket buffer.
                                        tokio::time::sleep(Duration::from_millis(1)).await;
                                    }
                                    last
                                } else if body.contains("<CmdType>DeviceInfo</CmdType>") {
                                    Some(format!("<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Result>OK</Result>\r\n<Manufacturer>camsim</Manufacturer>\r\n<Channel>{}</Channel>\r\n</Response>\r\n", spec.id, channels.len()))
                                } else if body.contains("<CmdType>RecordInfo</CmdType>") {
                                    let chan = tag_between(&body, "DeviceID").unwrap_or(&spec.id).to_owned();
                                    let from_t = tag_between(&body, "StartTime").and_then(|t| gb28181::gbtime::parse(t, 8 * 3600)).unwrap_or(i64::MIN);
                                    let to_t = tag_between(&body, "EndTime").and_then(|t| gb28181::gbtime::parse(t, 8 * 3600)).unwrap_or(i64::MAX);
                                    let items: Vec<String> = spec.recordings.iter().filter(|(s, e)| *e > from_t && *s < to_t).map(|(s, e)| format!(
                                        "<Item><DeviceID>{chan}</DeviceID><Name>rec</Name><StartTime>{}</StartTime><EndTime>{}</EndTime><Secrecy>0</Secrecy><Type>time</Type></Item>",
                                        gb28181::gbtime::format_secs(*s, 8 * 3600), gb28181::gbtime::format_secs(*e, 8 * 3600))).collect();
                                    Some(format!("<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{chan}</DeviceID>\r\n<SumNum>{}</SumNum>\r\n<RecordList Num=\"{}\">{}</RecordList>\r\n</Response>\r\n", items.len(), items.len(), items.concat()))
                                } else {
                                    if body.contains("<PTZCmd>") {
                                        stats.ptz.fetch_add(1, Ordering::Relaxed);
                                    }
                                    None
                                };
                                if let Some(a) = answer {
                                    let call = format!("ans-{}-{}", spec.id, req.next());
                                    let msg = req.request("MESSAGE", &call, "ans", &manscdp(), a.as_bytes());
                                    let _ = sock.send_to(&msg, from).await;
                                }
                            }
                            "INVITE" => {
                                let call_id = header_value(&m, "Call-ID").to_owned();
                                if sessions.contains_key(&call_id) {
                                    continue;
                                }
                                let offer = Offered::parse(&String::from_utf8_lossy(&m.body));
                                let Some(offer) = offer else {
                                    let _ = sock.send_to(&response(&m, 488, "Not Acceptable Here", &tag, &[], b""), from).await;
                                    continue;
                                };
                                let sdp = format!(
                                    "v=0\r\no={} 0 0 IN IP4 127.0.0.1\r\ns={}\r\nc=IN IP4 127.0.0.1\r\nt={} {}\r\nm=video 9 {} 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\n{}y={}\r\n",
                                    spec.id, offer.name, offer.start, offer.end,
                                    if offer.tcp { "TCP/RTP/AVP" } else { "RTP/AVP" },
                                    if offer.tcp { "a=setup:active\r\na=connection:new\r\n" } else { "" },
                                    offer.ssrc_text,
                                );
                                let extra = [("Contact", format!("<sip:{}@{local}>", spec.id)), ("Content-Type", "APPLICATION/SDP".to_owned())];
                                let _ = sock.send_to(&response(&m, 200, "OK", &tag, &extra, sdp.as_bytes()), from).await;
                                stats.invites.fetch_add(1, Ordering::Relaxed);
                                let stop = tokio_util::sync::CancellationToken::new();
                                let scale_milli = Arc::new(AtomicU64::new(1000));
                                let dialog = Dialog {
                                    call_id: call_id.clone(),
                                    platform_from: header_value(&m, "From").to_owned(),
                                    our_to: format!("{};tag={tag}", header_value(&m, "To")),
                                };
                                tokio::spawn(stream_media(spec.fixture.clone(), offer, stop.clone(), scale_milli.clone(), stats.clone(), dialog, spec.id.clone(), local, to_sip.clone()));
                                sessions.insert(call_id, Session { stop, scale_milli });
                            }
                            "BYE" => {
                                let call_id = header_value(&m, "Call-ID").to_owned();
                                let code = if let Some(s) = sessions.remove(&call_id) {
                                    s.stop.cancel();
                                    stats.byes.fetch_add(1, Ordering::Relaxed);
                                    200
                                } else {
                                    481
                                };
                                let _ = sock.send_to(&response(&m, code, if code == 200 { "OK" } else { "Call/Transaction Does Not Exist" }, &tag, &[], b""), from).await;
                            }
                            "INFO" => {
                                let call_id = header_value(&m, "Call-ID").to_owned();
                                let body = String::from_utf8_lossy(&m.body).into_owned();
                                let code = match (sessions.get(&call_id), gb28181::mansrtsp::scale_of(&body)) {
                                    (Some(s), Some(scale)) if scale > 0.0 => {
                                        s.scale_milli.store((scale * 1000.0) as u64, Ordering::Relaxed);
                                        stats.scale_changes.fetch_add(1, Ordering::Relaxed);
                                        200
                                    }
                                    (Some(_), _) => 200,
                                    (None, _) => 481,
                                };
                                let _ = sock.send_to(&response(&m, code, if code == 200 { "OK" } else { "Call/Transaction Does Not Exist" }, &tag, &[], b""), from).await;
                            }
                            "ACK" => {}
                            _ => {
                                if method == "SUBSCRIBE" {
                                    stats.subscriptions.fetch_add(1, Ordering::Relaxed);
                                }
                                let _ = sock.send_to(&response(&m, 200, "OK", &tag, &[], b""), from).await;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The parts of the platform's offer the device needs.
struct Offered {
    name: String,
    ip: String,
    port: u16,
    tcp: bool,
    ssrc: u32,
    ssrc_text: String,
    start: i64,
    end: i64,
    speed: u32,
}

impl Offered {
    fn parse(sdp: &str) -> Option<Offered> {
        let mut o = Offered {
            name: "Play".into(),
            ip: String::new(),
            port: 0,
            tcp: false,
            ssrc: 0,
            ssrc_text: "0000000000".into(),
            start: 0,
            end: 0,
            speed: 1,
        };
        for line in sdp.lines().map(str::trim) {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k {
                "s" => o.name = v.to_owned(),
                "c" => o.ip = v.split_whitespace().nth(2)?.to_owned(),
                "m" => {
                    let mut p = v.split_whitespace();
                    p.next();
                    o.port = p.next()?.parse().ok()?;
                    o.tcp = p.next()?.starts_with("TCP");
                }
                "t" => {
                    let mut p = v.split_whitespace();
                    o.start = p.next()?.parse().ok()?;
                    o.end = p.next()?.parse().ok()?;
                }
                "y" => {
                    o.ssrc = gb28181::sdp::parse_ssrc(v)?;
                    o.ssrc_text = v.trim().to_owned();
                }
                "a" => {
                    if let Some(s) = v.strip_prefix("downloadspeed:") {
                        o.speed = s.trim().parse().unwrap_or(1).clamp(1, 32);
                    }
                }
                _ => {}
            }
        }
        (!o.ip.is_empty() && o.port != 0).then_some(o)
    }
}

struct Dialog {
    call_id: String,
    platform_from: String,
    our_to: String,
}

/// The fixture's access units as Annex B (parameter sets before key frames).
fn annexb_frames(f: &Fixture) -> Vec<(bool, Vec<u8>)> {
    let p = f.params.clone();
    f.frames
        .iter()
        .map(|fr| {
            let mut out = Vec::with_capacity(fr.avcc.len() + 64);
            if fr.key
                && let Some(p) = &p
            {
                for ps in [p.vps().map(|v| &v[..]), Some(&p.sps()[..]), Some(&p.pps()[..])]
                    .into_iter()
                    .flatten()
                {
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.extend_from_slice(ps);
                }
            }
            for nal in media::rtp::length_prefixed_nals(&fr.avcc) {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
            (fr.key, out)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn stream_media(
    fixture: Arc<Fixture>,
    offer: Offered,
    stop: tokio_util::sync::CancellationToken,
    scale_milli: Arc<AtomicU64>,
    stats: Arc<GbDeviceStats>,
    dialog: Dialog,
    id: String,
    local: SocketAddr,
    to_sip: mpsc::Sender<Vec<u8>>,
) {
    let Ok(dest) = format!("{}:{}", offer.ip, offer.port).parse::<SocketAddr>() else {
        return;
    };
    enum Out {
        Udp(UdpSocket),
        Tcp(TcpStream),
    }
    let out = if offer.tcp {
        let mut s = None;
        for _ in 0..5 {
            if let Ok(t) = TcpStream::connect(dest).await {
                s = Some(t);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match s {
            Some(t) => Out::Tcp(t),
            None => return,
        }
    } else {
        match UdpSocket::bind(("127.0.0.1", 0)).await {
            Ok(u) => Out::Udp(u),
            Err(_) => return,
        }
    };
    let mut out = out;
    let frames = annexb_frames(&fixture);
    let codec = fixture.codec;
    let ticks = u64::from(fixture.frame_ticks);
    let playback = !offer.name.eq_ignore_ascii_case("Play");
    let total = if playback {
        (((offer.end - offer.start).max(1) as u64) * 90_000).div_ceil(ticks) as usize
    } else {
        usize::MAX
    };
    let pace = if offer.name.eq_ignore_ascii_case("Download") {
        Duration::from_micros(ticks * 1_000_000 / 90_000 / u64::from(offer.speed))
    } else {
        Duration::from_micros(ticks * 1_000_000 / 90_000)
    };
    let mut next = tokio::time::Instant::now();
    let mut seq: u16 = rand::random();
    let mut ps = Vec::with_capacity(256 * 1024);
    for (i, (key, es)) in frames.iter().cycle().enumerate().take(total) {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let scale = scale_milli.load(Ordering::Relaxed).max(1) as f64 / 1000.0;
        next += pace.div_f64(scale);
        let pts = i as u64 * ticks;
        ps.clear();
        media::ps::mux_frame(codec, pts, *key, es, &mut ps);
        let chunks: Vec<&[u8]> = ps.chunks(1400).collect();
        for (j, c) in chunks.iter().enumerate() {
            let mut pkt = Vec::with_capacity(c.len() + 16);
            media::rtp::write_header(&mut pkt, j + 1 == chunks.len(), seq, pts as u32, offer.ssrc);
            pkt[1] = (pkt[1] & 0x80) | 96;
            pkt.extend_from_slice(c);
            seq = seq.wrapping_add(1);
            let ok = match &mut out {
                Out::Udp(u) => u.send_to(&pkt, dest).await.is_ok(),
                Out::Tcp(t) => {
                    let mut framed = Vec::with_capacity(pkt.len() + 2);
                    framed.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
                    framed.extend_from_slice(&pkt);
                    t.write_all(&framed).await.is_ok()
                }
            };
            if !ok {
                return;
            }
            stats.rtp_packets.fetch_add(1, Ordering::Relaxed);
        }
    }
    if playback {
        // The end of the file: MediaStatus 121 in the dialog, then the platform BYEs.
        stats.finished.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>MediaStatus</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>{id}</DeviceID>\r\n<NotifyType>121</NotifyType>\r\n</Notify>\r\n"
        );
        let m = Message {
            start: StartLine::Request {
                method: "MESSAGE".into(),
                uri: format!("sip:{}", dest.ip()),
            },
            headers: vec![
                (
                    "Via".into(),
                    format!("SIP/2.0/UDP {local};rport;branch=z9hG4bKms{}", rand::random::<u32>()),
                ),
                ("From".into(), dialog.our_to.clone()),
                ("To".into(), dialog.platform_from.clone()),
                ("Call-ID".into(), dialog.call_id.clone()),
                ("CSeq".into(), "2 MESSAGE".into()),
                ("Max-Forwards".into(), "70".into()),
                ("Content-Type".into(), "Application/MANSCDP+xml".into()),
            ],
            body: Bytes::from(body),
        };
        let _ = to_sip.send(m.to_bytes()).await;
    }
}
