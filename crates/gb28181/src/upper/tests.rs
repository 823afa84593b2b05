//! The link driven by a scripted upper: what it sends is parsed back with our own codec and
//! answered as an upper platform would, on simulated time.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::digest::{Credentials, challenge};
use crate::manscdp::{CatalogChunk, Document};
use crate::manscdp_out::EntryKind;
use crate::sip::{Framing, StartLine, parse};

const UPPER: &str = "34020000002000000099";
const US: &str = "34020000002000000010";

fn upper_peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "10.1.0.2:5060".parse().unwrap(),
    }
}

fn link() -> (UpperLink, Instant) {
    let mut cfg = UpperConfig::new(
        UPPER,
        "3402000000",
        upper_peer().addr,
        US,
        "10.0.0.5:5060".parse().unwrap(),
        "secret",
    );
    cfg.keepalive = Duration::from_secs(10);
    cfg.retry = Duration::from_secs(30);
    (UpperLink::new(cfg), Instant::now())
}

/// Everything the link sent and emitted since the last call.
fn drain(l: &mut UpperLink) -> (Vec<Message>, Vec<UpperEvent>) {
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    while let Some(o) = l.poll_output() {
        match o {
            Output::Send { to, data } => {
                assert_eq!(to, upper_peer());
                sent.push(parse(&data, Framing::Datagram).unwrap().0);
            }
            Output::Event(Event::Upper { upper, event }) => {
                assert_eq!(upper, UPPER);
                events.push(event);
            }
            Output::Event(other) => panic!("{other:?}"),
        }
    }
    (sent, events)
}

fn code(m: &Message) -> u16 {
    match &m.start {
        StartLine::Response { code, .. } => *code,
        _ => 0,
    }
}

/// The upper's response to our request `req`.
fn reply(req: &Message, status: u16, extra: &[(&str, &str)]) -> Message {
    let mut headers: Vec<(String, String)> = ["Via", "From", "To", "Call-ID", "CSeq"]
        .iter()
        .filter_map(|n| req.header(n).map(|v| ((*n).to_owned(), v.to_owned())))
        .collect();
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Message {
        start: StartLine::Response {
            code: status,
            reason: "x".into(),
        },
        headers,
        body: Bytes::new(),
    }
}

/// A request from the upper.
fn from_upper(method: &str, uri_user: &str, call: &str, extra: &[(&str, String)], body: &str) -> Message {
    let mut headers = vec![
        (
            "Via".to_owned(),
            format!("SIP/2.0/UDP 10.1.0.2:5060;branch=z9hG4bK{call}{method}"),
        ),
        ("From".to_owned(), format!("<sip:{UPPER}@3402000000>;tag=up{call}")),
        ("To".to_owned(), format!("<sip:{uri_user}@3402000000>")),
        ("Call-ID".to_owned(), call.to_owned()),
        ("CSeq".to_owned(), format!("20 {method}")),
    ];
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Message {
        start: StartLine::Request {
            method: method.into(),
            uri: format!("sip:{uri_user}@10.0.0.5:5060"),
        },
        headers,
        body: Bytes::from(body.to_owned()),
    }
}

/// Registers: REGISTER, 401 with a challenge, REGISTER with credentials that check, 200.
fn registered() -> (UpperLink, Instant) {
    let (mut l, now) = link();
    l.start(now);
    let (sent, _) = drain(&mut l);
    assert_eq!(sent[0].method(), Some("REGISTER"));
    assert!(sent[0].header("Authorization").is_none());
    assert!(l.accepts(&reply(&sent[0], 401, &[])));
    let www = challenge("3402000000", "n1", true);
    l.handle_message(
        now,
        0,
        upper_peer(),
        reply(&sent[0], 401, &[("WWW-Authenticate", &www)]),
    );
    let (sent2, _) = drain(&mut l);
    let auth = Credentials::parse(sent2[0].header("Authorization").unwrap()).unwrap();
    assert!(auth.verify("REGISTER", "secret"));
    assert_eq!(auth.username, US);
    assert_eq!(sent2[0].header("Call-ID"), sent[0].header("Call-ID"));
    l.handle_message(now, 0, upper_peer(), reply(&sent2[0], 200, &[("Expires", "3600")]));
    let (_, events) = drain(&mut l);
    assert_eq!(events, vec![UpperEvent::Registered]);
    assert!(matches!(l.state(), UpperState::Registered { .. }));
    (l, now)
}

