//! Fixtures: short encoded clips split into access units and packetized into RTP payloads once,
//! at load, so that serving a thousand cameras only adds 12-byte RTP headers per packet.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use media::{VideoCodec, annexb, h264, h265};

/// Largest RTP payload camsim sends: keeps packets under a 1500-byte Ethernet MTU.
pub use media::rtp::MAX_PAYLOAD;
use media::rtp::packetize;

/// Frame duration of every built-in fixture: 25 fps on the 90 kHz clock.
pub const FRAME_TICKS: u32 = 3600;

/// One access unit, ready to send.
#[derive(Debug)]
pub struct FixtureFrame {
    /// True if the access unit holds an IDR/IRAP picture.
    pub key: bool,
    /// The RTP payloads (single NAL units or fragmentation units), in order; the last one
    /// carries the RTP marker bit.
    pub packets: Vec<Bytes>,
    /// Sum of the payload sizes.
    pub bytes: usize,
    /// The access unit in MP4 form: 4-byte length-prefixed NAL units, without parameter sets
    /// or delimiters (what a recorder receives from a depacketizer).
    pub avcc: Bytes,
}

/// A clip replayed in a loop, starting at its first (key) frame.
#[derive(Debug)]
pub struct Fixture {
    /// Short name (`h264_1080p`, ...).
    pub name: String,
    /// The codec.
    pub codec: VideoCodec,
    /// Width and height in pixels.
    pub dimensions: (u32, u32),
    /// The frames, in decode (= presentation) order. Never empty; the first is a key frame.
    pub frames: Vec<FixtureFrame>,
    /// The `a=fmtp` attribute value for the SDP (parameter sets out of band).
    pub fmtp: String,
    /// 90 kHz ticks between frames.
    pub frame_ticks: u32,
    /// The stream parameters (absent for deliberately broken fixtures).
    pub params: Option<Arc<media::StreamParams>>,
}

/// Why a fixture could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The clip is missing a parameter set or has no key frame to start from.
    #[error("fixture {name}: {problem}")]
    Invalid {
        /// Fixture name.
        name: String,
        /// What is missing.
        problem: String,
    },
    /// A parameter set does not parse.
    #[error("fixture {name}: {source}")]
    Params {
        /// Fixture name.
        name: String,
        /// The parser's error.
        source: media::ParamsError,
    },
}

/// The built-in clips, committed under `tests/fixtures/` (see the README there for how they
/// were made): 4 s, 25 fps, one key frame per second, no B-frames.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinFixture {
    /// H.264 High, 1920x1080, ~4 Mbit/s.
    H264_1080p,
    /// H.264 Main, 320x240, ~256 kbit/s.
    H264_240p,
    /// H.265 Main, 1920x1080, ~2 Mbit/s.
    H265_1080p,
    /// H.265 Main, 320x240, ~192 kbit/s.
    H265_240p,
}

impl BuiltinFixture {
    /// Every built-in fixture.
    pub const ALL: [BuiltinFixture; 4] = [
        BuiltinFixture::H264_1080p,
        BuiltinFixture::H264_240p,
        BuiltinFixture::H265_1080p,
        BuiltinFixture::H265_240p,
    ];

