//! Active health checking: one probe task per (endpoint, check), rise/fall hysteresis,
//! and a table that keeps probed state apart from the config snapshot, keyed by
//! [`EndpointKey`], so a reload keeps the state of unchanged endpoints and only starts
//! probes for new ones.
//!
//! ```text
//!  sync(model) ──► table: EndpointKey ─► Arc<HealthCell> + probe task
//!                      │                     │ probe (tcp | http | https), timeout
//!                      │                     ├─► Hysteresis::observe ─► cell.set (route reads it)
//!                      │                     └─► metrics, one log line per flip
//!                      └─► endpoint.health = the table's cell (shared with the snapshot)
//! ```

mod hysteresis;
mod probe;
mod schedule;
mod task;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

pub use hysteresis::{Flip, Hysteresis};
pub use schedule::LatenessLog;

use crate::metrics::Metrics;
use crate::model::{EndpointKey, HealthCell, Model, Probed, min_healthy_met};
use schedule::{FIRST_ROUND_SLACK, Plan};
use task::{Last, ProbeTask};

/// Probed state of every endpoint, keyed by endpoint identity, surviving reloads.
pub struct HealthTable {
    shared: Arc<Shared>,
    inner: Mutex<Inner>,
}

/// Other vantages' say on an endpoint (`[cluster]`, see `crate::cluster`). Without one
/// attached, the cell holds this instance's own verdict.
pub trait Vantages: Send + Sync {
    /// The verdict routing uses, given this instance's own.
    fn combined(&self, region: &str, endpoint: &str, own: Probed) -> Probed;
    /// The peers' votes on an endpoint, for `/status`.
    fn votes(&self, region: &str, endpoint: &str) -> Vec<VantageVote>;
    /// Called after this instance's own verdict on some endpoint changed.
    fn own_changed(&self);
}

/// One peer's vote in `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct VantageVote {
    /// The peer's `[cluster] node`.
    pub node: String,
    /// `up`, `down` or `unknown`.
    pub state: &'static str,
    /// Seconds since the peer's last accepted message.
    pub age_s: f64,
    /// False once older than `stale_after`: the vote does not count.
    pub fresh: bool,
}

/// What probe tasks share with the table.
pub(crate) struct Shared {
    metrics: Arc<Metrics>,
    vantages: OnceLock<Arc<dyn Vantages>>,
    /// Region name -> what `geode_region_up` is computed from; replaced on every sync.
    regions: Mutex<HashMap<String, RegionCells>>,
    lateness: OnceLock<Arc<LatenessLog>>,
    tls: probe::Tls,
    seed: RandomState,
}

struct RegionCells {
    min_healthy: u32,
    /// Endpoints without a check (always up).
    always_up: u32,
    cells: Vec<Arc<HealthCell>>,
}

#[derive(Default)]
struct Inner {
    probed: HashMap<EndpointKey, Entry>,
    /// /status rows in model order.
    order: Vec<Row>,
    /// (region, endpoint) label sets exported, so removed endpoints lose theirs.
    labels: HashSet<(String, String)>,
    shut_down: bool,
}

enum Row {
    Probed(EndpointKey),
    Unchecked { region: String, endpoint: String },
}

struct Entry {
    cell: Arc<HealthCell>,
    last: Arc<Mutex<Last>>,
    task: Option<JoinHandle<()>>,
    endpoint: String,
    check: String,
}

impl std::fmt::Debug for HealthTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("HealthTable")
            .field("probed", &inner.probed.len())
            .field("rows", &inner.order.len())
            .field("shut_down", &inner.shut_down)
            .finish()
    }
}

/// Completes when every endpoint new in a [`HealthTable::sync`] has its first probe result.
#[derive(Debug)]
pub struct FirstRound {
    rx: Option<mpsc::Receiver<()>>,
    deadline: Instant,
    new: usize,
}

impl FirstRound {
    /// Waits for the round, at most the longest timeout among the new endpoints plus a
    /// small slack; endpoints still without a result then stay `unknown` (not handed out).
    pub async fn wait(self) {
        let Some(mut rx) = self.rx else { return };
        // Every task drops its sender after its first result; recv() ends when all have.
        if tokio::time::timeout_at(self.deadline, rx.recv())
            .await
            .is_err()
        {
            warn!(
                new_endpoints = self.new,
                "first probe round not complete in time; endpoints without a result stay unknown"
            );
        }
    }
}

