//! Runtime overrides, as pure data: what an operator changed at runtime (drain a region,
//! set a weight, force an endpoint up or down), the per-target "latest change wins"
//! merge, and the effective view the router reads.
//!
//! ```text
//!  API / state file ─► Entry {target, action, reason, author, at, expires}
//!                          │ Overrides::apply / merge: per target, the latest change wins
//!                          ▼
//!                      Overrides (target -> latest entry; clears and expired entries kept)
//!                          │ AdminView::build(model, overrides, now)
//!                          ▼
//!                      AdminView (ids, not names; published with the snapshot, read by route)
//! ```
//!
//! Every change, an undrain or a clear included, is an entry with its time and author:
//! a clear is a tombstone, so a later merge across instances (the fleet) can tell
//! "undrained at t2" from "never drained". Entries are never dropped when they expire:
//! an expired entry is inert but still the latest change for its target, so merging it
//! with an older copy from elsewhere cannot bring the older one back.
//!
//! Nothing here does I/O or reads the clock: time is passed in (unix milliseconds).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, Model, RegionId, ServiceId};

/// Unix time in milliseconds.
pub type Millis = u64;

/// What an override is about. One target holds one current entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The drain state of a region (`drain:REGION`).
    Drain {
        /// Region name.
        region: String,
    },
    /// A region's weight, for every service or for one (`weight:REGION[@SERVICE]`).
    Weight {
        /// Region name.
        region: String,
        /// Service name (lower case, trailing dot); `None` = every service.
        service: Option<String>,
    },
    /// An endpoint's state (`force:REGION/ADDRESS`).
    Force {
        /// Region name.
        region: String,
        /// The endpoint's address.
        address: IpAddr,
    },
}

