//! The camera list by place: `GET /api/v1/cameras?near=LAT,LON&radius=M`, `?sees=LAT,LON`,
//! `?grid=ID` and `?polygon=LAT,LON;LAT,LON;...`, over a spatial index of the cameras that is
//! rebuilt whenever the camera map changes (a catalog adopted, a lower node's listing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use places::{CameraIndex, Placed, Point, Polygon};

use crate::error::ApiError;
use crate::state::{AppState, CameraEntry, CameraMap};

/// Default radius of `near=` and of incidents, in metres.
pub const DEFAULT_RADIUS_M: f64 = 300.0;
/// Largest radius a query may ask: a district, not a province.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Most vertices of a `polygon=` query.
const MAX_QUERY_VERTICES: usize = 1000;

/// The camera map snapshot an index was built from (held weakly: a newer map replaces it).
type BuiltFrom = Weak<BTreeMap<String, Arc<CameraEntry>>>;

/// The index of the camera map's last snapshot.
#[derive(Debug, Default)]
pub struct SpatialIndex {
    built: Mutex<Option<(BuiltFrom, Arc<CameraIndex>)>>,
}

impl SpatialIndex {
    /// The index of `cameras` as they are now, built if they changed since the last call.
    pub fn of(&self, cameras: &CameraMap) -> Arc<CameraIndex> {
        let snap = cameras.snapshot();
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((map, index)) = built.as_ref()
            && Weak::ptr_eq(map, &Arc::downgrade(&snap))
            && map.strong_count() > 0
        {
            return index.clone();
        }
        let placed = snap
            .values()
            .filter_map(|c| {
                let (lat, lon) = c.info.location?;
                Some(Placed {
                    id: c.info.id.clone(),
                    at: Point { lat, lon },
                    view: c.info.view,
                })
            })
            .collect();
        let index = Arc::new(CameraIndex::build(placed));
        *built = Some((Arc::downgrade(&snap), index.clone()));
        index
    }
}

/// What a place query selected: camera ids in answer order, with their distance to the
/// query's point where it has one.
pub type Selection = Vec<(String, Option<f64>)>;

/// The place in a camera-list query, if it has one: `None` when it names no place.
pub fn select(state: &AppState, q: &HashMap<String, String>) -> Result<Option<Selection>, ApiError> {
    let given: Vec<&str> = ["near", "sees", "grid", "polygon"]
        .into_iter()
        .filter(|k| q.contains_key(*k))
        .collect();
    if given.len() > 1 {
        return Err(ApiError::bad_request(format!(
            "{}: give one place at a time",
            given.join(" and ")
        )));
    }
    if q.contains_key("radius") && given != ["near"] {
        return Err(ApiError::bad_request("radius: only with near=LAT,LON"));
    }
    let Some(&kind) = given.first() else {
        return Ok(None);
    };
    let index = state.spatial.of(&state.cameras);
    let with_distance = |v: Vec<(&Placed, f64)>| -> Selection {
        v.into_iter()
            .map(|(c, d)| (c.id.clone(), Some((d * 10.0).round() / 10.0)))
            .collect()
    };
    let value = q.get(kind).map(String::as_str).unwrap_or_default();
    Ok(Some(match kind {
        "near" => {
            let at = point(value, "near")?;
            with_distance(index.near(at, radius(q.get("radius").map(String::as_str))?))
        }
        "sees" => with_distance(index.seeing(point(value, "sees")?)),
        "grid" => {
            places::geojson::check_id(value, "grid").map_err(|e| ApiError::bad_request(e.to_string()))?;
            let grid = state.grids.get(value).ok_or_else(|| {
                ApiError::not_found(format!("no grid cell {value:?}; POST /api/v1/grids imports them"))
            })?;
            index.in_grid(&grid).into_iter().map(|c| (c.id.clone(), None)).collect()
        }
        _ => {
            let poly = polygon(value)?;
            index
                .within(std::slice::from_ref(&poly))
                .into_iter()
                .map(|c| (c.id.clone(), None))
                .collect()
        }
    }))
}

/// A point given as `LAT,LON`; 400 naming `what` otherwise.
pub fn point(s: &str, what: &str) -> Result<Point, ApiError> {
    Point::parse(s, what).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A radius in metres (absent: [`DEFAULT_RADIUS_M`]).
pub fn radius(s: Option<&str>) -> Result<f64, ApiError> {
    let Some(s) = s else { return Ok(DEFAULT_RADIUS_M) };
    s.trim().parse::<f64>().ok().and_then(in_range).ok_or_else(|| {
        ApiError::bad_request(format!(
            "radius: {:?} is not a distance of 0 to {MAX_RADIUS_M} metres",
            s.chars().take(40).collect::<String>()
        ))
    })
}

/// A radius (metres) a request may ask: finite, 0 to [`MAX_RADIUS_M`].
pub fn in_range(r: f64) -> Option<f64> {
    (r.is_finite() && (0.0..=MAX_RADIUS_M).contains(&r)).then_some(r)
}

/// `LAT,LON;LAT,LON;...` (at least three vertices).
fn polygon(s: &str) -> Result<Polygon, ApiError> {
    let parts: Vec<&str> = s.split(';').filter(|p| !p.trim().is_empty()).collect();
    if parts.len() < 3 || parts.len() > MAX_QUERY_VERTICES {
        return Err(ApiError::bad_request(format!(
            "polygon: expected 3 to {MAX_QUERY_VERTICES} vertices LAT,LON separated by ';'"
        )));
    }
    let exterior = parts
        .iter()
        .enumerate()
        .map(|(i, p)| point(p, &format!("polygon[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon {
        exterior,
        holes: Vec::new(),
    })
}
