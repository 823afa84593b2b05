//! Sample tables for closed segments that lack one: files from before the format (a data
//! directory migrated from schema 1), or a segment whose table a full disk kept out. They play
//! without it, by a walk of their fragments, 3–6× slower per segment; this gives them their
//! table in the background, oldest first, one file at a time and resting as long as each took
//! (at most half a core), so recording is never starved. A disk it has been through (or whose
//! index was made by this format) is marked in its index and not checked again. A file gets its table only when a scan
//! of its fragments agrees with its index record; a torn table from a crash during this is cut
//! and written again. The index is not changed: the table sits after the indexed length.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::record::SegmentRecord;
use crate::{Store, StoreError, layout, playback};

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Closed segments looked at.
    pub checked: u64,
    /// Tables written.
    pub added: u64,
    /// Segments whose file did not agree with its record (left as they are; reported).
    pub failed: u64,
}

/// The background pass.
pub struct Backfill {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<BackfillReport>>>,
}

impl Backfill {
    /// Starts one pass over `store` on a thread of its own.
    pub fn spawn(store: Arc<Store>) -> Backfill {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("table-backfill".into())
            .spawn(move || {
                let report = run(&store, &s, true);
                if report.added > 0 || report.failed > 0 {
                    tracing::info!(?report, "sample tables given to segments that lacked one");
                }
                report
            })
            .ok();
        Backfill {
            stop,
            thread: Mutex::new(thread),
        }
    }

    /// Stops the pass (after the file in hand) and returns what it did.
    pub fn stop(&self) -> Option<BackfillReport> {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        t.join().ok()
    }
}

/// One pass over every disk's closed segments, oldest first per stream, until `stop`;
/// `rest` paces it (no pause in tests and tools).
pub fn run(store: &Store, stop: &AtomicBool, rest: bool) -> BackfillReport {
    let mut report = BackfillReport::default();
    for disk in store.disks() {
        if disk.index().tables_complete().unwrap_or(false) {
            continue;
        }
        let streams = match disk.index().streams() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(disk = %disk.root().display(), "table backfill: {e}");
                continue;
            }
        };
        for (stream, _) in streams {
            let mut after = None;
            loop {
                let page = match disk.index().oldest(&stream, after, 1000) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(%stream, "table backfill: {e}");
                        break;
                    }
                };
                let Some(last) = page.last() else { break };
                after = Some((last.start, last.seq));
                for r in page.iter().filter(|r| r.closed) {
                    if stop.load(Ordering::Acquire) {
                        return report;
                    }
                    report.checked += 1;
                    let path = disk.root().join(layout::segment_path(&r.stream, r.start, r.seq));
                    let t = Instant::now();
                    match give_table(&path, r) {
                        Ok(true) => report.added += 1,
                        Ok(false) => {}
                        Err(e) => {
                            report.failed += 1;
                            tracing::warn!(file = %path.display(), "no sample table added: {e}");
                        }
                    }
                    if rest {
                        std::thread::sleep(t.elapsed().max(Duration::from_micros(50)));
                    }
                }
            }
        }
        // Through every segment of this disk: the next start has nothing to check.
        if let Err(e) = disk.index().set_tables_complete() {
            tracing::warn!(disk = %disk.root().display(), "table backfill: {e}");
        }
    }
    report
}

/// Gives the segment at `path` its table if it has none: `Ok(true)` when one was written.
pub fn give_table(path: &std::path::Path, r: &SegmentRecord) -> Result<bool, StoreError> {
    let bad = |detail: String| StoreError::Segment {
        path: path.to_owned(),
        detail,
    };
    let mut f = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        // Deleted by retention meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io(path, "open")(e)),
    };
    let len = f.metadata().map_err(StoreError::io(path, "stat"))?.len();
    if len < r.bytes {
        return Err(bad(format!(
            "shorter ({len} bytes) than its index record ({})",
            r.bytes
        )));
    }
    let mut window = crate::segment_file::PreadWindow::new(&f);
    let init = crate::segment_file::read_init(&mut window, r.bytes).map_err(bad)?;
    if len > r.bytes
        && playback::read_table(&f, r)
            .and_then(|t| playback::check_table(&t, r, init.len))
            .is_ok()
    {
        return Ok(false);
    }
    let scanned = crate::segment_file::scan(&mut crate::segment_file::PreadWindow::new(&f), r.bytes).map_err(bad)?;
    if scanned.valid_len != r.bytes {
        return Err(bad(format!(
            "its complete fragments end at {}, its index record at {}",
            scanned.valid_len, r.bytes
        )));
    }
    playback::check_table(&scanned.table, r, init.len).map_err(bad)?;
    // Anything after the fragments (a table torn by a crash, or not this segment's) is cut.
    scanned.table.append_to(&mut f, path, r.bytes, r.start.as_micros())?;
    Ok(true)
}
