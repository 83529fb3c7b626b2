//! The probe task of one (endpoint, check): runs the probe on its schedule, feeds the
//! hysteresis, publishes the state to the shared cell, and reports to metrics and logs.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Shared;
use super::hysteresis::{Flip, Hysteresis};
use super::probe::Prober;
use super::schedule::{Plan, next_deadline};
use crate::model::{Check, HealthCell, Probed};

/// The latest probe outcome of one endpoint, read by `/status`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Last {
    /// Last flip, or the first result.
    pub since: Option<SystemTime>,
    /// "ok" or the failure in words.
    pub result: Option<String>,
    /// How long the last probe took.
    pub latency: Option<Duration>,
    /// When the last probe finished.
    pub at: Option<SystemTime>,
    /// Same results in a row.
    pub consecutive: u32,
    /// This instance's own verdict (after rise/fall); `None` before the first result.
    /// The cell holds the combined verdict when `[cluster]` is on, this one otherwise.
    pub own: Option<Probed>,
}

/// Everything one probe task owns.
pub(crate) struct ProbeTask {
    pub shared: Arc<Shared>,
    pub region: String,
    pub endpoint: String,
    pub address: IpAddr,
    pub target: SocketAddr,
    pub check: Check,
    pub cell: Arc<HealthCell>,
    pub last: Arc<Mutex<Last>>,
    /// When the task was created; the plan's offsets count from here.
    pub start: Instant,
    pub plan: Plan,
    /// Dropped after the first result: the first round waits for every such sender.
    pub first_round: Option<mpsc::Sender<()>>,
}

impl ProbeTask {
    pub(crate) async fn run(mut self) {
        // Label children resolved once: the per-probe path touches no label map.
        let m = self.shared.metrics.clone();
        let labels = [self.region.as_str(), self.endpoint.as_str()];
        let success = m
            .probes
            .with_label_values(&[labels[0], labels[1], "success"]);
        let failure = m
            .probes
            .with_label_values(&[labels[0], labels[1], "failure"]);
        let duration = m.probe_histogram(labels[0], labels[1]);
        let up_gauge = m.endpoint_up.with_label_values(&labels);
        let to_up = m
            .transitions
            .with_label_values(&[labels[0], labels[1], "up"]);
        let to_down = m
            .transitions
            .with_label_values(&[labels[0], labels[1], "down"]);

        let prober = Prober::new(&self.check, self.address, self.target, &self.shared.tls);
        let mut hysteresis = Hysteresis::new(self.check.rise, self.check.fall);
        let interval = self.check.interval.max(Duration::from_millis(1));
        let mut deadline = self.start + self.plan.first;
        let mut first = true;
        let mut skipping = false;
        loop {
            tokio::time::sleep_until(deadline).await;
            if let Some(log) = self.shared.lateness.get() {
                log.record(Instant::now().saturating_duration_since(deadline));
            }
            let began = Instant::now();
            let judged = prober.judge(self.check.timeout).await;
            let took = began.elapsed();
            match judged {
                Err(f) if f.local => {
                    // Not the backend's doing (this host is out of fds or buffers):
                    // neither success nor failure, so health does not flip. Counted,
                    // and logged once per run of such probes.
                    m.probes
                        .with_label_values(&[labels[0], labels[1], "skipped"])
                        .inc();
                    if !skipping {
                        warn!(
                            region = %self.region, endpoint = %self.endpoint,
                            check = %self.check.name, reason = %f.words,
                            "probe skipped: local resource shortage, health unchanged"
                        );
                    }
                    skipping = true;
                }
                judged => {
                    skipping = false;
                    let result = judged.map_err(|f| f.words);
                    duration.observe(took.as_secs_f64());
                    if result.is_ok() { &success } else { &failure }.inc();

                    let flip = hysteresis.observe(result.is_ok());
                    let now = SystemTime::now();
                    let mut combined = None;
                    {
                        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                        last.result = Some(result.clone().err().unwrap_or_else(|| "ok".into()));
                        last.latency = Some(took);
                        last.at = Some(now);
                        last.consecutive = hysteresis.consecutive();
                        if let Some(flip) = flip {
                            last.since = Some(now);
                            last.own = Some(flip.to);
                            // Under the same lock as `HealthTable::recombine`, so a
                            // recombination that read the old own verdict cannot
                            // overwrite this one.
                            let c = self.shared.combined(&self.region, &self.endpoint, flip.to);
                            self.cell.set(c);
                            combined = Some(c);
                        }
                    }
                    if let (Some(flip), Some(combined)) = (flip, combined) {
                        up_gauge.set(i64::from(combined == Probed::Up));
                        self.shared.recompute_region(&self.region);
                        self.shared.own_changed();
                        if !flip.is_initial() {
                            if flip.to == Probed::Up {
                                &to_up
                            } else {
                                &to_down
                            }
                            .inc();
                        }
                        self.log(flip, &result, hysteresis.consecutive());
                    }
                }
            }
            self.first_round.take();

            let next = if first {
                self.start + self.plan.second
            } else {
                deadline + interval
            };
            first = false;
            let now = Instant::now();
            deadline = if next > now {
                next
            } else {
                next_deadline(next, interval, now)
            };
        }
    }

    /// The one log line of a flip. A first result is not a flip (nothing changed for
    /// clients yet): a failing one is still worth a line at info, a passing one is debug.
    fn log(&self, flip: Flip, result: &Result<(), String>, consecutive: u32) {
        let (region, endpoint, check) = (&self.region, &self.endpoint, &self.check.name);
        let target = self.target;
        match (flip.from, result) {
            (Probed::Unknown, Ok(())) => {
                debug!(%region, %endpoint, %check, %target, "endpoint up at first probe")
            }
            (Probed::Unknown, Err(reason)) => {
                info!(%region, %endpoint, %check, %target, %reason, "endpoint down at first probe")
            }
            (_, Err(reason)) => warn!(
                %region, %endpoint, %check, %target, from = "up", to = "down", %reason, consecutive,
                "endpoint health changed"
            ),
            (_, Ok(())) => info!(
                %region, %endpoint, %check, %target, from = "down", to = "up", reason = "ok", consecutive,
                "endpoint health changed"
            ),
        }
    }
}
