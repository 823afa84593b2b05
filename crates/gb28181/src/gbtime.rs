//! Times as GB/T 28181 writes them: `YYYY-MM-DDTHH:MM:SS[.mmm]` in the device's local time,
//! no zone (the `Date` header, MANSCDP StartTime/EndTime). SDP `t=` lines use Unix seconds
//! instead; mixing the two is the classic 8-hour bug, so every conversion names its offset.

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// The device-local civil time of a Unix time in milliseconds, `offset` seconds from UTC.
fn local(unix_ms: i64, offset: i64) -> Option<DateTime> {
    let t = Timestamp::from_millisecond(unix_ms).ok()?;
    t.checked_add(SignedDuration::from_secs(offset))
        .ok()
        .map(|t| t.to_zoned(TimeZone::UTC).datetime())
}

/// `YYYY-MM-DDTHH:MM:SS.mmm` of a Unix time in milliseconds, shifted by `offset` seconds (a
/// time outside jiff's range gives `0000-01-01T00:00:00.000` rather than a panic).
pub fn format_ms(unix_ms: i64, offset: i64) -> String {
    let d = local(unix_ms, offset).unwrap_or_default();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.millisecond()
    )
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time in seconds, shifted by `offset` seconds.
pub fn format_secs(unix: i64, offset: i64) -> String {
    let mut s = format_ms(unix.saturating_mul(1000), offset);
    s.truncate(19);
    s
}

/// The Unix time (seconds) of a device-local `YYYY-MM-DDTHH:MM:SS[.fff]` (a space instead of
/// `T` is accepted); `None` if it is not one.
pub fn parse(s: &str, offset: i64) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    // Exactly the GB form: jiff alone would also take other ISO 8601 spellings.
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let head = s.get(..19)?;
    if !head
        .bytes()
        .enumerate()
        .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16) || c.is_ascii_digit())
    {
        return None;
    }
    let d: DateTime = head.replacen(' ', "T", 1).parse().ok()?;
    let tz = TimeZone::fixed(Offset::from_seconds(i32::try_from(offset).ok()?).ok()?);
    Some(d.to_zoned(tz).ok()?.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_the_eight_hours() {
        assert_eq!(format_ms(1_700_000_000_250, 0), "2023-11-14T22:13:20.250");
        assert_eq!(
            format_ms(i64::MAX, 0),
            "0000-01-01T00:00:00.000",
            "out of range: no panic"
        );
        let t = 1_700_000_000;
        assert_eq!(format_secs(t, 8 * 3600), "2023-11-15T06:13:20");
        assert_eq!(parse("2023-11-15T06:13:20", 8 * 3600), Some(t));
        assert_eq!(parse("2023-11-15 06:13:20.250", 8 * 3600), Some(t));
        assert_eq!(parse("2023-11-14T22:13:20", 0), Some(t));
        for t in [0i64, 951_782_400, 4_102_444_800, -86_400] {
            assert_eq!(parse(&format_secs(t, 28_800), 28_800), Some(t));
        }
        for bad in [
            "",
            "2023-13-01T00:00:00",
            "2023-11-15T25:00:00",
            "2023/11/15T06:13:20",
            "2023-11-15T06:13",
            "２０２３-11-15T06:13:20",
        ] {
            assert_eq!(parse(bad, 0), None, "{bad}");
        }
    }
}
