//! Planning an HLS (fMP4) playlist of a time range: which byte ranges of which segment files,
//! grouped in whole GOPs up to a target length, and where a player must be told of a
//! discontinuity. The API only writes the plan out as text.

use media::WallTime;

use crate::CONTIGUOUS_US;
use crate::record::SegmentRecord;

/// One HLS media segment: whole GOPs of one file, as a byte range.
#[derive(Clone, Debug, PartialEq)]
pub struct HlsPart {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Duration in seconds.
    pub secs: f64,
}

/// The parts taken from one segment file.
#[derive(Clone, Debug, PartialEq)]
pub struct HlsFile {
    /// The segment's sequence number.
    pub seq: u64,
    /// The segment's start (with `seq`, how the file is found again).
    pub start: WallTime,
    /// Length of its init part (`ftyp`, header, `moov`): the `EXT-X-MAP` byte range.
    pub init_len: u64,
    /// A player must be told this file does not continue the previous one (a gap, a new run,
    /// new parameters).
    pub discontinuity: bool,
    /// Wall time of its first part's first frame.
    pub first_wall: WallTime,
    /// Its parts, in order.
    pub parts: Vec<HlsPart>,
}

/// The parts of `segments` (in order) that cover `[start, end)`, each of whole GOPs grouped up
/// to `target_ticks` (90 kHz). Files of one continuous run (same timeline and parameters) play
/// as one stream; anything else is a discontinuity.
pub fn plan_hls(segments: &[SegmentRecord], start: WallTime, end: WallTime, target_ticks: u64) -> Vec<HlsFile> {
    let mut out: Vec<HlsFile> = Vec::new();
    let mut previous: Option<&SegmentRecord> = None;
    for r in segments.iter().filter(|r| !r.key_frames.is_empty()) {
        let frags = &r.key_frames;
        let end_of = |i: usize| frags.get(i + 1).map_or(r.media_duration, |n| n.media_offset);
        let wall_end = |i: usize| r.start.add_micros(media::media_to_micros(end_of(i) as i64));
        // GOPs overlapping the window, starting from the one at or before start.
        let first = frags.iter().rposition(|f| r.key_frame_wall(f) <= start).unwrap_or(0);
        let mut parts = Vec::new();
        let mut first_wall = None;
        let mut i = first;
        while i < frags.len() && r.key_frame_wall(&frags[i]) < end {
            let mut j = i + 1;
            while j < frags.len() && end_of(j - 1) - frags[i].media_offset < target_ticks {
                j += 1;
            }
            if wall_end(j - 1) <= start {
                i = j;
                continue;
            }
            first_wall.get_or_insert(r.key_frame_wall(&frags[i]));
            let offset = frags[i].byte_offset;
            parts.push(HlsPart {
                offset,
                len: frags.get(j).map_or(r.bytes, |n| n.byte_offset) - offset,
                secs: (end_of(j - 1) - frags[i].media_offset) as f64 / 90_000.0,
            });
            i = j;
        }
        let Some(first_wall) = first_wall else { continue };
        let continues = previous.is_some_and(|p| {
            r.start.micros_since(p.end) <= CONTIGUOUS_US
                && r.timeline_start == p.timeline_start + p.media_duration
                && (r.codec, r.width, r.height) == (p.codec, p.width, p.height)
        });
        out.push(HlsFile {
            seq: r.seq,
            start: r.start,
            init_len: frags[0].byte_offset,
            discontinuity: !out.is_empty() && !continues,
            first_wall,
            parts,
        });
        previous = Some(r);
    }
    out
}