impl Target {
    /// The region the target is in.
    pub fn region(&self) -> &str {
        match self {
            Target::Drain { region }
            | Target::Weight { region, .. }
            | Target::Force { region, .. } => region,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Drain { region } => write!(f, "drain:{region}"),
            Target::Weight {
                region,
                service: None,
            } => write!(f, "weight:{region}"),
            Target::Weight {
                region,
                service: Some(s),
            } => write!(f, "weight:{region}@{s}"),
            Target::Force { region, address } => write!(f, "force:{region}/{address}"),
        }
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        let bad = || {
            format!("invalid target {s:?} (drain:R, weight:R, weight:R@SERVICE, force:R/ADDRESS)")
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let nonempty = |r: &str| (!r.is_empty()).then(|| r.to_string()).ok_or_else(bad);
        match kind {
            "drain" => Ok(Target::Drain {
                region: nonempty(rest)?,
            }),
            "weight" => Ok(match rest.split_once('@') {
                Some((r, svc)) => Target::Weight {
                    region: nonempty(r)?,
                    service: Some(nonempty(svc)?),
                },
                None => Target::Weight {
                    region: nonempty(rest)?,
                    service: None,
                },
            }),
            "force" => {
                let (r, a) = rest.split_once('/').ok_or_else(bad)?;
                Ok(Target::Force {
                    region: nonempty(r)?,
                    address: a.parse().map_err(|_| bad())?,
                })
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a change does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", content = "value", rename_all = "snake_case")]
pub enum Action {
    /// Drain the region (a `drain:` target).
    Drain,
    /// Use this weight (a `weight:` target); 0 = standby.
    Weight(u32),
    /// Count the endpoint up whatever its probes say (a `force:` target).
    ForceUp,
    /// Count the endpoint down whatever its probes say (a `force:` target).
    ForceDown,
    /// Remove the override (undrain, weight clear, force clear): a tombstone.
    Clear,
}

impl Action {
    /// The `action` label of `geode_admin_changes_total` for this change of `target`.
    pub fn label(&self, target: &Target) -> &'static str {
        match (self, target) {
            (Action::Drain, _) => "drain",
            (Action::Clear, Target::Drain { .. }) => "undrain",
            (Action::Weight(_), _) => "weight",
            (Action::Clear, Target::Weight { .. }) => "weight_clear",
            (Action::ForceUp, _) => "force_up",
            (Action::ForceDown, _) => "force_down",
            (Action::Clear, Target::Force { .. }) => "force_clear",
        }
    }

    /// True when the action is one `target` can take.
    pub fn fits(&self, target: &Target) -> bool {
        matches!(
            (self, target),
            (Action::Clear, _)
                | (Action::Drain, Target::Drain { .. })
                | (Action::Weight(_), Target::Weight { .. })
                | (Action::ForceUp | Action::ForceDown, Target::Force { .. })
        )
    }

    /// Rank in the merge's tie-break order (see [`Entry::merge_key`]).
    fn rank(&self) -> (u8, u32) {
        match self {
            Action::Clear => (0, 0),
            Action::Drain => (1, 0),
            Action::Weight(w) => (2, *w),
            Action::ForceDown => (3, 0),
            Action::ForceUp => (4, 0),
        }
    }
}

/// The largest weight an override may set (the config's bound too).
pub const MAX_WEIGHT: u32 = 1_000_000;

/// One change of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What is changed.
    pub target: Target,
    /// How.
    #[serde(flatten)]
    pub action: Action,
    /// Why, as the operator wrote it (may be empty).
    #[serde(default)]
    pub reason: String,
    /// The instance (node name) where the change was made.
    pub author: String,
    /// When the change was made, unix ms.
    pub at: Millis,
    /// When it stops applying, unix ms; `None` = until changed.
    #[serde(default)]
    pub expires: Option<Millis>,
}

impl Entry {
    /// In force at `now`: not a clear, not expired.
    pub fn active(&self, now: Millis) -> bool {
        self.action != Action::Clear && self.expires.is_none_or(|e| now < e)
    }

    /// The merge's total order: the later change wins; equal times are settled by
    /// author, then by the action and the rest of the entry, so every instance picks
    /// the same entry whatever order it hears them in.
    fn merge_key(&self) -> (Millis, &str, (u8, u32), Option<Millis>, &str) {
        (
            self.at,
            &self.author,
            self.action.rank(),
            self.expires,
            &self.reason,
        )
    }

    /// True when `self` wins over `other` for their (same) target.
    pub fn supersedes(&self, other: &Entry) -> bool {
        self.merge_key() > other.merge_key()
    }
}

/// Every target's latest change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    entries: BTreeMap<Target, Entry>,
}

/// The state file's shape.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    overrides: Vec<Entry>,
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Overrides {
        Overrides::default()
    }

    /// Takes `entry` if it is the latest change of its target; returns whether it did.
    pub fn apply(&mut self, entry: Entry) -> bool {
        match self.entries.get(&entry.target) {
            Some(cur) if !entry.supersedes(cur) => false,
            _ => {
                self.entries.insert(entry.target.clone(), entry);
                true
            }
        }
    }

    /// The current entry of a target.
    pub fn get(&self, target: &Target) -> Option<&Entry> {
        self.entries.get(target)
    }

    /// Every entry, in target order (clears and expired ones included).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of targets with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no target has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest expiry after `now`, if any entry still has one to come.
    pub fn next_expiry(&self, now: Millis) -> Option<Millis> {
        self.entries
            .values()
            .filter(|e| e.action != Action::Clear)
            .filter_map(|e| e.expires)
            .filter(|&e| e > now)
            .min()
    }

    /// The state file text (JSON).
    pub fn to_json(&self) -> String {
        let file = StateFile {
            version: 1,
            overrides: self.entries.values().cloned().collect(),
        };
        let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reads a state file's text. Entries whose action does not fit their target are
    /// errors: the file is either ours or edited by hand, and a silent drop would undo
    /// an operator's change.
    pub fn from_json(text: &str) -> Result<Overrides, String> {
        let file: StateFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.version != 1 {
            return Err(format!("unknown state file version {}", file.version));
        }
        let mut out = Overrides::new();
        for e in file.overrides {
            if !e.action.fits(&e.target) {
                return Err(format!("{}: action {:?} does not fit", e.target, e.action));
            }
            out.apply(e);
        }
        Ok(out)
    }
}

/// Per target, the later of the two entries (see [`Entry::supersedes`]). Commutative,
/// associative and idempotent, so instances exchanging their sets in any order and any
/// number of times agree on one entry per target.
pub fn merge(a: &Overrides, b: &Overrides) -> Overrides {
    let mut out = a.clone();
    for e in b.entries.values() {
        out.apply(e.clone());
    }
    out
}

/// Why a target does not name something in the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No such region.
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    /// No such service.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// The region has no endpoint with this address.
    #[error("region {region:?} has no endpoint {address}")]
    UnknownEndpoint {
        /// Region name.
        region: String,
        /// The address asked for.
        address: IpAddr,
    },
    /// The service does not list the region, so its weight there means nothing.
    #[error("service {service} does not list region {region:?}")]
    NotInService {
        /// Service name.
        service: String,
        /// Region name.
        region: String,
    },
}

impl TargetError {
    /// True when the target names something that does not exist (HTTP 404), false when
    /// the names exist but do not go together (HTTP 400).
    pub fn is_not_found(&self) -> bool {
        !matches!(self, TargetError::NotInService { .. })
    }
}

/// A target resolved to model ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A region's drain.
    Drain(RegionId),
    /// A region's weight, for one service or all.
    Weight(RegionId, Option<ServiceId>),
    /// An endpoint (region, address).
    Force(RegionId, IpAddr),
}

