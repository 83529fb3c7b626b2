//! One routing decision: candidates, health, rank, pick, addresses (the module docs of
//! [`crate::route`] draw it). Allocation-free: the working state lives on the stack.

use std::net::IpAddr;

use super::{HealthView, mix};
use crate::model::{
    AllDown, ClientLocation, Decision, Endpoint, Family, Model, Outcome, Policy, Region, RegionId,
    ServiceId, hav_to_km, km_to_hav,
};

/// Working-array size used for services with at most this many regions.
pub(super) const SMALL: usize = 8;

/// Why a region is or is not considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Drained,
    Fenced,
    NoFamily,
    Down { up: u32, total: u32 },
    Up,
}

/// What placed a region in the ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Metric {
    Latency(u32),
    /// Haversine term of the distance (see `Trig::hav`), not km.
    Distance(f64),
    Order,
}

impl Metric {
    pub(super) fn group(&self) -> u8 {
        match self {
            Metric::Latency(_) => 0,
            Metric::Distance(_) => 1,
            Metric::Order => 2,
        }
    }
    pub(super) fn value(&self) -> f64 {
        match self {
            Metric::Latency(ms) => f64::from(*ms),
            Metric::Distance(a) => *a,
            Metric::Order => 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Cand {
    pub(super) region: RegionId,
    pub(super) order: u8,
    pub(super) status: Status,
    pub(super) metric: Metric,
    /// The region's weight for this service (config or override).
    pub(super) weight: u32,
    pub(super) live: bool,
    pub(super) tie: bool,
    pub(super) picked: bool,
}

/// A tiny fixed-capacity vector so the decision never touches the heap. Unused items
/// hold a filler value, never read: plain items rather than `Option`s, so reading one
/// needs no tag check.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stack<T: Copy, const N: usize> {
    pub(super) items: [T; N],
    pub(super) len: usize,
}

impl<T: Copy, const N: usize> Stack<T, N> {
    fn new(filler: T) -> Self {
        Stack {
            items: [filler; N],
            len: 0,
        }
    }
    fn push(&mut self, t: T) {
        if self.len < N {
            self.items[self.len] = t;
            self.len += 1;
        }
    }
    pub(super) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items[..self.len].iter()
    }
    fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.items[..self.len].iter_mut()
    }
    pub(super) fn slice_mut(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
    fn get(&self, i: usize) -> Option<&T> {
        self.items[..self.len].get(i)
    }
}

impl Cand {
    /// What unused [`Stack`] items hold.
    const FILLER: Cand = Cand {
        region: 0,
        order: 0,
        status: Status::Drained,
        metric: Metric::Order,
        weight: 0,
        live: false,
        tie: false,
        picked: false,
    };
}

/// The working state of one decision, kept so [`super::explain()`] can show it.
pub(super) struct Work<'d, const N: usize> {
    pub(super) cands: Stack<Cand, N>,
    pub(super) fence: Option<crate::model::ClientKey>,
    pub(super) latency_row: Option<crate::model::ClientKey>,
    pub(super) all_down: Option<AllDown>,
    pub(super) depends_on_location: bool,
    pub(super) depends_on_hash: bool,
    /// No candidate was up and `when_all_down` answers anyway.
    pub(super) fail_open: bool,
    pub(super) decision: &'d mut Decision,
}

pub(super) fn family_matches(ep: &Endpoint, family: Family) -> bool {
    match family {
        Family::V4 => ep.address.is_ipv4(),
        Family::V6 => ep.address.is_ipv6(),
    }
}

pub(super) fn region_has(region: &Region, family: Family) -> bool {
    match family {
        Family::V4 => region.has_v4,
        Family::V6 => region.has_v6,
    }
}

/// Hash of the client's affinity subnet, salted with the service.
pub(super) fn affinity_hash(client: &ClientLocation, service: ServiceId) -> u64 {
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
pub(super) struct LazyHash<'c> {
    pub(super) client: &'c ClientLocation,
    pub(super) service: ServiceId,
    pub(super) value: Option<u64>,
}

impl LazyHash<'_> {
    pub(super) fn get(&mut self) -> u64 {
        *self
            .value
            .get_or_insert_with(|| affinity_hash(self.client, self.service))
    }
}

