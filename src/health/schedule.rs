//! When probes run: the first probe of a new endpoint right away (with a little jitter),
//! then every `interval` on a per-endpoint phase so a thousand endpoints spread over the
//! interval instead of firing in the same millisecond. Deadlines are counted from the
//! schedule, not from the end of the previous probe, so probe latency never drifts it.

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Upper bound of the first-probe jitter, whatever the interval: the first round must stay
/// within the longest timeout plus [`FIRST_ROUND_SLACK`].
pub(crate) const FIRST_JITTER_MAX: Duration = Duration::from_millis(100);

/// What the first round may take beyond the longest timeout: the first-probe jitter plus
/// room for task start-up and the runtime's timer granularity.
pub(crate) const FIRST_ROUND_SLACK: Duration = Duration::from_millis(250);

/// Where one probe task sits in time, as offsets from the instant it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The first probe: at most 10% of the interval, capped at [`FIRST_JITTER_MAX`].
    pub first: Duration,
    /// The second probe; later ones follow every interval after it.
    pub second: Duration,
}

impl Plan {
    /// The plan for a task whose random draw is `random` (one 64-bit hash supplies both the
    /// first-probe jitter and the phase).
    pub(crate) fn new(random: u64, interval: Duration) -> Plan {
        let interval = interval.max(Duration::from_millis(1));
        let first = fraction(random as u32, (interval / 10).min(FIRST_JITTER_MAX));
        let phase = fraction((random >> 32) as u32, interval);
        // The phase is uniform over the interval; the second probe is the first point of
        // that grid at least half an interval after the first probe, so the gap stays in
        // [interval/2, 1.5 interval) and a failure right after start-up is still seen soon.
        let min = first + interval / 2;
        let mut second = phase;
        while second < min {
            second += interval;
        }
        Plan { first, second }
    }
}

/// `r / 2^32` of `span`.
fn fraction(r: u32, span: Duration) -> Duration {
    let nanos = (span.as_nanos() * u128::from(r)) >> 32;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A random 64-bit value for a task: a hash of its identity under a per-process random
/// key, plus the current time so a task re-created for the same key moves elsewhere.
/// Enough to spread phases; nothing depends on it being unpredictable.
pub(crate) fn draw(
    key: &impl std::hash::Hash,
    seed: &std::collections::hash_map::RandomState,
) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    seed.hash_one((key, now))
}

/// The deadline after `prev` that is still ahead of `now`, on the same grid. Ticks already
/// missed (a stalled runtime, a suspended VM) are skipped rather than fired as a burst.
pub(crate) fn next_deadline(prev: Instant, interval: Duration, now: Instant) -> Instant {
    let next = prev + interval;
    if next > now {
        return next;
    }
    let behind = now - next;
    let skip = behind.as_nanos() / interval.as_nanos().max(1) + 1;
    next + Duration::from_nanos(u64::try_from(interval.as_nanos() * skip).unwrap_or(u64::MAX))
}

/// Records how late each probe started relative to its scheduled time. Attached with
/// [`super::HealthTable::record_lateness`] by benchmarks and tests; without one, probe
/// tasks pay one pointer check per probe.
#[derive(Debug, Default)]
pub struct LatenessLog {
    samples: Mutex<Vec<Duration>>,
}

impl LatenessLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn record(&self, late: Duration) {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(late);
    }

    /// Takes every sample recorded so far, leaving the log empty.
    pub fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn first_probe_jitter_is_at_most_a_tenth_of_the_interval_and_capped() {
        for r in [0, 1, u64::MAX, 0xdead_beef_0000_ffff, 0x1234_5678_9abc_def0] {
            let p = Plan::new(r, S);
            assert!(p.first <= S / 10, "{p:?}");
            let p = Plan::new(r, Duration::from_secs(60));
            assert!(p.first <= FIRST_JITTER_MAX, "{p:?}");
            let p = Plan::new(r, Duration::from_millis(200));
            assert!(p.first <= Duration::from_millis(20), "{p:?}");
        }
    }

    #[test]
    fn second_probe_is_half_to_one_and_a_half_intervals_after_the_first() {
        let mut r: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            r = r
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let p = Plan::new(r, S);
            let gap = p.second - p.first;
            assert!(gap >= S / 2 && gap < S * 3 / 2, "{p:?}");
        }
    }

    #[test]
    fn phases_spread_over_the_interval() {
        // 1,000 draws of the real hash: no millisecond bucket of the interval holds more
        // than a handful of second probes.
        let seed = std::collections::hash_map::RandomState::new();
        let mut buckets = [0u32; 1000];
        for i in 0..1000u32 {
            let p = Plan::new(draw(&i, &seed), S);
            buckets[(p.second.as_millis() % 1000) as usize] += 1;
        }
        let max = buckets.iter().max().copied().unwrap_or(0);
        assert!(max <= 8, "{max} probes in one millisecond");
        assert!(buckets.iter().filter(|b| **b > 0).count() > 500);
    }

    #[test]
    fn next_deadline_keeps_the_grid_and_skips_missed_ticks() {
        let t0 = Instant::now();
        assert_eq!(next_deadline(t0, S, t0), t0 + S);
        assert_eq!(next_deadline(t0, S, t0 + S / 2), t0 + S);
        // Woke 2.3 intervals late: the next tick is t0 + 3s, not a burst at t0 + 1s and 2s.
        assert_eq!(next_deadline(t0, S, t0 + S * 23 / 10), t0 + S * 3);
        assert_eq!(next_deadline(t0, S, t0 + S), t0 + S * 2);
    }

    #[test]
    fn lateness_log_takes_and_clears() {
        let log = LatenessLog::new();
        log.record(Duration::from_millis(1));
        log.record(Duration::from_millis(2));
        assert_eq!(log.take().len(), 2);
        assert!(log.take().is_empty());
    }
}
