//! One data directory: its lock, its index and its file-system handle for syncing.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::StoreError;
use crate::index::Index;
use crate::layout::{INDEX_FILE, LOCK_FILE, SEGMENTS_DIR};

/// An open data directory. Holding it holds an exclusive `flock` on `DATA/.lock`, so a second
/// recorder or a `store rebuild` cannot work on the same directory at the same time.
#[derive(Debug)]
pub struct Disk {
    root: PathBuf,
    index: Index,
    dir: File,
    _lock: File,
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
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked { path: root.to_owned() }),
        Err(e) => Err(StoreError::Io {
            path,
            op: "flock",
            source: e.into(),
        }),
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
        })
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

    /// Free and total bytes of the file system.
    pub fn space(&self) -> Result<(u64, u64), StoreError> {
        let s = rustix::fs::fstatvfs(&self.dir).map_err(|e| StoreError::Io {
            path: self.root.clone(),
            op: "statvfs",
            source: e.into(),
        })?;
        Ok((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
    }
}
