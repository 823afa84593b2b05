//! The four levels of governance centres.

/// A governance centre's level, from the bottom up.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Community / village.
    #[default]
    Community,
    /// Street / township.
    Street,
    /// District / county.
    District,
    /// City.
    City,
}

impl Level {
    /// Every level, from the bottom up.
    pub const ALL: [Level; 4] = [Level::Community, Level::Street, Level::District, Level::City];

    /// `community`, `street`, `district` or `city`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Community => "community",
            Level::Street => "street",
            Level::District => "district",
            Level::City => "city",
        }
    }

    /// Parses a level's name.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_levels_order_bottom_up() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        assert!(Level::Community < Level::Street && Level::District < Level::City);
        assert_eq!(Level::parse("province"), None);
    }
}
