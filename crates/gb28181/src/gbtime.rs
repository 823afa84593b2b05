//! Times as GB/T 28181 writes them: `YYYY-MM-DDTHH:MM:SS[.mmm]` in the device's local time,
//! no zone (the `Date` header, MANSCDP StartTime/EndTime). SDP `t=` lines use Unix seconds
//! instead; mixing the two is the classic 8-hour bug, so every conversion names its offset.

/// `YYYY-MM-DDTHH:MM:SS.mmm` of a Unix time in milliseconds, shifted by `offset` seconds.
pub fn format_ms(unix_ms: i64, offset: i64) -> String {
    let ms = unix_ms + offset * 1000;
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        ms.rem_euclid(1000)
    )
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time in seconds, shifted by `offset` seconds.
pub fn format_secs(unix: i64, offset: i64) -> String {
    let mut s = format_ms(unix * 1000, offset);
    s.truncate(19);
    s
}

/// The Unix time (seconds) of a device-local `YYYY-MM-DDTHH:MM:SS[.fff]` (a space instead of
/// `T` is accepted); `None` if it is not one.
pub fn parse(s: &str, offset: i64) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_the_eight_hours() {
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
