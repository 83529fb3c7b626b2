//! The route memo: nearest-region decisions remembered by client place, and client
//! places remembered by address, for one query loop (see [`RouteMemo`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;

use super::decision::{
    Cand, Gathered, LazyHash, SMALL, Stack, Work, begin, decide_with, fill_addrs, gather,
    location_scope,
};
use super::{HealthView, mix, route_into};
use crate::model::{
    AddrList, ClientLocation, ClientSource, Decision, Endpoint, Family, Model, Outcome, Policy,
    Region, RegionId, Service, ServiceId,
};

/// What a memoised decision depended on: the service (or the twin it routes like, see
/// [`RouteMemo::key_service`]), the family, the located client's place and the `cidr:`
/// rows its address falls in. Nothing else about the client counts for the decisions
/// kept (see [`RouteMemo`]).
/// Packed to 32 bytes (the `Option`s cost 16 more) so more places fit in cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct MemoKey {
    /// Latitude and longitude as bits: equal bits rank the same.
    lat: u64,
    lon: u64,
    /// 1 + the index of the latency table's `cidr:` row the address falls in
    /// ([`crate::model::KeyedTable::cidr_row`]); 0 when none.
    latency_row: u32,
    /// The same for the service's fence.
    fence_row: u32,
    service: ServiceId,
    country: [u8; 2],
    continent: [u8; 2],
    /// Bit 0: IPv6; bits 1-3: coordinates, country, continent present.
    flags: u8,
}

impl MemoKey {
    fn new(
        service: ServiceId,
        family: Family,
        client: &ClientLocation,
        (latency_row, fence_row): (u32, u32),
    ) -> MemoKey {
        // Every field named, none behind `..`: a field added to `ClientLocation` fails
        // to compile here until someone decides whether kept decisions depend on it.
        let ClientLocation {
            coords,
            country,
            continent,
            // Read by the decisions kept only through the `cidr:` rows it falls in
            // (`cidr_rows`, the other part of the key) and the place it located to;
            // the affinity hash reads it too, but that makes the decision `Hashed`.
            ip: _,
            // Read only through `ip` (the affinity prefix), as above.
            source: _,
            // Which table located the client; the place itself is in the key.
            by: _,
            // Re-derived from the client on every hit (`location_scope`).
            scope: _,
        } = *client;
        let (lat, lon) = coords.map_or((0, 0), |c| (c.lat.to_bits(), c.lon.to_bits()));
        MemoKey {
            lat,
            lon,
            latency_row,
            fence_row,
            service,
            country: country.unwrap_or_default(),
            continent: continent.unwrap_or_default(),
            flags: u8::from(family == Family::V6)
                | u8::from(coords.is_some()) << 1
                | u8::from(country.is_some()) << 2
                | u8::from(continent.is_some()) << 3,
        }
    }

