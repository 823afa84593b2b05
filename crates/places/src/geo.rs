//! Points on the earth, distances and bearings between them, and what a camera sees.

use crate::PlacesError;

/// The earth's mean radius (IUGG), in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// How far a camera with a heading sees when its config does not say: a typical street camera
/// identifies a person at a few tens of metres and sees a scene to about a hundred.
pub const DEFAULT_VIEW_RANGE_M: f64 = 100.0;

/// A position in WGS-84 degrees.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Point {
    /// Latitude, −90..90.
    pub lat: f64,
    /// Longitude, −180..180.
    pub lon: f64,
}

impl Point {
    /// A checked point: finite and in range; `what` names it in the error.
    pub fn new(lat: f64, lon: f64, what: &str) -> Result<Point, PlacesError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(PlacesError::invalid(what, format!("latitude {lat} is outside -90..90")));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(PlacesError::invalid(
                what,
                format!("longitude {lon} is outside -180..180"),
            ));
        }
        Ok(Point { lat, lon })
    }

    /// Parses `LAT,LON` (the API's `near=` and `sees=`).
    pub fn parse(s: &str, what: &str) -> Result<Point, PlacesError> {
        let bad = || PlacesError::invalid(what, "expected LAT,LON in degrees, e.g. 38.914,121.614");
        let (a, b) = s.split_once(',').ok_or_else(bad)?;
        let lat: f64 = a.trim().parse().map_err(|_| bad())?;
        let lon: f64 = b.trim().parse().map_err(|_| bad())?;
        Point::new(lat, lon, what)
    }
}

/// The great-circle distance between two points in metres (haversine, exact to the sphere).
pub fn distance_m(a: Point, b: Point) -> f64 {
    let (la, lb) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lb - la;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The initial bearing from `from` to `to`: degrees clockwise from north, 0..360.
pub fn bearing_deg(from: Point, to: Point) -> f64 {
    let (la, lb) = (from.lat.to_radians(), to.lat.to_radians());
    let dlon = (to.lon - from.lon).to_radians();
    let y = dlon.sin() * lb.cos();
    let x = la.cos() * lb.sin() - la.sin() * lb.cos() * dlon.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

/// The smaller angle between two directions, 0..=180 degrees.
pub fn angle_between(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

/// What a fixed camera sees: a sector of the ground around its heading.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct View {
    /// Where it points: degrees clockwise from north, 0..360.
    pub heading: f64,
    /// Horizontal field of view in degrees, (0, 360]; 360 is a dome that sees all round.
    pub fov: f64,
    /// How far it usefully sees, in metres.
    pub range_m: f64,
}

impl View {
    /// A checked view; `range_m` defaults to [`DEFAULT_VIEW_RANGE_M`].
    pub fn new(heading: f64, fov: f64, range_m: Option<f64>) -> Result<View, PlacesError> {
        if !heading.is_finite() || !(0.0..=360.0).contains(&heading) {
            return Err(PlacesError::invalid(
                "heading",
                format!("{heading} is outside 0..360 (degrees clockwise from north)"),
            ));
        }
        if !fov.is_finite() || fov <= 0.0 || fov > 360.0 {
            return Err(PlacesError::invalid(
                "fov",
                format!("{fov} is outside (0, 360] (the horizontal field of view in degrees)"),
            ));
        }
        let range_m = range_m.unwrap_or(DEFAULT_VIEW_RANGE_M);
        if !range_m.is_finite() || range_m <= 0.0 || range_m > 10_000.0 {
            return Err(PlacesError::invalid(
                "range_m",
                format!("{range_m} is outside (0, 10000] metres"),
            ));
        }
        Ok(View {
            heading: heading.rem_euclid(360.0),
            fov,
            range_m,
        })
    }

    /// Does a camera at `from` with this view see `target`: within range and inside the
    /// sector (a target on the camera itself is seen).
    pub fn sees(&self, from: Point, target: Point) -> bool {
        let d = distance_m(from, target);
        if d > self.range_m {
            return false;
        }
        d < 0.01 || self.fov >= 360.0 || angle_between(bearing_deg(from, target), self.heading) <= self.fov / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_bearings_match_known_values() {
        // Dalian railway station to Xinghai square: about 5.9 km to the south-west.
        let a = Point::new(38.9206, 121.6322, "a").unwrap();
        let b = Point::new(38.8763, 121.5867, "b").unwrap();
        let d = distance_m(a, b);
        assert!((6_200.0..6_400.0).contains(&d), "{d}");
        let br = bearing_deg(a, b);
        assert!((215.0..225.0).contains(&br), "{br}");
        // One degree of latitude is ~111.2 km everywhere.
        let d = distance_m(Point { lat: 10.0, lon: 5.0 }, Point { lat: 11.0, lon: 5.0 });
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
        assert_eq!(
            bearing_deg(Point { lat: 0.0, lon: 0.0 }, Point { lat: 0.0, lon: 1.0 }).round(),
            90.0
        );
    }

    #[test]
    fn angles_wrap() {
        assert_eq!(angle_between(350.0, 10.0), 20.0);
        assert_eq!(angle_between(10.0, 350.0), 20.0);
        assert_eq!(angle_between(0.0, 180.0), 180.0);
        assert_eq!(angle_between(720.0, 0.0), 0.0);
    }

    #[test]
    fn a_view_sees_its_sector_within_range() {
        let cam = Point { lat: 38.9, lon: 121.6 };
        let east = View::new(90.0, 60.0, Some(100.0)).unwrap();
        let p = |dx_m: f64, dy_m: f64| Point {
            lat: cam.lat + dy_m / 111_195.0,
            lon: cam.lon + dx_m / (111_195.0 * cam.lat.to_radians().cos()),
        };
        assert!(east.sees(cam, p(50.0, 0.0)));
        assert!(east.sees(cam, p(50.0, 25.0)), "26.6° off the heading, inside ±30°");
        assert!(!east.sees(cam, p(50.0, 40.0)), "38.7° off the heading");
        assert!(!east.sees(cam, p(-50.0, 0.0)), "behind");
        assert!(!east.sees(cam, p(150.0, 0.0)), "beyond range");
        assert!(east.sees(cam, cam));
        let dome = View::new(0.0, 360.0, None).unwrap();
        assert!(dome.sees(cam, p(-50.0, -50.0)));
    }

    #[test]
    fn bad_values_are_refused_with_what_to_do() {
        for (lat, lon) in [(91.0, 0.0), (0.0, 181.0), (f64::NAN, 0.0), (0.0, f64::INFINITY)] {
            let e = Point::new(lat, lon, "point").unwrap_err().to_string();
            assert!(e.starts_with("point: "), "{e}");
        }
        for s in ["", "1", "a,b", "1,2,3", "91,0", ",", "1;2"] {
            assert!(Point::parse(s, "near").is_err(), "{s:?}");
        }
        assert_eq!(
            Point::parse(" 38.9 , 121.6 ", "near").unwrap(),
            Point { lat: 38.9, lon: 121.6 }
        );
        assert!(View::new(-1.0, 60.0, None).is_err());
        assert!(View::new(0.0, 0.0, None).is_err());
        assert!(View::new(0.0, 400.0, None).is_err());
        assert!(View::new(0.0, 60.0, Some(-5.0)).is_err());
        assert!(View::new(0.0, 60.0, Some(f64::NAN)).is_err());
    }
}
