//! The one immutable snapshot a query reads: validated model, compiled DNS tables, GeoIP
//! reader and pre-resolved answer counters. Built off the query path, swapped whole.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use prometheus::IntCounter;

use crate::config::Loaded;
use crate::dns::zones::ZoneIndex;
use crate::geo::GeoDb;
use crate::metrics::Metrics;
use crate::model::{AdminSettings, ClusterSettings, Model};
use crate::overrides::AdminView;

/// Everything one query needs, immutable.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated config.
    pub model: Model,
    /// Static records and GSLB names compiled to hickory records.
    pub zones: ZoneIndex,
    /// Wire-format tables for the UDP fast path.
    pub fast: crate::dns::fast::FastIndex,
    /// GeoIP reader, when configured.
    pub geo: Option<Arc<GeoDb>>,
    /// `answers[service][region]` counters, resolved at build time.
    pub answer_counters: Vec<Vec<IntCounter>>,
    /// The config file.
    pub file: PathBuf,
    /// Hash of the config text.
    pub hash: String,
    /// When this snapshot was built.
    pub loaded_at: SystemTime,
    /// Unique per snapshot built in this process (never reused, unlike an address), so a
    /// cache of answers can tell which snapshot they came from.
    pub generation: u64,
    /// `[admin]` as loaded with this config (the API reads its token from here).
    pub admin_settings: Option<AdminSettings>,
    /// `[cluster]` as loaded with this config (start-only: a reload must keep it equal;
    /// the peer endpoint reads the secret from here).
    pub cluster_settings: Option<ClusterSettings>,
    /// The runtime overrides in force over this model: replaced (not the snapshot) when
    /// an override changes or expires, loaded once per routed query. Empty until the
    /// admin store attaches its view (`crate::admin`).
    pub admin: ArcSwap<AdminView>,
}

/// Source of [`Snapshot::generation`].
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The swappable handle shared by the DNS, HTTP, health and reload tasks.
pub type Shared = Arc<ArcSwap<Snapshot>>;

/// A loaded config whose endpoints carry the health cells queries will read: the only
/// input [`Snapshot::build`] takes, so no snapshot is built from a model the health table
/// has not seen (its cells would never flip, and a reload would reset every state).
#[derive(Debug)]
pub struct HealthAttached(Loaded);

impl HealthAttached {
    /// After [`crate::health::HealthTable::sync`] attached the table's cells.
    pub(crate) fn synced(loaded: Loaded) -> HealthAttached {
        HealthAttached(loaded)
    }

    /// The cells as loaded, with no probe task behind them: for `geode explain`, the
    /// benchmarks and tests, which assume or set health themselves.
    pub fn unprobed(loaded: Loaded) -> HealthAttached {
        HealthAttached(loaded)
    }
}

impl Snapshot {
    /// Compiles a loaded config whose endpoints carry their health cells.
    pub fn build(attached: HealthAttached, geo: Option<Arc<GeoDb>>, metrics: &Metrics) -> Snapshot {
        let HealthAttached(Loaded {
            model,
            admin,
            cluster,
            source,
        }) = attached;
        let zones = ZoneIndex::build(&model, &metrics.dnssec);
        let fast = crate::dns::fast::FastIndex::build(&model, &zones);
        let answer_counters = model
            .services
            .iter()
            .map(|s| {
                model
                    .regions
                    .iter()
                    .map(|r| metrics.answers.with_label_values(&[&s.name, &r.name]))
                    .collect()
            })
            .collect();
        Snapshot {
            model,
            zones,
            fast,
            geo,
            answer_counters,
            file: source.file.clone(),
            hash: source.hash.clone(),
            loaded_at: SystemTime::now(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            admin_settings: admin,
            cluster_settings: cluster,
            admin: ArcSwap::from_pointee(AdminView::none()),
        }
    }
}

/// How `explain` identifies the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSpec {
    /// The client address or ECS subnet address.
    pub addr: std::net::IpAddr,
    /// ECS source prefix when given as `IP/LEN`; `None` means the address is the source.
    pub prefix: Option<u8>,
    /// Resolver address, used when the ECS subnet is unusable.
    pub resolver: Option<std::net::IpAddr>,
}

impl std::str::FromStr for ClientSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (
                ip,
                Some(
                    p.parse::<u8>()
                        .map_err(|_| format!("invalid prefix length in {s:?}"))?,
                ),
            ),
            None => (s, None),
        };
        let addr: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid client address {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix.is_some_and(|p| p > max) {
            return Err(format!("prefix length in {s:?} is longer than the address"));
        }
        Ok(ClientSpec {
            addr,
            prefix,
            resolver: None,
        })
    }
}

impl Snapshot {
    /// The decision trace for a name, type and client (`geode explain`, `/explain`).
    pub fn explain(
        &self,
        name: &str,
        qtype: &str,
        client: ClientSpec,
        health: &impl crate::route::HealthView,
    ) -> Result<crate::route::Explanation, String> {
        use crate::model::Family;
        let fqdn = crate::config::normalize_name(name)?;
        let family = match qtype.to_ascii_uppercase().as_str() {
            "A" => Family::V4,
            "AAAA" => Family::V6,
            other => return Err(format!("explain covers A and AAAA queries, not {other}")),
        };
        let Some(sid) = self.model.service_id(&fqdn) else {
            let names: Vec<&str> = self
                .model
                .services
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return Err(format!(
                "{fqdn} is not a GSLB service (services: {})",
                names.join(", ")
            ));
        };
        // `IP/LEN` is an ECS subnet (its host bits cleared, as a query's must be); the
        // rule that picks the address is the one the DNS paths call.
        let (ecs, resolver) = match client.prefix {
            Some(p) => {
                let net = ipnet::IpNet::new(client.addr, p)
                    .map_err(|e| e.to_string())?
                    .trunc();
                (
                    Some((net.addr(), p)),
                    client.resolver.unwrap_or(client.addr),
                )
            }
            None => (None, client.addr),
        };
        let (ip, source) = crate::model::client_address(ecs, resolver);
        let (loc, _) = crate::geo::locate(&self.model, self.geo.as_deref(), ip, source);
        let mut exp = crate::route::explain(&self.model, sid, family, &loc, health);
        self.admin.load().annotate(&self.model, &mut exp);
        Ok(exp)
    }
}
