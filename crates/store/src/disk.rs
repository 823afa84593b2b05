//! One data directory: its lock, its index and its file-system handle for syncing.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::{StreamId, WallTime};

use rustix::fs::FlockOperation;

use crate::StoreError;
use crate::index::Index;
use crate::layout::{INDEX_FILE, LOCK_FILE, SEGMENTS_DIR};

/// Above this many segment files in one flush round the recorder makes them durable with one
/// `syncfs` instead of one `fdatasync` each (see [`Disk::sync_files`]).
pub const PER_FILE_SYNC_LIMIT: usize = 32;

/// An open data directory. Holding it holds an exclusive `flock` on `DATA/.lock`, so a second
/// recorder or a `store rebuild` cannot work on the same directory at the same time.
#[derive(Debug)]
pub struct Disk {
    root: PathBuf,
    index: Index,
    dir: File,
    _lock: File,
    /// Set when the disk is below its free-space floor and holds only evidence: no new
    /// segments are placed on it.
    blocked: AtomicBool,
    gauge: Arc<SpaceGauge>,
}

/// Keeps segment data out of the last few megabytes of a file system, which belong to the index.
///
/// redb latches the first I/O error of a commit and fails every later operation until the
/// database is reopened, so a commit that hits `ENOSPC` would stop indexing (and with it retention,
/// which needs commits to delete). Segment writes therefore stop short of a reserve and report
/// "out of space" themselves; the index and retention's deletes always find room. The free-space
/// figure is read with `statvfs` at most every 100 ms and counted down by each claim in between,
/// so a thousand cameras' fragments cost a thousand subtractions, not a thousand system calls.
#[derive(Debug)]
pub struct SpaceGauge {
    dir: File,
    root: PathBuf,
    state: Mutex<GaugeState>,
}

#[derive(Debug)]
struct GaugeState {
    read_at: Option<Instant>,
    free: u64,
    reserve: u64,
    refresh: Duration,
}

/// How stale the gauge's free-space figure may get.
const GAUGE_REFRESH: Duration = Duration::from_millis(100);

/// The index's reserve on a file system of `total` bytes: 1/64 of it, at least 1 MiB (a small
/// index grows by doubling its file) and at most 1 GiB.
pub fn index_reserve(total: u64) -> u64 {
    (total / 64).clamp(1 << 20, 1 << 30)
}

impl SpaceGauge {
    fn new(root: &Path) -> Result<SpaceGauge, StoreError> {
        Ok(SpaceGauge {
            dir: File::open(root).map_err(StoreError::io(root, "open"))?,
            root: root.to_owned(),
            state: Mutex::new(GaugeState {
                read_at: None,
                free: 0,
                reserve: 0,
                refresh: GAUGE_REFRESH,
            }),
        })
    }

    /// Takes `bytes` of space for segment data, or answers with an out-of-space error naming
    /// `path` if that would eat into the index's reserve.
    pub fn claim(&self, bytes: u64, path: &Path) -> Result<(), StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.read_at.is_none_or(|t| t.elapsed() >= st.refresh) {
            let (free, total) = statvfs(&self.dir, &self.root)?;
            st.free = free;
            st.reserve = index_reserve(total);
            st.read_at = Some(Instant::now());
        }
        if st.free.saturating_sub(bytes) < st.reserve {
            // Read again next time: retention may be freeing space right now.
            st.read_at = None;
            return Err(StoreError::Io {
                path: path.to_owned(),
                op: "write",
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!(
                        "no space left for segment data: {} bytes free, the last {} are kept for the index",
                        st.free, st.reserve
                    ),
                ),
            });
        }
        st.free -= bytes;
        Ok(())
    }

    /// Keeps the current reading until told otherwise, so a test can fill the file system
    /// behind the gauge's back and meet a real `ENOSPC`.
    #[cfg(test)]
    pub(crate) fn freeze(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).refresh = Duration::MAX;
    }
}

fn statvfs(dir: &File, root: &Path) -> Result<(u64, u64), StoreError> {
    let s = rustix::fs::fstatvfs(dir).map_err(|e| StoreError::Io {
        path: root.to_owned(),
        op: "statvfs",
        source: e.into(),
    })?;
    Ok((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
}

/// Takes the data directory's lock without blocking.
pub(crate) fn lock_dir(root: &Path) -> Result<File, StoreError> {
    let path = root.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io(&path, "open"))?;
    // A lock can be held for a moment by a process that is not using the directory: a child
    // forked by whoever held it last keeps its descriptors until it execs (seen in the tests,
    // which spawn ffprobe beside a store). Half a second of retries tells that from a real user.
    let mut tries = 0;
    loop {
        match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(f),
            Err(rustix::io::Errno::WOULDBLOCK) if tries < 10 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(StoreError::Locked { path: root.to_owned() }),
            Err(e) => {
                return Err(StoreError::Io {
                    path,
                    op: "flock",
                    source: e.into(),
                });
            }
        }
    }
}

