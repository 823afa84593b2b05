//! The index: one redb database per data directory.
//!
//! redb rather than sled (the card's choice): sled's last stable release is from 2021 and its
//! 1.0 rewrite was abandoned, while redb is maintained, has a stable file format and gives
//! ACID transactions with a single fsync per commit (see `docs/architecture.md`).
//!
//! Tables (schema 2, see `docs/storage.md`):
//! * `hours`: `(stream key, UTC hour)` → the summaries of the stream's closed segments that
//!   start in that hour (`crate::hour_block`, ~10 bytes a segment). A day of a stream is 24
//!   values: listing it or planning an hour reads a few pages. Key-frame tables are not kept:
//!   they are in the segment files' sample tables (`crate::sample_table`).
//! * `open_segments`: `(stream key, start µs, seq)` → the whole record of each segment still
//!   being written (rewritten every flush); closing one moves it into its hour in the same
//!   transaction. Start-up recovery finds them here.
//! * `streams`: stream key → highest sequence number used.
//! * `deleting`: segments being deleted (out of the index, files perhaps still on disk).
//! * `stats`: per stream, the bytes and number of segments indexed.
//! * `meta`: `max_segment_us` (longest segment seen, bounds the range scan) and the schema
//!   version.
//!
//! An index of schema 1 (every segment's whole record in `segments`, the open ones' keys in
//! `open`) is migrated at open, in transactions of [`MIGRATION_BATCH`] entries that each move
//! their entries whole, so a crash leaves every entry in exactly one table and the next open
//! goes on. The index is a cache of the segment files: `sharpeye store rebuild` regenerates it.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use media::{StreamId, WallTime};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::StoreError;
use crate::hour_block::{self, hour_of};
use crate::layout::{parse_stream_key, stream_key};
use crate::record::SegmentRecord;

type SegmentKey<'a> = (&'a str, i64, u64);
type HourKey<'a> = (&'a str, i64);

const HOURS: TableDefinition<HourKey, &[u8]> = TableDefinition::new("hours");
const OPEN_SEGMENTS: TableDefinition<SegmentKey, &[u8]> = TableDefinition::new("open_segments");
const STREAMS: TableDefinition<&str, u64> = TableDefinition::new("streams");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Segments being deleted: out of the index, file perhaps still on disk.
const DELETING: TableDefinition<SegmentKey, ()> = TableDefinition::new("deleting");
/// Per stream: (bytes, segments) of what the index holds.
const STATS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("stats");
/// Schema 1: every segment's whole record.
const V1_SEGMENTS: TableDefinition<SegmentKey, &[u8]> = TableDefinition::new("segments");
/// Schema 1: the keys of open segments.
const V1_OPEN: TableDefinition<SegmentKey, ()> = TableDefinition::new("open");

