//! The transcode as an `ingest` session: the upstream of a camera's `h264` hub channel, fed by
//! watching the camera's main channel. The supervisor restarts it (and reports why in the
//! camera's health) like any pull.

use std::sync::Weak;
use std::time::Duration;

use ingest::deliver::Delivery;
use ingest::supervisor::{Ended, Retry, Session};
use ingest::{FrameSink, SourceHealth};
use media::{StreamId, WallTime};

use crate::{Target, TranscodeError, Transcoder};

/// Largest re-encoded frame passed on (a 720p key frame at 2 Mbit/s is far below this).
const MAX_FRAME_BYTES: usize = 4 << 20;

/// A transcode of `input` (a main stream) into `output` (its `h264` stream).
pub struct TranscodeSession {
    hub: Weak<hub::Hub>,
    input: StreamId,
    output: StreamId,
    target: Target,
    retry: Retry,
}

impl TranscodeSession {
    /// A transcode of `input` into `output` for the hub's viewers.
    pub fn new(hub: Weak<hub::Hub>, input: StreamId, output: StreamId, target: Target, retry: Retry) -> Self {
        TranscodeSession {
            hub,
            input,
            output,
            target,
            retry,
        }
    }
}

impl Session for TranscodeSession {
    type Error = TranscodeError;

    fn stream(&self) -> &StreamId {
        &self.output
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("camera", id = self.output.camera(), stream = "h264", transcode = true)
    }

    fn retry(&self) -> Retry {
        self.retry
    }

    async fn run(&mut self, sink: &dyn FrameSink, health: &SourceHealth) -> Ended<TranscodeError> {
        let ended = |error| Ended {
            delivered: false,
            error,
        };
        let input_ended = || TranscodeError::InputEnded {
            camera: self.input.camera().to_owned(),
        };
        let Some(hub) = self.hub.upgrade() else {
            return ended(input_ended());
        };
        // A viewer of the main stream like any other: the camera is still pulled once.
        let mut viewer = match hub.watch(&self.input, hub::Output::Transcode) {
            Ok(v) => v,
            Err(e) => return ended(TranscodeError::Pipeline(e.to_string())),
        };
        drop(hub);
        let mut transcoder = match Transcoder::new(self.output.clone(), self.target) {
            Ok(t) => t,
            Err(e) => return ended(e),
        };
        health.session_started();
        tracing::info!("camera {}: transcoding its main stream to H.264", self.input.camera());
        let mut delivery = Delivery::new(&self.output, "transcoder".into(), sink, health, MAX_FRAME_BYTES);
        let error = loop {
            let Some(frame) = viewer.recv().await else {
                break input_ended();
            };
            if let Err(e) = transcoder.push(&frame) {
                break e;
            }
            // What the encoder has ready now; the rest comes out with the next input frame.
            loop {
                match transcoder.pull(Duration::ZERO) {
                    Ok(Some(f)) => delivery.deliver_relayed(f, WallTime::now()),
                    Ok(None) => break,
                    Err(e) => {
                        return Ended {
                            delivered: delivery.delivered,
                            error: e,
                        };
                    }
                }
            }
        };
        Ended {
            delivered: delivery.delivered,
            error,
        }
    }

    fn needs_operator(error: &TranscodeError) -> bool {
        matches!(error, TranscodeError::NotBuilt | TranscodeError::Pipeline(_))
    }
}
