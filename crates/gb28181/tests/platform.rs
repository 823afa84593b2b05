//! The platform state machine driven as a device would, with a fake clock: hours of protocol
//! time in milliseconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gb28181::digest::Credentials;
use gb28181::manscdp::{Charset, encode_text};
use gb28181::platform::{Event, OfflineReason, Output, Peer, Platform, PlatformConfig, Transport};
use gb28181::sdp::{MediaTransport, Offer, SessionKind};
use gb28181::sip::{self, Framing, Message, StartLine};

const DEV: &str = "34020000001320000001";
const PLATFORM: &str = "34020000002000000001";
const PASSWORD: &str = "12345678";

fn peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:15061".parse().unwrap(),
    }
}

fn platform(password: Option<&str>) -> Platform {
    let mut cfg = PlatformConfig::new(PLATFORM, "3402000000", "127.0.0.1:5060".parse::<SocketAddr>().unwrap());
    cfg.password = password.map(str::to_owned);
    cfg.keepalive_interval = Duration::from_secs(60);
    cfg.keepalive_misses = 3;
    // Tests that want the catalog ask for it; one test checks the automatic query.
    cfg.auto_catalog = false;
    Platform::new(cfg)
}

fn msg(text: &str) -> Message {
    sip::parse(text.as_bytes(), Framing::Datagram).unwrap().0
}

struct Drained {
    sent: Vec<Message>,
    events: Vec<Event>,
}

fn drain(p: &mut Platform) -> Drained {
    let mut d = Drained {
        sent: Vec::new(),
        events: Vec::new(),
    };
    while let Some(o) = p.poll_output() {
        match o {
            Output::Send { data, .. } => d.sent.push(sip::parse(&data, Framing::Stream).unwrap().0),
            Output::Event(e) => d.events.push(e),
        }
    }
    d
}

fn code(m: &Message) -> u16 {
    match m.start {
        StartLine::Response { code, .. } => code,
        _ => 0,
    }
}

