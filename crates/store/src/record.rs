//! The index entry of one segment and its compact binary encoding.
//!
//! One entry per segment, rewritten as the segment grows (each flush) and a last time when it
//! closes. Its key-frame table lists where each GOP starts (time → byte offset of the fragment
//! that begins with the key frame), so a reader seeks to any key frame without walking the
//! file; fragments inside a GOP (a flush can split one) are found by following the boxes from
//! there. Media offsets are delta-of-delta coded (a camera's GOP length rarely changes, so most
//! cost one byte) and byte offsets delta coded: about 6 bytes per GOP.

use media::{StreamId, VideoCodec, WallTime, media_to_micros};

/// Version byte of the encoding.
const VERSION: u8 = 1;

/// One GOP of a segment: the fragment that starts with its key frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KeyFrameEntry {
    /// Media time of the key frame, in 90 kHz ticks from the segment's start.
    pub media_offset: u64,
    /// File offset of the first box (`prft`, or `moof`) of the fragment it starts.
    pub byte_offset: u64,
    /// Wall time of the key frame minus the nominal `segment start + media_offset`, in µs:
    /// the drift correction applied up to here (usually a few µs or ms).
    pub wall_deviation_us: i64,
    /// Frames in the GOP (up to the next entry or the end of the segment).
    pub frames: u32,
}

/// Everything the index knows about one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRecord {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Sequence number within the stream (names the file).
    pub seq: u64,
    /// Wall time of the first frame.
    pub start: WallTime,
    /// Wall time just after the last frame (its start plus its duration).
    pub end: WallTime,
    /// Media time (90 kHz, camera clock) of the first frame.
    pub media_start: i64,
    /// Decode time (`tfdt`, 90 kHz) of the first frame in the file. A segment continues the
    /// timeline of the one before it when the recording is continuous, so consecutive files
    /// play as one stream; a new run (after a gap) starts at 0.
    pub timeline_start: u64,
    /// Media duration in 90 kHz ticks.
    pub media_duration: u64,
    /// Frames in the segment.
    pub frames: u64,
    /// Length of the file's durable, complete part in bytes.
    pub bytes: u64,
    /// False while the recorder is still appending to it.
    pub closed: bool,
    /// Codec.
    pub codec: VideoCodec,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The key-frame table: one entry per GOP, in file order. The first is the segment's first
    /// frame (segments start with a key frame).
    pub key_frames: Vec<KeyFrameEntry>,
}

impl SegmentRecord {
    /// The record without its key-frame table: what the index keeps of a closed segment.
    pub fn summary(&self) -> SegmentRecord {
        SegmentRecord {
            key_frames: Vec::new(),
            ..self.clone()
        }
    }

    /// Wall time of a key frame.
    pub fn key_frame_wall(&self, f: &KeyFrameEntry) -> WallTime {
        self.start
            .add_micros(media_to_micros(f.media_offset as i64) + f.wall_deviation_us)
    }

