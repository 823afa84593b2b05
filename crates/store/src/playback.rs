//! Planning playback of a time range: which samples of which segment files, in what order, with
//! what timing. The MP4 is then assembled by `media::progressive` without copying media.
//!
//! Rules (see `docs/api.md`):
//! * decoding starts at the last key frame at or before `start`; an edit list hides the frames
//!   before `start`, so players show `start` as time zero;
//! * presentation ends at `end` (or at the last recorded frame);
//! * a gap in the recording is collapsed: the recorded parts follow each other and the gaps are
//!   listed in [`PlaybackPlan::gaps`]; a codec change ends the file there
//!   ([`PlaybackPlan::truncated`]);
//! * `speed` > 1 divides every duration by `speed`; from 4× on only key frames are kept, each
//!   lasting its whole GOP, so the file plays at that speed in any player.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use media::progressive::{MovieSpec, Run, SampleRef};
use media::{StreamId, StreamParams, WallTime, media_to_micros, micros_to_media};
use sha2::{Digest, Sha256};

pub use crate::hls::{HlsFile, HlsPart, plan_hls};
use crate::record::SegmentRecord;
use crate::sample_table::SampleTable;
use crate::segment_file::read_init;
use crate::{CONTIGUOUS_US, Store, StoreError};

/// One stored sample.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StoredSample {
    /// Wall time of the frame.
    pub wall: WallTime,
    /// Duration in 90 kHz ticks.
    pub duration: u32,
    /// Size in bytes.
    pub size: u32,
    /// Key frame.
    pub key: bool,
    /// Offset of its bytes in the segment file.
    pub offset: u64,
    /// Index of its GOP in the segment's key-frame table.
    pub fragment: u32,
}

/// The sample table of one segment, as far as its index record goes.
#[derive(Debug)]
pub struct SegmentSamples {
    /// Codec parameters.
    pub params: Arc<StreamParams>,
    /// Samples in order.
    pub samples: Vec<StoredSample>,
    /// They came from the file's sample table (one read), not a walk of its fragments.
    pub from_table: bool,
    /// Their wall times never decrease (the rule; a clock stepped back mid-segment breaks it),
    /// so a plan may binary-search them.
    pub in_order: bool,
}

/// Bytes read at once after a closed segment's fragments: its whole sample table for
/// segments of up to ~15 minutes at 25 fps (about 4 bytes a sample).
const TABLE_READ: usize = 96 << 10;

/// Reads the samples of the indexed part of a segment: one read of the init part, then, for a
/// closed segment, one of the sample table after its fragments (`crate::sample_table`); for an
/// open one, or one without a sound table, a walk of its fragments up to the indexed length
/// (one read of each fragment's `prft` + `moof`). The index keeps no key-frame tables for
/// closed segments: GOPs and their wall times come from the file.
pub fn read_segment_samples(path: &Path, record: &SegmentRecord) -> Result<SegmentSamples, StoreError> {
    let bad = |detail: String| StoreError::Segment {
        path: path.to_owned(),
        detail,
    };
    let f = std::fs::File::open(path).map_err(StoreError::io(path, "open"))?;
    let (table, from_table, params) = segment_table(&f, record).map_err(bad)?;
    let samples = samples_from_table(&table, record).map_err(bad)?;
    Ok(SegmentSamples {
        params: Arc::new(params),
        in_order: samples.windows(2).all(|w| w[0].wall <= w[1].wall),
        samples,
        from_table,
    })
}

/// The GOPs of a segment (what HLS planning cuts at), from its file as
/// [`read_segment_samples`] reads it; a record that still carries them gives them at once.
pub fn segment_gops(path: &Path, record: &SegmentRecord) -> Result<Vec<crate::record::KeyFrameEntry>, StoreError> {
    if !record.key_frames.is_empty() {
        return Ok(record.key_frames.clone());
    }
    let f = std::fs::File::open(path).map_err(StoreError::io(path, "open"))?;
    let (table, _, _) = segment_table(&f, record).map_err(|detail| StoreError::Segment {
        path: path.to_owned(),
        detail,
    })?;
    Ok(table.gops(record.start, record.timeline_start))
}

