//! The runtime side of operator overrides: the store that holds them, persists them to
//! `[admin] state_file`, publishes their [`AdminView`] with the snapshot, and expires
//! them on a timer. The data and its rules are pure, in [`crate::overrides`].
//!
//! ```text
//!  API change ─► lock ─► validate (resolve) ─► apply ─► persist (tmp, fsync, rename)
//!                          ─► snapshot.admin.store(view) ─► routing_changed() (caches forget)
//!                          ─► one log line + geode_admin_changes_total{action}
//!  reload / start ─► lock ─► view for the new model ─► swap the snapshot in (same lock)
//!  expiry timer ─► sleeps until the next expiry (or a change) ─► republish the view
//! ```
//!
//! The store's lock is held across "compute the view" and "publish it", and a reload
//! installs its snapshot under the same lock, so a change can never be published onto a
//! snapshot that is being replaced and then lost. The query path takes no lock: it
//! loads the view from the snapshot.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::metrics::{ADMIN_ACTIONS, Metrics};
use crate::model::{AdminSettings, Model, routing_changed};
use crate::overrides::{
    Action, AdminView, Entry, MAX_WEIGHT, Millis, Overrides, Target, TargetError, merge, resolve,
    rfc3339,
};
use crate::snapshot::{Shared, Snapshot};

/// Unix time now, ms.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// This instance's name as the author of its changes without `[cluster]`: the host name
/// (with `[cluster]`, its `node`).
pub fn node_name() -> String {
    // The kernel's host name as /proc shows it (what uname(2) returns), without the
    // `unsafe` a libc call needs.
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "geode".into())
}

/// One change asked for through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What to change.
    pub target: Target,
    /// How.
    pub action: Action,
    /// Why (free text, may be empty).
    pub reason: String,
    /// Expire after this long; `None` = until changed.
    pub ttl: Option<Duration>,
}

