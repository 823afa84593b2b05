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
use std::io::{BufRead, BufReader, Read, Write};
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
}

/// A stored entry: the line's fields in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it was written (UTC, microseconds).
    pub at: String,
    /// See [`Event`].
    pub actor: String,
    /// See [`Event`].
    pub ip: Option<String>,
    /// See [`Event`].
    pub action: String,
    /// See [`Event`].
    pub outcome: String,
    /// See [`Event`].
    pub camera: Option<String>,
    /// See [`Event`].
    pub target: Option<String>,
    /// See [`Event`].
    pub reason: Option<String>,
    /// See [`Event`].
    pub detail: serde_json::Value,
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
    actor: &'a str,
    ip: &'a Option<String>,
    action: &'a str,
    outcome: &'a str,
    camera: &'a Option<String>,
    target: &'a Option<String>,
    reason: &'a Option<String>,
    detail: &'a serde_json::Value,
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

fn io_err(path: &Path, op: &'static str, e: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_owned(),
        op,
        why: e.to_string(),
    }
}

/// Tuning.
#[derive(Clone, Copy, Debug)]
pub struct AuditConfig {
    /// A file past this size gets no more entries; the next goes into a new file.
    pub max_file_bytes: u64,
    /// Most entries written per `fdatasync`.
    pub max_batch: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            max_file_bytes: 64 << 20,
            max_batch: 8192,
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
    Entry(Event, Option<Ack>),
    Flush(std::sync::mpsc::Sender<Result<(), AuditError>>),
}

#[derive(Default)]
struct Counters {
    entries: AtomicU64,
    syncs: AtomicU64,
    failures: AtomicU64,
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
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
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
fn split_sealed(line: &[u8]) -> Option<(&[u8], &str)> {
    const MARK: &[u8] = b",\"hash\":\"";
    let body = line.strip_suffix(b"\"}")?;
    let at = body.windows(MARK.len()).rposition(|w| w == MARK)?;
    let hash = std::str::from_utf8(&body[at + MARK.len()..]).ok()?;
    (hash.len() == 64).then_some((&line[..at], hash))
}

fn seal(prev_hash: &str, sealed: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(sealed);
    crate::hex(&h.finalize())
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
        let early = (!self.send(Job::Entry(event, Some(ack)))).then(|| self.closed());
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
        if !self.send(Job::Entry(event, None)) {
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
        let mut jobs: Vec<Job> = done.into_iter().map(|(_, a)| Job::Entry(empty_event(), a)).collect();
        if let Some(a) = extra {
            jobs.push(Job::Entry(empty_event(), Some(a)));
        }
        jobs.extend(flushes.into_iter().map(Job::Flush));
        self.fail_all(jobs, &why);
    }

    /// Serializes `ev` as the next entry into the output buffer; returns its seq.
    fn seal_into_out(&mut self, ev: &Event) -> u64 {
        let seq = self.tail.seq + 1;
        // Entries are in seq order; keep their times in that order too, whatever the clock does.
        let now = media::WallTime::now().as_micros().max(self.tail.at_us);
        let at = jiff::Timestamp::from_microsecond(now)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
            .unwrap_or_default();
        let unsealed = Unsealed {
            seq,
            at: &at,
            actor: &ev.actor,
            ip: &ev.ip,
            action: &ev.action,
            outcome: &ev.outcome,
            camera: &ev.camera,
            target: &ev.target,
            reason: &ev.reason,
            detail: &ev.detail,
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
    }
}

/// What [`query`] selects.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Entries at or after (µs).
    pub start_us: Option<i64>,
    /// Entries before (µs).
    pub end_us: Option<i64>,
    /// This actor exactly.
    pub actor: Option<String>,
    /// This camera exactly.
    pub camera: Option<String>,
    /// This action, or actions starting with it when it ends with `.` (`live.`).
    pub action: Option<String>,
    /// Entries after this seq (paging).
    pub after_seq: Option<u64>,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        let at = r.at_us().unwrap_or(i64::MIN);
        self.after_seq.is_none_or(|a| r.seq > a)
            && self.start_us.is_none_or(|s| at >= s)
            && self.end_us.is_none_or(|e| at < e)
            && self.actor.as_ref().is_none_or(|a| *a == r.actor)
            && self.camera.as_ref().is_none_or(|c| r.camera.as_ref() == Some(c))
            && self.action.as_ref().is_none_or(|a| match a.strip_suffix('.') {
                Some(prefix) => r.action.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
                None => *a == r.action,
            })
    }
}

