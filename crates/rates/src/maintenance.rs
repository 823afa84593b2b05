//! Maintenance windows: time a camera is down on purpose (a pole replaced, a lens cleaned) is
//! not counted against its rates. A window names cameras or an org (and everything under it),
//! a time span and why; windows are kept in one JSON file replaced atomically.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Most windows kept.
pub const MAX_WINDOWS: usize = 10_000;

/// One maintenance window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// Its id.
    pub id: String,
    /// Cameras it covers (with `org`, either may be empty but not both).
    #[serde(default)]
    pub cameras: Vec<String>,
    /// An org path it covers, with everything under it.
    #[serde(default)]
    pub org: Option<String>,
    /// From (µs since the epoch).
    pub start_us: i64,
    /// To (µs since the epoch).
    pub end_us: i64,
    /// Why.
    pub reason: String,
    /// Who declared it.
    pub created_by: String,
}

impl Window {
    /// Does it cover camera `id` of org `org` at `at_us`?
    pub fn covers(&self, id: &str, org: &str, at_us: i64) -> bool {
        if !(self.start_us..self.end_us).contains(&at_us) {
            return false;
        }
        self.cameras.iter().any(|c| c == id)
            || self
                .org
                .as_deref()
                .is_some_and(|o| org == o || org.starts_with(&format!("{o}/")))
    }
}

/// The node's maintenance windows.
#[derive(Debug)]
pub struct Windows {
    path: PathBuf,
    list: Mutex<Vec<Window>>,
}

impl Windows {
    /// The windows of the file at `path` (absent or unreadable: none, with a warning).
    pub fn open(path: &Path) -> Windows {
        let list = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), %e, "maintenance windows unreadable; starting without them");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Windows {
            path: path.to_owned(),
            list: Mutex::new(list),
        }
    }

    /// Every window.
    pub fn list(&self) -> Vec<Window> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Is camera `id` of org `org` under maintenance at `at_us`?
    pub fn covers(&self, id: &str, org: &str, at_us: i64) -> bool {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|w| w.covers(id, org, at_us))
    }

    /// Adds a window, durable before it returns.
    pub fn add(&self, w: Window) -> std::io::Result<()> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX_WINDOWS {
            return Err(std::io::Error::other(format!(
                "at most {MAX_WINDOWS} maintenance windows; delete old ones"
            )));
        }
        let mut next = g.clone();
        next.push(w);
        self.persist(&next)?;
        *g = next;
        Ok(())
    }

    /// Removes a window; `None` if there is none with that id.
    pub fn remove(&self, id: &str) -> std::io::Result<Option<Window>> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = g.iter().position(|w| w.id == id) else {
            return Ok(None);
        };
        let mut next = g.clone();
        let w = next.remove(i);
        self.persist(&next)?;
        *g = next;
        Ok(Some(w))
    }

    fn persist(&self, list: &[Window]) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_their_cameras_org_and_time_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maintenance.json");
        let w = Windows::open(&path);
        w.add(Window {
            id: "m1".into(),
            cameras: vec!["cam9".into()],
            org: Some("city/east".into()),
            start_us: 100,
            end_us: 200,
            reason: "pole replaced".into(),
            created_by: "admin".into(),
        })
        .unwrap();
        assert!(w.covers("cam9", "city/west", 150));
        assert!(w.covers("camX", "city/east/a", 150));
        assert!(!w.covers("camX", "city/eastern", 150));
        assert!(!w.covers("cam9", "x", 200), "the end is not covered");
        assert!(!w.covers("cam9", "x", 99));
        drop(w);
        let again = Windows::open(&path);
        assert_eq!(again.list().len(), 1);
        assert_eq!(again.remove("m1").unwrap().unwrap().reason, "pole replaced");
        assert!(again.remove("m1").unwrap().is_none());
        std::fs::write(&path, b"{").unwrap();
        assert!(Windows::open(&path).list().is_empty());
    }
}
