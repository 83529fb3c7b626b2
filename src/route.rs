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
//! [`MAX_SERVICE_REGIONS`]. [`explain`] runs the same decision and turns the working
//! state into a human/JSON trace; only it allocates.

use std::net::IpAddr;

use serde::Serialize;

use crate::model::{
    AllDown, ClientLocation, ClientSource, Decision, Endpoint, Family, LocatedBy,
    MAX_SERVICE_REGIONS, Model, Outcome, Policy, Probed, Region, RegionId, Service, ServiceId,
    code_str, hav_to_km, km_to_hav,
};
use crate::overrides::AdminView;

/// Working-array size used for services with at most this many regions.
const SMALL: usize = 8;

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

/// Why a region is or is not considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Drained,
    Fenced,
    NoFamily,
    Down { up: u32, total: u32 },
    Up,
}

/// What placed a region in the ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Latency(u32),
    /// Haversine term of the distance (see `Trig::hav`), not km.
    Distance(f64),
    Order,
}

impl Metric {
    fn group(&self) -> u8 {
        match self {
            Metric::Latency(_) => 0,
            Metric::Distance(_) => 1,
            Metric::Order => 2,
        }
    }
    fn value(&self) -> f64 {
        match self {
            Metric::Latency(ms) => f64::from(*ms),
            Metric::Distance(a) => *a,
            Metric::Order => 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Cand {
    region: RegionId,
    order: u8,
    status: Status,
    metric: Metric,
    /// The region's weight for this service (config or override).
    weight: u32,
    live: bool,
    tie: bool,
    picked: bool,
}

/// A tiny fixed-capacity vector so the decision never touches the heap.
struct Stack<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> Stack<T, N> {
    fn new() -> Self {
        Stack {
            items: [None; N],
            len: 0,
        }
    }
    fn push(&mut self, t: T) {
        if self.len < N {
            self.items[self.len] = Some(t);
            self.len += 1;
        }
    }
    fn iter(&self) -> impl Iterator<Item = &T> + Clone {
        self.items[..self.len].iter().flatten()
    }
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.items[..self.len].iter_mut().flatten()
    }
    fn slice_mut(&mut self) -> &mut [Option<T>] {
        &mut self.items[..self.len]
    }
    fn get(&self, i: usize) -> Option<&T> {
        self.items[..self.len].get(i)?.as_ref()
    }
}

/// The working state of one decision, kept so [`explain`] can show it.
struct Work<'d, const N: usize> {
    cands: Stack<Cand, N>,
    fence: Option<crate::model::ClientKey>,
    latency_row: Option<crate::model::ClientKey>,
    all_down: Option<AllDown>,
    depends_on_location: bool,
    depends_on_hash: bool,
    /// No candidate was up and `when_all_down` answers anyway.
    fail_open: bool,
    decision: &'d mut Decision,
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

fn family_matches(ep: &Endpoint, family: Family) -> bool {
    match family {
        Family::V4 => ep.address.is_ipv4(),
        Family::V6 => ep.address.is_ipv6(),
    }
}

fn region_has(region: &Region, family: Family) -> bool {
    match family {
        Family::V4 => region.has_v4,
        Family::V6 => region.has_v6,
    }
}

/// SplitMix64 finaliser: a fixed, well-mixed hash, so every geode instance (and every
/// restart) sends a given client subnet to the same place.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of the client's affinity subnet, salted with the service.
fn affinity_hash(client: &ClientLocation, service: ServiceId) -> u64 {
    let prefix = u32::from(client.affinity_prefix());
    let bits: u128 = match client.ip {
        IpAddr::V4(a) => {
            let v = u128::from(u32::from(a));
            let mask = if prefix == 0 {
                0
            } else {
                (u32::MAX << (32 - prefix.min(32))) as u128
            };
            (v & mask) | (1u128 << 100)
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix.min(128))
            };
            v & mask
        }
    };
    let h = mix((bits as u64) ^ mix((bits >> 64) as u64));
    mix(h ^ u64::from(service).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ u64::from(prefix))
}

/// The affinity hash, computed on first use: most nearest answers have one region in
/// the tie set and no more addresses than `max_answers`, and never need it.
struct LazyHash<'c> {
    client: &'c ClientLocation,
    service: ServiceId,
    value: Option<u64>,
}

