//! Grid cells (网格) from GeoJSON, as grid-management systems export them: a `Feature` or a
//! `FeatureCollection` of `Polygon` / `MultiPolygon` features, each with an id (the feature's
//! `id` or `properties.id`) and optionally `properties.name`.
//!
//! Written over `serde_json` by hand rather than with the `geojson` crate: a grid needs only
//! polygons, and an operator importing a 3,000-cell file needs the error to name the member
//! that is wrong (`features[1204].geometry.coordinates[0][7]`), which a typed deserializer
//! reports as a byte offset at best.

use serde_json::{Value, json};

use crate::PlacesError;
use crate::geo::Point;
use crate::grids::{Grid, GridSource};
use crate::polygon::Polygon;

/// Most grid cells one import may hold.
pub const MAX_GRIDS: usize = 20_000;
/// Most positions one grid cell may hold (rings of all its polygons together).
pub const MAX_POSITIONS: usize = 100_000;

/// Reads the grid cells of a GeoJSON `Feature` or `FeatureCollection`, all or none.
pub fn parse_grids(v: &Value, source: GridSource) -> Result<Vec<Grid>, PlacesError> {
    let kind = v.get("type").and_then(Value::as_str);
    let features: Vec<(String, &Value)> = match kind {
        Some("FeatureCollection") => {
            let list = v
                .get("features")
                .and_then(Value::as_array)
                .ok_or_else(|| PlacesError::invalid("features", "expected an array of Feature objects"))?;
            if list.len() > MAX_GRIDS {
                return Err(PlacesError::invalid(
                    "features",
                    format!("{} features; import at most {MAX_GRIDS} at once", list.len()),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, f)| (format!("features[{i}]"), f))
                .collect()
        }
        Some("Feature") => vec![(String::new(), v)],
        other => {
            return Err(PlacesError::invalid(
                "type",
                format!(
                    "{other:?}: expected \"Feature\" or \"FeatureCollection\" with Polygon or MultiPolygon geometries"
                ),
            ));
        }
    };
    let mut out: Vec<Grid> = Vec::with_capacity(features.len());
    let mut seen = std::collections::HashSet::new();
    for (path, f) in features {
        let g = feature(&path, f, source)?;
        if !seen.insert(g.id.clone()) {
            return Err(PlacesError::invalid(
                member(&path, "id"),
                format!("{:?} appears twice in this import", g.id),
            ));
        }
        out.push(g);
    }
    Ok(out)
}

fn member(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A grid id: what the API's `grid=` and `/api/v1/grids/{id}` carry.
pub fn check_id(id: &str, what: &str) -> Result<(), PlacesError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PlacesError::invalid(
            what,
            format!(
                "{:?} is not a grid id; use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'",
                id.chars().take(70).collect::<String>()
            ),
        ))
    }
}

fn feature(path: &str, f: &Value, source: GridSource) -> Result<Grid, PlacesError> {
    if f.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(PlacesError::invalid(member(path, "type"), "expected \"Feature\""));
    }
    let props = f.get("properties").filter(|p| !p.is_null());
    if let Some(p) = props
        && !p.is_object()
    {
        return Err(PlacesError::invalid(
            member(path, "properties"),
            "expected an object or null",
        ));
    }
    let id = match (f.get("id"), props.and_then(|p| p.get("id"))) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.clone(),
        (Some(Value::Number(n)), _) | (None, Some(Value::Number(n))) => n.to_string(),
        _ => {
            return Err(PlacesError::invalid(
                member(path, "id"),
                "missing: give each feature an \"id\" (or properties.id), the grid cell's code",
            ));
        }
    };
    check_id(&id, &member(path, "id"))?;
    let name = match props.and_then(|p| p.get("name")) {
        None | Some(Value::Null) => id.clone(),
        Some(Value::String(s)) if s.chars().count() <= 200 => s.clone(),
        Some(_) => {
            return Err(PlacesError::invalid(
                member(path, "properties.name"),
                "expected a string of at most 200 characters",
            ));
        }
    };
    let gpath = member(path, "geometry");
    let geometry = f
        .get("geometry")
        .filter(|g| g.is_object())
        .ok_or_else(|| PlacesError::invalid(&gpath, "expected a Polygon or MultiPolygon geometry"))?;
    let cpath = member(&gpath, "coordinates");
    let coords = geometry
        .get("coordinates")
        .ok_or_else(|| PlacesError::invalid(&cpath, "missing"))?;
    let area = match geometry.get("type").and_then(Value::as_str) {
        Some("Polygon") => vec![polygon(&cpath, coords)?],
        Some("MultiPolygon") => {
            let list = coords
                .as_array()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| PlacesError::invalid(&cpath, "expected a non-empty array of polygons"))?;
            let mut area = Vec::with_capacity(list.len().min(1024));
            for (i, p) in list.iter().enumerate() {
                area.push(polygon(&format!("{cpath}[{i}]"), p)?);
            }
            area
        }
        other => {
            return Err(PlacesError::invalid(
                member(&gpath, "type"),
                format!("{other:?}: a grid cell is a \"Polygon\" or \"MultiPolygon\""),
            ));
        }
    };
    let positions: usize = area.iter().map(Polygon::positions).sum();
    if positions > MAX_POSITIONS {
        return Err(PlacesError::invalid(
            cpath,
            format!("{positions} positions; a grid cell may have at most {MAX_POSITIONS}"),
        ));
    }
    Ok(Grid { id, name, area, source })
}

