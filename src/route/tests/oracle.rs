//! The decision as it was before it was made cheaper (commit 59e8a28): candidates in
//! `Option`s, a pass per flag, the whole tie set sorted, addresses filtered twice. Kept
//! only as the reference that `decide_equals_the_old_decide_on_random_worlds` compares
//! the current [`super::super::decision::decide`] with; never used outside tests.

use super::super::HealthView;
use super::super::decision::{
    Cand, LazyHash, Metric, Status, TIE_BOUND, begin, family_matches, location_scope, rank_key,
    region_has, tie_limit, weighted_pick,
};
use crate::model::{
    AllDown, ClientKey, ClientLocation, Decision, Endpoint, Family, Model, Outcome, Policy,
    RegionId, ServiceId,
};

/// The old working state, minus the decision (returned separately).
pub(super) struct OldWork<const N: usize> {
    pub(super) cands: [Option<Cand>; N],
    pub(super) len: usize,
    pub(super) fence: Option<ClientKey>,
    pub(super) latency_row: Option<ClientKey>,
    pub(super) all_down: Option<AllDown>,
    pub(super) depends_on_location: bool,
    pub(super) depends_on_hash: bool,
    pub(super) fail_open: bool,
}

impl<const N: usize> OldWork<N> {
    fn iter(&self) -> impl Iterator<Item = &Cand> + Clone {
        self.cands[..self.len].iter().flatten()
    }
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Cand> {
        self.cands[..self.len].iter_mut().flatten()
    }
    /// The candidates in `regions` order.
    pub(super) fn list(&self) -> Vec<Cand> {
        self.iter().copied().collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn old_fill_addrs(
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

/// The old `decide`, line for line.
pub(super) fn old_decide<const N: usize>(
    model: &Model,
    service: ServiceId,
    family: Family,
    client: &ClientLocation,
    health: &impl HealthView,
) -> (OldWork<N>, Decision) {
    let mut decision = Decision::default();
    let mut w = OldWork::<N> {
        cands: [None; N],
        len: 0,
        fence: None,
        latency_row: None,
        all_down: None,
        depends_on_location: false,
        depends_on_hash: false,
        fail_open: false,
    };
    let svc = &model.services[usize::from(service)];
    let fence = svc.fence.lookup(client);
    w.fence = fence.as_ref().map(|(k, _)| k.clone());
    w.depends_on_location = !svc.fence.is_empty();
    begin(&mut decision, svc.ttl);

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
            if region.enough_up(u64::from(up)) && up_family > 0 {
                Status::Up
            } else {
                Status::Down {
                    up,
                    total: region.endpoints.len() as u32,
                }
            }
        };
        if w.len < N {
            w.cands[w.len] = Some(Cand {
                region: rid,
                order: order as u8,
                status,
                metric: Metric::Order,
                weight: health.weight(service, svc, rid, region),
                live: status == Status::Up,
                tie: false,
                picked: false,
            });
            w.len += 1;
        }
    }

    let eligible = |c: &Cand| matches!(c.status, Status::Up | Status::Down { .. });
    if !w.iter().any(|c| c.live) {
        if !w.iter().any(eligible) {
            decision.scope = location_scope(w.depends_on_location, client);
            return (w, decision);
        }
        w.all_down = Some(svc.when_all_down);
        match svc.when_all_down {
            AllDown::All => {
                w.fail_open = true;
                w.iter_mut()
                    .filter(|c| eligible(c))
                    .for_each(|c| c.live = true);
            }
            AllDown::First => {
                w.fail_open = true;
                if let Some(c) = w.iter_mut().find(|c| eligible(c)) {
                    c.live = true;
                }
            }
            AllDown::NoData | AllDown::ServFail => {
                decision.outcome = if svc.when_all_down == AllDown::ServFail {
                    Outcome::ServFail
                } else {
                    Outcome::NoData
                };
                decision.scope = location_scope(w.depends_on_location, client);
                return (w, decision);
            }
        }
    }

    if w.iter().any(|c| c.live && c.weight > 0) {
        w.iter_mut()
            .filter(|c| c.weight == 0)
            .for_each(|c| c.live = false);
    }

    let mut hash = LazyHash {
        client,
        service,
        value: None,
    };
    let live_count = w.iter().filter(|c| c.live).count();

    let picked = match svc.policy {
        Policy::Failover => {
            let c = w.iter_mut().find(|c| c.live);
            c.map(|c| {
                c.tie = true;
                c.region
            })
        }
        Policy::Weighted => {
            w.iter_mut().filter(|c| c.live).for_each(|c| c.tie = true);
            w.depends_on_hash = live_count > 1;
            let ties = w.iter().filter(|c| c.tie).map(|c| (c.region, c.weight));
            weighted_pick(ties, &mut hash)
        }
        Policy::Nearest => {
            let row = model.latency.lookup(client);
            w.latency_row = row.as_ref().map(|(k, _)| k.clone());
            w.depends_on_location |= live_count > 1;
            let from = client.coords.map(|c| c.trig());
            for c in w.iter_mut() {
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
            let best = w
                .iter()
                .filter(|c| c.live)
                .min_by_key(|c| rank_key(c))
                .map(|c| (c.metric, c.order));
            let mut ties = [0u128; N];
            let mut n = 0;
            if let Some((best, best_order)) = best {
                let mut limit = None;
                for c in w.iter_mut().filter(|c| c.live) {
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
            let pool = ties
                .iter()
                .filter_map(|k| w.cands[..w.len].get(usize::from(*k as u8))?.as_ref())
                .map(|c| (c.region, c.weight));
            weighted_pick(pool, &mut hash)
        }
    };

    let Some(rid) = picked else {
        return (w, decision);
    };
    if let Some(c) = w.iter_mut().find(|c| c.region == rid) {
        c.picked = true;
    }

    w.depends_on_hash |= old_fill_addrs(
        model,
        svc.max_answers,
        rid,
        family,
        w.fail_open,
        health,
        &mut hash,
        &mut decision,
    );

    let mut scope = location_scope(w.depends_on_location, client);
    if w.depends_on_hash {
        scope = scope.max(client.affinity_prefix());
    }
    decision.scope = scope;
    (w, decision)
}
