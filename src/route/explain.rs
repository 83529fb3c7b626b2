//! `geode explain` and `/explain`: the same decision as [`super::route`], described.

use std::net::IpAddr;

use serde::Serialize;

use super::HealthView;
use super::decision::{Metric, Status, Work, decide, rank_key};
use crate::model::{
    ClientLocation, ClientSource, Decision, Family, LocatedBy, MAX_SERVICE_REGIONS, Model, Outcome,
    Policy, ServiceId, code_str, hav_to_km,
};

/// One region's line in an explanation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CandidateTrace {
    /// Region name.
    pub region: String,
    /// "up", "down (1/3 endpoints up, min_healthy 2)", "down (no IPv6 endpoint up, 2/3
    /// endpoints up)", "drained", "fenced out", "no IPv6 endpoints".
    pub status: String,
    /// Why it ranks where it does: "latency continent:EU 18 ms", "distance 1234 km",
    /// "regions order 2".
    pub rank_reason: String,
    /// Weight for this service (configured, or an override's).
    pub weight: u32,
    /// Considered for the answer (up, or failing open).
    pub considered: bool,
    /// In the set the weights split between.
    pub tie: bool,
    /// The region answered with.
    pub picked: bool,
    /// Operator overrides in force on this region, one line each (filled in by the
    /// caller that has them: [`crate::overrides::AdminView::annotate`]).
    pub overrides: Vec<String>,
}

/// Why a client got its answer; printed by `geode explain`, served by `/explain`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    /// Service name.
    pub service: String,
    /// nearest, weighted or failover.
    pub policy: String,
    /// A or AAAA.
    pub qtype: String,
    /// Address used to locate the client.
    pub client: IpAddr,
    /// "ecs /24" or "source address".
    pub client_source: String,
    /// "client_networks 10.20.0.0/16", "geoip 81.2.69.0/24", "unknown".
    pub located_by: String,
    /// Country, when known.
    pub country: Option<String>,
    /// Continent, when known.
    pub continent: Option<String>,
    /// Coordinates, when known.
    pub coordinates: Option<(f64, f64)>,
    /// The fence rule that applied.
    pub fence: Option<String>,
    /// The latency row that applied.
    pub latency_row: Option<String>,
    /// when_all_down, when it applied.
    pub when_all_down: Option<String>,
    /// Regions in rank order.
    pub candidates: Vec<CandidateTrace>,
    /// ANSWER, NODATA or SERVFAIL.
    pub outcome: String,
    /// The region answered with.
    pub region: Option<String>,
    /// The addresses.
    pub answer: Vec<IpAddr>,
    /// TTL of the answer.
    pub ttl: u32,
    /// ECS scope prefix length returned.
    pub scope: u8,
}

