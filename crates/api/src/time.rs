//! RFC 3339 times in and out of the API.

use jiff::Timestamp;
use media::WallTime;

use crate::error::ApiError;

/// Parses an RFC 3339 time with an offset (`2026-11-23T08:00:00+08:00` or `...Z`).
pub fn parse(name: &str, value: &str) -> Result<WallTime, ApiError> {
    let ts: Timestamp = value.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{name}: {:?} is not an RFC 3339 time with an offset, like 2026-11-23T08:00:00+08:00",
            value.chars().take(64).collect::<String>()
        ))
    })?;
    Ok(WallTime::from_micros(ts.as_microsecond()))
}

/// Formats a wall time as RFC 3339 in the server's time zone, with fractional seconds only
/// when there are any.
pub fn format(t: WallTime) -> String {
    t.to_rfc3339()
}

/// A time as a query parameter for another node: RFC 3339 in UTC (`...Z`, nothing to escape).
pub fn query_time(t: WallTime) -> String {
    Timestamp::from_microsecond(t.as_micros())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_any_offset() {
        let t = parse("start", "2026-11-23T08:00:00+08:00").unwrap();
        assert_eq!(t.as_micros(), 1_795_392_000_000_000);
        assert_eq!(parse("x", &format(t)).unwrap(), t);
        let frac = parse("x", "2026-11-23T00:00:00.040Z").unwrap();
        assert_eq!(frac.as_micros(), 1_795_392_000_040_000);
        assert_eq!(parse("x", &format(frac)).unwrap(), frac);
    }

    #[test]
    fn rejects_times_without_offset_and_junk() {
        for bad in [
            "2026-11-23T08:00:00",
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
            "1795392000",
        ] {
            let e = parse("start", bad).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.starts_with("start:"));
        }
    }
}
