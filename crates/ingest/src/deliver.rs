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
pub struct Delivery<'a> {
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
    /// A recording's timebase: its first frame's wall time and media time. Frames of a
    /// recording arrive at any pace (download at N×), so their wall time is the recording's,
    /// not their arrival's.
    recorded: Option<(WallTime, Option<i64>)>,
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
            recorded: None,
            delivered: false,
        }
    }

    /// Frames are a recording that starts at `start`: wall times follow media time from there,
    /// whatever the pace they arrive at.
    pub fn recording_from(mut self, start: WallTime) -> Self {
        self.recorded = Some((start, None));
        self
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
        self.deliver_at(media_time, key, data, arrival, None);
    }

    /// Delivers a frame another node relayed: its parameters, run boundary and wall time are
    /// the sender's (the recording node anchored it to its clock; anchoring it again here
    /// would only add this hop's jitter).
    pub fn deliver_relayed(&mut self, frame: Frame, arrival: WallTime) {
        self.set_params(frame.params.clone());
        if frame.discontinuity {
            self.discontinuity = true;
        }
        self.deliver_at(frame.media_time, frame.key, frame.data, arrival, Some(frame.wall_time));
    }

    fn deliver_at(&mut self, media_time: i64, key: bool, data: Bytes, arrival: WallTime, given: Option<WallTime>) {
        let Some(p) = self.params.clone() else { return };
        let camera = self.stream.camera();
        let check = match self.recorded {
            // A download's media time runs faster than arrivals: only a step back breaks it.
            Some(_) => match self.timeline.check(media_time, arrival) {
                TimelineCheck::ForwardJump { .. } => TimelineCheck::Continues,
                c => c,
            },
            None => self.timeline.check(media_time, arrival),
        };
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
        let wall = match (&mut self.recorded, given) {
            (_, Some(wall)) => crate::clock::Mapped { wall, anchored: false },
            (Some((start, first)), None) => {
                let first = *first.get_or_insert(media_time);
                crate::clock::Mapped {
                    wall: WallTime::from_micros(start.as_micros() + media::media_to_micros(media_time - first)),
                    anchored: false,
                }
            }
            (None, None) => self.clock.map(media_time, arrival),
        };
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
