//! What can go wrong with the event log and the webhook subscriptions.

use std::path::PathBuf;

/// An error of this crate, naming the file or the value concerned and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// A file could not be read or written.
    #[error("event log {}: {action} failed: {source}; check the data disk", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the log is not an event (outside input: the file may have been damaged).
    #[error("event line: {0}")]
    Line(String),
    /// A webhook subscription field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`url`, `kinds[2]`, `secret`).
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl EventLogError {
    pub(crate) fn io<'a>(
        path: &'a std::path::Path,
        action: &'static str,
    ) -> impl FnOnce(std::io::Error) -> EventLogError + 'a {
        move |source| EventLogError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> EventLogError {
        EventLogError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
