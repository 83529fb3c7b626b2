//! Reload: SIGHUP and changes of the config file (or of the GeoIP database it names)
//! run one pipeline: read -> validate -> open GeoIP if it changed -> attach health ->
//! first probe of new endpoints -> build snapshot -> swap. A failure at any step is
//! logged with file:line:key, counted, and the running snapshot keeps serving.
//!
//! A file-watch reload waits until the watched files have kept their content for
//! `server.reload_settle` (a file written in place in several steps is never applied
//! half-written); SIGHUP reloads at once. Files are read with a size bound and must be
//! regular files (`config::read`).
//!
//! Directories are watched, not files: editors, Kubernetes ConfigMaps (symlink swap of
//! `..data`) and geoipupdate all replace files by rename, which orphans a file watch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{Problem, start_only_changes};
use crate::snapshot::Snapshot;
use crate::state::{App, load, unix_now};

/// What a file-watch reload compares to decide that the files have settled: the config
/// file's bytes (hashed; a rewrite in place within one timestamp tick keeps size and
/// mtime) and the GeoIP database's identity (inode, size, mtime: reading 60 MB every
/// settle period would cost more than it tells).
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    config: Result<u64, String>,
    geoip: Option<crate::geo::FileIdentity>,
}

fn fingerprint(config: &Path, geoip: Option<&Path>) -> Fingerprint {
    use std::hash::{Hash, Hasher};
    let config = crate::config::read::read_regular(
        config,
        crate::config::read::MAX_CONFIG_BYTES,
        "config file bound",
    )
    .map(|bytes| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        h.finish()
    })
    .map_err(|e| e.to_string());
    Fingerprint {
        config,
        geoip: geoip.and_then(crate::geo::file_identity),
    }
}

/// Waits until the watched files have kept the same content for `server.reload_settle`
/// (DESIGN.md, "Reload safety rails": a file written in place in several steps is not
/// served half-written). A SIGHUP meanwhile ends the wait at once: an operator who
/// signals has finished writing. Returns the trigger.
async fn settle(
    app: &App,
    hup: &mut Option<tokio::signal::unix::Signal>,
    rx: &mut mpsc::UnboundedReceiver<()>,
) -> &'static str {
    let (quiet, geoip) = {
        let snap = app.shared.load();
        (
            snap.model.server.live.reload_settle,
            snap.model.server.live.geoip_db.clone(),
        )
    };
    let sample = |config: PathBuf, geoip: Option<PathBuf>| async move {
        tokio::task::spawn_blocking(move || fingerprint(&config, geoip.as_deref()))
            .await
            .ok()
    };
    let mut seen = sample(app.config_path.clone(), geoip.clone()).await;
    loop {
        tokio::select! {
            biased;
            Some(()) = next_hup(hup) => return "SIGHUP",
            () = tokio::time::sleep(quiet) => {
                // Events of this period are covered by the comparison below.
                while rx.try_recv().is_ok() {}
                let now = sample(app.config_path.clone(), geoip.clone()).await;
                if now.is_some() && now == seen {
                    return "file change";
                }
                seen = now;
            }
        }
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file or GeoIP database is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The file changes start-only keys.
    #[error("{file}: {keys} changed; restart geode to apply (reload refused, nothing applied)")]
    StartOnly {
        /// The config file.
        file: PathBuf,
        /// The keys.
        keys: String,
    },
}

/// Runs the pipeline once. Returns the new config hash.
pub async fn reload(app: &App) -> Result<String, ReloadError> {
    let _guard = app.reload_lock.lock().await;
    let current = app.shared.load_full();
    let result = {
        let path = app.config_path.clone();
        let prev_geo = current.geo.clone();
        // Opening and verifying a 60 MB GeoIP database takes real time: keep it off the
        // runtime's worker threads.
        tokio::task::spawn_blocking(move || load(&path, prev_geo.as_ref()))
            .await
            .unwrap_or_else(|e| {
                Err(crate::config::ConfigError {
                    problems: vec![Problem {
                        file: app.config_path.clone(),
                        line: 0,
                        key: String::new(),
                        message: format!("reload task failed: {e}"),
                    }],
                })
            })
    };
    let (mut loaded, geo) = match result {
        Ok(x) => x,
        Err(e) => {
            app.metrics.reload_failure.inc();
            return Err(e.into());
        }
    };
    app.overrides.apply(&mut loaded);
    let mut changed = start_only_changes(&current.model.server, &loaded.model.server);
    // The store and its state file are opened at start; the token itself may change.
    let files = |a: &Option<crate::model::AdminSettings>| {
        a.as_ref()
            .map(|a| (a.token_file.clone(), a.state_file.clone()))
    };
    if files(&current.admin_settings) != files(&loaded.admin) {
        changed.push("admin");
    }
    // `[cluster]` is start-only, secret included: peers, node name and policy are wired
    // into running tasks, and a secret rotated on one instance only would cut it off.
    if current.cluster_settings != loaded.cluster {
        changed.push("cluster");
    }
    if !changed.is_empty() {
        app.metrics.reload_failure.inc();
        return Err(ReloadError::StartOnly {
            file: app.config_path.clone(),
            keys: changed.join(", "),
        });
    }
    let hash = loaded.source.hash.clone();
    let (attached, first_round) = app.health.attach(loaded);
    first_round.wait().await;
    let snap = Snapshot::build(attached, geo, &app.metrics);
    crate::admin::install(app.admin.as_deref(), &app.metrics, &app.shared, snap);
    app.metrics.reload_success.inc();
    app.metrics.last_reload.set(unix_now());
    Ok(hash)
}