    fn hash(&self) -> u64 {
        let small = u64::from(self.service)
            | u64::from(u16::from_le_bytes(self.country)) << 16
            | u64::from(u16::from_le_bytes(self.continent)) << 32
            | u64::from(self.flags) << 48;
        // One finaliser over the fields folded together: the key is compared in full,
        // so the hash only spreads places over the slots (three rounds cost 15 a query).
        let rows = u64::from(self.latency_row) << 32 | u64::from(self.fence_row);
        mix(self.lat
            ^ self.lon.rotate_left(32)
            ^ small.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ rows.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
    }
}

/// The `cidr:` rows `ip` falls in, as [`MemoKey`] keeps them: (latency table row, the
/// service's fence row), each 1 + the row's index or 0 for none. A decision reads the
/// client address only through these two lookups (and the affinity hash, which is never
/// kept), so clients of one place whose addresses give the same pair decide alike.
#[inline]
fn cidr_rows(model: &Model, svc: &Service, ip: &IpAddr) -> (u32, u32) {
    (cidr_row(&model.latency, ip), cidr_row(&svc.fence, ip))
}

/// One table's part of [`cidr_rows`].
#[inline]
fn cidr_row<T>(table: &crate::model::KeyedTable<T>, ip: &IpAddr) -> u32 {
    table.cidr_row(ip).map_or(0, |i| i as u32 + 1)
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
pub(super) struct MemoSlot {
    /// [`RouteMemo::era`] when written; a slot of another era is empty.
    era: u32,
    key: MemoKey,
    kept: Kept,
}

/// The addresses a kept decision answers with, for one (region, family, fail open):
/// the region's usable endpoints of the family, in config order. A kept decision was
/// never rotated (more usable endpoints than `max_answers` makes it `Hashed`), so its
/// list is all of them whatever the service's `max_answers`, and the same for every
/// service and client that picks the region in this era.
#[derive(Debug, Clone, Copy, Default)]
struct AddrSlot {
    /// [`RouteMemo::era`] when written; a slot of another era is empty.
    era: u32,
    addrs: AddrList,
}

/// Per service, the first service of the model with the same regions (in order),
/// `max_answers` and `when_all_down`, both `nearest` and unfenced; itself when none.
/// Weights are left to [`RouteMemo::key_service`], which compares the effective ones
/// (config and overrides). Built once per model generation, off the per-query path.
fn config_twins(model: &Model) -> Vec<ServiceId> {
    let mut first: HashMap<(&[RegionId], u8, u8), ServiceId> = HashMap::new();
    (0..model.services.len())
        .map(|i| {
            let s = &model.services[i];
            let sid = i as ServiceId;
            if s.policy != Policy::Nearest || !s.fence.is_empty() {
                return sid;
            }
            *first
                .entry((&s.regions[..], s.max_answers, s.when_all_down as u8))
                .or_insert(sid)
        })
        .collect()
}

/// A located client, by the address it was located from (see [`RouteMemo::located`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct PlaceSlot {
    /// [`RouteMemo::place_era`] when written; a slot of another era is empty.
    era: u32,
    ip: IpAddr,
    loc: ClientLocation,
}

impl Default for PlaceSlot {
    fn default() -> Self {
        let ip = IpAddr::from([0u8; 4]);
        PlaceSlot {
            era: 0,
            ip,
            loc: ClientLocation::unknown(ip, ClientSource::Resolver),
        }
    }
}

/// The slot of `ip` in [`RouteMemo::places`].
fn place_index(ip: IpAddr) -> usize {
    let h = match ip {
        IpAddr::V4(a) => mix(u64::from(u32::from(a))),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            mix((v as u64) ^ mix((v >> 64) as u64 ^ 1))
        }
    };
    h as usize & (RouteMemo::PLACES - 1)
}

/// Where [`RouteMemo::addrs`] keeps the list of region `rid`, `family`, `fail_open`.
fn addr_index(rid: RegionId, family: Family, fail_open: bool) -> usize {
    usize::from(rid) << 2 | usize::from(family == Family::V6) << 1 | usize::from(fail_open)
}

/// The candidates of an unfenced service for one family, as [`gather`] built them in one
/// era: the same for every client until health or overrides move (a new era), so a
/// decision the memo does not hold yet only ranks them (see [`RouteMemo::route_into`]).
#[derive(Debug, Clone, Copy)]
struct Field {
    /// [`RouteMemo::era`] when gathered; a field of another era is not known.
    era: u32,
    cands: Stack<Cand, SMALL>,
    gathered: Gathered,
}

/// Where [`RouteMemo::fields`] keeps `service`'s candidates for `family`.
fn field_index(service: ServiceId, family: Family) -> usize {
    usize::from(service) << 1 | usize::from(family == Family::V6)
}

/// A region's endpoints up, as [`HealthView::endpoints_up`] counts them, kept for one era.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct UpCount {
    /// [`RouteMemo::era`] when counted; a count of another era is not known.
    era: u32,
    up: u32,
    up_v4: u32,
    up_v6: u32,
}

