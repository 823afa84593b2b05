//! The fragmented MP4 that live video (`live.mp4`) and a device's recording
//! (`playback.mp4?source=device`) are sent as: an init segment from the first key frame's
//! parameters, then one `moof`+`mdat` per frame for as long as the client reads.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use media::Frame;
use media::fmp4::{Sample, write_fragment_header, write_ftyp, write_moov};

use crate::device_access::DevicePlayback;
use crate::error::ApiError;

/// A chunked fragmented-MP4 answer of `source`'s frames from `first` (a key frame) on;
/// `guard` lives as long as the response (it audits the end of a live viewing).
pub fn fragmented_mp4(source: FrameSource, first: Frame, guard: Box<dyn Send>) -> Result<Response, ApiError> {
    let mut init = Vec::with_capacity(1024);
    write_ftyp(&mut init).map_err(ApiError::internal)?;
    write_moov(&first.params, &mut init).map_err(ApiError::internal)?;
    let body = futures::stream::unfold(
        Fragmenter {
            viewer: source,
            held: Some(first),
            origin: None,
            sequence: 1,
            init: Some(Bytes::from(init)),
            payload: None,
            _guard: guard,
        },
        |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((Ok::<Bytes, std::io::Error>(chunk), f))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "video/mp4"), (header::CACHE_CONTROL, "no-store")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Where a fragmented MP4's frames come from.
pub enum FrameSource {
    /// A live channel.
    Live(hub::Viewer),
    /// A recording a GB/T 28181 device is sending.
    Device(DevicePlayback),
}

impl FrameSource {
    async fn recv(&mut self) -> Option<Frame> {
        match self {
            FrameSource::Live(v) => v.recv().await,
            FrameSource::Device(p) => p.frames.recv().await,
        }
    }
}

/// Turns a source's frames into `moof`+`mdat` chunks, one per frame. A frame is sent when the
/// next arrives, which gives its exact duration (one frame of latency).
struct Fragmenter {
    viewer: FrameSource,
    held: Option<Frame>,
    /// Media time of the first frame: the file's time zero.
    origin: Option<i64>,
    sequence: u32,
    init: Option<Bytes>,
    /// A frame's payload, sent as its own chunk after its header so it is never copied.
    payload: Option<Bytes>,
    /// Lives as long as the response (audits the end of a live viewing, hangs up a device).
    _guard: Box<dyn Send>,
}

impl Fragmenter {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.init.take().or_else(|| self.payload.take()) {
            return Some(first);
        }
        let held = self.held.take()?;
        let next = self.viewer.recv().await?;
        // A new run or new codec parameters need a new init segment: end this response and let
        // the client reconnect (players do).
        if next.discontinuity || (!Arc::ptr_eq(&next.params, &held.params) && *next.params != *held.params) {
            return None;
        }
        let origin = *self.origin.get_or_insert(held.media_time);
        let duration = (next.media_time - held.media_time).clamp(1, i64::from(u32::MAX)) as u32;
        let mut out = Vec::with_capacity(128);
        write_fragment_header(
            &mut out,
            self.sequence,
            (held.media_time - origin).max(0) as u64,
            &[Sample {
                duration,
                size: held.data.len() as u32,
                key: held.key,
            }],
            None,
        )
        .ok()?;
        self.payload = Some(held.data.clone());
        self.sequence = self.sequence.wrapping_add(1);
        self.held = Some(next);
        Some(Bytes::from(out))
    }
}
