//! Cost of one routing decision (criterion).
//!
//! ```text
//! cargo bench --bench route -- --warm-up-time 1 --measurement-time 3
//! GEODE_BENCH_MMDB=$(bench/fetch-geolite2.sh) cargo bench --bench route -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Groups:
//! - `route`: [`geode::route::route`] alone over a hand-built model (4 regions, nearest,
//!   a latency row; plus distance-only and weighted for comparison);
//! - `locate_route_test_db`: [`geode::geo::locate`] + `route` with MaxMind's tiny
//!   GeoIP2-City test database, cycling over GB/SE/US/CN/JP clients;
//! - `locate_route_full_db`: the same against a full-size City database named by the
//!   `GEODE_BENCH_MMDB` environment variable, cycling over 4096 random public IPv4
//!   addresses and 4096 random IPv6 addresses in 2000::/3 (skipped, with a note, when
//!   the variable is unset). How long `GeoDb::open` (which runs `verify()`) takes on that
//!   file is printed first.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use geode::geo::{GeoDb, locate};
use geode::model::{
    AllDown, ClientLocation, ClientSource, Coordinates, Endpoint, Family, HealthCell, KeyedTable,
    LatencyRow, LiveSettings, LocatedBy, Model, Outcome, Policy, Probed, Region, ServerSettings,
    Service, StartSettings,
};
use geode::route::{LiveHealth, route};

