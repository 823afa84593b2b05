//! Reading the log back: queries by time, actor, camera and action, and verification of the
//! whole chain from the raw bytes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{AuditError, GENESIS, Record, files, io_err, seal, split_sealed};

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
            && self.actor.as_ref().is_none_or(|a| *a == r.event.actor)
            && self.camera.as_ref().is_none_or(|c| r.event.camera.as_ref() == Some(c))
            && self.action.as_ref().is_none_or(|a| match a.strip_suffix('.') {
                Some(prefix) => r
                    .event
                    .action
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.')),
                None => *a == r.event.action,
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