/// The segment's sample table (from the file's own, or a walk), whether it was the file's, and
/// its codec parameters.
fn segment_table(f: &std::fs::File, record: &SegmentRecord) -> Result<(SampleTable, bool, StreamParams), String> {
    let mut r = crate::segment_file::PreadWindow::new(f);
    let init = read_init(&mut r, record.bytes)?;
    if record.closed {
        match read_table(f, record).and_then(|t| check_table(&t, record, init.len).map(|()| t)) {
            Ok(t) => return Ok((t, true, init.params)),
            Err(why) => {
                tracing::debug!(seq = record.seq, stream = %record.stream, "segment read by walking its fragments: {why}")
            }
        }
    }
    let scanned = crate::segment_file::scan(&mut r, record.bytes)?;
    if scanned.valid_len != record.bytes {
        return Err(format!(
            "indexed fragments end at {} but the file's complete ones at {}: {}",
            record.bytes,
            scanned.valid_len,
            scanned.tail_problem.as_deref().unwrap_or("")
        ));
    }
    check_table(&scanned.table, record, init.len)?;
    Ok((scanned.table, false, init.params))
}

/// The sample table after a closed segment's fragments, with as few reads as it takes (one).
pub(crate) fn read_table(f: &std::fs::File, record: &SegmentRecord) -> Result<SampleTable, String> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; TABLE_READ];
    let n = read_at_most(f, &mut buf, record.bytes).map_err(|e| e.to_string())?;
    buf.truncate(n);
    if buf.len() >= 4 {
        let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if size > buf.len() && (size as u64) <= crate::sample_table::MAX_BYTES {
            let mut rest = vec![0u8; size - buf.len()];
            f.read_exact_at(&mut rest, record.bytes + buf.len() as u64)
                .map_err(|e| format!("its table is cut short: {e}"))?;
            buf.extend_from_slice(&rest);
        }
    }
    SampleTable::from_box(&buf, record.start.as_micros()).map(|(t, _)| t)
}

/// Reads into `buf` from `offset` until it is full or the file ends; the bytes read.
fn read_at_most(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// That `t` describes the indexed fragments of `record` (`init_len`: where they start).
pub(crate) fn check_table(t: &SampleTable, record: &SegmentRecord, init_len: u64) -> Result<(), String> {
    let first = t.fragments.first().ok_or("no fragment")?;
    if first.byte_offset != init_len
        || t.end_offset() != Some(record.bytes)
        || t.samples.len() as u64 != record.frames
        || first.media_offset != record.timeline_start
    {
        return Err("the table does not describe the indexed fragments".into());
    }
    Ok(())
}

/// The samples of a segment from its table: each with its wall time (its GOP's, plus the media
/// time since), its GOP's index and its file offset.
fn samples_from_table(t: &SampleTable, record: &SegmentRecord) -> Result<Vec<StoredSample>, String> {
    let gops = t.gops(record.start, record.timeline_start);
    let mut out = Vec::with_capacity(t.samples.len());
    let mut gop = 0usize;
    let mut left = gops.first().map_or(0, |g| g.frames);
    let mut wall = gops.first().map(|g| record.key_frame_wall(g));
    let mut media = 0i64;
    for f in &t.fragments {
        let mut at = f.data_start;
        for s in t.fragment_samples(f) {
            if left == 0 {
                gop += 1;
                let g = gops.get(gop).ok_or("samples past the last GOP")?;
                left = g.frames;
                wall = Some(record.key_frame_wall(g));
                media = 0;
            }
            let w = wall.ok_or("no GOP")?;
            out.push(StoredSample {
                wall: w.add_micros(media_to_micros(media)),
                duration: s.duration,
                size: s.size,
                key: s.key,
                offset: at,
                fragment: gop as u32,
            });
            media += i64::from(s.duration);
            at += u64::from(s.size);
            left -= 1;
        }
    }
    Ok(out)
}

/// Recently read sample tables, keyed by file and indexed length (a growing segment's table is
/// re-read when it grows; closed segments never change).
pub struct SampleCache(Mutex<lru::LruCache<(PathBuf, u64), Arc<SegmentSamples>>>);

impl SampleCache {
    /// A cache of `capacity` segments (a 60 s segment's table is a few tens of kB).
    pub fn new(capacity: usize) -> Self {
        SampleCache(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN),
        )))
    }

    /// The table of `record` at `path` if the cache holds it.
    pub fn cached(&self, path: &Path, record: &SegmentRecord) -> Option<Arc<SegmentSamples>> {
        let key = (path.to_owned(), record.bytes);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned()
    }

    /// The table of `record` at `path`, from the cache or the file.
    pub fn get(&self, path: &Path, record: &SegmentRecord) -> Result<Arc<SegmentSamples>, StoreError> {
        if let Some(t) = self.cached(path, record) {
            return Ok(t);
        }
        let t = Arc::new(read_segment_samples(path, record)?);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put((path.to_owned(), record.bytes), t.clone());
        Ok(t)
    }
}

