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

/// A chunked relay stream of `source`'s frames from `first` on, for another node
/// (`live.mp4?relay=1`): each frame goes out the moment it arrives (no frame of latency per
/// hop), with a `prft` carrying its wall time, and a new `moov` whenever the parameters change
/// or a run ends, so the stream never has to be reopened. The reader is
/// `media::fmp4_stream::Fmp4StreamReader`; durations are the previous frame spacing, a hint
/// only: the receiver times frames by their `tfdt`.
pub fn relay_mp4(source: FrameSource, first: Frame, guard: Box<dyn Send>) -> Result<Response, ApiError> {
    let mut ftyp = Vec::with_capacity(32);
    write_ftyp(&mut ftyp).map_err(ApiError::internal)?;
    let body = futures::stream::unfold(
        Relay {
            source,
            next: Some(first),
            current: None,
            origin: 0,
            spacing: 3600,
            sequence: 1,
            queue: std::collections::VecDeque::from([Bytes::from(ftyp)]),
            _guard: guard,
        },
        |mut r| async move {
            let chunk = r.next_chunk().await?;
            Some((Ok::<Bytes, std::io::Error>(chunk), r))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "video/mp4"), (header::CACHE_CONTROL, "no-store")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The relay stream's state between chunks.
struct Relay {
    source: FrameSource,
    next: Option<Frame>,
    /// The previous frame's parameters and media time.
    current: Option<(Arc<media::StreamParams>, i64)>,
    /// Media time of the current run's first frame: its time zero.
    origin: i64,
    /// The last frame spacing seen (90 kHz), as the next frame's duration hint.
    spacing: u32,
    sequence: u32,
    /// Chunks ready to go (headers, then the payload as its own chunk: never copied).
    queue: std::collections::VecDeque<Bytes>,
    _guard: Box<dyn Send>,
}

impl Relay {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(c) = self.queue.pop_front() {
            return Some(c);
        }
        let f = match self.next.take() {
            Some(f) => f,
            None => self.source.recv().await?,
        };
        let mut head = Vec::with_capacity(256);
        let new_run = match &self.current {
            None => true,
            Some((params, last)) => {
                f.discontinuity || f.media_time <= *last || (!Arc::ptr_eq(params, &f.params) && **params != *f.params)
            }
        };
        if new_run {
            write_moov(&f.params, &mut head).ok()?;
            self.origin = f.media_time;
        } else if let Some((_, last)) = &self.current {
            self.spacing = u32::try_from(f.media_time - last).unwrap_or(3600).max(1);
        }
        let base = u64::try_from(f.media_time - self.origin).unwrap_or(0);
        write_fragment_header(
            &mut head,
            self.sequence,
            base,
            &[Sample {
                duration: self.spacing,
                size: f.data.len() as u32,
                key: f.key,
            }],
            Some(media::fmp4::ProducerTime {
                wall: f.wall_time,
                media_time: base,
            }),
        )
        .ok()?;
        self.sequence = self.sequence.wrapping_add(1);
        self.current = Some((f.params.clone(), f.media_time));
        self.queue.push_back(f.data);
        Some(Bytes::from(head))
    }
}
