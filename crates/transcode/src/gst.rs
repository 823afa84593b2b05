//! The GStreamer pipeline: Annex B in through `appsrc`, decoded, scaled, encoded with x264 for
//! low latency, Annex B H.264 access units out through `appsink`.

use std::time::Duration;

use gstreamer as gs;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};
use media::VideoCodec;

use crate::{Target, TranscodeError};

fn pipeline_error(e: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Pipeline(e.to_string())
}

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), TranscodeError> {
    gs::init().map_err(pipeline_error)
}

/// 90 kHz media time as GStreamer nanoseconds, and back.
fn to_ns(media_time: i64) -> u64 {
    (media_time.max(0) as u128 * 100_000 / 9) as u64
}

fn from_ns(ns: u64) -> i64 {
    ((ns as u128 * 9 + 50_000) / 100_000) as i64
}

/// One running pipeline.
pub struct Pipeline {
    pipeline: gs::Pipeline,
    src: AppSrc,
    sink: AppSink,
}

/// The caps of a camera's byte stream and the elements that decode it.
fn decoder(codec: VideoCodec) -> (&'static str, &'static str) {
    match codec {
        VideoCodec::H264 => ("video/x-h264", "h264parse ! avdec_h264"),
        VideoCodec::H265 => ("video/x-h265", "h265parse ! avdec_h265"),
    }
}

impl Pipeline {
    /// Decodes `codec` and encodes H.264 at `width`×`height`.
    pub fn new(codec: VideoCodec, width: u32, height: u32, target: Target) -> Result<Pipeline, TranscodeError> {
        let (caps, decode) = decoder(codec);
        // Live, no clock sync, no B-frames, key frames every `gop`: each input frame comes out
        // as soon as the encoder has it.
        Pipeline::launch(&format!(
            "appsrc name=src is-live=true format=time caps={caps},stream-format=byte-stream,alignment=au \
             ! {decode} max-threads=2 ! videoscale ! videoconvert ! video/x-raw,format=I420,width={width},height={height} \
             ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} threads=2 \
             ! video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=byte-stream,alignment=au \
             ! appsink name=sink sync=false max-buffers=100",
            kbps = target.kbps,
            gop = target.gop,
        ))
    }

    /// Builds and starts the pipeline `desc`, whose ends are an `appsrc` named `src` and an
    /// `appsink` named `sink`.
    fn launch(desc: &str) -> Result<Pipeline, TranscodeError> {
        let pipeline = gs::parse::launch(desc)
            .map_err(pipeline_error)?
            .downcast::<gs::Pipeline>()
            .map_err(|_| TranscodeError::Pipeline("not a pipeline".into()))?;
        let by_name = |n: &str| {
            pipeline
                .by_name(n)
                .ok_or_else(|| TranscodeError::Pipeline(format!("no element {n}")))
        };
        let src = by_name("src")?
            .downcast::<AppSrc>()
            .map_err(|_| TranscodeError::Pipeline("src is not an appsrc".into()))?;
        let sink = by_name("sink")?
            .downcast::<AppSink>()
            .map_err(|_| TranscodeError::Pipeline("sink is not an appsink".into()))?;
        pipeline.set_state(gs::State::Playing).map_err(pipeline_error)?;
        Ok(Pipeline { pipeline, src, sink })
    }

    /// Feeds one Annex B access unit.
    pub fn push(&self, bytes: Vec<u8>, media_time: i64) -> Result<(), TranscodeError> {
        self.check_bus()?;
        let mut buf = gs::Buffer::from_mut_slice(bytes);
        if let Some(b) = buf.get_mut() {
            b.set_pts(gs::ClockTime::from_nseconds(to_ns(media_time)));
        }
        self.src.push_buffer(buf).map(|_| ()).map_err(pipeline_error)
    }