/// The caller's health view, with [`HealthView::endpoints_up`] answered from counts kept
/// for the era: every decision of a service counts the endpoints of each of its regions,
/// and health (probes and overrides) is the same for the whole era, so a region is
/// counted once an era instead of once a decision.
struct Counted<'a, H> {
    health: &'a H,
    counts: &'a [Cell<UpCount>],
    era: u32,
}

impl<H: HealthView> HealthView for Counted<'_, H> {
    #[inline]
    fn endpoint_up(&self, ep: &Endpoint) -> bool {
        self.health.endpoint_up(ep)
    }

    #[inline]
    fn endpoint_up_in(&self, rid: RegionId, ep: &Endpoint) -> bool {
        self.health.endpoint_up_in(rid, ep)
    }

    #[inline]
    fn endpoints_up(&self, rid: RegionId, region: &Region, family: Family) -> (u32, u32) {
        let Some(cell) = self.counts.get(usize::from(rid)) else {
            return self.health.endpoints_up(rid, region, family);
        };
        let mut c = cell.get();
        if c.era != self.era {
            c = UpCount {
                era: self.era,
                ..UpCount::default()
            };
            for ep in &region.endpoints {
                if self.health.endpoint_up_in(rid, ep) {
                    c.up += 1;
                    if ep.address.is_ipv4() {
                        c.up_v4 += 1;
                    } else {
                        c.up_v6 += 1;
                    }
                }
            }
            cell.set(c);
        }
        let of_family = match family {
            Family::V4 => c.up_v4,
            Family::V6 => c.up_v6,
        };
        (c.up, of_family)
    }

    #[inline]
    fn drained(&self, rid: RegionId, region: &Region) -> bool {
        self.health.drained(rid, region)
    }

    #[inline]
    fn weight(&self, sid: ServiceId, svc: &Service, rid: RegionId, region: &Region) -> u32 {
        self.health.weight(sid, svc, rid, region)
    }
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
/// Exactness: the memo serves only `nearest` services of at most `SMALL` (8) regions. Their
/// decisions read the client's place, the `cidr:` rows (latency and fence) its address
/// falls in, both in the key, and the affinity hash, which makes a decision `Hashed`
/// (never kept); the scope is re-derived from the client. [`RouteMemo::sync`] forgets every
/// slot when the snapshot generation or the health epoch changes, so a kept decision
/// always saw the same regions and health states a fresh one would. The address lists
/// of kept decisions are remembered per (region, family, fail open) in the same eras, so
/// a hit copies a ready list instead of filtering the region's endpoints again.
/// Services that route alike share slots (`RouteMemo::key_service`). A decision the memo
/// does not hold yet starts, for a service without a fence, from the candidates (regions
/// with their health, drain and weight) gathered for its family in this era: they depend
/// on nothing of the client.
///
/// The memo also keeps located clients by address ([`RouteMemo::located`]): locating
/// depends on the snapshot and the address only, so those slots last a generation.
#[derive(Debug, Default)]
pub struct RouteMemo {
    slots: Vec<MemoSlot>,
    /// Indexed by [`addr_index`]; grown to the model's regions when a hit needs it.
    addrs: Vec<AddrSlot>,
    /// Per region: its endpoints up in this era (see `Counted`); sized to the model's
    /// regions when a decision needs it.
    counts: Vec<Cell<UpCount>>,
    /// Per (service, family) of an unfenced service: its candidates in this era (see
    /// [`Field`]); sized to the model's services when a decision needs it.
    fields: Vec<Option<Field>>,
    /// Per service of the model of generation `twins_of`: the first service whose
    /// config routes alike (see [`config_twins`]), itself when none.
    twins: Vec<ServiceId>,
    twins_of: Option<u64>,
    /// Per service: (era, the service whose slots it shares in that era, whether its
    /// decisions read `cidr:` rows: its fence's or the latency table's).
    keys: Vec<(u32, ServiceId, bool)>,
    /// Located clients by address ([`RouteMemo::located`]), [`RouteMemo::PLACES`] once
    /// used.
    places: Vec<PlaceSlot>,
    /// Moves with the generation only: a location does not depend on health.
    place_era: u32,
    place_hits: u64,
    era: u32,
    stamp: (u64, u64),
    hits: u64,
}

