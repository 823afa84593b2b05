//! The spatial index over camera positions: an R*-tree (`rstar`) of (longitude, latitude)
//! points, bulk-loaded from the camera list (25,000 cameras load in a few milliseconds, so it
//! is rebuilt when the list changes rather than edited in place).
//!
//! Each query asks the tree for a box that certainly contains the answer, then decides every
//! candidate exactly (haversine distance, point in polygon, field of view): the answers equal
//! a brute-force scan of every camera.

use rstar::primitives::GeomWithData;
use rstar::{AABB, RTree};

use crate::geo::{EARTH_RADIUS_M, Point, View, distance_m};
use crate::grids::Grid;
use crate::polygon::Polygon;

/// A camera with a position.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub at: Point,
    /// What it sees, when its heading is known.
    pub view: Option<View>,
}

type Entry = GeomWithData<[f64; 2], u32>;

/// Cameras by position.
#[derive(Debug)]
pub struct CameraIndex {
    cameras: Vec<Placed>,
    tree: RTree<Entry>,
    /// The longest view range of any camera: how far a sees-query must look.
    max_range_m: f64,
}

impl CameraIndex {
    /// An index of `cameras`.
    pub fn build(cameras: Vec<Placed>) -> CameraIndex {
        let entries = cameras
            .iter()
            .enumerate()
            .map(|(i, c)| Entry::new([c.at.lon, c.at.lat], i as u32))
            .collect();
        let max_range_m = cameras
            .iter()
            .filter_map(|c| c.view.map(|v| v.range_m))
            .fold(0.0, f64::max);
        CameraIndex {
            tree: RTree::bulk_load(entries),
            cameras,
            max_range_m,
        }
    }

    /// How many cameras it holds.
    pub fn len(&self) -> usize {
        self.cameras.len()
    }

    /// True if it holds none.
    pub fn is_empty(&self) -> bool {
        self.cameras.is_empty()
    }

