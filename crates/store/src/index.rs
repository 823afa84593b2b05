//! The index: one redb database per data directory.
//!
//! redb rather than sled (the card's choice): sled's last stable release is from 2021 and its
//! 1.0 rewrite was abandoned, while redb is maintained, has a stable file format and gives
//! ACID transactions with a single fsync per commit (see `docs/architecture.md`).
//!
//! Tables:
//! * `segments`: `(stream key, start µs, seq)` → encoded [`SegmentRecord`]. Keyed by start time
//!   so "what is recorded between A and B" is one range scan.
//! * `open`: the keys of segments still being written, so start-up recovery finds them without
//!   scanning the whole index.
//! * `streams`: stream key → highest sequence number used.
//! * `meta`: `max_segment_us` (longest segment seen, bounds the range scan) and the schema
//!   version.
//!
//! The index is a cache of the segment files: `sharpeye store rebuild` regenerates it.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use media::{StreamId, WallTime};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::StoreError;
use crate::layout::{parse_stream_key, stream_key};
use crate::record::SegmentRecord;

type SegmentKey<'a> = (&'a str, i64, u64);

const SEGMENTS: TableDefinition<SegmentKey, &[u8]> = TableDefinition::new("segments");
const OPEN: TableDefinition<SegmentKey, ()> = TableDefinition::new("open");
const STREAMS: TableDefinition<&str, u64> = TableDefinition::new("streams");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Segments being deleted: out of `segments`, file perhaps still on disk.
const DELETING: TableDefinition<SegmentKey, ()> = TableDefinition::new("deleting");
/// Per stream: (bytes, segments) of what `segments` holds.
const STATS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("stats");

const SCHEMA_VERSION: u64 = 1;

/// A data directory's index.
pub struct Index {
    /// `None` only between a failed reopen and the next attempt.
    db: RwLock<Option<Database>>,
    /// An I/O error hit the database: redb fails every later operation until it is reopened.
    failed: AtomicBool,
    path: PathBuf,
}

/// The open database, borrowed for one operation. Holding it keeps a reopen from swapping the
/// database out from under a transaction.
struct Db<'a>(RwLockReadGuard<'a, Option<Database>>);

impl Deref for Db<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        // `Index::db` hands out a `Db` only when the database is open.
        self.0.as_ref().expect("checked by Index::db")
    }
}

/// Whether redb's error means its file backend latched an I/O error (`ENOSPC`, `EIO`).
fn is_io(e: &StoreError) -> bool {
    matches!(e, StoreError::Index { source, .. } if matches!(**source, redb::Error::Io(_) | redb::Error::PreviousIo))
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

fn err(path: &Path) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Index {
        path: path.to_owned(),
        source: Box::new(e),
    }
}

macro_rules! tr {
    ($path:expr, $e:expr) => {
        $e.map_err(|e| err($path)(e.into()))?
    };
}

