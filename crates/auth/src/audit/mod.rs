//! The audit log: append-only, hash-chained, crash-safe.
//!
//! # On disk
//! A directory of files `audit-<seq of the first entry, 12 digits>.jsonl`. A file is closed for
//! appends once it passes [`AuditConfig::max_file_bytes`] and the next entry starts a new one;
//! sequence numbers start at 1 and run on across files without gaps. Each entry is one line:
//!
//! ```text
//! {"seq":N,"at":"2026-11-23T08:00:00.123456Z","actor":..,"ip":..,"action":..,"outcome":..,
//!  "camera":..,"target":..,"reason":..,"detail":..,"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! `hash` is the SHA-256 of the previous entry's hash (64 hex characters; 64 `0`s before the
//! first entry) followed by the exact bytes of the line up to `,"hash":"`. Any change to an
//! entry's bytes breaks its hash; deleting, inserting or reordering entries breaks `prev` or
//! `seq` at that point. [`verify`] recomputes all of it from the raw bytes and names the first
//! entry that does not hold.
//!
//! # Durability
//! One writer thread takes whatever is queued, writes it with one `write` (the file is opened
//! `O_APPEND`), `fdatasync`s once, and only then reports those entries durable. A crash can
//! therefore only leave a torn last line that nobody was told was written; [`AuditLog::open`]
//! cuts it off. If a write or sync fails the log closes for appends (fail closed: the API then
//! refuses what it cannot audit) and says why.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures::channel::oneshot;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What happened, as the caller describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who: a user name, `token:NAME@owner`, or `-` when unknown.
    pub actor: String,
    /// From where.
    pub ip: Option<String>,
    /// What: `login`, `live.start`, `hold.create`, `user.create`, ...
    pub action: String,
    /// `ok`, `failed`, `throttled`, ...
    pub outcome: String,
    /// The camera concerned.
    pub camera: Option<String>,
    /// The object acted on (a user name, grant id, export id...).
    pub target: Option<String>,
    /// Why, as the actor said.
    pub reason: Option<String>,
    /// Anything else (`null` when nothing).
    pub detail: serde_json::Value,
    /// For a request an upper node made for one of its users: that user (`alice@district-1`);
    /// the actor is then the upper node's token. Absent from the line when not set, so lines
    /// written before it existed read and hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

/// A stored entry: the line's fields in order (`seq`, `at`, the event's fields, `prev`,
/// `hash`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it was written (UTC, microseconds).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
    /// The previous entry's hash.
    pub prev: String,
    /// This entry's hash.
    pub hash: String,
}

impl Record {
    /// `at` as microseconds since the epoch (None if unreadable).
    pub fn at_us(&self) -> Option<i64> {
        self.at.parse::<jiff::Timestamp>().ok().map(|t| t.as_microsecond())
    }
}

/// The part of a line the hash covers: everything but the hash, in line order.
#[derive(Serialize)]
struct Unsealed<'a> {
    seq: u64,
    at: &'a str,
    #[serde(flatten)]
    event: &'a Event,
    prev: &'a str,
}

/// Why the log could not be opened, written or read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("audit log {path}: {op} failed: {why}; check the disk")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        why: String,
    },
    /// Another process has the log open for writing.
    #[error("audit log {dir}: another process is writing it (is another sharpeye running on this data directory?)")]
    Locked {
        /// The log's directory.
        dir: PathBuf,
    },
    /// The log is closed for appends after a failure, or because the chain on disk is broken.
    #[error("audit log {dir}: closed for appends: {why}")]
    Closed {
        /// The log's directory.
        dir: PathBuf,
        /// The first failure.
        why: String,
    },
}

pub(super) fn io_err(path: &Path, op: &'static str, e: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_owned(),
        op,
        why: e.to_string(),
    }
}

/// Tuning, and where entries' times come from.
#[derive(Clone)]
pub struct AuditConfig {
    /// A file past this size gets no more entries; the next goes into a new file.
    pub max_file_bytes: u64,
    /// Most entries written per `fdatasync`.
    pub max_batch: usize,
    /// The clock entries are stamped with.
    pub clock: std::sync::Arc<dyn media::clock::Clock>,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("max_file_bytes", &self.max_file_bytes)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            max_file_bytes: 64 << 20,
            max_batch: 8192,
            clock: std::sync::Arc::new(media::clock::SystemClock),
        }
    }
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditStats {
    /// Entries made durable.
    pub entries: u64,
    /// `fdatasync`s (batches).
    pub syncs: u64,
    /// Entries that could not be written.
    pub failures: u64,
}

