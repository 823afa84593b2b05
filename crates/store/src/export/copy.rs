//! The export's copy path: one package file's bytes read from the segment files, hashed and
//! written into the zip, with the disk, SHA-256 and the writer kept busy at once.
//!
//! An exported hour is a few dozen segment files of which it wants nearly every byte: each
//! fragment's samples, skipping only the few hundred bytes of each `moof`. Reading it piece by
//! piece (one read per fragment, ~0.5 MB) leaves the disk idle between requests and makes the
//! kernel's read-ahead guess; instead the reader covers each file's run of pieces with large
//! block reads (`BLOCK`), asks the kernel to read the next file ahead while it works on this one,
//! and hands the pieces on as ranges of those blocks without copying them. SHA-256 cannot be
//! split, so it has a thread of its own and is what sets the pace; the reader and the writer
//! (the zip's CRC-32 and the copy into the page cache) share the other core.
//!
//! Reads go through the page cache. Direct I/O was measured (`benches/playback.rs`, one
//! request in flight, 8 MB blocks) and lost everywhere: cold 1.26 against 1.50 GB/s, and warm
//! exports, which are common (the footage of an incident an hour ago is still cached), fell from
//! 1.6 to 1.0–1.3 GB/s, since every block went back to the disk.

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};

use bytes::Bytes;
use media::progressive::{Part, Piece};
use sha2::{Digest, Sha256};

use super::PackageFile;
use crate::StoreError;

/// Size of one read. Large enough that a request's fixed cost is noise next to its transfer.
const BLOCK: usize = 8 << 20;
/// Blocks in flight between the reader, the hasher and the writer.
const BUFFERS: usize = 6;

/// What the reader hands on, in the file's order.
enum Chunk {
    /// Bytes of the MP4 head (built in memory).
    Head(Bytes),
    /// A block and the ranges of it that belong to the file, in order.
    Block(Vec<u8>, Vec<Range<usize>>),
}

impl Chunk {
    fn for_each(&self, mut f: impl FnMut(&[u8])) {
        match self {
            Chunk::Head(b) => f(b),
            Chunk::Block(buf, ranges) => ranges.iter().for_each(|r| f(&buf[r.clone()])),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Chunk::Head(b) => b.len() as u64,
            Chunk::Block(_, ranges) => ranges.iter().map(|r| (r.end - r.start) as u64).sum(),
        }
    }
}

/// Writes `f` to `out`; returns its SHA-256 (hex). `progress(n)` is told of every `n` media
/// bytes written. `partial` names the package in errors.
pub(super) fn copy_hashed<W: Write>(
    f: &PackageFile<'_>,
    out: &mut W,
    partial: &Path,
    progress: &mut impl FnMut(u64),
) -> Result<String, StoreError> {
    std::thread::scope(|scope| {
        let (read_tx, read_rx) = sync_channel::<Result<Chunk, StoreError>>(BUFFERS);
        let (hashed_tx, hashed_rx) = sync_channel::<Result<Chunk, StoreError>>(BUFFERS);
        let (empty_tx, empty_rx) = channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            let _ = empty_tx.send(vec![0u8; BLOCK]);
        }
        scope.spawn(move || read_pieces(f, &read_tx, &empty_rx));
        let hasher = scope.spawn(move || {
            let mut sha = Sha256::new();
            for chunk in read_rx {
                if let Ok(c) = &chunk {
                    c.for_each(|b| sha.update(b));
                }
                if hashed_tx.send(chunk).is_err() {
                    break;
                }
            }
            super::hex(&sha.finalize())
        });
        for chunk in hashed_rx {
            let chunk = chunk?;
            let mut written = Ok(());
            chunk.for_each(|b| {
                if written.is_ok() {
                    written = out.write_all(b);
                }
            });
            written.map_err(StoreError::io(partial, "write"))?;
            progress(chunk.len());
            if let Chunk::Block(buf, _) = chunk {
                let _ = empty_tx.send(buf);
            }
        }
        hasher.join().map_err(|_| StoreError::Stopped)
    })
}

/// The most a run reads that no piece wants (a fragment's `moof` is a few hundred bytes).
const MAX_GAP: u64 = 64 << 10;

/// Starts the package's writeback as it grows, so that the final `fsync` finds most of it on
/// disk already, and so that a large export does not pile up gigabytes of dirty pages that the
/// recorder's own syncs would then wait behind.
pub(super) struct Writeback {
    file: Option<File>,
    pending: u64,
}

/// Dirty bytes after which writeback is started.
const WRITEBACK_EVERY: u64 = 64 << 20;

impl Writeback {
    /// For the package being written to `out` (a second handle on it; without one, nothing is
    /// started early and the final sync does it all).
    pub(super) fn new(out: &File) -> Writeback {
        Writeback {
            file: out.try_clone().ok(),
            pending: 0,
        }
    }

