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
    let mut loaded = config::load(path)?;
    crate::dnssec::read_keys(&mut loaded)?;
    let geo = match &loaded.model.server.live.geoip_db {
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
    /// The admin HTTP address actually bound (set by `serve`): `probe = "self"` endpoints
    /// probe it, so the demo stays healthy on whatever port it is told to use.
    pub own_http: Option<SocketAddr>,
}

impl Overrides {
    /// Applies the overrides to a freshly loaded model.
    pub fn apply(&self, loaded: &mut Loaded) {
        if !self.dns_listen.is_empty() {
            loaded.model.server.start.dns_listen = self.dns_listen.clone();
        }
        if let Some(h) = self.http_listen {
            loaded.model.server.start.http_listen = Some(h);
        }
        let own = self.own_http.or(loaded.model.server.start.http_listen);
        if let Some(target) = own.map(config::self_probe_target) {
            for (region, address) in &loaded.source.self_probes {
                let endpoint = loaded
                    .model
                    .regions
                    .iter_mut()
                    .filter(|r| &r.name == region)
                    .flat_map(|r| r.endpoints.iter_mut())
                    .find(|e| e.address == *address);
                if let Some(e) = endpoint {
                    e.probe = Some(target);
                }
            }
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
    /// The last rejected reload, for `/status`: the running config may be older than
    /// the file on disk, and the operator should see why without reading logs.
    pub last_reload_failure: Arc<std::sync::Mutex<Option<ReloadFailure>>>,
    /// Runtime overrides (`[admin]`); `None` = the admin API is disabled.
    pub admin: Option<Arc<crate::admin::AdminStore>>,
    /// The fleet (`[cluster]`); `None` = this instance decides alone.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A rejected reload, as `/status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadFailure {
    /// Unix time, seconds.
    pub at: f64,
    /// What triggered it (`SIGHUP`, `file change`).
    pub trigger: String,
    /// The error, `file:line: key: message` per line.
    pub error: String,
}

/// Unix time now, seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under `dir`, recursively.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The layering ARCHITECTURE.md draws, checked on the source text: only `main.rs`
    /// reaches the composition root, and the pure modules import no I/O crate.
    #[test]
    fn nothing_but_main_imports_app_and_pure_modules_stay_pure() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["src", "benches", "tests", "examples"] {
            if root.join(dir).is_dir() {
                sources(&root.join(dir), &mut files);
            }
        }
        assert!(files.len() > 20, "found only {} sources", files.len());
        let mut wrong = Vec::new();
        for file in &files {
            let rel = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(file).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            // Spelt in pieces so this file does not match itself.
            let imports_app = code.contains(concat!("crate::", "app"))
                || code.contains(concat!("geode::", "app"));
            if imports_app && rel != "src/main.rs" && rel != "src/app.rs" {
                wrong.push(format!("{rel} imports app"));
            }
            let pure = rel == "src/model.rs"
                || rel == "src/cluster/votes.rs"
                || rel.starts_with("src/route/")
                || rel.starts_with("src/config/");
            if pure {
                for io in ["tokio", "hickory", "reqwest", "maxminddb"] {
                    if code.contains(&format!("{io}::")) {
                        wrong.push(format!("{rel} (pure) uses {io}"));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "layering broken: {wrong:?}");
    }
}
