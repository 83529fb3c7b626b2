//! Malformed input: counted, and logged at a bounded rate.
//!
//! Anyone can send a server spoofed garbage, so a log line per bad packet is a way to
//! fill a disk (100,000 packets with a malformed EDNS option once made 100,000 WARN
//! lines, 17.8 MB in 1.9 s). Every malformed message is counted in
//! `geode_dns_malformed_total{reason}` (a closed label set), and the log gets at most one
//! summary line per [`LOG_EVERY`]: the first one at once, so an operator sees the
//! problem start, then the counts per reason since the previous line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::metrics::{MALFORMED_REASONS, Metrics};

/// Why a message was dropped or answered FORMERR. The discriminant indexes
/// [`MALFORMED_REASONS`] and [`Metrics::malformed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a DNS header: dropped.
    Short = 0,
    /// A response (QR=1) sent to us: dropped, since answering invites reflection loops.
    Response = 1,
    /// The header decoded but the rest did not: bare FORMERR.
    Undecodable = 2,
    /// The OPT record's options do not fill its RDATA exactly: bare FORMERR
    /// (RFC 6891 6.1.2 lets a responder reject an OPT it cannot parse).
    EdnsOption = 3,
    /// A malformed Client Subnet option (RFC 7871 6): FORMERR.
    Ecs = 4,
    /// Not exactly one question (RFC 1035 4.1.1 / RFC 9619): FORMERR.
    QuestionCount = 5,
}

/// Longest gap between two summary lines while malformed input keeps coming.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

const REASONS: usize = MALFORMED_REASONS.len();

/// Counts malformed input and writes the bounded summary lines. One per process, shared
/// by every receive loop: two atomic adds per malformed message, and a clock read.
#[derive(Debug)]
pub struct Reporter {
    epoch: Instant,
    /// Milliseconds since `epoch` before which no line is written.
    next_ms: AtomicU64,
    /// Per reason, malformed messages since the last line.
    since: [AtomicU64; REASONS],
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter {
            epoch: Instant::now(),
            next_ms: AtomicU64::new(0),
            since: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Reporter {
    /// Counts one malformed message; writes a summary line when none was written for
    /// [`LOG_EVERY`].
    pub fn report(&self, metrics: &Metrics, why: Malformed) {
        let i = why as usize;
        metrics.malformed[i].inc();
        self.since[i].fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now + LOG_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let n: [u64; REASONS] = std::array::from_fn(|r| self.since[r].swap(0, Ordering::Relaxed));
        warn!(
            short = n[0],
            response = n[1],
            undecodable = n[2],
            edns_option = n[3],
            ecs = n[4],
            question_count = n[5],
            "malformed DNS messages since the last report (all are counted in \
             geode_dns_malformed_total; this line comes at most every {}s)",
            LOG_EVERY.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_label_values() {
        for (why, label) in [
            (Malformed::Short, "short"),
            (Malformed::Response, "response"),
            (Malformed::Undecodable, "undecodable"),
            (Malformed::EdnsOption, "edns_option"),
            (Malformed::Ecs, "ecs"),
            (Malformed::QuestionCount, "question_count"),
        ] {
            assert_eq!(MALFORMED_REASONS[why as usize], label);
        }
    }

    #[test]
    fn every_message_is_counted_and_the_summary_resets() {
        let metrics = Metrics::new().unwrap();
        let r = Reporter::default();
        for _ in 0..1000 {
            r.report(&metrics, Malformed::EdnsOption);
        }
        r.report(&metrics, Malformed::Short);
        assert_eq!(
            metrics.malformed[Malformed::EdnsOption as usize].get(),
            1000
        );
        assert_eq!(metrics.malformed[Malformed::Short as usize].get(), 1);
        // The first report wrote a line and reset its reason; the rest wait for the
        // next line, well within LOG_EVERY.
        assert_eq!(
            r.since[Malformed::EdnsOption as usize].load(Ordering::Relaxed),
            999
        );
        assert_eq!(
            r.since[Malformed::Short as usize].load(Ordering::Relaxed),
            1
        );
    }
}