    /// The fixture's file name stem.
    pub const fn name(self) -> &'static str {
        match self {
            BuiltinFixture::H264_1080p => "h264_1080p",
            BuiltinFixture::H264_240p => "h264_240p",
            BuiltinFixture::H265_1080p => "h265_1080p",
            BuiltinFixture::H265_240p => "h265_240p",
        }
    }

    /// Looks a fixture up by name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            BuiltinFixture::H264_1080p => {
                include_bytes!("../../../tests/fixtures/h264_1080p.h264")
            }
            BuiltinFixture::H264_240p => include_bytes!("../../../tests/fixtures/h264_240p.h264"),
            BuiltinFixture::H265_1080p => {
                include_bytes!("../../../tests/fixtures/h265_1080p.h265")
            }
            BuiltinFixture::H265_240p => include_bytes!("../../../tests/fixtures/h265_240p.h265"),
        }
    }

    const fn codec(self) -> VideoCodec {
        match self {
            BuiltinFixture::H264_1080p | BuiltinFixture::H264_240p => VideoCodec::H264,
            BuiltinFixture::H265_1080p | BuiltinFixture::H265_240p => VideoCodec::H265,
        }
    }

    /// The loaded fixture, shared: parsed and packetized once per process.
    pub fn load(self) -> Arc<Fixture> {
        static CACHE: [OnceLock<Arc<Fixture>>; 4] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = &CACHE[Self::ALL.iter().position(|f| *f == self).unwrap_or(0)];
        slot.get_or_init(|| {
            // The built-in clips are checked by the tests; failing here is a build defect.
            Arc::new(
                Fixture::from_annexb(self.name(), self.codec(), self.bytes(), FRAME_TICKS)
                    .expect("built-in fixture is valid"),
            )
        })
        .clone()
    }

    /// The same clip with every SPS cut to 4 bytes, in band and in the SDP: a camera whose
    /// encoder emits corrupt parameter sets.
    pub fn load_with_truncated_sps(self) -> Arc<Fixture> {
        let f = self.load();
        let cut = |nal: &Bytes| -> Bytes {
            let ty = match f.codec {
                VideoCodec::H264 => h264::nal_type(nal[0]),
                VideoCodec::H265 => h265::nal_type(nal[0]),
            };
            let sps = matches!(
                (f.codec, ty),
                (VideoCodec::H264, h264::NAL_SPS) | (VideoCodec::H265, h265::NAL_SPS)
            );
            if sps {
                nal.slice(..4.min(nal.len()))
            } else {
                nal.clone()
            }
        };
        let frames = f
            .frames
            .iter()
            .map(|fr| {
                let packets: Vec<Bytes> = fr.packets.iter().map(cut).collect();
                FixtureFrame {
                    key: fr.key,
                    bytes: packets.iter().map(Bytes::len).sum(),
                    packets,
                    avcc: fr.avcc.clone(),
                }
            })
            .collect();
        let fmtp = match f.codec {
            VideoCodec::H264 => "packetization-mode=1;sprop-parameter-sets=Z2QA,aO48gA==".to_owned(),
            VideoCodec::H265 => "sprop-vps=QAEMAf//;sprop-sps=QgEB;sprop-pps=RAHA".to_owned(),
        };
        Arc::new(Fixture {
            name: format!("{}-truncated-sps", f.name),
            codec: f.codec,
            dimensions: f.dimensions,
            frames,
            fmtp,
            frame_ticks: f.frame_ticks,
            params: None,
        })
    }
}

impl Fixture {
    /// Loads an Annex B clip: groups NAL units into access units at each access-unit delimiter
    /// (or, without delimiters, at each parameter set or first slice after a slice), packetizes
    /// them (RFC 6184 / RFC 7798: single NAL unit or fragmentation units) and builds the SDP
    /// parameters from the first parameter sets.
    pub fn from_annexb(
        name: &str,
        codec: VideoCodec,
        stream: &[u8],
        frame_ticks: u32,
    ) -> Result<Fixture, FixtureError> {
        let invalid = |problem: &str| FixtureError::Invalid {
            name: name.to_owned(),
            problem: problem.to_owned(),
        };
        let mut units: Vec<Vec<&[u8]>> = Vec::new();
        let mut current: Vec<&[u8]> = Vec::new();
        let mut vps: Option<&[u8]> = None;
        let mut sps: Option<&[u8]> = None;
        let mut pps: Option<&[u8]> = None;
        let mut saw_slice = false;
        for nal in annexb::nal_units(stream) {
            let (ty, is_aud, is_param, is_slice) = match codec {
                VideoCodec::H264 => {
                    let t = h264::nal_type(nal[0]);
                    (
                        t,
                        t == h264::NAL_AUD,
                        t == h264::NAL_SPS || t == h264::NAL_PPS,
                        (1..=5).contains(&t),
                    )
                }
                VideoCodec::H265 => {
                    if nal.len() < 2 {
                        continue;
                    }
                    let t = h265::nal_type(nal[0]);
                    (t, t == h265::NAL_AUD, (32..=34).contains(&t), t < 32)
                }
            };
            if (is_aud || (is_param && saw_slice)) && !current.is_empty() {
                units.push(std::mem::take(&mut current));
                saw_slice = false;
            }
            match (codec, ty) {
                (VideoCodec::H264, h264::NAL_SPS) | (VideoCodec::H265, h265::NAL_SPS) => {
                    sps.get_or_insert(nal);
                }
                (VideoCodec::H264, h264::NAL_PPS) | (VideoCodec::H265, h265::NAL_PPS) => {
                    pps.get_or_insert(nal);
                }
                (VideoCodec::H265, h265::NAL_VPS) => {
                    vps.get_or_insert(nal);
                }
                _ => {}
            }
            if is_aud {
                continue;
            }
            saw_slice |= is_slice;
            current.push(nal);
        }
        if !current.is_empty() {
            units.push(current);
        }
        let sps = sps.ok_or_else(|| invalid("no SPS"))?;
        let pps = pps.ok_or_else(|| invalid("no PPS"))?;
        let params_err = |source| FixtureError::Params {
            name: name.to_owned(),
            source,
        };
        let vps = match codec {
            VideoCodec::H264 => None,
            VideoCodec::H265 => Some(vps.ok_or_else(|| invalid("no VPS"))?),
        };
        let params = Arc::new(
            match vps {
                None => media::StreamParams::h264(sps, pps),
                Some(vps) => media::StreamParams::h265(vps, sps, pps),
            }
            .map_err(params_err)?,
        );
        let (dimensions, fmtp) = ((params.width(), params.height()), media::rtp::fmtp(&params));
        let frames: Vec<FixtureFrame> = units
            .iter()
            .filter(|u| !u.is_empty())
            .map(|nals| {
                let key = nals.iter().any(|n| match codec {
                    VideoCodec::H264 => h264::nal_type(n[0]) == h264::NAL_IDR,
                    VideoCodec::H265 => h265::is_irap(h265::nal_type(n[0])),
                });
                let packets = packetize(codec, nals.iter().copied(), MAX_PAYLOAD);
                let mut avcc = Vec::new();
                for n in nals.iter().filter(|n| !is_parameter_set(codec, n)) {
                    avcc.extend_from_slice(&(n.len() as u32).to_be_bytes());
                    avcc.extend_from_slice(n);
                }
                FixtureFrame {
                    key,
                    bytes: packets.iter().map(Bytes::len).sum(),
                    packets,
                    avcc: Bytes::from(avcc),
                }
            })
            .collect();
        match frames.first() {
            None => return Err(invalid("no frames")),
            Some(f) if !f.key => return Err(invalid("does not start with a key frame")),
            Some(_) => {}
        }
        Ok(Fixture {
            name: name.to_owned(),
            codec,
            dimensions,
            frames,
            fmtp,
            frame_ticks,
            params: Some(params),
        })
    }

