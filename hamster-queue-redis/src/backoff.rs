//! Exponential backoff with jitter, for the `delay` of [`Queue::retry`](hamster_core::queue::Queue::retry).

use std::time::Duration;

/// Delays that double with each attempt, up to a maximum, randomized so that jobs that failed
/// together do not all come back at the same instant.
///
/// The delay after attempt `n` is drawn uniformly from `[d/2, d]` where
/// `d = min(max, base × 2^(n-1))` ("equal jitter": never shorter than half the nominal
/// delay, never longer than the cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExponentialBackoff {
    /// Nominal delay after the first attempt.
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for ExponentialBackoff {
    /// 1 s, doubling, capped at 10 minutes.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(600),
        }
    }
}

impl ExponentialBackoff {
    /// Backoff starting at `base`, capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The delay without jitter after delivery `attempt` (1-based, as in
    /// [`Job::attempt`](hamster_core::queue::Job::attempt)) failed.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let base_ms = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(base_ms.saturating_mul(factor)).min(self.max)
    }

    /// The delay to wait after delivery `attempt` failed, with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        let half = nominal / 2;
        half + nominal.mul_f64(fastrand::f64()) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_delay_doubles_then_caps() {
        let backoff = ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (1..=6).map(|a| backoff.nominal(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.nominal(0), Duration::from_millis(100));
        assert_eq!(backoff.nominal(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delay_stays_between_half_and_full_nominal() {
        let backoff = ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(60));
        let mut distinct = std::collections::HashSet::new();
        for attempt in 1..=8 {
            let nominal = backoff.nominal(attempt);
            for _ in 0..200 {
                let delay = backoff.delay(attempt);
                assert!(
                    delay >= nominal / 2 && delay <= nominal,
                    "{delay:?} vs {nominal:?}"
                );
                distinct.insert(delay);
            }
        }
        // Jitter must actually spread the delays.
        assert!(
            distinct.len() > 100,
            "only {} distinct delays",
            distinct.len()
        );
    }
}
