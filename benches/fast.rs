//! Cost of answering one query in-process (no sockets): the UDP fast path, a hit in the
//! answer cache, the ordinary hickory path, and the parts (GeoIP locate, route) on the
//! bench workload.
//!
//!   bench/fetch-geolite2.sh && python3 bench/gen-workload.py ...   (see bench/README.md)
//!   cargo bench --bench fast
//!
//! Uses bench/geode-bench.toml with bench/data/GeoLite2-City.mmdb and the dnsperf input
//! bench/data/geo.bin; without them it falls back to MaxMind's small test database and a
//! generated corpus, and says so.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use geode::dns::Handler;
use geode::dns::fast::{self, Fast};
use geode::metrics::Metrics;
use geode::model::ClientSource;
use geode::snapshot::Snapshot;

mod common;
use common::load_messages;

/// The compiled GeoIP form must answer exactly as the mmdb reader does: checked on the
/// full database for 2 M pseudo-random addresses (IPv4 and IPv6) before measuring.
fn check_geoip(db: &geode::geo::GeoDb) {
    let reader = maxminddb::Reader::open_readfile(db.path()).expect("database reopens");
    let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    let mut n = 0;
    for _ in 0..1_000_000 {
        x = x
            .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
            .wrapping_add(1);
        // Half of the IPv6 addresses in 2000::/4, where the networks are.
        let v6 = if x & 1 == 0 {
            x
        } else {
            (x >> 4) | (2u128 << 124)
        };
        for ip in [
            IpAddr::V4(std::net::Ipv4Addr::from((x >> 64) as u32)),
            IpAddr::V6(std::net::Ipv6Addr::from(v6)),
        ] {
            assert_eq!(
                db.lookup(ip),
                geode::geo::reference_lookup(&reader, ip),
                "compiled GeoIP differs from the mmdb reader at {ip}"
            );
            n += 1;
        }
    }
    let (classes, bytes) = db.footprint();
    eprintln!(
        "geoip: {n} lookups identical to the mmdb reader; {classes} location classes, {:.1} MiB compiled",
        bytes as f64 / 1048576.0
    );
}

fn setup() -> (Arc<ArcSwap<Snapshot>>, Arc<Metrics>, Vec<Vec<u8>>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("bench/geode-bench.toml");
    let t = std::time::Instant::now();
    let (loaded, geo) = geode::state::load(&config, None).unwrap_or_else(|e| {
        panic!("bench/geode-bench.toml does not load (run bench/fetch-geolite2.sh first):\n{e}")
    });
    eprintln!("config and GeoIP load: {:.2} s", t.elapsed().as_secs_f64());
    if let Some(db) = &geo {
        check_geoip(db);
    }
    let metrics = Arc::new(Metrics::new().unwrap());
    let snap = Snapshot::build(
        geode::snapshot::HealthAttached::unprobed(loaded),
        geo,
        &metrics,
    );
    let msgs = load_messages(&root.join("bench/data/geo.bin")).expect(
        "bench/data/geo.bin missing: python3 bench/gen-workload.py geo (see bench/README.md)",
    );
    (Arc::new(ArcSwap::from_pointee(snap)), metrics, msgs)
}

fn bench(c: &mut Criterion) {
    let (shared, metrics, msgs) = setup();
    let handler = Handler::new(shared.clone(), metrics.clone());
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut out = Vec::with_capacity(1232);
    let mut memo = geode::route::RouteMemo::default();
    let snap = shared.load_full();
    let fast_share = msgs
        .iter()
        .filter(|m| {
            fast::answer(&snap, &metrics, &mut memo, m, src.ip(), &mut out) != Fast::Fallback
        })
        .count();
    eprintln!(
        "workload: {} messages, {} answered by the fast path",
        msgs.len(),
        fast_share
    );
    // A second round: the places the route memo knows after one.
    let before = memo.hits();
    for m in &msgs {
        fast::answer(&snap, &metrics, &mut memo, m, src.ip(), &mut out);
    }
    eprintln!(
        "route memo: {} of {} decisions of a second round from the memo",
        memo.hits() - before,
        msgs.len()
    );

    let mut i = 0;
    c.bench_function("fast_path_answer", |b| {
        b.iter(|| {
            i = (i + 1) % msgs.len();
            let s = shared.load();
            black_box(fast::answer(
                &s,
                &metrics,
                &mut memo,
                &msgs[i],
                src.ip(),
                &mut out,
            ))
        })
    });
    // The answer cache in front of the fast path, as each UDP loop runs it: after one
    // round of the workload every reply is in the cache, so this is the cost of a hit
    // (hash, compare, copy, counters).
    let mut responder = geode::dns::udp::Responder::new();
    for m in &msgs {
        responder.answer(&snap, &handler, &metrics, m, src, &mut out);
    }
    let mut i = 0;
    c.bench_function("answer_cache_hit", |b| {
        b.iter(|| {
            i = (i + 1) % msgs.len();
            let s = shared.load();
            black_box(responder.answer(&s, &handler, &metrics, &msgs[i], src, &mut out))
        })
    });
    responder.flush(&metrics);
    eprintln!(
        "answer cache: {} hits, {} misses",
        metrics.answer_cache_hit.get(),
        metrics.answer_cache_miss.get()
    );
    let mut i = 0;
    c.bench_function("ordinary_path_answer", |b| {
        b.iter(|| {
            i = (i + 1) % msgs.len();
            let s = shared.load();
            black_box(handler.ordinary_udp(&s, &msgs[i], src, &mut out))
        })
    });
    // The ECS addresses of the workload, for the parts.
    let ips: Vec<IpAddr> = msgs
        .iter()
        .filter_map(|m| {
            let ecs = m.windows(4).rposition(|w| w == [0, 8, 0, 7])?;
            let b = &m[ecs + 4..ecs + 11];
            Some(IpAddr::from([b[4], b[5], b[6], 0]))
        })
        .collect();
    assert!(!ips.is_empty(), "no ECS addresses found in the workload");
    let mut i = 0;
    c.bench_function("geo_locate", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(geode::geo::locate(
                &snap.model,
                snap.geo.as_deref(),
                ips[i],
                ClientSource::Ecs { source_prefix: 24 },
            ))
        })
    });
    let locs: Vec<_> = ips
        .iter()
        .map(|ip| {
            geode::geo::locate(
                &snap.model,
                snap.geo.as_deref(),
                *ip,
                ClientSource::Ecs { source_prefix: 24 },
            )
            .0
        })
        .collect();
    let sid = snap
        .model
        .service_id("www.gslb.example.")
        .expect("bench service");
    let mut i = 0;
    c.bench_function("route_only", |b| {
        b.iter(|| {
            i = (i + 1) % locs.len();
            black_box(geode::route::route(
                &snap.model,
                sid,
                geode::model::Family::V4,
                &locs[i],
                &geode::route::LiveHealth,
            ))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