/// What to play.
#[derive(Clone, Debug)]
pub struct PlaybackRequest {
    /// The stream.
    pub stream: StreamId,
    /// First instant to show.
    pub start: WallTime,
    /// Instant to stop at.
    pub end: WallTime,
    /// 1 (normal), 2, 4, 8 or 16.
    pub speed: u32,
}

/// Why a range cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No recording overlaps the range.
    #[error("nothing is recorded in this range")]
    NothingRecorded,
    /// Reading the index or a file failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A planned playback: the movie to build and what it covers.
#[derive(Clone, Debug)]
pub struct PlaybackPlan {
    /// Source files, indexed by `SampleRef::source`.
    pub sources: Vec<PathBuf>,
    /// The movie.
    pub spec: MovieSpec,
    /// Wall time shown at presentation time zero (the request's start, or the first recorded
    /// frame after it).
    pub first: WallTime,
    /// Wall time at which presentation ends (the request's end, or the end of the last frame).
    pub last: WallTime,
    /// Gaps in the recording inside the range, collapsed in the file.
    pub gaps: Vec<(WallTime, WallTime)>,
    /// Why the file ends before `last` would say, if it does (a codec change).
    pub truncated: Option<String>,
    /// Where the codec changed, if it did: a further plan from here covers the rest.
    pub truncated_at: Option<WallTime>,
    /// A strong validator: changes whenever the bytes of the result would.
    pub etag: String,
    /// Frames in the file (including those before `first` that only serve decoding).
    pub frames: u64,
}

/// Samples chosen for the movie: `[from, to)` of segment `seg`'s table.
struct Picked {
    seg: usize,
    from: usize,
    to: usize,
}

/// What one reading thread returns: each table it read, with its index in the request.
type TablesRead = Result<Vec<(usize, Arc<SegmentSamples>)>, StoreError>;

/// The sample tables of `segments`: from the cache, then read from the files in order on this
/// thread while the reads come from the page cache (~0.05 ms each), and once one takes as long
/// as a disk read, the rest by a few threads at once (a cold table is ~1 ms of latency, not
/// bandwidth). Threads cost 3-5 ms to get scheduled on a busy machine, more than a whole warm
/// hour's tables, so they are started only for reads that wait on the disk.
fn load_tables(
    cache: &SampleCache,
    segments: &[(PathBuf, SegmentRecord)],
) -> Result<Vec<Arc<SegmentSamples>>, StoreError> {
    const THREADS: usize = 4;
    const DISK_READ: std::time::Duration = std::time::Duration::from_micros(300);
    let mut out: Vec<Option<Arc<SegmentSamples>>> = segments.iter().map(|(p, r)| cache.cached(p, r)).collect();
    let mut missing: Vec<usize> = (0..segments.len()).filter(|&i| out[i].is_none()).collect();
    let mut done = 0;
    while done < missing.len() {
        let i = missing[done];
        let t = std::time::Instant::now();
        out[i] = Some(cache.get(&segments[i].0, &segments[i].1)?);
        done += 1;
        if t.elapsed() > DISK_READ {
            break;
        }
    }
    missing.drain(..done);
    if !missing.is_empty() {
        let chunk = missing.len().div_ceil(THREADS);
        let read: Vec<TablesRead> = std::thread::scope(|s| {
            let handles: Vec<_> = missing
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        c.iter()
                            .map(|&i| cache.get(&segments[i].0, &segments[i].1).map(|t| (i, t)))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(StoreError::Stopped)))
                .collect()
        });
        for r in read {
            for (i, t) in r? {
                out[i] = Some(t);
            }
        }
    }
    out.into_iter().map(|t| t.ok_or(StoreError::Stopped)).collect()
}