impl Index {
    /// Opens (creating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, StoreError> {
        let db = tr!(path, Database::create(path));
        let index = Index {
            db: RwLock::new(Some(db)),
            failed: AtomicBool::new(false),
            path: path.to_owned(),
        };
        let db = index.db()?;
        let txn = tr!(path, db.begin_write());
        {
            tr!(path, txn.open_table(SEGMENTS));
            tr!(path, txn.open_table(OPEN));
            tr!(path, txn.open_table(STREAMS));
            tr!(path, txn.open_table(DELETING));
            tr!(path, txn.open_table(STATS));
            let mut meta = tr!(path, txn.open_table(META));
            let version = tr!(path, meta.get("schema_version")).map(|v| v.value());
            match version {
                None => {
                    tr!(path, meta.insert("schema_version", SCHEMA_VERSION));
                }
                Some(SCHEMA_VERSION) => {}
                Some(v) => {
                    return Err(StoreError::CorruptEntry {
                        path: path.to_owned(),
                        key: "meta/schema_version".into(),
                        detail: format!("schema version {v}, this build understands {SCHEMA_VERSION}"),
                    });
                }
            }
        }
        tr!(path, txn.commit());
        drop(db);
        Ok(index)
    }

    /// The database for one operation, reopened first if an earlier operation hit an I/O error.
    fn db(&self) -> Result<Db<'_>, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            self.reopen();
        }
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(StoreError::Disk {
                path: self.path.clone(),
                problem:
                    "index is closed after an I/O error and could not be reopened yet (is the disk full or failing?)"
                        .into(),
            });
        }
        Ok(Db(guard))
    }

    /// redb latches a commit's I/O error (a full disk, say) and refuses everything after it until
    /// the database is reopened; reopening rolls back to the last durable commit, which is what
    /// the index must hold anyway. Without this one full disk would stop indexing (and
    /// retention, which deletes through the index) until a restart.
    fn reopen(&self) {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        if !self.failed.load(Ordering::Acquire) {
            return; // another thread reopened it while this one waited
        }
        // The old handle must be gone first: redb locks its file.
        *guard = None;
        match Database::create(&self.path) {
            Ok(db) => {
                *guard = Some(db);
                self.failed.store(false, Ordering::Release);
                tracing::warn!(index = %self.path.display(), "index reopened after an I/O error");
            }
            Err(e) => tracing::error!(index = %self.path.display(), "cannot reopen the index: {e}"),
        }
    }

    /// Runs `body` in one write transaction and commits it (one fsync). An I/O error on the way
    /// marks the database for reopening at the next operation.
    fn write<T>(
        &self,
        body: impl FnOnce(&redb::WriteTransaction, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let p = &self.path;
        let result = (|| {
            let db = self.db()?;
            let txn = tr!(p, db.begin_write());
            let out = body(&txn, p)?;
            tr!(p, txn.commit());
            Ok(out)
        })();
        if let Err(e) = &result
            && is_io(e)
        {
            self.failed.store(true, Ordering::Release);
        }
        result
    }

    /// Runs `body` in one read transaction (a consistent snapshot of the index).
    fn read<T>(
        &self,
        body: impl FnOnce(&redb::ReadTransaction, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = tr!(p, db.begin_read());
        body(&txn, p)
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or replaces entries in one durable transaction (one fsync).
    pub fn put(&self, records: &[SegmentRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(|txn, p| {
            {
                let mut segments = tr!(p, txn.open_table(SEGMENTS));
                let mut open = tr!(p, txn.open_table(OPEN));
                let mut streams = tr!(p, txn.open_table(STREAMS));
                let mut meta = tr!(p, txn.open_table(META));
                let mut stats = tr!(p, txn.open_table(STATS));
                let mut max_len = tr!(p, meta.get("max_segment_us")).map_or(0, |v| v.value());
                for r in records {
                    let key = stream_key(&r.stream);
                    let k = (key.as_str(), r.start.as_micros(), r.seq);
                    let old = tr!(p, segments.insert(k, r.encode().as_slice())).map(|v| {
                        SegmentRecord::decode_summary(r.stream.clone(), r.start, r.seq, v.value())
                            .map_or(0, |o| o.bytes)
                    });
                    let (bytes, count) = tr!(p, stats.get(key.as_str())).map_or((0, 0), |v| v.value());
                    let (bytes, count) = match old {
                        Some(old_bytes) => (bytes.saturating_sub(old_bytes) + r.bytes, count),
                        None => (bytes + r.bytes, count + 1),
                    };
                    tr!(p, stats.insert(key.as_str(), (bytes, count)));
                    if r.closed {
                        tr!(p, open.remove(k));
                    } else {
                        tr!(p, open.insert(k, ()));
                    }
                    let seq = tr!(p, streams.get(key.as_str())).map_or(0, |v| v.value());
                    if r.seq > seq {
                        tr!(p, streams.insert(key.as_str(), r.seq));
                    }
                    max_len = max_len.max(r.end.micros_since(r.start).max(0) as u64);
                }
                tr!(p, meta.insert("max_segment_us", max_len));
            }
            Ok(())
        })
    }

    /// First step of a crash-safe delete: moves the entries out of `segments` into `deleting` in
    /// one durable transaction, so nothing indexed points at the files once they are unlinked.
    /// Returns the records moved (entries already gone are skipped).
    pub fn begin_delete(&self, keys: &[(StreamId, WallTime, u64)]) -> Result<Vec<SegmentRecord>, StoreError> {
        self.write(|txn, p| {
            let mut moved = Vec::new();
            {
                let mut segments = tr!(p, txn.open_table(SEGMENTS));
                let mut open = tr!(p, txn.open_table(OPEN));
                let mut deleting = tr!(p, txn.open_table(DELETING));
                let mut stats = tr!(p, txn.open_table(STATS));
                for (stream, start, seq) in keys {
                    let key = stream_key(stream);
                    let k = (key.as_str(), start.as_micros(), *seq);
                    let old = tr!(p, segments.remove(k))
                        .map(|v| SegmentRecord::decode_summary(stream.clone(), *start, *seq, v.value()));
                    let Some(Ok(r)) = old else { continue };
                    tr!(p, open.remove(k));
                    tr!(p, deleting.insert(k, ()));
                    let (bytes, count) = tr!(p, stats.get(key.as_str())).map_or((0, 0), |v| v.value());
                    tr!(
                        p,
                        stats.insert(key.as_str(), (bytes.saturating_sub(r.bytes), count.saturating_sub(1)))
                    );
                    moved.push(r);
                }
            }
            Ok(moved)
        })
    }

    /// Last step of a crash-safe delete: the files are gone, forget them.
    pub fn finish_delete(&self, keys: &[(StreamId, WallTime, u64)]) -> Result<(), StoreError> {
        self.write(|txn, p| {
            {
                let mut deleting = tr!(p, txn.open_table(DELETING));
                for (stream, start, seq) in keys {
                    let key = stream_key(stream);
                    tr!(p, deleting.remove((key.as_str(), start.as_micros(), *seq)));
                }
            }
            Ok(())
        })
    }

    /// Deletes interrupted by a crash: (stream, start, seq) whose files may still exist.
    pub fn deleting(&self) -> Result<Vec<(StreamId, WallTime, u64)>, StoreError> {
        self.read(|txn, p| {
            let table = tr!(p, txn.open_table(DELETING));
            let mut out = Vec::new();
            for item in tr!(p, table.iter()) {
                let (k, _) = tr!(p, item);
                let (key, start, seq) = k.value();
                if let Some(stream) = parse_stream_key(key) {
                    out.push((stream, WallTime::from_micros(start), seq));
                }
            }
            Ok(out)
        })
    }

    /// Per stream: bytes and number of segments indexed.
    pub fn stream_stats(&self) -> Result<Vec<(StreamId, u64, u64)>, StoreError> {
        self.read(|txn, p| {
            let table = tr!(p, txn.open_table(STATS));
            let mut out = Vec::new();
            for item in tr!(p, table.iter()) {
                let (k, v) = tr!(p, item);
                if let Some(stream) = parse_stream_key(k.value()) {
                    let (bytes, count) = v.value();
                    out.push((stream, bytes, count));
                }
            }
            Ok(out)
        })
    }

    /// Up to `limit` segments of `stream` in start order (summaries, without key-frame
    /// tables), after the segment `after` (start, seq) if given, else from the oldest.
    pub fn oldest(
        &self,
        stream: &StreamId,
        after: Option<(WallTime, u64)>,
        limit: usize,
    ) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let table = tr!(p, txn.open_table(SEGMENTS));
            let key = stream_key(stream);
            let mut out = Vec::new();
            let from = after.map_or((i64::MIN, 0), |(t, s)| (t.as_micros(), s));
            let range = (
                std::ops::Bound::Excluded((key.as_str(), from.0, from.1)),
                std::ops::Bound::Included((key.as_str(), i64::MAX, u64::MAX)),
            );
            let range = if after.is_none() {
                (std::ops::Bound::Included((key.as_str(), i64::MIN, 0)), range.1)
            } else {
                range
            };
            for item in tr!(p, table.range::<SegmentKey>(range)) {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = tr!(p, item);
                out.push(self.decode_with(k.value(), v.value(), false)?);
            }
            Ok(out)
        })
    }

    /// Removes entries (by stream, start and sequence number) in one durable transaction.
    pub fn remove(&self, keys: &[(StreamId, WallTime, u64)]) -> Result<(), StoreError> {
        self.write(|txn, p| {
            {
                let mut segments = tr!(p, txn.open_table(SEGMENTS));
                let mut open = tr!(p, txn.open_table(OPEN));
                let mut stats = tr!(p, txn.open_table(STATS));
                for (stream, start, seq) in keys {
                    let key = stream_key(stream);
                    let k = (key.as_str(), start.as_micros(), *seq);
                    let old = tr!(p, segments.remove(k))
                        .map(|v| SegmentRecord::decode_summary(stream.clone(), *start, *seq, v.value()));
                    tr!(p, open.remove(k));
                    if let Some(Ok(r)) = old {
                        let (bytes, count) = tr!(p, stats.get(key.as_str())).map_or((0, 0), |v| v.value());
                        tr!(
                            p,
                            stats.insert(key.as_str(), (bytes.saturating_sub(r.bytes), count.saturating_sub(1)))
                        );
                    }
                }
            }
            Ok(())
        })
    }

    fn decode(&self, k: SegmentKey<'_>, v: &[u8]) -> Result<SegmentRecord, StoreError> {
        self.decode_with(k, v, true)
    }

    fn decode_with(&self, k: SegmentKey<'_>, v: &[u8], table: bool) -> Result<SegmentRecord, StoreError> {
        let corrupt = |detail: String| StoreError::CorruptEntry {
            path: self.path.clone(),
            key: format!("{}@{}#{}", k.0, k.1, k.2),
            detail,
        };
        let stream = parse_stream_key(k.0).ok_or_else(|| corrupt("bad stream key".into()))?;
        let start = WallTime::from_micros(k.1);
        if table {
            SegmentRecord::decode(stream, start, k.2, v).map_err(corrupt)
        } else {
            SegmentRecord::decode_summary(stream, start, k.2, v).map_err(corrupt)
        }
    }

    /// Segments of `stream` overlapping `[from, to)`, in start order.
    pub fn segments(&self, stream: &StreamId, from: WallTime, to: WallTime) -> Result<Vec<SegmentRecord>, StoreError> {
        self.segments_with(stream, from, to, true)
    }

    /// Like [`Index::segments`] without the key-frame tables (left empty): for listings.
    pub fn segment_summaries(
        &self,
        stream: &StreamId,
        from: WallTime,
        to: WallTime,
    ) -> Result<Vec<SegmentRecord>, StoreError> {
        self.segments_with(stream, from, to, false)
    }

    fn segments_with(
        &self,
        stream: &StreamId,
        from: WallTime,
        to: WallTime,
        with_table: bool,
    ) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let max_len = {
                let meta = tr!(p, txn.open_table(META));
                tr!(p, meta.get("max_segment_us")).map_or(0, |v| v.value())
            };
            let table = tr!(p, txn.open_table(SEGMENTS));
            let key = stream_key(stream);
            let lo = from
                .as_micros()
                .saturating_sub(i64::try_from(max_len).unwrap_or(i64::MAX));
            let mut out = Vec::new();
            for item in tr!(p, table.range((key.as_str(), lo, 0)..(key.as_str(), to.as_micros(), 0))) {
                let (k, v) = tr!(p, item);
                let r = self.decode_with(k.value(), v.value(), with_table)?;
                if r.end > from && r.start < to {
                    out.push(r);
                }
            }
            Ok(out)
        })
    }

    /// Every segment still marked open (being written when the process stopped).
    pub fn open_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let open = tr!(p, txn.open_table(OPEN));
            let segments = tr!(p, txn.open_table(SEGMENTS));
            let mut out = Vec::new();
            for item in tr!(p, open.iter()) {
                let (k, _) = tr!(p, item);
                let k = k.value();
                if let Some(v) = tr!(p, segments.get(k)) {
                    out.push(self.decode(k, v.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Every segment of every stream, in key order (rebuild comparisons, tests and tools).
    pub fn all_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let table = tr!(p, txn.open_table(SEGMENTS));
            let mut out = Vec::new();
            for item in tr!(p, table.iter()) {
                let (k, v) = tr!(p, item);
                out.push(self.decode(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Whether an entry exists.
    pub fn contains(&self, stream: &StreamId, start: WallTime, seq: u64) -> Result<bool, StoreError> {
        self.read(|txn, p| {
            let table = tr!(p, txn.open_table(SEGMENTS));
            let key = stream_key(stream);
            Ok(tr!(p, table.get((key.as_str(), start.as_micros(), seq))).is_some())
        })
    }

    /// The latest segment of `stream` (the one that starts last).
    pub fn last_segment(&self, stream: &StreamId) -> Result<Option<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let table = tr!(p, txn.open_table(SEGMENTS));
            let key = stream_key(stream);
            let mut range = tr!(
                p,
                table.range((key.as_str(), i64::MIN, 0)..=(key.as_str(), i64::MAX, u64::MAX))
            );
            match range.next_back() {
                Some(item) => {
                    let (k, v) = tr!(p, item);
                    Ok(Some(self.decode(k.value(), v.value())?))
                }
                None => Ok(None),
            }
        })
    }

    /// Every stream with its highest sequence number.
    pub fn streams(&self) -> Result<Vec<(StreamId, u64)>, StoreError> {
        self.read(|txn, p| {
            let table = tr!(p, txn.open_table(STREAMS));
            let mut out = Vec::new();
            for item in tr!(p, table.iter()) {
                let (k, v) = tr!(p, item);
                if let Some(s) = parse_stream_key(k.value()) {
                    out.push((s, v.value()));
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use media::WallTime;

    use super::Index;
    use crate::record::tests::sample;

    /// A commit that meets a full file system fails; once space is back the index reopens
    /// itself and works, holding everything committed before the failure.
    #[test]
    fn a_full_disk_fails_a_commit_and_the_index_recovers_when_space_returns() {
        let fs = testkit::SmallFs::new(24);
        fs.clear("index-enospc");
        let root = fs.path.join("index-enospc");
        std::fs::create_dir_all(&root).unwrap();
        let index = Index::open(&root.join("index.redb")).unwrap();
        let record = |seq: u64| {
            let mut r = sample(600);
            r.seq = seq;
            r.start = WallTime::from_micros(1_795_420_800_000_000 + seq as i64 * 60_000_000);
            r
        };
        let filler = testkit::fill(&root.join("filler"));
        // Commits go on while redb finds free pages in its file, then one fails.
        let mut committed = 0;
        let err = loop {
            let batch: Vec<_> = (committed..committed + 20).map(record).collect();
            match index.put(&batch) {
                Ok(()) => committed += 20,
                Err(e) => break e,
            }
            assert!(committed < 100_000, "the index never ran out of space");
        };
        assert!(err.to_string().contains("No space left on device"), "{err}");
        drop(filler);
        std::fs::remove_file(root.join("filler")).unwrap();
        index.put(&[record(committed)]).unwrap();
        let all = index.all_segments().unwrap();
        assert_eq!(all.len() as u64, committed + 1);
        assert!(all.iter().zip(0..).all(|(r, i)| r.seq == i && *r == record(i)));
        drop(index);
        let _ = std::fs::remove_dir_all(&root);
    }
}