/// Weighted choice over `pool`, in its order: weight 0 counts as 1 when every member has
/// weight 0 (standby regions share evenly among themselves). A pool of one is that
/// region whatever the hash, so the hash is not asked for.
pub(super) fn weighted_pick(
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
pub(super) fn tie_limit(a: f64) -> f64 {
    km_to_hav(hav_to_km(a) * 1.1)
}

/// No term above this multiple of the best one is within [`tie_limit`]: sin is concave
/// on [0, π], so sin²(1.1θ) ≤ 1.21 sin²θ, and 1.25 leaves room for rounding. Regions
/// further than that are told apart without the inverse trigonometry.
pub(super) const TIE_BOUND: f64 = 1.25;

/// Answers with the picked region: its endpoints of the family, healthy ones unless
/// failing open. When there are more than `max_answers`, the start rotates with the
/// client hash so endpoints share the load; the answer then depends on the client subnet
/// too, and this returns true.
#[allow(clippy::too_many_arguments)]
pub(super) fn fill_addrs(
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
    // One pass in the common case: the first `max` usable endpoints, counting them all.
    let mut n = 0usize;
    for ep in region.endpoints.iter().filter(|ep| usable(ep)) {
        if n < max {
            out.addrs.push(ep.address);
        }
        n += 1;
    }
    let rotated = n > max;
    if rotated {
        // More than `max_answers`: start at a client-hashed place in the usable list
        // instead, so endpoints share the load.
        out.addrs.clear();
        let skip = (hash.get() >> 32) as usize % n;
        for ep in region
            .endpoints
            .iter()
            .filter(|ep| usable(ep))
            .cycle()
            .skip(skip)
            .take(max)
        {
            out.addrs.push(ep.address);
        }
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
pub(super) fn begin(d: &mut Decision, ttl: u32) {
    d.outcome = Outcome::NoData;
    d.region = None;
    d.addrs.clear();
    d.ttl = ttl;
    d.scope = 0;
}

/// The ECS scope of an answer that depended on the client's location or not: the
/// located network's prefix, or 0.
pub(super) fn location_scope(by_location: bool, client: &ClientLocation) -> u8 {
    if by_location { client.scope } else { 0 }
}

/// The ranking order of a candidate as one integer: not live, metric group, metric
/// value (in `f64::total_cmp` order) and `regions` order, most significant first.
pub(super) fn rank_key(c: &Cand) -> u128 {
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

/// A region that is up, or down only by its endpoints' health (so `when_all_down` may
/// still answer with it).
fn eligible(status: Status) -> bool {
    matches!(status, Status::Up | Status::Down { .. })
}

/// Step 3 and 4 of a `nearest` service: each candidate's metric (latency row, else
/// distance, else order), the best live one, the tie set around it, and the pick among
/// the ties by weight.
fn nearest<const N: usize>(
    w: &mut Work<'_, N>,
    model: &Model,
    client: &ClientLocation,
    hash: &mut LazyHash<'_>,
) -> Option<RegionId> {
    let row = model.latency.lookup(client);
    w.latency_row = row.as_ref().map(|(k, _)| k.clone());
    // The client's sines and cosines once; per region only arithmetic.
    let from = client.coords.map(|c| c.trig());
    // Live first, then by metric group, value and `regions` order: one integer key per
    // candidate. The best is found while the metrics are computed; only the tie set
    // needs ordering, so there is no sort of the whole list (explain sorts it for
    // display).
    let mut keys = [u128::MAX; N];
    let mut best: Option<(u128, Metric, u8)> = None;
    for (i, c) in w.cands.iter_mut().enumerate() {
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
        if c.live {
            let k = rank_key(c);
            keys[i] = k;
            if best.is_none_or(|(b, _, _)| k < b) {
                best = Some((k, c.metric, c.order));
            }
        }
    }
    let (_, best, best_order) = best?;
    let mut ties = [0u128; N];
    let mut n = 0;
    let mut limit = None;
    for (i, c) in w.cands.iter_mut().enumerate().filter(|(_, c)| c.live) {
        // Within 10% of the best RTT or distance (distance compared as haversine terms,
        // which grow with it).
        c.tie = match (best, c.metric) {
            (Metric::Order, _) => c.order == best_order,
            (Metric::Distance(a), Metric::Distance(m)) => {
                m == a || (m <= a * TIE_BOUND && m <= *limit.get_or_insert_with(|| tie_limit(a)))
            }
            (b, m) => m.group() == b.group() && m.value() <= b.value() * 1.1,
        };
        if c.tie {
            ties[n] = keys[i];
            n += 1;
        }
    }
    let ties = &mut ties[..n];
    if n > 1 {
        ties.sort_unstable();
    }
    w.depends_on_hash = n > 1;
    // The key's low byte is the `regions` order, which is the candidate's index.
    let pool = ties
        .iter()
        .filter_map(|k| w.cands.get(usize::from(*k as u8)))
        .map(|c| (c.region, c.weight));
    weighted_pick(pool, hash)
}

impl<'d, const N: usize> Work<'d, N> {
    pub(super) fn new(decision: &'d mut Decision) -> Self {
        Work {
            cands: Stack::new(Cand::FILLER),
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
pub(super) fn decide<const N: usize>(
    w: &mut Work<'_, N>,
    model: &Model,
    service: ServiceId,
    family: Family,
    client: &ClientLocation,
    health: &impl HealthView,
) {
    decide_with(w, model, service, family, client, health, |w, allowed| {
        gather(w, model, service, family, allowed, health)
    });
}

/// What steps 3 and 4 ask of the whole candidate list (any live? any eligible? a live
/// weighted region, a live standby one?), gathered in the one pass that builds it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Gathered {
    live_n: usize,
    any_eligible: bool,
    live_weighted: bool,
    live_standby: bool,
}

/// Steps 1 (candidates) and 2 (health) of a decision: pushes a candidate per region of
/// the service onto `w.cands`, which must be empty. `allowed` is the client's fence row.
///
/// Nothing here reads the client but through `allowed`: for a service without a fence
/// the candidates are the same for every client while health and overrides stand
/// still, which is what lets [`super::RouteMemo`] keep them for an era.
pub(super) fn gather<const N: usize>(
    w: &mut Work<'_, N>,
    model: &Model,
    service: ServiceId,
    family: Family,
    allowed: Option<&Vec<RegionId>>,
    health: &impl HealthView,
) -> Gathered {
    let svc = &model.services[usize::from(service)];
    let (mut live_n, mut any_eligible, mut live_weighted, mut live_standby) =
        (0usize, false, false, false);
    for (order, &rid) in svc.regions.iter().enumerate() {
        let region = &model.regions[usize::from(rid)];
        let status = if health.drained(rid, region) {
            Status::Drained
        } else if allowed.is_some_and(|allowed| !allowed.contains(&rid)) {
            Status::Fenced
        } else if !region_has(region, family) {
            Status::NoFamily
        } else {
            let (up, up_family) = health.endpoints_up(rid, region, family);
            if region.enough_up(u64::from(up)) && up_family > 0 {
                Status::Up
            } else {
                Status::Down {
                    up,
                    total: region.endpoints.len() as u32,
                }
            }
        };
        let weight = health.weight(service, svc, rid, region);
        let live = status == Status::Up;
        live_n += usize::from(live);
        any_eligible |= eligible(status);
        live_weighted |= live && weight > 0;
        live_standby |= live && weight == 0;
        w.cands.push(Cand {
            region: rid,
            order: order as u8,
            status,
            metric: Metric::Order,
            weight,
            live,
            tie: false,
            picked: false,
        });
    }
    Gathered {
        live_n,
        any_eligible,
        live_weighted,
        live_standby,
    }
}

/// [`decide`] with steps 1 and 2 left to `gather`, which is given the client's fence row
/// and must do what [`gather`] does (or give what it gave for the same inputs).
pub(super) fn decide_with<'d, const N: usize>(
    w: &mut Work<'d, N>,
    model: &Model,
    service: ServiceId,
    family: Family,
    client: &ClientLocation,
    health: &impl HealthView,
    gather: impl FnOnce(&mut Work<'d, N>, Option<&Vec<RegionId>>) -> Gathered,
) {
    let svc = &model.services[usize::from(service)];
    let fence = svc.fence.lookup(client);
    w.fence = fence.as_ref().map(|(k, _)| k.clone());
    w.depends_on_location = !svc.fence.is_empty();
    begin(w.decision, svc.ttl);

    // 1. Candidates and 2. health.
    let Gathered {
        mut live_n,
        any_eligible,
        mut live_weighted,
        mut live_standby,
    } = gather(w, fence.map(|(_, allowed)| allowed));

    if live_n == 0 {
        if !any_eligible {
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
                    .filter(|c| eligible(c.status))
                    .for_each(|c| c.live = true);
            }
            AllDown::First => {
                w.fail_open = true;
                if let Some(c) = w.cands.iter_mut().find(|c| eligible(c.status)) {
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
        // Failing open changed who is live (rare: every region down): count again.
        for c in w.cands.iter().filter(|c| c.live) {
            live_n += 1;
            live_weighted |= c.weight > 0;
            live_standby |= c.weight == 0;
        }
    }

    // Standby: weight-0 regions only serve when no weighted region is live.
    if live_weighted && live_standby {
        for c in w.cands.iter_mut().filter(|c| c.live && c.weight == 0) {
            c.live = false;
            live_n -= 1;
        }
    }

    let mut hash = LazyHash {
        client,
        service,
        value: None,
    };

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
            w.depends_on_hash = live_n > 1;
            let ties = w
                .cands
                .iter()
                .filter(|c| c.tie)
                .map(|c| (c.region, c.weight));
            weighted_pick(ties, &mut hash)
        }
        Policy::Nearest => {
            w.depends_on_location |= live_n > 1;
            nearest(w, model, client, &mut hash)
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