const SCHEMA_VERSION: u64 = 2;
/// `meta` key: every closed segment's file has its sample table (set for a new index, and when
/// the backfill has been through; absent after a migration from schema 1).
const TABLES_COMPLETE: &str = "tables_complete";
/// Entries a migration transaction moves: big enough to go at disk speed, small enough that a
/// transaction's pages stay a few MB.
pub const MIGRATION_BATCH: usize = 20_000;

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
    /// Opens (creating if needed) the index at `path`, migrating one of schema 1 first.
    pub fn open(path: &Path) -> Result<Index, StoreError> {
        let (index, version) = Index::create(path)?;
        match version {
            SCHEMA_VERSION => {}
            1 => index.migrate_v1(usize::MAX)?,
            v => {
                return Err(StoreError::CorruptEntry {
                    path: path.to_owned(),
                    key: "meta/schema_version".into(),
                    detail: format!(
                        "schema version {v}, newer than this build understands ({SCHEMA_VERSION}): run the sharpeye release that wrote it, or `sharpeye store rebuild --data DIR` to index the segment files again with this one"
                    ),
                });
            }
        }
        Ok(index)
    }

    /// Moves a schema 1 index's entries into schema 2's tables, [`MIGRATION_BATCH`] at a time,
    /// each transaction whole; then drops the old tables, sets the version and compacts the
    /// file. An entry that cannot be decoded is reported and left out (`store rebuild` indexes
    /// its file again). Segment files are not touched.
    fn migrate_v1(&self, max_batches: usize) -> Result<(), StoreError> {
        let total = self.read(|txn, p| {
            let v1 = tr!(p, txn.open_table(V1_SEGMENTS));
            Ok(tr!(p, v1.len()))
        })?;
        tracing::info!(index = %self.path.display(), entries = total, "migrating the index to schema 2 (stream-hours; key-frame tables are read from the segment files)");
        let (mut moved, mut bad) = (0u64, 0u64);
        for batch in 0.. {
            if batch >= max_batches {
                return Ok(());
            }
            let (n, b) = self.write(|txn, p| {
                let mut v1 = tr!(p, txn.open_table(V1_SEGMENTS));
                let mut v1_open = tr!(p, txn.open_table(V1_OPEN));
                let mut open = tr!(p, txn.open_table(OPEN_SEGMENTS));
                let mut blocks = Blocks::new(tr!(p, txn.open_table(HOURS)), p);
                let batch: Vec<(String, i64, u64, Vec<u8>)> = {
                    let mut out = Vec::with_capacity(MIGRATION_BATCH);
                    for item in tr!(p, v1.iter()).take(MIGRATION_BATCH) {
                        let (k, v) = tr!(p, item);
                        let (key, start, seq) = k.value();
                        out.push((key.to_owned(), start, seq, v.value().to_vec()));
                    }
                    out
                };
                let mut bad = 0;
                for (key, start, seq, v) in &batch {
                    let k = (key.as_str(), *start, *seq);
                    tr!(p, v1.remove(k));
                    tr!(p, v1_open.remove(k));
                    match self.decode(k, v) {
                        Ok(r) if r.closed => {
                            blocks.upsert(key, &r)?;
                        }
                        Ok(_) => {
                            tr!(p, open.insert(k, v.as_slice()));
                        }
                        Err(e) => {
                            tracing::warn!(index = %p.display(), "index entry left out in migration (`sharpeye store rebuild` indexes its file again): {e}");
                            bad += 1;
                        }
                    }
                }
                blocks.flush()?;
                Ok((batch.len(), bad))
            })?;
            moved += n as u64;
            bad += b;
            tracing::info!(index = %self.path.display(), moved, of = total, "migrating the index");
            if n < MIGRATION_BATCH {
                break;
            }
        }
        self.write(|txn, p| {
            tr!(p, txn.delete_table(V1_SEGMENTS));
            tr!(p, txn.delete_table(V1_OPEN));
            let mut meta = tr!(p, txn.open_table(META));
            tr!(p, meta.insert("schema_version", SCHEMA_VERSION));
            Ok(())
        })?;
        {
            let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
            if let Some(db) = guard.as_mut()
                && let Err(e) = db.compact()
            {
                tracing::warn!(index = %self.path.display(), "index not compacted after its migration: {e}");
            }
        }
        tracing::info!(index = %self.path.display(), moved, left_out = bad, "index migrated to schema 2");
        Ok(())
    }

    /// The database at `path` (created if needed) with schema 2's tables, and the schema
    /// version it holds (a new one is schema 2, its segments' tables complete).
    fn create(path: &Path) -> Result<(Index, u64), StoreError> {
        let db = tr!(path, Database::create(path));
        let index = Index {
            db: RwLock::new(Some(db)),
            failed: AtomicBool::new(false),
            path: path.to_owned(),
        };
        let version = index.write(|txn, p| {
            tr!(p, txn.open_table(HOURS));
            tr!(p, txn.open_table(OPEN_SEGMENTS));
            tr!(p, txn.open_table(STREAMS));
            tr!(p, txn.open_table(DELETING));
            tr!(p, txn.open_table(STATS));
            let mut meta = tr!(p, txn.open_table(META));
            let version = tr!(p, meta.get("schema_version")).map(|v| v.value());
            if version.is_none() {
                tr!(p, meta.insert("schema_version", SCHEMA_VERSION));
                // A new index: every segment it will hold gets its table as it closes.
                tr!(p, meta.insert(TABLES_COMPLETE, 1));
            }
            Ok(version.unwrap_or(SCHEMA_VERSION))
        })?;
        Ok((index, version))
    }

    /// Opens a schema 1 index and runs at most `batches` of its migration's transactions, as
    /// a process killed mid-migration would have: for tests of the migration's crash safety.
    #[doc(hidden)]
    pub fn open_migrating_at_most(path: &Path, batches: usize) -> Result<(), StoreError> {
        Index::create(path)?.0.migrate_v1(batches)
    }

    /// Whether every closed segment's file is known to have its sample table (nothing for the
    /// backfill to do).
    pub fn tables_complete(&self) -> Result<bool, StoreError> {
        self.read(|txn, p| {
            let meta = tr!(p, txn.open_table(META));
            Ok(tr!(p, meta.get(TABLES_COMPLETE)).is_some_and(|v| v.value() == 1))
        })
    }

    /// Records that the backfill went through every closed segment.
    pub fn set_tables_complete(&self) -> Result<(), StoreError> {
        self.write(|txn, p| {
            let mut meta = tr!(p, txn.open_table(META));
            tr!(p, meta.insert(TABLES_COMPLETE, 1));
            Ok(())
        })
    }

    /// Writes a schema 1 index of `records` at `path` (as releases before schema 2 wrote it):
    /// for tests and tools that check the migration.
    #[doc(hidden)]
    pub fn write_schema_v1(path: &Path, records: &[SegmentRecord]) -> Result<(), StoreError> {
        let db = tr!(path, Database::create(path));
        let txn = tr!(path, db.begin_write());
        {
            let mut segments = tr!(path, txn.open_table(V1_SEGMENTS));
            let mut open = tr!(path, txn.open_table(V1_OPEN));
            let mut streams = tr!(path, txn.open_table(STREAMS));
            let mut stats = tr!(path, txn.open_table(STATS));
            let mut meta = tr!(path, txn.open_table(META));
            tr!(path, txn.open_table(DELETING));
            let mut max_len = 0u64;
            for r in records {
                let key = stream_key(&r.stream);
                let k = (key.as_str(), r.start.as_micros(), r.seq);
                tr!(path, segments.insert(k, r.encode().as_slice()));
                if !r.closed {
                    tr!(path, open.insert(k, ()));
                }
                let seq = tr!(path, streams.get(key.as_str())).map_or(0, |v| v.value());
                tr!(path, streams.insert(key.as_str(), seq.max(r.seq)));
                let (bytes, count) = tr!(path, stats.get(key.as_str())).map_or((0, 0), |v| v.value());
                tr!(path, stats.insert(key.as_str(), (bytes + r.bytes, count + 1)));
                max_len = max_len.max(r.end.micros_since(r.start).max(0) as u64);
            }
            tr!(path, meta.insert("max_segment_us", max_len));
            tr!(path, meta.insert("schema_version", 1));
        }
        tr!(path, txn.commit());
        Ok(())
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

    /// Inserts or replaces entries in one durable transaction (one fsync): an open segment's
    /// whole record in `open_segments`; a closed one's summary in its stream-hour (out of
    /// `open_segments` in the same transaction, as it closes).
    pub fn put(&self, records: &[SegmentRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(|txn, p| {
            {
                let mut open = tr!(p, txn.open_table(OPEN_SEGMENTS));
                let mut blocks = Blocks::new(tr!(p, txn.open_table(HOURS)), p);
                let mut streams = tr!(p, txn.open_table(STREAMS));
                let mut meta = tr!(p, txn.open_table(META));
                let mut stats = tr!(p, txn.open_table(STATS));
                let mut max_len = tr!(p, meta.get("max_segment_us")).map_or(0, |v| v.value());
                for r in records {
                    let key = stream_key(&r.stream);
                    let k = (key.as_str(), r.start.as_micros(), r.seq);
                    let was_open = tr!(p, open.remove(k)).map(|v| summary_bytes(r, v.value()));
                    let was_closed = if r.closed {
                        blocks.upsert(&key, r)?
                    } else {
                        tr!(p, open.insert(k, r.encode().as_slice()));
                        None
                    };
                    let old = was_open.or(was_closed);
                    let (bytes, count) = tr!(p, stats.get(key.as_str())).map_or((0, 0), |v| v.value());
                    let (bytes, count) = match old {
                        Some(old_bytes) => (bytes.saturating_sub(old_bytes) + r.bytes, count),
                        None => (bytes + r.bytes, count + 1),
                    };
                    tr!(p, stats.insert(key.as_str(), (bytes, count)));
                    let seq = tr!(p, streams.get(key.as_str())).map_or(0, |v| v.value());
                    if r.seq > seq {
                        tr!(p, streams.insert(key.as_str(), r.seq));
                    }
                    max_len = max_len.max(r.end.micros_since(r.start).max(0) as u64);
                }
                blocks.flush()?;
                tr!(p, meta.insert("max_segment_us", max_len));
            }
            Ok(())
        })
    }

    /// Takes the entries out of `open_segments` and their hours, adjusting the per-stream
    /// totals; `deleting` (if given) records them as being deleted. The records taken.
    fn take(
        txn: &redb::WriteTransaction,
        p: &Path,
        keys: &[(StreamId, WallTime, u64)],
        mark_deleting: bool,
    ) -> Result<Vec<SegmentRecord>, StoreError> {
        let mut moved = Vec::new();
        let mut open = tr!(p, txn.open_table(OPEN_SEGMENTS));
        let mut blocks = Blocks::new(tr!(p, txn.open_table(HOURS)), p);
        let mut deleting = tr!(p, txn.open_table(DELETING));
        let mut stats = tr!(p, txn.open_table(STATS));
        for (stream, start, seq) in keys {
            let key = stream_key(stream);
            let k = (key.as_str(), start.as_micros(), *seq);
            let found = match tr!(p, open.remove(k)) {
                Some(v) => SegmentRecord::decode_summary(stream.clone(), *start, *seq, v.value()).ok(),
                None => blocks.remove(&key, stream, *start, *seq)?,
            };
            let Some(r) = found else { continue };
            if mark_deleting {
                tr!(p, deleting.insert(k, ()));
            }
            let (bytes, count) = tr!(p, stats.get(key.as_str())).map_or((0, 0), |v| v.value());
            tr!(
                p,
                stats.insert(key.as_str(), (bytes.saturating_sub(r.bytes), count.saturating_sub(1)))
            );
            moved.push(r);
        }
        blocks.flush()?;
        Ok(moved)
    }

    /// First step of a crash-safe delete: moves the entries out of the index into `deleting` in
    /// one durable transaction, so nothing indexed points at the files once they are unlinked.
    /// Returns the records moved (entries already gone are skipped).
    pub fn begin_delete(&self, keys: &[(StreamId, WallTime, u64)]) -> Result<Vec<SegmentRecord>, StoreError> {
        self.write(|txn, p| Self::take(txn, p, keys, true))
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
        let after_key = after.map(|(t, s)| (t.as_micros(), s));
        self.read(|txn, p| {
            let key = stream_key(stream);
            let hours = tr!(p, txn.open_table(HOURS));
            let from_hour = after.map_or(i64::MIN, |(t, _)| hour_of(t));
            let mut out = Vec::new();
            for item in tr!(p, hours.range((key.as_str(), from_hour)..=(key.as_str(), i64::MAX))) {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = tr!(p, item);
                for r in self.decode_hour(stream, k.value().1, v.value())? {
                    if after_key.is_none_or(|a| (r.start.as_micros(), r.seq) > a) && out.len() < limit {
                        out.push(r);
                    }
                }
            }
            let open = tr!(p, txn.open_table(OPEN_SEGMENTS));
            for item in tr!(
                p,
                open.range((key.as_str(), i64::MIN, 0)..=(key.as_str(), i64::MAX, u64::MAX))
            ) {
                let (k, v) = tr!(p, item);
                let k = k.value();
                if after_key.is_none_or(|a| (k.1, k.2) > a) {
                    out.push(self.decode_with(k, v.value(), false)?);
                }
            }
            out.sort_by_key(|r| (r.start, r.seq));
            out.truncate(limit);
            Ok(out)
        })
    }

    /// Removes entries (by stream, start and sequence number) in one durable transaction.
    pub fn remove(&self, keys: &[(StreamId, WallTime, u64)]) -> Result<(), StoreError> {
        self.write(|txn, p| Self::take(txn, p, keys, false).map(|_| ()))
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

    fn decode_hour(&self, stream: &StreamId, hour: i64, v: &[u8]) -> Result<Vec<SegmentRecord>, StoreError> {
        hour_block::decode(stream, hour, v).map_err(|detail| StoreError::CorruptEntry {
            path: self.path.clone(),
            key: format!("hours/{stream}@{hour}"),
            detail,
        })
    }

    /// Segments of `stream` overlapping `[from, to)`, in start order: closed ones as their
    /// summaries (their key-frame tables are in their files: `crate::playback::segment_gops`),
    /// open ones whole.
    pub fn segments(&self, stream: &StreamId, from: WallTime, to: WallTime) -> Result<Vec<SegmentRecord>, StoreError> {
        self.segments_with(stream, from, to, true)
    }

    /// Like [`Index::segments`] with open segments' key-frame tables left out too: for listings.
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
            let key = stream_key(stream);
            let lo = from
                .as_micros()
                .saturating_sub(i64::try_from(max_len).unwrap_or(i64::MAX));
            let mut out = Vec::new();
            let hours = tr!(p, txn.open_table(HOURS));
            let (first, last) = (
                hour_of(WallTime::from_micros(lo)),
                hour_of(WallTime::from_micros(to.as_micros().saturating_sub(1))),
            );
            for item in tr!(p, hours.range((key.as_str(), first)..=(key.as_str(), last))) {
                let (k, v) = tr!(p, item);
                for r in self.decode_hour(stream, k.value().1, v.value())? {
                    if r.end > from && r.start < to {
                        out.push(r);
                    }
                }
            }
            let open = tr!(p, txn.open_table(OPEN_SEGMENTS));
            for item in tr!(p, open.range((key.as_str(), lo, 0)..(key.as_str(), to.as_micros(), 0))) {
                let (k, v) = tr!(p, item);
                let r = self.decode_with(k.value(), v.value(), with_table)?;
                if r.end > from && r.start < to {
                    out.push(r);
                }
            }
            out.sort_by_key(|r| (r.start, r.seq));
            Ok(out)
        })
    }

    /// Every segment still marked open (being written when the process stopped).
    pub fn open_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let open = tr!(p, txn.open_table(OPEN_SEGMENTS));
            let mut out = Vec::new();
            for item in tr!(p, open.iter()) {
                let (k, v) = tr!(p, item);
                out.push(self.decode(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Every segment of every stream, in key order (stream, start, seq): closed ones as
    /// summaries (rebuild comparisons, tests and tools).
    pub fn all_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let mut out: Vec<(String, SegmentRecord)> = Vec::new();
            let hours = tr!(p, txn.open_table(HOURS));
            for item in tr!(p, hours.iter()) {
                let (k, v) = tr!(p, item);
                let (key, hour) = k.value();
                let stream = parse_stream_key(key).ok_or_else(|| StoreError::CorruptEntry {
                    path: self.path.clone(),
                    key: format!("hours/{key}@{hour}"),
                    detail: "bad stream key".into(),
                })?;
                out.extend(
                    self.decode_hour(&stream, hour, v.value())?
                        .into_iter()
                        .map(|r| (key.to_owned(), r)),
                );
            }
            let open = tr!(p, txn.open_table(OPEN_SEGMENTS));
            for item in tr!(p, open.iter()) {
                let (k, v) = tr!(p, item);
                out.push((k.value().0.to_owned(), self.decode(k.value(), v.value())?));
            }
            out.sort_by(|a, b| (&a.0, a.1.start, a.1.seq).cmp(&(&b.0, b.1.start, b.1.seq)));
            Ok(out.into_iter().map(|(_, r)| r).collect())
        })
    }

    /// Whether an entry exists.
    pub fn contains(&self, stream: &StreamId, start: WallTime, seq: u64) -> Result<bool, StoreError> {
        self.read(|txn, p| {
            let key = stream_key(stream);
            let open = tr!(p, txn.open_table(OPEN_SEGMENTS));
            if tr!(p, open.get((key.as_str(), start.as_micros(), seq))).is_some() {
                return Ok(true);
            }
            let hours = tr!(p, txn.open_table(HOURS));
            let hour = hour_of(start);
            Ok(match tr!(p, hours.get((key.as_str(), hour))) {
                Some(v) => self
                    .decode_hour(stream, hour, v.value())?
                    .iter()
                    .any(|r| r.start == start && r.seq == seq),
                None => false,
            })
        })
    }

    /// The latest segment of `stream` (the one that starts last).
    pub fn last_segment(&self, stream: &StreamId) -> Result<Option<SegmentRecord>, StoreError> {
        self.read(|txn, p| {
            let key = stream_key(stream);
            let hours = tr!(p, txn.open_table(HOURS));
            let mut last = None;
            if let Some(item) = tr!(p, hours.range((key.as_str(), i64::MIN)..=(key.as_str(), i64::MAX))).next_back() {
                let (k, v) = tr!(p, item);
                last = self.decode_hour(stream, k.value().1, v.value())?.pop();
            }
            let open = tr!(p, txn.open_table(OPEN_SEGMENTS));
            if let Some(item) = tr!(
                p,
                open.range((key.as_str(), i64::MIN, 0)..=(key.as_str(), i64::MAX, u64::MAX))
            )
            .next_back()
            {
                let (k, v) = tr!(p, item);
                let r = self.decode(k.value(), v.value())?;
                if last
                    .as_ref()
                    .is_none_or(|l: &SegmentRecord| (r.start, r.seq) > (l.start, l.seq))
                {
                    last = Some(r);
                }
            }
            Ok(last)
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

/// The bytes of the record `v` encodes for `r`'s key (0 when it cannot be read).
fn summary_bytes(r: &SegmentRecord, v: &[u8]) -> u64 {
    SegmentRecord::decode_summary(r.stream.clone(), r.start, r.seq, v).map_or(0, |o| o.bytes)
}

/// The stream-hours one write transaction touches, each decoded once and written back once
/// (an hour holds ~60 segments: re-encoding it per segment would cost 60× for a batch).
struct Blocks<'t> {
    table: redb::Table<'t, HourKey<'static>, &'static [u8]>,
    path: &'t Path,
    /// (stream key, hour) → its segments, and whether they changed.
    cache: BTreeMap<(String, i64), (Vec<SegmentRecord>, bool)>,
}

impl<'t> Blocks<'t> {
    fn new(table: redb::Table<'t, HourKey<'static>, &'static [u8]>, path: &'t Path) -> Self {
        Blocks {
            table,
            path,
            cache: BTreeMap::new(),
        }
    }

    fn hour(&mut self, key: &str, stream: &StreamId, hour: i64) -> Result<&mut (Vec<SegmentRecord>, bool), StoreError> {
        let k = (key.to_owned(), hour);
        if !self.cache.contains_key(&k) {
            let p = self.path;
            let segments = match tr!(p, self.table.get((key, hour))) {
                Some(v) => hour_block::decode(stream, hour, v.value()).map_err(|detail| StoreError::CorruptEntry {
                    path: p.to_owned(),
                    key: format!("hours/{key}@{hour}"),
                    detail,
                })?,
                None => Vec::new(),
            };
            self.cache.insert(k.clone(), (segments, false));
        }
        Ok(self.cache.get_mut(&k).expect("inserted above"))
    }

    /// Puts a closed segment's summary in its hour; the bytes of the one it replaced.
    fn upsert(&mut self, key: &str, r: &SegmentRecord) -> Result<Option<u64>, StoreError> {
        let (segments, dirty) = self.hour(key, &r.stream, hour_of(r.start))?;
        *dirty = true;
        let summary = SegmentRecord {
            key_frames: Vec::new(),
            closed: true,
            ..r.clone()
        };
        match segments.binary_search_by_key(&(r.start, r.seq), |s| (s.start, s.seq)) {
            Ok(i) => Ok(Some(std::mem::replace(&mut segments[i], summary).bytes)),
            Err(i) => {
                segments.insert(i, summary);
                Ok(None)
            }
        }
    }

    /// Takes a closed segment's summary out of its hour.
    fn remove(
        &mut self,
        key: &str,
        stream: &StreamId,
        start: WallTime,
        seq: u64,
    ) -> Result<Option<SegmentRecord>, StoreError> {
        let (segments, dirty) = self.hour(key, stream, hour_of(start))?;
        match segments.binary_search_by_key(&(start, seq), |s| (s.start, s.seq)) {
            Ok(i) => {
                *dirty = true;
                Ok(Some(segments.remove(i)))
            }
            Err(_) => Ok(None),
        }
    }

    /// Writes back every hour that changed (an empty one is removed).
    fn flush(mut self) -> Result<(), StoreError> {
        let p = self.path;
        for ((key, hour), (segments, dirty)) in std::mem::take(&mut self.cache) {
            if !dirty {
                continue;
            }
            if segments.is_empty() {
                tr!(p, self.table.remove((key.as_str(), hour)));
            } else {
                tr!(
                    p,
                    self.table
                        .insert((key.as_str(), hour), hour_block::encode(hour, &segments).as_slice())
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use media::WallTime;

    use super::Index;
    use crate::record::tests::sample;

    fn closed(seq: u64, start_s: i64) -> crate::record::SegmentRecord {
        let mut r = sample(60);
        r.seq = seq;
        r.start = WallTime::from_micros(1_795_420_800_000_000 + start_s * 1_000_000);
        r.end = r.start.add_micros(60_000_000);
        r
    }

    /// Closed segments live as summaries in their stream-hour, open ones whole; every query
    /// answers across both, and closing or deleting moves an entry exactly once.
    #[test]
    fn hours_and_open_segments_answer_every_query_together() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        // Three hours of a stream, the last segment still open.
        let mut all: Vec<_> = (0..180).map(|i| closed(i + 1, i as i64 * 60)).collect();
        all[179].closed = false;
        index.put(&all[..100]).unwrap();
        index.put(&all[100..]).unwrap();
        let summaries: Vec<_> = all
            .iter()
            .map(|r| if r.closed { r.summary() } else { r.clone() })
            .collect();
        assert_eq!(index.all_segments().unwrap(), summaries);
        assert_eq!(index.open_segments().unwrap(), vec![all[179].clone()]);
        assert_eq!(index.last_segment(&all[0].stream).unwrap().unwrap(), all[179]);
        assert!(index.contains(&all[0].stream, all[61].start, 62).unwrap());
        assert!(!index.contains(&all[0].stream, all[61].start, 63).unwrap());
        // A window across an hour boundary, and one reaching back into a segment.
        let w = index
            .segment_summaries(&all[0].stream, all[58].start.add_micros(30_000_000), all[62].start)
            .unwrap();
        assert_eq!(w.iter().map(|r| r.seq).collect::<Vec<_>>(), [59, 60, 61, 62]);
        let oldest = index.oldest(&all[0].stream, Some((all[177].start, 178)), 10).unwrap();
        assert_eq!(oldest.iter().map(|r| r.seq).collect::<Vec<_>>(), [179, 180]);
        assert_eq!(index.oldest(&all[0].stream, None, 2).unwrap()[1].seq, 2);
        // Closing the open one moves it into its hour.
        let mut last = all[179].clone();
        last.closed = true;
        index.put(std::slice::from_ref(&last)).unwrap();
        assert!(index.open_segments().unwrap().is_empty());
        assert_eq!(index.all_segments().unwrap()[179], last.summary());
        let stats = index.stream_stats().unwrap();
        assert_eq!((stats[0].1, stats[0].2), (all.iter().map(|r| r.bytes).sum(), 180));
        // Deleting takes entries out of their hours once; an hour emptied is gone.
        let keys: Vec<_> = all[..60].iter().map(|r| (r.stream.clone(), r.start, r.seq)).collect();
        assert_eq!(index.begin_delete(&keys).unwrap().len(), 60);
        assert_eq!(index.begin_delete(&keys).unwrap().len(), 0);
        assert_eq!(index.deleting().unwrap().len(), 60);
        index.finish_delete(&keys).unwrap();
        assert_eq!(index.all_segments().unwrap().len(), 120);
        assert_eq!(index.stream_stats().unwrap()[0].2, 120);
    }

    /// A schema 1 index is migrated at open: the same entries (closed ones as summaries, open
    /// ones whole), the version set, the old tables gone; an interrupted migration goes on.
    #[test]
    fn a_schema_1_index_migrates_at_open_and_an_interrupted_migration_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let n = super::MIGRATION_BATCH as u64 * 2 + 7;
        let mut records: Vec<_> = (0..n).map(|i| closed(i + 1, i as i64 * 60)).collect();
        records.last_mut().unwrap().closed = false;
        Index::write_schema_v1(&path, &records).unwrap();
        // Interrupted after one transaction: the rest is still in the old table, the moved
        // part in the new ones, nothing in both.
        Index::open_migrating_at_most(&path, 1).unwrap();
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_read().unwrap();
            use redb::{ReadableDatabase, ReadableTableMetadata};
            let left = txn.open_table(super::V1_SEGMENTS).unwrap().len().unwrap();
            assert_eq!(left, n - super::MIGRATION_BATCH as u64);
            assert_eq!(
                txn.open_table(super::META)
                    .unwrap()
                    .get("schema_version")
                    .unwrap()
                    .unwrap()
                    .value(),
                1
            );
        }
        {
            let index = Index::open(&path).unwrap();
            let expect: Vec<_> = records
                .iter()
                .map(|r| if r.closed { r.summary() } else { r.clone() })
                .collect();
            assert_eq!(index.all_segments().unwrap(), expect);
            assert_eq!(index.open_segments().unwrap().len(), 1);
            assert_eq!(index.stream_stats().unwrap()[0].2, n);
        }
        // Opening again is a no-op.
        let index = Index::open(&path).unwrap();
        assert_eq!(index.all_segments().unwrap().len() as u64, n);
        drop(index);
        // A version from the future is refused, saying what to do.
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(super::META)
                .unwrap()
                .insert("schema_version", 3)
                .unwrap();
            txn.commit().unwrap();
        }
        let e = Index::open(&path).unwrap_err().to_string();
        assert!(e.contains("store rebuild"), "{e}");
    }

    /// A commit that meets a full file system fails; once space is back the index reopens
    /// itself and works, holding everything committed before the failure.
    #[test]
    fn a_full_disk_fails_a_commit_and_the_index_recovers_when_space_returns() {
        let fs = testkit::SmallFs::new(24);
        fs.clear("index-enospc");
        let root = fs.path.join("index-enospc");
        std::fs::create_dir_all(&root).unwrap();
        let index = Index::open(&root.join("index.redb")).unwrap();
        // Open segments: kept whole, key-frame tables and all, so the index grows fast.
        let record = |seq: u64| {
            let mut r = sample(600);
            r.closed = false;
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
