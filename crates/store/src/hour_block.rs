//! One stream-hour of the index (schema 2): the summaries of the closed segments of one stream
//! that start in one UTC hour, in one value, delta-coded against each other. A day of a stream
//! is 24 values of ~60 segments each instead of 1,440 entries with their key-frame tables
//! (which now live in the segment files' sample tables, `crate::sample_table`), so listing a
//! day or planning an hour reads a few pages, and the index is tens of KB a camera-day.
//!
//! ```text
//! version:u8 = 1
//! varint count
//! per segment, in (start, seq) order:
//!   zigzag(start − previous end)        the first against the hour's start
//!   zigzag(seq − previous seq − 1)       the first against 0
//!   zigzag(media_duration − previous)
//!   zigzag(end − start − media_duration in µs)   the wall clock's drift, a few µs
//!   zigzag(media_start − previous media end)
//!   zigzag(timeline_start − previous timeline end)
//!   zigzag(frames − previous), zigzag(bytes − previous)
//!   u8 params: 0 same codec and size as the previous; 1 then codec:u8 width height
//! ```
//!
//! Hand-written: the shape is specific to this index, and a few varints per segment are what
//! makes a camera-day small.

use media::{StreamId, VideoCodec, WallTime};

use crate::record::{Reader, SegmentRecord, put, unzigzag, zigzag};

const VERSION: u8 = 1;
/// One hour in µs.
pub const HOUR_US: i64 = 3_600_000_000;
/// Fewest bytes one segment takes: a count beyond the bytes there are is corrupt.
const MIN_SEGMENT_BYTES: usize = 9;

/// The hour (µs since the epoch ÷ one hour, rounded down) a segment starting at `start` is in.
pub fn hour_of(start: WallTime) -> i64 {
    start.as_micros().div_euclid(HOUR_US)
}

fn codec_byte(c: VideoCodec) -> u8 {
    match c {
        VideoCodec::H264 => 0,
        VideoCodec::H265 => 1,
    }
}

/// The value of hour `hour` holding `segments` (closed, of one stream, in that hour, sorted by
/// start and sequence number); their key-frame tables are not kept.
pub fn encode(hour: i64, segments: &[SegmentRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + segments.len() * 16);
    out.push(VERSION);
    put(&mut out, segments.len() as u64);
    let mut prev_end = hour.saturating_mul(HOUR_US);
    let (mut prev_seq, mut media_end, mut timeline_end) = (0u64, 0i64, 0u64);
    let (mut prev_duration, mut prev_frames, mut prev_bytes) = (0u64, 0u64, 0u64);
    let mut params: Option<(VideoCodec, u32, u32)> = None;
    for r in segments {
        put(&mut out, zigzag(r.start.as_micros().wrapping_sub(prev_end)));
        put(&mut out, zigzag(r.seq.wrapping_sub(prev_seq).wrapping_sub(1) as i64));
        put(&mut out, zigzag(r.media_duration.wrapping_sub(prev_duration) as i64));
        let span = r.end.micros_since(r.start).max(0);
        put(
            &mut out,
            zigzag(span.wrapping_sub(media::media_to_micros(r.media_duration as i64))),
        );
        put(&mut out, zigzag(r.media_start.wrapping_sub(media_end)));
        put(&mut out, zigzag(r.timeline_start.wrapping_sub(timeline_end) as i64));
        put(&mut out, zigzag(r.frames.wrapping_sub(prev_frames) as i64));
        put(&mut out, zigzag(r.bytes.wrapping_sub(prev_bytes) as i64));
        let p = (r.codec, r.width, r.height);
        if params == Some(p) {
            out.push(0);
        } else {
            out.push(1);
            out.push(codec_byte(r.codec));
            put(&mut out, u64::from(r.width));
            put(&mut out, u64::from(r.height));
            params = Some(p);
        }
        prev_end = r.end.as_micros().max(r.start.as_micros());
        prev_seq = r.seq;
        media_end = r.media_start.wrapping_add(r.media_duration as i64);
        timeline_end = r.timeline_start.wrapping_add(r.media_duration);
        (prev_duration, prev_frames, prev_bytes) = (r.media_duration, r.frames, r.bytes);
    }
    out
}