impl LazyHash<'_> {
    fn get(&mut self) -> u64 {
        *self
            .value
            .get_or_insert_with(|| affinity_hash(self.client, self.service))
    }
}

/// Weighted choice over `pool`, in its order: weight 0 counts as 1 when every member has
/// weight 0 (standby regions share evenly among themselves). A pool of one is that
/// region whatever the hash, so the hash is not asked for.
fn weighted_pick(
    pool: impl Iterator<Item = (RegionId, u32)> + Clone,
    hash: &mut LazyHash<'_>,
) -> Option<RegionId> {
    let mut members = pool.clone();
    let (first, _) = members.next()?;
    if members.next().is_none() {
        return Some(first);
    }
    let any_weight = pool.clone().any(|(_, w)| w > 0);
    let w = |weight: u32| if any_weight { u64::from(weight) } else { 1 };
    let total: u64 = pool.clone().map(|(_, weight)| w(weight)).sum();
    if total == 0 {
        return None;
    }
    let mut r = hash.get() % total;
    for (region, weight) in pool {
        let cw = w(weight);
        if r < cw {
            return Some(region);
        }
        r -= cw;
    }
    None
}

/// The haversine term of 110% of the distance whose term is `a`: the edge of the tie
/// set around the nearest region.
fn tie_limit(a: f64) -> f64 {
    km_to_hav(hav_to_km(a) * 1.1)
}

/// No term above this multiple of the best one is within [`tie_limit`]: sin is concave
/// on [0, π], so sin²(1.1θ) ≤ 1.21 sin²θ, and 1.25 leaves room for rounding. Regions
/// further than that are told apart without the inverse trigonometry.
const TIE_BOUND: f64 = 1.25;

/// Answers with the picked region: its endpoints of the family, healthy ones unless
/// failing open. When there are more than `max_answers`, the start rotates with the
/// client hash so endpoints share the load; the answer then depends on the client subnet
/// too, and this returns true.
#[allow(clippy::too_many_arguments)]
fn fill_addrs(
    model: &Model,
    max_answers: u8,
    rid: RegionId,
    family: Family,
    fail_open: bool,
    health: &impl HealthView,
    hash: &mut LazyHash<'_>,
    out: &mut Decision,
) -> bool {
    let region = &model.regions[usize::from(rid)];
    let max = usize::from(max_answers);
    let usable =
        |ep: &Endpoint| family_matches(ep, family) && (fail_open || health.endpoint_up_in(rid, ep));
    let n = region.endpoints.iter().filter(|ep| usable(ep)).count();
    let rotated = n > max;
    let skip = if rotated {
        (hash.get() >> 32) as usize % n
    } else {
        0
    };
    for ep in region
        .endpoints
        .iter()
        .filter(|ep| usable(ep))
        .cycle()
        .skip(skip)
        .take(n.min(max))
    {
        out.addrs.push(ep.address);
    }
    out.region = Some(rid);
    out.outcome = if out.addrs.is_empty() {
        Outcome::NoData
    } else {
        Outcome::Answer
    };
    rotated
}

/// Resets a caller's decision to an empty NODATA with the service's TTL. Field by field:
/// it may hold a previous query's addresses, and only their count needs resetting.
fn begin(d: &mut Decision, ttl: u32) {
    d.outcome = Outcome::NoData;
    d.region = None;
    d.addrs.clear();
    d.ttl = ttl;
    d.scope = 0;
}

/// The ECS scope of an answer that depended on the client's location or not: the
/// located network's prefix, or 0.
fn location_scope(by_location: bool, client: &ClientLocation) -> u8 {
    if by_location { client.scope } else { 0 }
}

/// The ranking order of a candidate as one integer: not live, metric group, metric
/// value (in `f64::total_cmp` order) and `regions` order, most significant first.
fn rank_key(c: &Cand) -> u128 {
    let bits = c.metric.value().to_bits();
    // f64::total_cmp's order as an unsigned integer: negative values flipped entirely,
    // positive ones above them.
    let total = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    u128::from(!c.live) << 127
        | u128::from(c.metric.group()) << 120
        | u128::from(total) << 8
        | u128::from(c.order)
}

impl<'d, const N: usize> Work<'d, N> {
    fn new(decision: &'d mut Decision) -> Self {
        Work {
            cands: Stack::new(),
            fence: None,
            latency_row: None,
            all_down: None,
            depends_on_location: false,
            depends_on_hash: false,
            fail_open: false,
            decision,
        }
    }
}

