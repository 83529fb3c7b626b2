//! Health table placeholder: the interface the rest of geode uses. (Being replaced by
//! the active prober in the same change series.)

use std::sync::Arc;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::{Model, Probed};

/// Probed state of every endpoint, keyed by endpoint identity, surviving reloads.
#[derive(Debug)]
pub struct HealthTable {
    metrics: Arc<Metrics>,
}

/// Completes when every endpoint new in a sync has its first probe result.
#[derive(Debug)]
pub struct FirstRound;

impl FirstRound {
    /// Waits for the round (bounded by the longest probe timeout).
    pub async fn wait(self) {}
}

/// One endpoint in /status.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// Region name.
    pub region: String,
    /// Address handed out.
    pub endpoint: String,
}

impl HealthTable {
    /// A table reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<HealthTable> {
        Arc::new(HealthTable { metrics })
    }

    /// Attaches shared cells to the model's endpoints and starts probes for new ones.
    pub fn sync(self: &Arc<Self>, model: &mut Model) -> FirstRound {
        let _ = &self.metrics;
        for r in &mut model.regions {
            for e in &mut r.endpoints {
                e.health.set(Probed::Up);
            }
        }
        FirstRound
    }

    /// Every endpoint's state.
    pub fn status(&self) -> Vec<EndpointStatus> {
        Vec::new()
    }

    /// Stops every probe.
    pub fn shutdown(&self) {}
}