fn polygon(path: &str, v: &Value) -> Result<Polygon, PlacesError> {
    let rings = v
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| PlacesError::invalid(path, "expected an array of linear rings (the outer one first)"))?;
    let mut out = Vec::with_capacity(rings.len().min(1024));
    for (i, r) in rings.iter().enumerate() {
        out.push(ring(&format!("{path}[{i}]"), r)?);
    }
    let exterior = out.remove(0);
    Ok(Polygon { exterior, holes: out })
}

fn ring(path: &str, v: &Value) -> Result<Vec<Point>, PlacesError> {
    let list = v
        .as_array()
        .ok_or_else(|| PlacesError::invalid(path, "expected an array of [lon, lat] positions"))?;
    if list.len() > MAX_POSITIONS {
        return Err(PlacesError::invalid(
            path,
            format!("{} positions; a grid cell may have at most {MAX_POSITIONS}", list.len()),
        ));
    }
    let mut pts = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let pair = p
            .as_array()
            .filter(|a| (2..=3).contains(&a.len()))
            .ok_or_else(|| PlacesError::invalid(&here, "expected [lon, lat] (or [lon, lat, altitude])"))?;
        let (Some(lon), Some(lat)) = (pair[0].as_f64(), pair[1].as_f64()) else {
            return Err(PlacesError::invalid(&here, "expected numbers [lon, lat]"));
        };
        pts.push(Point::new(lat, lon, &here)?);
    }
    // GeoJSON closes rings by repeating the first position; an unclosed ring is closed here.
    if pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    if pts.len() < 3 {
        return Err(PlacesError::invalid(
            path,
            "a ring needs at least 3 distinct positions (4 with the closing one)",
        ));
    }
    Ok(pts)
}

