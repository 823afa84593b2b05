//! The temporary cache of recorded video an upper node fetched from below, so that a second
//! viewer of the same range does not cross a thin link again. It is not storage: entries are
//! dropped least recently used first above `size`, and after `max_age`; nothing in it is ever
//! indexed, retained or recorded, and it lives outside the segment tree.
//!
//! Each entry is two files in the cache directory: `<key>.data` (the bytes as the lower node
//! sent them) and `<key>.json` (length, SHA-256, when it was made, the answer's headers). An
//! entry is written under a temporary name and renamed only once its hash is computed; before an
//! entry is served its length is checked, and on its first use in this process its hash too, so
//! a damaged entry is dropped and fetched again rather than served.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

/// What is kept beside an entry's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// Length of the data.
    pub len: u64,
    /// SHA-256 of the data, hex.
    pub sha256: String,
    /// When it was fetched (seconds since the epoch).
    pub created: u64,
    /// The answer's headers worth replaying (content type, ETag, the range's first frame...).
    pub headers: Vec<(String, String)>,
}

/// A cache entry ready to serve.
#[derive(Clone, Debug)]
pub struct Cached {
    /// Its data file.
    pub path: PathBuf,
    /// What is known of it.
    pub meta: EntryMeta,
}

#[derive(Debug)]
struct Entry {
    meta: EntryMeta,
    used: Instant,
    verified: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: u64,
    hits: u64,
    misses: u64,
    evicted: u64,
    damaged: u64,
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    state: Mutex<State>,
}

/// Why the cache cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("playback cache {path}: {op} failed: {source}; check the disk")]
pub struct CacheError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The I/O error.
    pub source: std::io::Error,
}

/// A cache key: the SHA-256 of what identifies the answer (link, request, range).
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

