//! Start-up recovery and index rebuild: making the index agree with the files.
//!
//! After a crash, three things can disagree (see `docs/storage.md`):
//! * a segment marked open in the index has more complete fragments on disk than indexed
//!   (written after the last commit) and possibly a torn last fragment: the tail is trimmed to
//!   the last complete fragment and the entry is completed and closed;
//! * a segment file exists that the index never heard of (created within the last flush
//!   interval): it is scanned and indexed;
//! * an index entry's file is missing (should never happen; reported): the entry is dropped.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use media::StreamId;
use tracing::{error, info, warn};

use crate::StoreError;
use crate::disk::{Disk, lock_dir};
use crate::index::Index;
use crate::layout::{INDEX_FILE, SEGMENTS_DIR, parse_segment_path, segment_path};
use crate::record::SegmentRecord;
use crate::segment_file::{ScannedSegment, scan_file};

/// What recovery did to one data directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Open segments completed and closed.
    pub closed_open_segments: usize,
    /// Bytes of torn tails cut off.
    pub trimmed_bytes: u64,
    /// Unindexed files found and indexed.
    pub recovered_files: usize,
    /// Index entries dropped because their file is gone.
    pub dropped_entries: usize,
    /// Files removed because they hold no complete fragment.
    pub removed_empty_files: usize,
    /// Files set aside (renamed `*.damaged`) because their start is unreadable.
    pub damaged_files: usize,
    /// Deletes interrupted by a crash, finished.
    pub finished_deletes: usize,
    /// Segments a crash left without their sample table, given one.
    pub tables_added: usize,
}

/// Cuts a file back to its last complete fragment and makes that durable.
fn trim(path: &Path, scan: &ScannedSegment) -> Result<u64, StoreError> {
    // A sound sample table after the fragments is kept; anything else past them is torn.
    let keep = scan.table_end.unwrap_or(scan.valid_len);
    if scan.file_len <= keep {
        return Ok(0);
    }
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StoreError::io(path, "open"))?;
    f.set_len(keep).map_err(StoreError::io(path, "truncate"))?;
    f.sync_all().map_err(StoreError::io(path, "sync"))?;
    warn!(
        file = %path.display(),
        cut = scan.file_len - keep,
        problem = scan.tail_problem.as_deref().unwrap_or(""),
        "trimmed a torn tail"
    );
    Ok(scan.file_len - keep)
}

/// Gives a segment a crash left without its sample table the table of its fragments (the
/// file was just trimmed to them), durably, before its closed record is indexed.
fn add_table(path: &Path, scan: &ScannedSegment) -> Result<bool, StoreError> {
    if scan.table_end.is_some() || scan.fragments.is_empty() {
        return Ok(false);
    }
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StoreError::io(path, "open"))?;
    scan.table
        .append_to(&mut f, path, scan.valid_len, scan.header.start_us)?;
    Ok(true)
}

fn set_aside(path: &Path, why: &StoreError) {
    let mut damaged = path.as_os_str().to_owned();
    damaged.push(".damaged");
    error!(file = %path.display(), "segment file unreadable, renamed to *.damaged: {why}");
    let _ = fs::rename(path, PathBuf::from(damaged));
}

