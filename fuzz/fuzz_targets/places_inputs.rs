//! What grid systems and dispatch modules send about places: GeoJSON grid cells (any JSON)
//! and `LAT,LON` points. Read, checked, refused with an error where wrong, never a panic; a
//! cell that reads writes back as GeoJSON that reads the same, and queries over it answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = places::Point::parse(text, "near") {
            assert!((-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lon));
        }
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(grids) = places::geojson::parse_grids(&v, places::GridSource::Api) else { return };
    let cameras: Vec<places::Placed> = grids
        .iter()
        .flat_map(|g| g.area.iter().flat_map(|p| p.exterior.iter()))
        .take(64)
        .enumerate()
        .map(|(i, at)| places::Placed { id: format!("c{i}"), at: *at, view: places::View::new(i as f64, 90.0, None).ok() })
        .collect();
    let index = places::CameraIndex::build(cameras.clone());
    for g in &grids {
        let again = places::geojson::parse_grids(&places::geojson::to_feature(g), places::GridSource::Api)
            .expect("a cell written back reads again");
        assert_eq!(&again[0], g);
        let _ = index.in_grid(g);
    }
    if let Some(c) = cameras.first() {
        let _ = index.near(c.at, 1000.0);
        let _ = index.seeing(c.at);
    }
});
