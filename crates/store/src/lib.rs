//! Storage: segment files, the index, crash recovery and rebuild.
//!
//! * Segment files ([`segment_file`]) are self-describing fragmented MP4s of about a minute
//!   each, closed on a GOP boundary, a parameter change or a gap.
//! * The [`index`] (redb, one per data directory) holds one [`SegmentRecord`] per segment with
//!   its fragment (key-frame) table. It is a cache: [`rebuild`] regenerates it from the files.
//! * The [`Recorder`] writes frames, makes them durable at least every flush interval
//!   (default 500 ms) and commits index entries only for durable data.
//! * [`Store::open`] recovers from an unclean stop before anything else touches the files.
//!
//! The durability order and the on-disk layout are written down in `docs/storage.md`.

pub mod backfill;
mod disk;
mod error;
pub mod export;
pub mod holds;
pub mod identity;

mod hls;
pub mod index;
pub mod layout;
pub mod playback;
pub mod record;
mod recorder;
mod recorder_stats;
mod segmenter;
mod syncer;

pub mod hour_block;
mod recovery;
pub mod retention;
pub mod sample_table;
pub mod segment_file;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use media::{StreamId, WallTime};

pub use disk::Disk;
pub use error::StoreError;
pub use record::{KeyFrameEntry, SegmentRecord};
pub use recorder::Recorder;
pub use recorder_stats::RecorderStats;
pub use recovery::{RebuildReport, RecoveryReport, rebuild};
pub use segmenter::RecorderConfig;

/// Segments closer than this (10 ms, a quarter of a 25 fps frame) are one continuous recording.
pub const CONTIGUOUS_US: i64 = 10_000;

/// A continuous stretch of recorded video.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordedRange {
    /// First frame's wall time.
    pub start: WallTime,
    /// Wall time just after the last frame.
    pub end: WallTime,
}

/// All of a node's data directories.
#[derive(Debug)]
pub struct Store {
    disks: Vec<Arc<Disk>>,
    trigger: Arc<retention::Trigger>,
}

impl Store {
    /// Opens the data directories (creating them if needed), taking their locks, and recovers
    /// each from an unclean stop.
    pub fn open(dirs: &[PathBuf]) -> Result<(Store, Vec<RecoveryReport>), StoreError> {
        identity::check(dirs)?;
        let mut disks = Vec::new();
        let mut reports = Vec::new();
        for d in dirs {
            let disk = Disk::open(d)?;
            reports.push(recovery::recover(&disk)?);
            disks.push(Arc::new(disk));
        }
        Ok((
            Store {
                disks,
                trigger: Arc::default(),
            },
            reports,
        ))
    }

    /// Fired when a write runs out of space, to run retention at once.
    pub fn trigger(&self) -> &Arc<retention::Trigger> {
        &self.trigger
    }

    /// The data directories.
    pub fn disks(&self) -> &[Arc<Disk>] {
        &self.disks
    }

    /// Starts recording.
    pub fn start_recorder(&self, cfg: RecorderConfig) -> Result<Recorder, StoreError> {
        let mut next_seq: HashMap<StreamId, u64> = HashMap::new();
        let mut last_end: HashMap<StreamId, (WallTime, u64)> = HashMap::new();
        for d in &self.disks {
            for (stream, seq) in d.index().streams()? {
                let e = next_seq.entry(stream.clone()).or_default();
                *e = (*e).max(seq);
                if let Some(r) = d.index().last_segment(&stream)? {
                    let end = (r.end, r.timeline_start + r.media_duration);
                    let e = last_end.entry(stream).or_insert(end);
                    if end.0 > e.0 {
                        *e = end;
                    }
                }
            }
        }
        Ok(Recorder::start(
            self.disks.clone(),
            cfg,
            next_seq,
            last_end,
            self.trigger.clone(),
        ))
    }

    /// Segments of `stream` overlapping `[from, to)` on every disk, in start order, each with
    /// the absolute path of its file.
    pub fn segments(
        &self,
        stream: &StreamId,
        from: WallTime,
        to: WallTime,
    ) -> Result<Vec<(PathBuf, SegmentRecord)>, StoreError> {
        let mut out = Vec::new();
        for d in &self.disks {
            for r in d.index().segments(stream, from, to)? {
                out.push((d.root().join(layout::segment_path(&r.stream, r.start, r.seq)), r));
            }
        }
        out.sort_by_key(|(_, r)| (r.start, r.seq));
        Ok(out)
    }

    /// [`Store::segments`] with every segment's key-frame table (read from its file for closed
    /// segments, whose index entries are summaries): what HLS playlists are cut from.
    pub fn segments_with_gops(
        &self,
        stream: &StreamId,
        from: WallTime,
        to: WallTime,
    ) -> Result<Vec<(PathBuf, SegmentRecord)>, StoreError> {
        let mut out = self.segments(stream, from, to)?;
        for (path, r) in &mut out {
            if r.key_frames.is_empty() {
                r.key_frames = playback::segment_gops(path, r)?;
            }
        }
        Ok(out)
    }

    /// The segment of `stream` that starts at `start` with sequence number `seq`.
    pub fn find_segment(
        &self,
        stream: &StreamId,
        start: WallTime,
        seq: u64,
    ) -> Result<Option<(PathBuf, SegmentRecord)>, StoreError> {
        Ok(self
            .segments(stream, start, start.add_micros(1))?
            .into_iter()
            .find(|(_, r)| r.seq == seq && r.start == start))
    }

    /// What is recorded of `stream` within `[from, to)`: segments merged where they are
    /// contiguous, clamped to the window.
    pub fn recordings(
        &self,
        stream: &StreamId,
        from: WallTime,
        to: WallTime,
    ) -> Result<Vec<RecordedRange>, StoreError> {
        let mut records = Vec::new();
        for d in &self.disks {
            records.extend(d.index().segment_summaries(stream, from, to)?);
        }
        records.sort_by_key(|r| (r.start, r.seq));
        Ok(merge_ranges(&records, from, to))
    }
}

/// Merges segments (sorted by start) into continuous ranges clamped to `[from, to)`.
pub fn merge_ranges(records: &[SegmentRecord], from: WallTime, to: WallTime) -> Vec<RecordedRange> {
    let mut out: Vec<RecordedRange> = Vec::new();
    for r in records {
        if r.frames == 0 || r.end <= r.start {
            continue;
        }
        match out.last_mut() {
            Some(last) if r.start.micros_since(last.end) <= CONTIGUOUS_US => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(RecordedRange {
                start: r.start,
                end: r.end,
            }),
        }
    }
    out.retain_mut(|range| {
        range.start = range.start.max(from);
        range.end = range.end.min(to);
        range.end > range.start
    });
    out
}

/// The absolute path of a segment file on a disk rooted at `root`.
pub fn segment_file_path(root: &Path, r: &SegmentRecord) -> PathBuf {
    root.join(layout::segment_path(&r.stream, r.start, r.seq))
}
