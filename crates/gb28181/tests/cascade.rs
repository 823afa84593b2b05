//! Two SIP servers on loopback, one registering to the other as its lower platform (the
//! upper link of one, the platform of the other): registration with digest, the catalog the
//! upper asks for with its organisation nodes, an INVITE answered and hung up, over UDP and
//! over TCP (the lower opening the connection).

use std::time::Duration;

use gb28181::manscdp_out::{CatalogEntry, EntryKind};
use gb28181::platform::{Event, PlatformConfig, Transport};
use gb28181::sdp::{MediaTransport, Offer, SessionKind};
use gb28181::server::{SipServer, next_event};
use gb28181::upper::{Query, UpperConfig, UpperEvent};
use tokio::sync::broadcast;

const UPPER: &str = "34020000002000000099";
const LOWER: &str = "34020000002000000010";

async fn upper_event<T>(events: &mut broadcast::Receiver<Event>, mut pick: impl FnMut(UpperEvent) -> Option<T>) -> T {
    tokio::time::timeout(
        Duration::from_secs(10),
        next_event(events, |e| match e {
            Event::Upper { event, .. } => pick(event),
            _ => None,
        }),
    )
    .await
    .expect("in time")
    .expect("server running")
}

async fn platform_event<T>(events: &mut broadcast::Receiver<Event>, pick: impl FnMut(Event) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), next_event(events, pick))
        .await
        .expect("in time")
        .expect("server running")
}

fn entries() -> Vec<CatalogEntry> {
    let mut v = vec![CatalogEntry {
        id: "34020000002150000001".into(),
        name: "Xigang".into(),
        parent_id: LOWER.into(),
        civil_code: "340200".into(),
        kind: EntryKind::BusinessGroup,
    }];
    for i in 1..=3 {
        v.push(CatalogEntry {
            id: format!("3402000000132000000{i}"),
            name: format!("Gate {i}"),
            parent_id: "34020000002150000001".into(),
            civil_code: "340200".into(),
            kind: EntryKind::Channel {
                online: true,
                location: None,
                ptz_type: None,
                business_group: Some("34020000002150000001".into()),
            },
        });
    }
    v
}