type Ack = oneshot::Sender<Result<u64, AuditError>>;

enum Job {
    Entry(Box<Event>, Option<Ack>),
    Flush(std::sync::mpsc::Sender<Result<(), AuditError>>),
}

#[derive(Default)]
struct Counters {
    entries: AtomicU64,
    syncs: AtomicU64,
    failures: AtomicU64,
    /// The last durable entry's sequence number and hash (the head a node signs).
    head: Mutex<(u64, String)>,
}

/// The log. Appends from any thread; one writer thread makes them durable in order.
pub struct AuditLog {
    dir: PathBuf,
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    recovered_bytes: u64,
    /// Held for the log's life: one writer per directory, or two chains would fork.
    _lock: File,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditLog({})", self.dir.display())
    }
}

/// The files of a log directory, by first sequence number.
pub(super) fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir, "listing", e)),
    };
    for e in rd {
        let e = e.map_err(|e| io_err(dir, "listing", e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("audit-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .filter(|n| n.len() == 12)
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(first_seq: u64) -> String {
    format!("audit-{first_seq:012}.jsonl")
}

/// Splits a line into the sealed part and its hash, checking the shape.
pub(super) fn split_sealed(line: &[u8]) -> Option<(&[u8], &str)> {
    const MARK: &[u8] = b",\"hash\":\"";
    let body = line.strip_suffix(b"\"}")?;
    let at = body.windows(MARK.len()).rposition(|w| w == MARK)?;
    let hash = std::str::from_utf8(&body[at + MARK.len()..]).ok()?;
    (hash.len() == 64).then_some((&line[..at], hash))
}

pub(super) fn seal(prev_hash: &str, sealed: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(sealed);
    crate::hex(&h.finalize())
}

pub(super) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The end of the chain as found on disk.
struct Tail {
    seq: u64,
    hash: String,
    at_us: i64,
    file: Option<(u64, PathBuf, u64)>,
}

/// Reads the last file's tail: cuts a torn last line, checks the last complete entry.
fn recover(dir: &Path) -> Result<(Tail, u64, Option<String>), AuditError> {
    let list = files(dir)?;
    let Some((first, path)) = list.last().cloned() else {
        return Ok((
            Tail {
                seq: 0,
                hash: GENESIS.into(),
                at_us: i64::MIN,
                file: None,
            },
            0,
            None,
        ));
    };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, "opening", e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| io_err(&path, "reading", e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let cut = (bytes.len() - complete) as u64;
    if cut > 0 {
        f.set_len(complete as u64)
            .map_err(|e| io_err(&path, "truncating a torn entry", e))?;
        f.sync_all().map_err(|e| io_err(&path, "fsync", e))?;
    }
    let len = complete as u64;
    let last = bytes[..complete]
        .strip_suffix(b"\n")
        .map(|b| b.rsplit(|&c| c == b'\n').next().unwrap_or(b));
    let Some(last) = last.filter(|l| !l.is_empty()) else {
        // An empty file: the chain ends in the previous file.
        if list.len() > 1 {
            return Ok((
                Tail {
                    seq: 0,
                    hash: String::new(),
                    at_us: i64::MIN,
                    file: Some((first, path, len)),
                },
                cut,
                Some("the newest file is empty but older files exist; run `sharpeye audit verify`".into()),
            ));
        }
        return Ok((
            Tail {
                seq: first.saturating_sub(1),
                hash: GENESIS.into(),
                at_us: i64::MIN,
                file: Some((first, path, len)),
            },
            cut,
            None,
        ));
    };
    let parsed: Option<Record> = serde_json::from_slice(last).ok();
    let ok = match (&parsed, split_sealed(last)) {
        (Some(r), Some((sealed, hash))) => seal(&r.prev, sealed) == hash,
        _ => false,
    };
    match parsed {
        Some(r) if ok => Ok((
            Tail {
                seq: r.seq,
                at_us: r.at_us().unwrap_or(i64::MIN),
                hash: r.hash,
                file: Some((first, path, len)),
            },
            cut,
            None,
        )),
        _ => {
            let why = format!(
                "the last entry of {} does not verify; run `sharpeye audit verify`",
                path.display()
            );
            Ok((
                Tail {
                    seq: 0,
                    hash: String::new(),
                    at_us: i64::MIN,
                    file: Some((first, path, len)),
                },
                cut,
                Some(why),
            ))
        }
    }
}

impl AuditLog {
    /// Opens the log in `dir` (creating it), cutting a torn last line left by a crash, and
    /// starts the writer. If the last entry on disk does not verify the log still opens, for
    /// reading, but refuses appends: a broken chain is never silently continued.
    pub fn open(dir: &Path, config: AuditConfig) -> Result<AuditLog, AuditError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(dir, "creating the directory", e))?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, "opening", e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| AuditError::Locked { dir: dir.to_owned() })?;
        let (tail, recovered_bytes, broken) = recover(dir)?;
        let (tx, rx) = channel();
        let counters = Arc::new(Counters::default());
        *counters.head.lock().unwrap_or_else(|p| p.into_inner()) = (tail.seq, tail.hash.clone());
        let writer = Writer {
            dir: dir.to_owned(),
            config,
            file: None,
            tail,
            failed: broken,
            counters: counters.clone(),
            out: Vec::with_capacity(1 << 20),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err(dir, "starting the writer thread", e))?;
        Ok(AuditLog {
            dir: dir.to_owned(),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            counters,
            recovered_bytes,
            _lock: lock,
        })
    }

    /// Bytes of a torn last entry cut off at open (0 after a clean stop).
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a job; false if the writer is gone.
    fn send(&self, job: Job) -> bool {
        match self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        }
    }

    fn closed(&self) -> AuditError {
        AuditError::Closed {
            dir: self.dir.clone(),
            why: "the log has been shut down".into(),
        }
    }

    /// Queues `event`; the future resolves to its sequence number once it is durable. Never
    /// blocks.
    pub fn append(&self, event: Event) -> impl Future<Output = Result<u64, AuditError>> + Send + 'static {
        let (ack, done) = oneshot::channel();
        let early = (!self.send(Job::Entry(Box::new(event), Some(ack)))).then(|| self.closed());
        let closed = self.closed();
        async move {
            if let Some(e) = early {
                return Err(e);
            }
            done.await.unwrap_or(Err(closed))
        }
    }

    /// Appends and waits until durable (CLI, benchmarks, threads).
    pub fn append_blocking(&self, event: Event) -> Result<u64, AuditError> {
        futures::executor::block_on(self.append(event))
    }

    /// Queues `event` without waiting (viewing stops, written when nobody waits for them).
    /// A failure is counted in [`AuditStats::failures`] and logged by the writer's errors.
    pub fn record(&self, event: Event) {
        if !self.send(Job::Entry(Box::new(event), None)) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until everything queued before the call is durable.
    pub fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.send(Job::Flush(tx)) {
            return Err(self.closed());
        }
        rx.recv().unwrap_or_else(|_| Err(self.closed()))
    }

    /// The last durable entry: its sequence number and hash (0 and the genesis hash when the
    /// log is empty).
    pub fn head(&self) -> (u64, String) {
        self.counters.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            entries: self.counters.entries.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            failures: self.counters.failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain it and stop.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    dir: PathBuf,
    config: AuditConfig,
    file: Option<(File, PathBuf, u64)>,
    tail: Tail,
    failed: Option<String>,
    counters: Arc<Counters>,
    out: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.batch(jobs);
        }
    }

    fn fail_all(&self, jobs: Vec<Job>, why: &str) {
        let err = AuditError::Closed {
            dir: self.dir.clone(),
            why: why.to_owned(),
        };
        for j in jobs {
            match j {
                Job::Entry(_, ack) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(a) = ack {
                        let _ = a.send(Err(err.clone()));
                    }
                }
                Job::Flush(tx) => {
                    let _ = tx.send(Err(err.clone()));
                }
            }
        }
    }

    fn batch(&mut self, jobs: Vec<Job>) {
        if let Some(why) = self.failed.clone() {
            return self.fail_all(jobs, &why);
        }
        // Entries that fit in the current file go in one write; a file boundary splits the
        // batch in two writes (and two syncs), which happens once per 64 MiB.
        let mut done: Vec<(u64, Option<Ack>)> = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for j in jobs {
            match j {
                Job::Flush(tx) => flushes.push(tx),
                Job::Entry(ev, ack) => {
                    if let Err(e) = self.rotate_if_full() {
                        return self.fail_everything(e, done, ack, flushes);
                    }
                    let seq = self.seal_into_out(&ev);
                    done.push((seq, ack));
                }
            }
        }
        if let Err(e) = self.write_out() {
            return self.fail_everything(e, done, None, flushes);
        }
        self.counters.entries.fetch_add(done.len() as u64, Ordering::Relaxed);
        for (seq, ack) in done {
            if let Some(a) = ack {
                let _ = a.send(Ok(seq));
            }
        }
        for f in flushes {
            let _ = f.send(Ok(()));
        }
    }

    fn fail_everything(
        &mut self,
        e: AuditError,
        done: Vec<(u64, Option<Ack>)>,
        extra: Option<Ack>,
        flushes: Vec<std::sync::mpsc::Sender<Result<(), AuditError>>>,
    ) {
        let why = e.to_string();
        self.failed = Some(why.clone());
        let mut jobs: Vec<Job> = done
            .into_iter()
            .map(|(_, a)| Job::Entry(Box::new(empty_event()), a))
            .collect();
        if let Some(a) = extra {
            jobs.push(Job::Entry(Box::new(empty_event()), Some(a)));
        }
        jobs.extend(flushes.into_iter().map(Job::Flush));
        self.fail_all(jobs, &why);
    }

    /// Serializes `ev` as the next entry into the output buffer; returns its seq.
    fn seal_into_out(&mut self, ev: &Event) -> u64 {
        let seq = self.tail.seq + 1;
        // Entries are in seq order; keep their times in that order too, whatever the clock does.
        let now = self.config.clock.now().as_micros().max(self.tail.at_us);
        let at = jiff::Timestamp::from_microsecond(now)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
            .unwrap_or_default();
        let unsealed = Unsealed {
            seq,
            at: &at,
            event: ev,
            prev: &self.tail.hash,
        };
        // Serializing plain strings and a JSON value cannot fail.
        let body = serde_json::to_string(&unsealed).unwrap_or_default();
        let sealed = &body[..body.len() - 1];
        let hash = seal(&self.tail.hash, sealed.as_bytes());
        self.out.extend_from_slice(sealed.as_bytes());
        self.out.extend_from_slice(b",\"hash\":\"");
        self.out.extend_from_slice(hash.as_bytes());
        self.out.extend_from_slice(b"\"}\n");
        self.tail.seq = seq;
        self.tail.hash = hash;
        self.tail.at_us = now;
        seq
    }

    fn write_out(&mut self) -> Result<(), AuditError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (f, path, len) = match &mut self.file {
            Some(x) => x,
            None => return Ok(()),
        };
        f.write_all(&self.out).map_err(|e| io_err(path, "write", e))?;
        f.sync_data().map_err(|e| io_err(path, "fdatasync", e))?;
        *len += self.out.len() as u64;
        self.out.clear();
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        *self.counters.head.lock().unwrap_or_else(|p| p.into_inner()) = (self.tail.seq, self.tail.hash.clone());
        Ok(())
    }

    /// Makes sure there is an open file with room, starting a new one (after writing out
    /// what is buffered for the old one) when it is full.
    fn rotate_if_full(&mut self) -> Result<(), AuditError> {
        if self.file.is_none()
            && let Some((_, path, len)) = self.tail.file.take()
            && len < self.config.max_file_bytes
        {
            let f = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| io_err(&path, "opening", e))?;
            self.file = Some((f, path, len));
        }
        let pending = self.out.len() as u64;
        let full = self
            .file
            .as_ref()
            .is_none_or(|(_, _, len)| len + pending >= self.config.max_file_bytes);
        if !full {
            return Ok(());
        }
        self.write_out()?;
        let path = self.dir.join(file_name(self.tail.seq + 1));
        let f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, "creating", e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&self.dir, "fsync of the directory", e))?;
        self.file = Some((f, path, 0));
        Ok(())
    }
}

fn empty_event() -> Event {
    Event {
        actor: String::new(),
        ip: None,
        action: String::new(),
        outcome: String::new(),
        camera: None,
        target: None,
        reason: None,
        detail: serde_json::Value::Null,
        on_behalf_of: None,
    }
}

pub mod heads;
mod read;
#[cfg(test)]
mod tests;

pub use read::{Filter, GENESIS_HASH, MAX_LINE, VerifyError, VerifyReport, check_entry, query, verify};
