//! Which accesses were audited recently, so that the many requests of one viewing (a player's
//! Range requests, a downloader's retries) are one audit entry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a repeated request for the same playback by the same caller counts as the same
/// viewing: a player fetches one movie with many Range requests, and those are one playback
/// in the audit log, not hundreds.
const SAME_ACCESS: Duration = Duration::from_secs(600);

/// Recently audited accesses (caller, camera, action, detail) and when.
pub struct RecentAccesses(Mutex<lru::LruCache<String, Instant>>);

impl RecentAccesses {
    /// Remembers up to `capacity` accesses.
    pub fn new(capacity: usize) -> RecentAccesses {
        let cap = std::num::NonZeroUsize::new(capacity.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        RecentAccesses(Mutex::new(lru::LruCache::new(cap)))
    }

    /// True if `key` was seen within [`SAME_ACCESS`]; remembers it as seen now otherwise.
    pub fn seen(&self, key: String, now: Instant) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.get(&key).is_some_and(|t| now.duration_since(*t) < SAME_ACCESS) {
            return true;
        }
        seen.put(key, now);
        false
    }
}