/// A grid cell as a GeoJSON `Feature` (what `GET /api/v1/grids/{id}` answers).
pub fn to_feature(g: &Grid) -> Value {
    let ring = |r: &[Point]| -> Value {
        let mut pts: Vec<Value> = r.iter().map(|p| json!([p.lon, p.lat])).collect();
        if let Some(first) = pts.first().cloned() {
            pts.push(first);
        }
        Value::Array(pts)
    };
    let polys: Vec<Value> = g
        .area
        .iter()
        .map(|p| {
            let mut rings = vec![ring(&p.exterior)];
            rings.extend(p.holes.iter().map(|h| ring(h)));
            Value::Array(rings)
        })
        .collect();
    let geometry = if polys.len() == 1 {
        json!({ "type": "Polygon", "coordinates": polys[0] })
    } else {
        json!({ "type": "MultiPolygon", "coordinates": polys })
    };
    json!({
        "type": "Feature",
        "id": g.id,
        "properties": { "name": g.name, "source": g.source.as_str() },
        "geometry": geometry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(id: &str, lon: f64, lat: f64) -> Value {
        json!({
            "type": "Feature", "id": id, "properties": { "name": format!("Cell {id}") },
            "geometry": { "type": "Polygon", "coordinates": [[[lon, lat], [lon + 0.01, lat], [lon + 0.01, lat + 0.01], [lon, lat + 0.01], [lon, lat]]] }
        })
    }

    #[test]
    fn collections_features_and_multipolygons_round_trip() {
        let fc = json!({ "type": "FeatureCollection", "features": [square("0101", 121.6, 38.9), square("0102", 121.61, 38.9)] });
        let grids = parse_grids(&fc, GridSource::Api).unwrap();
        assert_eq!(grids.len(), 2);
        assert_eq!(grids[0].name, "Cell 0101");
        assert_eq!(grids[0].area[0].exterior.len(), 4, "the closing position is implied");
        assert!(grids[0].contains(Point {
            lat: 38.905,
            lon: 121.605
        }));
        assert!(!grids[0].contains(Point {
            lat: 38.905,
            lon: 121.615
        }));
        // Back to GeoJSON and in again: the same cell.
        let again = parse_grids(&to_feature(&grids[1]), GridSource::Api).unwrap();
        assert_eq!(again[0], grids[1]);
        // A MultiPolygon with a hole, id in properties, a number id.
        let multi = json!({
            "type": "Feature", "properties": { "id": 77 },
            "geometry": { "type": "MultiPolygon", "coordinates": [
                [[[0, 0], [4, 0], [4, 4], [0, 4]], [[1, 1], [2, 1], [2, 2], [1, 2]]],
                [[[10, 10], [11, 10], [11, 11]]]
            ] }
        });
        let g = &parse_grids(&multi, GridSource::Config).unwrap()[0];
        assert_eq!((g.id.as_str(), g.name.as_str(), g.area.len()), ("77", "77", 2));
        assert!(g.contains(Point { lat: 3.0, lon: 3.0 }));
        assert!(!g.contains(Point { lat: 1.5, lon: 1.5 }), "in the hole");
        assert!(g.contains(Point { lat: 10.2, lon: 10.8 }));
        assert_eq!(parse_grids(&to_feature(g), GridSource::Config).unwrap()[0], *g);
    }

    #[test]
    fn hostile_members_are_named() {
        let cases: Vec<(Value, &str)> = vec![
            (json!(null), "type"),
            (json!({ "type": "Point" }), "type"),
            (json!({ "type": "FeatureCollection" }), "features"),
            (
                json!({ "type": "FeatureCollection", "features": [1] }),
                "features[0].type",
            ),
            (json!({ "type": "Feature", "geometry": null }), "id"),
            (json!({ "type": "Feature", "id": "../x", "geometry": null }), "id"),
            (json!({ "type": "Feature", "id": "a", "geometry": null }), "geometry"),
            (
                json!({ "type": "Feature", "id": "a", "properties": 5, "geometry": null }),
                "properties",
            ),
            (
                json!({ "type": "Feature", "id": "a", "properties": { "name": 5 }, "geometry": null }),
                "properties.name",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "LineString", "coordinates": [] } }),
                "geometry.type",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "Polygon" } }),
                "geometry.coordinates",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "Polygon", "coordinates": [] } }),
                "geometry.coordinates",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "Polygon", "coordinates": [[[0, 0], [1, 1]]] } }),
                "geometry.coordinates[0]",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, "x"]]] } }),
                "geometry.coordinates[0][2]",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 95]]] } }),
                "geometry.coordinates[0][2]",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0]]] } }),
                "geometry.coordinates[0][2]",
            ),
            (
                json!({ "type": "Feature", "id": "a", "geometry": { "type": "MultiPolygon", "coordinates": [] } }),
                "geometry.coordinates",
            ),
            (
                json!({ "type": "FeatureCollection", "features": [square("x", 0.0, 0.0), square("x", 1.0, 1.0)] }),
                "features[1].id",
            ),
        ];
        for (v, what) in cases {
            match parse_grids(&v, GridSource::Api) {
                Err(PlacesError::Invalid { what: w, .. }) => assert_eq!(w, what, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        let huge: Vec<Value> = (0..MAX_POSITIONS + 1).map(|i| json!([i as f64 * 1e-6, 0.0])).collect();
        let v = json!({ "type": "Feature", "id": "a", "geometry": { "type": "Polygon", "coordinates": [huge] } });
        assert!(parse_grids(&v, GridSource::Api).is_err());
    }
}
