//! What can go wrong with places: a bad coordinate, a GeoJSON member that is not what a grid
//! needs, or the grid file.

use std::path::PathBuf;

/// An error of this crate; each names the value or file concerned and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum PlacesError {
    /// A coordinate or a field of view is out of range.
    #[error("{what}: {message}")]
    Invalid {
        /// The value, as a path (`features[2].geometry.coordinates[0][4]`, `heading`).
        what: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The grid file could not be read or written.
    #[error("grid file {}: {action} failed: {source}; check the data disk", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A grid with this id is defined by the config file and cannot be changed through the API.
    #[error("grid {0:?} is defined in the config file ([[grids]]); change it there")]
    Configured(String),
}

impl PlacesError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> PlacesError {
        PlacesError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}