/// Why a change was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The target names nothing in the config (404) or names that do not go together (400).
    #[error("{0}")]
    Target(#[from] TargetError),
    /// The request itself is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The state file could not be written (500): the change is not applied, so what runs
    /// is always what a restart would load.
    #[error("cannot write state file {file}: {error}")]
    Persist {
        /// The state file.
        file: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// The longest reason kept (bytes): it is logged and shown in /status.
pub const MAX_REASON: usize = 512;

/// Overrides of a running server.
pub struct AdminStore {
    state_file: PathBuf,
    node: String,
    inner: Mutex<Inner>,
    wake: Notify,
    /// Notified after every change of the set (local or merged from a peer): the fleet
    /// pushes the set to its peers at once.
    changed: Notify,
    metrics: Arc<Metrics>,
}

struct Inner {
    overrides: Overrides,
    /// Expiries up to this time have been logged and counted.
    expired_until: Millis,
}

impl std::fmt::Debug for AdminStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminStore")
            .field("state_file", &self.state_file)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Reads a state file: missing = no overrides; unreadable or malformed = an error, since
/// starting without them would silently undo an operator's drain.
pub fn read_state(path: &Path) -> Result<Overrides, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Overrides::from_json(&text)
            .map_err(|e| format!("state file {}: {e} (fix or remove it)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overrides::new()),
        Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, written
/// and fsynced, renamed over the old one, then the directory fsynced so the rename
/// itself survives a crash. Readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.unwrap_or_else(|| "state".into()),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl AdminStore {
    /// The store of `settings`, holding `overrides` (read by [`read_state`]).
    pub fn new(
        settings: &AdminSettings,
        overrides: Overrides,
        node: String,
        metrics: Arc<Metrics>,
    ) -> Arc<AdminStore> {
        for a in ADMIN_ACTIONS {
            // Every action's series exists from the start, so rate() sees the first one.
            metrics.admin_changes.with_label_values(&[a]);
        }
        info!(
            state_file = %settings.state_file.display(),
            overrides = overrides.len(),
            "admin API enabled"
        );
        Arc::new(AdminStore {
            state_file: settings.state_file.clone(),
            node,
            inner: Mutex::new(Inner {
                overrides,
                expired_until: now_ms(),
            }),
            wake: Notify::new(),
            changed: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The author name of this instance's changes.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Every override (clears and expired ones included).
    pub fn overrides(&self) -> Overrides {
        self.lock().overrides.clone()
    }

    /// Publishes the view of the overrides over `snap`, a new config not installed yet
    /// (the start), and logs the dangling overrides once.
    pub fn attach(&self, snap: &Snapshot) {
        let inner = self.lock();
        self.attach_locked(&inner, snap);
    }

    /// Attaches the view to `snap` and swaps it in, under the store's lock (see the
    /// module docs).
    pub fn install(&self, shared: &Shared, snap: Snapshot) {
        let inner = self.lock();
        self.attach_locked(&inner, &snap);
        shared.store(Arc::new(snap));
    }

    fn attach_locked(&self, inner: &Inner, snap: &Snapshot) {
        let view = AdminView::build(&snap.model, &inner.overrides, now_ms());
        for (e, why) in view.dangling() {
            warn!("target" = %e.target, error = %why, "override is dangling: its target is not in the config; kept, no effect");
        }
        publish_drained(&self.metrics, &snap.model, &view);
        snap.admin.store(Arc::new(view));
        // The timer re-plans: the new model may make a kept entry count again.
        self.wake.notify_one();
    }

    /// Applies one change from `from`: validated against the running config, persisted,
    /// published, logged and counted. Nothing changes when it fails.
    pub fn change(
        &self,
        shared: &Shared,
        change: Change,
        from: SocketAddr,
    ) -> Result<Entry, ChangeError> {
        let Change {
            target,
            action,
            mut reason,
            ttl,
        } = change;
        if !action.fits(&target) {
            return Err(ChangeError::Invalid(format!(
                "{target} cannot take action {action:?}"
            )));
        }
        if let Action::Weight(w) = action
            && w > MAX_WEIGHT
        {
            return Err(ChangeError::Invalid(format!(
                "weight must be at most {MAX_WEIGHT}"
            )));
        }
        if reason.len() > MAX_REASON {
            return Err(ChangeError::Invalid(format!(
                "reason is longer than {MAX_REASON} bytes"
            )));
        }
        reason.retain(|c| !c.is_control());
        let mut inner = self.lock();
        let snap = shared.load();
        // A clear of a target the config lost (a dangling override) is allowed: that is
        // how an operator removes it.
        let clearing_kept = action == Action::Clear && inner.overrides.get(&target).is_some();
        if !clearing_kept {
            resolve(&snap.model, &target)?;
        }
        let now = now_ms();
        // A local change always becomes the latest for its target, even if the clock
        // stepped back since the entry it replaces.
        let at = inner
            .overrides
            .get(&target)
            .map_or(now, |cur| now.max(cur.at + 1));
        let expires = ttl.map(|d| at.saturating_add(d.as_millis() as Millis));
        let entry = Entry {
            target,
            action,
            reason,
            author: self.node.clone(),
            at,
            expires,
        };
        let mut next = inner.overrides.clone();
        next.apply(entry.clone());
        write_atomic(&self.state_file, &next.to_json()).map_err(|error| ChangeError::Persist {
            file: self.state_file.clone(),
            error,
        })?;
        inner.overrides = next;
        self.publish(&mut inner, &snap.model, &snap, now);
        drop(inner);
        Event::Changed {
            entry: &entry,
            from,
        }
        .emit(&self.metrics);
        self.wake.notify_one();
        self.changed.notify_one();
        Ok(entry)
    }

    /// Resolves after the next change of the override set (one waiter: the fleet's
    /// sender; a change made while it was busy is not lost, `Notify` keeps a permit).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Merges a peer's set into ours (`overrides::merge`: latest change per target wins,
    /// expiry kept), and when that changes anything: persists, publishes (caches forget),
    /// logs and counts every entry taken. A state file that cannot be written leaves
    /// everything as it was (the peer re-sends; it is retried then). Returns how many
    /// entries were taken.
    pub fn merge_remote(&self, shared: &Shared, remote: Overrides, peer: &str) -> usize {
        let mut inner = self.lock();
        let merged = merge(&inner.overrides, &remote);
        if merged == inner.overrides {
            return 0;
        }
        let taken: Vec<Entry> = merged
            .entries()
            .filter(|e| inner.overrides.get(&e.target) != Some(*e))
            .cloned()
            .collect();
        if let Err(error) = write_atomic(&self.state_file, &merged.to_json()) {
            warn!(
                state_file = %self.state_file.display(), %error, %peer,
                "cannot persist overrides from a peer; not applied (retried with its next message)"
            );
            return 0;
        }
        inner.overrides = merged;
        let snap = shared.load();
        let now = now_ms();
        self.publish(&mut inner, &snap.model, &snap, now);
        drop(inner);
        for entry in &taken {
            Event::Merged { entry, peer }.emit(&self.metrics);
        }
        self.wake.notify_one();
        self.changed.notify_one();
        taken.len()
    }

    /// Rebuilds the view at `now` onto the running snapshot, then tells the caches.
    fn publish(&self, inner: &mut Inner, model: &Model, snap: &Snapshot, now: Millis) {
        let view = AdminView::build(model, &inner.overrides, now);
        publish_drained(&self.metrics, model, &view);
        snap.admin.store(Arc::new(view));
        // After the store (Release): a query that sees the new epoch sees the new view.
        routing_changed();
    }

    /// Republishes the view if an override expired since the last call; logs and counts
    /// each expiry once. Returns the next expiry still to come.
    fn expire(&self, shared: &Shared) -> Option<Millis> {
        let now = now_ms();
        let mut inner = self.lock();
        let since = inner.expired_until;
        inner.expired_until = now;
        let expired: Vec<Entry> = inner
            .overrides
            .entries()
            .filter(|e| e.action != Action::Clear)
            .filter(|e| e.expires.is_some_and(|x| x > since && x <= now))
            .cloned()
            .collect();
        if !expired.is_empty() {
            let snap = shared.load();
            self.publish(&mut inner, &snap.model, &snap, now);
            for entry in &expired {
                Event::Expired { entry }.emit(&self.metrics);
            }
        }
        inner.overrides.next_expiry(now)
    }

    /// Starts the expiry timer: it sleeps until the next expiry (or until a change or a
    /// reload wakes it) and republishes the view, so an override ends on time even when
    /// no query arrives.
    pub fn spawn_expiry(self: &Arc<Self>, shared: Shared) -> JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let next = store.expire(&shared);
                match next {
                    Some(at) => {
                        let wait = Duration::from_millis(at.saturating_sub(now_ms()) + 1);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = store.wake.notified() => {}
                        }
                    }
                    None => store.wake.notified().await,
                }
            }
        })
    }
}

/// Something that happened to an override: one log line and one count, from one place,
/// so the two cannot drift apart.
enum Event<'a> {
    /// An operator's change through the API, from `from`.
    Changed { entry: &'a Entry, from: SocketAddr },
    /// An override reached its expiry.
    Expired { entry: &'a Entry },
    /// A peer's change, taken by the merge (`[cluster]`).
    Merged { entry: &'a Entry, peer: &'a str },
}

impl Event<'_> {
    fn emit(&self, metrics: &Metrics) {
        let label = match self {
            Event::Changed { entry, from } => {
                let label = entry.action.label(&entry.target);
                info!(
                    action = label,
                    "target" = %entry.target,
                    reason = ?entry.reason,
                    from = %from,
                    author = %entry.author,
                    expires = %entry.expires.map(rfc3339).unwrap_or_else(|| "never".into()),
                    "admin change"
                );
                label
            }
            Event::Merged { entry, peer } => {
                let label = entry.action.label(&entry.target);
                info!(
                    action = label,
                    "target" = %entry.target,
                    reason = ?entry.reason,
                    peer = %peer,
                    author = %entry.author,
                    expires = %entry.expires.map(rfc3339).unwrap_or_else(|| "never".into()),
                    "admin change from a peer"
                );
                label
            }
            Event::Expired { entry } => {
                info!(
                    action = "expire",
                    "target" = %entry.target,
                    reason = ?entry.reason,
                    author = %entry.author,
                    "admin override expired"
                );
                "expire"
            }
        };
        metrics.admin_changes.with_label_values(&[label]).inc();
    }
}

/// Sets `geode_region_drained` for every region of `model` (config or override) and
/// removes the series of regions it no longer has.
pub fn publish_drained(metrics: &Metrics, model: &Model, view: &AdminView) {
    for fam in prometheus::core::Collector::collect(&metrics.region_drained) {
        for m in fam.get_metric() {
            for l in m.get_label() {
                if l.name() == "region" && model.region_id(l.value()).is_none() {
                    let _ = metrics.region_drained.remove_label_values(&[l.value()]);
                }
            }
        }
    }
    for (i, r) in model.regions.iter().enumerate() {
        let drained = r.drain || view.drained(i as crate::model::RegionId);
        metrics
            .region_drained
            .with_label_values(&[r.name.as_str()])
            .set(i64::from(drained));
    }
}

/// Installs a new snapshot: through the admin store when there is one (so the view of
/// the overrides goes with it), otherwise directly. Every reload and the start use it.
pub fn install(store: Option<&AdminStore>, metrics: &Metrics, shared: &Shared, snap: Snapshot) {
    match store {
        Some(s) => s.install(shared, snap),
        None => {
            publish_drained(metrics, &snap.model, &AdminView::none());
            shared.store(Arc::new(snap));
        }
    }
}

/// An entry as /status and the API show it.
pub fn entry_json(e: &Entry, now: Millis) -> serde_json::Value {
    let state = if e.action == Action::Clear {
        "cleared"
    } else if e.active(now) {
        "active"
    } else {
        "expired"
    };
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("state".into(), state.into());
        o.insert("at_rfc3339".into(), rfc3339(e.at).into());
        if let Some(x) = e.expires {
            o.insert("expires_rfc3339".into(), rfc3339(x).into());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::{Action, Entry};

    #[test]
    fn state_file_is_written_whole_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overrides.json");
        assert_eq!(
            read_state(&path).unwrap(),
            Overrides::new(),
            "missing = none"
        );
        let mut o = Overrides::new();
        o.apply(Entry {
            target: "drain:a".parse().unwrap(),
            action: Action::Drain,
            reason: "r".into(),
            author: "n".into(),
            at: 5,
            expires: None,
        });
        write_atomic(&path, &o.to_json()).unwrap();
        write_atomic(&path, &o.to_json()).unwrap();
        assert_eq!(read_state(&path).unwrap(), o);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["overrides.json"], "no temporary file left behind");
        std::fs::write(&path, "{\"version\":1,").unwrap();
        let err = read_state(&path).unwrap_err();
        assert!(err.contains("fix or remove it"), "{err}");
        // A directory that does not exist: the write fails and leaves nothing.
        assert!(write_atomic(&dir.path().join("no/such/file"), "x").is_err());
    }
}
