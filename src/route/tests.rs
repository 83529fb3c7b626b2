//! Table-driven tests of the pure router over hand-built models: every rule of DESIGN.md
//! "Request path and routing semantics", the ECS scope rules of RFC 7871 7.2.1, the
//! weighted split and the explain trace.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::decision::{Cand, Metric, SMALL, Status, TIE_BOUND, rank_key, tie_limit};
use super::memo::{MemoSlot, PlaceSlot};
use super::*;
use crate::config::parse_client_key;
use crate::model::{
    AddrList, AllDown, ClientKey, ClientSource, Coordinates, HealthCell, KeyedTable, LatencyRow,
    LocatedBy, Outcome, Policy, Region, RegionId, ServerSettings, Service,
};

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

/// Test health view: every endpoint is up except the listed addresses.
#[derive(Default)]
struct Health(HashSet<IpAddr>);

impl HealthView for Health {
    fn endpoint_up(&self, ep: &Endpoint) -> bool {
        !self.0.contains(&ep.address)
    }
}

fn all_up() -> Health {
    Health::default()
}

fn down(addrs: &[&str]) -> Health {
    Health(addrs.iter().map(|a| ip(a)).collect())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad ip {s}"))
}

/// A region as written in config; turned into a [`Region`] by [`World::build`].
#[derive(Clone)]
struct R {
    name: &'static str,
    at: Option<(f64, f64)>,
    weight: u32,
    min_healthy: u32,
    drain: bool,
    endpoints: Vec<&'static str>,
}

fn region(name: &'static str, lat: f64, lon: f64, endpoints: &[&'static str]) -> R {
    R {
        name,
        at: Some((lat, lon)),
        weight: 100,
        min_healthy: 1,
        drain: false,
        endpoints: endpoints.to_vec(),
    }
}

fn region_nowhere(name: &'static str, endpoints: &[&'static str]) -> R {
    R {
        at: None,
        ..region(name, 0.0, 0.0, endpoints)
    }
}

impl R {
    fn weight(mut self, w: u32) -> R {
        self.weight = w;
        self
    }
    fn drained(mut self) -> R {
        self.drain = true;
        self
    }
    fn min_healthy(mut self, n: u32) -> R {
        self.min_healthy = n;
        self
    }
}

/// A service as written in config.
#[derive(Clone)]
struct S {
    name: &'static str,
    regions: Vec<&'static str>,
    policy: Policy,
    ttl: u32,
    max_answers: u8,
    when_all_down: AllDown,
    fence: Vec<(&'static str, Vec<&'static str>)>,
}

fn service(name: &'static str, policy: Policy, regions: &[&'static str]) -> S {
    S {
        name,
        regions: regions.to_vec(),
        policy,
        ttl: 30,
        max_answers: 8,
        when_all_down: AllDown::All,
        fence: Vec::new(),
    }
}

impl S {
    fn max_answers(mut self, n: u8) -> S {
        self.max_answers = n;
        self
    }
    fn when_all_down(mut self, a: AllDown) -> S {
        self.when_all_down = a;
        self
    }
    fn fence(mut self, key: &'static str, regions: &[&'static str]) -> S {
        self.fence.push((key, regions.to_vec()));
        self
    }
}

/// Everything a test model is made of.
#[derive(Default)]
struct World {
    regions: Vec<R>,
    services: Vec<S>,
    latency: Vec<(&'static str, Vec<(&'static str, u32)>)>,
}

/// A built model with name lookups.
struct Built {
    model: Model,
}

impl Built {
    fn sid(&self, name: &str) -> ServiceId {
        self.model
            .service_id(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }
    fn region_name(&self, d: &Decision) -> Option<&str> {
        d.region
            .map(|r| self.model.regions[usize::from(r)].name.as_str())
    }
    /// Routes and returns (decision, region name).
    fn route(
        &self,
        svc: &str,
        family: Family,
        client: &ClientLocation,
        health: &Health,
    ) -> (Decision, Option<String>) {
        let d = route(&self.model, self.sid(svc), family, client, health);
        let name = self.region_name(&d).map(str::to_string);
        (d, name)
    }
    /// The picked region's name for an A query.
    fn a(&self, svc: &str, client: &ClientLocation, health: &Health) -> Option<String> {
        self.route(svc, Family::V4, client, health).1
    }
    fn explain(
        &self,
        svc: &str,
        family: Family,
        client: &ClientLocation,
        health: &Health,
    ) -> Explanation {
        explain(&self.model, self.sid(svc), family, client, health)
    }
}

fn keyed<T: Default>(rows: Vec<(ClientKey, T)>) -> KeyedTable<T> {
    let mut t = KeyedTable::default();
    for (k, v) in rows {
        match k {
            ClientKey::Cidr(n) => t.cidr.push((n, v)),
            ClientKey::Country(c) => {
                t.country.insert(c, v);
            }
            ClientKey::Continent(c) => {
                t.continent.insert(c, v);
            }
        }
    }
    t.cidr
        .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    t
}

impl World {
    fn new() -> World {
        World::default()
    }
    fn region(mut self, r: R) -> World {
        self.regions.push(r);
        self
    }
    fn service(mut self, s: S) -> World {
        self.services.push(s);
        self
    }
    fn latency(mut self, key: &'static str, row: &[(&'static str, u32)]) -> World {
        self.latency.push((key, row.to_vec()));
        self
    }

    fn build(self) -> Built {
        let mut rs = self.regions;
        rs.sort_by_key(|r| r.name);
        let ids: HashMap<&str, RegionId> = rs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name, i as RegionId))
            .collect();
        let id = |n: &str| *ids.get(n).unwrap_or_else(|| panic!("no region {n}"));
        let regions: Vec<Region> = rs
            .iter()
            .map(|r| {
                let endpoints: Vec<Endpoint> = r
                    .endpoints
                    .iter()
                    .map(|a| Endpoint {
                        address: ip(a),
                        check: None,
                        probe: None,
                        health: Arc::new(HealthCell::new(Probed::Up)),
                    })
                    .collect();
                Region {
                    name: r.name.to_string(),
                    location: r.at.map(|(lat, lon)| Coordinates { lat, lon }),
                    trig: r.at.map(|(lat, lon)| Coordinates { lat, lon }.trig()),
                    weight: r.weight,
                    min_healthy: r.min_healthy,
                    drain: r.drain,
                    has_v4: endpoints.iter().any(|e| e.address.is_ipv4()),
                    has_v6: endpoints.iter().any(|e| e.address.is_ipv6()),
                    endpoints,
                }
            })
            .collect();
        let mut ss = self.services;
        ss.sort_by_key(|s| s.name);
        let services: Vec<Service> = ss
            .iter()
            .map(|s| Service {
                name: s.name.to_string(),
                zone: 0,
                weights: vec![],
                regions: s.regions.iter().map(|n| id(n)).collect(),
                policy: s.policy,
                ttl: s.ttl,
                max_answers: s.max_answers,
                when_all_down: s.when_all_down,
                fence: keyed(
                    s.fence
                        .iter()
                        .map(|(k, v)| {
                            (
                                parse_client_key(k).unwrap(),
                                v.iter().map(|n| id(n)).collect(),
                            )
                        })
                        .collect(),
                ),
            })
            .collect();
        let latency = keyed(
            self.latency
                .iter()
                .map(|(k, row)| {
                    (
                        parse_client_key(k).unwrap(),
                        LatencyRow {
                            rtt: row.iter().map(|(n, ms)| (id(n), *ms)).collect(),
                        },
                    )
                })
                .collect(),
        );
        let mut operator_networks: Vec<IpNet> = latency.cidr.iter().map(|(n, _)| *n).collect();
        for s in &services {
            operator_networks.extend(s.fence.cidr.iter().map(|(n, _)| *n));
        }
        operator_networks.sort();
        operator_networks.dedup();
        Built {
            model: Model {
                server: ServerSettings::for_tests(),
                zones: vec![],
                checks: vec![],
                regions,
                services,
                latency,
                client_networks: vec![],
                operator_networks,
            },
        }
    }
}

/// A client located by GeoIP: `ip` inside the database network `ip/prefix`, seen as the
/// packet source (a resolver without ECS).
fn geo(
    ip_s: &str,
    prefix: u8,
    country: &str,
    continent: &str,
    lat: f64,
    lon: f64,
) -> ClientLocation {
    let a = ip(ip_s);
    let net = IpNet::new(a, prefix).unwrap().trunc();
    ClientLocation {
        ip: a,
        source: ClientSource::Resolver,
        by: LocatedBy::GeoIp(net),
        coords: Some(Coordinates { lat, lon }),
        country: Some(code(country)),
        continent: Some(code(continent)),
        scope: prefix,
    }
}

fn code(s: &str) -> [u8; 2] {
    let b = s.as_bytes();
    [b[0], b[1]]
}

/// The same client, identified by an ECS option with this source prefix.
fn via_ecs(mut c: ClientLocation, source_prefix: u8) -> ClientLocation {
    c.source = ClientSource::Ecs { source_prefix };
    c.ip = IpNet::new(c.ip, source_prefix).unwrap().trunc().addr();
    c
}

/// A client nothing is known about.
fn nowhere(ip_s: &str) -> ClientLocation {
    ClientLocation::unknown(ip(ip_s), ClientSource::Resolver)
}

// Places (GeoIP-style networks from MaxMind's test data and documentation ranges).
fn london() -> ClientLocation {
    geo("81.2.69.142", 31, "GB", "EU", 51.5142, -0.0931)
}
fn paris() -> ClientLocation {
    geo("192.0.2.77", 24, "FR", "EU", 48.86, 2.35)
}
fn berlin() -> ClientLocation {
    geo("198.51.100.7", 25, "DE", "EU", 52.52, 13.40)
}
fn new_york() -> ClientLocation {
    geo("203.0.113.9", 26, "US", "NA", 40.71, -74.0)
}
fn tokyo() -> ClientLocation {
    geo("2001:218::1", 32, "JP", "AS", 35.68536, 139.75309)
}

// Regions: Dublin, Frankfurt, Ashburn, Mumbai; each with one IPv4 and one IPv6 endpoint
// except where a test says otherwise.
fn eu_west() -> R {
    region("eu-west", 53.35, -6.26, &["192.0.2.21", "2001:db8::21"])
}
fn eu_central() -> R {
    region("eu-central", 50.11, 8.68, &["192.0.2.31", "2001:db8::31"])
}
fn us_east() -> R {
    region("us-east", 39.04, -77.49, &["192.0.2.11", "2001:db8::11"])
}
fn ap_south() -> R {
    region("ap-south", 19.08, 72.88, &["192.0.2.41", "2001:db8::41"])
}