/// (name, lat, lon, weight, endpoints)
type RegionSpec = (&'static str, f64, f64, u32, &'static [&'static str]);

const REGIONS: &[RegionSpec] = &[
    (
        "ap-south",
        19.08,
        72.88,
        100,
        &["192.0.2.41", "2001:db8::41"],
    ),
    (
        "eu-central",
        50.11,
        8.68,
        100,
        &["192.0.2.31", "2001:db8::31"],
    ),
    (
        "eu-west",
        53.35,
        -6.26,
        100,
        &["192.0.2.21", "192.0.2.22", "2001:db8::21"],
    ),
    (
        "us-east",
        39.04,
        -77.49,
        100,
        &["192.0.2.11", "192.0.2.12", "2001:db8::11"],
    ),
];

/// A model like a small production config: 4 regions, a nearest service, a weighted
/// service, latency rows for a continent, a country and a cidr.
fn model() -> Model {
    let regions: Vec<Region> = REGIONS
        .iter()
        .map(|(name, lat, lon, weight, eps)| {
            let endpoints: Vec<Endpoint> = eps
                .iter()
                .map(|a| Endpoint {
                    address: a.parse().unwrap(),
                    check: None,
                    probe: None,
                    health: Arc::new(HealthCell::new(Probed::Up)),
                })
                .collect();
            Region {
                name: name.to_string(),
                location: Some(Coordinates {
                    lat: *lat,
                    lon: *lon,
                }),
                trig: Some(
                    Coordinates {
                        lat: *lat,
                        lon: *lon,
                    }
                    .trig(),
                ),
                weight: *weight,
                min_healthy: 1,
                drain: false,
                has_v4: endpoints.iter().any(|e| e.address.is_ipv4()),
                has_v6: endpoints.iter().any(|e| e.address.is_ipv6()),
                endpoints,
            }
        })
        .collect();
    // Region ids are indexes into the name-sorted REGIONS.
    let (ap_south, eu_central, eu_west, us_east) = (0, 1, 2, 3);
    let mut latency = KeyedTable::<LatencyRow>::default();
    latency.continent.insert(
        *b"EU",
        LatencyRow {
            rtt: vec![(eu_west, 18), (eu_central, 22), (us_east, 85)],
        },
    );
    latency.country.insert(
        *b"JP",
        LatencyRow {
            rtt: vec![(ap_south, 70), (us_east, 140)],
        },
    );
    let cidr: ipnet::IpNet = "203.0.113.0/24".parse().unwrap();
    latency.cidr.push((
        cidr,
        LatencyRow {
            rtt: vec![(ap_south, 4)],
        },
    ));
    let svc = |name: &str, policy| Service {
        name: name.to_string(),
        zone: 0,
        regions: vec![us_east, eu_west, eu_central, ap_south],
        policy,
        ttl: 30,
        max_answers: 2,
        when_all_down: AllDown::All,
        fence: KeyedTable::default(),
        weights: vec![],
    };
    Model {
        server: ServerSettings {
            start: StartSettings {
                dns_listen: vec![],
                http_listen: None,
                tcp_idle_timeout: Duration::from_secs(10),
                tcp_max_connections: 1024,
                udp_sockets: 0,
            },
            live: LiveSettings {
                geoip_db: None,
                max_udp_payload: 1232,
                answer_cache_bytes: 0,
                reload_settle: Duration::from_millis(500),
            },
        },
        zones: vec![],
        checks: vec![],
        regions,
        // Sorted by name, as config builds them.
        services: vec![
            svc("w.gslb.example.", Policy::Weighted),
            svc("www.gslb.example.", Policy::Nearest),
        ],
        latency,
        client_networks: vec![],
        operator_networks: vec![cidr],
    }
}

fn located(ip: &str, country: &[u8; 2], continent: &[u8; 2], lat: f64, lon: f64) -> ClientLocation {
    let ip: IpAddr = ip.parse().unwrap();
    ClientLocation {
        ip,
        source: ClientSource::Ecs { source_prefix: 24 },
        by: LocatedBy::GeoIp(ipnet::IpNet::new(ip, 24).unwrap().trunc()),
        coords: Some(Coordinates { lat, lon }),
        country: Some(*country),
        continent: Some(*continent),
        scope: 24,
    }
}

fn bench_route(c: &mut Criterion) {
    let m = model();
    let www = m.service_id("www.gslb.example.").unwrap();
    let w = m.service_id("w.gslb.example.").unwrap();
    let london = located("81.2.69.0", b"GB", b"EU", 51.51, -0.09);
    let boston = located("198.51.100.0", b"US", b"NA", 42.36, -71.06);
    let d = route(&m, www, Family::V4, &london, &LiveHealth);
    assert_eq!(d.outcome, Outcome::Answer);
    assert_eq!(
        d.region,
        Some(2),
        "London -> eu-west by the continent:EU row"
    );

    let mut g = c.benchmark_group("route");
    g.bench_function("nearest_latency_row_4_regions", |b| {
        b.iter(|| {
            route(
                black_box(&m),
                www,
                Family::V4,
                black_box(&london),
                &LiveHealth,
            )
        })
    });
    g.bench_function("nearest_distance_4_regions", |b| {
        b.iter(|| {
            route(
                black_box(&m),
                www,
                Family::V4,
                black_box(&boston),
                &LiveHealth,
            )
        })
    });
    g.bench_function("weighted_4_regions", |b| {
        b.iter(|| {
            route(
                black_box(&m),
                w,
                Family::V4,
                black_box(&boston),
                &LiveHealth,
            )
        })
    });
    g.finish();
}

/// Locate + route over a cycle of client addresses (ECS /24 or /56 as a resolver sends).
fn bench_locate_route(c: &mut Criterion, group: &str, name: &str, db: &GeoDb, ips: &[IpAddr]) {
    let m = model();
    let www = m.service_id("www.gslb.example.").unwrap();
    let mut g = c.benchmark_group(group);
    let mut i = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            let ip = ips[i % ips.len()];
            i = i.wrapping_add(1);
            let prefix = if ip.is_ipv4() { 24 } else { 56 };
            let (loc, _) = locate(
                black_box(&m),
                Some(db),
                black_box(ip),
                ClientSource::Ecs {
                    source_prefix: prefix,
                },
            );
            route(&m, www, Family::V4, &loc, &LiveHealth)
        })
    });
    g.finish();
}

fn maxmind_test_db() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/maxmind/GeoIP2-City-Test.mmdb")
}

