//! Polygons in longitude/latitude (a grid cell is a few hundred metres across, so treating
//! degrees as a plane inside one is exact enough; edges that cross the antimeridian are not
//! supported, which no Chinese city needs).

use crate::geo::Point;

/// A polygon: one outer ring and any holes. Rings are closed implicitly (the last point joins
/// the first) and may be in either orientation.
#[derive(Clone, Debug, PartialEq)]
pub struct Polygon {
    /// The outer boundary.
    pub exterior: Vec<Point>,
    /// Areas cut out of it.
    pub holes: Vec<Vec<Point>>,
}

/// A bounding box in degrees: `[min_lon, min_lat]`, `[max_lon, max_lat]`.
pub type Bbox = ([f64; 2], [f64; 2]);

impl Polygon {
    /// Is `p` inside (on the outer ring's area and not in a hole)? Points exactly on an edge
    /// may fall either way.
    pub fn contains(&self, p: Point) -> bool {
        ring_contains(&self.exterior, p) && !self.holes.iter().any(|h| ring_contains(h, p))
    }

    /// The box around the outer ring.
    pub fn bbox(&self) -> Bbox {
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for p in &self.exterior {
            lo = [lo[0].min(p.lon), lo[1].min(p.lat)];
            hi = [hi[0].max(p.lon), hi[1].max(p.lat)];
        }
        (lo, hi)
    }

    /// How many positions it holds (rings together).
    pub fn positions(&self) -> usize {
        self.exterior.len() + self.holes.iter().map(Vec::len).sum::<usize>()
    }
}

/// Even-odd rule: a ray from `p` towards +longitude crosses the ring an odd number of times.
fn ring_contains(ring: &[Point], p: Point) -> bool {
    let mut inside = false;
    let n = ring.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (ring[i], ring[j]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let x = a.lon + (p.lat - a.lat) / (b.lat - a.lat) * (b.lon - a.lon);
            if p.lon < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(lon: f64, lat: f64) -> Point {
        Point { lat, lon }
    }

    #[test]
    fn squares_holes_and_concave_shapes() {
        let square = Polygon {
            exterior: vec![pt(0.0, 0.0), pt(1.0, 0.0), pt(1.0, 1.0), pt(0.0, 1.0)],
            holes: vec![vec![pt(0.4, 0.4), pt(0.6, 0.4), pt(0.6, 0.6), pt(0.4, 0.6)]],
        };
        assert!(square.contains(pt(0.2, 0.2)));
        assert!(!square.contains(pt(0.5, 0.5)), "in the hole");
        assert!(!square.contains(pt(1.5, 0.5)));
        assert!(!square.contains(pt(-0.1, 0.5)));
        assert_eq!(square.bbox(), ([0.0, 0.0], [1.0, 1.0]));
        // An L shape: the notch is outside.
        let l = Polygon {
            exterior: vec![
                pt(0.0, 0.0),
                pt(2.0, 0.0),
                pt(2.0, 1.0),
                pt(1.0, 1.0),
                pt(1.0, 2.0),
                pt(0.0, 2.0),
            ],
            holes: vec![],
        };
        assert!(l.contains(pt(0.5, 1.5)));
        assert!(l.contains(pt(1.5, 0.5)));
        assert!(!l.contains(pt(1.5, 1.5)));
        // Orientation does not matter.
        let mut rev = l.clone();
        rev.exterior.reverse();
        assert!(rev.contains(pt(0.5, 1.5)) && !rev.contains(pt(1.5, 1.5)));
        // Degenerate rings contain nothing.
        let line = Polygon {
            exterior: vec![pt(0.0, 0.0), pt(1.0, 1.0)],
            holes: vec![],
        };
        assert!(!line.contains(pt(0.5, 0.5)));
    }
}
