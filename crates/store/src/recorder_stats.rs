//! The recorder's counters, for health, metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Adds `n` to a counter.
pub(crate) fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