const ALL4: [&str; 4] = ["us-east", "eu-west", "eu-central", "ap-south"];

/// The four standard regions and one service over them.
fn world4(s: S) -> World {
    World::new()
        .region(eu_west())
        .region(eu_central())
        .region(us_east())
        .region(ap_south())
        .service(s)
}

fn nearest4() -> S {
    service("www.t.", Policy::Nearest, &ALL4)
}

/// Deterministic xorshift64* so split tests need no RNG crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `n` distinct random IPv4 /24 client subnets, each arriving as an ECS /24 with no
/// location, so only the affinity hash can tell them apart.
fn random_subnets(n: usize, seed: u64) -> Vec<ClientLocation> {
    let mut rng = XorShift(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let a = (rng.next() >> 32) as u32 & 0xffff_ff00;
        if seen.insert(a) {
            out.push(ClientLocation::unknown(
                IpAddr::V4(Ipv4Addr::from(a)),
                ClientSource::Ecs { source_prefix: 24 },
            ));
        }
    }
    out
}

/// Share of clients per region name, in percent.
fn shares(b: &Built, svc: &str, clients: &[ClientLocation]) -> HashMap<String, f64> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in clients {
        let r = b.a(svc, c, &all_up()).expect("an answer");
        *counts.entry(r).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, v)| (k, 100.0 * v as f64 / clients.len() as f64))
        .collect()
}

fn assert_share(shares: &HashMap<String, f64>, region: &str, want: f64, tolerance: f64) {
    let got = shares.get(region).copied().unwrap_or(0.0);
    assert!(
        (got - want).abs() <= tolerance,
        "{region}: {got:.2}% of clients, want {want}% ± {tolerance} (all: {shares:?})"
    );
}

