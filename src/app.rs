//! Composition root: load, bind, spawn, signals, drain.
//!
//! Start-up order matters for correctness: the config and GeoIP database are loaded and
//! verified first (a bad file exits 64 before anything binds); the admin HTTP server
//! binds next so /healthz answers and /readyz says "not ready"; one full probe round
//! runs; only then are the DNS sockets bound, so the first GSLB answer already respects
//! health.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::config::ConfigError;
use crate::dns::{self, Handler};
use crate::health::HealthTable;
use crate::metrics::Metrics;
use crate::snapshot::{HealthAttached, Snapshot};
pub use crate::state::Overrides;
use crate::state::{App, load, unix_now};

/// Exit code for a bad config (DESIGN.md: `geode check` exits 64).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code for a failure to start (bind, runtime).
pub const EXIT_RUNTIME: i32 = 1;

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The config (or its GeoIP database) is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A socket could not be bound, or another I/O failure at start.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Metrics registry failure (a programming error; names collide).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) => EXIT_CONFIG,
            _ => EXIT_RUNTIME,
        }
    }
}

/// `geode serve`: runs until SIGTERM or SIGINT.
pub async fn serve(config_path: PathBuf, mut overrides: Overrides) -> Result<(), AppError> {
    let (mut loaded, geo) = load(&config_path, None)?;
    overrides.apply(&mut loaded);
    info!(
        config = %config_path.display(),
        hash = %loaded.source.hash,
        zones = loaded.model.zones.len(),
        services = loaded.model.services.len(),
        regions = loaded.model.regions.len(),
        geoip = ?geo.as_ref().map(|g| g.database_type().to_string()),
        "config loaded"
    );
    // The override state is read before anything binds, like the config: a state file
    // that cannot be read stops the start (starting without it would undo drains).
    let admin_state = match &loaded.admin {
        None => None,
        Some(settings) => Some((
            settings.clone(),
            crate::admin::read_state(&settings.state_file).map_err(|e| ConfigError {
                problems: vec![loaded.source.problem(&["admin", "state_file"], e)],
            })?,
        )),
    };
    // The admin socket is bound before the first probe round: a check may probe our own
    // /healthz (the demo does), and readiness must be observable while probes run.
    let http_listener = match loaded.model.server.start.http_listen {
        Some(addr) => Some(
            crate::http::bind(addr)
                .await
                .map_err(|e| bind_hint(e, "--http-listen", "server.http_listen"))?,
        ),
        None => None,
    };
    if let Some(l) = &http_listener {
        // Port 0 and --http-listen: self probes follow the socket actually bound, now
        // and on every reload (the overrides are re-applied then).
        overrides.own_http = Some(l.local_addr()?);
        overrides.apply(&mut loaded);
    }
    let metrics = Arc::new(Metrics::new()?);
    // With `[cluster]`, overrides are authored by the node name the peers know.
    let node = loaded
        .cluster
        .as_ref()
        .map_or_else(crate::admin::node_name, |c| c.node.clone());
    let cluster_settings = loaded.cluster.clone();
    let admin = admin_state.map(|(settings, state)| {
        crate::admin::AdminStore::new(&settings, state, node, metrics.clone())
    });
    let health = HealthTable::new(metrics.clone());
    let settings = loaded.model.server.clone();
    let (attached, first_round) = health.attach(loaded);
    let snapshot = Snapshot::build(attached, geo, &metrics);
    match &admin {
        Some(store) => store.attach(&snapshot),
        None => crate::admin::publish_drained(
            &metrics,
            &snapshot.model,
            &crate::overrides::AdminView::none(),
        ),
    }
    metrics.reload_success.inc();
    metrics.last_reload.set(unix_now());
    let mut app = App {
        shared: Arc::new(ArcSwap::from_pointee(snapshot)),
        metrics: metrics.clone(),
        health: health.clone(),
        config_path: config_path.clone(),
        overrides,
        ready: Arc::new(AtomicBool::new(false)),
        reload_lock: Arc::new(tokio::sync::Mutex::new(())),
        last_reload_failure: Arc::default(),
        admin,
        cluster: None,
    };
    // Attached as the first probe round starts (before any probe can have finished); a
    // flip published before it would be recombined by the cluster ticker's first tick.
    app.cluster = cluster_settings.map(|settings| {
        crate::cluster::Cluster::new(
            settings,
            health.clone(),
            app.admin.clone(),
            app.shared.clone(),
            metrics.clone(),
            http_listener.as_ref().and_then(|l| l.local_addr().ok()),
        )
    });
    let cluster_tasks = app.cluster.as_ref().map(|c| c.spawn()).unwrap_or_default();
    let expiry = app
        .admin
        .as_ref()
        .map(|store| store.spawn_expiry(app.shared.clone()));
    let http = http_listener.map(|l| crate::http::serve(l, app.clone()));

    first_round.wait().await;
    warn_regions_down(&app.shared.load());
    let listeners = dns::listen::bind(
        &settings,
        Handler::new(app.shared.clone(), metrics.clone()),
        app.shared.clone(),
        metrics.clone(),
    )
    .map_err(|e| bind_hint(e, "--dns-listen", "server.dns_listen"))?;
    let reloader = crate::reload::spawn(app.clone());
    let prewarm = spawn_dnssec_prewarm(app.shared.clone());
    app.ready.store(true, Ordering::SeqCst);
    info!("ready");

    wait_for_shutdown().await;
    info!("shutting down: draining in-flight queries");
    app.ready.store(false, Ordering::SeqCst);
    reloader.abort();
    prewarm.abort();
    if tokio::time::timeout(Duration::from_secs(5), listeners.shutdown())
        .await
        .is_err()
    {
        warn!("drain timed out after 5s; exiting anyway");
    }
    health.shutdown();
    for t in cluster_tasks {
        t.abort();
    }
    if let Some(e) = expiry {
        e.abort();
    }
    if let Some(h) = http {
        h.abort();
    }
    info!("stopped");
    Ok(())
}

