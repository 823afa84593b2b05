//! `[places]`: the grid cells (网格) a grid-management system exported as GeoJSON.

use toml::Table;

use super::check::{Checker, join};

impl Checker {
    /// The grid cells of the file `[places] grids` names; every problem names the member.
    pub(super) fn places(&mut self, root: &Table) -> Vec<places::Grid> {
        let t = self.optional_section(root, "places");
        self.known("places", t, &["grids"]);
        let Some(file) = self.string("places", t, "grids") else {
            return Vec::new();
        };
        let key = join("places", "grids");
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) => {
                self.problem(key, format!("cannot read {file:?}: {e}"));
                return Vec::new();
            }
        };
        let parsed = serde_json::from_slice(&text)
            .map_err(|e| format!("{file:?} is not JSON: {e}"))
            .and_then(|v| {
                places::geojson::parse_grids(&v, places::GridSource::Config).map_err(|e| format!("{file:?}: {e}"))
            });
        match parsed {
            Ok(grids) => grids,
            Err(why) => {
                self.problem(key, why);
                Vec::new()
            }
        }
    }
}