/// Runs the same decision as [`route`](super::route) and describes it.
pub fn explain(
    model: &Model,
    service: ServiceId,
    family: Family,
    client: &ClientLocation,
    health: &impl HealthView,
) -> Explanation {
    let mut decision = Decision::default();
    let mut w = Work::<MAX_SERVICE_REGIONS>::new(&mut decision);
    decide(&mut w, model, service, family, client, health);
    let svc = &model.services[usize::from(service)];
    if svc.policy == Policy::Nearest {
        w.cands.slice_mut().sort_unstable_by_key(rank_key);
    }
    let fam = if family == Family::V4 { "IPv4" } else { "IPv6" };
    let row = w
        .latency_row
        .as_ref()
        .map(|k| k.to_string())
        .unwrap_or_default();
    let candidates = w
        .cands
        .iter()
        .map(|c| {
            let region = &model.regions[usize::from(c.region)];
            CandidateTrace {
                region: region.name.clone(),
                status: match c.status {
                    Status::Up => "up".into(),
                    // Enough endpoints up, yet down: none of them is of the asked family.
                    Status::Down { up, total } if region.enough_up(u64::from(up)) => {
                        format!("down (no {fam} endpoint up, {up}/{total} endpoints up)")
                    }
                    Status::Down { up, total } => {
                        format!(
                            "down ({up}/{total} endpoints up, min_healthy {})",
                            region.min_healthy
                        )
                    }
                    Status::Drained => "drained".into(),
                    Status::Fenced => "fenced out".into(),
                    Status::NoFamily => format!("no {fam} endpoints"),
                },
                rank_reason: match c.metric {
                    Metric::Latency(ms) => format!("latency {row} {ms} ms"),
                    Metric::Distance(a) => format!("distance {:.0} km", hav_to_km(a)),
                    Metric::Order => format!("regions order {}", c.order + 1),
                },
                weight: c.weight,
                considered: c.live,
                tie: c.tie,
                picked: c.picked,
                overrides: Vec::new(),
            }
        })
        .collect();
    Explanation {
        service: svc.name.clone(),
        policy: format!("{:?}", svc.policy).to_lowercase(),
        qtype: if family == Family::V4 { "A" } else { "AAAA" }.into(),
        client: client.ip,
        client_source: match client.source {
            ClientSource::Ecs { source_prefix } => format!("ecs /{source_prefix}"),
            ClientSource::Resolver => "source address".into(),
        },
        located_by: match client.by {
            LocatedBy::ClientNetwork(n) => format!("client_networks {n}"),
            LocatedBy::GeoIp(n) => format!("geoip {n}"),
            LocatedBy::Unknown(Some(n)) => format!("unknown (geoip {n} has no data)"),
            LocatedBy::Unknown(None) => "unknown".into(),
        },
        country: client.country.as_ref().map(|c| code_str(c).to_string()),
        continent: client.continent.as_ref().map(|c| code_str(c).to_string()),
        coordinates: client.coords.map(|c| (c.lat, c.lon)),
        fence: w.fence.as_ref().map(|k| {
            let allowed = svc
                .fence
                .lookup(client)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let names: Vec<&str> = allowed
                .iter()
                .map(|r| model.regions[usize::from(*r)].name.as_str())
                .collect();
            format!("{k} -> [{}]", names.join(", "))
        }),
        latency_row: w.latency_row.as_ref().map(|k| k.to_string()),
        when_all_down: w.all_down.map(|a| format!("{a:?}").to_lowercase()),
        candidates,
        outcome: match w.decision.outcome {
            Outcome::Answer => "ANSWER",
            Outcome::NoData => "NODATA",
            Outcome::ServFail => "SERVFAIL",
        }
        .into(),
        region: w
            .decision
            .region
            .map(|r| model.regions[usize::from(r)].name.clone()),
        answer: w.decision.addrs.as_slice().to_vec(),
        ttl: w.decision.ttl,
        scope: w.decision.scope,
    }
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "service  {} {} (policy {})",
            self.service, self.qtype, self.policy
        )?;
        writeln!(f, "client   {} from {}", self.client, self.client_source)?;
        write!(f, "located  {}", self.located_by)?;
        if let Some(c) = &self.country {
            write!(f, ", country {c}")?;
        }
        if let Some(c) = &self.continent {
            write!(f, ", continent {c}")?;
        }
        if let Some((lat, lon)) = self.coordinates {
            write!(f, ", at {lat:.2},{lon:.2}")?;
        }
        writeln!(f)?;
        if let Some(fence) = &self.fence {
            writeln!(f, "fence    {fence}")?;
        }
        if let Some(row) = &self.latency_row {
            writeln!(f, "latency  row {row}")?;
        }
        if let Some(a) = &self.when_all_down {
            writeln!(f, "all down no candidate is up; when_all_down = {a}")?;
        }
        writeln!(f, "candidates (rank order):")?;
        for (i, c) in self.candidates.iter().enumerate() {
            let mark = if c.picked {
                "=> "
            } else if c.tie {
                " ~ "
            } else {
                "   "
            };
            writeln!(
                f,
                "  {mark}{:>2}. {:<16} {:<40} {:<28} weight {}",
                i + 1,
                c.region,
                c.status,
                c.rank_reason,
                c.weight
            )?;
            for o in &c.overrides {
                writeln!(f, "        {o}")?;
            }
        }
        let addrs: Vec<String> = self.answer.iter().map(|a| a.to_string()).collect();
        writeln!(
            f,
            "answer   {} {}{} ttl {} ecs-scope /{}",
            self.outcome,
            self.region
                .as_deref()
                .map(|r| format!("{r} "))
                .unwrap_or_default(),
            addrs.join(" "),
            self.ttl,
            self.scope
        )
    }
}
