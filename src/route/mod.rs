//! Pure routing: (model, service, family, located client, health view) -> [`Decision`].
//!
//! ```text
//!   service.regions ──► candidates ──► health ──► rank ──────────► pick ──► addresses
//!                       - drained      min_healthy  nearest:          weights split the
//!                       - fenced out   when_all_down  latency row     tie set, hashed on
//!                       - no endpoint                 > distance      the client subnet
//!                         of the family               > order         (stable per resolver)
//!                                                   failover: order
//!                                                   weighted: all up
//! ```
//!
//! Implements the routing semantics of DESIGN.md ("Request path and routing semantics")
//! and the SCOPE PREFIX-LENGTH rules of RFC 7871 section 7.2.1: the scope returned is
//! the prefix the answer really depended on, 0 when it did not depend on the client.
//!
//! Nothing here does I/O, locks or allocates: candidates live in a stack array bounded by
//! [`MAX_SERVICE_REGIONS`]. [`explain()`] runs the same decision and turns the working
//! state into a human/JSON trace; only it allocates.
//!
//! The rules live in `decision.rs` (one decision, from candidates to addresses); `memo.rs`
//! keeps nearest-region decisions per client place for a query loop; `explain.rs` turns
//! a decision's working state into a trace.

mod decision;
mod explain;
mod memo;

pub use explain::{CandidateTrace, Explanation, explain};
pub use memo::RouteMemo;

use decision::{SMALL, Work, decide};

use crate::model::{
    ClientLocation, Decision, Endpoint, Family, MAX_SERVICE_REGIONS, Model, Probed, Region,
    RegionId, Service, ServiceId,
};
use crate::overrides::AdminView;

/// The live state the router reads besides the config: probed health and, through the
/// provided methods, operator overrides (drain, weight, forced endpoints). The defaults
/// are the config's own values, so a view without overrides implements only
/// [`HealthView::endpoint_up`].
pub trait HealthView {
    /// True when the endpoint passes its probes (or has none).
    fn endpoint_up(&self, ep: &Endpoint) -> bool;

    /// True when endpoint `ep` of region `rid` counts as up for routing: an operator's
    /// force wins over its probes.
    #[inline]
    fn endpoint_up_in(&self, _rid: RegionId, ep: &Endpoint) -> bool {
        self.endpoint_up(ep)
    }

    /// Region `rid`'s endpoints that count as up ([`HealthView::endpoint_up_in`]): all of
    /// them, and those of `family`. A view may answer from counts it keeps, as the route
    /// memo's does for the length of a health epoch; the answer must be the count.
    #[inline]
    fn endpoints_up(&self, rid: RegionId, region: &Region, family: Family) -> (u32, u32) {
        let (mut up, mut up_family) = (0u32, 0u32);
        for ep in &region.endpoints {
            if self.endpoint_up_in(rid, ep) {
                up += 1;
                up_family += u32::from(decision::family_matches(ep, family));
            }
        }
        (up, up_family)
    }

    /// True when region `rid` is drained, by config or by an override.
    #[inline]
    fn drained(&self, _rid: RegionId, region: &Region) -> bool {
        region.drain
    }

    /// Region `rid`'s weight for service `sid`: an override, else the configured one.
    #[inline]
    fn weight(&self, _sid: ServiceId, svc: &Service, rid: RegionId, region: &Region) -> u32 {
        svc.weight(rid, region)
    }
}

/// The production view: the probed state published by the health tasks.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveHealth;

impl HealthView for LiveHealth {
    #[inline]
    fn endpoint_up(&self, ep: &Endpoint) -> bool {
        ep.check.is_none() || ep.health.get() == Probed::Up
    }
}

/// The production view with the operator overrides of the snapshot's
/// [`AdminView`] applied over the probed state.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a>(pub &'a AdminView);

impl HealthView for Live<'_> {
    #[inline]
    fn endpoint_up(&self, ep: &Endpoint) -> bool {
        LiveHealth.endpoint_up(ep)
    }

    #[inline]
    fn endpoint_up_in(&self, rid: RegionId, ep: &Endpoint) -> bool {
        match self.0.forced(rid, ep) {
            Some(up) => up,
            None => LiveHealth.endpoint_up(ep),
        }
    }

    #[inline]
    fn drained(&self, rid: RegionId, region: &Region) -> bool {
        region.drain || self.0.drained(rid)
    }

    #[inline]
    fn weight(&self, sid: ServiceId, svc: &Service, rid: RegionId, region: &Region) -> u32 {
        self.0
            .weight(sid, rid)
            .unwrap_or_else(|| svc.weight(rid, region))
    }
}

/// Routes one query for a service. See the module docs for the rules.
#[inline]
pub fn route(
    model: &Model,
    service: ServiceId,
    family: Family,
    client: &ClientLocation,
    health: &impl HealthView,
) -> Decision {
    let mut d = Decision::default();
    route_into(model, service, family, client, health, &mut d);
    d
}

/// [`route`], writing the decision where the caller keeps it: a [`Decision`] is some
/// 280 bytes, written piecemeal, and the query path reads it right away, so moving it
/// costs more than deciding a simple case.
#[inline]
pub fn route_into(
    model: &Model,
    service: ServiceId,
    family: Family,
    client: &ClientLocation,
    health: &impl HealthView,
    out: &mut Decision,
) {
    // Most services list a handful of regions: a small working array is cheaper to set
    // up than one sized for the largest service allowed.
    if model.services[usize::from(service)].regions.len() <= SMALL {
        let mut w = Work::<SMALL>::new(out);
        decide(&mut w, model, service, family, client, health);
    } else {
        let mut w = Work::<MAX_SERVICE_REGIONS>::new(out);
        decide(&mut w, model, service, family, client, health);
    }
}

/// SplitMix64 finaliser: a fixed, well-mixed hash, so every geode instance (and every
/// restart) sends a given client subnet to the same place.
///
/// Hand-written on purpose, not taken from a hashing crate: its output is part of the
/// routing contract. A fleet in a rolling upgrade must hash a client alike on the old and
/// the new binary, so a crate update that changed the function would split clients
/// between regions mid-upgrade. It must never change;
/// `mix_is_splitmix64_and_never_changes` pins its output.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