/// After the first probe round: a region down at start-up is a warning, not a detail,
/// since fail-open (`when_all_down = "all"`) would otherwise hide it from clients' view.
fn warn_regions_down(snap: &Snapshot) {
    use crate::route::HealthView;
    let down: Vec<&str> = snap
        .model
        .regions
        .iter()
        .filter(|r| {
            let up = r
                .endpoints
                .iter()
                .filter(|e| crate::route::LiveHealth.endpoint_up(e))
                .count();
            (up as u32) < r.min_healthy
        })
        .map(|r| r.name.as_str())
        .collect();
    if !down.is_empty() {
        warn!(
            regions = %down.join(","),
            "regions down after the first probe round: check their endpoints (GET /status shows each probe's last error)"
        );
    }
}

/// Adds to a bind error what the operator can do about it: the message is all they see
/// of a server that would not start.
fn bind_hint(e: std::io::Error, flag: &str, key: &str) -> std::io::Error {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "another process is using this address: stop it, or choose another address \
             with {flag} ADDR:PORT (or {key} in the config file)"
        ),
        ErrorKind::PermissionDenied => format!(
            "ports below 1024 need CAP_NET_BIND_SERVICE: run geode with the unit in \
             deploy/systemd/ (it grants only that capability), or \
             `setcap cap_net_bind_service=+ep` on the binary, or choose a port of 1024 or \
             above with {flag} ADDR:PORT"
        ),
        _ => return e,
    };
    std::io::Error::new(e.kind(), format!("{e}; {hint}"))
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

/// `geode check`: the full load path, binding nothing. Returns the exit code.
pub fn check(config_path: &Path) -> i32 {
    match load(config_path, None) {
        Ok((loaded, geo)) => {
            let m = &loaded.model;
            println!(
                "{}: ok ({} zones, {} services, {} regions, {} checks{})",
                config_path.display(),
                m.zones.len(),
                m.services.len(),
                m.regions.len(),
                m.checks.len(),
                geo.map(|g| format!(", geoip {}", g.database_type()))
                    .unwrap_or_default()
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_CONFIG
        }
    }
}

/// Watches the health epoch and, after a flip, signs the GSLB RRsets the new health
/// produces (`ZoneIndex::prewarm_health`) on a blocking thread, so the first DO query
/// after a flip finds its signature made. A poll of one atomic every 200 ms; nothing at
/// all happens without a signed zone.
fn spawn_dnssec_prewarm(shared: crate::snapshot::Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = crate::model::health_epoch();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = crate::model::health_epoch();
            if now == seen {
                continue;
            }
            seen = now;
            let snap = shared.load_full();
            if snap.zones.zones.iter().all(|z| z.signer.is_none()) {
                continue;
            }
            let _ =
                tokio::task::spawn_blocking(move || snap.zones.prewarm_health(&snap.model)).await;
        }
    })
}

/// Health view for `geode explain`, which probes nothing: every endpoint counts as up.
#[derive(Debug, Clone, Copy)]
pub struct AssumeUp;

impl crate::route::HealthView for AssumeUp {
    fn endpoint_up(&self, _: &crate::model::Endpoint) -> bool {
        true
    }
}

/// `geode explain`: prints the decision for one client. Returns the exit code.
pub fn explain(
    config_path: &Path,
    client: crate::snapshot::ClientSpec,
    name: &str,
    qtype: &str,
) -> i32 {
    let (loaded, geo) = match load(config_path, None) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("metrics: {e}");
            return EXIT_RUNTIME;
        }
    };
    let snap = Snapshot::build(HealthAttached::unprobed(loaded), geo, &metrics);
    match snap.explain(name, qtype, client, &AssumeUp) {
        Ok(e) => {
            print!("{e}");
            println!(
                "health   not probed by `geode explain`: every endpoint counts as up (see /explain on a running server)"
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}
