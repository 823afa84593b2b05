//! Where a pulled stream's frames go: the recorder (if the stream is recorded) and its live
//! channel. This is the one place `ingest`, `store` and `hub` meet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ingest::FrameSink;
use media::{Frame, StreamId};
use store::Recorder;

/// Delivers a stream's frames to the recorder (if recorded) and to its live channel. When the
/// recorder's queue is full a frame is lost, and the next one is marked as a discontinuity so
/// that the segment ends cleanly there. Recording does not go through the channel: a viewer
/// may skip frames when it lags, the recorder must not.
pub struct StreamSink {
    recorder: Option<Recorder>,
    lost: AtomicBool,
    channel: Arc<hub::Channel>,
    intact: Option<Arc<api::intact::Judge>>,
}

impl StreamSink {
    /// A sink feeding `channel`, `recorder` when the stream is recorded, and the camera's
    /// `intact` judge for a main stream.
    pub fn new(
        channel: Arc<hub::Channel>,
        recorder: Option<Recorder>,
        intact: Option<Arc<api::intact::Judge>>,
    ) -> StreamSink {
        StreamSink {
            recorder,
            lost: AtomicBool::new(false),
            channel,
            intact,
        }
    }
}

impl FrameSink for StreamSink {
    fn frame(&self, frame: Frame) {
        if let Some(judge) = &self.intact {
            judge.frame(&frame);
        }
        self.channel.publish(&frame);
        if let Some(recorder) = &self.recorder {
            let mut frame = frame;
            if self.lost.swap(false, Ordering::Relaxed) {
                frame.discontinuity = true;
            }
            if recorder.try_push(frame).is_err() {
                self.lost.store(true, Ordering::Relaxed);
            }
        }
    }

    fn end_of_stream(&self, stream: &StreamId) {
        self.channel.upstream_ended();
        if let Some(recorder) = &self.recorder {
            recorder.end_stream(stream);
        }
    }
}