/// Fills a fresh `w` with the decision. The caller owns the working state and the
/// decision, so both are built in place: returning them by value copied some 650 bytes
/// per query, read back right after being written in small pieces (a store-forwarding
/// stall).
fn decide<const N: usize>(
    w: &mut Work<'_, N>,
    model: &Model,
    service: ServiceId,
    family: Family,
    client: &ClientLocation,
    health: &impl HealthView,
) {
    let svc = &model.services[usize::from(service)];
    let fence = svc.fence.lookup(client);
    w.fence = fence.as_ref().map(|(k, _)| k.clone());
    w.depends_on_location = !svc.fence.is_empty();
    begin(w.decision, svc.ttl);

    // 1. Candidates and 2. health.
    for (order, &rid) in svc.regions.iter().enumerate() {
        let region = &model.regions[usize::from(rid)];
        let status = if health.drained(rid, region) {
            Status::Drained
        } else if fence
            .as_ref()
            .is_some_and(|(_, allowed)| !allowed.contains(&rid))
        {
            Status::Fenced
        } else if !region_has(region, family) {
            Status::NoFamily
        } else {
            let (mut up, mut up_family) = (0u32, 0u32);
            for ep in &region.endpoints {
                if health.endpoint_up_in(rid, ep) {
                    up += 1;
                    up_family += u32::from(family_matches(ep, family));
                }
            }
            if up >= region.min_healthy && up_family > 0 {
                Status::Up
            } else {
                Status::Down {
                    up,
                    total: region.endpoints.len() as u32,
                }
            }
        };
        w.cands.push(Cand {
            region: rid,
            order: order as u8,
            status,
            metric: Metric::Order,
            weight: health.weight(service, svc, rid, region),
            live: status == Status::Up,
            tie: false,
            picked: false,
        });
    }

    let eligible = |c: &Cand| matches!(c.status, Status::Up | Status::Down { .. });
    if !w.cands.iter().any(|c| c.live) {
        if !w.cands.iter().any(eligible) {
            // Nothing of this family inside the fence: the name exists, so NODATA.
            w.decision.scope = location_scope(w.depends_on_location, client);
            return;
        }
        w.all_down = Some(svc.when_all_down);
        match svc.when_all_down {
            AllDown::All => {
                w.fail_open = true;
                w.cands
                    .iter_mut()
                    .filter(|c| eligible(c))
                    .for_each(|c| c.live = true);
            }
            AllDown::First => {
                w.fail_open = true;
                if let Some(c) = w.cands.iter_mut().find(|c| eligible(c)) {
                    c.live = true;
                }
            }
            AllDown::NoData | AllDown::ServFail => {
                w.decision.outcome = if svc.when_all_down == AllDown::ServFail {
                    Outcome::ServFail
                } else {
                    Outcome::NoData
                };
                w.decision.scope = location_scope(w.depends_on_location, client);
                return;
            }
        }
    }

    // Standby: weight-0 regions only serve when no weighted region is live.
    if w.cands.iter().any(|c| c.live && c.weight > 0) {
        w.cands
            .iter_mut()
            .filter(|c| c.weight == 0)
            .for_each(|c| c.live = false);
    }

    let mut hash = LazyHash {
        client,
        service,
        value: None,
    };
    let live_count = w.cands.iter().filter(|c| c.live).count();

    // 3. Rank and 4. pick.
    let picked = match svc.policy {
        Policy::Failover => {
            let c = w.cands.iter_mut().find(|c| c.live);
            c.map(|c| {
                c.tie = true;
                c.region
            })
        }
        Policy::Weighted => {
            w.cands
                .iter_mut()
                .filter(|c| c.live)
                .for_each(|c| c.tie = true);
            w.depends_on_hash = live_count > 1;
            let ties = w
                .cands
                .iter()
                .filter(|c| c.tie)
                .map(|c| (c.region, c.weight));
            weighted_pick(ties, &mut hash)
        }
        Policy::Nearest => {
            let row = model.latency.lookup(client);
            w.latency_row = row.as_ref().map(|(k, _)| k.clone());
            w.depends_on_location |= live_count > 1;
            // The client's sines and cosines once; per region only arithmetic.
            let from = client.coords.map(|c| c.trig());
            for c in w.cands.iter_mut() {
                let region = &model.regions[usize::from(c.region)];
                c.metric = match (
                    row.as_ref().and_then(|(_, r)| r.get(c.region)),
                    &from,
                    &region.trig,
                ) {
                    (Some(ms), _, _) => Metric::Latency(ms),
                    (None, Some(from), Some(to)) => Metric::Distance(from.hav(to)),
                    _ => Metric::Order,
                };
            }
            // Live first, then by metric group, value and `regions` order: one integer
            // key per candidate. Only the best and the tie set need ordering, so there is
            // no sort of the whole list (explain sorts it for display).
            let best = w
                .cands
                .iter()
                .filter(|c| c.live)
                .min_by_key(|c| rank_key(c))
                .map(|c| (c.metric, c.order));
            let mut ties = [0u128; N];
            let mut n = 0;
            if let Some((best, best_order)) = best {
                let mut limit = None;
                for c in w.cands.iter_mut().filter(|c| c.live) {
                    // Within 10% of the best RTT or distance (distance compared as
                    // haversine terms, which grow with it).
                    c.tie = match (best, c.metric) {
                        (Metric::Order, _) => c.order == best_order,
                        (Metric::Distance(a), Metric::Distance(m)) => {
                            m == a
                                || (m <= a * TIE_BOUND
                                    && m <= *limit.get_or_insert_with(|| tie_limit(a)))
                        }
                        (b, m) => m.group() == b.group() && m.value() <= b.value() * 1.1,
                    };
                    if c.tie {
                        ties[n] = rank_key(c);
                        n += 1;
                    }
                }
            }
            let ties = &mut ties[..n];
            ties.sort_unstable();
            w.depends_on_hash = ties.len() > 1;
            // The key's low byte is the `regions` order, which is the candidate's index.
            let pool = ties
                .iter()
                .filter_map(|k| w.cands.get(usize::from(*k as u8)))
                .map(|c| (c.region, c.weight));
            weighted_pick(pool, &mut hash)
        }
    };

    let Some(rid) = picked else {
        return;
    };
    if let Some(c) = w.cands.iter_mut().find(|c| c.region == rid) {
        c.picked = true;
    }

    w.depends_on_hash |= fill_addrs(
        model,
        svc.max_answers,
        rid,
        family,
        w.fail_open,
        health,
        &mut hash,
        w.decision,
    );

    let mut scope = location_scope(w.depends_on_location, client);
    if w.depends_on_hash {
        scope = scope.max(client.affinity_prefix());
    }
    w.decision.scope = scope;
}

