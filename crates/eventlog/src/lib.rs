//! Durable events.
//!
//! Dispatch rooms and grid systems act on what the node says happened (a camera went dark, a
//! hold was placed, an incident opened), so an event must not be lost because a screen
//! reconnected or the node restarted. Every event is numbered and written to a bounded log
//! before anyone hears of it:
//! - [`log`]: the log itself: segment files of one JSON line per event, torn tails cut at
//!   start-up, the oldest segments dropped past the configured size; replay after a sequence
//!   number (SSE `Last-Event-ID`, a webhook's cursor);
//! - [`record`]: one event and its line, decoded strictly (the files are outside input);
//! - [`webhook`]: subscriptions, their filters and durable cursors, the delivery state machine
//!   (backoff with jitter, dead-lettering) and the signature other software verifies.
//!
//! Sans-IO except for the log's and the subscriptions' files; the HTTP side lives in `api`.

pub mod log;
pub mod record;
pub mod webhook;

mod error;

pub use error::EventLogError;
pub use log::{EventLog, Limits, Opened};
pub use record::Stored;
