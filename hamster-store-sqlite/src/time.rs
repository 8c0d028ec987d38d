//! Timestamps as integer microseconds since the Unix epoch.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Longer leases and delays are clamped to this (about a century): "effectively forever",
/// without overflowing clock arithmetic.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `at` as stored.
pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored time; `None` when it is out of chrono's range (a corrupt value).
pub(crate) fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

/// Now, as stored.
pub(crate) fn now_micros() -> i64 {
    to_micros(Utc::now())
}

/// `micros` plus `duration` (clamped to [`FOREVER`]), saturating.
pub(crate) fn micros_after(micros: i64, duration: Duration) -> i64 {
    let added = i64::try_from(duration.min(FOREVER).as_micros()).unwrap_or(i64::MAX);
    micros.saturating_add(added)
}

/// `duration` from `micros` as a time, saturating at chrono's maximum.
pub(crate) fn utc_after(micros: i64, duration: Duration) -> DateTime<Utc> {
    from_micros(micros_after(micros, duration)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn microseconds_round_trip_and_saturate() {
        let now = Utc::now();
        let stored = to_micros(now);
        let back = from_micros(stored).expect("in range");
        assert!((now - back).abs() < TimeDelta::microseconds(1));
        assert_eq!(micros_after(5, Duration::from_micros(7)), 12);
        assert!(micros_after(stored, Duration::MAX) > stored);
        assert!(utc_after(stored, Duration::MAX) > now + TimeDelta::days(365 * 50));
        assert_eq!(from_micros(i64::MAX), None);
    }
}