/// One endpoint in `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// Region name.
    pub region: String,
    /// Address handed out.
    pub endpoint: String,
    /// Where the probe connects (`ip:port`); null for an endpoint without a check.
    pub probe_target: Option<String>,
    /// Check name; null for an endpoint without a check (always up).
    pub check: Option<String>,
    /// `up`, `down` or `unknown` (no probe result yet): the verdict routing uses (with
    /// `[cluster]`, the combined verdict).
    pub state: &'static str,
    /// With `[cluster]`: this instance's own verdict (after its rise/fall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_state: Option<&'static str>,
    /// With `[cluster]`: every peer's vote, fresh or stale, with its age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub votes: Option<Vec<VantageVote>>,
    /// Unix time of the last flip, or of the first result.
    pub since: Option<f64>,
    /// `ok`, or why the last probe failed.
    pub last_result: Option<String>,
    /// Duration of the last probe.
    pub last_probe_latency_ms: Option<f64>,
    /// Unix time the last probe finished.
    pub last_probe_at: Option<f64>,
    /// How many probes in a row had the last result.
    pub consecutive: u32,
}

impl HealthTable {
    /// A table reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<HealthTable> {
        Arc::new(HealthTable {
            shared: Arc::new(Shared {
                metrics,
                vantages: OnceLock::new(),
                regions: Mutex::new(HashMap::new()),
                lateness: OnceLock::new(),
                tls: probe::Tls::new(),
                seed: RandomState::new(),
            }),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Records the start lateness of every probe into `log` (benchmarks, tests). Takes
    /// effect for probes that start after the call; only the first log attached is used.
    pub fn record_lateness(&self, log: Arc<LatenessLog>) {
        let _ = self.shared.lateness.set(log);
    }

    /// Attaches the table's shared cells to `model`'s endpoints before the model is frozen
    /// into a snapshot: an unchanged [`EndpointKey`] keeps its cell and probe task; a new
    /// one gets a cell in state `Unknown` and a probe task whose first probe starts right
    /// away; keys no longer present stop being probed and lose their metric label sets.
    /// Endpoints without a check are marked up. Must be called inside a tokio runtime.
    ///
    /// The returned [`FirstRound`] completes when every endpoint new in this sync has had
    /// its first probe result.
    pub fn sync(self: &Arc<Self>, model: &mut Model) -> FirstRound {
        self.sync_model(model)
    }

    /// [`HealthTable::sync`] on a loaded config, typed as attached so a snapshot can be
    /// built from it.
    pub fn attach(
        self: &Arc<Self>,
        mut loaded: crate::config::Loaded,
    ) -> (crate::snapshot::HealthAttached, FirstRound) {
        let first_round = self.sync_model(&mut loaded.model);
        (crate::snapshot::HealthAttached::synced(loaded), first_round)
    }

    fn sync_model(self: &Arc<Self>, model: &mut Model) -> FirstRound {
        let checks: Vec<_> = model
            .probed_endpoints()
            .map(|(key, _, _, check)| (key, check.clone()))
            .collect();
        let mut checks = checks.into_iter();
        let metrics = &self.shared.metrics;
        let start = Instant::now();
        let (tx, rx) = mpsc::channel::<()>(1);
        let mut longest: Option<Duration> = None;
        let mut new = 0usize;

        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut order = Vec::new();
        let mut labels = HashSet::new();
        let mut present = HashSet::new();
        let mut regions = HashMap::new();
        for region in &mut model.regions {
            let cells = regions
                .entry(region.name.clone())
                .or_insert_with(|| RegionCells {
                    min_healthy: region.min_healthy,
                    always_up: 0,
                    cells: Vec::new(),
                });
            for ep in &mut region.endpoints {
                let endpoint = ep.address.to_string();
                labels.insert((region.name.clone(), endpoint.clone()));
                if ep.check.is_none() {
                    ep.health.set(Probed::Up);
                    cells.always_up += 1;
                    metrics
                        .endpoint_up
                        .with_label_values(&[region.name.as_str(), endpoint.as_str()])
                        .set(1);
                    order.push(Row::Unchecked {
                        region: region.name.clone(),
                        endpoint,
                    });
                    continue;
                }
                // probed_endpoints() walks the same regions and checked endpoints in order.
                let Some((key, check)) = checks.next() else {
                    break;
                };
                debug_assert_eq!(
                    (key.region.as_str(), key.address),
                    (region.name.as_str(), ep.address)
                );
                let entry = inner.probed.entry(key.clone()).or_insert_with(|| {
                    new += 1;
                    let cell = Arc::new(HealthCell::new(Probed::Unknown));
                    let last = Arc::new(Mutex::new(Last::default()));
                    metrics
                        .endpoint_up
                        .with_label_values(&[region.name.as_str(), endpoint.as_str()])
                        .set(0);
                    let plan = Plan::new(schedule::draw(&key, &self.shared.seed), check.interval);
                    longest = longest.max(Some(check.timeout));
                    let task = (!inner.shut_down).then(|| {
                        tokio::spawn(
                            ProbeTask {
                                shared: self.shared.clone(),
                                region: region.name.clone(),
                                endpoint: endpoint.clone(),
                                address: ep.address,
                                target: key.target,
                                check: check.clone(),
                                cell: cell.clone(),
                                last: last.clone(),
                                start,
                                plan,
                                first_round: Some(tx.clone()),
                            }
                            .run(),
                        )
                    });
                    Entry {
                        cell,
                        last,
                        task,
                        endpoint: endpoint.clone(),
                        check: check.name.clone(),
                    }
                });
                ep.health = entry.cell.clone();
                cells.cells.push(entry.cell.clone());
                present.insert(key.clone());
                order.push(Row::Probed(key));
            }
        }
        drop(tx);

        inner.probed.retain(|key, entry| {
            let keep = present.contains(key);
            if !keep && let Some(task) = entry.task.take() {
                task.abort();
            }
            keep
        });
        for (region, endpoint) in inner.labels.difference(&labels) {
            remove_endpoint_labels(metrics, region, endpoint);
        }
        inner.labels = labels;
        inner.order = order;

        {
            let mut current = self
                .shared
                .regions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for gone in current.keys().filter(|name| !regions.contains_key(*name)) {
                let _ = metrics.region_up.remove_label_values(&[gone.as_str()]);
            }
            *current = regions;
            for (name, cells) in current.iter() {
                metrics
                    .region_up
                    .with_label_values(&[name.as_str()])
                    .set(i64::from(cells.is_up()));
            }
        }

        let rx = (new > 0 && !inner.shut_down).then_some(rx);
        FirstRound {
            rx,
            deadline: start + longest.unwrap_or_default() + FIRST_ROUND_SLACK,
            new,
        }
    }

    /// Every endpoint's state, in config order.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let vantages = self.shared.vantages.get();
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|row| match row {
                Row::Unchecked { region, endpoint } => Some(EndpointStatus {
                    region: region.clone(),
                    endpoint: endpoint.clone(),
                    probe_target: None,
                    check: None,
                    state: "up",
                    own_state: None,
                    votes: None,
                    since: None,
                    last_result: None,
                    last_probe_latency_ms: None,
                    last_probe_at: None,
                    consecutive: 0,
                }),
                Row::Probed(key) => {
                    let e = inner.probed.get(key)?;
                    let last = e.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    Some(EndpointStatus {
                        region: key.region.clone(),
                        endpoint: e.endpoint.clone(),
                        probe_target: Some(key.target.to_string()),
                        check: Some(e.check.clone()),
                        state: state_name(e.cell.get()),
                        own_state: vantages
                            .is_some()
                            .then(|| state_name(last.own.unwrap_or(Probed::Unknown))),
                        votes: vantages.map(|v| v.votes(&key.region, &e.endpoint)),
                        since: last.since.map(unix_secs),
                        last_result: last.result,
                        last_probe_latency_ms: last.latency.map(|d| d.as_secs_f64() * 1e3),
                        last_probe_at: last.at.map(unix_secs),
                        consecutive: last.consecutive,
                    })
                }
            })
            .collect()
    }