impl Disk {
    /// Opens (creating if needed) the data directory at `root`.
    pub fn open(root: &Path) -> Result<Disk, StoreError> {
        fs::create_dir_all(root.join(SEGMENTS_DIR)).map_err(StoreError::io(root, "create directory"))?;
        let lock = lock_dir(root)?;
        let dir = File::open(root).map_err(StoreError::io(root, "open"))?;
        let index = Index::open(&root.join(INDEX_FILE))?;
        Ok(Disk {
            root: root.to_owned(),
            index,
            dir,
            _lock: lock,
            blocked: AtomicBool::new(false),
            gauge: Arc::new(SpaceGauge::new(root)?),
        })
    }

    /// Whether new segments may not be placed here (full of held evidence).
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Marks the disk as (not) accepting new segments.
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    /// Deletes segments crash-safely: the index first forgets them (moving them to its
    /// `deleting` table, one durable commit), then the files are unlinked and their directories
    /// synced, then the `deleting` entries are cleared. A crash anywhere leaves either indexed
    /// segments with their files, or `deleting` entries that start-up finishes. Returns the
    /// bytes freed.
    pub fn delete(&self, keys: &[(StreamId, WallTime, u64)]) -> Result<u64, StoreError> {
        let moved = self.index.begin_delete(keys)?;
        let mut dirs = BTreeSet::new();
        let mut done = Vec::with_capacity(moved.len());
        let mut freed = 0;
        for r in &moved {
            let path = self.root.join(crate::layout::segment_path(&r.stream, r.start, r.seq));
            match fs::remove_file(&path) {
                Ok(()) => freed += r.bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Stays in `deleting`; the next start-up tries again.
                    tracing::error!(file = %path.display(), "cannot delete segment: {e}");
                    continue;
                }
            }
            if let Some(d) = path.parent() {
                dirs.insert(d.to_owned());
            }
            done.push((r.stream.clone(), r.start, r.seq));
        }
        for d in &dirs {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io(d, "sync"))?;
            // A day's directory emptied by retention goes too.
            if fs::remove_dir(d).is_ok()
                && let Some(parent) = d.parent()
            {
                let _ = File::open(parent).and_then(|f| f.sync_all());
            }
        }
        self.index.finish_delete(&done)?;
        Ok(freed)
    }

    /// Finishes deletes a crash interrupted; returns how many.
    pub fn finish_interrupted_deletes(&self) -> Result<usize, StoreError> {
        let pending = self.index.deleting()?;
        let mut dirs = BTreeSet::new();
        for (stream, start, seq) in &pending {
            let path = self.root.join(crate::layout::segment_path(stream, *start, *seq));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, "remove")(e)),
            }
            if let Some(d) = path.parent() {
                dirs.insert(d.to_owned());
            }
        }
        for d in &dirs {
            let _ = File::open(d).and_then(|f| f.sync_all());
        }
        self.index.finish_delete(&pending)?;
        Ok(pending.len())
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Makes everything written to this file system so far durable: file data, new files and
    /// new directories. One `syncfs` covers every segment written since the last call, which
    /// is what lets a thousand cameras share one sync per flush interval instead of a thousand
    /// `fdatasync`s (see `docs/storage.md`).
    pub fn sync(&self) -> Result<(), StoreError> {
        rustix::fs::syncfs(&self.dir).map_err(|e| StoreError::Io {
            path: self.root.clone(),
            op: "syncfs",
            source: e.into(),
        })
    }

    /// Makes the given segment files durable one by one (`fdatasync`), and for the files in
    /// `new_files` also the directories that name them, up to the data directory.
    ///
    /// A small node (the demo, a community-level box with a few cameras) often shares its file
    /// system with other writers; `syncfs` there waits for their dirty pages too (seen: 15 s after
    /// a large build on the same disk). A few `fdatasync`s touch only our files. The recorder
    /// uses this below [`PER_FILE_SYNC_LIMIT`] files a round and [`Disk::sync`] above.
    pub fn sync_files(&self, files: &[PathBuf], new_files: &[PathBuf]) -> Result<(), StoreError> {
        for rel in files {
            let path = self.root.join(rel);
            File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(StoreError::io(&path, "fdatasync"))?;
        }
        let mut dirs = BTreeSet::new();
        for rel in new_files {
            let mut dir = rel.parent();
            while let Some(d) = dir {
                if !dirs.insert(d.to_owned()) {
                    break;
                }
                dir = d.parent();
            }
        }
        for d in dirs {
            let path = self.root.join(d);
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io(&path, "fsync directory"))?;
        }
        Ok(())
    }

    /// Free and total bytes of the file system.
    pub fn space(&self) -> Result<(u64, u64), StoreError> {
        statvfs(&self.dir, &self.root)
    }

    /// The gauge segment writers claim space from.
    pub fn gauge(&self) -> &Arc<SpaceGauge> {
        &self.gauge
    }
}
