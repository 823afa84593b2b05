//! The recorder: frames in, segment files and index entries out.
//!
//! Threads (see `docs/storage.md` for the durability order):
//!
//! * one **writer** thread owns every open segment. It appends a fragment to a segment when a
//!   key frame closes a GOP, and at every flush tick it appends whatever is pending, so no frame
//!   waits in memory longer than one flush interval. It rotates segments at a GOP boundary
//!   after the target length, on a parameter change and on a discontinuity.
//! * one **syncer** thread per data directory. After each tick it receives the index entries of
//!   the segments that changed, makes them durable (`fdatasync` per file on a small node,
//!   `syncfs` above [`PER_FILE_SYNC_LIMIT`] files), and only then commits
//!   those entries to the index in one transaction. An index entry therefore never describes
//!   bytes that a crash could lose.
//!
//! Frames reach the writer through a bounded queue; when it is full, `try_push` hands the frame
//! back so the caller can mark a discontinuity, and recording restarts at the next key frame.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use media::{Frame, StreamId, WallTime, micros_to_media};
use tracing::{error, info, warn};

use crate::StoreError;
use crate::disk::{Disk, PER_FILE_SYNC_LIMIT};
use crate::record::SegmentRecord;
use crate::retention::Trigger;
use crate::writer::SegmentWriter;

/// Recorder settings.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Target segment length; segments close at the first key frame after it.
    pub segment: Duration,
    /// How often pending frames are written and made durable (at most the data a crash loses).
    pub flush_interval: Duration,
    /// Frames that may wait in the queue to the writer before new ones are refused.
    pub queue_frames: usize,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            segment: Duration::from_secs(60),
            flush_interval: Duration::from_millis(500),
            queue_frames: 100_000,
        }
    }
}

/// Counters of the recorder, for metrics and tests.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Frames accepted into the queue.
    pub frames_queued: AtomicU64,
    /// Frames refused because the queue was full.
    pub frames_refused: AtomicU64,
    /// Frames written to segment files.
    pub frames_written: AtomicU64,
    /// Frames dropped while waiting for a key frame to start a segment.
    pub frames_waiting_key: AtomicU64,
    /// Frames dropped because no data disk could take a new segment (all full of evidence).
    pub frames_no_disk: AtomicU64,
    /// Bytes written to segment files.
    pub bytes_written: AtomicU64,
    /// Segments opened.
    pub segments_opened: AtomicU64,
    /// Segments closed.
    pub segments_closed: AtomicU64,
    /// Write errors (each abandons the current segment).
    pub write_errors: AtomicU64,
    /// Sync + index commits done.
    pub syncs: AtomicU64,
    /// Sync or index commit failures.
    pub sync_errors: AtomicU64,
    /// Duration of the last sync + commit, µs.
    pub last_sync_us: AtomicU64,
    /// Longest sync + commit, µs.
    pub max_sync_us: AtomicU64,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

enum Cmd {
    Frame(Frame),
    End(StreamId),
    Shutdown(mpsc::Sender<()>),
}

enum SyncMsg {
    Batch(Vec<SegmentRecord>),
    Barrier(mpsc::Sender<()>),
}