/// Longest line read back (entries are far smaller: API bodies are at most 64 KiB). Bounds the
/// memory `query` and `verify` use on a damaged or hostile file.
pub const MAX_LINE: usize = 1 << 20;

/// The next line of `r` without its newline: `Ok(None)` at the end, `Err` for a line longer
/// than [`MAX_LINE`] (which is not read into memory whole). The flag says whether the line
/// ended with a newline.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = r.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    let complete = buf.last() == Some(&b'\n');
    if complete {
        buf.pop();
    } else if n > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(Some(complete))
}

fn first_at_us(path: &Path) -> Option<i64> {
    let mut line = String::new();
    BufReader::new(File::open(path).ok()?).read_line(&mut line).ok()?;
    serde_json::from_str::<Record>(&line).ok()?.at_us()
}

/// Reads the entries matching `filter` in seq order, at most `limit`; the flag says whether
/// more matched. Whole files that cannot match (by seq, or by time from the next file's first
/// entry) are skipped unread. Unreadable lines are skipped: `verify` is what reports them.
pub fn query(dir: &Path, filter: &Filter, limit: usize) -> Result<(Vec<Record>, bool), AuditError> {
    let list = files(dir)?;
    let mut out = Vec::new();
    for (i, (_, path)) in list.iter().enumerate() {
        let next = list.get(i + 1);
        if let (Some(after), Some((next_first, _))) = (filter.after_seq, next)
            && *next_first <= after + 1
        {
            continue;
        }
        if let (Some(start), Some((_, next_path))) = (filter.start_us, next)
            && first_at_us(next_path).is_some_and(|t| t < start)
        {
            continue;
        }
        if let Some(end) = filter.end_us
            && first_at_us(path).is_some_and(|t| t >= end)
        {
            break;
        }
        let f = File::open(path).map_err(|e| io_err(path, "opening", e))?;
        let mut reader = BufReader::new(f);
        let mut line = Vec::new();
        while next_line(&mut reader, &mut line)
            .map_err(|e| io_err(path, "reading", e))?
            .is_some()
        {
            let Ok(r) = serde_json::from_slice::<Record>(&line) else {
                continue;
            };
            if filter.matches(&r) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(r);
            }
        }
    }
    Ok((out, false))
}

/// Checks one line as the entry that must follow `prev` (the previous hash) with sequence
/// number `seq`: its seq, its `prev`, and its hash over the line's own bytes. On failure returns
/// the line's seq (when readable) and why.
pub fn check_entry(prev: &str, seq: u64, line: &[u8]) -> Result<Record, (Option<u64>, String)> {
    let r: Record = serde_json::from_slice(line).map_err(|e| (None, format!("not an audit entry: {e}")))?;
    let s = Some(r.seq);
    if r.seq != seq {
        return Err((
            s,
            format!("seq should be {seq}: an entry was deleted, inserted or reordered"),
        ));
    }
    if r.prev != prev {
        return Err((
            s,
            format!(
                "prev does not match the hash of seq {}: an entry was changed, deleted or reordered",
                seq.saturating_sub(1)
            ),
        ));
    }
    let Some((sealed, hash)) = split_sealed(line) else {
        return Err((s, "no hash at the end of the line".into()));
    };
    if seal(prev, sealed) != hash || hash != r.hash {
        return Err((s, "hash mismatch: the entry was edited".into()));
    }
    Ok(r)
}

/// The hash that precedes the first entry.
pub const GENESIS_HASH: &str = GENESIS;

/// A verified log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Files.
    pub files: usize,
    /// Hash of the last entry (the head to compare with a copy kept elsewhere).
    pub last_hash: String,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries in {} files, chain intact, head {}",
            self.entries, self.files, self.last_hash
        )
    }
}