    /// Notes `n` more bytes written.
    pub(super) fn wrote(&mut self, n: u64) {
        self.pending += n;
        if self.pending < WRITEBACK_EVERY {
            return;
        }
        self.pending = 0;
        if let Some(f) = &self.file {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid descriptor owned by `f`; SYNC_FILE_RANGE_WRITE only starts writeback
            // of the file's dirty pages (offset 0, length 0: all of them) and touches no memory.
            // rustix has no wrapper for it. A failure only means the final fsync does the work.
            let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }
}

/// A run of consecutive pieces from one source file, in ascending order.
struct Run {
    source: u32,
    parts: Vec<Part>,
}

/// Splits the pieces into heads and runs of one file each. A piece that goes back in its file
/// starts a new run, so every run reads forward, and so does one far past the last.
fn runs(pieces: Vec<Piece>) -> Vec<Result<Run, Bytes>> {
    let mut out: Vec<Result<Run, Bytes>> = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Head(b) => out.push(Err(b)),
            Piece::File(p) => match out.last_mut() {
                Some(Ok(run))
                    if run.source == p.source
                        && run.parts.last().is_some_and(|l| {
                            l.offset + l.len <= p.offset && p.offset - (l.offset + l.len) <= MAX_GAP
                        }) =>
                {
                    run.parts.push(p)
                }
                _ => out.push(Ok(Run {
                    source: p.source,
                    parts: vec![p],
                })),
            },
        }
    }
    out
}

/// Sends the pieces of `f` in order, reading each run's span in blocks taken from `empty`.
fn read_pieces(f: &PackageFile<'_>, full: &SyncSender<Result<Chunk, StoreError>>, empty: &Receiver<Vec<u8>>) {
    let runs = runs(f.file.pieces(0, f.file.len));
    let mut open: Option<(u32, File)> = None;
    // The next file, opened early to be read ahead; used when its run comes.
    let mut ahead: Option<(u32, File)> = None;
    for (i, run) in runs.iter().enumerate() {
        let run = match run {
            Err(head) => {
                if full.send(Ok(Chunk::Head(head.clone()))).is_err() {
                    return;
                }
                continue;
            }
            Ok(run) => run,
        };
        let src = &f.sources[run.source as usize];
        if open.as_ref().is_none_or(|(s, _)| *s != run.source) {
            let opened = match ahead.take() {
                Some((s, file)) if s == run.source => Ok(file),
                _ => File::open(src),
            };
            match opened {
                Ok(file) => open = Some((run.source, file)),
                Err(e) => {
                    let _ = full.send(Err(StoreError::io(src, "open")(e)));
                    return;
                }
            }
            // The next file is asked for now, so the disk reads it while this one is hashed.
            if let Some(next) = runs[i + 1..].iter().find_map(|r| r.as_ref().ok())
                && next.source != run.source
            {
                ahead = read_ahead(&f.sources[next.source as usize], next).map(|file| (next.source, file));
            }
        }
        let Some((_, file)) = open.as_ref() else { return };
        let (lo, hi) = span(run);
        let _ = rustix::fs::fadvise(
            file,
            lo,
            std::num::NonZeroU64::new(hi - lo),
            rustix::fs::Advice::Sequential,
        );
        let mut parts = run.parts.iter().peekable();
        let mut pos = lo;
        while pos < hi {
            let Ok(mut buf) = empty.recv() else { return };
            let want = (hi - pos).min(BLOCK as u64) as usize;
            if let Err(e) = file.read_exact_at(&mut buf[..want], pos) {
                let _ = full.send(Err(StoreError::io(src, "read")(e)));
                return;
            }
            // The parts (or their remainders) inside [pos, pos + want), as ranges of buf.
            let end = pos + want as u64;
            let mut ranges = Vec::new();
            while let Some(p) = parts.peek() {
                let (a, b) = (p.offset.max(pos), (p.offset + p.len).min(end));
                if a < b {
                    ranges.push((a - pos) as usize..(b - pos) as usize);
                }
                if p.offset + p.len <= end {
                    parts.next();
                } else {
                    break;
                }
            }
            pos = end;
            if full.send(Ok(Chunk::Block(buf, ranges))).is_err() {
                return;
            }
        }
    }
}

/// The bytes `[lo, hi)` of its file that a run covers.
fn span(run: &Run) -> (u64, u64) {
    let lo = run.parts.first().map_or(0, |p| p.offset);
    let hi = run.parts.last().map_or(0, |p| p.offset + p.len);
    (lo, hi)
}

