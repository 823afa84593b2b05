//! The GB/T 28181 platform state machine (registrar, keepalive, MANSCDP requests and answers,
//! INVITE dialogs) driven by a fuzzed device: datagrams, time passing between them and the
//! platform's own requests, never a panic; and everything the platform sends parses as a SIP
//! message again (over a stream, so with an exact `Content-Length`).
//!
//! Input: a flags byte, then steps separated by 0xFF (a byte neither UTF-8 nor GB18030 text
//! holds). A step is one control byte and a datagram:
//! * control bits 0-2: time to pass before the step (0 to 1 h); bits 3-5: a request of ours
//!   to make first (catalog, records, INVITE live or download, hang up, PTZ, device info);
//!   bit 6: the datagram comes from a second address; bit 7: run the timers at the platform's
//!   next deadline instead of now.
//! * the datagram, with placeholders replaced so the fuzzer can answer our requests: `$B`
//!   branch, `$C` Call-ID, `$T` From tag, `$S` CSeq number of the last request we sent, `$N`
//!   the last nonce we challenged with, `$A` a valid `Authorization` value for it.
//!
//! Flags: bit 0 auto catalog, bit 1 qop, bit 2 TCP, bit 3 the device registers (correctly)
//! first, bit 4 the device is pre-declared with the Registration Call-ID policy, bit 5 its
//! bodies are UTF-8, bit 6 no platform-wide password (only the pre-declared device).
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gb28181::digest::Credentials;
use gb28181::manscdp::Charset;
use gb28181::platform::{
    CallId, CallIdPolicy, DeviceSettings, Event, Output, Peer, Platform, PlatformConfig, Transport,
};
use gb28181::sdp::{MediaTransport, Offer, SessionKind};
use gb28181::sip::{self, Framing};
use libfuzzer_sys::fuzz_target;

#[path = "sip_script.rs"]
mod sip_script;
use sip_script::Seen;

const DEV: &str = "34020000001320000001";
const PLATFORM: &str = "34020000002000000001";
const DOMAIN: &str = "3402000000";
const PASSWORD: &str = "12345678";
const STEPS: [u64; 8] = [0, 10, 500, 1_000, 4_000, 10_000, 60_000, 3_600_000];

/// What the fuzzer's datagrams can echo, and the calls the platform holds.
#[derive(Default)]
struct State {
    seen: Seen,
    calls: Vec<CallId>,
}

/// Takes everything out of the platform: what it sends must parse; requests and challenges
/// are remembered for the placeholders.
fn drain(p: &mut Platform, st: &mut State) {
    while let Some(o) = p.poll_output() {
        match o {
            Output::Send { data, .. } => {
                let (m, used) = match sip::parse(&data, Framing::Stream) {
                    Ok(r) => r,
                    Err(e) => panic!(
                        "the platform sent a message that does not parse ({e}): {:?}",
                        String::from_utf8_lossy(&data)
                    ),
                };
                assert_eq!(used, data.len(), "the platform sent trailing bytes");
                st.seen.remember(&m);
            }
            Output::Event(Event::CallFailed { call, .. } | Event::CallEnded { call, .. }) => {
                st.calls.retain(|c| *c != call);
            }
            Output::Event(_) => {}
        }
    }
}

fn authorization(seen: &Seen, qop: bool) -> String {
    let mut c = Credentials {
        username: DEV.into(),
        realm: DOMAIN.into(),
        nonce: seen.nonce.clone(),
        uri: format!("sip:{PLATFORM}@{DOMAIN}"),
        ..Credentials::default()
    };
    if qop {
        c.qop = Some("auth".into());
        c.nc = Some("00000001".into());
        c.cnonce = Some("c0ffee".into());
    }
    c.response = c.expected("REGISTER", PASSWORD);
    let q = if qop {
        ", qop=auth, nc=00000001, cnonce=\"c0ffee\""
    } else {
        ""
    };
    format!(
        "Digest username=\"{DEV}\", realm=\"{DOMAIN}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm=MD5{q}",
        c.nonce, c.uri, c.response
    )
}