    /// `count` frames of this clip (looping) as a depacketizer would deliver them, for feeding
    /// a recorder directly in tests and benchmarks: media time from `media_start` in steps of
    /// one frame, wall time from `wall_start` likewise, the first one a discontinuity.
    pub fn frames(
        &self,
        stream: &media::StreamId,
        count: usize,
        media_start: i64,
        wall_start: media::WallTime,
    ) -> Vec<media::Frame> {
        let Some(params) = self.params.clone() else {
            return Vec::new();
        };
        (0..count)
            .map(|i| {
                let f = &self.frames[i % self.frames.len()];
                let ticks = i as i64 * i64::from(self.frame_ticks);
                media::Frame {
                    stream: stream.clone(),
                    media_time: media_start + ticks,
                    wall_time: wall_start.add_micros(media::media_to_micros(ticks)),
                    key: f.key,
                    discontinuity: i == 0,
                    params: params.clone(),
                    data: f.avcc.clone(),
                }
            })
            .collect()
    }

    /// Length of one loop of the clip in 90 kHz ticks.
    pub fn loop_ticks(&self) -> u64 {
        self.frames.len() as u64 * u64::from(self.frame_ticks)
    }

    /// Average bit rate of the clip in bits per second.
    pub fn bitrate(&self) -> u64 {
        let bytes: usize = self.frames.iter().map(|f| f.bytes).sum();
        bytes as u64 * 8 * 90_000 / self.loop_ticks().max(1)
    }

    /// The SDP `a=rtpmap` encoding name.
    pub fn encoding_name(&self) -> &'static str {
        match self.codec {
            VideoCodec::H264 => "H264",
            VideoCodec::H265 => "H265",
        }
    }
}

fn is_parameter_set(codec: VideoCodec, nal: &[u8]) -> bool {
    match codec {
        VideoCodec::H264 => matches!(h264::nal_type(nal[0]), h264::NAL_SPS | h264::NAL_PPS),
        VideoCodec::H265 => (32..=34).contains(&h265::nal_type(nal[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_fixtures_load_with_known_gop() {
        for f in BuiltinFixture::ALL {
            let fx = f.load();
            assert_eq!(fx.frames.len(), 100, "{}", fx.name);
            let keys: Vec<usize> = fx
                .frames
                .iter()
                .enumerate()
                .filter(|(_, f)| f.key)
                .map(|(i, _)| i)
                .collect();
            assert_eq!(keys, vec![0, 25, 50, 75], "{}", fx.name);
            assert!(
                fx.frames
                    .iter()
                    .all(|f| f.packets.iter().all(|p| p.len() <= MAX_PAYLOAD))
            );
        }
        assert_eq!(BuiltinFixture::H264_1080p.load().dimensions, (1920, 1080));
        assert_eq!(BuiltinFixture::H265_240p.load().dimensions, (320, 240));
        let rate = BuiltinFixture::H264_1080p.load().bitrate();
        assert!((3_500_000..5_000_000).contains(&rate), "{rate}");
    }

    #[test]
    fn rejects_a_clip_without_parameter_sets() {
        let err = Fixture::from_annexb("x", VideoCodec::H264, &[0, 0, 1, 0x65, 1, 2], 3600);
        assert!(err.is_err());
    }
}
