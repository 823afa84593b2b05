//! How links and the cache are configured (`[[lower]]`, `[[upper]]`, `[cache]`); the binary's
//! checker builds these, the node hands them over.

use std::time::Duration;

use url::Url;

/// Who opens the connection of a link between two nodes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Dial {
    /// The upper connects to the lower's API.
    #[default]
    Down,
    /// The lower connects out to the upper and keeps the connection open (NAT, one-way
    /// gateways); the upper's requests and the media flow over it.
    Up,
}

impl Dial {
    /// `down` or `up`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dial::Down => "down",
            Dial::Up => "up",
        }
    }
}

/// One `[[lower]]` entry: a lower node this node may pull from.
#[derive(Clone, Debug)]
pub struct LowerConfig {
    /// The lower node's id.
    pub id: String,
    /// Its API (for `dial = "down"`; with `dial = "up"`, where it is for messages only).
    pub url: Option<Url>,
    /// The API token the lower node issued for this node (`sk_...`).
    pub token: String,
    /// The link's budget, kbit/s.
    pub link_kbps: u64,
    /// Where the lower node's cameras hang in this node's org tree.
    pub org: String,
    /// Who connects.
    pub dial: Dial,
    /// What a main stream is expected to need before this link ever measured it, kbit/s
    /// (`main_mbps`; [`crate::link::DEFAULT_MAIN_KBPS`] unless set).
    pub main_kbps: u64,
    /// The same for a sub-stream (`sub_mbps`; [`crate::link::DEFAULT_SUB_KBPS`]).
    pub sub_kbps: u64,
}

/// One `[[upper]]` entry: an upper node this node connects out to (`dial = "up"` links).
#[derive(Clone, Debug)]
pub struct UpperConfig {
    /// The upper node's id.
    pub id: String,
    /// Its API.
    pub url: Url,
    /// The API token this node issued for the upper (the same the upper's `[[lower]]` entry
    /// holds): it proves this node to the upper, and scopes the upper's requests here.
    pub token: String,
}

/// `[cache]`: the temporary cache of what this node pulled from below. Never storage: no
/// retention, bounded by size and age.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most bytes kept.
    pub size: u64,
    /// Entries older than this are dropped.
    pub max_age: Duration,
}

impl Default for CacheConfig {
    /// 2 GB for a day.
    fn default() -> Self {
        CacheConfig {
            size: 2_000_000_000,
            max_age: Duration::from_secs(86_400),
        }
    }
}