impl Cache {
    /// Opens the cache in `dir` (creating it), keeping what is there and consistent, dropping
    /// leftovers of interrupted fills, and at most `max_bytes` for at most `max_age`.
    pub fn open(dir: &Path, max_bytes: u64, max_age: Duration) -> Result<Cache, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError {
            path: dir.to_owned(),
            op: "create directory",
            source,
        })?;
        let mut st = State::default();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.ends_with(".partial") {
                let _ = std::fs::remove_file(&p);
                continue;
            }
            let Some(k) = name.strip_suffix(".json") else { continue };
            let meta: Option<EntryMeta> = std::fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let data = dir.join(format!("{k}.data"));
            match meta {
                Some(m) if std::fs::metadata(&data).is_ok_and(|d| d.len() == m.len) => {
                    st.bytes += m.len;
                    st.entries.insert(
                        k.to_owned(),
                        Entry {
                            meta: m,
                            used: Instant::now(),
                            verified: false,
                        },
                    );
                }
                _ => {
                    let _ = std::fs::remove_file(&p);
                    let _ = std::fs::remove_file(&data);
                }
            }
        }
        let cache = Cache {
            dir: dir.to_owned(),
            max_bytes,
            max_age,
            state: Mutex::new(st),
        };
        cache.evict(0);
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{key}.data")),
            self.dir.join(format!("{key}.json")),
        )
    }

    fn drop_entry(&self, st: &mut State, key: &str) {
        if let Some(e) = st.entries.remove(key) {
            st.bytes -= e.meta.len;
            let (d, j) = self.paths(key);
            let _ = std::fs::remove_file(j);
            let _ = std::fs::remove_file(d);
        }
    }

    /// Drops expired entries, then least recently used ones until `room` more bytes fit.
    fn evict(&self, room: u64) {
        let mut st = self.lock();
        let now = now_secs();
        let expired: Vec<String> = st
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.meta.created) > self.max_age.as_secs())
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.drop_entry(&mut st, &k);
            st.evicted += 1;
        }
        while st.bytes + room > self.max_bytes {
            let Some(oldest) = st.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else {
                break;
            };
            self.drop_entry(&mut st, &oldest);
            st.evicted += 1;
        }
    }

    /// The entry for `key`, checked, if there is one (a hit); `None` is a miss.
    pub fn get(&self, key: &str) -> Option<Cached> {
        let (data, _) = self.paths(key);
        let (meta, verified) = {
            let mut st = self.lock();
            let now = now_secs();
            let fresh = st
                .entries
                .get(key)
                .map(|e| now.saturating_sub(e.meta.created) <= self.max_age.as_secs());
            match fresh {
                Some(true) => {}
                Some(false) => {
                    self.drop_entry(&mut st, key);
                    st.misses += 1;
                    return None;
                }
                None => {
                    st.misses += 1;
                    return None;
                }
            }
            let e = st.entries.get_mut(key)?;
            e.used = Instant::now();
            (e.meta.clone(), e.verified)
        };
        // Checked outside the lock: hashing a large entry takes a moment.
        let intact = if verified {
            std::fs::metadata(&data).is_ok_and(|m| m.len() == meta.len)
        } else {
            hash_file(&data).is_ok_and(|(len, h)| len == meta.len && h == meta.sha256)
        };
        let mut st = self.lock();
        if !intact {
            warn!(
                entry = key,
                "playback cache entry damaged (length or hash); dropped, it will be fetched again"
            );
            self.drop_entry(&mut st, key);
            st.damaged += 1;
            st.misses += 1;
            return None;
        }
        if let Some(e) = st.entries.get_mut(key) {
            e.verified = true;
        }
        st.hits += 1;
        Some(Cached { path: data, meta })
    }

    /// Starts writing the entry for `key`; nothing is visible until [`Fill::finish`].
    pub fn fill(&self, key: &str) -> Result<Fill<'_>, CacheError> {
        let tmp = self.dir.join(format!("{key}.{}.partial", rand_suffix()));
        let file = File::create(&tmp).map_err(|source| CacheError {
            path: tmp.clone(),
            op: "create",
            source,
        })?;
        Ok(Fill {
            cache: self,
            key: key.to_owned(),
            tmp,
            file: Some(file),
            hash: Sha256::new(),
            len: 0,
        })
    }

    /// Bytes held, entries, hits, misses, entries evicted, entries found damaged.
    pub fn stats(&self) -> CacheStats {
        let st = self.lock();
        CacheStats {
            bytes: st.bytes,
            max_bytes: self.max_bytes,
            entries: st.entries.len(),
            hits: st.hits,
            misses: st.misses,
            evicted: st.evicted,
            damaged: st.damaged,
        }
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The cache's figures, for health and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes held.
    pub bytes: u64,
    /// The limit.
    pub max_bytes: u64,
    /// Entries held.
    pub entries: usize,
    /// Requests served from it.
    pub hits: u64,
    /// Requests it could not serve.
    pub misses: u64,
    /// Entries dropped for age or room.
    pub evicted: u64,
    /// Entries found damaged and dropped.
    pub damaged: u64,
}

impl CacheStats {
    /// Hits over all lookups (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let all = self.hits + self.misses;
        if all == 0 { 0.0 } else { self.hits as f64 / all as f64 }
    }
}

/// An entry being written.
pub struct Fill<'a> {
    cache: &'a Cache,
    key: String,
    tmp: PathBuf,
    file: Option<File>,
    hash: Sha256,
    len: u64,
}

