//! Evidence holds: time ranges of a camera that retention and disk pressure never delete.
//!
//! Holds are kept outside the index, in `holds.json` on every data directory (written to a
//! temporary file, synced and renamed over the old one), so `store rebuild` cannot lose them and
//! any one surviving disk still knows them. At start the copies are merged.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use media::WallTime;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// File name of the holds on each data directory.
pub const HOLDS_FILE: &str = "holds.json";

/// One hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Id.
    pub id: String,
    /// Camera (all its streams are held).
    pub camera: String,
    /// Start of the held range, µs.
    pub start_us: i64,
    /// End of the held range, µs.
    pub end_us: i64,
    /// Why.
    pub reason: String,
    /// Who placed it.
    pub created_by: String,
    /// When, µs.
    pub created_us: i64,
}

impl Hold {
    /// Whether the hold covers any part of `[start, end)` of `camera`.
    pub fn covers(&self, camera: &str, start: WallTime, end: WallTime) -> bool {
        self.camera == camera && start.as_micros() < self.end_us && end.as_micros() > self.start_us
    }
}

#[derive(Serialize, Deserialize, Default)]
struct HoldsFile {
    holds: Vec<Hold>,
}

/// The node's holds, persisted on every data directory before any call returns.
#[derive(Debug)]
pub struct Holds {
    dirs: Vec<PathBuf>,
    holds: Mutex<BTreeMap<String, Hold>>,
}

impl Holds {
    /// Loads and merges `holds.json` from `dirs` (a missing file is an empty list; an
    /// unreadable one is an error, because silently forgetting a hold could delete evidence).
    pub fn open(dirs: &[PathBuf]) -> Result<Holds, StoreError> {
        let mut holds = BTreeMap::new();
        for d in dirs {
            let p = d.join(HOLDS_FILE);
            match std::fs::read(&p) {
                Ok(bytes) => {
                    let f: HoldsFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Segment {
                        path: p.clone(),
                        detail: format!(
                            "holds file is unreadable ({e}); restore it from another data directory's copy"
                        ),
                    })?;
                    for h in f.holds {
                        holds.insert(h.id.clone(), h);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&p, "read")(e)),
            }
        }
        let h = Holds {
            dirs: dirs.to_vec(),
            holds: Mutex::new(holds),
        };
        // Bring every copy up to date with the merge.
        let all = h.lock().clone();
        h.persist(&all)?;
        Ok(h)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Hold>> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, holds: &BTreeMap<String, Hold>) -> Result<(), StoreError> {
        let body = serde_json::to_vec_pretty(&HoldsFile {
            holds: holds.values().cloned().collect(),
        })
        .map_err(|e| StoreError::Segment {
            path: PathBuf::from(HOLDS_FILE),
            detail: e.to_string(),
        })?;
        for d in &self.dirs {
            write_durably(&d.join(HOLDS_FILE), &body)?;
        }
        Ok(())
    }

    /// Places a hold (durable on every data directory when this returns).
    pub fn add(
        &self,
        camera: &str,
        start: WallTime,
        end: WallTime,
        reason: &str,
        by: &str,
    ) -> Result<Hold, StoreError> {
        let mut raw = [0u8; 8];
        rand::fill(&mut raw);
        let hold = Hold {
            id: raw.iter().map(|b| format!("{b:02x}")).collect(),
            camera: camera.to_owned(),
            start_us: start.as_micros(),
            end_us: end.as_micros(),
            reason: reason.to_owned(),
            created_by: by.to_owned(),
            created_us: WallTime::now().as_micros(),
        };
        let mut holds = self.lock();
        let mut next = holds.clone();
        next.insert(hold.id.clone(), hold.clone());
        self.persist(&next)?;
        *holds = next;
        Ok(hold)
    }

    /// Takes in a hold placed elsewhere (another member of the cluster), under its own id;
    /// `false` when it is already here. Durable on every data directory when this returns.
    pub fn adopt(&self, hold: Hold) -> Result<bool, StoreError> {
        let mut holds = self.lock();
        if holds.contains_key(&hold.id) {
            return Ok(false);
        }
        let mut next = holds.clone();
        next.insert(hold.id.clone(), hold);
        self.persist(&next)?;
        *holds = next;
        Ok(true)
    }

    /// Releases a hold; `None` if there is no such hold.
    pub fn release(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let mut holds = self.lock();
        let mut next = holds.clone();
        let Some(h) = next.remove(id) else { return Ok(None) };
        self.persist(&next)?;
        *holds = next;
        Ok(Some(h))
    }

    /// Every hold.
    pub fn list(&self) -> Vec<Hold> {
        self.lock().values().cloned().collect()
    }

    /// Whether any hold covers part of `[start, end)` of `camera`.
    pub fn covers(&self, camera: &str, start: WallTime, end: WallTime) -> bool {
        self.lock().values().any(|h| h.covers(camera, start, end))
    }
}

/// Writes `body` to `path` so that a crash leaves either the old or the new content.
fn write_durably(path: &Path, body: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(StoreError::io(&tmp, "create"))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .map_err(StoreError::io(&tmp, "write"))?;
    std::fs::rename(&tmp, path).map_err(StoreError::io(path, "rename"))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(StoreError::io(dir, "sync"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_persist_on_every_disk_and_merge() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = vec![a.path().to_owned(), b.path().to_owned()];
        let h = Holds::open(&dirs).unwrap();
        let t = |s: i64| WallTime::from_micros(s * 1_000_000);
        let one = h.add("cam", t(100), t(200), "case 1", "admin").unwrap();
        let two = h.add("cam", t(500), t(600), "case 2", "admin").unwrap();
        assert!(h.covers("cam", t(150), t(160)));
        assert!(h.covers("cam", t(50), t(101)));
        assert!(!h.covers("cam", t(200), t(300)), "end is exclusive");
        assert!(!h.covers("other", t(150), t(160)));
        assert_eq!(h.release(&one.id).unwrap().map(|x| x.id), Some(one.id.clone()));
        assert_eq!(h.release(&one.id).unwrap(), None);
        // One disk lost its copy: the other still has the hold.
        std::fs::remove_file(a.path().join(HOLDS_FILE)).unwrap();
        let again = Holds::open(&dirs).unwrap();
        assert_eq!(again.list(), vec![two]);
        assert!(a.path().join(HOLDS_FILE).exists(), "copies are restored");
        std::fs::write(b.path().join(HOLDS_FILE), b"{ broken").unwrap();
        assert!(
            Holds::open(&dirs)
                .unwrap_err()
                .to_string()
                .contains("holds file is unreadable")
        );
    }
}
