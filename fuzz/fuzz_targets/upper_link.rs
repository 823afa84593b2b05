//! The cascade side of GB/T 28181 (our link toward an upper platform: registration with digest,
//! keepalive, the upper's queries, catalog subscription, INVITE dialogs) driven by a fuzzed
//! upper: datagrams, time passing and our own answers in between; never a panic, everything we
//! send parses as SIP again, and the dialogs we hold stay bounded.
//!
//! Input: a flags byte (bit 0 TCP, bit 1 reuse the registration's Call-ID), then steps
//! separated by 0xFF. A step is one control byte and a datagram from the upper:
//! * control bits 0-2: time to pass first (0 to 1 h); bits 3-5: an action of ours first
//!   (answer the last query's catalog, its records, accept the last INVITE, reject it, hang
//!   up, send MediaStatus, notify a catalog change); bit 6: the datagram comes from another
//!   address; bit 7: run the timers at the link's next deadline instead of now.
//! * the datagram, with placeholders for answering our requests: `$B` branch, `$C` Call-ID,
//!   `$T` From tag, `$S` CSeq of the last request we sent.
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gb28181::manscdp_out::{CatalogEntry, EntryKind, RecordEntry};
use gb28181::platform::{Event, Output, Peer, Transport};
use gb28181::sip::{self, Framing};
use gb28181::upper::{DialogId, UpperConfig, UpperEvent, UpperLink};
use libfuzzer_sys::fuzz_target;

#[path = "sip_script.rs"]
mod sip_script;
use sip_script::Seen;

const UPPER: &str = "34020000002000000001";
const OWN: &str = "34020000002000000010";
const STEPS: [u64; 8] = [0, 10, 500, 1_000, 4_000, 10_000, 60_000, 3_600_000];

/// What the fuzzer's datagrams can echo, and what the link told us.
#[derive(Default)]
struct State {
    seen: Seen,
    sn: u64,
    dialogs: Vec<DialogId>,
}

fn drain(l: &mut UpperLink, st: &mut State) {
    while let Some(o) = l.poll_output() {
        match o {
            Output::Send { data, .. } => {
                let (m, used) = match sip::parse(&data, Framing::Stream) {
                    Ok(r) => r,
                    Err(e) => panic!(
                        "the link sent a message that does not parse ({e}): {:?}",
                        String::from_utf8_lossy(&data)
                    ),
                };
                assert_eq!(used, data.len(), "the link sent trailing bytes");
                st.seen.remember(&m);
            }
            Output::Event(Event::Upper { event, .. }) => match event {
                UpperEvent::Query { sn, .. } => st.sn = sn,
                UpperEvent::Invite { dialog, .. } => st.dialogs.push(dialog),
                UpperEvent::Ended { dialog, .. } => st.dialogs.retain(|d| *d != dialog),
                _ => {}
            },
            Output::Event(_) => {}
        }
    }
}

fn entries() -> Vec<CatalogEntry> {
    let mut e = vec![CatalogEntry {
        id: "34020000002150000001".into(),
        name: "group".into(),
        parent_id: OWN.into(),
        civil_code: "340200".into(),
        kind: EntryKind::BusinessGroup,
    }];
    for i in 0..12 {
        e.push(CatalogEntry {
            id: format!("340200000013200000{i:02}"),
            name: format!("camera {i} 北门"),
            parent_id: "34020000002150000001".into(),
            civil_code: "340200".into(),
            kind: EntryKind::Channel {
                online: i % 2 == 0,
                location: Some((38.9, 121.6)),
                ptz_type: Some(1),
                business_group: Some("34020000002150000001".into()),
            },
        });
    }
    e
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let upper: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let mut cfg = UpperConfig::new(UPPER, "3402000000", upper, OWN, "127.0.0.1:5070".parse().unwrap(), "pw");
    if flags & 1 != 0 {
        cfg.transport = Transport::Tcp;
    }
    cfg.reuse_call_id = flags & 2 != 0;
    let transport = cfg.transport;
    let mut l = UpperLink::new(cfg);
    let peers = [
        Peer { transport, addr: upper },
        Peer {
            transport,
            addr: "[2001:db8::9]:5060".parse().unwrap(),
        },
    ];
    let t0 = Instant::now();
    let mut now = t0;
    let unix = |now: Instant| 1_700_000_000_000 + now.duration_since(t0).as_millis() as i64;
    let mut st = State::default();
    l.start(now);
    drain(&mut l, &mut st);
    for step in rest.split(|&b| b == 0xFF).take(64) {
        let Some((&control, datagram)) = step.split_first() else {
            continue;
        };
        now += Duration::from_millis(STEPS[usize::from(control & 7)]);
        let last = st.dialogs.last().copied();
        match (control >> 3 & 7, last) {
            (1, _) => l.answer_catalog(now, st.sn, &entries()),
            (2, _) => {
                let recs: Vec<RecordEntry> = (0..30)
                    .map(|i| RecordEntry {
                        channel: "34020000001320000001".into(),
                        name: "rec".into(),
                        start: format!("2026-11-23T08:{i:02}:00"),
                        end: format!("2026-11-23T08:{i:02}:59"),
                        file_size: Some(1 << 20),
                    })
                    .collect();
                l.answer_records(now, st.sn, "34020000001320000001", "cam", &recs);
            }
            (3, Some(d)) => l.accept(
                now,
                d,
                "v=0\r\no=x 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 40000 RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\ny=0200000001\r\n".into(),
            ),
            (4, Some(d)) => l.reject(now, d, 404, "Not Found"),
            (5, Some(d)) => l.hangup(now, d),
            (6, Some(d)) => l.media_status(now, d),
            (7, _) => {
                let e = entries();
                l.notify_catalog(now, &[(e[1].clone(), "ADD"), (e[2].clone(), "OFF")]);
            }
            _ => {}
        }
        drain(&mut l, &mut st);
        if !datagram.is_empty() {
            let bytes = st.seen.substitute(datagram, &|_| None);
            if let Ok((m, _)) = sip::parse(&bytes, Framing::Datagram) {
                let peer = peers[usize::from(control >> 6 & 1)];
                if l.accepts(&m) {
                    l.handle_message(now, unix(now), peer, m);
                }
            }
            drain(&mut l, &mut st);
        }
        if control & 0x80 != 0 {
            if let Some(t) = l.poll_timeout() {
                now = now.max(t);
            }
        }
        l.handle_timeout(now);
        drain(&mut l, &mut st);
        assert!(l.sessions() <= 64, "dialogs pile up: {}", l.sessions());
    }
    now += Duration::from_secs(7 * 86_400 + 1);
    l.handle_timeout(now);
    drain(&mut l, &mut st);
    l.stop(now);
    drain(&mut l, &mut st);
});