impl Fill<'_> {
    /// Appends `data`.
    pub fn write(&mut self, data: &[u8]) -> Result<(), CacheError> {
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        f.write_all(data).map_err(|source| CacheError {
            path: self.tmp.clone(),
            op: "write",
            source,
        })?;
        self.hash.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the entry visible with `headers`, if it fits the cache at all (room is made by
    /// dropping least recently used entries); returns whether it was kept.
    pub fn finish(mut self, headers: Vec<(String, String)>) -> Result<bool, CacheError> {
        let Some(f) = self.file.take() else { return Ok(false) };
        drop(f);
        if self.len > self.cache.max_bytes {
            let _ = std::fs::remove_file(&self.tmp);
            return Ok(false);
        }
        let sha = std::mem::take(&mut self.hash)
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let meta = EntryMeta {
            len: self.len,
            sha256: sha,
            created: now_secs(),
            headers,
        };
        self.cache.evict(self.len);
        let (data, json) = self.cache.paths(&self.key);
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| CacheError { path, op, source }
        };
        std::fs::rename(&self.tmp, &data).map_err(io("rename", &data))?;
        std::fs::write(&json, serde_json::to_vec(&meta).unwrap_or_default()).map_err(io("write", &json))?;
        let mut st = self.cache.lock();
        if let Some(old) = st.entries.remove(&self.key) {
            st.bytes -= old.meta.len;
        }
        st.bytes += meta.len;
        st.entries.insert(
            self.key.clone(),
            Entry {
                meta,
                used: Instant::now(),
                verified: true,
            },
        );
        Ok(true)
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        // Abandoned before `finish`: its bytes are not an entry.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &Cache, k: &str, bytes: usize) {
        let mut f = c.fill(k).unwrap();
        f.write(&vec![7u8; bytes]).unwrap();
        assert!(f.finish(vec![("etag".into(), format!("\"{k}\""))]).unwrap());
    }

    #[test]
    fn hits_misses_lru_eviction_and_the_size_bound() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path(), 1000, Duration::from_secs(3600)).unwrap();
        assert!(c.get("a").is_none());
        put(&c, "a", 400);
        put(&c, "b", 400);
        assert_eq!(c.get("a").unwrap().meta.len, 400);
        // c needs room: b, the least recently used, goes.
        put(&c, "c", 400);
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some() && c.get("c").is_some());
        let s = c.stats();
        assert!(s.bytes <= 1000 && s.entries == 2, "{s:?}");
        assert_eq!((s.hits, s.misses, s.evicted), (3, 2, 1));
        // Larger than the whole cache: not kept.
        let mut f = c.fill("huge").unwrap();
        f.write(&vec![0u8; 2000]).unwrap();
        assert!(!f.finish(Vec::new()).unwrap());
        // Entries survive a reopen; an abandoned fill leaves nothing.
        drop(c.fill("abandoned").unwrap());
        drop(c);
        let c = Cache::open(d.path(), 1000, Duration::from_secs(3600)).unwrap();
        assert_eq!(
            c.get("c").unwrap().meta.headers,
            [("etag".to_owned(), "\"c\"".to_owned())]
        );
        assert!(
            std::fs::read_dir(d.path())
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial"))
        );
    }

    #[test]
    fn a_damaged_entry_is_dropped_not_served() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path(), 1 << 20, Duration::from_secs(3600)).unwrap();
        put(&c, "k", 1000);
        drop(c);
        // Same length, one byte changed: only the hash can tell.
        let data = d.path().join("k.data");
        let mut b = std::fs::read(&data).unwrap();
        b[500] ^= 1;
        std::fs::write(&data, b).unwrap();
        let c = Cache::open(d.path(), 1 << 20, Duration::from_secs(3600)).unwrap();
        assert!(c.get("k").is_none());
        assert_eq!(c.stats().damaged, 1);
        assert!(!data.exists());
        // A truncated file is dropped at open.
        put(&c, "t", 1000);
        drop(c);
        std::fs::write(d.path().join("t.data"), [1, 2, 3]).unwrap();
        let c = Cache::open(d.path(), 1 << 20, Duration::from_secs(3600)).unwrap();
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn old_entries_expire() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path(), 1 << 20, Duration::from_secs(60)).unwrap();
        put(&c, "old", 10);
        let json = d.path().join("old.json");
        let mut m: EntryMeta = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        m.created -= 120;
        std::fs::write(&json, serde_json::to_vec(&m).unwrap()).unwrap();
        drop(c);
        let c = Cache::open(d.path(), 1 << 20, Duration::from_secs(60)).unwrap();
        assert!(c.get("old").is_none());
        assert_eq!(c.stats().entries, 0);
    }
}