/// Handle to the running recorder. Cloning gives another handle to the same recorder.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Cmd>,
    stats: Arc<RecorderStats>,
    threads: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Recorder {
    /// Starts the writer and syncer threads over `disks`; `next_seq` gives each known stream's
    /// highest sequence number so far, `last_end` the wall time and decode time its last
    /// segment ended at (where its timeline continues).
    pub(crate) fn start(
        disks: Vec<Arc<Disk>>,
        cfg: RecorderConfig,
        next_seq: HashMap<StreamId, u64>,
        last_end: HashMap<StreamId, (WallTime, u64)>,
        trigger: Arc<Trigger>,
    ) -> Recorder {
        let stats = Arc::new(RecorderStats::default());
        let (tx, rx) = mpsc::sync_channel(cfg.queue_frames.max(1));
        let mut threads = Vec::new();
        let mut syncers = Vec::new();
        for (i, disk) in disks.iter().enumerate() {
            let (stx, srx) = mpsc::channel();
            syncers.push(stx);
            let (disk, stats) = (disk.clone(), stats.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("syncer-{i}"))
                    .spawn(move || run_syncer(&disk, srx, &stats))
                    .expect("spawning a thread"),
            );
        }
        let writer = Writer {
            disks,
            cfg,
            syncers,
            streams: HashMap::new(),
            next_seq,
            last_end,
            trigger,
            no_disk_logged: None,
            stats: stats.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("segment-writer".into())
                .spawn(move || writer.run(rx))
                .expect("spawning a thread"),
        );
        Recorder {
            tx,
            stats,
            threads: Arc::new(std::sync::Mutex::new(threads)),
        }
    }

    /// Queues a frame without blocking. A full queue (the disks cannot keep up) hands the frame
    /// back: the caller should mark its next frame as a discontinuity.
    pub fn try_push(&self, frame: Frame) -> Result<(), Frame> {
        match self.tx.try_send(Cmd::Frame(frame)) {
            Ok(()) => {
                inc(&self.stats.frames_queued, 1);
                Ok(())
            }
            Err(TrySendError::Full(Cmd::Frame(f)) | TrySendError::Disconnected(Cmd::Frame(f))) => {
                inc(&self.stats.frames_refused, 1);
                Err(f)
            }
            Err(_) => Ok(()),
        }
    }

    /// The stream's source ended: finish its segment now.
    pub fn end_stream(&self, stream: &StreamId) {
        // Blocking here is fine: it happens once per session, from the source's task.
        let _ = self.tx.send(Cmd::End(stream.clone()));
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }

    /// Closes every segment, makes everything durable and indexed, and stops the threads.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let (done_tx, done_rx) = mpsc::channel();
        self.tx.send(Cmd::Shutdown(done_tx)).map_err(|_| StoreError::Stopped)?;
        done_rx.recv().map_err(|_| StoreError::Stopped)?;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }
}

struct StreamState {
    segment: Option<SegmentWriter>,
    pending: Vec<Frame>,
    /// Target length of the current segment in 90 kHz ticks (the first one is staggered).
    target_ticks: i64,
    /// Last observed frame spacing, for the duration of a stream's final frame.
    last_spacing: i64,
    /// Decode time the next segment starts at when it continues the current run.
    next_timeline: Option<u64>,
}

struct Writer {
    disks: Vec<Arc<Disk>>,
    cfg: RecorderConfig,
    syncers: Vec<mpsc::Sender<SyncMsg>>,
    streams: HashMap<StreamId, StreamState>,
    next_seq: HashMap<StreamId, u64>,
    /// Per stream: wall time and decode time at which its last finished segment ended.
    last_end: HashMap<StreamId, (WallTime, u64)>,
    /// Wakes retention when a write runs out of space.
    trigger: Arc<Trigger>,
    /// When "no disk can take a segment" was last logged (it is logged once a minute).
    no_disk_logged: Option<Instant>,
    stats: Arc<RecorderStats>,
}