fn addrs(d: &Decision) -> Vec<String> {
    d.addrs.as_slice().iter().map(|a| a.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// 1. Candidates: drain and fence
// ---------------------------------------------------------------------------------------

#[test]
fn drained_regions_are_skipped() {
    let b = World::new()
        .region(eu_west().drained())
        .region(eu_central())
        .region(us_east())
        .region(ap_south())
        .service(nearest4())
        .build();
    // London is nearest to Dublin; with Dublin drained, Frankfurt.
    assert_eq!(
        b.a("www.t.", &london(), &all_up()).as_deref(),
        Some("eu-central")
    );
    // Drained is not "down": when_all_down never brings it back.
    let every_other_down = down(&["192.0.2.31", "192.0.2.11", "192.0.2.41"]);
    for _ in 0..2 {
        let (d, r) = b.route("www.t.", Family::V4, &london(), &every_other_down);
        assert_ne!(r.as_deref(), Some("eu-west"), "{d:?}");
        assert_eq!(d.outcome, Outcome::Answer);
    }
    let e = b.explain("www.t.", Family::V4, &london(), &all_up());
    let dublin = e.candidates.iter().find(|c| c.region == "eu-west").unwrap();
    assert_eq!(dublin.status, "drained");
    assert!(!dublin.considered && !dublin.picked);
}

#[test]
fn fence_most_specific_key_wins() {
    let b = world4(
        nearest4()
            .fence("continent:EU", &["eu-west", "eu-central"])
            .fence("country:DE", &["eu-west"])
            .fence("cidr:198.51.100.0/28", &["us-east"]),
    )
    .build();
    let mut berlin_outside_cidr = berlin();
    berlin_outside_cidr.ip = ip("198.51.100.77");
    let cases: &[(&str, ClientLocation, &str, &str)] = &[
        // (what, client, region, fence rule)
        (
            "GB: continent rule, nearest inside it",
            london(),
            "eu-west",
            "continent:EU",
        ),
        (
            "FR: continent rule, nearest inside it",
            paris(),
            "eu-central",
            "continent:EU",
        ),
        (
            "DE: country beats continent, even though Frankfurt is nearer",
            berlin_outside_cidr,
            "eu-west",
            "country:DE",
        ),
        (
            "DE inside the cidr: cidr beats country",
            berlin(),
            "us-east",
            "cidr:198.51.100.0/28",
        ),
    ];
    for (what, client, want, rule) in cases {
        assert_eq!(
            b.a("www.t.", client, &all_up()).as_deref(),
            Some(*want),
            "{what}"
        );
        let e = b.explain("www.t.", Family::V4, client, &all_up());
        assert!(
            e.fence.as_deref().is_some_and(|f| f.starts_with(rule)),
            "{what}: fence {:?}",
            e.fence
        );
    }
    // Unfenced clients route as usual.
    assert_eq!(
        b.a("www.t.", &new_york(), &all_up()).as_deref(),
        Some("us-east")
    );
    assert_eq!(
        b.a("www.t.", &tokyo(), &all_up()).as_deref(),
        Some("ap-south")
    );
    let e = b.explain("www.t.", Family::V4, &london(), &all_up());
    let outside: Vec<&str> = e
        .candidates
        .iter()
        .filter(|c| c.status == "fenced out")
        .map(|c| c.region.as_str())
        .collect();
    assert_eq!(outside.len(), 2);
    assert!(outside.contains(&"us-east") && outside.contains(&"ap-south"));
    assert_eq!(
        e.fence.as_deref(),
        Some("continent:EU -> [eu-west, eu-central]")
    );
}

#[test]
fn fenced_client_never_gets_a_region_outside_the_fence() {
    // Every when_all_down mode, with the fenced regions down and with them drained.
    let fenced_down = down(&["192.0.2.21", "2001:db8::21", "192.0.2.31", "2001:db8::31"]);
    let modes = [
        AllDown::All,
        AllDown::First,
        AllDown::NoData,
        AllDown::ServFail,
    ];
    for mode in modes {
        for drained in [false, true] {
            let (w, c) = if drained {
                (eu_west().drained(), eu_central().drained())
            } else {
                (eu_west(), eu_central())
            };
            let b = World::new()
                .region(w)
                .region(c)
                .region(us_east())
                .region(ap_south())
                .service(
                    nearest4()
                        .when_all_down(mode)
                        .fence("continent:EU", &["eu-west", "eu-central"]),
                )
                .build();
            let health = if drained {
                all_up()
            } else {
                Health(fenced_down.0.clone())
            };
            for family in [Family::V4, Family::V6] {
                for client in [london(), paris(), berlin()] {
                    let (d, r) = b.route("www.t.", family, &client, &health);
                    let what = format!("{mode:?} drained={drained} {family:?} {:?}", client.ip);
                    assert!(
                        r.is_none() || matches!(r.as_deref(), Some("eu-west" | "eu-central")),
                        "{what}: left the fence for {r:?}"
                    );
                    let want = match (drained, mode) {
                        // Nothing inside the fence can be handed out: the name exists, NODATA.
                        (true, _) => Outcome::NoData,
                        (false, AllDown::All | AllDown::First) => Outcome::Answer,
                        (false, AllDown::NoData) => Outcome::NoData,
                        (false, AllDown::ServFail) => Outcome::ServFail,
                    };
                    assert_eq!(d.outcome, want, "{what}");
                    if d.outcome == Outcome::Answer {
                        // Failing open inside the fence.
                        assert!(
                            d.addrs.as_slice().iter().all(|a| fenced_down.0.contains(a)),
                            "{what}: {d:?}"
                        );
                    } else {
                        assert!(d.addrs.is_empty(), "{what}");
                    }
                    // The fence depends on where the client is: never scope 0.
                    assert_eq!(d.scope, client.scope, "{what}");
                }
            }
            // A client outside the fence is unaffected.
            let (d, r) = b.route("www.t.", Family::V4, &new_york(), &health);
            assert_eq!(r.as_deref(), Some("us-east"), "{mode:?} {drained}: {d:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Health: min_healthy, down regions, when_all_down
// ---------------------------------------------------------------------------------------

#[test]
fn min_healthy_decides_when_a_region_is_up() {
    let b = World::new()
        .region(
            region(
                "eu-west",
                53.35,
                -6.26,
                &["192.0.2.21", "192.0.2.22", "192.0.2.23"],
            )
            .min_healthy(2),
        )
        .region(eu_central())
        .region(us_east())
        .region(ap_south())
        .service(nearest4())
        .build();
    let cases: &[(&[&str], &str, &[&str])] = &[
        (&[], "eu-west", &["192.0.2.21", "192.0.2.22", "192.0.2.23"]),
        // 2 of 3 up: still up, and only the healthy ones are handed out.
        (&["192.0.2.22"], "eu-west", &["192.0.2.21", "192.0.2.23"]),
        // 1 of 3 up: below min_healthy, the region is down.
        (&["192.0.2.21", "192.0.2.22"], "eu-central", &["192.0.2.31"]),
    ];
    for (dn, want, want_addrs) in cases {
        let (d, r) = b.route("www.t.", Family::V4, &london(), &down(dn));
        assert_eq!(r.as_deref(), Some(*want), "down {dn:?}");
        assert_eq!(addrs(&d), *want_addrs, "down {dn:?}");
    }
    let e = b.explain(
        "www.t.",
        Family::V4,
        &london(),
        &down(&["192.0.2.21", "192.0.2.22"]),
    );
    let dublin = e.candidates.iter().find(|c| c.region == "eu-west").unwrap();
    assert_eq!(dublin.status, "down (1/3 endpoints up, min_healthy 2)");
    assert!(!dublin.considered);
}

#[test]
fn down_regions_are_skipped_in_rank_order() {
    let b = world4(nearest4()).build();
    let cases: &[(&[&str], &str)] = &[
        (&[], "eu-west"),
        (&["192.0.2.21"], "eu-central"),
        (&["192.0.2.21", "192.0.2.31"], "us-east"),
        (&["192.0.2.21", "192.0.2.31", "192.0.2.11"], "ap-south"),
    ];
    for (dn, want) in cases {
        assert_eq!(
            b.a("www.t.", &london(), &down(dn)).as_deref(),
            Some(*want),
            "down {dn:?}"
        );
    }
}

#[test]
fn when_all_down_modes() {
    let every = down(&[
        "192.0.2.21",
        "192.0.2.31",
        "192.0.2.11",
        "192.0.2.41",
        "2001:db8::21",
        "2001:db8::31",
        "2001:db8::11",
        "2001:db8::41",
    ]);
    // (mode, outcome, region for London)
    let cases = [
        // all: as if every region were up, so London gets its nearest, Dublin.
        (AllDown::All, Outcome::Answer, Some("eu-west"), "all"),
        // first: the first region in the service's order.
        (AllDown::First, Outcome::Answer, Some("us-east"), "first"),
        (AllDown::NoData, Outcome::NoData, None, "nodata"),
        (AllDown::ServFail, Outcome::ServFail, None, "servfail"),
    ];
    for (mode, outcome, region, name) in cases {
        let b = world4(nearest4().when_all_down(mode)).build();
        let (d, r) = b.route("www.t.", Family::V4, &london(), &every);
        assert_eq!(d.outcome, outcome, "{mode:?}");
        assert_eq!(r.as_deref(), region, "{mode:?}");
        if outcome == Outcome::Answer {
            // Failing open hands out the (unhealthy) endpoints rather than nothing.
            assert_eq!(d.addrs.len(), 1, "{mode:?}");
        }
        let e = b.explain("www.t.", Family::V4, &london(), &every);
        assert_eq!(e.when_all_down.as_deref(), Some(name));
        assert!(e.to_string().contains("when_all_down"), "{e}");
        // With anything up, when_all_down does not apply.
        let e = b.explain("www.t.", Family::V4, &london(), &all_up());
        assert_eq!(e.when_all_down, None);
    }
}

// ---------------------------------------------------------------------------------------
// 3. Rank: latency rows, distance, order, ties
// ---------------------------------------------------------------------------------------

#[test]
fn latency_row_beats_distance() {
    let b = world4(nearest4())
        .latency("continent:EU", &[("us-east", 12), ("eu-west", 30)])
        .build();
    // London is 460 km from Dublin and 5900 km from Ashburn; the measured row wins.
    assert_eq!(
        b.a("www.t.", &london(), &all_up()).as_deref(),
        Some("us-east")
    );
    // Not matching the row: distance.
    assert_eq!(
        b.a("www.t.", &tokyo(), &all_up()).as_deref(),
        Some("ap-south")
    );
    // The row's regions in RTT order come before every distance-ranked region.
    assert_eq!(
        b.a("www.t.", &london(), &down(&["192.0.2.11"])).as_deref(),
        Some("eu-west")
    );
}

#[test]
fn cidr_row_beats_country_beats_continent() {
    let b = world4(nearest4())
        .latency("continent:EU", &[("us-east", 10)])
        .latency("country:GB", &[("ap-south", 10)])
        .latency("cidr:81.2.69.128/25", &[("eu-central", 10)])
        .latency("cidr:81.2.0.0/16", &[("us-east", 10)])
        .build();
    let mut gb_elsewhere = london();
    gb_elsewhere.ip = ip("2.125.160.216");
    let mut gb_wider = london();
    gb_wider.ip = ip("81.2.1.1");
    let cases: &[(&str, ClientLocation, &str, &str)] = &[
        (
            "longest cidr",
            london(),
            "eu-central",
            "cidr:81.2.69.128/25",
        ),
        ("shorter cidr", gb_wider, "us-east", "cidr:81.2.0.0/16"),
        ("country", gb_elsewhere, "ap-south", "country:GB"),
        ("continent", paris(), "us-east", "continent:EU"),
    ];
    for (what, client, want, row) in cases {
        assert_eq!(
            b.a("www.t.", client, &all_up()).as_deref(),
            Some(*want),
            "{what}"
        );
        let e = b.explain("www.t.", Family::V4, client, &all_up());
        assert_eq!(e.latency_row.as_deref(), Some(*row), "{what}");
        assert_eq!(e.candidates[0].rank_reason, format!("latency {row} 10 ms"));
    }
    // No row: distance from the client.
    assert_eq!(
        b.a("www.t.", &new_york(), &all_up()).as_deref(),
        Some("us-east")
    );
    let e = b.explain("www.t.", Family::V4, &new_york(), &all_up());
    assert_eq!(e.latency_row, None);
    assert!(e.candidates[0].rank_reason.starts_with("distance "));
}

#[test]
fn regions_not_named_in_the_row_follow_by_distance() {
    let b = world4(nearest4())
        .latency("country:GB", &[("ap-south", 50)])
        .build();
    let e = b.explain("www.t.", Family::V4, &london(), &all_up());
    let order: Vec<&str> = e.candidates.iter().map(|c| c.region.as_str()).collect();
    // Mumbai by the row; then Dublin (460 km), Frankfurt (640 km), Ashburn (5900 km).
    assert_eq!(order, ["ap-south", "eu-west", "eu-central", "us-east"]);
    assert_eq!(e.candidates[0].rank_reason, "latency country:GB 50 ms");
    for c in &e.candidates[1..] {
        assert!(c.rank_reason.starts_with("distance "), "{c:?}");
        assert!(c.rank_reason.ends_with(" km"), "{c:?}");
    }
    assert_eq!(e.region.as_deref(), Some("ap-south"));
    // The row's region down: the nearest by distance, not the next in config order.
    assert_eq!(
        b.a("www.t.", &london(), &down(&["192.0.2.41"])).as_deref(),
        Some("eu-west")
    );
}

#[test]
fn distance_ranks_every_region_when_no_row_matches() {
    let b = world4(nearest4()).build();
    let cases: &[(ClientLocation, &str)] = &[
        (london(), "eu-west"),
        (paris(), "eu-central"),
        (berlin(), "eu-central"),
        (new_york(), "us-east"),
        (tokyo(), "ap-south"),
    ];
    for (client, want) in cases {
        assert_eq!(
            b.a("www.t.", client, &all_up()).as_deref(),
            Some(*want),
            "{:?}",
            client.ip
        );
    }
}

#[test]
fn no_location_uses_the_regions_order() {
    let b = world4(service(
        "www.t.",
        Policy::Nearest,
        &["ap-south", "eu-central", "us-east", "eu-west"],
    ))
    .build();
    let c = nowhere("192.0.2.200");
    assert_eq!(b.a("www.t.", &c, &all_up()).as_deref(), Some("ap-south"));
    assert_eq!(
        b.a("www.t.", &c, &down(&["192.0.2.41"])).as_deref(),
        Some("eu-central")
    );
    let e = b.explain("www.t.", Family::V4, &c, &all_up());
    let reasons: Vec<&str> = e
        .candidates
        .iter()
        .map(|c| c.rank_reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "regions order 1",
            "regions order 2",
            "regions order 3",
            "regions order 4"
        ]
    );
    assert_eq!(e.located_by, "unknown");
    // Regions without coordinates rank after those with, for a located client.
    let b = World::new()
        .region(region_nowhere("nowhere", &["192.0.2.99"]))
        .region(us_east())
        .service(service("www.t.", Policy::Nearest, &["nowhere", "us-east"]))
        .build();
    assert_eq!(
        b.a("www.t.", &london(), &all_up()).as_deref(),
        Some("us-east")
    );
}

#[test]
fn ten_percent_tie_set_is_split_by_weights() {
    let mk = |b_ms: u32| {
        World::new()
            .region(region_nowhere("a", &["192.0.2.1"]).weight(75))
            .region(region_nowhere("b", &["192.0.2.2"]).weight(25))
            .region(region_nowhere("c", &["192.0.2.3"]).weight(1000))
            .service(service("www.t.", Policy::Nearest, &["a", "b", "c"]))
            .latency("cidr:0.0.0.0/0", &[("a", 100), ("b", b_ms), ("c", 111)])
            .build()
    };
    let clients = random_subnets(10_000, 0x9e37_79b9_7f4a_7c15);
    // b within 10% of a: a and b split 75/25; c (11% away) never gets traffic.
    let tie = mk(108);
    let s = shares(&tie, "www.t.", &clients);
    assert_share(&s, "a", 75.0, 3.0);
    assert_share(&s, "b", 25.0, 3.0);
    assert_share(&s, "c", 0.0, 0.0);
    let e = tie.explain("www.t.", Family::V4, &clients[0], &all_up());
    let ties: Vec<&str> = e
        .candidates
        .iter()
        .filter(|c| c.tie)
        .map(|c| c.region.as_str())
        .collect();
    assert_eq!(ties, ["a", "b"]);
    // Exactly 10% is still a tie.
    let s = shares(&mk(110), "www.t.", &clients[..2000]);
    assert!(s.get("b").copied().unwrap_or(0.0) > 10.0, "{s:?}");
    // b more than 10% away: a alone.
    let s = shares(&mk(111), "www.t.", &clients[..2000]);
    assert_share(&s, "a", 100.0, 0.0);
}

#[test]
fn weight_zero_is_standby() {
    let b = World::new()
        .region(eu_west().weight(0))
        .region(eu_central())
        .region(us_east())
        .region(ap_south().weight(0))
        .service(nearest4())
        .service(service(
            "fo.t.",
            Policy::Failover,
            &["eu-west", "us-east", "eu-central"],
        ))
        .build();
    // London's nearest is a standby: the nearest weighted region serves.
    assert_eq!(
        b.a("www.t.", &london(), &all_up()).as_deref(),
        Some("eu-central")
    );
    // Only when nothing weighted is up does a standby serve, nearest standby first.
    let weighted_down = down(&["192.0.2.31", "192.0.2.11"]);
    assert_eq!(
        b.a("www.t.", &london(), &weighted_down).as_deref(),
        Some("eu-west")
    );
    assert_eq!(
        b.a("www.t.", &tokyo(), &weighted_down).as_deref(),
        Some("ap-south")
    );
    // Failover: the standby listed first is skipped while a weighted region is up.
    assert_eq!(
        b.a("fo.t.", &london(), &all_up()).as_deref(),
        Some("us-east")
    );
    assert_eq!(
        b.a("fo.t.", &london(), &down(&["192.0.2.11"])).as_deref(),
        Some("eu-central")
    );
    assert_eq!(
        b.a("fo.t.", &london(), &weighted_down).as_deref(),
        Some("eu-west")
    );
}

// ---------------------------------------------------------------------------------------
// Policies: failover, weighted
// ---------------------------------------------------------------------------------------

#[test]
fn failover_follows_the_regions_order() {
    let b = world4(service(
        "fo.t.",
        Policy::Failover,
        &["eu-central", "us-east", "ap-south", "eu-west"],
    ))
    .build();
    let cases: &[(&[&str], &str)] = &[
        (&[], "eu-central"),
        (&["192.0.2.31"], "us-east"),
        (&["192.0.2.31", "192.0.2.11"], "ap-south"),
        (&["192.0.2.31", "192.0.2.11", "192.0.2.41"], "eu-west"),
    ];
    for (dn, want) in cases {
        // Wherever the client is.
        for client in [london(), tokyo(), new_york(), nowhere("10.0.0.1")] {
            let (d, r) = b.route("fo.t.", Family::V4, &client, &down(dn));
            assert_eq!(r.as_deref(), Some(*want), "down {dn:?}");
            assert_eq!(
                d.scope, 0,
                "failover without a fence does not depend on the client"
            );
        }
    }
}

#[test]
fn weighted_policy_splits_by_weight_within_three_points() {
    let b = World::new()
        .region(region_nowhere("a", &["192.0.2.1"]).weight(70))
        .region(region_nowhere("b", &["192.0.2.2"]).weight(20))
        .region(region_nowhere("c", &["192.0.2.3"]).weight(10))
        .service(service("w.t.", Policy::Weighted, &["a", "b", "c"]))
        .build();
    let clients = random_subnets(10_000, 0x1234_5678_9abc_def1);
    let s = shares(&b, "w.t.", &clients);
    assert_share(&s, "a", 70.0, 3.0);
    assert_share(&s, "b", 20.0, 3.0);
    assert_share(&s, "c", 10.0, 3.0);
    // A down region's share goes to the others in proportion (70:10 here).
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in &clients {
        let r = b.a("w.t.", c, &down(&["192.0.2.2"])).unwrap();
        *counts.entry(r).or_default() += 1;
    }
    assert_eq!(counts.get("b"), None);
    let a = 100.0 * counts["a"] as f64 / clients.len() as f64;
    assert!((a - 87.5).abs() <= 3.0, "{counts:?}");
    // Weighted ignores location: London and Tokyo are spread the same way.
    let e = b.explain("w.t.", Family::V4, &london(), &all_up());
    assert!(e.candidates.iter().all(|c| c.tie), "{e}");
}

// ---------------------------------------------------------------------------------------
// 4. Pick: families, max_answers
// ---------------------------------------------------------------------------------------

#[test]
fn a_and_aaaa_come_only_from_regions_with_that_family() {
    let b = World::new()
        .region(region(
            "eu-west",
            53.35,
            -6.26,
            &["192.0.2.21", "192.0.2.22"],
        ))
        .region(region("eu-central", 50.11, 8.68, &["2001:db8::31"]))
        .region(us_east())
        .service(service(
            "www.t.",
            Policy::Nearest,
            &["eu-west", "eu-central", "us-east"],
        ))
        .service(service("v4only.t.", Policy::Nearest, &["eu-west"]))
        .service(service("v6only.t.", Policy::Failover, &["eu-central"]))
        .build();
    // A: Dublin (IPv4 only) is nearest. AAAA: the nearest region with IPv6, Frankfurt.
    let (d, r) = b.route("www.t.", Family::V4, &london(), &all_up());
    assert_eq!(r.as_deref(), Some("eu-west"));
    assert_eq!(addrs(&d), ["192.0.2.21", "192.0.2.22"]);
    let (d, r) = b.route("www.t.", Family::V6, &london(), &all_up());
    assert_eq!(r.as_deref(), Some("eu-central"));
    assert_eq!(addrs(&d), ["2001:db8::31"]);
    // Frankfurt's IPv6 down: the next region with IPv6.
    let (d, r) = b.route("www.t.", Family::V6, &london(), &down(&["2001:db8::31"]));
    assert_eq!(r.as_deref(), Some("us-east"));
    assert_eq!(addrs(&d), ["2001:db8::11"]);
    // Ashburn's IPv4 down but its IPv6 up: still fine for AAAA, skipped for A.
    let (_, r) = b.route("www.t.", Family::V6, &new_york(), &down(&["192.0.2.11"]));
    assert_eq!(r.as_deref(), Some("us-east"));
    let (_, r) = b.route("www.t.", Family::V4, &new_york(), &down(&["192.0.2.11"]));
    assert_eq!(r.as_deref(), Some("eu-west"));
    // No region of the family at all: NODATA (the name exists), scope 0.
    for (svc, family) in [("v4only.t.", Family::V6), ("v6only.t.", Family::V4)] {
        let (d, r) = b.route(svc, family, &london(), &all_up());
        assert_eq!(d.outcome, Outcome::NoData, "{svc} {family:?}");
        assert_eq!(r, None);
        assert!(d.addrs.is_empty());
        assert_eq!(d.scope, 0, "{svc}");
    }
    let e = b.explain("www.t.", Family::V6, &london(), &all_up());
    let dublin = e.candidates.iter().find(|c| c.region == "eu-west").unwrap();
    assert_eq!(dublin.status, "no IPv6 endpoints");
    // A region whose only IPv6 endpoint is down is down for AAAA, with min_healthy met:
    // the trace says why.
    let e = b.explain("www.t.", Family::V6, &new_york(), &down(&["2001:db8::11"]));
    let ashburn = e.candidates.iter().find(|c| c.region == "us-east").unwrap();
    assert_eq!(
        ashburn.status,
        "down (no IPv6 endpoint up, 1/2 endpoints up)"
    );
    // Every address handed out is of the asked family.
    for client in [london(), tokyo(), new_york(), paris()] {
        let (d, _) = b.route("www.t.", Family::V6, &client, &all_up());
        assert!(d.addrs.as_slice().iter().all(|a| a.is_ipv6()), "{d:?}");
        let (d, _) = b.route("www.t.", Family::V4, &client, &all_up());
        assert!(d.addrs.as_slice().iter().all(|a| a.is_ipv4()), "{d:?}");
    }
}

#[test]
fn max_answers_caps_the_addresses_and_rotates_them() {
    let eps: &[&str] = &[
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
        "2001:db8::1",
    ];
    let b = World::new()
        .region(region("big", 53.35, -6.26, eps))
        .service(service("two.t.", Policy::Failover, &["big"]).max_answers(2))
        .service(service("all.t.", Policy::Failover, &["big"]))
        .build();
    let (d, _) = b.route("all.t.", Family::V4, &london(), &all_up());
    assert_eq!(d.addrs.len(), 5);
    assert_eq!(d.scope, 0, "every address, whoever asks");
    let (d, _) = b.route("all.t.", Family::V4, &london(), &down(&["192.0.2.3"]));
    assert_eq!(
        addrs(&d),
        ["192.0.2.1", "192.0.2.2", "192.0.2.4", "192.0.2.5"]
    );
    let (d, _) = b.route("all.t.", Family::V6, &london(), &all_up());
    assert_eq!(addrs(&d), ["2001:db8::1"]);

    let mut starts = HashSet::new();
    for c in random_subnets(200, 7) {
        let (d, _) = b.route("two.t.", Family::V4, &c, &all_up());
        assert_eq!(d.addrs.len(), 2, "{d:?}");
        assert_ne!(d.addrs.as_slice()[0], d.addrs.as_slice()[1]);
        // Which two depends on the client subnet: the scope says so.
        assert_eq!(d.scope, 24);
        assert_eq!(d, b.route("two.t.", Family::V4, &c, &all_up()).0);
        starts.insert(d.addrs.as_slice()[0]);
    }
    assert_eq!(starts.len(), 5, "the start rotates over all endpoints");
}

// ---------------------------------------------------------------------------------------
// 5. ECS scope and determinism
// ---------------------------------------------------------------------------------------

#[test]
fn ecs_scope_is_what_the_answer_depended_on() {
    let b = World::new()
        .region(eu_west())
        .region(eu_central())
        .region(us_east())
        .region(ap_south())
        .region(region_nowhere("wa", &["192.0.2.101"]).weight(60))
        .region(region_nowhere("wb", &["192.0.2.102"]).weight(40))
        .region(region("twin-a", 50.0, 8.0, &["192.0.2.111"]))
        .region(region("twin-b", 50.0, 8.01, &["192.0.2.112"]))
        .service(nearest4())
        .service(service("fo.t.", Policy::Failover, &ALL4))
        .service(
            service("fofence.t.", Policy::Failover, &ALL4)
                .fence("continent:EU", &["eu-west", "eu-central"]),
        )
        .service(service("one.t.", Policy::Nearest, &["us-east"]))
        .service(service("w.t.", Policy::Weighted, &["wa", "wb"]))
        .service(service("twins.t.", Policy::Nearest, &["twin-a", "twin-b"]))
        .build();
    let ldn_ecs = via_ecs(london(), 24);
    let tokyo_ecs = via_ecs(tokyo(), 48);
    let cases: &[(&str, &str, ClientLocation, u8)] = &[
        (
            "failover, no fence: not client-dependent",
            "fo.t.",
            london(),
            0,
        ),
        ("failover, no fence, ECS", "fo.t.", ldn_ecs, 0),
        ("one region only", "one.t.", london(), 0),
        ("nearest: the location's network", "www.t.", london(), 31),
        (
            "nearest, ECS /24: still the GeoIP network",
            "www.t.",
            ldn_ecs,
            31,
        ),
        ("nearest, IPv6", "www.t.", tokyo(), 32),
        (
            "failover with a fence: the location's network",
            "fofence.t.",
            london(),
            31,
        ),
        (
            "fence rule that does not match still needed the location",
            "fofence.t.",
            tokyo(),
            32,
        ),
        (
            "weighted: the affinity subnet (/24 for IPv4)",
            "w.t.",
            london(),
            24,
        ),
        (
            "weighted, ECS /20: the source prefix",
            "w.t.",
            via_ecs(london(), 20),
            20,
        ),
        ("weighted, IPv6 resolver: /56", "w.t.", tokyo(), 56),
        ("weighted, IPv6 ECS /48", "w.t.", tokyo_ecs, 48),
    ];
    for (what, svc, client, want) in cases {
        let (d, _) = b.route(svc, Family::V4, client, &all_up());
        assert_eq!(d.scope, *want, "{what}: {d:?}");
        let e = b.explain(svc, Family::V4, client, &all_up());
        assert_eq!(e.scope, *want, "{what}");
    }
    // A tie decided by the hash: the longer of location and affinity.
    let mut twins = london();
    twins.scope = 16;
    let (d, r) = b.route("twins.t.", Family::V4, &twins, &all_up());
    assert!(r.is_some());
    assert_eq!(d.scope, 24, "{d:?}");
    let (d, _) = b.route("twins.t.", Family::V4, &london(), &all_up());
    assert_eq!(d.scope, 31, "{d:?}");
    // Nearest with only one region up no longer depends on the client.
    let others = down(&["192.0.2.21", "192.0.2.31", "192.0.2.41"]);
    let (d, r) = b.route("www.t.", Family::V4, &london(), &others);
    assert_eq!(r.as_deref(), Some("us-east"));
    assert_eq!(d.scope, 0);
}

#[test]
fn same_client_subnet_gets_the_same_answer() {
    let b = World::new()
        .region(region_nowhere("a", &["192.0.2.1", "192.0.2.4", "192.0.2.5"]).weight(50))
        .region(region_nowhere("b", &["192.0.2.2"]).weight(30))
        .region(region_nowhere("c", &["192.0.2.3"]).weight(20))
        .service(service("w.t.", Policy::Weighted, &["a", "b", "c"]).max_answers(2))
        .build();
    for c in random_subnets(500, 42) {
        let first = b.route("w.t.", Family::V4, &c, &all_up());
        let again = b.route("w.t.", Family::V4, &c, &all_up());
        assert_eq!(first, again);
        // Another address in the same /24, as a resolver without ECS: same answer.
        let mut host = c;
        host.source = ClientSource::Resolver;
        if let IpAddr::V4(a) = c.ip {
            host.ip = IpAddr::V4(Ipv4Addr::from(u32::from(a) | 0x37));
        }
        assert_eq!(
            first.0.addrs,
            b.route("w.t.", Family::V4, &host, &all_up()).0.addrs
        );
    }
    // IPv6: the /56 decides.
    let a = nowhere("2001:db8:aa:bb00::1");
    let z = nowhere("2001:db8:aa:bbff:ffff::9");
    assert_eq!(
        b.route("w.t.", Family::V4, &a, &all_up()),
        b.route("w.t.", Family::V4, &z, &all_up())
    );
    // The hash is fixed (not seeded per process): this subnet always lands here.
    let c = ClientLocation::unknown(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
        ClientSource::Ecs { source_prefix: 48 },
    );
    let r1 = b.a("w.t.", &c, &all_up());
    let r2 = b.a("w.t.", &c, &all_up());
    assert_eq!(r1, r2);
}

// ---------------------------------------------------------------------------------------
// explain()
// ---------------------------------------------------------------------------------------

#[test]
fn explain_traces_rank_reasons_and_statuses() {
    let b = World::new()
        .region(eu_west())
        .region(eu_central().drained())
        .region(us_east())
        .region(ap_south())
        .region(region("eu-north", 59.33, 18.07, &["192.0.2.51", "192.0.2.52"]).min_healthy(2))
        .service(
            service(
                "www.t.",
                Policy::Nearest,
                &["us-east", "eu-west", "eu-central", "ap-south", "eu-north"],
            )
            .fence(
                "continent:EU",
                &["eu-west", "eu-central", "us-east", "eu-north"],
            ),
        )
        .latency("continent:EU", &[("us-east", 70), ("eu-west", 20)])
        .build();
    let client = via_ecs(london(), 24);
    let health = down(&["192.0.2.52"]);
    let e = b.explain("www.t.", Family::V4, &client, &health);
    let route_d = route(&b.model, b.sid("www.t."), Family::V4, &client, &health);
    assert_eq!(
        e.answer,
        route_d.addrs.as_slice(),
        "explain runs the same decision"
    );
    assert_eq!(e.scope, route_d.scope);

    let rows: Vec<(&str, &str, &str)> = e
        .candidates
        .iter()
        .map(|c| (c.region.as_str(), c.status.as_str(), c.rank_reason.as_str()))
        .collect();
    // Live regions first in rank order (row first, by RTT), then the rest.
    assert_eq!(rows[0], ("eu-west", "up", "latency continent:EU 20 ms"));
    assert_eq!(rows[1], ("us-east", "up", "latency continent:EU 70 ms"));
    let status = |r: &str| rows.iter().find(|x| x.0 == r).unwrap().1;
    let reason = |r: &str| rows.iter().find(|x| x.0 == r).unwrap().2;
    assert_eq!(status("eu-central"), "drained");
    assert_eq!(status("ap-south"), "fenced out");
    assert_eq!(status("eu-north"), "down (1/2 endpoints up, min_healthy 2)");
    let km: f64 = reason("eu-north")
        .strip_prefix("distance ")
        .and_then(|s| s.strip_suffix(" km"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1400.0..1500.0).contains(&km), "London-Stockholm {km}");
    assert!(e.candidates[0].picked && e.candidates[0].tie && e.candidates[0].considered);
    assert!(e.candidates[1..].iter().all(|c| !c.picked));
    assert_eq!(e.candidates[0].weight, 100);

    assert_eq!(e.service, "www.t.");
    assert_eq!(e.policy, "nearest");
    assert_eq!(e.qtype, "A");
    assert_eq!(e.client, ip("81.2.69.0"));
    assert_eq!(e.client_source, "ecs /24");
    assert_eq!(e.located_by, "geoip 81.2.69.142/31");
    assert_eq!(e.country.as_deref(), Some("GB"));
    assert_eq!(e.continent.as_deref(), Some("EU"));
    assert_eq!(
        e.fence.as_deref(),
        Some("continent:EU -> [eu-west, eu-central, us-east, eu-north]")
    );
    assert_eq!(e.latency_row.as_deref(), Some("continent:EU"));
    assert_eq!(e.outcome, "ANSWER");
    assert_eq!(e.region.as_deref(), Some("eu-west"));
    assert_eq!(e.answer, [ip("192.0.2.21")]);
    assert_eq!(e.ttl, 30);
    assert_eq!(e.scope, 31);

    let text = e.to_string();
    for want in [
        "service  www.t. A (policy nearest)",
        "client   81.2.69.0 from ecs /24",
        "located  geoip 81.2.69.142/31, country GB, continent EU, at 51.51,-0.09",
        "fence    continent:EU -> [eu-west, eu-central, us-east, eu-north]",
        "latency  row continent:EU",
        "=>  1. eu-west",
        "latency continent:EU 20 ms",
        "drained",
        "fenced out",
        "down (1/2 endpoints up, min_healthy 2)",
        "answer   ANSWER eu-west 192.0.2.21 ttl 30 ecs-scope /31",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // JSON form (served by /explain).
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["candidates"][0]["region"], "eu-west");
    assert_eq!(json["located_by"], "geoip 81.2.69.142/31");
}

#[test]
fn explain_for_nodata_and_servfail() {
    let b = world4(nearest4().when_all_down(AllDown::ServFail)).build();
    let every = down(&[
        "192.0.2.21",
        "192.0.2.31",
        "192.0.2.11",
        "192.0.2.41",
        "2001:db8::21",
        "2001:db8::31",
        "2001:db8::11",
        "2001:db8::41",
    ]);
    let e = b.explain("www.t.", Family::V4, &london(), &every);
    assert_eq!(e.outcome, "SERVFAIL");
    assert_eq!(e.region, None);
    assert!(e.answer.is_empty());
    assert!(
        e.candidates
            .iter()
            .all(|c| c.status.starts_with("down (0/2"))
    );
    assert!(e.to_string().contains("answer   SERVFAIL"), "{e}");
    let b = World::new()
        .region(region("v4", 1.0, 1.0, &["192.0.2.1"]))
        .service(service("www.t.", Policy::Nearest, &["v4"]))
        .build();
    let e = b.explain("www.t.", Family::V6, &london(), &all_up());
    assert_eq!(e.outcome, "NODATA");
    assert_eq!(e.qtype, "AAAA");
    assert_eq!(e.candidates[0].status, "no IPv6 endpoints");
}

#[test]
fn rank_key_orders_as_liveness_group_total_cmp_then_order() {
    let values = [
        f64::NEG_INFINITY,
        -1e300,
        -2.5,
        -0.0,
        0.0,
        1e-300,
        0.1,
        0.1000000000000001,
        7.0,
        1e300,
        f64::INFINITY,
        f64::NAN,
    ];
    let mut cands = Vec::new();
    for live in [true, false] {
        for (i, &v) in values.iter().enumerate() {
            for order in [0u8, 3] {
                for metric in [
                    Metric::Latency(i as u32 * 7),
                    Metric::Distance(v),
                    Metric::Order,
                ] {
                    cands.push(Cand {
                        region: 0,
                        order,
                        status: Status::Up,
                        metric,
                        weight: 100,
                        live,
                        tie: false,
                        picked: false,
                    });
                }
            }
        }
    }
    // The comparator the key replaced.
    let reference = |a: &Cand, b: &Cand| {
        (!a.live, a.metric.group())
            .cmp(&(!b.live, b.metric.group()))
            .then(a.metric.value().total_cmp(&b.metric.value()))
            .then(a.order.cmp(&b.order))
    };
    for a in &cands {
        for b in &cands {
            assert_eq!(
                rank_key(a).cmp(&rank_key(b)),
                reference(a, b),
                "{a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn tie_limit_lies_between_the_best_term_and_the_bound() {
    // The nearest ranking skips `tie_limit` for terms equal to the best or above
    // TIE_BOUND times it; that is exact only if a <= tie_limit(a) <= TIE_BOUND * a.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut terms = vec![0.0, f64::MIN_POSITIVE, 1e-300, 1e-12, 0.5, 0.98, 0.99, 1.0];
    for _ in 0..200_000 {
        x = mix(x);
        // Uniform in [0, 1], and spread over magnitudes (short distances matter most).
        terms.push((x >> 11) as f64 / (1u64 << 53) as f64);
        terms.push(((x >> 11) as f64 / (1u64 << 53) as f64).powi(8));
    }
    for a in terms {
        let l = tie_limit(a);
        assert!(a <= l, "tie_limit({a:e}) = {l:e} is below the best term");
        assert!(
            l <= a * TIE_BOUND,
            "tie_limit({a:e}) = {l:e} is above the bound"
        );
    }
}

#[test]
fn route_into_a_used_decision_equals_a_fresh_route() {
    // The fast path routes every query into the same Decision: nothing from the previous
    // one (addresses past the new length, region, outcome, scope) may show.
    let b = World::new()
        .region(region(
            "big",
            53.35,
            -6.26,
            &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        ))
        .region(region("small", 35.68, 139.69, &["192.0.2.9"]))
        .region(region_nowhere("v6", &["2001:db8::1"]))
        .service(service("www.t.", Policy::Nearest, &["big", "small"]))
        .service(service("six.t.", Policy::Nearest, &["v6"]).when_all_down(AllDown::ServFail))
        .build();
    let mut reused = Decision::default();
    let cases = [
        ("www.t.", Family::V4, london(), all_up()),
        ("www.t.", Family::V4, tokyo(), all_up()),
        ("six.t.", Family::V4, london(), all_up()),
        ("six.t.", Family::V6, london(), down(&["2001:db8::1"])),
        (
            "www.t.",
            Family::V4,
            london(),
            down(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
        ),
        ("www.t.", Family::V4, london(), all_up()),
    ];
    for (svc, fam, client, health) in &cases {
        route_into(&b.model, b.sid(svc), *fam, client, health, &mut reused);
        let fresh = route(&b.model, b.sid(svc), *fam, client, health);
        assert_eq!(reused, fresh, "{svc} {fam:?}");
        assert_eq!(reused.addrs.as_slice(), fresh.addrs.as_slice());
    }
    // And list equality looks only at the addresses in the list.
    let mut a = AddrList::default();
    a.push(ip("192.0.2.1"));
    a.clear();
    assert_eq!(a, AddrList::default());
}

#[test]
fn route_memo_decides_as_route_does() {
    // Random nearest worlds (exact ties, weights, standbys, drains, min_healthy, fences
    // and latency rows by cidr, country or continent, every when_all_down), clients that
    // come back to the same places from addresses inside and outside the cidr rows, and
    // health that changes between rounds (announced to the memo by a new epoch, as
    // HealthCell does): every decision equals a fresh route().
    let mut x: u64 = 0x5eed;
    let mut next = move || {
        x = mix(x);
        x
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let continents = ["EU", "NA", "AS"];
    let countries = ["GB", "DE", "US", "JP"];
    let fence_nets = [
        "cidr:198.51.100.0/24",
        "cidr:198.51.100.128/25",
        "cidr:2001:db8:5::/48",
    ];
    let latency_nets = [
        "cidr:198.51.100.0/25",
        "cidr:203.0.113.0/24",
        "cidr:2001:db8:5:1::/64",
    ];
    let (mut checked, mut hits) = (0u64, 0u64);
    let (mut cidr_checked, mut cidr_hits) = (0u64, 0u64);
    for world in 0..400u64 {
        let nreg = 1 + next() as usize % SMALL;
        let (mut w, mut names, mut eps_all) = (World::new(), Vec::new(), Vec::new());
        for r in 0..nreg {
            let name = leak(format!("r{r}"));
            names.push(name);
            let eps: Vec<&'static str> = (0..1 + next() as usize % 4)
                .map(|e| {
                    leak(if next() % 3 == 0 {
                        format!("2001:db8::{r}:{e}")
                    } else {
                        format!("192.0.2.{}", r * 10 + e)
                    })
                })
                .collect();
            eps_all.extend(eps.iter().copied());
            let mut reg = match next() % 6 {
                0 => region_nowhere(name, &eps),
                1 => region(name, 50.0, 8.0, &eps),
                _ => region(
                    name,
                    (next() % 1700) as f64 / 10.0 - 85.0,
                    (next() % 3600) as f64 / 10.0 - 180.0,
                    &eps,
                ),
            };
            reg = reg.weight([0, 1, 50, 100][next() as usize % 4]);
            if next() % 10 == 0 {
                reg = reg.drained();
            }
            if next() % 4 == 0 {
                reg = reg.min_healthy(2);
            }
            w = w.region(reg);
        }
        let mut s = service("www.t.", Policy::Nearest, &names)
            .max_answers(1 + (next() % 4) as u8)
            .when_all_down(
                [
                    AllDown::All,
                    AllDown::First,
                    AllDown::NoData,
                    AllDown::ServFail,
                ][next() as usize % 4],
            );
        if next() % 4 == 0 {
            let k = leak(format!("country:{}", countries[next() as usize % 4]));
            s = s.fence(k, &names[..1 + next() as usize % names.len()]);
        }
        let mut cidr_keyed = false;
        if next() % 4 == 0 {
            cidr_keyed = true;
            for k in fence_nets {
                if next() % 2 == 0 {
                    let from = next() as usize % names.len();
                    s = s.fence(k, &names[from..=from]);
                }
            }
        }
        // A twin of it (same config), whose own `weights` sometimes differ.
        w = w.service(S {
            name: "www2.t.",
            ..s.clone()
        });
        w = w.service(s);
        if next() % 3 == 0 {
            for c in continents {
                let mut row: Vec<(&'static str, u32)> = Vec::new();
                for n in &names {
                    let r = next();
                    if r % 2 == 0 {
                        row.push((*n, (r >> 8) as u32 % 200));
                    }
                }
                w = w.latency(leak(format!("continent:{c}")), &row);
            }
        }
        if next() % 3 == 0 {
            cidr_keyed = true;
            for k in latency_nets {
                let r = next();
                let n = names[r as usize % names.len()];
                w = w.latency(k, &[(n, (r >> 8) as u32 % 200)]);
            }
        }
        let mut b = w.build();
        let (sid, twin) = (b.sid("www.t."), b.sid("www2.t."));
        if next() % 3 == 0 {
            let rid = (next() % nreg as u64) as RegionId;
            b.model.services[usize::from(twin)].weights =
                vec![(rid, [0, 1, 100][next() as usize % 3])];
        }
        // A few places, each asked from many subnets.
        let places: Vec<ClientLocation> = (0..6)
            .map(|_| {
                geo(
                    "192.0.2.1",
                    24,
                    countries[next() as usize % 4],
                    continents[next() as usize % 3],
                    (next() % 1800) as f64 / 10.0 - 90.0,
                    (next() % 3600) as f64 / 10.0 - 180.0,
                )
            })
            .chain([nowhere("192.0.2.1")])
            .collect();
        let mut memo = RouteMemo::default();
        for epoch in 0..4 {
            let dn: Vec<&str> = eps_all
                .iter()
                .copied()
                .filter(|_| next() % 4 == 0)
                .collect();
            let health = down(&dn);
            memo.sync(world, epoch);
            for _ in 0..40 {
                let mut c = places[next() as usize % places.len()];
                let v4 = next() % 2 == 0;
                // Half from around the cidr rows: inside one, another or none of them.
                let near = next() % 2 == 0;
                c.ip = match (v4, near) {
                    (true, false) => IpAddr::V4(Ipv4Addr::from(next() as u32)),
                    (true, true) => IpAddr::V4(Ipv4Addr::from(
                        [0xc633_6400u32, 0xcb00_7100, 0xc633_6500][next() as usize % 3]
                            | (next() % 256) as u32,
                    )),
                    (false, false) => IpAddr::V6(Ipv6Addr::from(u128::from(next()) << 64)),
                    (false, true) => IpAddr::V6(Ipv6Addr::from(
                        0x2001_0db8_0005_0000_0000_0000_0000_0000u128
                            | u128::from(next() % 3) << 64
                            | u128::from(next() % 4),
                    )),
                };
                c.scope = (next() % 33) as u8;
                if next() % 2 == 0 {
                    c = via_ecs(c, if v4 { 24 } else { 56 });
                }
                for (fam, sid) in [Family::V4, Family::V6]
                    .into_iter()
                    .flat_map(|f| [(f, sid), (f, twin)])
                {
                    let mut got = Decision::default();
                    memo.route_into(&b.model, sid, fam, &c, &health, &mut got);
                    let want = route(&b.model, sid, fam, &c, &health);
                    assert_eq!(got, want, "world {world} epoch {epoch} {c:?} {fam:?} {sid}");
                    checked += 1;
                    cidr_checked += u64::from(cidr_keyed);
                }
            }
        }
        hits += memo.hits();
        cidr_hits += if cidr_keyed { memo.hits() } else { 0 };
    }
    assert!(
        hits * 3 > checked,
        "{hits} of {checked} decisions from the memo"
    );
    // The worlds with cidr rows are served from the memo too, not routed around it.
    assert!(
        cidr_checked > 10_000 && cidr_hits * 4 > cidr_checked,
        "{cidr_hits} of {cidr_checked} decisions in cidr-keyed worlds from the memo"
    );
}

#[test]
fn route_memo_address_lists_are_new_in_each_era() {
    // The memo keeps a region's address list per era: a health epoch or a new model
    // generation must give the list as it now is, not the one a hit copied before.
    let eu = region(
        "eu-west",
        53.35,
        -6.26,
        &["192.0.2.21", "192.0.2.22", "192.0.2.23"],
    );
    let b = World::new()
        .region(eu.clone())
        .region(us_east())
        .service(service("www.t.", Policy::Nearest, &["eu-west", "us-east"]).max_answers(4))
        // Same regions, fewer answers: three addresses rotate, so never kept.
        .service(service("two.t.", Policy::Nearest, &["eu-west", "us-east"]).max_answers(2))
        .build();
    let (www, two) = (b.sid("www.t."), b.sid("two.t."));
    let mut memo = RouteMemo::default();
    let ask = |memo: &mut RouteMemo, b: &Built, sid, health: &Health| {
        let mut d = Decision::default();
        memo.route_into(&b.model, sid, Family::V4, &london(), health, &mut d);
        assert_eq!(d, route(&b.model, sid, Family::V4, &london(), health));
        addrs(&d)
    };
    memo.sync(1, 1);
    for _ in 0..3 {
        assert_eq!(
            ask(&mut memo, &b, www, &all_up()),
            ["192.0.2.21", "192.0.2.22", "192.0.2.23"]
        );
        assert_eq!(ask(&mut memo, &b, two, &all_up()).len(), 2);
    }
    assert_eq!(memo.hits(), 2, "the second and third www queries");
    // Health changes, the region stays the pick: the kept list must not be reused.
    memo.sync(1, 2);
    let one_down = down(&["192.0.2.22"]);
    for _ in 0..3 {
        assert_eq!(
            ask(&mut memo, &b, www, &one_down),
            ["192.0.2.21", "192.0.2.23"]
        );
        // Two usable now: not rotated, so kept, from the same list.
        assert_eq!(
            ask(&mut memo, &b, two, &one_down),
            ["192.0.2.21", "192.0.2.23"]
        );
    }
    // Every endpoint down: failing open answers with all of them (another list).
    memo.sync(1, 3);
    let all_down = down(&["192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.11"]);
    for _ in 0..3 {
        assert_eq!(ask(&mut memo, &b, www, &all_down).len(), 3);
    }
    // A new generation with other addresses for the same region id.
    let b2 = World::new()
        .region(region("eu-west", 53.35, -6.26, &["192.0.2.99"]))
        .region(us_east())
        .service(service("www.t.", Policy::Nearest, &["eu-west", "us-east"]).max_answers(4))
        .service(service("two.t.", Policy::Nearest, &["eu-west", "us-east"]).max_answers(2))
        .build();
    memo.sync(2, 3);
    for _ in 0..3 {
        assert_eq!(ask(&mut memo, &b2, www, &all_up()), ["192.0.2.99"]);
    }
}

/// Every endpoint up; service `sid` gives region `rid` weight `w`, as an operator's
/// weight override does.
struct WeightOverride {
    sid: ServiceId,
    rid: RegionId,
    w: u32,
}

impl HealthView for WeightOverride {
    fn endpoint_up(&self, _: &Endpoint) -> bool {
        true
    }
    fn weight(&self, sid: ServiceId, svc: &Service, rid: RegionId, region: &Region) -> u32 {
        if (sid, rid) == (self.sid, self.rid) {
            self.w
        } else {
            svc.weight(rid, region)
        }
    }
}

#[test]
fn route_memo_shares_places_between_twin_services_only_while_they_route_alike() {
    // Services with the same regions, max_answers and when_all_down share memo slots:
    // a place decided for one is a hit for the other. An operator weight override or a
    // per-service `weights` entry on one of them must end the sharing (here it makes
    // the nearest region a standby for that service alone).
    let b = World::new()
        .region(eu_west())
        .region(us_east())
        .service(service("a.t.", Policy::Nearest, &["eu-west", "us-east"]))
        .service(service("b.t.", Policy::Nearest, &["eu-west", "us-east"]))
        .service(service("c.t.", Policy::Nearest, &["eu-west", "us-east"]).max_answers(3))
        .build();
    let (sa, sb, sc) = (b.sid("a.t."), b.sid("b.t."), b.sid("c.t."));
    let eu = b.model.region_id("eu-west").unwrap();
    let ask = |memo: &mut RouteMemo, model: &Model, sid, health: &dyn Fn() -> WeightOverride| {
        let mut d = Decision::default();
        memo.route_into(model, sid, Family::V4, &london(), &health(), &mut d);
        assert_eq!(d, route(model, sid, Family::V4, &london(), &health()));
        model.regions[usize::from(d.region.unwrap())].name.clone()
    };
    let plain = || WeightOverride {
        sid: sa,
        rid: eu,
        w: 100,
    };
    let mut memo = RouteMemo::default();
    memo.sync(1, 1);
    assert_eq!(ask(&mut memo, &b.model, sa, &plain), "eu-west");
    assert_eq!(memo.hits(), 0);
    assert_eq!(ask(&mut memo, &b.model, sb, &plain), "eu-west");
    assert_eq!(memo.hits(), 1, "b is a's twin");
    assert_eq!(ask(&mut memo, &b.model, sc, &plain), "eu-west");
    assert_eq!(
        memo.hits(),
        1,
        "c answers with other max_answers: not a twin"
    );

    // An override makes eu-west b's standby.
    let standby_b = || WeightOverride {
        sid: sb,
        rid: eu,
        w: 0,
    };
    memo.sync(1, 2);
    for _ in 0..2 {
        assert_eq!(ask(&mut memo, &b.model, sa, &standby_b), "eu-west");
        assert_eq!(ask(&mut memo, &b.model, sb, &standby_b), "us-east");
    }
    // Back to the same weights: twins again.
    memo.sync(1, 3);
    let before = memo.hits();
    assert_eq!(ask(&mut memo, &b.model, sb, &plain), "eu-west");
    assert_eq!(ask(&mut memo, &b.model, sa, &plain), "eu-west");
    assert_eq!(memo.hits(), before + 1);

    // A new generation where b's config `weights` do the same.
    let mut b2 = b;
    b2.model.services[usize::from(sb)].weights = vec![(eu, 0)];
    memo.sync(2, 3);
    for _ in 0..2 {
        assert_eq!(ask(&mut memo, &b2.model, sa, &plain), "eu-west");
        assert_eq!(ask(&mut memo, &b2.model, sb, &plain), "us-east");
    }
}

#[test]
fn route_memo_locates_each_address_once_per_generation() {
    // `located` answers what `locate` made for that very address in this generation
    // (never a neighbour's from the same slot), with the asker's source; a health epoch
    // keeps the places, a new generation locates afresh.
    let calls = std::cell::Cell::new(0u64);
    let fresh = |generation: u64, ip: IpAddr, source: ClientSource| {
        let h = match ip {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(a) => (u128::from(a) >> 64) as u64 ^ u128::from(a) as u64,
        };
        let mut l = london();
        l.ip = ip;
        l.source = source;
        l.scope = ((h ^ generation) % 33) as u8;
        l.coords = Some(Coordinates {
            lat: (h % 180) as f64 - 90.0,
            lon: generation as f64,
        });
        l
    };
    let mut memo = RouteMemo::default();
    let mut x = 0x91ace5u64;
    let ips: Vec<IpAddr> = (0..3 * RouteMemo::PLACES)
        .map(|i| {
            x = mix(x);
            match i % 3 {
                0 => IpAddr::V4(Ipv4Addr::from((x as u32) & 0xffff_ff00)),
                1 => IpAddr::V6(Ipv6Addr::from(u128::from(x) << 72)),
                _ => IpAddr::V4(Ipv4Addr::from(i as u32 & 0xff)),
            }
        })
        .collect();
    let ecs = ClientSource::Ecs { source_prefix: 24 };
    for (generation, epoch) in [(1, 1), (1, 2), (2, 2)] {
        memo.sync(generation, epoch);
        for round in 0..3 {
            for (i, &a) in ips.iter().enumerate() {
                let source = if (i + round) % 2 == 0 {
                    ecs
                } else {
                    ClientSource::Resolver
                };
                let got = memo.located(a, source, |a, s| {
                    calls.set(calls.get() + 1);
                    fresh(generation, a, s)
                });
                assert_eq!(
                    got,
                    fresh(generation, a, source),
                    "{a} generation {generation}"
                );
            }
        }
    }
    assert!(memo.place_hits() > 0 && calls.get() > 0);
    // A hit's source is the asker's, the rest the kept location.
    memo.sync(3, 2);
    let a = ip("192.0.2.0");
    memo.located(a, ClientSource::Resolver, |a, s| fresh(3, a, s));
    let hits = memo.place_hits();
    let got = memo.located(a, ecs, |_, _| unreachable!("kept"));
    assert_eq!((memo.place_hits(), got), (hits + 1, fresh(3, a, ecs)));
    // A health epoch keeps it; a new generation does not.
    memo.sync(3, 3);
    memo.located(a, ecs, |_, _| unreachable!("kept across a health epoch"));
    memo.sync(4, 3);
    let got = memo.located(a, ecs, |a, s| fresh(4, a, s));
    assert_eq!(got, fresh(4, a, ecs));
    assert_eq!(memo.place_hits(), hits + 2);
}

#[test]
fn route_memo_keys_cidr_rows_by_the_row_the_address_falls_in() {
    // A cidr latency row or fence reads the client address: the memo keys the row the
    // address falls in, so one place inside and outside a cidr row decides apart, and
    // each is still kept (hits) after its first decision.
    let b = World::new()
        .region(eu_west())
        .region(us_east())
        .region(ap_south())
        .service(service("www.t.", Policy::Nearest, &["eu-west", "us-east"]))
        .service(
            service(
                "fenced.t.",
                Policy::Nearest,
                &["eu-west", "us-east", "ap-south"],
            )
            .fence("cidr:198.51.100.0/26", &["ap-south"])
            .fence("cidr:198.51.100.0/24", &["us-east"]),
        )
        .latency("cidr:192.0.2.0/25", &[("us-east", 5)])
        .build();
    let (sid, fenced) = (b.sid("www.t."), b.sid("fenced.t."));
    let mut memo = RouteMemo::default();
    memo.sync(1, 1);
    let mut c = london();
    let cases = [
        (sid, "192.0.2.1", "us-east"),
        (sid, "192.0.2.200", "eu-west"),
        (fenced, "198.51.100.1", "ap-south"),
        (fenced, "198.51.100.100", "us-east"),
        (fenced, "203.0.113.1", "eu-west"),
    ];
    for (round, (svc, ip_s, want)) in cases.repeat(3).into_iter().enumerate() {
        c.ip = ip(ip_s);
        let mut d = Decision::default();
        memo.route_into(&b.model, svc, Family::V4, &c, &all_up(), &mut d);
        assert_eq!(b.region_name(&d), Some(want), "{ip_s} (query {round})");
        assert_eq!(d, route(&b.model, svc, Family::V4, &c, &all_up()), "{ip_s}");
    }
    // Five distinct (service, rows) keys decided once each; the other ten from the memo.
    assert_eq!(memo.hits(), 10);
}

#[test]
fn route_memo_is_384_kib() {
    // RouteMemo::SLOTS documents the memo's size; the RSS budget counts on it.
    assert_eq!(
        std::mem::size_of::<MemoSlot>() * RouteMemo::SLOTS,
        384 << 10
    );
}

#[test]
fn route_memo_places_are_384_kib() {
    // RouteMemo::PLACES documents the place memo's size; the RSS budget counts on it.
    assert_eq!(
        std::mem::size_of::<PlaceSlot>() * RouteMemo::PLACES,
        384 << 10
    );
}

#[test]
fn mix_is_splitmix64_and_never_changes() {
    // The first outputs of SplitMix64 seeded with 0 (Steele, Lea, Flood 2014): `mix` of
    // the state before each step. A fleet hashes clients alike only while these hold.
    let mut state = 0u64;
    let mut outputs = Vec::new();
    for _ in 0..3 {
        outputs.push(mix(state));
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    assert_eq!(
        outputs,
        [
            0xe220_a839_7b1d_cdaf,
            0x6e78_9e6a_a1b9_65f4,
            0x06c4_5d18_8009_454f
        ]
    );
}

mod oracle;

/// A health view with everything an operator can set: endpoints down by probe, endpoints
/// forced up or down, drained regions and per-service weight overrides.
#[derive(Default)]
struct Overridden {
    down: HashSet<IpAddr>,
    forced: HashMap<(RegionId, IpAddr), bool>,
    drained: HashSet<RegionId>,
    weights: HashMap<(ServiceId, RegionId), u32>,
}

impl HealthView for Overridden {
    fn endpoint_up(&self, ep: &Endpoint) -> bool {
        !self.down.contains(&ep.address)
    }
    fn endpoint_up_in(&self, rid: RegionId, ep: &Endpoint) -> bool {
        match self.forced.get(&(rid, ep.address)) {
            Some(&up) => up,
            None => self.endpoint_up(ep),
        }
    }
    fn drained(&self, rid: RegionId, region: &Region) -> bool {
        region.drain || self.drained.contains(&rid)
    }
    fn weight(&self, sid: ServiceId, svc: &Service, rid: RegionId, region: &Region) -> u32 {
        self.weights
            .get(&(sid, rid))
            .copied()
            .unwrap_or_else(|| svc.weight(rid, region))
    }
}

/// A random world for the equivalence tests: `nreg` regions (some sharing coordinates,
/// some nowhere, mixed families, weights 0/1/50/100, drains, min_healthy), services of
/// every policy, fence and when_all_down, latency rows by continent, country and cidr
/// with few distinct values (so ties are common). Returns the world, the region names,
/// every endpoint address and the service names.
fn random_world(
    next: &mut impl FnMut() -> u64,
    nreg: usize,
) -> (
    Built,
    Vec<&'static str>,
    Vec<&'static str>,
    Vec<&'static str>,
) {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let (mut w, mut names, mut eps_all) = (World::new(), Vec::new(), Vec::new());
    for r in 0..nreg {
        let name = leak(format!("r{r:02}"));
        names.push(name);
        let eps: Vec<&'static str> = (0..1 + next() as usize % 4)
            .map(|e| {
                leak(if next().is_multiple_of(3) {
                    format!("2001:db8::{r}:{e}")
                } else {
                    format!("192.0.2.{}", r * 4 + e)
                })
            })
            .collect();
        eps_all.extend(eps.iter().copied());
        let mut reg = match next() % 5 {
            0 => region_nowhere(name, &eps),
            1 => region(name, 50.0, 8.0, &eps),
            2 => region(name, 51.5, -0.1, &eps),
            _ => region(
                name,
                (next() % 1700) as f64 / 10.0 - 85.0,
                (next() % 3600) as f64 / 10.0 - 180.0,
                &eps,
            ),
        };
        reg = reg.weight([0, 1, 50, 100][next() as usize % 4]);
        if next().is_multiple_of(10) {
            reg = reg.drained();
        }
        if next().is_multiple_of(4) {
            reg = reg.min_healthy(2);
        }
        w = w.region(reg);
    }
    let mut svcs = Vec::new();
    for (i, policy) in [
        Policy::Nearest,
        Policy::Nearest,
        Policy::Failover,
        Policy::Weighted,
    ]
    .into_iter()
    .enumerate()
    {
        let name = leak(format!("s{i}.t."));
        svcs.push(name);
        // Each service lists a random non-empty subset of the regions, in random order.
        let mut regs: Vec<&'static str> = names
            .iter()
            .copied()
            .filter(|_| !next().is_multiple_of(4))
            .collect();
        if regs.is_empty() {
            regs.push(names[0]);
        }
        for j in (1..regs.len()).rev() {
            regs.swap(j, next() as usize % (j + 1));
        }
        let mut s = service(name, policy, &regs)
            .max_answers(1 + (next() % 4) as u8)
            .when_all_down(
                [
                    AllDown::All,
                    AllDown::First,
                    AllDown::NoData,
                    AllDown::ServFail,
                ][next() as usize % 4],
            );
        match next() % 6 {
            0 => {
                let k = ["country:GB", "country:DE", "continent:NA"][next() as usize % 3];
                s = s.fence(k, &regs[..1 + next() as usize % regs.len()]);
            }
            1 => {
                s = s.fence(
                    "cidr:192.0.2.0/25",
                    &regs[..1 + next() as usize % regs.len()],
                )
            }
            _ => {}
        }
        w = w.service(s);
    }
    if next().is_multiple_of(2) {
        for key in [
            "continent:EU",
            "continent:NA",
            "country:JP",
            "cidr:192.0.2.0/26",
        ] {
            let mut row: Vec<(&'static str, u32)> = Vec::new();
            for n in &names {
                let r = next();
                if r.is_multiple_of(2) {
                    // Few distinct values: equal and within-10% RTTs are common.
                    row.push((*n, [10, 10, 11, 30, 100][(r >> 8) as usize % 5]));
                }
            }
            if !next().is_multiple_of(3) {
                w = w.latency(key, &row);
            }
        }
    }
    (w.build(), names, eps_all, svcs)
}

/// A random client: one of a few places (some exactly at a region's coordinates), or
/// nowhere; an address inside or outside the cidr keys; ECS or not.
fn random_client(next: &mut impl FnMut() -> u64) -> ClientLocation {
    let ip_s = ["192.0.2.1", "192.0.2.77", "192.0.2.200", "198.51.100.9"][next() as usize % 4];
    let mut c = match next() % 6 {
        0 => nowhere(ip_s),
        1 => geo(ip_s, 24, "DE", "EU", 50.0, 8.0),
        2 => geo(ip_s, 24, "GB", "EU", 51.5, -0.1),
        3 => geo(ip_s, 24, "JP", "AS", 35.7, 139.7),
        _ => geo(
            ip_s,
            24,
            ["GB", "DE", "US", "JP"][next() as usize % 4],
            ["EU", "NA", "AS"][next() as usize % 3],
            (next() % 1800) as f64 / 10.0 - 90.0,
            (next() % 3600) as f64 / 10.0 - 180.0,
        ),
    };
    c.scope = (next() % 33) as u8;
    if next().is_multiple_of(2) {
        c = via_ecs(c, 24);
    }
    c
}

/// Random operator state over a world: probes down, forced endpoints, drains, weights.
fn random_overrides(
    next: &mut impl FnMut() -> u64,
    b: &Built,
    eps_all: &[&'static str],
) -> Overridden {
    let mut h = Overridden {
        down: eps_all
            .iter()
            .filter(|_| next().is_multiple_of(4))
            .map(|a| ip(a))
            .collect(),
        ..Overridden::default()
    };
    for (rid, region) in b.model.regions.iter().enumerate() {
        let rid = rid as RegionId;
        for ep in &region.endpoints {
            if next().is_multiple_of(8) {
                h.forced.insert((rid, ep.address), next().is_multiple_of(2));
            }
        }
        if next().is_multiple_of(12) {
            h.drained.insert(rid);
        }
        for sid in 0..b.model.services.len() {
            if next().is_multiple_of(10) {
                h.weights
                    .insert((sid as ServiceId, rid), [0, 1, 100][next() as usize % 3]);
            }
        }
    }
    h
}

/// One world's decisions by the current and the old `decide`, working state included
/// (explain shows it); returns (decisions compared, of them with a tie set of several).
fn compare_with_the_old_decide<const N: usize>(
    world: u64,
    b: &Built,
    svcs: &[&str],
    health: &Overridden,
    clients: &[ClientLocation],
) -> (usize, usize) {
    let (mut compared, mut tied) = (0, 0);
    for c in clients {
        for name in svcs {
            let sid = b.sid(name);
            for family in [Family::V4, Family::V6] {
                let mut d = Decision::default();
                let mut w = super::decision::Work::<N>::new(&mut d);
                super::decision::decide(&mut w, &b.model, sid, family, c, health);
                let (old, old_d) = oracle::old_decide::<N>(&b.model, sid, family, c, health);
                let at = format!("world {world} {name} {family:?} {c:?}");
                assert_eq!(
                    w.cands.iter().copied().collect::<Vec<_>>(),
                    old.list(),
                    "{at}"
                );
                assert_eq!(w.fence, old.fence, "{at}");
                assert_eq!(w.latency_row, old.latency_row, "{at}");
                assert_eq!(w.all_down, old.all_down, "{at}");
                assert_eq!(w.depends_on_location, old.depends_on_location, "{at}");
                assert_eq!(w.depends_on_hash, old.depends_on_hash, "{at}");
                assert_eq!(w.fail_open, old.fail_open, "{at}");
                assert_eq!(d, old_d, "{at}");
                compared += 1;
                tied += usize::from(old.list().iter().filter(|c| c.tie).count() > 1);
            }
        }
    }
    (compared, tied)
}

#[test]
fn decide_equals_the_old_decide_on_random_worlds() {
    // The decision was made cheaper (flags gathered in the candidate pass, the best
    // found with the metrics, the tie set sorted only when it has several members,
    // addresses in one pass, endpoints counted by the view): on random worlds with every
    // policy, fence kind, latency key, override and when_all_down, the current decide
    // and the old one (tests/oracle.rs) agree on the decision and the whole working
    // state, for the small and the large working array.
    let mut x: u64 = 0x0dec1de;
    let mut next = move || {
        x = mix(x);
        x
    };
    let (mut compared, mut tied) = (0, 0);
    for world in 0..1500u64 {
        let nreg = 1 + next() as usize % (SMALL + 4);
        let (b, _, eps_all, svcs) = random_world(&mut next, nreg);
        let health = random_overrides(&mut next, &b, &eps_all);
        let clients: Vec<ClientLocation> = (0..6).map(|_| random_client(&mut next)).collect();
        let (c, t) = if nreg <= SMALL && next() % 2 == 0 {
            compare_with_the_old_decide::<SMALL>(world, &b, &svcs, &health, &clients)
        } else {
            compare_with_the_old_decide::<MAX_SERVICE_REGIONS>(world, &b, &svcs, &health, &clients)
        };
        compared += c;
        tied += t;
    }
    assert!(
        tied * 10 > compared,
        "only {tied} of {compared} decisions had a tie set of several regions"
    );
}

#[test]
fn route_memo_decides_with_every_answer_of_the_health_view() {
    // The memo answers HealthView::endpoints_up from counts kept per era: with probes,
    // forced endpoints, drains and weight overrides changing between eras (as a health
    // epoch announces them), every memo decision equals a fresh route() with the view
    // itself, and an era's counts are never those of the one before.
    let mut x: u64 = 0xc0_47ed;
    let mut next = move || {
        x = mix(x);
        x
    };
    let (mut checked, mut hits) = (0u64, 0u64);
    for world in 0..300u64 {
        let nreg = 1 + next() as usize % SMALL;
        let (b, _, eps_all, svcs) = random_world(&mut next, nreg);
        let mut memo = RouteMemo::default();
        for epoch in 0..4 {
            let health = random_overrides(&mut next, &b, &eps_all);
            memo.sync(world, epoch);
            for _ in 0..30 {
                let c = random_client(&mut next);
                for name in &svcs {
                    let sid = b.sid(name);
                    for family in [Family::V4, Family::V6] {
                        let mut got = Decision::default();
                        memo.route_into(&b.model, sid, family, &c, &health, &mut got);
                        let want = route(&b.model, sid, family, &c, &health);
                        assert_eq!(
                            got, want,
                            "world {world} epoch {epoch} {name} {family:?} {c:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        hits += memo.hits();
    }
    assert!(
        hits * 10 > checked,
        "{hits} of {checked} decisions from the memo"
    );
}