impl RouteMemo {
    /// Slots per memo (a power of two): 384 KiB, touched only as it fills. 8,192 rather
    /// than 2,048: on the realistic workload (bench/README.md) a simulation put misses at
    /// 20% rather than 31%, about 200 instructions a query.
    pub const SLOTS: usize = 8192;

    /// Located clients kept (a power of two): 384 KiB, touched only as it fills. On the
    /// realistic workload half the located queries come from an address seen before.
    pub const PLACES: usize = 4096;

    /// Locations served from the memo so far.
    pub fn place_hits(&self) -> u64 {
        self.place_hits
    }

    /// The client located from `ip`, from the memo when this address was located in this
    /// generation, else from `locate` (then kept). Call [`RouteMemo::sync`] first.
    ///
    /// Exact because `locate` must be a function of the snapshot (operator networks,
    /// GeoIP database: one generation) and `ip` alone, `source` only copied into the
    /// location, as [`crate::geo::locate`] is. Health is not read, so a new health epoch
    /// keeps the places.
    #[inline]
    pub fn located(
        &mut self,
        ip: IpAddr,
        source: ClientSource,
        locate: impl FnOnce(IpAddr, ClientSource) -> ClientLocation,
    ) -> ClientLocation {
        if self.place_era == 0 {
            return locate(ip, source);
        }
        if self.places.is_empty() {
            self.places = vec![PlaceSlot::default(); Self::PLACES];
        }
        let slot = &mut self.places[place_index(ip)];
        if slot.era == self.place_era && slot.ip == ip {
            self.place_hits += 1;
            let mut loc = slot.loc;
            loc.source = source;
            return loc;
        }
        let loc = locate(ip, source);
        *slot = PlaceSlot {
            era: self.place_era,
            ip,
            loc,
        };
        loc
    }

    /// Decisions served from the memo so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Starts a new era when the model (`generation`) or health (`epoch`) changed.
    #[inline]
    pub fn sync(&mut self, generation: u64, epoch: u64) {
        if self.era == 0 || self.stamp != (generation, epoch) {
            if self.era == 0 || self.stamp.0 != generation {
                if self.place_era == u32::MAX {
                    self.places.fill(PlaceSlot::default());
                    self.place_era = 0;
                }
                self.place_era += 1;
            }
            self.stamp = (generation, epoch);
            if self.era == u32::MAX {
                // Eras are about to repeat: old slots must not look current.
                self.slots.fill(MemoSlot::default());
                self.addrs.fill(AddrSlot::default());
                self.counts.fill(Cell::default());
                self.fields.fill(None);
                self.keys.fill((0, 0, false));
                self.era = 0;
            }
            self.era += 1;
        }
    }

    /// The service whose slots `service` uses in this era: its config twin when the
    /// operator's weight overrides leave both the same effective weights, else itself;
    /// and whether its decisions read `cidr:` rows (so the key needs [`cidr_rows`]).
    ///
    /// Twins decide alike for every client: the decision reads of a service only its
    /// regions (in order), policy, fence, `when_all_down`, `max_answers` and effective
    /// weights, and the affinity hash (salted by the service) only in decisions the memo
    /// does not keep. The TTL is the asked service's, set on every hit.
    #[inline]
    fn key_service(
        &mut self,
        model: &Model,
        service: ServiceId,
        health: &impl HealthView,
    ) -> (ServiceId, bool) {
        if let Some(&(era, key, cidr)) = self.keys.get(usize::from(service))
            && era == self.era
        {
            return (key, cidr);
        }
        self.find_key_service(model, service, health)
    }

