//! State shared by the running server's parts, and the load path they share.
//!
//! The composition root (`app.rs`) builds an [`App`] and hands clones to the admin HTTP
//! server (`http.rs`) and the reloader (`reload.rs`); they import it from here, so
//! nothing but `main.rs` imports the composition root and the module graph has no cycle
//! through it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{self, ConfigError, Loaded};
use crate::geo::GeoDb;
use crate::health::HealthTable;
use crate::metrics::Metrics;
use crate::snapshot::Shared;

/// The whole load path, binding nothing: config, then the GeoIP database it names
/// (reusing `previous` when the file is unchanged, so a reload does not remap it).
pub fn load(
    path: &Path,
    previous: Option<&Arc<GeoDb>>,
) -> Result<(Loaded, Option<Arc<GeoDb>>), ConfigError> {
    let loaded = config::load(path)?;
    let geo = match &loaded.model.server.geoip_db {
        None => None,
        Some(p) => match previous {
            Some(prev) if prev.is_current(p) => Some(prev.clone()),
            _ => Some(Arc::new(GeoDb::open(p).map_err(|e| ConfigError {
                problems: vec![loaded.source.problem(&["server", "geoip_db"], e.to_string())],
            })?)),
        },
    };
    Ok((loaded, geo))
}

/// Command-line overrides of `[server]`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `server.dns_listen` when not empty.
    pub dns_listen: Vec<SocketAddr>,
    /// Replaces `server.http_listen`.
    pub http_listen: Option<SocketAddr>,
}

impl Overrides {
    /// Applies the overrides to a freshly loaded model.
    pub fn apply(&self, loaded: &mut Loaded) {
        if !self.dns_listen.is_empty() {
            loaded.model.server.dns_listen = self.dns_listen.clone();
        }
        if let Some(h) = self.http_listen {
            loaded.model.server.http_listen = Some(h);
        }
    }
}

/// Shared state of a running server.
#[derive(Debug, Clone)]
pub struct App {
    /// The current snapshot.
    pub shared: Shared,
    /// Metric handles.
    pub metrics: Arc<Metrics>,
    /// Probed state.
    pub health: Arc<HealthTable>,
    /// The config file.
    pub config_path: PathBuf,
    /// CLI overrides, re-applied on every reload.
    pub overrides: Overrides,
    /// True once config is loaded, sockets are bound and the first probe round is done.
    pub ready: Arc<AtomicBool>,
    /// Serializes reloads (SIGHUP and file events may race).
    pub reload_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Unix time now, seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