/// A stable pseudo-random fraction in [0, 1) per stream (FNV-1a), so restarts keep the
/// stagger and different cameras get different phases.
fn stagger_fraction(stream: &StreamId) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Writer {
    fn segment_ticks(&self) -> i64 {
        (self.cfg.segment.as_secs_f64() * 90_000.0) as i64
    }

    fn run(mut self, rx: Receiver<Cmd>) {
        let mut next_tick = Instant::now() + self.cfg.flush_interval;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Cmd::Frame(f)) => self.on_frame(f),
                Ok(Cmd::End(s)) => self.close(&s, None),
                Ok(Cmd::Shutdown(done)) => {
                    let streams: Vec<StreamId> = self.streams.keys().cloned().collect();
                    for s in streams {
                        self.close(&s, None);
                    }
                    self.flush(Some(done));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                self.flush(None);
                next_tick += self.cfg.flush_interval;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.cfg.flush_interval;
                }
            }
        }
    }

    fn on_frame(&mut self, f: Frame) {
        let segment_ticks = self.segment_ticks();
        let st = self.streams.entry(f.stream.clone()).or_insert_with(|| StreamState {
            segment: None,
            pending: Vec::new(),
            // The first segment after start-up is 0.5–1.5 × the target, by stream, so that
            // cameras started together do not all rotate in the same second forever after.
            target_ticks: (segment_ticks as f64 * (0.5 + stagger_fraction(&f.stream))) as i64,
            last_spacing: 0,
            next_timeline: None,
        });
        if let Some(prev) = st.pending.last()
            && !f.discontinuity
        {
            st.last_spacing = f.media_time - prev.media_time;
        }
        let rotate = match &st.segment {
            None => false,
            Some(seg) => {
                let continuous = !f.discontinuity
                    && st
                        .pending
                        .last()
                        .is_none_or(|p| p.params == f.params || *p.params == *f.params);
                !continuous || (f.key && seg.elapsed(f.media_time) >= st.target_ticks)
            }
        };
        if rotate {
            let next =
                (!f.discontinuity && st.pending.last().is_none_or(|p| *p.params == *f.params)).then_some(f.media_time);
            self.close(&f.stream.clone(), next);
        }
        let Some(st) = self.streams.get_mut(&f.stream) else {
            return;
        };
        if st.segment.is_none() {
            if !f.key {
                inc(&self.stats.frames_waiting_key, 1);
                return;
            }
            let seq = self.next_seq.get(&f.stream).copied().unwrap_or(0) + 1;
            let Some(disk) = pick_disk(&self.disks) else {
                inc(&self.stats.frames_no_disk, 1);
                if self
                    .no_disk_logged
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    error!(
                        "recording stopped: every data disk is full of held evidence; see the disk alarms in /api/v1/health"
                    );
                    self.no_disk_logged = Some(Instant::now());
                }
                return;
            };
            // A stream's decode timeline never goes back: a continuation carries on exactly, a
            // new run after a gap jumps forward by the gap's wall-clock length.
            let continued = st.next_timeline.take().filter(|_| !f.discontinuity);
            let timeline = continued.unwrap_or_else(|| match self.last_end.get(&f.stream) {
                Some(&(end, ticks)) => ticks + micros_to_media(f.wall_time.micros_since(end).max(0)) as u64,
                None => 0,
            });
            match SegmentWriter::create(disk, &self.disks[disk], seq, &f, timeline) {
                Ok(w) => {
                    self.next_seq.insert(f.stream.clone(), seq);
                    inc(&self.stats.segments_opened, 1);
                    st.segment = Some(w);
                }
                Err(e) => {
                    error!(stream = %f.stream, "cannot start a segment: {e}");
                    inc(&self.stats.write_errors, 1);
                    if e.is_out_of_space() {
                        self.trigger.fire_out_of_space();
                    }
                    return;
                }
            }
        }
        if f.key && !st.pending.is_empty() {
            let next = f.media_time;
            if let Some((disk, r)) = Self::write_pending(st, st.pending.len(), next, &self.stats, &self.trigger) {
                self.send(disk, vec![r]);
                return;
            }
        }
        st.pending.push(f);
    }

    /// Appends the first `n` pending frames as one fragment. On a write error the segment is
    /// abandoned (its durable part stays indexed; recording restarts at the next key frame,
    /// possibly on another disk) and its final index entry is returned for the syncer.
    fn write_pending(
        st: &mut StreamState,
        n: usize,
        next_media: i64,
        stats: &RecorderStats,
        trigger: &Trigger,
    ) -> Option<(usize, SegmentRecord)> {
        let seg = st.segment.as_mut()?;
        let frames: Vec<Frame> = st.pending.drain(..n).collect();
        match seg.append(&frames, next_media) {
            Ok(()) => {
                inc(&stats.frames_written, frames.len() as u64);
                inc(&stats.bytes_written, frames.iter().map(|f| f.data.len() as u64).sum());
                None
            }
            Err(e) => {
                inc(&stats.write_errors, 1);
                if e.is_out_of_space() {
                    // Retention frees space by policy; recording resumes at the next key frame.
                    error!(stream = %seg.record.stream, "disk full, closing the segment early: {e}");
                    trigger.fire_out_of_space();
                } else {
                    error!(stream = %seg.record.stream, "abandoning segment after a write error: {e}");
                }
                st.pending.clear();
                let mut seg = st.segment.take()?;
                seg.record.closed = true;
                (seg.record.frames > 0).then_some((seg.disk, seg.record))
            }
        }
    }

    /// Finishes a stream's segment; `next_media` is the media time following its last frame if
    /// known (a rotation), else the last frame's duration is estimated.
    fn close(&mut self, stream: &StreamId, next_media: Option<i64>) {
        let segment_ticks = self.segment_ticks();
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        if let Some(last) = st.pending.last() {
            let estimate = last
                .params
                .frame_rate()
                .map(|r| i64::from(r.frame_ticks()))
                .filter(|t| *t > 0)
                .or((st.last_spacing > 0).then_some(st.last_spacing))
                .unwrap_or(3600);
            let next = next_media.unwrap_or(last.media_time + estimate);
            if let Some((disk, r)) = Self::write_pending(st, st.pending.len(), next, &self.stats, &self.trigger) {
                inc(&self.stats.segments_closed, 1);
                self.send(disk, vec![r]);
                return;
            }
        }
        st.pending.clear();
        let Some(mut seg) = st.segment.take() else {
            return;
        };
        st.target_ticks = segment_ticks;
        let timeline_end = seg.record.timeline_start + seg.record.media_duration;
        st.next_timeline = next_media.map(|_| timeline_end);
        self.last_end.insert(stream.clone(), (seg.record.end, timeline_end));
        st.next_timeline = next_media.map(|_| seg.record.timeline_start + seg.record.media_duration);
        seg.record.closed = true;
        inc(&self.stats.segments_closed, 1);
        if seg.record.frames == 0 {
            // Nothing but the init part: not worth a file.
            let _ = std::fs::remove_file(&seg.path);
        } else {
            self.send(seg.disk, vec![seg.record]);
        }
    }

    fn send(&self, disk: usize, records: Vec<SegmentRecord>) {
        if let Some(s) = self.syncers.get(disk) {
            let _ = s.send(SyncMsg::Batch(records));
        }
    }

    /// Writes what is pending (all but each stream's last frame, whose duration is not known
    /// yet) and hands changed index entries to the syncers.
    fn flush(&mut self, done: Option<mpsc::Sender<()>>) {
        let mut batches: Vec<Vec<SegmentRecord>> = vec![Vec::new(); self.disks.len()];
        for st in self.streams.values_mut() {
            if st.pending.len() > 1 {
                let n = st.pending.len() - 1;
                let next = st.pending[n].media_time;
                if let Some((disk, r)) = Self::write_pending(st, n, next, &self.stats, &self.trigger) {
                    batches[disk].push(r);
                }
            }
            if let Some(seg) = st.segment.as_mut()
                && seg.dirty
            {
                seg.dirty = false;
                if seg.record.frames > 0 {
                    batches[seg.disk].push(seg.record.clone());
                }
            }
        }
        for (disk, batch) in batches.into_iter().enumerate() {
            if !batch.is_empty() {
                self.send(disk, batch);
            }
        }
        if let Some(done) = done {
            let mut acks = Vec::new();
            for s in &self.syncers {
                let (tx, rx) = mpsc::channel();
                let _ = s.send(SyncMsg::Barrier(tx));
                acks.push(rx);
            }
            for rx in acks {
                let _ = rx.recv();
            }
            let _ = done.send(());
        }
    }
}

