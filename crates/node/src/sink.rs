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
    /// In a cluster: whether this member may write the camera now.
    gate: Option<Arc<cluster::CameraGate>>,
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
            gate: None,
            lost: AtomicBool::new(false),
            channel,
            intact,
        }
    }
}

impl StreamSink {
    fn record(&self, recorder: &Recorder, mut frame: Frame) {
        if self.lost.swap(false, Ordering::Relaxed) {
            frame.discontinuity = true;
        }
        if recorder.try_push(frame).is_err() {
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    /// Records only what `gate` admits (a cluster member's claimed cameras while its lease
    /// holds).
    pub fn gated(mut self, gate: Option<Arc<cluster::CameraGate>>) -> StreamSink {
        self.gate = gate;
        self
    }
}

impl FrameSink for StreamSink {
    fn frame(&self, frame: Frame) {
        if let Some(judge) = &self.intact {
            judge.frame(&frame);
        }
        self.channel.publish(&frame);
        if let Some(recorder) = &self.recorder {
            if let Some(gate) = &self.gate {
                let now = std::time::Instant::now();
                match gate.admit(frame.key, frame.wall_time.as_micros(), now) {
                    cluster::Admit::Write(_) => {}
                    cluster::Admit::Skip => return,
                    cluster::Admit::End => {
                        recorder.end_stream(&frame.stream);
                        return;
                    }
                    cluster::Admit::Await => {
                        // Taking the camera over: from the cached GOP (which ends with this
                        // frame) when its key frame is not before the handover instant.
                        let gop = self.channel.gop();
                        let start = match gop.first() {
                            Some(k) if k.key && gop.last().is_some_and(|l| l.media_time == frame.media_time) => {
                                gate.begin(k.wall_time.as_micros(), now).map(|_| gop)
                            }
                            _ if frame.key => gate
                                .begin(frame.wall_time.as_micros(), now)
                                .map(|_| vec![frame.clone()]),
                            _ => None,
                        };
                        for f in start.into_iter().flatten() {
                            self.record(recorder, f);
                        }
                        return;
                    }
                }
            }
            self.record(recorder, frame);
        }
    }

    fn end_of_stream(&self, stream: &StreamId) {
        self.channel.upstream_ended();
        if let Some(recorder) = &self.recorder {
            recorder.end_stream(stream);
        }
    }
}