/// Where a segment's samples meet a range `[start, end)`: the last key frame at or before
/// `start` (decoding can begin there), and the first sample at or after `end`, both as indices.
/// By binary search, for samples in wall-time order.
fn pick_sorted(samples: &[StoredSample], start: WallTime, end: WallTime) -> (Option<usize>, usize) {
    let to = samples.partition_point(|s| s.wall < end);
    let before = samples[..to].partition_point(|s| s.wall <= start);
    (samples[..before].iter().rposition(|s| s.key), to)
}

/// [`pick_sorted`] by a scan, for samples whose wall times go back somewhere.
fn pick_scan(samples: &[StoredSample], start: WallTime, end: WallTime) -> (Option<usize>, usize) {
    let mut key = None;
    for (k, s) in samples.iter().enumerate() {
        if s.wall >= end {
            return (key, k);
        }
        if s.wall <= start && s.key {
            key = Some(k);
        }
    }
    (key, samples.len())
}

/// Plans `req` over the store.
pub fn plan(store: &Store, cache: &SampleCache, req: &PlaybackRequest) -> Result<PlaybackPlan, PlanError> {
    plan_with(store, cache, req, Vec::new())
}

/// Plans `req` over the store and `extra` segments kept elsewhere (another cluster member's,
/// fetched for this request), as one recording in time order.
pub fn plan_with(
    store: &Store,
    cache: &SampleCache,
    req: &PlaybackRequest,
    extra: Vec<(PathBuf, SegmentRecord)>,
) -> Result<PlaybackPlan, PlanError> {
    let mut segments: Vec<(PathBuf, SegmentRecord)> = store
        .segments(&req.stream, req.start, req.end)?
        .into_iter()
        .chain(
            extra
                .into_iter()
                .filter(|(_, r)| r.stream == req.stream && r.start < req.end && r.end > req.start),
        )
        .filter(|(_, r)| r.frames > 0)
        .collect();
    segments.sort_by_key(|(_, r)| r.start);
    if segments.is_empty() {
        return Err(PlanError::NothingRecorded);
    }
    let codec = segments[0].1.codec;
    let tables = load_tables(cache, &segments)?;
    // The samples to show, as one range of each segment's table, in order. An hour is ~90,000
    // samples: they are chosen by scanning the tables, not collected one by one (collecting
    // them was a third of a request's time).
    let mut picked: Vec<Picked> = Vec::with_capacity(segments.len());
    let mut truncated = None;
    let mut truncated_at = None;
    for (i, (_, rec)) in segments.iter().enumerate() {
        if rec.codec != codec {
            truncated_at = Some(rec.start);
            truncated = Some(format!(
                "the camera switched from {} to {} here; the file ends at the switch",
                codec.as_str(),
                rec.codec.as_str()
            ));
            break;
        }
        let samples = &tables[i].samples;
        let (key, to) = if tables[i].in_order {
            pick_sorted(samples, req.start, req.end)
        } else {
            pick_scan(samples, req.start, req.end)
        };
        let mut from = 0;
        if let Some(k) = key {
            // A later key frame at or before the start: decoding can begin there instead.
            picked.clear();
            from = k;
        }
        if from < to {
            picked.push(Picked { seg: i, from, to });
        }
    }
    let samples_of = |r: &Picked| &tables[r.seg].samples[r.from..r.to];
    // Frames before the first key frame (the range starts before any recording) cannot decode.
    let first_key = picked
        .iter()
        .enumerate()
        .find_map(|(j, r)| samples_of(r).iter().position(|s| s.key).map(|k| (j, r.from + k)));
    match first_key {
        Some((j, k)) => {
            picked.drain(..j);
            picked[0].from = k;
        }
        None => picked.clear(),
    }
    let (Some(first_sample), Some(last_sample)) = (
        picked.first().and_then(|r| samples_of(r).first()).copied(),
        picked.last().and_then(|r| samples_of(r).last()).copied(),
    ) else {
        return Err(PlanError::NothingRecorded);
    };
    let used: Vec<usize> = picked.iter().map(|r| r.seg).collect();
    let gaps: Vec<(WallTime, WallTime)> = used
        .windows(2)
        .map(|w| (segments[w[0]].1.end, segments[w[1]].1.start))
        .filter(|(a, b)| b.micros_since(*a) > CONTIGUOUS_US)
        .collect();

    let skip_us = req.start.micros_since(first_sample.wall).max(0);
    let first = first_sample.wall.max(req.start);
    let last_end = last_sample
        .wall
        .add_micros(media_to_micros(i64::from(last_sample.duration)));
    let last = last_end.min(req.end);
    let overshoot = micros_to_media(last_end.micros_since(last).max(0)) as u64;

    let speed = u64::from(req.speed.max(1));
    let keep_all = speed < 4;
    let count: usize = picked.iter().map(|r| r.to - r.from).sum();
    let total: u64 = picked
        .iter()
        .map(|r| samples_of(r).iter().map(|s| u64::from(s.duration)).sum::<u64>())
        .sum();
    let skip = micros_to_media(skip_us) as u64;
    let duration = total.saturating_sub(skip).saturating_sub(overshoot);

    // The samples kept (every one, or at speed 4 and up key frames lasting until the next),
    // their durations scaled for speed, in runs of one set of codec parameters.
    let mut sources: Vec<PathBuf> = Vec::new();
    let mut source_of: Vec<Option<u32>> = vec![None; segments.len()];
    let mut source = |seg: usize| {
        *source_of[seg].get_or_insert_with(|| {
            sources.push(segments[seg].0.clone());
            sources.len() as u32 - 1
        })
    };
    let mut runs: Vec<Run> = Vec::new();
    // The samples of the run segment `seg` continues (the last one when its parameters are
    // those of the last run: compared, bytes when the Arcs differ, once per segment).
    let run_of = |runs: &mut Vec<Run>, seg: usize| -> usize {
        let params = &tables[seg].params;
        let same = runs
            .last()
            .is_some_and(|r| Arc::ptr_eq(&r.params, params) || *r.params == **params);
        if !same {
            // One run is the rule; a run after a parameter change is sized by its segment.
            let room = if runs.is_empty() {
                if keep_all { count } else { count / 16 + 1 }
            } else {
                tables[seg].samples.len()
            };
            runs.push(Run {
                params: params.clone(),
                samples: Vec::with_capacity(room),
            });
        }
        runs.len() - 1
    };
    let mut frames = 0u64;
    if speed == 1 {
        // Every sample as it was recorded, a segment's range at a time: nothing to scale or
        // merge, and per-sample bookkeeping was the largest part of a plan.
        for r in &picked {
            let source = source(r.seg);
            let run = run_of(&mut runs, r.seg);
            let kept = samples_of(r);
            frames += kept.len() as u64;
            runs[run].samples.extend(kept.iter().map(|s| SampleRef {
                duration: s.duration.max(1),
                size: s.size,
                key: s.key,
                source,
                offset: s.offset,
            }));
        }
    } else {
        let mut run_seg = usize::MAX;
        let mut run = 0;
        let (mut acc, mut scaled_acc) = (0u64, 0u64);
        let mut emit = |seg: usize, s: &StoredSample, d: u64| {
            frames += 1;
            acc += d;
            let scaled_end = (acc + speed / 2) / speed;
            let scaled = (scaled_end - scaled_acc).clamp(1, u64::from(u32::MAX)) as u32;
            scaled_acc = scaled_end;
            if seg != run_seg {
                run = run_of(&mut runs, seg);
                run_seg = seg;
            }
            runs[run].samples.push(SampleRef {
                duration: scaled,
                size: s.size,
                key: s.key,
                source: source(seg),
                offset: s.offset,
            });
        };
        // At 4x and up a key frame lasts until the next one: its successors' durations are
        // added to it.
        let mut pending: Option<(usize, &StoredSample, u64)> = None;
        for r in &picked {
            for s in samples_of(r) {
                let d = u64::from(s.duration);
                match &mut pending {
                    Some(p) if !keep_all && !s.key => p.2 += d,
                    _ => {
                        if let Some((seg, s, d)) = pending.take() {
                            emit(seg, s, d);
                        }
                        pending = Some((r.seg, s, d));
                    }
                }
            }
        }
        if let Some((seg, s, d)) = pending {
            emit(seg, s, d);
        }
    }

    let mut h = Sha256::new();
    h.update(format!(
        "v1 {} {} {} {}",
        req.stream,
        req.start.as_micros(),
        req.end.as_micros(),
        speed
    ));
    for &i in &used {
        let r = &segments[i].1;
        h.update(format!(" {}:{}:{}", r.seq, r.start.as_micros(), r.bytes));
    }
    let etag: String = h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();

    Ok(PlaybackPlan {
        sources,
        spec: MovieSpec {
            runs,
            skip: skip / speed,
            duration: duration / speed,
        },
        first,
        last,
        gaps,
        truncated,
        truncated_at,
        etag,
        frames,
    })
}