/// Scans one file into a closed record, trimming its tail; `None` if it holds nothing usable
/// (then the file is removed or set aside).
fn recover_file(path: &Path, report: &mut RecoveryReport) -> Result<Option<SegmentRecord>, StoreError> {
    match scan_file(path) {
        Ok(scan) => {
            report.trimmed_bytes += trim(path, &scan)?;
            match scan.to_record() {
                Some(r) => {
                    // Without its table it still plays (by a walk); a full disk is no reason
                    // to stop recovering.
                    match add_table(path, &scan) {
                        Ok(true) => report.tables_added += 1,
                        Ok(false) => {}
                        Err(e) => warn!(file = %path.display(), "no sample table added: {e}"),
                    }
                    Ok(Some(r))
                }
                None => {
                    fs::remove_file(path).map_err(StoreError::io(path, "remove"))?;
                    report.removed_empty_files += 1;
                    Ok(None)
                }
            }
        }
        Err(e @ StoreError::Segment { .. }) => {
            // A crash right after creating the file can leave it shorter than its init part.
            let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if len < 4096 {
                fs::remove_file(path).map_err(StoreError::io(path, "remove"))?;
                report.removed_empty_files += 1;
            } else {
                set_aside(path, &e);
                report.damaged_files += 1;
            }
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every `*.mp4` under `DATA/segments`, with the stream and sequence its path names.
fn segment_files(root: &Path, only_recent_days: Option<usize>) -> Result<Vec<(PathBuf, StreamId, u64)>, StoreError> {
    let mut out = Vec::new();
    let seg_root = root.join(SEGMENTS_DIR);
    let list = |dir: &Path| -> Result<Vec<PathBuf>, StoreError> {
        let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io(dir, "list")(e)),
        };
        v.sort();
        Ok(v)
    };
    for camera in list(&seg_root)? {
        for kind in list(&camera)? {
            let mut days = list(&kind)?;
            if let Some(n) = only_recent_days {
                let skip = days.len().saturating_sub(n);
                days.drain(..skip);
            }
            for day in days {
                for file in list(&day)? {
                    let Ok(rel) = file.strip_prefix(root) else {
                        continue;
                    };
                    if let Some((stream, seq)) = parse_segment_path(rel) {
                        out.push((file, stream, seq));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Recovers one data directory after start-up; see the module comment.
pub(crate) fn recover(disk: &Disk) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport {
        finished_deletes: disk.finish_interrupted_deletes()?,
        ..RecoveryReport::default()
    };
    let index = disk.index();
    let root = disk.root();

    let mut updates = Vec::new();
    let mut removals = Vec::new();
    for r in index.open_segments()? {
        let path = root.join(segment_path(&r.stream, r.start, r.seq));
        if !path.exists() {
            error!(file = %path.display(), "index entry points to a missing file; dropping the entry");
            report.dropped_entries += 1;
            removals.push((r.stream, r.start, r.seq));
            continue;
        }
        match recover_file(&path, &mut report)? {
            Some(rec) if rec.start == r.start && rec.seq == r.seq => {
                report.closed_open_segments += 1;
                updates.push(rec);
            }
            Some(rec) => {
                // The file's own anchor wins over a stale entry.
                removals.push((r.stream, r.start, r.seq));
                report.closed_open_segments += 1;
                updates.push(rec);
            }
            None => removals.push((r.stream, r.start, r.seq)),
        }
    }
    if !removals.is_empty() {
        index.remove(&removals)?;
    }

    // Files newer than anything indexed: created within the last flush before the crash.
    let max_seq: HashMap<StreamId, u64> = index.streams()?.into_iter().collect();
    for (path, stream, seq) in segment_files(root, Some(2))? {
        if seq <= max_seq.get(&stream).copied().unwrap_or(0) {
            continue;
        }
        if let Some(rec) = recover_file(&path, &mut report)? {
            if rec.stream != stream || rec.seq != seq {
                warn!(file = %path.display(), "segment header names {}#{}, not what its path says; not indexed", rec.stream, rec.seq);
                continue;
            }
            report.recovered_files += 1;
            updates.push(rec);
        }
    }
    index.put(&updates)?;
    if report != RecoveryReport::default() {
        info!(disk = %root.display(), ?report, "recovered after an unclean stop");
    }
    Ok(report)
}

/// What a rebuild found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Segment files indexed.
    pub segments: usize,
    /// Files skipped (unreadable or empty), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Regenerates the index of the data directory `root` from its segment files alone.
///
/// The new index is built beside the old one and renamed over it, so an interrupted rebuild
/// leaves the old index in place. Files are read, never modified. Fails with
/// [`StoreError::Locked`] if a recorder is using the directory.
pub fn rebuild(root: &Path) -> Result<RebuildReport, StoreError> {
    let _lock = lock_dir(root)?;
    let tmp = root.join(format!("{INDEX_FILE}.rebuild"));
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(StoreError::io(&tmp, "remove"))?;
    }
    let mut report = RebuildReport::default();
    {
        let index = Index::open(&tmp)?;
        let mut batch = Vec::new();
        for (path, stream, seq) in segment_files(root, None)? {
            match scan_file(&path) {
                Ok(scan) => match scan.to_record() {
                    Some(r) if r.stream == stream && r.seq == seq => batch.push(r),
                    Some(r) => report.skipped.push((
                        path,
                        format!("header names {}#{} but the path does not", r.stream, r.seq),
                    )),
                    None => report.skipped.push((path, "no complete fragment".into())),
                },
                Err(e) => report.skipped.push((path, e.to_string())),
            }
            if batch.len() >= 10_000 {
                report.segments += batch.len();
                index.put(&std::mem::take(&mut batch))?;
            }
        }
        report.segments += batch.len();
        index.put(&batch)?;
    }
    let target = root.join(INDEX_FILE);
    fs::rename(&tmp, &target).map_err(StoreError::io(&target, "rename"))?;
    fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(root, "sync"))?;
    Ok(report)
}
