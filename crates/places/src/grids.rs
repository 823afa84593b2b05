//! The node's grid cells: those of the config file (`[[grids]]`), and those imported through
//! the API, kept in one GeoJSON `FeatureCollection` file replaced atomically (write, fsync,
//! rename) on every change, so a crash leaves the old or the new file and an operator can read
//! it with any GIS tool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::PlacesError;
use crate::geo::Point;
use crate::geojson::{parse_grids, to_feature};
use crate::polygon::{Bbox, Polygon};

/// Most grid cells a node keeps (a city has a few thousand).
pub const MAX_STORED: usize = 50_000;

/// Where a grid cell was defined.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GridSource {
    /// The config file: changed only there.
    Config,
    /// Imported through `POST /api/v1/grids`.
    Api,
}

impl GridSource {
    /// `config` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            GridSource::Config => "config",
            GridSource::Api => "api",
        }
    }
}

/// A grid cell (网格): an id, a name and its area.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// Its code, as the grid-management system names it.
    pub id: String,
    /// Display name.
    pub name: String,
    /// One or more polygons.
    pub area: Vec<Polygon>,
    /// Where it was defined.
    pub source: GridSource,
}

impl Grid {
    /// Is `p` inside the cell?
    pub fn contains(&self, p: Point) -> bool {
        self.area.iter().any(|a| a.contains(p))
    }

    /// The box around all its polygons.
    pub fn bbox(&self) -> Bbox {
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for p in &self.area {
            let (a, b) = p.bbox();
            lo = [lo[0].min(a[0]), lo[1].min(a[1])];
            hi = [hi[0].max(b[0]), hi[1].max(b[1])];
        }
        (lo, hi)
    }
}

/// The grid cells by id; read on every query, written on imports.
#[derive(Debug)]
pub struct Grids {
    path: PathBuf,
    cells: Mutex<Arc<BTreeMap<String, Arc<Grid>>>>,
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> PlacesError + 'a {
    move |source| PlacesError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

impl Grids {
    /// The cells of `configured` and of the file at `path` (absent: none). A file that cannot
    /// be read as GeoJSON is moved aside (`.unreadable-<time>`) with a warning rather than
    /// stopping the node: grids help find cameras; recording must not wait on them.
    pub fn open(path: &Path, configured: Vec<Grid>) -> Result<Grids, PlacesError> {
        let mut cells = BTreeMap::new();
        match std::fs::read(path) {
            Ok(bytes) => {
                let parsed = serde_json::from_slice::<Value>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|v| parse_grids(&v, GridSource::Api).map_err(|e| e.to_string()));
                match parsed {
                    Ok(list) => {
                        for g in list {
                            cells.insert(g.id.clone(), Arc::new(g));
                        }
                    }
                    Err(why) => {
                        let aside = path.with_extension(format!(
                            "unreadable-{}",
                            std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs())
                        ));
                        std::fs::rename(path, &aside).map_err(io(path, "moving aside"))?;
                        tracing::warn!(file = %path.display(), moved_to = %aside.display(), %why, "grid file unreadable; starting without its grids");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path, "read")(e)),
        }
        for mut g in configured {
            g.source = GridSource::Config;
            cells.insert(g.id.clone(), Arc::new(g));
        }
        Ok(Grids {
            path: path.to_owned(),
            cells: Mutex::new(Arc::new(cells)),
        })
    }

    /// Every cell now.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, Arc<Grid>>> {
        self.cells.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One cell.
    pub fn get(&self, id: &str) -> Option<Arc<Grid>> {
        self.snapshot().get(id).cloned()
    }

    /// Adds or replaces imported cells, all or none, durable before it returns. Config cells
    /// cannot be replaced.
    pub fn put(&self, grids: Vec<Grid>) -> Result<(), PlacesError> {
        let mut guard = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        for mut g in grids {
            if next.get(&g.id).is_some_and(|old| old.source == GridSource::Config) {
                return Err(PlacesError::Configured(g.id));
            }
            g.source = GridSource::Api;
            next.insert(g.id.clone(), Arc::new(g));
        }
        if next.len() > MAX_STORED {
            return Err(PlacesError::invalid(
                "features",
                format!("this node keeps at most {MAX_STORED} grid cells; delete some first"),
            ));
        }
        self.persist(&next)?;
        *guard = Arc::new(next);
        Ok(())
    }

    /// Deletes an imported cell; `None` if there is none with that id.
    pub fn remove(&self, id: &str) -> Result<Option<Arc<Grid>>, PlacesError> {
        let mut guard = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        match guard.get(id) {
            None => return Ok(None),
            Some(g) if g.source == GridSource::Config => return Err(PlacesError::Configured(id.to_owned())),
            Some(_) => {}
        }
        let mut next = (**guard).clone();
        let removed = next.remove(id);
        self.persist(&next)?;
        *guard = Arc::new(next);
        Ok(removed)
    }

    fn persist(&self, cells: &BTreeMap<String, Arc<Grid>>) -> Result<(), PlacesError> {
        let features: Vec<Value> = cells
            .values()
            .filter(|g| g.source == GridSource::Api)
            .map(|g| to_feature(g))
            .collect();
        let text = json!({ "type": "FeatureCollection", "features": features }).to_string();
        let path = &self.path;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir, "create directory"))?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp, "create"))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp, "write"))?;
            f.sync_all().map_err(io(&tmp, "fsync"))?;
        }
        std::fs::rename(&tmp, path).map_err(io(path, "rename"))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir, "fsync directory"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(id: &str, source: GridSource) -> Grid {
        let p = |lon, lat| Point { lat, lon };
        Grid {
            id: id.into(),
            name: format!("cell {id}"),
            area: vec![Polygon {
                exterior: vec![p(0.0, 0.0), p(1.0, 0.0), p(1.0, 1.0)],
                holes: vec![],
            }],
            source,
        }
    }

    #[test]
    fn imports_survive_a_reopen_and_config_cells_stay_put() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("places/grids.geojson");
        let grids = Grids::open(&file, vec![cell("c1", GridSource::Config)]).unwrap();
        grids
            .put(vec![cell("a1", GridSource::Api), cell("a2", GridSource::Api)])
            .unwrap();
        assert!(matches!(
            grids.put(vec![cell("c1", GridSource::Api)]),
            Err(PlacesError::Configured(_))
        ));
        assert!(matches!(grids.remove("c1"), Err(PlacesError::Configured(_))));
        assert_eq!(grids.remove("a2").unwrap().unwrap().id, "a2");
        assert!(grids.remove("a2").unwrap().is_none());
        drop(grids);
        let again = Grids::open(&file, vec![cell("c1", GridSource::Config)]).unwrap();
        let ids: Vec<_> = again.snapshot().keys().cloned().collect();
        assert_eq!(ids, ["a1", "c1"]);
        assert_eq!(again.get("a1").unwrap().source, GridSource::Api);
        assert_eq!(again.get("c1").unwrap().source, GridSource::Config);
    }

    #[test]
    fn an_unreadable_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grids.geojson");
        std::fs::write(&file, b"{\"type\":\"FeatureCollection\",\"features\":[{").unwrap();
        let grids = Grids::open(&file, vec![]).unwrap();
        assert!(grids.snapshot().is_empty());
        assert!(!file.exists());
        let aside = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(aside, 1, "the bad file is kept beside, for the operator");
        grids.put(vec![cell("x", GridSource::Api)]).unwrap();
        assert!(file.exists());
    }
}
