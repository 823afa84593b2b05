//! The event log: numbered events in segment files `events-<first seq>.jsonl`, one JSON line
//! each, appended with one `write` per event before the event is announced (so a `kill -9`
//! loses nothing that anyone heard of) and synced to disk by [`EventLog::sync`], which the node
//! calls a few times a second (a power cut loses at most that much). Past
//! [`Limits::keep_events`] the oldest segments are deleted whole.
//!
//! At start-up the last segment is read back and cut after its last whole, well-formed,
//! consecutively numbered line: the torn tail of a crash. Numbering continues from there.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::EventLogError;
use crate::record::{MAX_LINE, Stored};

/// How much the log keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// At least this many of the latest events stay readable (whole segments are dropped).
    pub keep_events: u64,
    /// Events per segment file.
    pub segment_events: u64,
    /// Latest events also kept in memory, so that a reconnecting screen or a webhook a little
    /// behind reads no file.
    pub tail: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            keep_events: 200_000,
            segment_events: 20_000,
            tail: 8192,
        }
    }
}

/// What opening found.
#[derive(Debug)]
pub struct Opened {
    /// The log.
    pub log: EventLog,
    /// Bytes of a torn or damaged tail cut from the last segment.
    pub cut_bytes: u64,
    /// The last event's number (0 for a new log).
    pub last_seq: u64,
}

/// The node's event log.
#[derive(Debug)]
pub struct EventLog {
    dir: PathBuf,
    limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    /// The segment appended to, its length and its event count.
    current: Option<(File, u64, u64)>,
    segments: VecDeque<Segment>,
    tail: VecDeque<Arc<Stored>>,
    dirty: bool,
    write_errors: u64,
}

fn segment_name(first: u64) -> String {
    format!("events-{first:020}.jsonl")
}

fn segment_first(name: &str) -> Option<u64> {
    name.strip_prefix("events-")?.strip_suffix(".jsonl")?.parse().ok()
}