/// What a memoised decision depended on: the service, the family and the located
/// client's place. Nothing else about the client counts for the decisions kept (see
/// [`RouteMemo`]).
/// Packed to 24 bytes (the `Option`s cost 16 more) so more places fit in cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct MemoKey {
    /// Latitude and longitude as bits: equal bits rank the same.
    lat: u64,
    lon: u64,
    service: ServiceId,
    country: [u8; 2],
    continent: [u8; 2],
    /// Bit 0: IPv6; bits 1-3: coordinates, country, continent present.
    flags: u8,
}

impl MemoKey {
    fn new(service: ServiceId, family: Family, client: &ClientLocation) -> MemoKey {
        let (lat, lon) = client
            .coords
            .map_or((0, 0), |c| (c.lat.to_bits(), c.lon.to_bits()));
        MemoKey {
            lat,
            lon,
            service,
            country: client.country.unwrap_or_default(),
            continent: client.continent.unwrap_or_default(),
            flags: u8::from(family == Family::V6)
                | u8::from(client.coords.is_some()) << 1
                | u8::from(client.country.is_some()) << 2
                | u8::from(client.continent.is_some()) << 3,
        }
    }

    fn hash(&self) -> u64 {
        let small = u64::from(self.service)
            | u64::from(u16::from_le_bytes(self.country)) << 16
            | u64::from(u16::from_le_bytes(self.continent)) << 32
            | u64::from(self.flags) << 48;
        mix(self.lat ^ mix(self.lon ^ mix(small)))
    }
}