    /// Cameras within `radius_m` of `at`, nearest first (ties by id), with their distances.
    pub fn near(&self, at: Point, radius_m: f64) -> Vec<(&Placed, f64)> {
        let mut out: Vec<(&Placed, f64)> = Vec::new();
        for b in cap_boxes(at, radius_m) {
            for e in self.tree.locate_in_envelope(&b) {
                let c = &self.cameras[e.data as usize];
                let d = distance_m(at, c.at);
                if d <= radius_m {
                    out.push((c, d));
                }
            }
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
        out
    }

    /// Cameras inside any of `area`'s polygons, by id.
    pub fn within(&self, area: &[Polygon]) -> Vec<&Placed> {
        let mut slots: Vec<u32> = Vec::new();
        for p in area {
            let (lo, hi) = p.bbox();
            if !(lo[0] <= hi[0] && lo[1] <= hi[1]) {
                continue;
            }
            for e in self.tree.locate_in_envelope(&AABB::from_corners(lo, hi)) {
                if p.contains(self.cameras[e.data as usize].at) {
                    slots.push(e.data);
                }
            }
        }
        slots.sort_unstable();
        slots.dedup();
        let mut out: Vec<&Placed> = slots.into_iter().map(|s| &self.cameras[s as usize]).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Cameras inside a grid cell, by id.
    pub fn in_grid(&self, grid: &Grid) -> Vec<&Placed> {
        self.within(&grid.area)
    }

    /// Cameras whose field of view holds `at` (cameras without a heading are not counted),
    /// nearest first, with their distances.
    pub fn seeing(&self, at: Point) -> Vec<(&Placed, f64)> {
        if self.max_range_m <= 0.0 {
            return Vec::new();
        }
        self.near(at, self.max_range_m)
            .into_iter()
            .filter(|(c, _)| c.view.is_some_and(|v| v.sees(c.at, at)))
            .collect()
    }
}

/// Boxes in degrees that together contain every point within `r` metres of `at` (a spherical
/// cap): its latitude band, and the widest longitude span the cap reaches. Near a pole, or
/// across the antimeridian, the box widens to every longitude (correct, just slower).
fn cap_boxes(at: Point, r: f64) -> Vec<AABB<[f64; 2]>> {
    // A hair of slack so that rounding in the box never drops a point the exact test keeps.
    const SLACK: f64 = 1e-9;
    let ang = (r.max(0.0) / EARTH_RADIUS_M).min(std::f64::consts::PI);
    let dlat = ang.to_degrees() * (1.0 + SLACK) + SLACK;
    let (lat0, lat1) = ((at.lat - dlat).max(-90.0), (at.lat + dlat).min(90.0));
    let full = |a: f64, b: f64| AABB::from_corners([-180.0, a], [180.0, b]);
    if lat0 <= -90.0 || lat1 >= 90.0 {
        return vec![full(lat0, lat1)];
    }
    let s = ang.sin() / at.lat.to_radians().cos();
    if s >= 1.0 {
        return vec![full(lat0, lat1)];
    }
    let dlon = s.asin().to_degrees() * (1.0 + SLACK) + SLACK;
    let (lon0, lon1) = (at.lon - dlon, at.lon + dlon);
    if lon0 < -180.0 {
        vec![
            AABB::from_corners([-180.0, lat0], [lon1, lat1]),
            AABB::from_corners([lon0 + 360.0, lat0], [180.0, lat1]),
        ]
    } else if lon1 > 180.0 {
        vec![
            AABB::from_corners([lon0, lat0], [180.0, lat1]),
            AABB::from_corners([-180.0, lat0], [lon1 - 360.0, lat1]),
        ]
    } else {
        vec![AABB::from_corners([lon0, lat0], [lon1, lat1])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn city(n: usize, seed: u64) -> Vec<Placed> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| Placed {
                id: format!("cam{i:05}"),
                at: Point {
                    lat: 38.85 + rng.random::<f64>() * 0.15,
                    lon: 121.50 + rng.random::<f64>() * 0.20,
                },
                view: (i % 3 != 0).then(|| {
                    View::new(
                        rng.random::<f64>() * 360.0,
                        30.0 + rng.random::<f64>() * 90.0,
                        Some(40.0 + rng.random::<f64>() * 160.0),
                    )
                    .unwrap()
                }),
            })
            .collect()
    }

    #[test]
    fn every_query_equals_a_brute_force_scan() {
        let cams = city(5_000, 7);
        let idx = CameraIndex::build(cams.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for _ in 0..300 {
            let at = Point {
                lat: 38.84 + rng.random::<f64>() * 0.17,
                lon: 121.49 + rng.random::<f64>() * 0.22,
            };
            let r = rng.random::<f64>() * 800.0;
            let got: Vec<&str> = idx.near(at, r).iter().map(|(c, _)| c.id.as_str()).collect();
            let mut want: Vec<(&Placed, f64)> = cams
                .iter()
                .map(|c| (c, distance_m(at, c.at)))
                .filter(|(_, d)| *d <= r)
                .collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
            assert_eq!(got, want.iter().map(|(c, _)| c.id.as_str()).collect::<Vec<_>>());

            let sees: Vec<&str> = idx.seeing(at).iter().map(|(c, _)| c.id.as_str()).collect();
            let mut want: Vec<(&Placed, f64)> = cams
                .iter()
                .filter(|c| c.view.is_some_and(|v| v.sees(c.at, at)))
                .map(|c| (c, distance_m(at, c.at)))
                .collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
            assert_eq!(sees, want.iter().map(|(c, _)| c.id.as_str()).collect::<Vec<_>>());

            let (w, h) = (rng.random::<f64>() * 0.01, rng.random::<f64>() * 0.01);
            let p = |dx: f64, dy: f64| Point {
                lat: at.lat + dy,
                lon: at.lon + dx,
            };
            let tri = Polygon {
                exterior: vec![p(0.0, 0.0), p(w, 0.0), p(w / 2.0, h)],
                holes: vec![],
            };
            let got: Vec<&str> = idx
                .within(std::slice::from_ref(&tri))
                .iter()
                .map(|c| c.id.as_str())
                .collect();
            let want: Vec<&str> = cams
                .iter()
                .filter(|c| tri.contains(c.at))
                .map(|c| c.id.as_str())
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn poles_and_the_antimeridian_still_answer_exactly() {
        let cams = vec![
            Placed {
                id: "east".into(),
                at: Point {
                    lat: 0.0,
                    lon: 179.9999,
                },
                view: None,
            },
            Placed {
                id: "west".into(),
                at: Point {
                    lat: 0.0,
                    lon: -179.9999,
                },
                view: None,
            },
            Placed {
                id: "pole".into(),
                at: Point {
                    lat: 89.9999,
                    lon: 10.0,
                },
                view: None,
            },
            Placed {
                id: "pole2".into(),
                at: Point {
                    lat: 89.9999,
                    lon: -170.0,
                },
                view: None,
            },
        ];
        let idx = CameraIndex::build(cams);
        let ids = |v: Vec<(&Placed, f64)>| {
            let mut ids = v.into_iter().map(|(c, _)| c.id.clone()).collect::<Vec<_>>();
            ids.sort();
            ids
        };
        assert_eq!(ids(idx.near(Point { lat: 0.0, lon: 180.0 }, 50.0)), ["east", "west"]);
        assert_eq!(ids(idx.near(Point { lat: 90.0, lon: 0.0 }, 50.0)).len(), 2);
        assert!(idx.near(Point { lat: 0.0, lon: 0.0 }, 0.0).is_empty());
        assert!(
            idx.seeing(Point { lat: 0.0, lon: 0.0 }).is_empty(),
            "no camera has a view"
        );
        assert!(
            CameraIndex::build(vec![])
                .near(Point { lat: 0.0, lon: 0.0 }, 1e9)
                .is_empty()
        );
    }
}