#[test]
fn registers_with_digest_keeps_alive_and_re_registers_when_keepalives_go_unanswered() {
    let (mut l, now) = registered();
    // The first keepalive soon after; answered.
    let t = now + Duration::from_millis(300);
    l.handle_timeout(t);
    let (sent, _) = drain(&mut l);
    let ka = &sent[0];
    let doc = Document::decode(&ka.body, Charset::Gb18030).unwrap();
    assert!(doc.is("Notify", "Keepalive") && doc.device_id == US);
    l.handle_message(t, 0, upper_peer(), reply(ka, 200, &[]));
    assert!(l.last_keepalive().is_some());
    // Then the upper goes silent: three keepalives time out and we register anew.
    let mut t = t;
    let mut lost = None;
    for _ in 0..200 {
        t += Duration::from_secs(1);
        l.handle_timeout(t);
        let (sent, events) = drain(&mut l);
        if let Some(UpperEvent::Lost { reason }) = events.iter().find(|e| matches!(e, UpperEvent::Lost { .. })) {
            lost = Some((reason.clone(), sent));
            break;
        }
    }
    let (reason, sent) = lost.expect("lost after three unanswered keepalives");
    assert!(reason.contains("3 keepalives unanswered"), "{reason}");
    let reg = sent
        .iter()
        .find(|m| m.method() == Some("REGISTER"))
        .expect("registers again");
    assert_ne!(reg.header("Call-ID"), ka.header("Call-ID"));
    assert_eq!(l.state(), &UpperState::Registering);
}

#[test]
fn a_404_names_the_likely_cause_and_retries_later() {
    let (mut l, now) = link();
    l.start(now);
    let (sent, _) = drain(&mut l);
    l.handle_message(now, 0, upper_peer(), reply(&sent[0], 404, &[]));
    let (_, events) = drain(&mut l);
    let UpperEvent::Failed { status, reason } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*status, Some(404));
    assert!(reason.contains("real id"), "{reason}");
    l.handle_timeout(now + Duration::from_secs(29));
    assert!(drain(&mut l).0.is_empty(), "not before the retry interval");
    l.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(drain(&mut l).0[0].method(), Some("REGISTER"));
    // A wrong password: a second 401 after our credentials.
    let (mut l, now) = link();
    l.start(now);
    let www = challenge("3402000000", "n1", false);
    for _ in 0..2 {
        let (sent, _) = drain(&mut l);
        l.handle_message(
            now,
            0,
            upper_peer(),
            reply(&sent[0], 401, &[("WWW-Authenticate", &www)]),
        );
    }
    let (_, events) = drain(&mut l);
    assert!(matches!(&events[0], UpperEvent::Failed { status: Some(401), reason } if reason.contains("password")));
}

fn entry(i: usize) -> CatalogEntry {
    CatalogEntry {
        id: format!("340200000013200000{i:02}"),
        name: format!("Gate {i}"),
        parent_id: US.into(),
        civil_code: "340200".into(),
        kind: EntryKind::Channel {
            online: true,
            location: None,
            ptz_type: None,
            business_group: None,
        },
    }
}