/// A decision as a memo keeps it: everything but the addresses (rebuilt from the region,
/// a few loads) and the scope (the client's, or 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kept {
    /// The answer depended on the client subnet's hash: route afresh. (Also what an
    /// unused slot holds; its era 0 never matches.)
    #[default]
    Hashed,
    /// The decision, whoever in this place asks.
    Fixed {
        outcome: Outcome,
        region: Option<RegionId>,
        fail_open: bool,
        by_location: bool,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct MemoSlot {
    /// [`RouteMemo::era`] when written; a slot of another era is empty.
    era: u32,
    key: MemoKey,
    kept: Kept,
}

/// Nearest-region decisions remembered by client place, for one query loop.
///
/// A GeoIP database maps millions of networks to a few hundred thousand places, and
/// traffic concentrates on far fewer: the ranking of a service's regions (distances,
/// latency row, tie set, health) is the same for every client in one place. The memo
/// keeps the outcome for (service, family, country, continent, coordinates) when that
/// outcome did not depend on the client subnet's hash (a tie set of one region, no
/// address rotation), and the query path then only rebuilds the address list.
///
/// Exactness: the memo serves only `nearest` services whose fence has no cidr rows, in
/// a model whose latency table has none, so nothing else about the client is read by the
/// decision; the scope is re-derived from the client. [`RouteMemo::sync`] forgets every
/// slot when the snapshot generation or the health epoch changes, so a kept decision
/// always saw the same regions and health states a fresh one would.
#[derive(Debug, Default)]
pub struct RouteMemo {
    slots: Vec<MemoSlot>,
    era: u32,
    stamp: (u64, u64),
    hits: u64,
}

impl RouteMemo {
    /// Slots per memo (a power of two): 80 KiB, touched only as it fills.
    pub const SLOTS: usize = 2048;

    /// Decisions served from the memo so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Starts a new era when the model (`generation`) or health (`epoch`) changed.
    #[inline]
    pub fn sync(&mut self, generation: u64, epoch: u64) {
        if self.era == 0 || self.stamp != (generation, epoch) {
            self.stamp = (generation, epoch);
            if self.era == u32::MAX {
                // Eras are about to repeat: old slots must not look current.
                self.slots.fill(MemoSlot::default());
                self.era = 0;
            }
            self.era += 1;
        }
    }

    /// [`route_into`], from the memo when this place was decided in this era. Call
    /// [`RouteMemo::sync`] first.
    #[inline]
    pub fn route_into(
        &mut self,
        model: &Model,
        service: ServiceId,
        family: Family,
        client: &ClientLocation,
        health: &impl HealthView,
        out: &mut Decision,
    ) {
        let svc = &model.services[usize::from(service)];
        if svc.policy != Policy::Nearest
            || svc.regions.len() > SMALL
            || !svc.fence.cidr.is_empty()
            || !model.latency.cidr.is_empty()
            || self.era == 0
        {
            return route_into(model, service, family, client, health, out);
        }
        if self.slots.is_empty() {
            self.slots = vec![MemoSlot::default(); Self::SLOTS];
        }
        let key = MemoKey::new(service, family, client);
        let at = key.hash() as usize & (Self::SLOTS - 1);
        let slot = self.slots[at];
        if slot.era == self.era && slot.key == key {
            match slot.kept {
                Kept::Fixed {
                    outcome,
                    region,
                    fail_open,
                    by_location,
                } => {
                    self.hits += 1;
                    begin(out, svc.ttl);
                    out.outcome = outcome;
                    out.region = region;
                    out.scope = location_scope(by_location, client);
                    if let Some(rid) = region {
                        let mut hash = LazyHash {
                            client,
                            service,
                            value: None,
                        };
                        // Kept only when the list was not rotated, so it is again not.
                        fill_addrs(
                            model,
                            svc.max_answers,
                            rid,
                            family,
                            fail_open,
                            health,
                            &mut hash,
                            out,
                        );
                    }
                    return;
                }
                Kept::Hashed => {
                    return route_into(model, service, family, client, health, out);
                }
            }
        }
        let mut w = Work::<SMALL>::new(out);
        decide(&mut w, model, service, family, client, health);
        let kept = if w.depends_on_hash {
            Kept::Hashed
        } else {
            Kept::Fixed {
                outcome: w.decision.outcome,
                region: w.decision.region,
                fail_open: w.fail_open,
                by_location: w.depends_on_location,
            }
        };
        self.slots[at] = MemoSlot {
            era: self.era,
            key,
            kept,
        };
    }
}

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

/// Runs the same decision as [`route`] and describes it.
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
        w.cands
            .slice_mut()
            .sort_unstable_by_key(|c| c.as_ref().map_or(u128::MAX, rank_key));
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
                    Status::Down { up, total } if up >= region.min_healthy => {
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

#[cfg(test)]
mod tests;