/// The segments of `stream` in the value of hour `hour`; never panics, whatever the bytes.
/// Every one must start in that hour, in order.
pub fn decode(stream: &StreamId, hour: i64, bytes: &[u8]) -> Result<Vec<SegmentRecord>, String> {
    let mut r = Reader(bytes);
    if r.byte()? != VERSION {
        return Err("unknown hour block version".into());
    }
    let n = r.varint()? as usize;
    if n > r.0.len() / MIN_SEGMENT_BYTES {
        return Err(format!("{n} segments cannot fit in {} bytes", r.0.len()));
    }
    let mut out = Vec::with_capacity(n);
    let mut prev_end = hour.checked_mul(HOUR_US).ok_or("hour out of range")?;
    let (mut prev_seq, mut media_end, mut timeline_end) = (0u64, 0i64, 0u64);
    let (mut prev_duration, mut prev_frames, mut prev_bytes) = (0u64, 0u64, 0u64);
    let mut params: Option<(VideoCodec, u32, u32)> = None;
    let mut last: Option<(i64, u64)> = None;
    for _ in 0..n {
        let start = prev_end.wrapping_add(unzigzag(r.varint()?));
        let seq = prev_seq.wrapping_add(1).wrapping_add(unzigzag(r.varint()?) as u64);
        let media_duration = prev_duration.wrapping_add(unzigzag(r.varint()?) as u64);
        let nominal = media::media_to_micros(i64::try_from(media_duration).map_err(|_| "duration overflows")?);
        let span = nominal.wrapping_add(unzigzag(r.varint()?));
        if span < 0 {
            return Err("a segment ends before it starts".into());
        }
        let end = start.checked_add(span).ok_or("end overflows")?;
        let media_start = media_end.wrapping_add(unzigzag(r.varint()?));
        let timeline_start = timeline_end.wrapping_add(unzigzag(r.varint()?) as u64);
        let frames = prev_frames.wrapping_add(unzigzag(r.varint()?) as u64);
        let file_bytes = prev_bytes.wrapping_add(unzigzag(r.varint()?) as u64);
        let (codec, width, height) = match r.byte()? {
            0 => params.ok_or("a segment says it keeps parameters there are none of")?,
            1 => {
                let codec = match r.byte()? {
                    0 => VideoCodec::H264,
                    1 => VideoCodec::H265,
                    c => return Err(format!("unknown codec {c}")),
                };
                (codec, r.u32()?, r.u32()?)
            }
            v => return Err(format!("bad parameters flag {v}")),
        };
        params = Some((codec, width, height));
        if start.div_euclid(HOUR_US) != hour {
            return Err(format!("a segment at {start} µs is outside hour {hour}"));
        }
        if last.is_some_and(|l| l >= (start, seq)) {
            return Err("segments out of order".into());
        }
        last = Some((start, seq));
        out.push(SegmentRecord {
            stream: stream.clone(),
            seq,
            start: WallTime::from_micros(start),
            end: WallTime::from_micros(end),
            media_start,
            timeline_start,
            media_duration,
            frames,
            bytes: file_bytes,
            closed: true,
            codec,
            width,
            height,
            key_frames: Vec::new(),
        });
        prev_end = end.max(start);
        prev_seq = seq;
        media_end = media_start.wrapping_add(media_duration as i64);
        timeline_end = timeline_start.wrapping_add(media_duration);
        (prev_duration, prev_frames, prev_bytes) = (media_duration, frames, file_bytes);
    }
    if !r.0.is_empty() {
        return Err(format!("{} trailing bytes", r.0.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_420_800_000_000; // an hour's start

    /// An hour of 60 s segments of a 25 fps camera, as the recorder closes them.
    pub(crate) fn hour(n: usize) -> Vec<SegmentRecord> {
        let mut v = Vec::new();
        let (mut start, mut media, mut timeline) = (T0 + 1_234_567, -5_000i64, 777_000u64);
        for i in 0..n {
            let dur = 60 * 90_000 + (i as u64 % 3) * 3600;
            let span = media::media_to_micros(dur as i64) + (i as i64 % 5) - 2;
            v.push(SegmentRecord {
                stream: StreamId::main("cam"),
                seq: 41 + i as u64,
                start: WallTime::from_micros(start),
                end: WallTime::from_micros(start + span),
                media_start: media,
                timeline_start: timeline,
                media_duration: dur,
                frames: 1500 + i as u64 % 3,
                bytes: 31_000_000 + i as u64 * 1001,
                closed: true,
                codec: if i < 30 { VideoCodec::H264 } else { VideoCodec::H265 },
                width: 1920,
                height: 1080,
                key_frames: Vec::new(),
            });
            start += span;
            media += dur as i64;
            timeline += dur;
        }
        v
    }

    #[test]
    fn an_hour_round_trips_in_about_ten_bytes_a_segment() {
        let h = hour(59);
        let b = encode(hour_of(h[0].start), &h);
        assert!(b.len() <= 59 * 12, "{} bytes for 59 segments", b.len());
        assert_eq!(decode(&StreamId::main("cam"), hour_of(h[0].start), &b).unwrap(), h);
        assert_eq!(decode(&StreamId::main("cam"), 5, &encode(5, &[])).unwrap(), Vec::new());
    }

    #[test]
    fn gaps_new_runs_and_sequence_jumps_round_trip() {
        let mut h = hour(10);
        for r in &mut h[4..] {
            r.start = r.start.add_micros(600_000_000);
            r.end = r.end.add_micros(600_000_000);
        }
        h[4].timeline_start = 0;
        h[4].media_start = 9_000_000_000;
        h[6].seq = 9_999;
        for r in &mut h[7..] {
            r.seq += 10_000;
        }
        h[8].width = 640;
        let b = encode(hour_of(h[0].start), &h);
        assert_eq!(decode(&StreamId::main("cam"), hour_of(h[0].start), &b).unwrap(), h);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_or_a_block_never_a_panic() {
        let h = hour(8);
        let hr = hour_of(h[0].start);
        let b = encode(hr, &h);
        for len in 0..b.len() {
            assert!(decode(&StreamId::main("cam"), hr, &b[..len]).is_err(), "{len}");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x55;
            let _ = decode(&StreamId::main("cam"), hr, &c);
        }
        // Segments outside their hour or out of order are refused.
        assert!(decode(&StreamId::main("cam"), hr - 1, &encode(hr - 1, &h)).is_err());
        let mut swapped = h.clone();
        swapped.swap(2, 3);
        assert!(decode(&StreamId::main("cam"), hr, &encode(hr, &swapped)).is_err());
        assert!(decode(&StreamId::main("cam"), i64::MAX, &b).is_err());
        let mut huge = vec![VERSION];
        put(&mut huge, u64::MAX);
        assert!(decode(&StreamId::main("cam"), hr, &huge).is_err());
    }
}