fn bench_test_db(c: &mut Criterion) {
    let db = GeoDb::open(&maxmind_test_db()).expect("MaxMind test database");
    // GB, SE, US, CN, JP networks of the test data.
    let ips: Vec<IpAddr> = [
        "81.2.69.160",
        "89.160.20.128",
        "216.160.83.56",
        "175.16.199.0",
        "2001:218::",
        "2a02:d040::",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for ip in &ips {
        let (loc, _) = locate(&model(), Some(&db), *ip, ClientSource::Resolver);
        assert!(
            matches!(loc.by, LocatedBy::GeoIp(_)),
            "{ip} is in the test db"
        );
    }
    bench_locate_route(c, "locate_route_test_db", "mixed_6_networks", &db, &ips);
}

/// xorshift64*: deterministic addresses without an RNG crate.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn random_public_v4(n: usize, seed: u64) -> Vec<IpAddr> {
    let mut s = seed;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let a = Ipv4Addr::from((xorshift(&mut s) >> 32) as u32);
        let o = a.octets();
        let public = !(a.is_private()
            || a.is_loopback()
            || a.is_link_local()
            || a.is_multicast()
            || a.is_broadcast()
            || a.is_unspecified()
            || a.is_documentation()
            || o[0] == 0
            || o[0] >= 240
            || (o[0] == 100 && (64..128).contains(&o[1])));
        if public {
            out.push(IpAddr::V4(a));
        }
    }
    out
}

fn random_global_v6(n: usize, seed: u64) -> Vec<IpAddr> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            // 2000::/3 (global unicast), cut to a /56 as ECS sends it.
            let bits = u128::from(xorshift(&mut s)) << 64;
            let bits = (bits & (u128::MAX >> 3)) | (1u128 << 125);
            IpAddr::V6(Ipv6Addr::from(bits & (u128::MAX << 72)))
        })
        .collect()
}

fn bench_full_db(c: &mut Criterion) {
    let Some(path) = std::env::var_os("GEODE_BENCH_MMDB").map(PathBuf::from) else {
        println!(
            "locate_route_full_db: skipped: set GEODE_BENCH_MMDB to a full-size City mmdb \
             (bench/fetch-geolite2.sh downloads GeoLite2-City.mmdb and prints its path)"
        );
        return;
    };
    let started = Instant::now();
    let db = match GeoDb::open(&path) {
        Ok(db) => db,
        Err(e) => {
            println!("locate_route_full_db: skipped: {e}");
            return;
        }
    };
    let open = started.elapsed();
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    // The same database without geode's checks: how much of open() is verify().
    let started = Instant::now();
    let reader = maxminddb::Reader::open_readfile(&path).expect("readable");
    let read = started.elapsed();
    let started = Instant::now();
    reader.verify().expect("verifies");
    let verify = started.elapsed();
    println!(
        "locate_route_full_db: {} ({}, {:.1} MB): GeoDb::open (verify + probe + compile) {:.0} ms; \
         of which verify() alone {:.0} ms (read into memory {:.0} ms)",
        path.display(),
        db.database_type(),
        size as f64 / 1e6,
        open.as_secs_f64() * 1e3,
        verify.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
    );
    drop(reader);

    let v4 = random_public_v4(4096, 0x9e37_79b9_7f4a_7c15);
    let v6 = random_global_v6(4096, 0x2545_f491_4f6c_dd1d);
    let m = model();
    let hits = v4
        .iter()
        .filter(|ip| {
            matches!(
                locate(&m, Some(&db), **ip, ClientSource::Resolver).0.by,
                LocatedBy::GeoIp(_)
            )
        })
        .count();
    println!(
        "locate_route_full_db: {hits} of {} random public IPv4 addresses located by GeoIP",
        v4.len()
    );
    bench_locate_route(c, "locate_route_full_db", "random_ipv4", &db, &v4);
    bench_locate_route(c, "locate_route_full_db", "random_ipv6", &db, &v6);
}

criterion_group!(benches, bench_route, bench_test_db, bench_full_db);
criterion_main!(benches);