    /// [`RouteMemo::key_service`] for the first query of a service in an era.
    #[inline(never)]
    fn find_key_service(
        &mut self,
        model: &Model,
        service: ServiceId,
        health: &impl HealthView,
    ) -> (ServiceId, bool) {
        let i = usize::from(service);
        if self.twins_of != Some(self.stamp.0) || self.twins.len() != model.services.len() {
            self.twins = config_twins(model);
            self.twins_of = Some(self.stamp.0);
            self.keys = vec![(0, 0, false); model.services.len()];
        }
        let twin = self.twins[i];
        let (svc, tsvc) = (&model.services[i], &model.services[usize::from(twin)]);
        let alike = svc.regions.iter().all(|&rid| {
            let region = &model.regions[usize::from(rid)];
            health.weight(service, svc, rid, region) == health.weight(twin, tsvc, rid, region)
        });
        let key = if alike { twin } else { service };
        let cidr = !svc.fence.cidr.is_empty() || !model.latency.cidr.is_empty();
        self.keys[i] = (self.era, key, cidr);
        (key, cidr)
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
        if svc.policy != Policy::Nearest || svc.regions.len() > SMALL || self.era == 0 {
            return route_into(model, service, family, client, health, out);
        }
        if self.slots.is_empty() {
            self.slots = vec![MemoSlot::default(); Self::SLOTS];
        }
        let (key_service, cidr) = self.key_service(model, service, health);
        let rows = if cidr {
            cidr_rows(model, svc, &client.ip)
        } else {
            (0, 0)
        };
        let key = MemoKey::new(key_service, family, client, rows);
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
                        let i = addr_index(rid, family, fail_open);
                        if i >= self.addrs.len() {
                            self.addrs
                                .resize(model.regions.len() * 4, AddrSlot::default());
                        }
                        let list = &mut self.addrs[i];
                        if list.era == self.era {
                            // `outcome` and `region` are the kept ones, which the fill
                            // that made this list also set.
                            out.addrs.assign(&list.addrs);
                        } else {
                            let mut hash = LazyHash {
                                client,
                                service,
                                value: None,
                            };
                            // Kept only when the list was not rotated, so it is again
                            // not: the list holds every usable endpoint.
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
                            *list = AddrSlot {
                                era: self.era,
                                addrs: out.addrs,
                            };
                        }
                    }
                    return;
                }
                Kept::Hashed => {}
            }
        }
        if self.counts.len() < model.regions.len() {
            self.counts.resize(model.regions.len(), Cell::default());
        }
        let health = Counted {
            health,
            counts: &self.counts,
            era: self.era,
        };
        if self.fields.len() < model.services.len() * 2 {
            self.fields.resize(model.services.len() * 2, None);
        }
        let field = &mut self.fields[field_index(service, family)];
        let era = self.era;
        // Decided for the service asked; kept for its twins too, which decide alike.
        // A `Hashed` slot is decided afresh too and stays `Hashed`.
        let mut w = Work::<SMALL>::new(out);
        decide_with(
            &mut w,
            model,
            service,
            family,
            client,
            &health,
            |w, allowed| {
                // Without a fence the candidates do not depend on the client: gathered once
                // an era per (service, family) and copied, instead of each region's health,
                // drain and weight read again for every new place (~600 instructions a
                // decision with six regions; bench/README.md).
                if !svc.fence.is_empty() {
                    return gather(w, model, service, family, allowed, &health);
                }
                if let Some(f) = field
                    && f.era == era
                {
                    w.cands = f.cands;
                    return f.gathered;
                }
                let gathered = gather(w, model, service, family, allowed, &health);
                *field = Some(Field {
                    era,
                    cands: w.cands,
                    gathered,
                });
                gathered
            },
        );
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
