//! The rates a governance centre reports for its cameras, per organisation and over time:
//! **online** (the stream is up), **intact** (完好: the video is usable — frames at the expected
//! rate, not frozen, not black) and **networked** (联网: the camera is reachable from this node),
//! plus recording completeness.
//!
//! - [`detect`]: whether one camera's video is intact, judged from the coded stream alone
//!   (frame sizes, key frames, identical frames, the frame rate), so that it costs nothing per
//!   frame beyond a few comparisons: no decoding;
//! - [`picture`]: the field's thresholds on a decoded picture (dark, overexposed, low contrast,
//!   blurred), for nodes that can decode a key frame now and then;
//! - [`ledger`]: per camera and day, the seconds it was expected, online, intact, networked and
//!   recording, and the seconds of each cause of failure; an append-only log of the transitions;
//!   daily rollups written to disk (today's every minute) so that a year of reports is a few
//!   hundred small files read.
//!
//! Sans-IO but for the ledger's files; the node feeds frames and a once-a-second tick.

pub mod detect;
pub mod ledger;
pub mod maintenance;
pub mod picture;

pub use detect::{Cause, FrameInfo, IntactDetector};
pub use ledger::{CameraState, DayTotals, Ledger, Totals};
pub use picture::PictureStats;
