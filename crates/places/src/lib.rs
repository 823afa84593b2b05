//! Places: where cameras are, what they see, and the grid cells (网格) of a governance centre.
//!
//! Grid-management and dispatch software asks in terms of places, not camera ids: "which
//! cameras are within 200 m of this address", "which are in grid cell 0203", "which *see* this
//! point". This crate answers those without I/O beyond the grid file:
//! - [`geo`]: points, great-circle distances and bearings, a camera's field of view;
//! - [`polygon`]: polygons (with holes) and point-in-polygon;
//! - [`geojson`]: grid cells read from GeoJSON features, with errors that name the member;
//! - [`index`]: an R*-tree (`rstar`) over camera positions for the three queries;
//! - [`grids`]: the node's grid cells, durable in one GeoJSON file.
//!
//! Distances are exact great-circle (haversine) distances: the tree only narrows the
//! candidates to a box that contains the circle, so an answer equals a brute-force scan.

pub mod geo;
pub mod geojson;
pub mod grids;
pub mod index;
pub mod polygon;

mod error;

pub use error::PlacesError;
pub use geo::{Point, View};
pub use grids::{Grid, GridSource, Grids};
pub use index::{CameraIndex, Placed};
pub use polygon::Polygon;
