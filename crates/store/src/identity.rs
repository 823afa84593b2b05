//! Disk identity: `disk.json` in each data directory says which disk it is and which other disks
//! belong to the same node, so that start-up notices a swapped, moved or unmounted disk instead
//! of quietly filling whatever directory is at the configured path.
//!
//! Rules at start (see `docs/storage.md`):
//! * a configured directory that does not exist is created with a new identity (first start);
//! * one that exists, is empty and has no identity is refused: that is what an unmounted mount
//!   point looks like. `sharpeye store init --data DIR` initializes a new empty disk;
//! * one whose identity names another path was moved or swapped: refused, naming both paths;
//! * one without identity that another disk lists as a member was replaced or is missing:
//!   refused;
//! * a non-empty directory without identity (data from before identities) is adopted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::layout::{INDEX_FILE, SEGMENTS_DIR};

/// File name of a disk's identity.
pub const IDENTITY_FILE: &str = "disk.json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    disk_id: String,
    path: PathBuf,
    /// Every disk of the node at the last start: path → disk id.
    members: BTreeMap<PathBuf, String>,
}

fn read(dir: &Path) -> Result<Option<Identity>, StoreError> {
    let p = dir.join(IDENTITY_FILE);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| StoreError::Disk {
            path: dir.to_owned(),
            problem: format!("{IDENTITY_FILE} is unreadable ({e})"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(&p, "read")(e)),
    }
}

fn new_id() -> String {
    let mut raw = [0u8; 8];
    rand::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false)
}

fn has_data(dir: &Path) -> bool {
    dir.join(INDEX_FILE).exists() || dir.join(SEGMENTS_DIR).exists()
}

/// Initializes an empty directory as a new data disk (`sharpeye store init`).
pub fn init(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(StoreError::io(dir, "create directory"))?;
    if read(dir)?.is_some() {
        return Err(StoreError::Disk {
            path: dir.to_owned(),
            problem: "is already a Sharpeye data disk".into(),
        });
    }
    if !is_empty(dir) {
        return Err(StoreError::Disk {
            path: dir.to_owned(),
            problem: "is not empty; initialize only a new, empty disk".into(),
        });
    }
    write(
        dir,
        &Identity {
            disk_id: new_id(),
            path: dir.to_owned(),
            members: BTreeMap::new(),
        },
    )
}

fn write(dir: &Path, id: &Identity) -> Result<(), StoreError> {
    let p = dir.join(IDENTITY_FILE);
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let body = serde_json::to_vec_pretty(id).map_err(|e| StoreError::Disk {
        path: dir.to_owned(),
        problem: e.to_string(),
    })?;
    std::fs::write(&tmp, body).map_err(StoreError::io(&tmp, "write"))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(&tmp, "sync"))?;
    std::fs::rename(&tmp, &p).map_err(StoreError::io(&p, "rename"))?;
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(dir, "sync"))
}

/// Checks the configured data directories against their identities (see the module comment)
/// and records the current set in each. Returns each directory's disk id.
pub fn check(dirs: &[PathBuf]) -> Result<Vec<String>, StoreError> {
    let mut ids: Vec<Option<Identity>> = Vec::new();
    let mut created = vec![false; dirs.len()];
    for (i, d) in dirs.iter().enumerate() {
        if !d.exists() {
            std::fs::create_dir_all(d).map_err(StoreError::io(d, "create directory"))?;
            created[i] = true;
        }
        ids.push(read(d)?);
    }
    let mut members: BTreeMap<PathBuf, String> = BTreeMap::new();
    for id in ids.iter().flatten() {
        members.extend(id.members.clone());
    }
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (i, d) in dirs.iter().enumerate() {
        let id = match &ids[i] {
            Some(id) if id.path != *d => {
                return Err(StoreError::Disk {
                    path: d.clone(),
                    problem: format!(
                        "holds disk {} which belongs at {}: disks were swapped or moved; mount it back at {} or change server.data_dirs",
                        id.disk_id,
                        id.path.display(),
                        id.path.display()
                    ),
                });
            }
            Some(id) => id.disk_id.clone(),
            None => {
                if let Some(expected) = members.get(d) {
                    return Err(StoreError::Disk {
                        path: d.clone(),
                        problem: format!(
                            "has no disk identity but disk {expected} was here: the disk is not mounted or was replaced; mount it, or run `sharpeye store init --data {}` on a replacement",
                            d.display()
                        ),
                    });
                }
                if !created[i] && is_empty(d) {
                    return Err(StoreError::Disk {
                        path: d.clone(),
                        problem: format!(
                            "exists but is empty and has no disk identity, as an unmounted mount point would be; mount the disk, or run `sharpeye store init --data {}` if it is a new disk",
                            d.display()
                        ),
                    });
                }
                if !created[i] && has_data(d) {
                    tracing::warn!(dir = %d.display(), "adopting a data directory without a disk identity");
                }
                new_id()
            }
        };
        if let Some(other) = seen.insert(id.clone(), d.clone()) {
            return Err(StoreError::Disk {
                path: d.clone(),
                problem: format!(
                    "is the same disk ({id}) as {}: each data directory must be its own disk",
                    other.display()
                ),
            });
        }
        out.push(id);
    }
    let set: BTreeMap<PathBuf, String> = dirs.iter().cloned().zip(out.iter().cloned()).collect();
    for (d, id) in dirs.iter().zip(&out) {
        write(
            d,
            &Identity {
                disk_id: id.clone(),
                path: d.clone(),
                members: set.clone(),
            },
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_swapped_unmounted_and_replaced_disks() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("b");
        let ids = check(&[a.clone(), b.clone()]).unwrap();
        assert_ne!(ids[0], ids[1]);
        assert_eq!(check(&[a.clone(), b.clone()]).unwrap(), ids, "stable across starts");

        // Swapped mount points.
        let tmp = root.path().join("t");
        std::fs::rename(&a, &tmp).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(&tmp, &b).unwrap();
        let e = check(&[a.clone(), b.clone()]).unwrap_err().to_string();
        assert!(e.contains("were swapped or moved"), "{e}");
        std::fs::rename(&a, &tmp).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(&tmp, &b).unwrap();

        // b unmounted: an empty directory where the disk was.
        let saved = root.path().join("saved");
        std::fs::rename(&b, &saved).unwrap();
        std::fs::create_dir(&b).unwrap();
        let e = check(&[a.clone(), b.clone()]).unwrap_err().to_string();
        assert!(e.contains("is not mounted or was replaced"), "{e}");
        std::fs::remove_dir(&b).unwrap();
        std::fs::rename(&saved, &b).unwrap();
        assert!(check(&[a.clone(), b.clone()]).is_ok());

        // A single disk whose mount point is empty.
        let c = root.path().join("c");
        std::fs::create_dir(&c).unwrap();
        let e = check(std::slice::from_ref(&c)).unwrap_err().to_string();
        assert!(e.contains("as an unmounted mount point would be"), "{e}");
        init(&c).unwrap();
        assert!(check(std::slice::from_ref(&c)).is_ok());
        assert!(init(&c).is_err(), "init refuses an existing disk");
    }
}
