//! MPEG-2 Program Stream (PS) demuxing, as GB/T 28181 devices send video: RTP payloads
//! concatenated into a byte stream, turned into H.264 / H.265 access units (Annex B).
//!
//! Sans-IO: [`PsDemuxer::push`] takes bytes, [`PsDemuxer::poll`] gives frames. Written by hand:
//! the Rust PS crates found (`mpeg2ts`-style parsers) are for transport streams or assume
//! well-formed PSMs, and GB devices are known to send all of these, which this handles:
//! - no PSM at all (ffmpeg's muxer; stream id 0xE2), or a broken one (bad CRC, wrong lengths,
//!   audio only): the codec is taken from the elementary stream's NAL headers when they say
//!   something, and from the PSM only otherwise;
//! - a truncated pack header (`00 00 01 BA` directly followed by the next start code);
//! - `PES_packet_length` 0 (an unbounded video PES, read to the next PS start code: NAL start
//!   codes are followed by a byte below 0x80, PS start codes by one at or above 0xB9);
//! - a frame split over many PES (only the first with a PTS) and over many RTP packets;
//! - private (0xBD), padding (0xBE) and other streams, skipped by their length;
//! - loss ([`PsDemuxer::lost`]): the frame in progress is dropped and output resumes at the next
//!   key frame;
//! - garbage between packs: skipped up to the next pack start.
//!
//! An access unit is the video payload from one PES with a PTS to the next PES with another
//! PTS (frames split over several PES carry the PTS on the first only), or between pack headers
//! when the stream has no PTSs. A GB/T 28181 receiver calls [`PsDemuxer::end_of_frame`] on the
//! RTP marker bit (the last packet of a frame) so that a frame is out without waiting for the
//! next one.
//!
//! Over 800 lines with its tests (the code is 600): the hostile-input cases sit beside the
//! parser they pin down.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::VideoCodec;

/// A demuxed video frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsFrame {
    /// The codec, from the elementary stream (or the PSM when the stream does not say).
    pub codec: VideoCodec,
    /// Presentation time, 90 kHz, 33 bits, as the device sent it.
    pub pts: Option<u64>,
    /// True if it holds an IDR (H.264) or IRAP (H.265) picture.
    pub key: bool,
    /// The access unit, Annex B (start codes as sent).
    pub data: Bytes,
}

/// Counters of what was skipped or repaired, for health and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PsStats {
    /// Packs (pack headers) seen.
    pub packs: u64,
    /// Frames output.
    pub frames: u64,
    /// Bytes skipped looking for a start code.
    pub skipped_bytes: u64,
    /// Frames dropped: lost data, no key frame yet, unknown codec, or too large.
    pub dropped_frames: u64,
    /// PSMs that could not be read (handled by guessing from the stream).
    pub bad_psm: u64,
}

/// Largest access unit accepted; a bigger one is dropped as corrupt.
pub const MAX_FRAME: usize = 16 << 20;
/// Most bytes buffered while looking for the end of an element.
const MAX_BUFFER: usize = MAX_FRAME + (1 << 20);

/// The PS demuxer of one stream.
#[derive(Debug, Default)]
pub struct PsDemuxer {
    buf: Vec<u8>,
    /// Video elementary stream not yet output: the access unit in progress (from offset 0)
    /// and possibly the start of the next.
    es: Vec<u8>,
    /// Where the search for NAL start codes in `es` resumes.
    scan: usize,
    /// The access unit in progress has a slice (so the next AU-starting NAL ends it).
    has_slice: bool,
    /// PTS of the access unit in progress.
    au_pts: Option<u64>,
    /// The access unit in progress has an IDR / IRAP slice.
    au_key: bool,
    /// How far an unbounded PES at the start of `buf` has been searched for its end.
    open_pes_scanned: usize,
    /// How far `es` has been searched for NAL headers that tell the codec.
    codec_scanned: usize,
    /// PTSs of PES packets that started inside `es` after its start: (offset, pts). A PTS
    /// belongs to the first access unit that starts at or after its PES (ISO 13818-1 2.4.3.7).
    marks: Vec<(usize, u64)>,
    /// Video stream types by stream id from the last PSM.
    psm_video: Option<VideoCodec>,
    /// The codec the elementary stream showed last.
    es_codec: Option<VideoCodec>,
    /// Output waits for a key frame (at start and after loss).
    need_key: bool,
    out: VecDeque<PsFrame>,
    stats: PsStats,
}