    /// Lets `vantages` combine every endpoint's verdict from now on (`[cluster]`); only
    /// the first attached is used. Call [`HealthTable::recombine`] after.
    pub fn attach_vantages(&self, vantages: Arc<dyn Vantages>) {
        let _ = self.shared.vantages.set(vantages);
    }

    /// This instance's own verdict on every probed endpoint, as (region, endpoint).
    pub fn own_verdicts(&self) -> Vec<(String, String, Probed)> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|row| match row {
                Row::Probed(key) => inner.probed.get(key).map(|e| {
                    let own = e.last.lock().unwrap_or_else(|e| e.into_inner()).own;
                    (
                        key.region.clone(),
                        e.endpoint.clone(),
                        own.unwrap_or(Probed::Unknown),
                    )
                }),
                Row::Unchecked { .. } => None,
            })
            .collect()
    }

    /// Recomputes every probed endpoint's combined verdict (after a peer's message, or
    /// as votes go stale) and publishes the ones that changed: the cell (which moves the
    /// health epoch, so answer caches and route memos forget), `geode_endpoint_up`,
    /// `geode_region_up`, and one log line each.
    pub fn recombine(&self) {
        let Some(vantages) = self.shared.vantages.get() else {
            return;
        };
        let mut regions = HashSet::new();
        {
            let inner = self.lock();
            for (key, e) in &inner.probed {
                // Held while the cell is written: the probe task writes its flips under
                // it too, so the two never publish out of order.
                let last = e.last.lock().unwrap_or_else(|e| e.into_inner());
                let Some(own) = last.own else {
                    // No own result yet: the first round decides first, as without peers.
                    continue;
                };
                let combined = vantages.combined(&key.region, &e.endpoint, own);
                let before = e.cell.get();
                if before != combined {
                    e.cell.set(combined);
                    drop(last);
                    self.shared
                        .metrics
                        .endpoint_up
                        .with_label_values(&[key.region.as_str(), e.endpoint.as_str()])
                        .set(i64::from(combined == Probed::Up));
                    regions.insert(key.region.clone());
                    info!(
                        region = %key.region, endpoint = %e.endpoint,
                        from = state_name(before), to = state_name(combined),
                        own = state_name(own),
                        "combined verdict changed (peers' votes)"
                    );
                }
            }
        }
        for region in regions {
            self.shared.recompute_region(&region);
        }
    }

    /// Stops every probe task; cells keep their last state. Later syncs attach cells but
    /// start no probes.
    pub fn shutdown(&self) {
        let mut inner = self.lock();
        inner.shut_down = true;
        for entry in inner.probed.values_mut() {
            if let Some(task) = entry.task.take() {
                task.abort();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for HealthTable {
    fn drop(&mut self) {
        // Tasks hold only the shared part, so without this they would outlive the table.
        self.shutdown();
    }
}

impl Shared {
    /// The verdict to publish for an endpoint whose own verdict is `own`.
    fn combined(&self, region: &str, endpoint: &str, own: Probed) -> Probed {
        match self.vantages.get() {
            Some(v) => v.combined(region, endpoint, own),
            None => own,
        }
    }

    fn own_changed(&self) {
        if let Some(v) = self.vantages.get() {
            v.own_changed();
        }
    }

    /// Recomputes `geode_region_up` after a flip in `region`.
    fn recompute_region(&self, region: &str) {
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cells) = regions.get(region) {
            self.metrics
                .region_up
                .with_label_values(&[region])
                .set(i64::from(cells.is_up()));
        }
    }
}

impl RegionCells {
    /// Probed state only: drain is the router's business, not health's.
    fn is_up(&self) -> bool {
        let up = self.cells.iter().filter(|c| c.get() == Probed::Up).count();
        min_healthy_met(self.min_healthy, u64::from(self.always_up) + up as u64)
    }
}

fn remove_endpoint_labels(metrics: &Metrics, region: &str, endpoint: &str) {
    // Errors only mean a label set was never created (e.g. no probe finished yet).
    let _ = metrics.endpoint_up.remove_label_values(&[region, endpoint]);
    let _ = metrics
        .probe_duration
        .remove_label_values(&[region, endpoint]);
    for result in ["success", "failure", "skipped"] {
        let _ = metrics
            .probes
            .remove_label_values(&[region, endpoint, result]);
    }
    for to in ["up", "down"] {
        let _ = metrics
            .transitions
            .remove_label_values(&[region, endpoint, to]);
    }
    for verdict in ["up", "down", "unknown"] {
        let _ = metrics
            .endpoint_votes
            .remove_label_values(&[region, endpoint, verdict]);
    }
}

fn state_name(p: Probed) -> &'static str {
    match p {
        Probed::Up => "up",
        Probed::Down => "down",
        Probed::Unknown => "unknown",
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests;
