//! Clocks: the 90 kHz media clock of every frame and the wall clock anchored to the server.
//!
//! See `docs/time.md` for how the two relate and how camera drift is corrected.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Ticks per second of the media clock used for every video frame (RTP's video clock).
pub const MEDIA_CLOCK_HZ: u32 = 90_000;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A point in wall-clock time: microseconds since the Unix epoch, UTC.
///
/// Microseconds keep one frame (40 ms at 25 fps) far above the resolution while an `i64` spans
/// ±292,000 years, so arithmetic on it never overflows for real inputs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallTime(i64);

impl WallTime {
    /// The wall time `micros` microseconds after the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        WallTime(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// RFC 3339 in the server's time zone, with fractional seconds only when there are any
    /// (`2026-11-23T08:00:00+08:00`): how times leave the node.
    pub fn to_rfc3339(self) -> String {
        let Ok(ts) = jiff::Timestamp::from_microsecond(self.0) else {
            return String::new();
        };
        ts.to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
            .to_string()
    }

    /// The server's clock now.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`]; times before 1970 are negative.
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => WallTime(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => WallTime(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// Converts to a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(self.0.unsigned_abs())
        }
    }

    /// This time shifted by a signed number of microseconds (saturating).
    pub const fn add_micros(self, micros: i64) -> Self {
        WallTime(self.0.saturating_add(micros))
    }

    /// Microseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn micros_since(self, earlier: WallTime) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The 64-bit NTP timestamp (32.32 fixed point seconds since 1900) of this time, as carried
    /// by an MP4 `prft` box. Times before 1900 saturate to 0.
    pub fn to_ntp(self) -> u64 {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000) as u64;
        let Some(ntp_secs) = secs.checked_add(NTP_UNIX_OFFSET_SECS as i64) else {
            return u64::MAX;
        };
        if ntp_secs < 0 {
            return 0;
        }
        let frac = (micros << 32) / 1_000_000;
        ((ntp_secs as u64) << 32) | frac
    }

    /// The wall time of a 64-bit NTP timestamp, rounded to the nearest microsecond.
    pub fn from_ntp(ntp: u64) -> Self {
        let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET_SECS as i64;
        let frac = ntp & 0xffff_ffff;
        let micros = ((frac * 1_000_000) + (1 << 31)) >> 32;
        WallTime(secs * 1_000_000 + micros as i64)
    }
}

/// Converts 90 kHz media ticks to microseconds (truncating toward zero).
pub const fn media_to_micros(ticks: i64) -> i64 {
    // ticks * 1e6 / 9e4 = ticks * 100 / 9; i64 holds 10^17 ticks (35,000 years) without overflow.
    ticks.saturating_mul(100) / 9
}

/// Converts microseconds to 90 kHz media ticks (truncating toward zero).
pub const fn micros_to_media(micros: i64) -> i64 {
    micros.saturating_mul(9) / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trip_keeps_microseconds() {
        for us in [0i64, 1, 999_999, 1_700_000_000_123_456, 1_800_000_000_000_001] {
            let t = WallTime::from_micros(us);
            assert_eq!(WallTime::from_ntp(t.to_ntp()), t, "{us}");
        }
    }

    #[test]
    fn ntp_of_unix_epoch_is_the_known_offset() {
        assert_eq!(WallTime::from_micros(0).to_ntp(), NTP_UNIX_OFFSET_SECS << 32);
    }

    #[test]
    fn media_clock_conversions() {
        assert_eq!(media_to_micros(90_000), 1_000_000);
        assert_eq!(media_to_micros(3_600), 40_000);
        assert_eq!(micros_to_media(40_000), 3_600);
        assert_eq!(media_to_micros(-90_000), -1_000_000);
    }

    #[test]
    fn system_time_round_trip() {
        let t = WallTime::from_micros(1_763_000_000_000_000);
        assert_eq!(WallTime::from_system_time(t.to_system_time()), t);
        let before = WallTime::from_micros(-5);
        assert_eq!(WallTime::from_system_time(before.to_system_time()), before);
    }
}