async fn cascade(transport: Transport) {
    let mut up_cfg = PlatformConfig::new(UPPER, "3402000000", "127.0.0.1:0".parse().unwrap());
    up_cfg.password = Some("pw".into());
    let upper = SipServer::bind(up_cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let lower = SipServer::bind(
        PlatformConfig::new(LOWER, "3402000000", "127.0.0.1:0".parse().unwrap()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (mut up_events, mut low_events) = (upper.subscribe(), lower.subscribe());
    let mut cfg = UpperConfig::new(UPPER, "3402000000", upper.local_addr(), LOWER, lower.local_addr(), "pw");
    cfg.transport = transport;
    cfg.keepalive = Duration::from_secs(1);
    lower.add_upper(cfg).await.unwrap();
    upper_event(&mut low_events, |e| (e == UpperEvent::Registered).then_some(())).await;
    let peer = platform_event(&mut up_events, |e| match e {
        Event::Registered { device, peer, .. } if device == LOWER => Some(peer),
        _ => None,
    })
    .await;
    assert_eq!(peer.transport, transport);
    let views = lower.uppers().await;
    assert!(views[0].registered && views[0].state == "registered", "{views:?}");

    // The upper asks for the catalog by itself; the lower answers with its org node and three
    // channels, which arrive whole.
    let sn = upper_event(&mut low_events, |e| match e {
        UpperEvent::Query {
            sn,
            query: Query::Catalog,
            ..
        } => Some(sn),
        _ => None,
    })
    .await;
    lower.upper_catalog(UPPER, sn, entries()).await;
    let items = platform_event(&mut up_events, |e| match e {
        Event::Catalog {
            device,
            items,
            complete,
        } if device == LOWER => {
            assert!(complete);
            Some(items)
        }
        _ => None,
    })
    .await;
    let mut ids: Vec<&str> = items.iter().map(|i| i.device_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids.len(), 4);
    let gate = items
        .iter()
        .find(|i| i.device_id.ends_with("0001") && i.name == "Gate 1")
        .unwrap();
    assert_eq!(gate.parent_id, "34020000002150000001");

    // A live INVITE from the upper, answered by the lower, then hung up.
    let offer = Offer {
        own_id: UPPER.into(),
        channel: "34020000001320000002".into(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 30000,
        transport: MediaTransport::Udp,
        kind: SessionKind::Play,
        ssrc: "0200000007".into(),
    };
    let call = upper.invite(LOWER, offer).await.unwrap();
    let (dialog, channel, ssrc) = upper_event(&mut low_events, |e| match e {
        UpperEvent::Invite {
            dialog,
            channel,
            invitation,
            ..
        } => Some((dialog, channel, invitation.ssrc)),
        _ => None,
    })
    .await;
    assert_eq!(channel, "34020000001320000002");
    assert_eq!(ssrc.as_deref(), Some("0200000007"));
    let sdp = "v=0\r\no=34020000001320000002 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 40000 RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\ny=0200000007\r\n";
    lower.upper_accept(UPPER, dialog, sdp.into()).await;
    let answer = platform_event(&mut up_events, |e| match e {
        Event::CallAnswered { call: c, answer } if c == call => Some(answer),
        _ => None,
    })
    .await;
    assert_eq!((answer.port, answer.ssrc), (40000, Some(200000007)));
    upper_event(&mut low_events, |e| (e == UpperEvent::Acked { dialog }).then_some(())).await;
    upper.hangup(call).await;
    upper_event(&mut low_events, |e| match e {
        UpperEvent::Ended { dialog: d, reason } if d == dialog => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(lower.uppers().await[0].sessions, 0);

    // Keepalives are answered, so the registration holds; stopping unregisters.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let v = &lower.uppers().await[0];
    assert!(
        v.registered && v.last_keepalive_ago.is_some_and(|a| a < Duration::from_secs(2)),
        "{v:?}"
    );
    lower.stop_uppers().await;
    platform_event(&mut up_events, |e| match e {
        Event::Offline { device, .. } if device == LOWER => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_lower_platform_registers_shares_its_catalog_and_answers_an_invite_over_udp() {
    cascade(Transport::Udp).await;
}

#[tokio::test]
async fn the_same_over_tcp_with_the_lower_opening_the_connection() {
    cascade(Transport::Tcp).await;
}

#[tokio::test]
async fn a_wrong_password_fails_with_the_reason_and_a_silent_upper_is_reported() {
    let mut up_cfg = PlatformConfig::new(UPPER, "3402000000", "127.0.0.1:0".parse().unwrap());
    up_cfg.password = Some("pw".into());
    let upper = SipServer::bind(up_cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let lower = SipServer::bind(
        PlatformConfig::new(LOWER, "3402000000", "127.0.0.1:0".parse().unwrap()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut low_events = lower.subscribe();
    lower
        .add_upper(UpperConfig::new(
            UPPER,
            "3402000000",
            upper.local_addr(),
            LOWER,
            lower.local_addr(),
            "wrong",
        ))
        .await
        .unwrap();
    let (status, reason) = upper_event(&mut low_events, |e| match e {
        UpperEvent::Failed { status, reason } => Some((status, reason)),
        _ => None,
    })
    .await;
    assert_eq!(status, Some(403));
    assert!(reason.contains("password"), "{reason}");
    let v = &lower.uppers().await[0];
    assert_eq!(v.state, "failed");
    // An address nobody answers on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = UpperConfig::new(
        "34020000002000000098",
        "3402000000",
        silent.local_addr().unwrap(),
        LOWER,
        lower.local_addr(),
        "pw",
    );
    cfg.request_timeout = Duration::from_millis(800);
    lower.add_upper(cfg).await.unwrap();
    let (status, reason) = upper_event(&mut low_events, |e| match e {
        UpperEvent::Failed { status, reason } if reason.contains("does not answer") => Some((status, reason)),
        _ => None,
    })
    .await;
    assert_eq!(status, None);
    assert!(reason.contains(&silent.local_addr().unwrap().to_string()), "{reason}");
}