/// Opens `path` and asks the kernel to start reading the span of `run` in it; any failure
/// only costs speed (the file is opened again, and its open error reported, when its run comes).
fn read_ahead(path: &Path, run: &Run) -> Option<File> {
    let file = File::open(path).ok()?;
    let (lo, hi) = span(run);
    let _ = rustix::fs::fadvise(
        &file,
        lo,
        std::num::NonZeroU64::new(hi - lo),
        rustix::fs::Advice::WillNeed,
    );
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package<'a>(file: &'a media::progressive::VirtualMp4, sources: &'a [std::path::PathBuf]) -> PackageFile<'a> {
        PackageFile {
            name: "x.mp4".into(),
            file,
            sources,
            span: super::super::Span {
                start: String::new(),
                end: String::new(),
            },
        }
    }

    fn part(source: u32, offset: u64, len: u64) -> Piece {
        Piece::File(Part { source, offset, len })
    }

    #[test]
    fn runs_group_one_file_s_forward_pieces_and_keep_heads_in_place() {
        let r = runs(vec![
            Piece::Head(Bytes::from_static(b"head")),
            part(0, 10, 5),
            part(0, 20, 5),
            part(1, 0, 5),
            part(1, 0, 5), // back in its file: a new run
            part(0, 30, 1),
            part(0, 31 + MAX_GAP + 1, 1), // far past the last: a new run
        ]);
        let shape: Vec<String> = r
            .iter()
            .map(|x| match x {
                Err(h) => format!("head {}", h.len()),
                Ok(run) => format!("{}:{}", run.source, run.parts.len()),
            })
            .collect();
        assert_eq!(shape, ["head 4", "0:2", "1:1", "1:1", "0:1", "0:1"]);
    }

    /// Pieces that cross block boundaries, skip gaps, go back and change files come out as the
    /// same bytes, hashed as such, as reading each piece alone would give.
    #[test]
    fn blocks_deliver_exactly_the_pieces_bytes_and_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect()
        };
        let a = noise(2 * BLOCK + 12_345);
        let b = noise(300_000);
        let sources = [dir.path().join("a"), dir.path().join("b")];
        std::fs::write(&sources[0], &a).unwrap();
        std::fs::write(&sources[1], &b).unwrap();
        let parts = [
            Part {
                source: 0,
                offset: 3,
                len: 1000,
            },
            Part {
                source: 0,
                offset: 1500,
                len: BLOCK as u64,
            }, // crosses a block
            Part {
                source: 0,
                offset: BLOCK as u64 + 2000,
                len: BLOCK as u64 + 5000,
            }, // crosses the next
            Part {
                source: 1,
                offset: 10,
                len: 200_000,
            },
            Part {
                source: 1,
                offset: 5,
                len: 7,
            }, // back in its file
            Part {
                source: 0,
                offset: 2 * BLOCK as u64 + 12_000,
                len: 345,
            }, // the file's tail
        ];
        let head = Bytes::from_static(b"ftyp....moov....mdat");
        let mut expected = head.to_vec();
        for p in &parts {
            let src = if p.source == 0 { &a } else { &b };
            expected.extend_from_slice(&src[p.offset as usize..(p.offset + p.len) as usize]);
        }
        let file = media::progressive::VirtualMp4 {
            head,
            parts: parts.to_vec(),
            len: expected.len() as u64,
            samples: 6,
        };
        let f = package(&file, &sources);
        let mut out = Vec::new();
        let mut told = 0;
        let digest = copy_hashed(&f, &mut out, Path::new("x.zip"), &mut |n| told += n).unwrap();
        assert!(out == expected, "bytes differ");
        assert_eq!(told, expected.len() as u64);
        assert_eq!(digest, super::super::hex(&Sha256::digest(&expected)));
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it() {
        let file = media::progressive::VirtualMp4 {
            head: Bytes::new(),
            parts: vec![Part {
                source: 0,
                offset: 0,
                len: 10,
            }],
            len: 10,
            samples: 1,
        };
        let sources = [std::path::PathBuf::from("/nonexistent/seg.mp4")];
        let f = package(&file, &sources);
        let e = copy_hashed(&f, &mut Vec::new(), Path::new("x.zip"), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/seg.mp4"), "{e}");
    }

    #[test]
    fn a_source_shorter_than_its_pieces_is_an_error_not_a_short_package() {
        let dir = tempfile::tempdir().unwrap();
        let sources = [dir.path().join("short")];
        std::fs::write(&sources[0], [7u8; 100]).unwrap();
        let file = media::progressive::VirtualMp4 {
            head: Bytes::new(),
            parts: vec![Part {
                source: 0,
                offset: 50,
                len: 100,
            }],
            len: 100,
            samples: 1,
        };
        let f = package(&file, &sources);
        assert!(copy_hashed(&f, &mut Vec::new(), Path::new("x.zip"), &mut |_| {}).is_err());
    }
}