/// Resolves a target against the config: the one check the API (400/404) and the view
/// (dangling entries) share.
pub fn resolve(model: &Model, target: &Target) -> Result<Resolved, TargetError> {
    let rid = model
        .region_id(target.region())
        .ok_or_else(|| TargetError::UnknownRegion(target.region().to_string()))?;
    match target {
        Target::Drain { .. } => Ok(Resolved::Drain(rid)),
        Target::Weight { service: None, .. } => Ok(Resolved::Weight(rid, None)),
        Target::Weight {
            service: Some(name),
            region,
        } => {
            let sid = model
                .service_id(name)
                .ok_or_else(|| TargetError::UnknownService(name.clone()))?;
            if !model.services[usize::from(sid)].regions.contains(&rid) {
                return Err(TargetError::NotInService {
                    service: name.clone(),
                    region: region.clone(),
                });
            }
            Ok(Resolved::Weight(rid, Some(sid)))
        }
        Target::Force { region, address } => {
            if model.regions[usize::from(rid)]
                .endpoints
                .iter()
                .any(|e| e.address == *address)
            {
                Ok(Resolved::Force(rid, *address))
            } else {
                Err(TargetError::UnknownEndpoint {
                    region: region.clone(),
                    address: *address,
                })
            }
        }
    }
}

/// The overrides in force at one moment, by model id: what the router reads. Built off
/// the query path whenever the overrides, the model or the clock (an expiry) change.
#[derive(Debug, Clone, Default)]
pub struct AdminView {
    /// Region drained by an override, by [`RegionId`] (empty when none is).
    drained: Vec<bool>,
    /// Region-wide weight overrides, by [`RegionId`] (empty when none).
    weight: Vec<Option<u32>>,
    /// Per-service weight overrides.
    service_weight: Vec<(ServiceId, RegionId, u32)>,
    /// Forced endpoints: (region, address, up).
    forced: Vec<(RegionId, IpAddr, bool)>,
    /// Active entries, resolved, for /status and /explain.
    active: Vec<(Resolved, Entry)>,
    /// Active entries whose target is not in the config.
    dangling: Vec<(Entry, TargetError)>,
}

impl AdminView {
    /// No overrides (also the view of a server without `[admin]`).
    pub fn none() -> AdminView {
        AdminView::default()
    }

    /// The view of `overrides` over `model` at `now`.
    pub fn build(model: &Model, overrides: &Overrides, now: Millis) -> AdminView {
        let mut v = AdminView::default();
        for e in overrides.entries().filter(|e| e.active(now)) {
            let r = match resolve(model, &e.target) {
                Ok(r) => r,
                Err(err) => {
                    v.dangling.push((e.clone(), err));
                    continue;
                }
            };
            match (r, e.action) {
                (Resolved::Drain(rid), Action::Drain) => {
                    v.drained.resize(model.regions.len(), false);
                    v.drained[usize::from(rid)] = true;
                }
                (Resolved::Weight(rid, None), Action::Weight(w)) => {
                    v.weight.resize(model.regions.len(), None);
                    v.weight[usize::from(rid)] = Some(w);
                }
                (Resolved::Weight(rid, Some(sid)), Action::Weight(w)) => {
                    v.service_weight.push((sid, rid, w));
                }
                (Resolved::Force(rid, addr), Action::ForceUp) => v.forced.push((rid, addr, true)),
                (Resolved::Force(rid, addr), Action::ForceDown) => {
                    v.forced.push((rid, addr, false))
                }
                // `Overrides::from_json` and the API only admit fitting actions.
                _ => continue,
            }
            v.active.push((r, e.clone()));
        }
        v
    }

