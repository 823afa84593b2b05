//! Camera simulators for tests, the demo and load runs.
//!
//! An RTSP server (tokio + `rtsp-types`) replays pre-packetized H.264/H.265 fixtures from memory
//! to any number of clients, each camera on its own path (`rtsp://ADDR/cam0`, ...), over TCP
//! interleaved or UDP, with RTP timestamps that keep advancing across loops of the clip. One
//! process carries thousands of cameras: the fixture is packetized once and shared, and each
//! frame costs a 12-byte header per packet and one socket write.
//!
//! Fault knobs ([`CameraHandle`]) let tests stall a camera, drop its connections, send garbage
//! RTP, jump timestamps backwards, send an oversized NAL unit or switch resolution mid-stream;
//! [`CameraSpec`] sets up authentication and clock drift. Every session's frame count and
//! timing is kept so a test can compare what was sent with what was recorded.
//!
//! Not part of the server's default path: only the demo, the tests and `sharpeye camsim` use it.

mod camera;
mod fixture;
mod rtsp;
mod server;

pub mod gbdevice;

pub use camera::{CameraHandle, CameraSpec, MediaTransport, SessionStats};
pub use fixture::{BuiltinFixture, FRAME_TICKS, Fixture, FixtureError, FixtureFrame, MAX_PAYLOAD};
pub use server::{Cameras, Camsim};

/// Each of `cameras` with a sub-stream beside it, as real cameras have: `camN-sub` streams the
/// 320×240 H.264 clip (the main stream's path with `-sub`). Real H.265 cameras keep an H.264
/// sub-stream for exactly this reason: browsers and old decoders play it.
pub fn with_sub_streams(cameras: Vec<CameraSpec>) -> Vec<CameraSpec> {
    cameras
        .into_iter()
        .flat_map(|c| {
            let sub = CameraSpec::new(format!("{}-sub", c.path), BuiltinFixture::H264_240p.load());
            [c, sub]
        })
        .collect()
}

/// `n` cameras `cam0..cam{n-1}` alternating H.264 and H.265 at the given resolution
/// (`true`: 1080p, `false`: 240p).
pub fn mixed_cameras(n: usize, full_hd: bool) -> Vec<CameraSpec> {
    (0..n)
        .map(|i| {
            let f = match (i % 2 == 0, full_hd) {
                (true, true) => BuiltinFixture::H264_1080p,
                (true, false) => BuiltinFixture::H264_240p,
                (false, true) => BuiltinFixture::H265_1080p,
                (false, false) => BuiltinFixture::H265_240p,
            };
            CameraSpec::new(format!("cam{i}"), f.load())
        })
        .collect()
}