fn register(seen: &Seen, qop: bool, auth: bool) -> Vec<u8> {
    let header = if auth {
        format!("Authorization: {}\r\n", authorization(seen, qop))
    } else {
        String::new()
    };
    format!(
        "REGISTER sip:{PLATFORM}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:15061;rport;branch=z9hG4bKreg{}\r\nFrom: <sip:{DEV}@{DOMAIN}>;tag=d1\r\nTo: <sip:{DEV}@{DOMAIN}>\r\nCall-ID: reg-1\r\nCSeq: {} REGISTER\r\nContact: <sip:{DEV}@127.0.0.1:15061>\r\n{header}Expires: 3600\r\nX-GB-Ver: 3.0\r\nContent-Length: 0\r\n\r\n",
        u8::from(auth),
        1 + u8::from(auth),
    )
    .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let qop = flags & 2 != 0;
    let transport = if flags & 4 != 0 { Transport::Tcp } else { Transport::Udp };
    let mut cfg = PlatformConfig::new(PLATFORM, DOMAIN, "127.0.0.1:5060".parse::<SocketAddr>().unwrap());
    cfg.auto_catalog = flags & 1 != 0;
    cfg.qop = qop;
    cfg.password = (flags & 64 == 0).then(|| PASSWORD.to_owned());
    cfg.keepalive_interval = Duration::from_secs(60);
    cfg.request_timeout = Duration::from_secs(10);
    cfg.answer_timeout = Duration::from_secs(10);
    if flags & 0x30 != 0 || flags & 64 != 0 {
        cfg.devices.insert(
            DEV.to_owned(),
            DeviceSettings {
                password: Some(PASSWORD.to_owned()),
                charset: if flags & 32 != 0 { Charset::Utf8 } else { Charset::Auto },
                call_id: if flags & 16 != 0 {
                    CallIdPolicy::Registration
                } else {
                    CallIdPolicy::Fresh
                },
                ask_info: flags & 8 != 0,
            },
        );
    }
    let mut p = Platform::new(cfg);
    let peers = [
        Peer {
            transport,
            addr: "127.0.0.1:15061".parse().unwrap(),
        },
        Peer {
            transport,
            addr: "[2001:db8::7]:5060".parse().unwrap(),
        },
    ];
    let t0 = Instant::now();
    let mut now = t0;
    let unix = |now: Instant| 1_700_000_000_000 + now.duration_since(t0).as_millis() as i64;
    let mut st = State::default();

    if flags & 8 != 0 {
        for auth in [false, true] {
            let (m, _) = sip::parse(&register(&st.seen, qop, auth), Framing::Datagram).expect("our REGISTER parses");
            p.handle_message(now, unix(now), peers[0], m);
            drain(&mut p, &mut st);
        }
        assert_eq!(p.devices().len(), 1, "the scripted registration succeeds");
    }

    for step in rest.split(|&b| b == 0xFF).take(64) {
        let Some((&control, datagram)) = step.split_first() else {
            continue;
        };
        now += Duration::from_millis(STEPS[usize::from(control & 7)]);
        let peer = peers[usize::from(control >> 6 & 1)];
        match control >> 3 & 7 {
            1 => {
                let _ = p.query_catalog(now, DEV);
            }
            2 => {
                let _ = p.query_records(now, DEV, DEV, "2026-11-23T08:00:00", "2026-11-23T09:00:00");
            }
            kind @ (3 | 4) => {
                let offer = Offer {
                    own_id: PLATFORM.into(),
                    channel: DEV.into(),
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 30000,
                    transport: if kind == 3 {
                        MediaTransport::TcpPassive
                    } else {
                        MediaTransport::Udp
                    },
                    kind: if kind == 3 {
                        SessionKind::Play
                    } else {
                        SessionKind::Download {
                            start: 1_700_000_000,
                            end: 1_700_003_600,
                            speed: 4,
                        }
                    },
                    ssrc: "0200000001".into(),
                };
                if let Ok(call) = p.invite(now, DEV, &offer) {
                    st.calls.push(call);
                }
            }
            5 => {
                if let Some(call) = st.calls.pop() {
                    let _ = p.hangup(now, call);
                }
            }
            6 => {
                let _ = p.ptz(now, DEV, DEV, "A50F010180000036");
            }
            7 => {
                let _ = p.query_device_info(now, DEV);
            }
            _ => {}
        }
        drain(&mut p, &mut st);
        if !datagram.is_empty() {
            let bytes = st.seen.substitute(datagram, &|c| (c == b'A').then(|| authorization(&st.seen, qop)));
            if let Ok((m, _)) = sip::parse(&bytes, Framing::Datagram) {
                p.handle_message(now, unix(now), peer, m);
            }
            drain(&mut p, &mut st);
        }
        if control & 0x80 != 0 {
            if let Some(t) = p.poll_timeout() {
                now = now.max(t);
            }
        }
        p.handle_timeout(now);
        drain(&mut p, &mut st);
        let _ = p.devices();
    }
    // Everything pending runs out.
    now += Duration::from_secs(7 * 86_400 + 1);
    p.handle_timeout(now);
    drain(&mut p, &mut st);
});