fn start_code_at(b: &[u8], i: usize) -> bool {
    b.len() >= i + 4 && b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1
}

/// The next `00 00 01 XX` with XX ≥ 0xB9 (a PS start code, not a NAL's) at or after `from`.
fn next_ps_start(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 < b.len() {
        // Skip quickly to the next possible `00 00 01`.
        match b[i + 2] {
            1 if b[i] == 0 && b[i + 1] == 0 => {
                if b[i + 3] >= 0xB9 {
                    return Some(i);
                }
                i += 3;
            }
            0 => i += 1,
            _ => i += 3,
        }
    }
    None
}

/// What the NAL units of `es` say about the codec: a parameter set or a slice header that only
/// one of the two codecs can have.
fn codec_from_es(es: &[u8]) -> Option<VideoCodec> {
    let mut i = 0;
    while i + 4 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            let h = es[i + 3];
            let h2 = es.get(i + 4).copied().unwrap_or(0);
            // H.265: forbidden bit 0, type in bits 1..6, layer id 0 and temporal id + 1 ≥ 1 in
            // the second byte (usually 0x01). VPS/SPS/PPS = 32/33/34 → 0x40/0x42/0x44.
            if h & 0x81 == 0 && matches!((h >> 1) & 0x3F, 32..=34) && h2 == 0x01 {
                return Some(VideoCodec::H265);
            }
            // H.264: SPS 7 / PPS 8 / IDR 5 with nal_ref_idc ≠ 0.
            if h & 0x80 == 0 && h & 0x60 != 0 && matches!(h & 0x1F, 5 | 7 | 8) {
                return Some(VideoCodec::H264);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// True if `es` holds an IDR (H.264) or IRAP (H.265) picture.
fn is_key(codec: VideoCodec, es: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            let h = es[i + 3];
            let key = match codec {
                VideoCodec::H264 => h & 0x1F == 5,
                VideoCodec::H265 => matches!((h >> 1) & 0x3F, 16..=21),
            };
            if key {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

fn read_pts(b: &[u8]) -> Option<u64> {
    if b.len() < 5 || b[0] & 0x01 == 0 {
        return None;
    }
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}

enum Step {
    /// Consumed this many bytes.
    Ate(usize),
    /// Need more bytes.
    More,
}

impl PsDemuxer {
    /// A demuxer waiting for its first key frame.
    pub fn new() -> PsDemuxer {
        PsDemuxer {
            need_key: true,
            ..PsDemuxer::default()
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PsStats {
        self.stats
    }

    /// Feeds the next bytes of the stream (RTP payloads in sequence order).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.run();
        if self.buf.len() > MAX_BUFFER {
            // An element that never ends: drop it and look for the next pack.
            self.stats.skipped_bytes += self.buf.len() as u64;
            self.buf.clear();
            self.open_pes_scanned = 0;
            self.drop_au();
            self.need_key = true;
        }
    }

    /// Says that data was lost before the next [`PsDemuxer::push`] (an RTP sequence gap): the
    /// access unit in progress is dropped and output resumes at the next key frame.
    pub fn lost(&mut self) {
        self.buf.clear();
        self.open_pes_scanned = 0;
        self.drop_au();
        self.need_key = true;
    }

    /// Says the frame in progress is complete (the RTP marker bit on the last packet of a
    /// frame): it is output now rather than when the next one starts.
    pub fn end_of_frame(&mut self) {
        self.close_open_pes();
        self.emit_all();
    }

    /// Ends the stream: the frame in progress is output if it has a picture.
    pub fn finish(&mut self) {
        self.close_open_pes();
        self.buf.clear();
        self.open_pes_scanned = 0;
        self.emit_all();
    }

    /// The next demuxed frame, if any.
    pub fn poll(&mut self) -> Option<PsFrame> {
        self.out.pop_front()
    }

    /// An unbounded PES (length 0) ends at the next start code; at a frame's end or the
    /// stream's, the program end code stands in for it.
    fn close_open_pes(&mut self) {
        self.buf.extend_from_slice(&[0, 0, 1, 0xB9]);
        self.run();
        if self.buf.ends_with(&[0, 0, 1, 0xB9]) {
            let n = self.buf.len() - 4;
            self.buf.truncate(n);
        }
    }

    fn drop_au(&mut self) {
        if !self.es.is_empty() {
            self.stats.dropped_frames += 1;
        }
        self.es.clear();
        self.marks.clear();
        self.scan = 0;
        self.has_slice = false;
        self.au_key = false;
        self.au_pts = None;
        self.codec_scanned = 0;
    }

    fn run(&mut self) {
        let mut pos = 0;
        loop {
            // Find the next PS start code.
            match next_ps_start(&self.buf, pos) {
                Some(i) => {
                    if i > pos {
                        self.stats.skipped_bytes += (i - pos) as u64;
                    }
                    pos = i;
                }
                None => {
                    // Keep the last 3 bytes: they may begin a start code.
                    let keep = self.buf.len().saturating_sub(3).max(pos);
                    self.stats.skipped_bytes += (keep - pos) as u64;
                    pos = keep;
                    break;
                }
            }
            match self.element(pos) {
                Step::Ate(n) => pos += n,
                Step::More => break,
            }
        }
        self.buf.drain(..pos);
    }

    /// Parses the element starting at `pos` (a PS start code).
    fn element(&mut self, pos: usize) -> Step {
        let b = &self.buf[pos..];
        let id = b[3];
        match id {
            0xBA => {
                // A truncated pack header is followed at once by the next start code.
                let len = if b.len() >= 8 && start_code_at(b, 4) {
                    4
                } else if b.len() < 14 {
                    return Step::More;
                } else if b[4] >> 6 == 0b01 {
                    14 + usize::from(b[13] & 0x07)
                } else {
                    // MPEG-1 pack header.
                    12
                };
                if b.len() < len {
                    return Step::More;
                }
                // Frames are cut from the elementary stream, not by packs: GB/T 28181 puts one
                // frame in a pack, but other muxers (ffmpeg's) cut packs every 2 KiB.
                self.stats.packs += 1;
                Step::Ate(len)
            }
            0xE0..=0xEF => self.pes(pos),
            0xB9 => Step::Ate(4),
            _ => {
                // System header, PSM, private, padding, audio and the rest: skip by length.
                if b.len() < 6 {
                    return Step::More;
                }
                let len = 6 + usize::from(u16::from_be_bytes([b[4], b[5]]));
                if b.len() < len {
                    return Step::More;
                }
                if id == 0xBC {
                    let psm = b[6..len].to_vec();
                    self.psm(&psm);
                }
                Step::Ate(len)
            }
        }
    }

    fn psm(&mut self, body: &[u8]) {
        // version(2) + info length(2) + descriptors + es map length(2) + entries + CRC(4). The
        // CRC is not checked: devices get it wrong, and a wrong map is caught by the stream.
        let parse = || -> Option<Option<VideoCodec>> {
            let info = usize::from(u16::from_be_bytes([*body.get(2)?, *body.get(3)?]));
            let at = 4 + info;
            let map_len = usize::from(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]));
            let map = body.get(at + 2..(at + 2 + map_len).min(body.len()))?;
            let mut i = 0;
            let mut video = None;
            while i + 4 <= map.len() {
                let (ty, sid) = (map[i], map[i + 1]);
                let elen = usize::from(u16::from_be_bytes([map[i + 2], map[i + 3]]));
                if (0xE0..=0xEF).contains(&sid) {
                    video = match ty {
                        0x1B => Some(VideoCodec::H264),
                        0x24 => Some(VideoCodec::H265),
                        _ => video,
                    };
                }
                i += 4 + elen;
            }
            Some(video)
        };
        match parse() {
            Some(Some(c)) => self.psm_video = Some(c),
            Some(None) => {}
            None => self.stats.bad_psm += 1,
        }
    }

    fn pes(&mut self, pos: usize) -> Step {
        let b = &self.buf[pos..];
        if b.len() < 9 {
            return Step::More;
        }
        let declared = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let end = if declared == 0 {
            // Unbounded: up to the next PS start code. The search resumes where the last one
            // stopped: a key frame arrives in hundreds of pieces, and scanning it again for
            // each would be quadratic.
            let from = self.open_pes_scanned.saturating_sub(3).max(6);
            match next_ps_start(b, from) {
                Some(e) => {
                    self.open_pes_scanned = 0;
                    e
                }
                None => {
                    self.open_pes_scanned = b.len();
                    return Step::More;
                }
            }
        } else {
            let e = 6 + declared;
            if b.len() < e {
                return Step::More;
            }
            e
        };
        if end < 9 {
            // Too short to hold a PES header and a payload (found by fuzzing: the header's
            // bytes would be the next element's).
            return Step::Ate(end);
        }
        // MPEG-2 PES header: '10' marker bits, flags, header length.
        let (payload, pts) = if b[6] >> 6 == 0b10 {
            let hlen = usize::from(b[8]);
            let start = (9 + hlen).min(end);
            let pts = if b[7] & 0x80 != 0 { read_pts(&b[9..start]) } else { None };
            (start..end, pts)
        } else if b[6] & 0x3F == 0 && b[6] >> 6 != 0 && usize::from(b[7]) == 5 * usize::from(b[6] >> 6).min(2) {
            // The first flag byte left out: `PTS_DTS_flags` where the marker bits belong and the
            // header length after it (gb28181-rs 0.14 writes `C0 0A PTS DTS 00`). Read that way
            // the PTS is right and the payload starts at the elementary stream's start code.
            let hlen = usize::from(b[7]);
            let start = (8 + hlen).min(end);
            (start..end, read_pts(&b[8..start]))
        } else {
            (6..end, None)
        };
        // Lend the buffer out so the payload is copied once, into the elementary stream.
        let buf = std::mem::take(&mut self.buf);
        self.add_es(&buf[pos + payload.start..pos + payload.end], pts);
        self.buf = buf;
        Step::Ate(end)
    }

    /// Appends a video PES payload and cuts the access units it completes.
    fn add_es(&mut self, data: &[u8], pts: Option<u64>) {
        if let Some(p) = pts {
            if self.es.is_empty() {
                self.au_pts = Some(p);
            } else {
                self.marks.push((self.es.len(), p));
            }
        }
        self.es.extend_from_slice(data);
        if self.es.len() > MAX_FRAME {
            self.drop_au();
            self.need_key = true;
            return;
        }
        self.split();
    }

    fn codec(&mut self) -> Option<VideoCodec> {
        if self.es_codec.is_none() {
            // Resume where the last look stopped: a stream that never says its codec must not
            // be searched again from the start on every payload.
            let from = self.codec_scanned.saturating_sub(5).min(self.es.len());
            self.es_codec = codec_from_es(&self.es[from..]);
            self.codec_scanned = self.es.len();
        }
        self.es_codec.or(self.psm_video)
    }

    /// Finds NAL units that begin a new access unit and outputs the one before each.
    fn split(&mut self) {
        let Some(codec) = self.codec() else { return };
        let mut i = self.scan;
        // The NAL header bytes a start is classified by: two for H.264, three for H.265 (the
        // slice's first flag follows its two-byte header).
        let need = match codec {
            VideoCodec::H264 => 5,
            VideoCodec::H265 => 6,
        };
        while i + need <= self.es.len() {
            // Skip three bytes at a time while the third cannot end a `00 00 01`.
            match self.es[i + 2] {
                1 if self.es[i] == 0 && self.es[i + 1] == 0 => {}
                0 => {
                    i += 1;
                    continue;
                }
                _ => {
                    i += 3;
                    continue;
                }
            }
            let (h0, h1) = (self.es[i + 3], self.es[i + 4]);
            let h2 = self.es.get(i + 5).copied().unwrap_or(0);
            let (slice, starts_au, key) = match codec {
                VideoCodec::H264 => {
                    let t = h0 & 0x1F;
                    let slice = matches!(t, 1..=5);
                    // first_mb_in_slice = 0 is ue(v) '1': a slice starting a picture.
                    (slice, matches!(t, 6..=9 | 14..=18) || (slice && h1 & 0x80 != 0), t == 5)
                }
                VideoCodec::H265 => {
                    let t = (h0 >> 1) & 0x3F;
                    let slice = t <= 31;
                    // first_slice_segment_in_pic_flag.
                    (
                        slice,
                        matches!(t, 32..=35 | 39 | 41..=44 | 48..=55) || (slice && h2 & 0x80 != 0),
                        (16..=21).contains(&t),
                    )
                }
            };
            if starts_au && self.has_slice {
                let cut = if i > 0 && self.es[i - 1] == 0 { i - 1 } else { i };
                // Move the (short) start of the next unit out rather than the unit itself.
                // Sized like this one, so that the next unit grows without reallocating.
                let mut rest = Vec::with_capacity(cut.max(4096) + self.es.len() - cut);
                rest.extend_from_slice(&self.es[cut..]);
                self.es.truncate(cut);
                let au = std::mem::replace(&mut self.es, rest);
                let pts = self.au_pts.take();
                let au_key = std::mem::take(&mut self.au_key);
                self.emit(codec, au, pts, au_key);
                // The PTS of a PES that began within the old unit belongs to this one.
                self.au_pts = self.marks.iter().rev().find(|(o, _)| *o <= cut).map(|m| m.1);
                self.marks.retain(|(o, _)| *o > cut);
                self.marks.iter_mut().for_each(|m| m.0 -= cut);
                self.has_slice = false;
                i -= cut;
            }
            if slice {
                self.has_slice = true;
                self.au_key |= key;
            }
            i += 3;
        }
        self.scan = i;
    }

    /// Outputs what is buffered as one access unit, if it holds a picture.
    fn emit_all(&mut self) {
        self.split();
        let Some(codec) = self.codec() else {
            return self.drop_au();
        };
        // The last NAL headers may not have been classified yet.
        let tail = self.scan;
        let slice_in_tail = (tail..self.es.len().saturating_sub(3)).any(|i| {
            start_code_at(&self.es, i)
                && match codec {
                    VideoCodec::H264 => matches!(self.es[i + 3] & 0x1F, 1..=5),
                    VideoCodec::H265 => (self.es[i + 3] >> 1) & 0x3F <= 31,
                }
        });
        if self.has_slice || slice_in_tail {
            let au = std::mem::take(&mut self.es);
            let pts = self.au_pts.take();
            let key = self.au_key || is_key(codec, &au[self.scan.min(au.len())..]);
            self.emit(codec, au, pts, key);
        }
        self.drop_au();
    }

    fn emit(&mut self, codec: VideoCodec, au: Vec<u8>, pts: Option<u64>, key: bool) {
        if self.need_key && !key {
            self.stats.dropped_frames += 1;
            return;
        }
        self.need_key = false;
        self.stats.frames += 1;
        self.out.push_back(PsFrame {
            codec,
            pts,
            key,
            data: Bytes::from(au),
        });
    }
}

pub use crate::ps_mux::mux_frame;

#[cfg(test)]
mod tests {
    use super::*;

    const SPS264: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 0xDA];
    const PPS264: &[u8] = &[0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80];

    fn h264_frame(key: bool, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        if key {
            v.extend_from_slice(SPS264);
            v.extend_from_slice(PPS264);
            v.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88]);
        } else {
            // first_mb_in_slice = 0: the slice starts a picture.
            v.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9A]);
        }
        // Slice data free of start codes.
        v.extend((0..n).map(|i| (i % 250) as u8 + 2));
        v
    }

    fn h265_frame(key: bool, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        if key {
            for t in [32u8, 33, 34] {
                v.extend_from_slice(&[0, 0, 0, 1, t << 1, 0x01, 0x0C]);
            }
            v.extend_from_slice(&[0, 0, 0, 1, 19 << 1, 0x01, 0xAF]);
        } else {
            // first_slice_segment_in_pic_flag = 1.
            v.extend_from_slice(&[0, 0, 0, 1, 1 << 1, 0x01, 0xD0]);
        }
        v.extend((0..n).map(|i| (i % 250) as u8 + 2));
        v
    }

    /// Muxes frames (key every `gop`), feeds them in `chunk`-byte pieces, returns the output.
    fn roundtrip(codec: VideoCodec, frames: &[Vec<u8>], chunk: usize) -> (Vec<PsFrame>, PsStats) {
        let mut ps = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            mux_frame(codec, 3600 * i as u64, is_key(codec, f), f, &mut ps);
        }
        let mut d = PsDemuxer::new();
        for c in ps.chunks(chunk) {
            d.push(c);
        }
        d.finish();
        let mut out = Vec::new();
        while let Some(f) = d.poll() {
            out.push(f);
        }
        (out, d.stats())
    }

    #[test]
    fn frames_come_back_whole_whatever_the_packet_size() {
        for (codec, make) in [
            (VideoCodec::H264, h264_frame as fn(bool, usize) -> Vec<u8>),
            (VideoCodec::H265, h265_frame),
        ] {
            let frames: Vec<Vec<u8>> = (0..20).map(|i| make(i % 10 == 0, 100 + i * 7000)).collect();
            for chunk in [1, 7, 188, 1400, 100_000] {
                let (out, stats) = roundtrip(codec, &frames, chunk);
                assert_eq!(out.len(), 20, "{codec:?} chunk {chunk}: {stats:?}");
                for (i, f) in out.iter().enumerate() {
                    assert_eq!(f.codec, codec);
                    assert_eq!(f.data, frames[i], "{codec:?} chunk {chunk} frame {i}");
                    assert_eq!(f.pts, Some(3600 * i as u64));
                    assert_eq!(f.key, i % 10 == 0);
                }
                assert_eq!(stats.skipped_bytes, 0);
            }
        }
    }

    #[test]
    fn frames_larger_than_a_pes_span_several() {
        let frames = vec![h264_frame(true, 200_000), h264_frame(false, 140_000)];
        let (out, _) = roundtrip(VideoCodec::H264, &frames, 1400);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data.len(), frames[0].len());
        assert_eq!(out[1].data, frames[1]);
    }

    #[test]
    fn h265_is_not_mistaken_for_h264_even_with_a_wrong_psm() {
        let mut ps = Vec::new();
        // The PSM claims H.264; the stream is H.265.
        mux_frame(VideoCodec::H264, 0, true, &h265_frame(true, 500), &mut ps);
        mux_frame(VideoCodec::H264, 3600, false, &h265_frame(false, 500), &mut ps);
        let mut d = PsDemuxer::new();
        d.push(&ps);
        d.finish();
        let a = d.poll().unwrap();
        let b = d.poll().unwrap();
        assert_eq!(
            (a.codec, a.key, b.codec, b.key),
            (VideoCodec::H265, true, VideoCodec::H265, false)
        );
    }

    fn strip_psm(ps: &[u8]) -> Vec<u8> {
        // Remove every 00 00 01 BC element.
        let mut out = Vec::new();
        let mut i = 0;
        while i < ps.len() {
            if start_code_at(ps, i) && ps[i + 3] == 0xBC {
                let len = 6 + usize::from(u16::from_be_bytes([ps[i + 4], ps[i + 5]]));
                i += len;
            } else {
                out.push(ps[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn quirks_no_psm_truncated_pack_header_unbounded_pes_private_data() {
        let f0 = h265_frame(true, 3000);
        let f1 = h265_frame(false, 2000);
        let mut ps = Vec::new();
        mux_frame(VideoCodec::H265, 0, true, &f0, &mut ps);
        let mut ps = strip_psm(&ps);
        // A truncated pack header (Hikvision H.265), then a PES of length 0 with stream id E2
        // (ffmpeg), a private stream and padding in between.
        ps.extend_from_slice(&[0, 0, 1, 0xBA]);
        ps.extend_from_slice(&[0, 0, 1, 0xBD, 0, 3, 9, 9, 9]);
        ps.extend_from_slice(&[0, 0, 1, 0xE2, 0, 0, 0x80, 0x80, 5, 0x21, 0, 0x01, 0x1C, 0x21]);
        ps.extend_from_slice(&f1);
        ps.extend_from_slice(&[0, 0, 1, 0xBE, 0, 2, 0xFF, 0xFF]);
        // Garbage before the next pack.
        ps.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut tail = Vec::new();
        mux_frame(VideoCodec::H265, 7200, false, &f1, &mut tail);
        ps.extend_from_slice(&strip_psm(&tail));
        let mut d = PsDemuxer::new();
        for c in ps.chunks(13) {
            d.push(c);
        }
        d.finish();
        let out: Vec<PsFrame> = std::iter::from_fn(|| d.poll()).collect();
        assert_eq!(out.len(), 3, "{:?}", d.stats());
        assert_eq!(out[0].data, f0);
        assert_eq!(out[1].data, f1);
        assert_eq!(out[1].pts, Some(3600));
        assert_eq!(out[2].pts, Some(7200));
        assert!(out.iter().all(|f| f.codec == VideoCodec::H265));
        assert_eq!(d.stats().skipped_bytes, 5);
    }

    #[test]
    fn loss_drops_the_frame_and_waits_for_a_key_frame() {
        let frames: Vec<Vec<u8>> = (0..6).map(|i| h264_frame(i % 3 == 0, 5000)).collect();
        let mut packs = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let mut p = Vec::new();
            mux_frame(VideoCodec::H264, 3600 * i as u64, i % 3 == 0, f, &mut p);
            packs.push(p);
        }
        // Each complete pack ends with the RTP marker bit; pack 1 loses its end.
        let mut d = PsDemuxer::new();
        d.push(&packs[0]);
        d.end_of_frame();
        d.push(&packs[1][..2000]);
        d.lost();
        for p in &packs[2..5] {
            d.push(p);
            d.end_of_frame();
        }
        let pts: Vec<Option<u64>> = std::iter::from_fn(|| d.poll()).map(|f| f.pts).collect();
        // Frame 1 is lost, frame 2 depends on it, frame 3 is the next key frame.
        assert_eq!(pts, [Some(0), Some(3 * 3600), Some(4 * 3600)]);
    }

    #[test]
    fn output_starts_at_a_key_frame_and_unknown_codecs_are_dropped() {
        let mut ps = Vec::new();
        mux_frame(VideoCodec::H264, 0, false, &h264_frame(false, 100), &mut ps);
        mux_frame(VideoCodec::H264, 3600, true, &h264_frame(true, 100), &mut ps);
        let mut d = PsDemuxer::new();
        d.push(&ps);
        d.finish();
        assert_eq!(d.poll().map(|f| f.pts), Some(Some(3600)));
        assert!(d.poll().is_none());
        assert_eq!(d.stats().dropped_frames, 1);
        // Bytes that are no video at all: no frame, no panic.
        let mut d = PsDemuxer::new();
        let mut ps = Vec::new();
        mux_frame(VideoCodec::H264, 0, false, &[9u8; 300], &mut ps);
        d.push(&strip_psm(&ps));
        d.finish();
        assert!(d.poll().is_none());
    }

    #[test]
    fn pes_without_its_first_flag_byte_keeps_pts_and_payload() {
        // As gb28181-rs 0.14 writes a PES: `C0 0A PTS DTS 00`, then the elementary stream.
        let pts_bytes = |marker: u8, pts: u64| {
            [
                marker | ((pts >> 29) as u8 & 0x0E) | 1,
                (pts >> 22) as u8,
                ((pts >> 14) as u8 & 0xFE) | 1,
                (pts >> 7) as u8,
                ((pts << 1) as u8 & 0xFE) | 1,
            ]
        };
        let mut ps = Vec::new();
        for (i, key) in [true, false, true].into_iter().enumerate() {
            let pts = 3000 + i as u64 * 3600;
            let es = h264_frame(key, 40);
            let mut pes = vec![0xC0, 0x0A];
            pes.extend_from_slice(&pts_bytes(0x30, pts));
            pes.extend_from_slice(&pts_bytes(0x10, pts));
            pes.push(0);
            pes.extend_from_slice(&es);
            ps.extend_from_slice(&[0, 0, 1, 0xBA, 0x44, 0, 4, 0, 4, 1, 0, 0, 3, 0xF8]);
            ps.extend_from_slice(&[0, 0, 1, 0xE0, (pes.len() >> 8) as u8, pes.len() as u8]);
            ps.extend_from_slice(&pes);
        }
        let mut d = PsDemuxer::new();
        d.push(&ps);
        d.finish();
        let frames: Vec<PsFrame> = std::iter::from_fn(|| d.poll()).collect();
        assert_eq!(frames.len(), 3);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.pts, Some(3000 + i as u64 * 3600));
            assert_eq!(f.codec, VideoCodec::H264);
            let want = h264_frame(i != 1, 40);
            assert_eq!(
                crate::annexb::nal_units(&f.data).collect::<Vec<_>>(),
                crate::annexb::nal_units(&want).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn pes_shorter_than_a_header_is_skipped() {
        // Declared lengths 0–2, and an unbounded PES ended at once by the next start code.
        for pes in [
            &[0u8, 0, 1, 0xE0, 0, 1, 0x80][..],
            &[0, 0, 1, 0xE0, 0, 2, 0x80, 0x80],
            &[0, 0, 1, 0xE0, 0, 0, 0x80, 0, 0, 1, 0xBA],
        ] {
            let mut ps = Vec::new();
            mux_frame(VideoCodec::H264, 0, true, &h264_frame(true, 100), &mut ps);
            ps.extend_from_slice(pes);
            mux_frame(VideoCodec::H264, 3600, false, &h264_frame(false, 100), &mut ps);
            let mut d = PsDemuxer::new();
            d.push(&ps);
            d.finish();
            let n = std::iter::from_fn(|| d.poll()).count();
            assert_eq!(n, 2, "{pes:?}");
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_survived() {
        let frames: Vec<Vec<u8>> = (0..4).map(|i| h265_frame(i == 0, 900)).collect();
        let mut ps = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            mux_frame(VideoCodec::H265, 3600 * i as u64, i == 0, f, &mut ps);
        }
        for cut in 0..ps.len() {
            let mut d = PsDemuxer::new();
            d.push(&ps[..cut]);
            d.finish();
            while let Some(f) = d.poll() {
                assert!(f.data.len() <= 4000);
            }
        }
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut bad = ps.clone();
            for _ in 0..4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x as usize >> 3) % bad.len();
                bad[i] = (x >> 24) as u8;
            }
            let mut d = PsDemuxer::new();
            for c in bad.chunks(97) {
                d.push(c);
            }
            d.finish();
            while d.poll().is_some() {}
        }
    }

    #[test]
    fn tiny_last_frames_are_still_cut_apart_at_the_end() {
        // Found by the ps_mux_roundtrip fuzz target: a last frame whose slice is two bytes
        // long was glued to the one before it when the stream ended.
        let mut ps = Vec::new();
        mux_frame(VideoCodec::H264, 0, true, &[0, 0, 0, 1, 0x65, 0x80], &mut ps);
        mux_frame(VideoCodec::H264, 3600, false, &[0, 0, 0, 1, 0x41, 0x80], &mut ps);
        let mut d = PsDemuxer::new();
        d.push(&ps);
        d.finish();
        let got: Vec<PsFrame> = std::iter::from_fn(|| d.poll()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].pts, got[1].pts), (Some(0), Some(3600)));
        assert_eq!(&got[1].data[..], &[0, 0, 0, 1, 0x41, 0x80]);
    }
}
