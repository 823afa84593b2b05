//! The recorder's syncer threads, one per data directory: after each flush tick they make the
//! changed segments durable (`fdatasync` per file on a small node, `syncfs` above
//! [`PER_FILE_SYNC_LIMIT`] files) and only then commit their index entries in one transaction,
//! so an index entry never describes bytes that a crash could lose.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use media::StreamId;
use tracing::{error, info, warn};

use crate::StoreError;
use crate::disk::{Disk, PER_FILE_SYNC_LIMIT};
use crate::record::SegmentRecord;
use crate::recorder_stats::{RecorderStats, inc};

/// What the writer thread sends a syncer.
pub(crate) enum SyncMsg {
    /// Index entries of segments that changed.
    Batch(Vec<SegmentRecord>),
    /// Answer once everything sent before is durable and indexed.
    Barrier(mpsc::Sender<()>),
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

pub(crate) fn run_syncer(disk: &Disk, rx: Receiver<SyncMsg>, stats: &RecorderStats) {
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