/// The data directory with the most free space.
/// The unblocked data directory with the most free space; `None` if every disk is blocked.
fn pick_disk(disks: &[Arc<Disk>]) -> Option<usize> {
    let open = disks.iter().enumerate().filter(|(_, d)| !d.is_blocked());
    if disks.len() == 1 {
        return open.map(|(i, _)| i).next();
    }
    open.max_by_key(|(_, d)| d.space().map(|(free, _)| free).unwrap_or(0))
        .map(|(i, _)| i)
}

/// Makes the files behind `records` durable: one `fdatasync` per file on a small node, one
/// `syncfs` on a large one. `seen` holds the segments whose directory entries are already
/// durable; a closed segment leaves it.
fn make_durable(disk: &Disk, records: &[SegmentRecord], seen: &mut HashSet<(StreamId, u64)>) -> Result<(), StoreError> {
    if records.len() > PER_FILE_SYNC_LIMIT {
        disk.sync()?;
    } else {
        let path = |r: &SegmentRecord| crate::layout::segment_path(&r.stream, r.start, r.seq);
        let files: Vec<_> = records.iter().map(path).collect();
        let new: Vec<_> = records
            .iter()
            .filter(|r| !seen.contains(&(r.stream.clone(), r.seq)))
            .map(path)
            .collect();
        // A file retention removed meanwhile must not wedge the round: syncfs covers the rest.
        if let Err(e) = disk.sync_files(&files, &new) {
            warn!("{e}; falling back to syncfs");
            disk.sync()?;
        }
    }
    for r in records {
        if r.closed {
            seen.remove(&(r.stream.clone(), r.seq));
        } else {
            seen.insert((r.stream.clone(), r.seq));
        }
    }
    Ok(())
}