    /// Encodes the value part (the key holds stream, start and sequence number).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.key_frames.len() * 6);
        out.push(VERSION);
        out.push(u8::from(self.closed));
        out.push(match self.codec {
            VideoCodec::H264 => 0,
            VideoCodec::H265 => 1,
        });
        put(&mut out, u64::from(self.width));
        put(&mut out, u64::from(self.height));
        put(&mut out, self.end.micros_since(self.start).max(0) as u64);
        put(&mut out, zigzag(self.media_start));
        put(&mut out, self.timeline_start);
        put(&mut out, self.media_duration);
        put(&mut out, self.frames);
        put(&mut out, self.bytes);
        put(&mut out, self.key_frames.len() as u64);
        let (mut media, mut step, mut byte) = (0u64, 0i64, 0u64);
        for f in &self.key_frames {
            let d = f.media_offset.wrapping_sub(media) as i64;
            put(&mut out, zigzag(d.wrapping_sub(step)));
            put(&mut out, f.byte_offset.wrapping_sub(byte));
            put(&mut out, zigzag(f.wall_deviation_us));
            put(&mut out, u64::from(f.frames));
            (media, step, byte) = (f.media_offset, d, f.byte_offset);
        }
        out
    }

    /// Decodes a value written by [`SegmentRecord::encode`]; never panics on any input.
    pub fn decode(stream: StreamId, start: WallTime, seq: u64, bytes: &[u8]) -> Result<Self, String> {
        Self::decode_with(stream, start, seq, bytes, true)
    }

    /// Decodes everything but the key-frame table (left empty): what listings need, at a
    /// fraction of the cost.
    pub fn decode_summary(stream: StreamId, start: WallTime, seq: u64, bytes: &[u8]) -> Result<Self, String> {
        Self::decode_with(stream, start, seq, bytes, false)
    }

    fn decode_with(stream: StreamId, start: WallTime, seq: u64, bytes: &[u8], table: bool) -> Result<Self, String> {
        let mut r = Reader(bytes);
        let version = r.byte()?;
        if version != VERSION {
            return Err(format!("unknown entry version {version}"));
        }
        let closed = match r.byte()? {
            0 => false,
            1 => true,
            v => return Err(format!("bad closed flag {v}")),
        };
        let codec = match r.byte()? {
            0 => VideoCodec::H264,
            1 => VideoCodec::H265,
            v => return Err(format!("unknown codec {v}")),
        };
        let width = r.u32()?;
        let height = r.u32()?;
        let span = r.varint()?;
        let end = start.add_micros(i64::try_from(span).map_err(|_| "duration overflows")?);
        let media_start = unzigzag(r.varint()?);
        let timeline_start = r.varint()?;
        let media_duration = r.varint()?;
        let frames = r.varint()?;
        let file_bytes = r.varint()?;
        let n = if table { r.varint()? } else { 0 };
        if !table {
            r.0 = &[];
        }

        // Each entry takes at least 4 bytes: a count beyond that is corrupt, not a reason to
        // allocate.
        if n > (r.0.len() / 4) as u64 {
            return Err(format!("{n} key frames cannot fit in {} bytes", r.0.len()));
        }
        let mut key_frames = Vec::with_capacity(n as usize);
        let (mut media, mut step, mut byte) = (0u64, 0i64, 0u64);
        for _ in 0..n {
            step = step.wrapping_add(unzigzag(r.varint()?));
            media = media.wrapping_add(step as u64);
            byte = byte.wrapping_add(r.varint()?);
            let wall_deviation_us = unzigzag(r.varint()?);
            key_frames.push(KeyFrameEntry {
                media_offset: media,
                byte_offset: byte,
                wall_deviation_us,
                frames: r.u32()?,
            });
        }
        if !r.0.is_empty() {
            return Err(format!("{} trailing bytes", r.0.len()));
        }
        Ok(SegmentRecord {
            stream,
            seq,
            start,
            end,
            media_start,
            timeline_start,
            media_duration,
            frames,
            bytes: file_bytes,
            closed,
            codec,
            width,
            height,
            key_frames,
        })
    }
}

pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads the varint encodings of [`put`] and [`zigzag`] off the front of a slice.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn byte(&mut self) -> Result<u8, String> {
        let (&b, rest) = self.0.split_first().ok_or("truncated")?;
        self.0 = rest;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "value overflows 32 bits".into())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(fragments: usize) -> SegmentRecord {
        SegmentRecord {
            stream: StreamId::main("cam0"),
            seq: 7,
            start: WallTime::from_micros(1_795_420_800_000_000),
            end: WallTime::from_micros(1_795_420_860_000_000),
            media_start: -5,
            timeline_start: 123_456_789,
            media_duration: 60 * 90_000,
            frames: 1500,
            bytes: 31_000_000,
            closed: true,
            codec: VideoCodec::H265,
            width: 1920,
            height: 1080,
            key_frames: (0..fragments as u64)
                .map(|i| KeyFrameEntry {
                    media_offset: i * 90_000 + (i % 7) * 3600,
                    byte_offset: 1000 + i * 500_000,
                    wall_deviation_us: (i as i64 % 3) - 1,
                    frames: 25,
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip() {
        let r = sample(60);
        let bytes = r.encode();
        assert!(bytes.len() < 60 * 7 + 40, "{} bytes", bytes.len());
        let d = SegmentRecord::decode(r.stream.clone(), r.start, r.seq, &bytes).unwrap();
        assert_eq!(d, r);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let bytes = sample(10).encode();
        for len in 0..bytes.len() {
            assert!(SegmentRecord::decode(StreamId::main("c"), WallTime::default(), 1, &bytes[..len]).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = SegmentRecord::decode(StreamId::main("c"), WallTime::default(), 1, &b);
        }
        let mut huge = vec![VERSION, 1, 0];
        huge.extend([0xff; 9]);
        huge.push(0x01);
        assert!(SegmentRecord::decode(StreamId::main("c"), WallTime::default(), 1, &huge).is_err());
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, 12345, -98765] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
