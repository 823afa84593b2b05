//! Built playback movies, cached by ETag so that a player's many Range requests (and a second
//! viewer of the same range) build the `moov` once.

use std::sync::{Arc, Mutex};

use media::progressive::VirtualMp4;
use store::playback::PlaybackPlan;

/// A built movie.
pub struct Movie {
    /// The plan it came from.
    pub plan: PlaybackPlan,
    /// Its layout.
    pub file: Arc<VirtualMp4>,
}

/// The most recently used movies by ETag.
pub struct MovieCache(Mutex<lru::LruCache<String, Arc<Movie>>>);

impl MovieCache {
    /// Keeps up to `capacity` movies.
    pub fn new(capacity: usize) -> MovieCache {
        let cap = std::num::NonZeroUsize::new(capacity.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        MovieCache(Mutex::new(lru::LruCache::new(cap)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, Arc<Movie>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The movie with `etag`, if built recently.
    pub fn get(&self, etag: &str) -> Option<Arc<Movie>> {
        self.lock().get(etag).cloned()
    }

    /// Keeps `movie` under its plan's ETag.
    pub fn put(&self, movie: Arc<Movie>) {
        self.lock().put(movie.plan.etag.clone(), movie);
    }
}
