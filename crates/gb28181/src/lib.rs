//! GB/T 28181 device access: SIP signalling, the registrar, MANSCDP and media sessions, as
//! sans-IO state machines fed bytes and time (DESIGN.md's `gb28181` crate), and a thin tokio
//! shell ([`server`]) that runs them over UDP and TCP.
//!
//! * [`sip`]: SIP message codec (datagram and stream framing, GB quirks);
//! * [`digest`]: digest MD5 challenges and checks;
//! * [`gbtime`]: device-local times as GB/T 28181 writes them;
//! * [`manscdp`]: the XML bodies (lenient, GB18030/UTF-8), PTZ commands;
//! * [`manscdp_out`]: the bodies we send an upper platform, cut to fit the transport;
//! * [`mansrtsp`]: playback control bodies (PLAY/Scale/Range, PAUSE) for INFO;
//! * [`sdp`]: offers, answers and `y=` SSRCs;
//! * [`invitation`]: an upper platform's INVITE offer and our answer;
//! * [`platform`]: the registrar, keepalive, requests and INVITE dialogs as one state machine;
//! * [`sipcore`]: header fields, responses, branches and timers both roles share;
//! * [`upper`]: the link toward an upper platform (cascade): registration, keepalive,
//!   answering its queries and INVITEs;
//! * [`server`]: sockets around [`platform::Platform`] and the upper links.

pub mod digest;
pub mod gbtime;
pub mod invitation;
pub mod manscdp;
pub mod manscdp_out;
pub mod mansrtsp;
pub mod platform;
pub mod sdp;
pub mod server;
pub mod sip;
pub mod sipcore;
pub mod upper;