#[test]
fn a_catalog_answer_goes_one_message_at_a_time_each_under_the_mtu() {
    let (mut l, now) = registered();
    drain(&mut l);
    let q = from_upper(
        "MESSAGE",
        US,
        "q1",
        &[],
        &format!(
            "<?xml version=\"1.0\"?><Query><CmdType>Catalog</CmdType><SN>42</SN><DeviceID>{US}</DeviceID></Query>"
        ),
    );
    assert!(l.accepts(&q));
    l.handle_message(now, 0, upper_peer(), q);
    let (sent, events) = drain(&mut l);
    assert_eq!(code(&sent[0]), 200);
    assert_eq!(
        events,
        vec![UpperEvent::Query {
            sn: 42,
            query: Query::Catalog,
            user: None,
        }]
    );
    let entries: Vec<CatalogEntry> = (0..20).map(entry).collect();
    l.answer_catalog(now, 42, &entries);
    let mut got = Vec::new();
    let mut t = now;
    loop {
        let (sent, _) = drain(&mut l);
        let msgs: Vec<&Message> = sent.iter().filter(|m| m.method() == Some("MESSAGE")).collect();
        if msgs.is_empty() {
            break;
        }
        assert_eq!(msgs.len(), 1, "one message in flight at a time");
        let m = msgs[0];
        assert!(m.to_bytes().len() <= 1300, "{} bytes", m.to_bytes().len());
        let doc = Document::decode(&m.body, Charset::Gb18030).unwrap();
        assert_eq!(doc.sn, 42);
        let chunk = CatalogChunk::from_document(&doc);
        assert_eq!(chunk.sum_num, 20);
        got.extend(chunk.items.into_iter().map(|i| i.device_id));
        t += Duration::from_millis(5);
        l.handle_message(t, 0, upper_peer(), reply(m, 200, &[]));
    }
    assert_eq!(got, entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
}

fn invite(call: &str, channel: &str, sdp: &str) -> Message {
    from_upper(
        "INVITE",
        channel,
        call,
        &[
            ("Contact", format!("<sip:{UPPER}@10.1.0.2:5060>")),
            ("Content-Type", "APPLICATION/SDP".into()),
            ("Monitor-User-Identity", "alice".into()),
        ],
        sdp,
    )
}

const SDP: &str = "v=0\r\no=34020000002000000099 0 0 IN IP4 10.1.0.2\r\ns=Play\r\nc=IN IP4 10.1.0.2\r\nt=0 0\r\nm=video 30000 RTP/AVP 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0100000001\r\n";

#[test]
fn an_invite_is_tried_at_once_answered_resent_until_the_ack_and_ended_by_bye() {
    let (mut l, now) = registered();
    drain(&mut l);
    let inv = invite("c1", "34020000001320000001", SDP);
    l.handle_message(now, 0, upper_peer(), inv.clone());
    let (sent, events) = drain(&mut l);
    assert_eq!(code(&sent[0]), 100);
    let UpperEvent::Invite {
        dialog,
        channel,
        invitation,
        user,
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(channel, "34020000001320000001");
    assert_eq!(invitation.ssrc.as_deref(), Some("0100000001"));
    assert_eq!(user.as_deref(), Some("alice"));
    let dialog = *dialog;
    l.accept(now, dialog, "v=0\r\ny=0100000001\r\n".into());
    let (sent, _) = drain(&mut l);
    assert_eq!(code(&sent[0]), 200);
    let to = sent[0].header("To").unwrap().to_owned();
    assert!(tag_of_str(&to).is_some());
    // Resent while no ACK comes.
    l.handle_timeout(now + Duration::from_millis(600));
    assert_eq!(code(&drain(&mut l).0[0]), 200);
    let mut ack = from_upper("ACK", "34020000001320000001", "c1", &[], "");
    ack.headers.retain(|(k, _)| k != "To");
    ack.headers.push(("To".into(), to.clone()));
    l.handle_message(now, 0, upper_peer(), ack);
    assert_eq!(drain(&mut l).1, vec![UpperEvent::Acked { dialog }]);
    l.handle_timeout(now + Duration::from_secs(5));
    assert!(
        drain(&mut l).0.iter().all(|m| code(m) != 200),
        "no resend after the ACK"
    );
    // Playback control, then the upper's BYE.
    let info = from_upper(
        "INFO",
        "34020000001320000001",
        "c1",
        &[],
        "PLAY RTSP/1.0\r\nCSeq: 3\r\nScale: 2.0\r\n",
    );
    l.handle_message(now, 0, upper_peer(), info);
    let (sent, events) = drain(&mut l);
    assert!(String::from_utf8_lossy(&sent[0].body).contains("CSeq: 3"));
    assert!(matches!(&events[0], UpperEvent::Info { body, .. } if body.contains("Scale: 2.0")));
    l.handle_message(
        now,
        0,
        upper_peer(),
        from_upper("BYE", "34020000001320000001", "c1", &[], ""),
    );
    let (sent, events) = drain(&mut l);
    assert_eq!(code(&sent[0]), 200);
    assert!(matches!(&events[0], UpperEvent::Ended { reason, .. } if reason.contains("BYE")));
    assert_eq!(l.sessions(), 0);
}

fn tag_of_str(v: &str) -> Option<&str> {
    crate::sipcore::tag_of(v)
}

#[test]
fn no_ack_ends_the_session_with_a_bye_and_hostile_requests_get_clear_answers() {
    let (mut l, now) = registered();
    drain(&mut l);
    l.handle_message(now, 0, upper_peer(), invite("c2", "34020000001320000001", SDP));
    let (_, events) = drain(&mut l);
    let UpperEvent::Invite { dialog, .. } = events[0] else {
        panic!()
    };
    l.accept(now, dialog, "v=0\r\n".into());
    drain(&mut l);
    l.handle_timeout(now + Duration::from_secs(61));
    let (sent, events) = drain(&mut l);
    assert!(sent.iter().any(|m| m.method() == Some("BYE")));
    assert!(matches!(&events[..], [UpperEvent::Ended { reason, .. }] if reason.contains("never ACKed")));
    assert_eq!(l.sessions(), 0);

    for (sdp, want) in [
        ("v=0\r\nc=IN IP4 10.1.0.2\r\n", 400),
        (&SDP.replace("30000", "70000")[..], 400),
        (&SDP.replace("30000", "0")[..], 400),
    ] {
        l.handle_message(now, 0, upper_peer(), invite("c3", "34020000001320000001", sdp));
        let (sent, events) = drain(&mut l);
        assert_eq!(code(&sent[0]), want, "{sdp}");
        assert!(events.is_empty());
    }
    l.handle_message(now, 0, upper_peer(), from_upper("BYE", "x", "nope", &[], ""));
    assert_eq!(code(&drain(&mut l).0[0]), 481);
    l.handle_message(
        now,
        0,
        upper_peer(),
        from_upper("MESSAGE", US, "bad", &[], "<Query><SN>1"),
    );
    assert_eq!(code(&drain(&mut l).0[0]), 400);
    // A CANCEL before our answer: 200 to it, 487 to the INVITE.
    l.handle_message(now, 0, upper_peer(), invite("c4", "34020000001320000001", SDP));
    drain(&mut l);
    let mut cancel = from_upper("CANCEL", "34020000001320000001", "c4", &[], "");
    cancel.headers[0].1 = "SIP/2.0/UDP 10.1.0.2:5060;branch=z9hG4bKc4INVITE".into();
    l.handle_message(now, 0, upper_peer(), cancel);
    let (sent, events) = drain(&mut l);
    assert_eq!(sent.iter().map(code).collect::<Vec<_>>(), [200, 487]);
    assert!(matches!(&events[0], UpperEvent::Ended { .. }));
    assert_eq!(l.sessions(), 0);
}

#[test]
fn a_catalog_subscription_gets_notifies_in_its_dialog() {
    let (mut l, now) = registered();
    drain(&mut l);
    l.notify_catalog(now, &[(entry(1), "ON")]);
    assert!(drain(&mut l).0.is_empty(), "no subscription, no NOTIFY");
    let sub = from_upper(
        "SUBSCRIBE",
        US,
        "s1",
        &[("Event", "Catalog".into()), ("Expires", "600".into())],
        "<Query><CmdType>Catalog</CmdType><SN>5</SN></Query>",
    );
    l.handle_message(now, 0, upper_peer(), sub);
    let (sent, events) = drain(&mut l);
    assert_eq!(code(&sent[0]), 200);
    assert_eq!(sent[0].header("Expires"), Some("600"));
    assert_eq!(
        events,
        vec![UpperEvent::CatalogSubscribed {
            expires: Duration::from_secs(600)
        }]
    );
    l.notify_catalog(now, &[(entry(1), "OFF"), (entry(2), "ADD")]);
    let (sent, _) = drain(&mut l);
    let n = &sent[0];
    assert_eq!(n.method(), Some("NOTIFY"));
    assert_eq!(n.header("Call-ID"), Some("s1"));
    assert_eq!(n.header("Event"), Some("Catalog"));
    let doc = Document::decode(&n.body, Charset::Gb18030).unwrap();
    assert!(doc.is("Notify", "Catalog"));
    let mut text = String::from_utf8_lossy(&n.body).into_owned();
    // The second change follows in another NOTIFY when both do not fit one datagram.
    if !text.contains("<Event>ADD</Event>") {
        l.handle_message(now, 0, upper_peer(), reply(n, 200, &[]));
        let (sent, _) = drain(&mut l);
        assert_eq!(sent[0].header("Call-ID"), Some("s1"));
        text.push_str(&String::from_utf8_lossy(&sent[0].body));
    }
    assert!(
        text.contains("<Event>OFF</Event>") && text.contains("<Event>ADD</Event>"),
        "{text}"
    );
    // It lapses without a refresh.
    l.handle_timeout(now + Duration::from_secs(601));
    let (_, events) = drain(&mut l);
    assert!(events.contains(&UpperEvent::CatalogSubscribed {
        expires: Duration::ZERO
    }));
}

/// An upper that routes everything by our registration's Call-ID (sipp): its INVITE and ACK
/// come in that Call-ID, and the dialog still works.
#[test]
fn an_invite_in_the_registrations_call_id_is_answered_and_acked() {
    let (mut l, now) = registered();
    let (sent, _) = drain(&mut l);
    let _ = sent;
    l.handle_timeout(now + Duration::from_secs(1));
    let (sent, _) = drain(&mut l);
    let reg_call = sent
        .iter()
        .find_map(|m| m.header("Call-ID").map(str::to_owned))
        .unwrap_or_default();
    let inv = invite(&reg_call, "34020000001320000001", SDP);
    l.handle_message(now, 0, upper_peer(), inv);
    let (_, events) = drain(&mut l);
    let UpperEvent::Invite { dialog, .. } = &events[0] else {
        panic!("{events:?}")
    };
    let dialog = *dialog;
    l.accept(now, dialog, "v=0\r\ny=0100000001\r\n".into());
    let (sent, _) = drain(&mut l);
    let to = sent[0].header("To").unwrap().to_owned();
    let mut ack = from_upper("ACK", "34020000001320000001", &reg_call, &[], "");
    ack.headers.retain(|(k, _)| k != "To" && k != "Via");
    ack.headers.push(("To".into(), to));
    ack.headers.push((
        "Via".into(),
        "SIP/2.0/UDP 10.1.0.2:5060;rport;branch=z9hG4bK-1-17".into(),
    ));
    assert!(l.accepts(&ack));
    l.handle_message(now, 0, upper_peer(), ack);
    assert_eq!(drain(&mut l).1, vec![UpperEvent::Acked { dialog }]);
}
