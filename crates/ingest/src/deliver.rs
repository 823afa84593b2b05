//! What every source does with a decoded frame before the sink sees it: parameter changes
//! logged and shown in health, timestamp jumps detected, media time anchored to the wall clock,
//! oversized frames dropped, output started at a key frame. One copy, for RTSP and GB28181.

use std::sync::Arc;

use bytes::Bytes;
use media::{Frame, StreamId, StreamParams, WallTime};
use tracing::{debug, info, warn};

use crate::clock::WallClock;
use crate::timeline::{Timeline, TimelineCheck};
use crate::{FrameSink, SourceHealth};

/// The delivery state of one session.
pub(crate) struct Delivery<'a> {
    stream: &'a StreamId,
    peer: String,
    sink: &'a dyn FrameSink,
    health: &'a SourceHealth,
    max_frame_bytes: usize,
    params: Option<Arc<StreamParams>>,
    clock: WallClock,
    timeline: Timeline,
    discontinuity: bool,
    need_key: bool,
    /// At least one frame went to the sink.
    pub delivered: bool,
}

impl<'a> Delivery<'a> {
    /// A new session's state: the first frame is a discontinuity and must be a key frame.
    pub fn new(
        stream: &'a StreamId,
        peer: String,
        sink: &'a dyn FrameSink,
        health: &'a SourceHealth,
        max_frame_bytes: usize,
    ) -> Self {
        Delivery {
            stream,
            peer,
            sink,
            health,
            max_frame_bytes,
            params: None,
            clock: WallClock::default(),
            timeline: Timeline::default(),
            discontinuity: true,
            need_key: true,
            delivered: false,
        }
    }

    /// True once parameters are known.
    pub fn has_params(&self) -> bool {
        self.params.is_some()
    }

    /// The stream's parameters now are `p` (logged and shown in health when they change).
    pub fn set_params(&mut self, p: Arc<StreamParams>) {
        if self.params.as_deref() == Some(&p) {
            return;
        }
        info!(
            codec = p.codec_string(),
            width = p.width(),
            height = p.height(),
            "camera {}: stream parameters",
            self.stream.camera()
        );
        let mut s = self.health.lock();
        s.codec = Some(p.codec_string().to_owned());
        s.resolution = Some((p.width(), p.height()));
        self.params = Some(p);
    }

    /// Delivers one frame (dropped while no parameters are known).
    pub fn deliver(&mut self, media_time: i64, key: bool, data: Bytes, arrival: WallTime) {
        let Some(p) = self.params.clone() else { return };
        let camera = self.stream.camera();
        let check = self.timeline.check(media_time, arrival);
        if check.is_discontinuity() && check != TimelineCheck::First {
            warn!(peer = %self.peer, ?check, "camera {camera}: timestamps jumped; starting a new segment");
            self.health.lock().discontinuities += 1;
            self.discontinuity = true;
        }
        if data.len() > self.max_frame_bytes {
            warn!(
                peer = %self.peer,
                bytes = data.len(),
                limit = self.max_frame_bytes,
                "camera {camera}: frame above the size limit dropped as corrupt; waiting for the next key frame"
            );
            self.health.lock().dropped_frames += 1;
            self.need_key = true;
            self.discontinuity = true;
            return;
        }
        if self.need_key && !key {
            debug!("camera {camera}: waiting for a key frame");
            self.health.lock().dropped_frames += 1;
            return;
        }
        self.need_key = false;
        if self.discontinuity {
            self.clock.reset();
        }
        let wall = self.clock.map(media_time, arrival);
        {
            let mut s = self.health.lock();
            s.frames += 1;
            s.bytes += data.len() as u64;
            s.last_frame = Some(arrival);
            s.last_error = None;
        }
        self.sink.frame(Frame {
            stream: self.stream.clone(),
            media_time,
            wall_time: wall.wall,
            key,
            discontinuity: self.discontinuity || wall.anchored,
            params: p,
            data,
        });
        self.delivered = true;
        self.discontinuity = false;
    }

    /// Marks the next frame as a discontinuity that needs a key frame (after loss).
    pub fn lost(&mut self) {
        self.need_key = true;
        self.discontinuity = true;
    }
}