impl EventLog {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path, limits: Limits) -> Result<Opened, EventLogError> {
        std::fs::create_dir_all(dir).map_err(EventLogError::io(dir, "create directory"))?;
        let mut segments: Vec<Segment> = std::fs::read_dir(dir)
            .map_err(EventLogError::io(dir, "list"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let first = segment_first(e.file_name().to_str()?)?;
                Some(Segment { first, path: e.path() })
            })
            .collect();
        segments.sort_by_key(|s| s.first);
        let mut tail = VecDeque::new();
        let mut cut_bytes = 0;
        let mut next_seq = 1;
        let mut current = None;
        if let Some(last) = segments.last() {
            let (events, good_len, file_len) = read_valid(&last.path, last.first)?;
            cut_bytes = file_len - good_len;
            if cut_bytes > 0 {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&last.path)
                    .map_err(EventLogError::io(&last.path, "open"))?;
                f.set_len(good_len).map_err(EventLogError::io(&last.path, "truncate"))?;
                f.sync_all().map_err(EventLogError::io(&last.path, "fsync"))?;
                tracing::warn!(file = %last.path.display(), cut_bytes, "event log: cut a torn or damaged tail");
            }
            next_seq = events.last().map_or(last.first, |e| e.seq + 1);
            let count = events.len() as u64;
            for e in events.into_iter().rev().take(limits.tail) {
                tail.push_front(Arc::new(e));
            }
            if count < limits.segment_events {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(EventLogError::io(&last.path, "open"))?;
                current = Some((f, good_len, count));
            }
        }
        let log = EventLog {
            dir: dir.to_owned(),
            limits,
            inner: Mutex::new(Inner {
                next_seq,
                current,
                segments: segments.into(),
                tail,
                dirty: false,
                write_errors: 0,
            }),
        };
        Ok(Opened {
            log,
            cut_bytes,
            last_seq: next_seq - 1,
        })
    }

    /// Numbers and writes an event; the returned event is what listeners are given. A failed
    /// write is logged and counted, and the event is still numbered and kept in memory (live
    /// listeners get it; a restart will not).
    pub fn append(&self, at_us: i64, kind: &str, camera: Option<&str>, data: Value) -> Arc<Stored> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = g.next_seq;
        let e = Arc::new(Stored::new(seq, at_us, kind, camera, data));
        if let Err(err) = self.write(&mut g, &e) {
            g.write_errors += 1;
            tracing::error!(seq, %err, "event log: an event could not be written; it reaches live listeners only");
        }
        g.next_seq += 1;
        g.tail.push_back(e.clone());
        while g.tail.len() > self.limits.tail {
            g.tail.pop_front();
        }
        e
    }

    fn write(&self, g: &mut Inner, e: &Stored) -> Result<(), EventLogError> {
        if g.current.as_ref().is_none_or(|c| c.2 >= self.limits.segment_events) {
            self.rotate(g, e.seq)?;
        }
        let Some((file, len, count)) = g.current.as_mut() else {
            return Err(EventLogError::Line("no segment open".into()));
        };
        let mut line = Vec::with_capacity(e.line.len() + 1);
        line.extend_from_slice(e.line.as_bytes());
        line.push(b'\n');
        let path = &g.segments.back().map_or_else(|| self.dir.clone(), |s| s.path.clone());
        if let Err(source) = file.write_all(&line) {
            // Cut what was half written, so that the next line starts clean.
            let _ = file.set_len(*len);
            return Err(EventLogError::Io {
                path: path.clone(),
                action: "append",
                source,
            });
        }
        *len += line.len() as u64;
        *count += 1;
        g.dirty = true;
        Ok(())
    }

    /// Starts segment `events-<first>.jsonl` and drops the oldest past the limit.
    fn rotate(&self, g: &mut Inner, first: u64) -> Result<(), EventLogError> {
        if let Some((f, _, _)) = g.current.take() {
            let _ = f.sync_data();
        }
        let path = self.dir.join(segment_name(first));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(EventLogError::io(&path, "create"))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(EventLogError::io(&self.dir, "fsync directory"))?;
        g.segments.push_back(Segment { first, path });
        g.current = Some((f, 0, 0));
        while g.segments.len() > 1 && first.saturating_sub(g.segments[1].first) >= self.limits.keep_events {
            if let Some(old) = g.segments.pop_front()
                && let Err(e) = std::fs::remove_file(&old.path)
            {
                tracing::warn!(file = %old.path.display(), %e, "event log: could not drop an old segment");
            }
        }
        Ok(())
    }

    /// Makes every event appended so far durable.
    pub fn sync(&self) -> Result<(), EventLogError> {
        let file = {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if !g.dirty {
                return Ok(());
            }
            g.dirty = false;
            match &g.current {
                Some((f, _, _)) => f.try_clone().map_err(EventLogError::io(&self.dir, "clone"))?,
                None => return Ok(()),
            }
        };
        file.sync_data().map_err(EventLogError::io(&self.dir, "fsync"))
    }

    /// The last event's number (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next_seq - 1
    }

    /// The oldest event's number still readable.
    pub fn first_seq(&self) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.segments.front().map_or(g.next_seq, |s| s.first)
    }

    /// The oldest event still in memory (reading after `tail_first() - 1` or later reads no
    /// file).
    pub fn tail_first(&self) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.tail.front().map_or(g.next_seq, |e| e.seq)
    }

    /// Events the log could not write since it opened.
    pub fn write_errors(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).write_errors
    }

    /// Up to `max` events numbered after `after`, in order, from memory when they are recent
    /// and from the files otherwise. The first may be later than `after + 1` when the events
    /// in between were dropped past the limit (or never written).
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<Arc<Stored>>, EventLogError> {
        let segments: Vec<(u64, PathBuf)> = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if after + 1 >= g.next_seq || max == 0 {
                return Ok(Vec::new());
            }
            if let Some(front) = g.tail.front()
                && front.seq <= after + 1
            {
                let skip = g.tail.partition_point(|e| e.seq <= after);
                return Ok(g.tail.iter().skip(skip).take(max).cloned().collect());
            }
            g.segments.iter().map(|s| (s.first, s.path.clone())).collect()
        };
        // Older than memory: from the segment that holds `after + 1` (or the first kept) on.
        let start = segments
            .partition_point(|(first, _)| *first <= after + 1)
            .saturating_sub(1);
        let mut out = Vec::new();
        for (first, path) in &segments[start..] {
            let (events, _, _) = match read_valid(path, *first) {
                Ok(r) => r,
                // Dropped by a rotation while we read: the next segment goes on.
                Err(EventLogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in events.into_iter().filter(|e| e.seq > after) {
                out.push(Arc::new(e));
                if out.len() >= max {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// The well-formed, consecutively numbered events at the start of segment `path` (numbered from
/// `first`), the length they take, and the file's length.
fn read_valid(path: &Path, first: u64) -> Result<(Vec<Stored>, u64, u64), EventLogError> {
    let f = File::open(path).map_err(EventLogError::io(path, "open"))?;
    let file_len = f.metadata().map_err(EventLogError::io(path, "stat"))?.len();
    let mut r = BufReader::new(f);
    let mut events = Vec::new();
    let mut good = 0u64;
    let mut buf = Vec::new();
    let mut expect = first;
    loop {
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(EventLogError::io(path, "read"))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        let Ok(text) = std::str::from_utf8(&buf[..buf.len() - 1]) else {
            break;
        };
        let Ok(e) = Stored::parse(text) else { break };
        // A segment's events are consecutive; a write lost in the middle (a full disk) is the
        // one gap allowed, forward only.
        if e.seq < expect {
            break;
        }
        expect = e.seq + 1;
        good += n as u64;
        events.push(e);
    }
    Ok((events, good, file_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn small() -> Limits {
        Limits {
            keep_events: 50,
            segment_events: 10,
            tail: 8,
        }
    }

    #[test]
    fn numbers_continue_across_reopens_and_replay_reads_memory_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), small()).unwrap().log;
        for i in 0..35 {
            let e = log.append(i, "test.event", Some("cam0"), json!({ "i": i }));
            assert_eq!(e.seq, i as u64 + 1);
        }
        log.sync().unwrap();
        // From memory (the last 8) and from files (older).
        let recent = log.read_after(30, 100).unwrap();
        assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), [31, 32, 33, 34, 35]);
        let old = log.read_after(3, 5).unwrap();
        assert_eq!(old.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6, 7, 8]);
        let all = log.read_after(0, 1000).unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=35).collect::<Vec<_>>()
        );
        assert_eq!(all[10].data["i"], 10);
        drop(log);
        let opened = EventLog::open(dir.path(), small()).unwrap();
        assert_eq!((opened.last_seq, opened.cut_bytes), (35, 0));
        assert_eq!(opened.log.append(0, "x", None, Value::Null).seq, 36);
        assert_eq!(opened.log.read_after(33, 10).unwrap().len(), 3);
    }

    #[test]
    fn a_torn_tail_is_cut_and_numbering_goes_on_from_the_last_whole_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), small()).unwrap().log;
        for i in 0..4 {
            log.append(i, "test.event", None, json!(i));
        }
        drop(log);
        let seg = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(br#"{"seq":5,"at_us":4,"kind":"test.ev"#).unwrap();
        drop(f);
        let opened = EventLog::open(dir.path(), small()).unwrap();
        assert_eq!(opened.last_seq, 4);
        assert!(opened.cut_bytes > 0);
        assert_eq!(opened.log.append(9, "after", None, Value::Null).seq, 5);
        let all = opened.log.read_after(0, 100).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        // Garbage, a repeated number, a huge line: cut there too.
        for junk in [
            &b"\xff\xfe\n"[..],
            b"{\"seq\":2,\"at_us\":1,\"kind\":\"dup\"}\n",
            &[b'a'; MAX_LINE + 10],
        ] {
            drop(opened.log.read_after(0, 1));
            let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
            f.write_all(junk).unwrap();
            drop(f);
            let again = EventLog::open(dir.path(), small()).unwrap();
            assert_eq!(
                again.last_seq,
                5,
                "{:?}",
                String::from_utf8_lossy(&junk[..junk.len().min(40)])
            );
        }
    }

    #[test]
    fn old_segments_go_past_the_limit_and_replay_says_where_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), small()).unwrap().log;
        for i in 0..200 {
            log.append(i, "test.event", None, Value::Null);
        }
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files <= 7, "{files} segments for 200 events, keep 50 by 10");
        assert!(log.first_seq() > 100 && log.first_seq() <= 151, "{}", log.first_seq());
        let from_start = log.read_after(0, 5).unwrap();
        assert_eq!(
            from_start[0].seq,
            log.first_seq(),
            "a reader that fell behind starts at the first kept"
        );
        assert!(log.read_after(200, 5).unwrap().is_empty());
        assert!(log.read_after(5000, 5).unwrap().is_empty());
    }
}