    /// True when region `rid` is drained by an override.
    #[inline]
    pub fn drained(&self, rid: RegionId) -> bool {
        self.drained.get(usize::from(rid)).copied().unwrap_or(false)
    }

    /// The override of region `rid`'s weight for service `sid`: a per-service one, else a
    /// region-wide one.
    #[inline]
    pub fn weight(&self, sid: ServiceId, rid: RegionId) -> Option<u32> {
        if let Some(&(_, _, w)) = self
            .service_weight
            .iter()
            .find(|(s, r, _)| *s == sid && *r == rid)
        {
            return Some(w);
        }
        self.weight.get(usize::from(rid)).copied().flatten()
    }

    /// The forced state of an endpoint of region `rid`: `Some(up)` when forced.
    #[inline]
    pub fn forced(&self, rid: RegionId, ep: &Endpoint) -> Option<bool> {
        if self.forced.is_empty() {
            return None;
        }
        self.forced
            .iter()
            .find(|(r, a, _)| *r == rid && *a == ep.address)
            .map(|(_, _, up)| *up)
    }

    /// The active entry behind a resolved target, if any.
    pub fn entry(&self, r: Resolved) -> Option<&Entry> {
        self.active.iter().find(|(x, _)| *x == r).map(|(_, e)| e)
    }

    /// Active entries, with what they resolved to.
    pub fn active(&self) -> &[(Resolved, Entry)] {
        &self.active
    }

    /// Active entries whose target the config no longer has (kept, reported, inert).
    pub fn dangling(&self) -> &[(Entry, TargetError)] {
        &self.dangling
    }

    /// The active entries on region `rid` (its drain, weights and endpoints).
    pub fn on_region(&self, rid: RegionId) -> impl Iterator<Item = &Entry> {
        self.active.iter().filter_map(move |(r, e)| {
            let of = match r {
                Resolved::Drain(x) | Resolved::Weight(x, _) | Resolved::Force(x, _) => *x,
            };
            (of == rid).then_some(e)
        })
    }

    /// Names the overrides in an explanation: each candidate lists the overrides in force
    /// on its region, and a region drained by an override (not by config) says so.
    pub fn annotate(&self, model: &Model, exp: &mut crate::route::Explanation) {
        if self.active.is_empty() {
            return;
        }
        for c in &mut exp.candidates {
            let Some(rid) = model.region_id(&c.region) else {
                continue;
            };
            if self.drained(rid) && c.status == "drained" && !model.regions[usize::from(rid)].drain
            {
                c.status = "drained (override)".into();
            }
            c.overrides = self.on_region(rid).map(describe).collect();
        }
    }
}

/// One line about an entry for /explain and logs: `override drain (reason "db failover",
/// by fra-1 at 1700000000000, until 1700000600000)`.
pub fn describe(e: &Entry) -> String {
    let what = match e.action {
        Action::Drain => "drain".to_string(),
        Action::Weight(w) => format!("weight {w}"),
        Action::ForceUp => "force up".into(),
        Action::ForceDown => "force down".into(),
        Action::Clear => "clear".into(),
    };
    let mut s = format!("override {what} ({}", e.target);
    if !e.reason.is_empty() {
        s.push_str(&format!(", reason {:?}", e.reason));
    }
    s.push_str(&format!(", by {} at {}", e.author, rfc3339(e.at)));
    if let Some(x) = e.expires {
        s.push_str(&format!(", until {}", rfc3339(x)));
    }
    s.push(')');
    s
}

/// Unix ms as RFC 3339 UTC (`2026-12-04T18:00:00.000Z`), without a date crate: days to
/// civil date by Howard Hinnant's algorithm.
pub fn rfc3339(ms: Millis) -> String {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let sod = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests;