    /// An encoded access unit and its media time, if one comes within `wait`.
    pub fn pull(&self, wait: Duration) -> Result<Option<(Vec<u8>, i64)>, TranscodeError> {
        self.check_bus()?;
        let Some(sample) = self
            .sink
            .try_pull_sample(gs::ClockTime::from_nseconds(wait.as_nanos() as u64))
        else {
            return Ok(None);
        };
        let Some(buf) = sample.buffer() else { return Ok(None) };
        let pts = buf.pts().map_or(0, |t| t.nseconds());
        let map = buf.map_readable().map_err(pipeline_error)?;
        Ok(Some((map.as_slice().to_vec(), from_ns(pts))))
    }

    /// An error any element posted (a plugin missing, a stream it cannot decode).
    fn check_bus(&self) -> Result<(), TranscodeError> {
        let Some(bus) = self.pipeline.bus() else { return Ok(()) };
        while let Some(msg) = bus.pop_filtered(&[gs::MessageType::Error]) {
            if let gs::MessageView::Error(e) = msg.view() {
                return Err(TranscodeError::Pipeline(format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gs::State::Null);
    }
}

/// Decodes `units` (Annex B access units with their media times, from a key frame on) and
/// returns the JPEG of the last picture at `width`×`height`. The picture goes to the encoder as
/// RGB: given the camera's limited-range YUV as is, `jpegenc` would label it full range (JFIF)
/// and every viewer would see it washed out.
pub fn jpeg(
    codec: VideoCodec,
    units: Vec<(Vec<u8>, i64)>,
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, TranscodeError> {
    let (caps, decode) = decoder(codec);
    let p = Pipeline::launch(&format!(
        "appsrc name=src format=time caps={caps},stream-format=byte-stream,alignment=au \
         ! {decode} ! videoscale ! videoconvert ! video/x-raw,format=RGB,width={width},height={height} \
         ! jpegenc quality={quality} ! appsink name=sink sync=false"
    ))?;
    for (bytes, t) in units {
        p.push(bytes, t)?;
    }
    p.src.end_of_stream().map_err(pipeline_error)?;
    let mut last = None;
    // Every decoded picture comes out as a JPEG; the last one is the instant asked for.
    while let Some(sample) = p.sink.try_pull_sample(gs::ClockTime::from_seconds(10)) {
        if let Some(buf) = sample.buffer() {
            let map = buf.map_readable().map_err(pipeline_error)?;
            last = Some(map.as_slice().to_vec());
        }
    }
    match last {
        Some(jpeg) => Ok(jpeg),
        None => {
            p.check_bus()?;
            Err(TranscodeError::Malformed("the decoder gave no picture".into()))
        }
    }
}

/// Decodes one key frame (`unit`, Annex B) to 8-bit luma at `width`×`height`; `width` must be
/// a multiple of 4 (GStreamer aligns GRAY8 rows to 4 bytes: then they come packed).
pub fn gray(
    codec: VideoCodec,
    unit: Vec<u8>,
    media_time: i64,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, TranscodeError> {
    if !width.is_multiple_of(4) {
        return Err(TranscodeError::Malformed(format!(
            "a width of {width} is not a multiple of 4"
        )));
    }
    let (caps, decode) = decoder(codec);
    let p = Pipeline::launch(&format!(
        "appsrc name=src format=time caps={caps},stream-format=byte-stream,alignment=au \
         ! {decode} max-threads=1 ! videoscale ! videoconvert ! video/x-raw,format=GRAY8,width={width},height={height} \
         ! appsink name=sink sync=false"
    ))?;
    p.push(unit, media_time)?;
    p.src.end_of_stream().map_err(pipeline_error)?;
    match p.sink.try_pull_sample(gs::ClockTime::from_seconds(10)) {
        Some(sample) => {
            let buf = sample
                .buffer()
                .ok_or_else(|| TranscodeError::Malformed("the decoder gave an empty picture".into()))?;
            let map = buf.map_readable().map_err(pipeline_error)?;
            Ok(map.as_slice().to_vec())
        }
        None => {
            p.check_bus()?;
            Err(TranscodeError::Malformed("the decoder gave no picture".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for t in [0, 3600, 90_000, 1 << 40] {
            assert_eq!(from_ns(to_ns(t)), t);
        }
        assert_eq!(to_ns(90_000), 1_000_000_000);
    }
}
