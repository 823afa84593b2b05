//! RTSP re-serve: `rtsp://HOST:PORT/cameras/{id}[/sub]` gives RTSP clients (ffmpeg, VLC,
//! decoders, upper platforms) a camera's live stream from the hub, so a thousand RTSP viewers
//! cost the camera one session.
//!
//! * [`proto`]: the protocol without sockets (request parsing, targets, transports, SDP).
//! * [`server`]: the tokio shell; each PLAY is a hub viewer whose frames go out as RTP.
//!
//! Authentication: a live media token in the URL (`?token=`, from
//! `POST /api/v1/cameras/{id}/media-token`) or RTSP Basic with a user's name and password.
//! Digest is not offered: passwords are stored as argon2id hashes, from which digest responses
//! cannot be checked.

pub mod framing;
pub mod proto;
pub mod server;

pub use server::{Authorize, RtspConfig, RtspServer};