/// The frames of a plan in order, read from its segment files one by one: what a GB/T 28181
/// playback toward an upper platform sends. Media times count from the plan's first sample
/// (the key frame decoding starts at); wall times are the recording's.
pub struct PlanFrames {
    plan: PlaybackPlan,
    stream: StreamId,
    run: usize,
    sample: usize,
    ticks: u64,
    files: Vec<Option<std::fs::File>>,
    origin: WallTime,
}

impl PlanFrames {
    /// Reads `plan`'s frames of `stream`.
    pub fn new(plan: PlaybackPlan, stream: StreamId) -> PlanFrames {
        let origin = plan.first.add_micros(-media_to_micros(plan.spec.skip as i64));
        PlanFrames {
            files: (0..plan.sources.len()).map(|_| None).collect(),
            plan,
            stream,
            run: 0,
            sample: 0,
            ticks: 0,
            origin,
        }
    }

    fn read(&mut self, s: &SampleRef) -> Result<bytes::Bytes, StoreError> {
        use std::os::unix::fs::FileExt;
        let i = s.source as usize;
        let path = &self.plan.sources[i];
        let f = match &mut self.files[i] {
            Some(f) => f,
            slot => slot.insert(std::fs::File::open(path).map_err(StoreError::io(path, "open"))?),
        };
        let mut buf = vec![0u8; s.size as usize];
        f.read_exact_at(&mut buf, s.offset)
            .map_err(StoreError::io(path, "read"))?;
        Ok(bytes::Bytes::from(buf))
    }
}