fn run_syncer(disk: &Disk, rx: Receiver<SyncMsg>, stats: &RecorderStats) {
    let mut pending: HashMap<(StreamId, u64), SegmentRecord> = HashMap::new();
    let mut seen = HashSet::new();
    let mut barriers = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut take = |m: SyncMsg| match m {
            SyncMsg::Batch(records) => {
                for r in records {
                    pending.insert((r.stream.clone(), r.seq), r);
                }
            }
            SyncMsg::Barrier(tx) => barriers.push(tx),
        };
        take(first);
        while let Ok(m) = rx.try_recv() {
            take(m);
        }
        if !pending.is_empty() {
            let t0 = Instant::now();
            let records: Vec<SegmentRecord> = pending.drain().map(|(_, r)| r).collect();
            // Data first, then the index entries that describe it.
            let result = make_durable(disk, &records, &mut seen).and_then(|()| disk.index().put(&records));
            let us = t0.elapsed().as_micros() as u64;
            stats.last_sync_us.store(us, Ordering::Relaxed);
            stats.max_sync_us.fetch_max(us, Ordering::Relaxed);
            match result {
                Ok(()) => inc(&stats.syncs, 1),
                Err(e) => {
                    inc(&stats.sync_errors, 1);
                    error!("{e}");
                    // Kept for the next round (the next fragment comes within a second): an entry
                    // given up here would leave its file for start-up recovery to find.
                    for r in records {
                        pending.entry((r.stream.clone(), r.seq)).or_insert(r);
                    }
                }
            }
            if us > 1_000_000 {
                warn!(disk = %disk.root().display(), ms = us / 1000, "sync took over a second: the disk cannot keep up");
            }
        }
        for b in barriers.drain(..) {
            let _ = b.send(());
        }
    }
    info!(disk = %disk.root().display(), "syncer stopped");
}
