//! GB/T 28181 media toward an upper platform: PS over RTP (std Annex C), over UDP or TCP with
//! either side connecting, from a hub viewer (live) or from recorded frames sent at the pace
//! the upper asks (playback, download, MANSRTSP control).
//!
//! Its own crate, as `rtspd` and `whep` are: one output protocol, fed by the hub like the
//! others; the signalling is `gb28181`'s, the wiring the node's.

pub mod session;
pub mod transport;

pub use session::{Control, Ended, Stats, controls_of, live, recorded};
pub use transport::{Prepared, SendError, Sink};