async fn reload_and_log(app: &App, why: &str) {
    match reload(app).await {
        Ok(hash) => info!(trigger = why, hash = %hash, "config reloaded"),
        Err(e) => {
            if let Ok(mut last) = app.last_reload_failure.lock() {
                *last = Some(crate::state::ReloadFailure {
                    at: unix_now(),
                    trigger: why.to_string(),
                    error: e.to_string(),
                });
            }
            for line in e.to_string().lines() {
                error!(
                    trigger = why,
                    "reload rejected, keeping the running config: {line}"
                );
            }
        }
    }
}

fn watch_dirs(app: &App) -> Vec<(PathBuf, Vec<std::ffi::OsString>)> {
    let snap = app.shared.load();
    let mut files: Vec<PathBuf> = vec![app.config_path.clone()];
    if let Some(p) = &snap.model.server.live.geoip_db {
        files.push(p.clone());
    }
    let mut dirs: Vec<(PathBuf, Vec<std::ffi::OsString>)> = Vec::new();
    for f in files {
        let dir = f
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = f.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        match dirs.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(name),
            None => dirs.push((dir, vec![name])),
        }
    }
    dirs
}

/// A registered watcher and the (directory, file names) it reports changes for.
type Watching = (
    notify::RecommendedWatcher,
    Arc<std::sync::Mutex<Vec<(PathBuf, Vec<std::ffi::OsString>)>>>,
);

/// Next SIGHUP; never resolves when the signal could not be registered.
async fn next_hup(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup.as_mut() {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// Starts the SIGHUP listener and the file watcher.
///
/// Both are registered before this returns (and so before `serve` logs "ready"): a
/// SIGHUP that arrived before tokio's handler existed would kill the process (the default
/// action), and a file change before the watch existed would be missed.
pub fn spawn(app: App) -> JoinHandle<()> {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher: Option<Watching> = {
        let interesting = Arc::new(std::sync::Mutex::new(Vec::<(
            PathBuf,
            Vec<std::ffi::OsString>,
        )>::new()));
        let filter = interesting.clone();
        let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            let dirs = filter.lock().unwrap_or_else(|p| p.into_inner());
            // A ConfigMap swap renames `..data`, not our file: any change in a
            // watched directory of a name we care about, or of a `..` entry, counts.
            let hit = ev.paths.iter().any(|p| {
                let name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                name.to_string_lossy().starts_with("..")
                    || dirs.iter().any(|(_, names)| names.contains(&name))
            });
            if hit {
                let _ = tx.send(());
            }
        });
        match w {
            Ok(w) => Some((w, interesting)),
            Err(e) => {
                warn!(error = %e, "file watching unavailable; reload with SIGHUP");
                None
            }
        }
    };
    let mut watched: Vec<(PathBuf, Vec<std::ffi::OsString>)> = Vec::new();
    let mut rewatch = move |watcher: &mut Option<Watching>, app: &App| {
        let Some((w, interesting)) = watcher.as_mut() else {
            return;
        };
        let want = watch_dirs(app);
        for (d, _) in &watched {
            if !want.iter().any(|(wd, _)| wd == d) {
                let _ = w.unwatch(d);
            }
        }
        for (d, _) in &want {
            if !watched.iter().any(|(wd, _)| wd == d)
                && let Err(e) = w.watch(d, RecursiveMode::NonRecursive)
            {
                warn!(dir = %d.display(), error = %e, "cannot watch directory; reload with SIGHUP");
            }
        }
        *interesting.lock().unwrap_or_else(|p| p.into_inner()) = want.clone();
        watched = want;
    };
    rewatch(&mut watcher, &app);

    tokio::spawn(async move {
        loop {
            let why = tokio::select! {
                Some(()) = next_hup(&mut hup) => "SIGHUP",
                Some(()) = rx.recv() => settle(&app, &mut hup, &mut rx).await,
            };
            // Events queued so far are covered by this reload, which reads the files now.
            while rx.try_recv().is_ok() {}
            reload_and_log(&app, why).await;
            rewatch(&mut watcher, &app);
        }
    })
}