fn register(call_id: &str, cseq: u32, expires: u32, auth: Option<String>) -> Message {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    msg(&format!(
        "REGISTER sip:{PLATFORM}@3402000000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:15061;rport;branch=z9hG4bK{call_id}{cseq}e{expires}\r\nFrom: <sip:{DEV}@3402000000>;tag=d1\r\nTo: <sip:{DEV}@3402000000>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{DEV}@127.0.0.1:15061>\r\n{auth}Expires: {expires}\r\nX-GB-Ver: 3.0\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// REGISTER, 401, REGISTER with the digest answer; returns the final response.
fn do_register(p: &mut Platform, now: Instant, call_id: &str, password: &str, expires: u32) -> (Message, Drained) {
    p.handle_message(now, 0, peer(), register(call_id, 1, expires, None));
    let d = drain(p);
    assert_eq!(code(&d.sent[0]), 401);
    let www = d.sent[0].header("WWW-Authenticate").unwrap().to_owned();
    assert!(www.contains("algorithm=MD5"));
    let nonce = www.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
    let mut c = Credentials {
        username: DEV.into(),
        realm: "3402000000".into(),
        nonce: nonce.into(),
        // As sipp sends it: not the Request-URI.
        uri: "sip:127.0.0.1:5060".into(),
        qop: Some("auth".into()),
        nc: Some("00000001".into()),
        cnonce: Some("c0ffee".into()),
        ..Credentials::default()
    };
    c.response = c.expected("REGISTER", password);
    let header = format!(
        "Digest username=\"{DEV}\", realm=\"3402000000\", nonce=\"{nonce}\", uri=\"{}\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
        c.uri, c.response
    );
    p.handle_message(
        now,
        1_700_000_000_000,
        peer(),
        register(call_id, 2, expires, Some(header)),
    );
    let d = drain(p);
    (d.sent[0].clone(), d)
}

fn keepalive(sn: u32) -> Message {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{DEV}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n"
    );
    manscdp_message(&format!("k{sn}"), &body)
}

fn manscdp_message(branch: &str, body: &str) -> Message {
    let bytes = encode_text(body, Charset::Gb18030);
    let mut text = format!(
        "MESSAGE sip:{PLATFORM}@3402000000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:15061;rport;branch=z9hG4bK{branch}\r\nFrom: <sip:{DEV}@3402000000>;tag=m{branch}\r\nTo: <sip:{PLATFORM}@3402000000>\r\nCall-ID: msg-{branch}\r\nCSeq: 20 MESSAGE\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    )
    .into_bytes();
    text.extend_from_slice(&bytes);
    sip::parse(&text, Framing::Stream).unwrap().0
}

#[test]
fn registration_with_digest_keepalive_and_offline() {
    let mut p = platform(Some(PASSWORD));
    let t0 = Instant::now();
    let (ok, d) = do_register(&mut p, t0, "reg-1", PASSWORD, 3600);
    assert_eq!(code(&ok), 200);
    // The GB Date form, device local time (UTC+8): 2023-11-14T22:13:20 UTC + 8 h.
    assert_eq!(ok.header("Date"), Some("2023-11-15T06:13:20.000"));
    assert_eq!(ok.header("Expires"), Some("3600"));
    assert!(ok.header("Via").unwrap().contains("received=127.0.0.1"));
    assert!(matches!(&d.events[0], Event::Registered { device, fresh: true, .. } if device == DEV));
    assert!(p.devices()[0].online);
    assert_eq!(p.devices()[0].gb_version.as_deref(), Some("3.0"));

    // Keepalives keep it online for hours.
    let mut now = t0;
    for sn in 0..180 {
        now += Duration::from_secs(60);
        p.handle_message(now, 0, peer(), keepalive(sn));
        p.handle_timeout(now);
        let d = drain(&mut p);
        assert_eq!(code(&d.sent[0]), 200);
        assert!(d.events.is_empty(), "{:?}", d.events);
        // Refresh on the same Call-ID before expiry.
        if sn % 50 == 49 {
            let (ok, d) = do_register(&mut p, now, "reg-1", PASSWORD, 3600);
            assert_eq!(code(&ok), 200);
            assert!(matches!(&d.events[0], Event::Registered { fresh: false, .. }));
        }
    }
    // Three missed keepalives: offline exactly then, not before.
    p.handle_timeout(now + Duration::from_secs(179));
    assert!(drain(&mut p).events.is_empty());
    let lost_at = p.poll_timeout().unwrap();
    assert_eq!(lost_at, now + Duration::from_secs(180));
    p.handle_timeout(lost_at);
    let d = drain(&mut p);
    assert_eq!(
        d.events,
        vec![Event::Offline {
            device: DEV.into(),
            reason: OfflineReason::KeepaliveLost
        }]
    );
    assert!(!p.devices()[0].online);
    // A keepalive brings it back.
    p.handle_message(lost_at + Duration::from_secs(1), 0, peer(), keepalive(999));
    assert_eq!(drain(&mut p).events, vec![Event::Online { device: DEV.into() }]);
    // Re-registration after a reboot (new Call-ID) is fresh; unregistering makes it offline.
    let (_, d) = do_register(&mut p, lost_at + Duration::from_secs(2), "reg-2", PASSWORD, 3600);
    assert!(matches!(&d.events[0], Event::Registered { fresh: true, .. }));
    let (ok, d) = do_register(&mut p, lost_at + Duration::from_secs(3), "reg-2", PASSWORD, 0);
    assert_eq!(code(&ok), 200);
    assert!(matches!(
        &d.events[0],
        Event::Offline {
            reason: OfflineReason::Unregistered,
            ..
        }
    ));
    assert!(p.devices().is_empty());
}

#[test]
fn wrong_passwords_unknown_devices_and_hostile_requests() {
    let mut p = platform(Some(PASSWORD));
    let now = Instant::now();
    for i in 0..5 {
        let (resp, d) = do_register(&mut p, now, &format!("bad{i}"), "wrong", 3600);
        assert_eq!(code(&resp), 403);
        assert!(matches!(&d.events[0], Event::AuthFailed { throttled: false, .. }));
    }
    // Throttled now, even with the right password, for a minute.
    p.handle_message(now, 0, peer(), register("bad9", 1, 3600, None));
    let d = drain(&mut p);
    assert_eq!(code(&d.sent[0]), 403);
    assert!(matches!(&d.events[0], Event::AuthFailed { throttled: true, .. }));
    let later = now + Duration::from_secs(61);
    assert_eq!(code(&do_register(&mut p, later, "ok", PASSWORD, 3600).0), 200);

    // A keepalive from a device that never registered: 404 so that it registers.
    let mut p2 = platform(Some(PASSWORD));
    p2.handle_message(now, 0, peer(), keepalive(1));
    assert_eq!(code(&drain(&mut p2).sent[0]), 404);

    // No platform-wide password and not pre-declared: refused.
    let mut p3 = platform(None);
    p3.handle_message(now, 0, peer(), register("x", 1, 3600, None));
    assert_eq!(code(&drain(&mut p3).sent[0]), 403);

    // A stale or invented nonce is challenged again, a malformed Authorization is a 400.
    let mut p4 = platform(Some(PASSWORD));
    let forged =
        format!("Digest username=\"{DEV}\", realm=\"3402000000\", nonce=\"invented\", uri=\"sip:x\", response=\"00\"");
    p4.handle_message(now, 0, peer(), register("f", 2, 3600, Some(forged)));
    assert_eq!(code(&drain(&mut p4).sent[0]), 401);
    p4.handle_message(
        now,
        0,
        peer(),
        register("g", 2, 3600, Some("Digest username=\"x".into())),
    );
    assert_eq!(code(&drain(&mut p4).sent[0]), 400);
    // A body that is not MANSCDP: 400 naming the problem; an unknown method: 405.
    let (_, _) = do_register(&mut p4, now, "h", PASSWORD, 3600);
    p4.handle_message(now, 0, peer(), manscdp_message("z", "<<<not xml"));
    let d = drain(&mut p4);
    assert_eq!(code(&d.sent[0]), 400);
    // Fuzz find: a parser error quoting the body must not break our status line or add headers.
    p4.handle_message(
        now,
        0,
        peer(),
        manscdp_message("inj", "</a\r\nX-Injected: yes\r\n\r\n<Notify>>"),
    );
    let d = drain(&mut p4);
    assert_eq!(code(&d.sent[0]), 400);
    assert_eq!(d.sent[0].header("X-Injected"), None);
    // Fuzz finds: a stray 200 to an INVITE with a Contact holding a space, and CSeq at its
    // maximum: our ACK and BYE are valid SIP (drain re-parses everything we send) and nothing
    // overflows.
    p4.handle_message(now, 0, peer(), msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 4294967295 INVITE\r\nContact: <sip:a b>\r\n\r\n"));
    let d = drain(&mut p4);
    assert_eq!(
        d.sent.iter().map(|m| m.method()).collect::<Vec<_>>(),
        vec![Some("ACK"), Some("BYE")]
    );
    assert_eq!(d.sent[1].header("CSeq"), Some("0 BYE"));
    p4.handle_message(now, 0, peer(), msg("PUBLISH sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKp\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: p\r\nCSeq: 1 PUBLISH\r\n\r\n"));
    assert_eq!(code(&drain(&mut p4).sent[0]), 405);
    p4.handle_message(
        now,
        0,
        peer(),
        msg("MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKq\r\n\r\n"),
    );
    assert_eq!(code(&drain(&mut p4).sent[0]), 400);
}

fn catalog_chunk(sn: u64, sum: usize, ids: &[usize]) -> String {
    let items: String = ids
        .iter()
        .map(|i| {
            format!("<Item><DeviceID>340200000013200000{i:02}</DeviceID><Name>通道{i}</Name><Status>ON</Status></Item>")
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?><Response><CmdType>Catalog</CmdType><SN>{sn}</SN><DeviceID>{DEV}</DeviceID><SumNum>{sum}</SumNum><DeviceList Num=\"{}\">{items}</DeviceList></Response>",
        ids.len()
    )
}

#[test]
fn catalog_answers_are_aggregated_by_sn_and_time_out_with_what_arrived() {
    let mut p = platform(Some(PASSWORD));
    let now = Instant::now();
    do_register(&mut p, now, "c", PASSWORD, 3600);
    let sn = p.query_catalog(now, DEV).unwrap();
    let d = drain(&mut p);
    assert_eq!(d.sent[0].method(), Some("MESSAGE"));
    assert!(String::from_utf8_lossy(&d.sent[0].body).contains("<CmdType>Catalog</CmdType>"));
    // Out of order, with a duplicate, in three messages.
    for (i, ids) in [vec![3, 4], vec![1, 2], vec![2], vec![5]].iter().enumerate() {
        p.handle_message(
            now,
            0,
            peer(),
            manscdp_message(&format!("cat{i}"), &catalog_chunk(sn, 5, ids)),
        );
    }
    let d = drain(&mut p);
    let cats: Vec<_> = d.events.iter().filter(|e| matches!(e, Event::Catalog { .. })).collect();
    assert_eq!(cats.len(), 1);
    let Event::Catalog { items, complete, .. } = cats[0] else {
        unreachable!()
    };
    assert!(complete);
    assert_eq!(items.len(), 5);
    assert_eq!(items[0].name, "通道1");

    // A short answer (3 of 4) finishes on the timeout with what came.
    let sn = p.query_catalog(now, DEV).unwrap();
    drain(&mut p);
    p.handle_message(
        now,
        0,
        peer(),
        manscdp_message("short", &catalog_chunk(sn, 4, &[1, 2, 3])),
    );
    drain(&mut p);
    p.handle_message(now, 0, peer(), keepalive(1));
    p.handle_timeout(now + Duration::from_secs(11));
    let d = drain(&mut p);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::Catalog { items, complete: false, .. } if items.len() == 3))
    );
}

#[test]
fn a_new_registration_is_asked_for_its_catalog_after_its_first_keepalive() {
    let mut cfg = PlatformConfig::new(PLATFORM, "3402000000", "127.0.0.1:5060".parse::<SocketAddr>().unwrap());
    cfg.password = Some(PASSWORD.into());
    let mut p = Platform::new(cfg);
    let now = Instant::now();
    let (_, d) = do_register(&mut p, now, "auto", PASSWORD, 3600);
    assert_eq!(d.sent.len(), 1, "nothing but the 200 right after REGISTER");
    p.handle_message(now, 0, peer(), keepalive(1));
    let d = drain(&mut p);
    assert_eq!(code(&d.sent[0]), 200);
    let bodies: Vec<String> = d.sent[1..]
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    for cmd in ["Catalog", "DeviceInfo", "DeviceStatus"] {
        assert!(
            bodies.iter().any(|b| b.contains(&format!("<CmdType>{cmd}</CmdType>"))),
            "{cmd} not asked: {bodies:?}"
        );
    }
    let firsts: Vec<String> = d.sent[1..]
        .iter()
        .map(|m| m.header("Call-ID").unwrap().to_owned())
        .collect();
    let fresh = |m: &&Message| !firsts.iter().any(|c| Some(c.as_str()) == m.header("Call-ID"));
    // Re-registered after a reboot, without a keepalive: asked two seconds later; only once.
    let (_, _) = do_register(&mut p, now, "auto2", PASSWORD, 3600);
    p.handle_timeout(now + Duration::from_millis(1900));
    let before: Vec<_> = drain(&mut p).sent.iter().filter(fresh).cloned().collect();
    assert!(before.is_empty());
    p.handle_timeout(now + Duration::from_secs(2));
    let d = drain(&mut p);
    let new: Vec<_> = d.sent.iter().filter(fresh).collect();
    assert_eq!(new.len(), 3, "catalog, device info and status, once");
    assert!(new.iter().all(|m| m.method() == Some("MESSAGE")));
    p.handle_message(now, 0, peer(), keepalive(2));
    assert_eq!(
        drain(&mut p).sent.len(),
        1,
        "only the keepalive's 200: nothing asked twice"
    );
}

#[test]
fn a_device_declared_without_info_queries_is_asked_only_its_catalog() {
    let mut cfg = PlatformConfig::new(PLATFORM, "3402000000", "127.0.0.1:5060".parse::<SocketAddr>().unwrap());
    cfg.devices.insert(
        DEV.into(),
        gb28181::platform::DeviceSettings {
            password: Some(PASSWORD.into()),
            ask_info: false,
            ..Default::default()
        },
    );
    let mut p = Platform::new(cfg);
    let now = Instant::now();
    do_register(&mut p, now, "quiet", PASSWORD, 3600);
    p.handle_message(now, 0, peer(), keepalive(1));
    let d = drain(&mut p);
    assert_eq!(d.sent.len(), 2, "the 200 and the catalog query only");
    assert!(String::from_utf8_lossy(&d.sent[1].body).contains("<CmdType>Catalog</CmdType>"));
}

#[test]
fn requests_are_retransmitted_over_udp_then_fail() {
    let mut p = platform(Some(PASSWORD));
    let now = Instant::now();
    do_register(&mut p, now, "r", PASSWORD, 3600);
    p.query_catalog(now, DEV).unwrap();
    let first = drain(&mut p).sent.remove(0);
    let mut sends = 0;
    let mut t = now;
    let mut failed = false;
    while t < now + Duration::from_secs(12) {
        t += Duration::from_millis(100);
        p.handle_timeout(t);
        let d = drain(&mut p);
        for m in &d.sent {
            assert_eq!(m.header("Call-ID"), first.header("Call-ID"));
            sends += 1;
        }
        failed |= d
            .events
            .iter()
            .any(|e| matches!(e, Event::RequestFailed { status: None, .. }));
    }
    // 0.5, 1.5, 3.5, 7.5 s (doubling to 4 s) before the 10 s timeout.
    assert_eq!(sends, 4);
    assert!(failed);
}

#[test]
fn invite_answer_ack_and_bye_both_ways() {
    let mut p = platform(Some(PASSWORD));
    let now = Instant::now();
    do_register(&mut p, now, "i", PASSWORD, 3600);
    let offer = Offer {
        own_id: PLATFORM.into(),
        channel: DEV.into(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 30000,
        transport: MediaTransport::TcpPassive,
        kind: SessionKind::Play,
        ssrc: "0200000001".into(),
    };
    let call = p.invite(now, DEV, &offer).unwrap();
    let invite = drain(&mut p).sent.remove(0);
    assert_eq!(invite.method(), Some("INVITE"));
    assert_eq!(
        invite.header("Subject"),
        Some(format!("{DEV}:0200000001,{PLATFORM}:0").as_str())
    );
    let sdp = "v=0\r\no=d 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 15062 TCP/RTP/AVP 96\r\na=setup:active\r\na=rtpmap:96 PS/90000\r\ny=100000001\r\n";
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=dev\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        invite.header("Via").unwrap(),
        invite.header("From").unwrap(),
        invite.header("To").unwrap(),
        invite.header("Call-ID").unwrap(),
        invite.header("CSeq").unwrap(),
        sdp.len()
    );
    p.handle_message(now, 0, peer(), msg(&ok));
    let d = drain(&mut p);
    assert_eq!(d.sent[0].method(), Some("ACK"));
    let Event::CallAnswered { call: c, answer } = &d.events[0] else {
        panic!("{:?}", d.events)
    };
    assert_eq!(*c, call);
    // The device answered another SSRC than offered: taken as answered.
    assert_eq!(answer.ssrc, Some(100000001));
    assert!(answer.tcp);
    // A retransmitted 200 gets the same ACK.
    p.handle_message(now, 0, peer(), msg(&ok));
    assert_eq!(drain(&mut p).sent[0], d.sent[0]);
    // Playback control rides the dialog as INFO, CSeq counting on; the BYE after it is higher.
    p.info(now, call, &gb28181::mansrtsp::play(1, Some(2.0), None)).unwrap();
    let info = drain(&mut p).sent.remove(0);
    assert_eq!(info.method(), Some("INFO"));
    assert_eq!(info.header("Content-Type"), Some("Application/MANSRTSP"));
    assert!(info.header("To").unwrap().ends_with(";tag=dev"));
    let invite_cseq: u32 = invite
        .header("CSeq")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(info.header("CSeq"), Some(format!("{} INFO", invite_cseq + 1).as_str()));
    assert!(String::from_utf8_lossy(&info.body).contains("Scale: 2.00"));
    // Our BYE carries the device's tag.
    p.hangup(now, call).unwrap();
    let d = drain(&mut p);
    assert_eq!(d.sent[0].method(), Some("BYE"));
    assert_eq!(
        d.sent[0].header("CSeq"),
        Some(format!("{} BYE", invite_cseq + 2).as_str())
    );
    assert!(
        p.info(now, call, "PAUSE RTSP/1.0\r\n").is_err(),
        "no INFO after the call ended"
    );
    assert!(d.sent[0].header("To").unwrap().ends_with(";tag=dev"));
    assert!(matches!(d.events[0], Event::CallEnded { .. }));

    // The device's BYE ends a second call; an INVITE nobody answers is cancelled.
    let call2 = p.invite(now, DEV, &offer).unwrap();
    let inv2 = drain(&mut p).sent.remove(0);
    let bye = format!(
        "BYE sip:{PLATFORM}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:15061;branch=z9hG4bKbye\r\nFrom: <sip:{DEV}@3402000000>;tag=dev\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n\r\n",
        inv2.header("From").unwrap(),
        inv2.header("Call-ID").unwrap()
    );
    p.handle_message(now, 0, peer(), msg(&bye));
    let d = drain(&mut p);
    assert_eq!(code(&d.sent[0]), 200);
    assert!(matches!(d.events[0], Event::CallEnded { call, .. } if call == call2));
    // The end of a file reported the gb28181-rs way, in an INFO: the node hangs up.
    let call_info = p.invite(now, DEV, &offer).unwrap();
    let inv = drain(&mut p).sent.remove(0);
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=dev3\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: {}\r\n\r\n{sdp}",
        inv.header("Via").unwrap(),
        inv.header("From").unwrap(),
        inv.header("To").unwrap(),
        inv.header("Call-ID").unwrap(),
        inv.header("CSeq").unwrap(),
        sdp.len()
    );
    p.handle_message(now, 0, peer(), msg(&ok));
    drain(&mut p);
    let finished = format!(
        "INFO sip:{PLATFORM}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:15061;branch=z9hG4bKfin\r\nFrom: <sip:{DEV}@3402000000>;tag=dev3\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 3 INFO\r\nContent-Type: Application/MANSRTSP\r\nContent-Length: 29\r\n\r\nMediaStatus: Play Finished\r\n\r\n",
        inv.header("From").unwrap(),
        inv.header("Call-ID").unwrap()
    );
    p.handle_message(now, 0, peer(), msg(&finished));
    let d = drain(&mut p);
    assert_eq!(code(&d.sent[0]), 200);
    assert!(d.sent.iter().any(|m| m.method() == Some("BYE")));
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::CallEnded { call, .. } if *call == call_info))
    );
    let call3 = p.invite(now, DEV, &offer).unwrap();
    drain(&mut p);
    p.handle_timeout(now + Duration::from_secs(11));
    let d = drain(&mut p);
    assert!(d.sent.iter().any(|m| m.method() == Some("CANCEL")));
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::CallFailed { call, status: None, .. } if *call == call3))
    );
    // Keepalive loss ends the calls of that device.
    let call4 = p.invite(now, DEV, &offer).unwrap();
    drain(&mut p);
    p.handle_timeout(now + Duration::from_secs(181));
    let d = drain(&mut p);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::CallEnded { call, .. } if *call == call4))
    );
}
