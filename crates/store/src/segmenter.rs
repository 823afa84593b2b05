//! The recorder's writer thread: frames in, fragments appended to segment files, index entries
//! out to the syncers.
//!
//! It appends a fragment to a segment when a key frame closes a GOP, and at every flush tick it
//! appends whatever is pending, so no frame waits in memory longer than one flush interval. It
//! rotates segments at a GOP boundary after the target length, on a parameter change and on a
//! discontinuity.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};

use media::clock::{Clock, SystemClock};
use std::time::{Duration, Instant};

use media::{Frame, StreamId, WallTime, micros_to_media};
use tracing::error;

use crate::disk::Disk;
use crate::record::SegmentRecord;
use crate::recorder_stats::{RecorderStats, inc};
use crate::retention::Trigger;
use crate::syncer::SyncMsg;
use crate::writer::SegmentWriter;

/// Recorder settings.
#[derive(Clone)]
pub struct RecorderConfig {
    /// Target segment length; segments close at the first key frame after it.
    pub segment: Duration,
    /// How often pending frames are written and made durable (at most the data a crash loses).
    pub flush_interval: Duration,
    /// Frames that may wait in the queue to the writer before new ones are refused.
    pub queue_frames: usize,
    /// Where flush ticks take their time from.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RecorderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderConfig")
            .field("segment", &self.segment)
            .field("flush_interval", &self.flush_interval)
            .field("queue_frames", &self.queue_frames)
            .finish_non_exhaustive()
    }
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            segment: Duration::from_secs(60),
            flush_interval: Duration::from_millis(500),
            queue_frames: 100_000,
            clock: Arc::new(SystemClock),
        }
    }
}

/// What the recorder's handles send its writer thread.
pub(crate) enum Cmd {
    /// A frame to record.
    Frame(Frame),
    /// The stream's session ended: finish its segment.
    End(StreamId),
    /// Close everything and answer when it is durable.
    Shutdown(mpsc::Sender<()>),
}

/// One stream's open segment and the frames of its current GOP.
pub(crate) struct StreamState {
    segment: Option<SegmentWriter>,
    pending: Vec<Frame>,
    /// Target length of the current segment in 90 kHz ticks (the first one is staggered).
    target_ticks: i64,
    /// Last observed frame spacing, for the duration of a stream's final frame.
    last_spacing: i64,
    /// Decode time the next segment starts at when it continues the current run.
    next_timeline: Option<u64>,
}

/// The writer thread: owns every open segment of every stream.
pub(crate) struct Segmenter {
    pub(crate) disks: Vec<Arc<Disk>>,
    pub(crate) cfg: RecorderConfig,
    pub(crate) syncers: Vec<mpsc::Sender<SyncMsg>>,
    pub(crate) streams: HashMap<StreamId, StreamState>,
    pub(crate) next_seq: HashMap<StreamId, u64>,
    /// Per stream: wall time and decode time at which its last finished segment ended.
    pub(crate) last_end: HashMap<StreamId, (WallTime, u64)>,
    /// Wakes retention when a write runs out of space.
    pub(crate) trigger: Arc<Trigger>,
    /// When "no disk can take a segment" was last logged (it is logged once a minute).
    pub(crate) no_disk_logged: Option<Instant>,
    pub(crate) stats: Arc<RecorderStats>,
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

impl Segmenter {
    fn segment_ticks(&self) -> i64 {
        (self.cfg.segment.as_secs_f64() * 90_000.0) as i64
    }

    pub(crate) fn run(mut self, rx: Receiver<Cmd>) {
        let clock = self.cfg.clock.clone();
        let mut next_tick = clock.instant() + self.cfg.flush_interval;
        loop {
            let wait = next_tick.saturating_duration_since(clock.instant());
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
            let now = clock.instant();
            if now >= next_tick {
                self.flush(None);
                next_tick += self.cfg.flush_interval;
                if next_tick < now {
                    next_tick = now + self.cfg.flush_interval;
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
                let now = self.cfg.clock.instant();
                if self
                    .no_disk_logged
                    .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
                {
                    error!(
                        "recording stopped: every data disk is full of held evidence; see the disk alarms in /api/v1/health"
                    );
                    self.no_disk_logged = Some(now);
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
        // A rotation (`next_media` known) continues the timeline exactly where this segment ends.
        let timeline_end = seg.record.timeline_start + seg.record.media_duration;
        st.next_timeline = next_media.map(|_| timeline_end);
        self.last_end.insert(stream.clone(), (seg.record.end, timeline_end));
        if let Err(e) = seg.finish() {
            // It plays without its table (read by walking its fragments).
            tracing::warn!(stream = %stream, "segment {} closed without its sample table: {e}", seg.path.display());
        }
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

/// The unblocked data directory with the most free space; `None` if every disk is blocked.
fn pick_disk(disks: &[Arc<Disk>]) -> Option<usize> {
    let open = disks.iter().enumerate().filter(|(_, d)| !d.is_blocked());
    if disks.len() == 1 {
        return open.map(|(i, _)| i).next();
    }
    open.max_by_key(|(_, d)| d.space().map(|(free, _)| free).unwrap_or(0))
        .map(|(i, _)| i)
}
