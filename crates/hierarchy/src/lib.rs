//! Levels calling each other up: what an upper node needs to pull a lower node's video on
//! demand, shared by native node-to-node links and (later) GB/T 28181 cascade.
//!
//! * [`budget`]: a link's bandwidth budget (sans-IO): admission, sub-stream fallback, refusals
//!   that name what uses the link; [`meter`]: throughput over a window.
//! * [`link`]: one link at run time: reachability, budget, what crosses it, what it shares.
//! * [`client`]: HTTP to a lower node, over a connection either side opened.
//! * [`catalog`] and [`sync`]: the lower node's cameras, checked, and kept current from its
//!   listing and its event stream ([`sse`]).
//! * [`remote`]: a lower node's camera as a supervised source (one pull per stream per link).
//! * [`recorded`] and [`cache`]: its recorded video fetched on demand, through the temporary
//!   cache.
//! * [`tunnel`]: `dial = "up"`, the link's connection opened by the lower node.
//! * [`config`]: how links and the cache are configured; [`level`]: the four levels.

pub mod budget;
pub mod cache;
pub mod catalog;
pub mod client;
pub mod config;
pub mod level;
pub mod link;
pub mod meter;
pub mod pacer;
pub mod recorded;
pub mod remote;
pub mod sse;
pub mod sync;
pub mod tunnel;

pub use budget::{Budget, LinkRefusal, PullKey, StreamRates};
pub use level::Level;
pub use link::{Link, LinkState};