/// The first entry that does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}{}: {why}", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
pub struct VerifyError {
    /// File name.
    pub file: String,
    /// Line, from 1.
    pub line: u64,
    /// Its seq, when readable.
    pub seq: Option<u64>,
    /// What is wrong.
    pub why: String,
}

/// Checks the whole chain from the raw bytes: every line's hash, `prev` and `seq`, file names
/// against their first entries, and files that end without a newline.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    let bad = |file: &str, line: u64, seq: Option<u64>, why: String| VerifyError {
        file: file.to_owned(),
        line,
        seq,
        why,
    };
    let list = files(dir).map_err(|e| bad("-", 0, None, e.to_string()))?;
    let (mut prev, mut seq, mut entries) = (GENESIS.to_owned(), 0u64, 0u64);
    for (first, path) in &list {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_owned();
        let f = File::open(path).map_err(|e| bad(&name, 0, None, format!("cannot read: {e}")))?;
        let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(false);
        if *first != seq + 1 && !empty {
            return Err(bad(
                &name,
                1,
                None,
                format!(
                    "the file should start at seq {} (a file is missing or was renamed)",
                    seq + 1
                ),
            ));
        }
        let mut reader = BufReader::new(f);
        let mut line = Vec::new();
        let mut lno = 0;
        loop {
            lno += 1;
            let complete = match next_line(&mut reader, &mut line) {
                Ok(None) => break,
                Ok(Some(c)) => c,
                Err(e) => return Err(bad(&name, lno, None, e.to_string())),
            };
            if !complete {
                return Err(bad(&name, lno, None, "incomplete last line (a torn write)".into()));
            }
            let r = check_entry(&prev, seq + 1, &line).map_err(|(s, why)| bad(&name, lno, s, why))?;
            prev = r.hash;
            seq = r.seq;
            entries += 1;
        }
    }
    Ok(VerifyReport {
        entries,
        files: list.len(),
        last_hash: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: usize) -> Event {
        Event {
            actor: format!("user{}", i % 3),
            ip: Some("10.0.0.1".into()),
            action: if i.is_multiple_of(2) {
                "live.start".into()
            } else {
                "playback".into()
            },
            outcome: "ok".into(),
            camera: Some(format!("cam{}", i % 4)),
            target: None,
            reason: i.is_multiple_of(5).then(|| "case \"7\"\n\u{1F4F9}".into()),
            detail: serde_json::json!({ "i": i }),
        }
    }

    fn small() -> AuditConfig {
        AuditConfig {
            max_file_bytes: 2000,
            max_batch: 16,
        }
    }

    fn log_with(n: usize, config: AuditConfig) -> (tempfile::TempDir, AuditLog) {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&d.path().join("audit"), config).unwrap();
        for i in 0..n {
            log.append_blocking(ev(i)).unwrap();
        }
        (d, log)
    }

    fn lines_of(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn concurrent_appends_chain_and_query() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("audit");
        let log = Arc::new(AuditLog::open(&dir, AuditConfig::default()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    (0..125)
                        .map(|i| log.append_blocking(ev(t * 125 + i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        seqs.sort();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
        assert!(log.stats().syncs <= 1000 && log.stats().entries == 1000);
        let r = verify(&dir).unwrap();
        assert_eq!((r.entries, r.files), (1000, 1));
        let all = query(&dir, &Filter::default(), 10_000).unwrap().0;
        assert_eq!(all.len(), 1000);
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq && w[0].at <= w[1].at));
        let f = |f: Filter| query(&dir, &f, 10_000).unwrap().0;
        let user1 = f(Filter {
            actor: Some("user1".into()),
            ..Default::default()
        });
        assert!(!user1.is_empty() && user1.iter().all(|r| r.actor == "user1"));
        let live = f(Filter {
            action: Some("live.".into()),
            camera: Some("cam2".into()),
            ..Default::default()
        });
        assert!(
            !live.is_empty()
                && live
                    .iter()
                    .all(|r| r.action == "live.start" && r.camera.as_deref() == Some("cam2"))
        );
        assert!(
            f(Filter {
                action: Some("live".into()),
                ..Default::default()
            })
            .is_empty()
        );
        let (page, more) = query(
            &dir,
            &Filter {
                after_seq: Some(990),
                ..Default::default()
            },
            5,
        )
        .unwrap();
        assert!(more);
        assert_eq!(
            page.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [991, 992, 993, 994, 995]
        );
        let mid = all[500].at_us().unwrap();
        let later = f(Filter {
            start_us: Some(mid),
            ..Default::default()
        });
        assert!(later.iter().all(|r| r.at_us().unwrap() >= mid) && later.len() >= 499);
        let none = f(Filter {
            end_us: Some(all[0].at_us().unwrap()),
            ..Default::default()
        });
        assert!(none.is_empty());
    }

    #[test]
    fn rotates_and_continues_across_reopen() {
        let (d, log) = log_with(60, small());
        let dir = d.path().join("audit");
        drop(log);
        let n_files = files(&dir).unwrap().len();
        assert!(n_files >= 5, "{n_files} files");
        let log = AuditLog::open(&dir, small()).unwrap();
        assert_eq!(log.append_blocking(ev(60)).unwrap(), 61);
        drop(log);
        let r = verify(&dir).unwrap();
        assert_eq!(r.entries, 61);
        let after = query(
            &dir,
            &Filter {
                after_seq: Some(50),
                ..Default::default()
            },
            100,
        )
        .unwrap()
        .0;
        assert_eq!(after.first().map(|r| r.seq), Some(51));
        assert_eq!(after.len(), 11);
        // The files are named after their first entries.
        for (first, path) in files(&dir).unwrap() {
            let l = lines_of(&path);
            let r: Record = serde_json::from_str(&l[0]).unwrap();
            assert_eq!(r.seq, first);
        }
    }

    /// Tampers with a fresh 20-entry log's file and returns verify's verdict.
    fn tampered(f: impl FnOnce(&mut Vec<String>)) -> VerifyError {
        let (d, log) = log_with(20, AuditConfig::default());
        drop(log);
        let dir = d.path().join("audit");
        let path = files(&dir).unwrap()[0].1.clone();
        let mut l = lines_of(&path);
        f(&mut l);
        std::fs::write(&path, l.join("\n") + "\n").unwrap();
        verify(&dir).unwrap_err()
    }

    #[test]
    fn every_kind_of_tampering_is_found_at_its_entry() {
        let e = tampered(|l| l[6] = l[6].replacen("user", "usEr", 1));
        assert_eq!((e.line, e.seq), (7, Some(7)));
        assert!(e.why.contains("edited"), "{e}");
        let e = tampered(|l| {
            l.remove(6);
        });
        assert_eq!((e.line, e.seq), (7, Some(8)));
        let e = tampered(|l| l.swap(6, 7));
        assert_eq!((e.line, e.seq), (7, Some(8)));
        let e = tampered(|l| {
            let dup = l[6].clone();
            l.insert(7, dup);
        });
        assert_eq!((e.line, e.seq), (8, Some(7)));
        // Re-hashing an edited entry does not help: the next entry's prev gives it away.
        let e = tampered(|l| {
            let mut r: Record = serde_json::from_str(&l[6]).unwrap();
            r.actor = "someone-else".into();
            let sealed_end = l[6].rfind(",\"hash\":\"").unwrap();
            let edited =
                l[6][..sealed_end].replace(&format!("\"actor\":\"user{}\"", 6 % 3), "\"actor\":\"someone-else\"");
            let h = seal(&r.prev, edited.as_bytes());
            l[6] = format!("{edited},\"hash\":\"{h}\"}}");
        });
        assert_eq!((e.line, e.seq), (8, Some(8)));
        assert!(e.why.contains("prev"), "{e}");
        let e = tampered(|l| l[3] = "{not json".into());
        assert_eq!((e.line, e.seq), (4, None));
        assert!(
            e.to_string()
                .starts_with("audit-000000000001.jsonl line 4: not an audit entry"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_middle_file_is_found() {
        let (d, log) = log_with(60, small());
        drop(log);
        let dir = d.path().join("audit");
        let list = files(&dir).unwrap();
        std::fs::remove_file(&list[2].1).unwrap();
        let e = verify(&dir).unwrap_err();
        assert_eq!(e.file, list[3].1.file_name().unwrap().to_str().unwrap());
        assert!(e.why.contains("missing"), "{e}");
    }

    #[test]
    fn a_torn_last_line_is_cut_at_open_and_the_chain_goes_on() {
        let (d, log) = log_with(10, AuditConfig::default());
        drop(log);
        let dir = d.path().join("audit");
        let path = files(&dir).unwrap()[0].1.clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let torn = b"{\"seq\":11,\"at\":\"2026-";
        bytes.extend_from_slice(torn);
        std::fs::write(&path, &bytes).unwrap();
        let e = verify(&dir).unwrap_err();
        assert_eq!(e.line, 11);
        assert!(e.why.contains("incomplete"), "{e}");
        let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
        assert_eq!(log.recovered_bytes(), torn.len() as u64);
        assert_eq!(log.append_blocking(ev(10)).unwrap(), 11);
        drop(log);
        assert_eq!(verify(&dir).unwrap().entries, 11);
    }

    #[test]
    fn a_broken_last_entry_closes_the_log_for_appends() {
        let (d, log) = log_with(5, AuditConfig::default());
        drop(log);
        let dir = d.path().join("audit");
        let path = files(&dir).unwrap()[0].1.clone();
        let mut l = lines_of(&path);
        let last = l.len() - 1;
        l[last] = l[last].replacen("\"actor\":\"user", "\"actor\":\"User", 1);
        std::fs::write(&path, l.join("\n") + "\n").unwrap();
        let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
        let e = log.append_blocking(ev(5)).unwrap_err();
        assert!(matches!(e, AuditError::Closed { .. }), "{e}");
        assert!(e.to_string().contains("audit verify"), "{e}");
        assert!(log.flush().is_err());
        assert_eq!(log.stats().failures, 1);
    }

    #[test]
    fn fire_and_forget_entries_become_durable_by_flush_and_drop() {
        let (d, log) = log_with(0, AuditConfig::default());
        for i in 0..100 {
            log.record(ev(i));
        }
        log.flush().unwrap();
        assert_eq!(log.stats().entries, 100);
        log.record(ev(100));
        drop(log);
        assert_eq!(verify(&d.path().join("audit")).unwrap().entries, 101);
    }

    #[test]
    fn one_writer_per_directory() {
        let (d, log) = log_with(1, AuditConfig::default());
        let dir = d.path().join("audit");
        let e = AuditLog::open(&dir, AuditConfig::default()).unwrap_err();
        assert!(matches!(e, AuditError::Locked { .. }), "{e}");
        drop(log);
        let again = AuditLog::open(&dir, AuditConfig::default()).unwrap();
        assert_eq!(again.append_blocking(ev(1)).unwrap(), 2);
    }

    #[test]
    fn huge_lines_are_not_read_whole() {
        let (d, log) = log_with(3, AuditConfig::default());
        drop(log);
        let dir = d.path().join("audit");
        let path = files(&dir).unwrap()[0].1.clone();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&vec![b'x'; MAX_LINE * 3]).unwrap();
        f.write_all(b"\n").unwrap();
        let e = verify(&dir).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.why.contains("longer than"), "{e}");
        assert!(query(&dir, &Filter::default(), 10).is_err());
    }

    #[test]
    fn hostile_directories_give_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("audit");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        std::fs::write(dir.join("audit-xyz.jsonl"), b"junk").unwrap();
        assert_eq!(verify(&dir).unwrap().entries, 0);
        std::fs::write(dir.join(file_name(1)), [0xff, 0xfe, 0, 1, b'\n']).unwrap();
        assert!(verify(&dir).is_err());
        assert!(query(&dir, &Filter::default(), 10).unwrap().0.is_empty());
        let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
        assert!(
            log.append_blocking(ev(0)).is_err(),
            "a garbage last entry is not continued"
        );
        std::fs::write(dir.join(file_name(1)), b"").unwrap();
        drop(log);
        let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
        assert_eq!(log.append_blocking(ev(0)).unwrap(), 1);
        assert!(matches!(verify(&d.path().join("missing")), Ok(r) if r.entries == 0));
    }
}
