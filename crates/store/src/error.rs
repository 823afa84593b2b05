//! The store's error type.

use std::io;
use std::path::PathBuf;

/// What went wrong in the store. Every variant names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{path}: {op} failed: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`create`, `write`, `sync`, ...).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The redb index failed.
    #[error("index {path}: {source}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// redb's error.
        source: Box<redb::Error>,
    },
    /// An index entry does not decode.
    #[error(
        "index {path}: entry {key} is corrupt ({detail}); run `sharpeye store rebuild --data DIR` to regenerate the index from the segment files"
    )]
    CorruptEntry {
        /// The index file.
        path: PathBuf,
        /// The entry's key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A segment file is not one Sharpeye wrote, or is damaged before its first fragment.
    #[error("segment file {path}: {detail}")]
    Segment {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A data directory is not the disk it should be (swapped, unmounted, replaced).
    #[error("data directory {path} {problem}")]
    Disk {
        /// The configured directory.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {path} is in use by another Sharpeye process: stop it before running this command")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The recorder's threads have stopped (after an earlier fatal error or shutdown).
    #[error("the recorder has stopped")]
    Stopped,
}

impl StoreError {
    /// True if the error is the file system running out of space (or quota).
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, op, source }
    }
}