impl Iterator for PlanFrames {
    type Item = Result<media::Frame, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let run = self.plan.spec.runs.get(self.run)?;
            let Some(s) = run.samples.get(self.sample).copied() else {
                self.run += 1;
                self.sample = 0;
                continue;
            };
            let params = run.params.clone();
            self.sample += 1;
            let media_time = self.ticks as i64;
            self.ticks += u64::from(s.duration);
            let data = match self.read(&s) {
                Ok(d) => d,
                Err(e) => return Some(Err(e)),
            };
            return Some(Ok(media::Frame {
                stream: self.stream.clone(),
                media_time,
                wall_time: self.origin.add_micros(media_to_micros(media_time)),
                key: s.key,
                discontinuity: media_time == 0,
                params,
                data,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary search picks what the scan picks whenever wall times are in order, including
    /// repeated wall times, ranges that miss the segment and ranges inside one sample.
    #[test]
    fn a_sorted_pick_equals_the_scan() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..2_000 {
            let n = next(40) as usize;
            let mut wall = 1_000_000 + next(100) as i64;
            let samples: Vec<StoredSample> = (0..n)
                .map(|i| {
                    wall += next(3) as i64 * 40;
                    StoredSample {
                        wall: WallTime::from_micros(wall),
                        duration: 3600,
                        size: 100,
                        key: i == 0 || next(5) == 0,
                        offset: i as u64 * 100,
                        fragment: 0,
                    }
                })
                .collect();
            let a = WallTime::from_micros(999_000 + next(3_000) as i64);
            let b = a.add_micros(next(2_000) as i64);
            assert_eq!(
                pick_sorted(&samples, a, b),
                pick_scan(&samples, a, b),
                "{a:?}..{b:?} of {samples:?}"
            );
        }
    }
}
