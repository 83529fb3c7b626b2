//! Differential test of the UDP fast path: a generated corpus of queries (names, types,
//! ECS variants, EDNS variants, flags, malformed packets) goes through the fast path and
//! through the ordinary hickory path; wherever the fast path answers, the bytes must be
//! identical (the ID is copied by both, so it is compared too).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use geode::dns::Handler;
use geode::dns::fast::{self, Fast};
use geode::dns::udp::Responder;
use geode::metrics::Metrics;
use geode::model::Probed;
use geode::route::RouteMemo;
use geode::snapshot::Snapshot;
use hickory_net::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_net::proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_net::proto::rr::{Name, RecordType};

use crate::harness::maxmind_city;

/// The health epoch an answer cache watches is per process: a test setting endpoint
/// states empties the caches of the tests running beside it. These tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config() -> String {
    config_with("")
}

/// The corpus config, with `server` lines added to its `[server]` table.
fn config_with(server: &str) -> String {
    format!(
        r#"
[server]
geoip_db = "{db}"
{server}

[zones."gslb.example."]
ttl = 300
soa = {{ mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 7, minimum = 60 }}
ns = ["ns1.gslb.example."]
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "a.b", type = "TXT", value = "deep" }},
  {{ name = "alias", type = "CNAME", value = "www" }},
]

[zones."other.test."]
soa = {{ mname = "ns.other.test.", rname = "h.other.test.", serial = 1 }}
ns = ["ns.other.test."]

[regions.eu]
location = {{ lat = 51.5, lon = -0.1 }}
endpoints = [{{ address = "192.0.2.1" }}, {{ address = "192.0.2.2" }}, {{ address = "2001:db8::1" }}]
[regions.us]
location = {{ lat = 39.0, lon = -77.5 }}
endpoints = [{{ address = "198.51.100.1" }}, {{ address = "198.51.100.2" }}, {{ address = "198.51.100.3" }}]
[regions.asia]
location = {{ lat = 31.2, lon = 121.5 }}
weight = 50
endpoints = [{{ address = "203.0.113.1" }}, {{ address = "2001:db8::3" }}]
[regions.down]
location = {{ lat = 40.0, lon = -3.0 }}
endpoints = [{{ address = "203.0.113.9", check = "c" }}]

[checks.c]
type = "tcp"
port = 9

[services."www.gslb.example."]
regions = ["eu", "us", "asia", "down"]
max_answers = 2
fence = {{ "country:CN" = ["asia"] }}

[services."fo.gslb.example."]
regions = ["down", "us"]
policy = "failover"

[services."w.gslb.example."]
regions = ["eu", "us", "asia"]
policy = "weighted"
max_answers = 16

[services."sf.gslb.example."]
regions = ["down"]
when_all_down = "servfail"

[services."nd.gslb.example."]
regions = ["down"]
when_all_down = "nodata"

[services."www.other.test."]
regions = ["us"]

[services."c.d.e.f.g.h.i.j.k.l.m.gslb.example."]
regions = ["us"]

[services."a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.gslb.example."]
regions = ["us"]

[latency]
"country:SE" = {{ us = 20 }}

[client_networks]
"10.9.0.0/16" = {{ country = "CN" }}
"#,
        db = maxmind_city().display()
    )
}

fn snapshot() -> (Arc<ArcSwap<Snapshot>>, Arc<Metrics>) {
    snapshot_of(&config())
}

fn snapshot_of(text: &str) -> (Arc<ArcSwap<Snapshot>>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().unwrap());
    (
        Arc::new(ArcSwap::from_pointee(build(text, &metrics))),
        metrics,
    )
}

/// A snapshot of `text`, with the `down` region's endpoint down and the others up.
fn build(text: &str, metrics: &Metrics) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, text).unwrap();
    let (loaded, geo) = geode::state::load(&path, None).expect("config loads");
    for r in &loaded.model.regions {
        for e in &r.endpoints {
            e.health.set(if r.name == "down" {
                Probed::Down
            } else {
                Probed::Up
            });
        }
    }
    Snapshot::build(
        geode::snapshot::HealthAttached::unprobed(loaded),
        geo,
        metrics,
    )
}

/// Deterministic xorshift so the corpus is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

fn corpus() -> Vec<Vec<u8>> {
    // Weighted toward what real traffic is: GSLB names and A/AAAA.
    let names = [
        "www.gslb.example.",
        "www.gslb.example.",
        "www.gslb.example.",
        "w.gslb.example.",
        "fo.gslb.example.",
        "www.gslb.example.",
        "WwW.GsLb.ExAmPlE.",
        "fo.gslb.example.",
        "w.gslb.example.",
        "sf.gslb.example.",
        "nd.gslb.example.",
        "www.other.test.",
        "gslb.example.",
        "ns1.gslb.example.",
        "b.gslb.example.",
        "a.b.gslb.example.",
        "alias.gslb.example.",
        "nope.gslb.example.",
        "x.y.z.gslb.example.",
        // 13 and 17 labels: the second needs more compression candidates than the fast
        // path keeps, and must fall back rather than compress differently.
        "c.d.e.f.g.h.i.j.k.l.m.gslb.example.",
        "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.gslb.example.",
        "NoPe.Other.Test.",
        "outside.example.",
        "example.",
    ];
    let types = [
        RecordType::A,
        RecordType::A,
        RecordType::A,
        RecordType::A,
        RecordType::AAAA,
        RecordType::AAAA,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
        RecordType::ANY,
        RecordType::SOA,
        RecordType::NS,
    ];
    let ecs = [
        None,
        Some("81.2.69.142/31"), // GB
        Some("81.2.69.0/24"),
        Some("89.160.20.112/28"), // SE
        Some("216.160.83.56/29"), // US
        Some("2001:250::/31"),    // CN
        Some("10.9.1.0/24"),      // client_networks CN
        Some("0.0.0.0/0"),
        Some("127.0.0.0/24"),
        Some("192.0.2.0/24"),
        Some("2a02:d040::/29"),
        Some("2001:db8::/56"),
        Some("::ffff:81.2.69.0/120"),
    ];
    let mut out = Vec::new();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for i in 0..4000u32 {
        let name = *rng.pick(&names);
        let t = *rng.pick(&types);
        let mut msg = Message::query();
        msg.metadata.id = (i % 65536) as u16;
        msg.metadata.recursion_desired = rng.next().is_multiple_of(2);
        msg.metadata.checking_disabled = rng.next().is_multiple_of(5);
        msg.add_query(Query::query(Name::from_str(name).unwrap(), t));
        let edns_mode = rng.next() % 20;
        if edns_mode > 2 {
            let mut e = Edns::new();
            e.set_max_payload(*rng.pick(&[0u16, 512, 1232, 4096, 1400]));
            if edns_mode == 3 {
                e.set_version(1);
            }
            if let Some(s) = rng.pick(&ecs) {
                e.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::from_str(s).unwrap()));
            }
            if rng.next().is_multiple_of(20) {
                e.options_mut()
                    .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
            }
            // A validating resolver sets DO on every query.
            if rng.next().is_multiple_of(3) {
                e.set_dnssec_ok(true);
            }
            msg.set_edns(e);
        }
        let mut bytes = msg.to_vec().unwrap();
        match rng.next() % 60 {
            0 => bytes.truncate((rng.next() as usize) % bytes.len().max(1)),
            1 => bytes[2] |= 0x80,                        // QR=1
            2 => bytes[2] = (bytes[2] & 0x87) | (2 << 3), // opcode STATUS
            3 => bytes[5] = 2,                            // qdcount 2
            4 => bytes[5] = 0,                            // qdcount 0
            5 => bytes.push(0),                           // trailing garbage
            6 => {
                // ECS with a bit set beyond the source prefix (raw edit of the last byte)
                if let Some(last) = bytes.last_mut() {
                    *last |= 1;
                }
            }
            _ => {}
        }
        out.push(bytes);
    }
    out
}

#[test]
fn fast_path_answers_byte_for_byte_like_the_ordinary_path() {
    let _serial = serial();
    let (shared, metrics) = snapshot();
    let handler = Handler::new(shared.clone(), metrics.clone());
    let snap = shared.load();
    let (mut fast_out, mut slow_out) = (Vec::new(), Vec::new());
    let mut answered_fast = 0;
    let corpus = corpus();
    // One memo for the whole corpus, as a UDP loop keeps it: clients in one place get
    // their decision from it after the first.
    let mut memo = RouteMemo::default();
    for (i, pkt) in corpus.iter().enumerate() {
        let src: SocketAddr = if i % 3 == 0 {
            "81.2.69.160:5353".parse().unwrap()
        } else {
            "127.0.0.1:5353".parse().unwrap()
        };
        let fast_said = fast::answer(&snap, &metrics, &mut memo, pkt, src.ip(), &mut fast_out);
        let slow_said = handler.ordinary_udp(&snap, pkt, src, &mut slow_out);
        if matches!(fast_said, Fast::Reply(_)) {
            answered_fast += 1;
            assert!(
                slow_said,
                "packet {i}: fast path answered, ordinary path would not: {pkt:02x?}"
            );
            if fast_out != slow_out {
                let f = Message::from_vec(&fast_out)
                    .map(|m| m.to_string())
                    .unwrap_or_else(|e| format!("undecodable: {e}"));
                let s = Message::from_vec(&slow_out)
                    .map(|m| m.to_string())
                    .unwrap_or_else(|e| format!("undecodable: {e}"));
                panic!(
                    "packet {i} differs\nquery: {pkt:02x?}\nfast:     {fast_out:02x?}\nordinary: {slow_out:02x?}\nfast:\n{f}\nordinary:\n{s}"
                );
            }
        }
    }
    // About 45% of the corpus is fast-path shaped (GSLB A/AAAA, NXDOMAIN) before the
    // malformed and unusual variants: if the fast path takes far fewer, it is declining
    // work it should do and this test proves little.
    assert!(
        answered_fast * 4 > corpus.len(),
        "fast path answered only {answered_fast} of {}",
        corpus.len()
    );
    assert!(
        memo.hits() > 500,
        "only {} decisions came from the route memo",
        memo.hits()
    );
}

#[test]
fn fast_path_leaves_unusual_queries_to_the_ordinary_path() {
    let _serial = serial();
    let (shared, metrics) = snapshot();
    let snap = shared.load();
    let mut out = Vec::new();
    let mut memo = RouteMemo::default();
    let q = |name: &str, t: RecordType, f: &dyn Fn(&mut Message)| {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        f(&mut m);
        m.to_vec().unwrap()
    };
    let fallback = [
        q("ns1.gslb.example.", RecordType::A, &|_| {}), // static name
        q("www.gslb.example.", RecordType::TXT, &|_| {}), // other type at a GSLB name
        q("outside.example.", RecordType::A, &|_| {}),  // REFUSED
        q(
            "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.gslb.example.",
            RecordType::A,
            &|_| {},
        ),
        q("www.gslb.example.", RecordType::A, &|m| {
            let mut e = Edns::new();
            e.set_version(1);
            m.set_edns(e);
        }),
        q("www.gslb.example.", RecordType::A, &|m| {
            m.metadata.op_code = OpCode::Status;
        }),
        q("www.gslb.example.", RecordType::A, &|m| {
            m.metadata.message_type = MessageType::Response;
        }),
    ];
    for (i, pkt) in fallback.iter().enumerate() {
        assert_eq!(
            fast::answer(
                &snap,
                &metrics,
                &mut memo,
                pkt,
                IpAddr::from([127, 0, 0, 1]),
                &mut out
            ),
            Fast::Fallback,
            "case {i}"
        );
    }
    for name in ["www.gslb.example.", "c.d.e.f.g.h.i.j.k.l.m.gslb.example."] {
        let fast_ok = q(name, RecordType::A, &|_| {});
        assert!(
            matches!(
                fast::answer(
                    &snap,
                    &metrics,
                    &mut memo,
                    &fast_ok,
                    IpAddr::from([127, 0, 0, 1]),
                    &mut out
                ),
                Fast::Reply(_)
            ),
            "{name}"
        );
    }
}

/// The corpus config with `gslb.example.` signed (a vendored key).
fn signed_config() -> String {
    let key = crate::harness::repo().join("tests/data/dnssec/Kgslb.example.+013+43822.private");
    config().replace(
        "[zones.\"other.test.\"]",
        &format!(
            "[zones.\"gslb.example.\".dnssec]\nkey_files = [\"{}\"]\n\n[zones.\"other.test.\"]",
            key.display()
        ),
    )
}

/// The DO bit of a query's OPT record, if it has one and parses.
fn dnssec_ok(pkt: &[u8]) -> bool {
    Message::from_vec(pkt)
        .ok()
        .and_then(|m| m.edns.as_ref().map(|e| e.flags().dnssec_ok))
        .unwrap_or(false)
}

/// With `gslb.example.` signed, the fast path answers DO queries for its GSLB names that
/// route to addresses (RRSIGs from the signature cache) or SERVFAIL, byte for byte like
/// the ordinary path, and leaves every other DO query of the zone (denials with NSEC,
/// static names, ANY, CNAME...) to it; everything without DO stays identical too. The
/// ordinary path's DO answers carry RRSIGs and echo DO, and its answers without DO are
/// what the unsigned zone gives.
#[test]
fn signed_zone_do_answers_of_the_fast_path_are_the_ordinary_paths_and_the_rest_falls_back() {
    let _serial = serial();
    let (shared, metrics) = snapshot_of(&signed_config());
    let (plain_shared, plain_metrics) = snapshot();
    let handler = Handler::new(shared.clone(), metrics.clone());
    let plain = Handler::new(plain_shared.clone(), plain_metrics);
    let snap = shared.load();
    let plain_snap = plain_shared.load();
    let mut memo = RouteMemo::default();
    let (mut fast_out, mut slow_out, mut plain_out) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fast, mut signed, mut unsigned_same) = (0, 0, 0);
    let (mut fast_signed, mut fast_servfail, mut do_fallback) = (0, 0, 0);
    for (i, pkt) in corpus().iter().enumerate() {
        let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let in_signed_zone = Message::from_vec(pkt).ok().is_some_and(|m| {
            m.queries
                .first()
                .is_some_and(|q| Name::from_str("gslb.example.").unwrap().zone_of(q.name()))
        });
        let said = fast::answer(&snap, &metrics, &mut memo, pkt, src.ip(), &mut fast_out);
        let slow = handler.ordinary_udp(&snap, pkt, src, &mut slow_out);
        if let Fast::Reply(_) = said {
            fast += 1;
            assert_eq!(fast_out, slow_out, "packet {i}: fast and ordinary differ");
            if dnssec_ok(pkt) && in_signed_zone {
                // Only addresses with their RRSIGs, or SERVFAIL: never a denial.
                let m = Message::from_vec(&fast_out).unwrap();
                assert!(m.authorities.is_empty(), "packet {i}: fast denial: {m}");
                assert!(
                    m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
                    "packet {i}: DO not echoed"
                );
                if m.metadata.response_code == ResponseCode::ServFail {
                    fast_servfail += 1;
                } else if !m.metadata.truncation {
                    let types: Vec<RecordType> =
                        m.answers.iter().map(|r| r.record_type()).collect();
                    assert!(
                        types.contains(&RecordType::RRSIG)
                            && types.iter().all(|t| matches!(
                                t,
                                RecordType::A | RecordType::AAAA | RecordType::RRSIG
                            )),
                        "packet {i}: fast DO answer: {m}"
                    );
                    fast_signed += 1;
                }
            }
        } else if dnssec_ok(pkt) && in_signed_zone {
            do_fallback += 1;
        }
        if !slow {
            continue;
        }
        let reply = Message::from_vec(&slow_out);
        if dnssec_ok(pkt) && in_signed_zone {
            let Ok(m) = reply else { continue };
            // Errors before the zone (FORMERR, NOTIMP, BADVERS) and TC replies carry no
            // zone data to sign.
            if !m.metadata.authoritative || m.metadata.truncation {
                continue;
            }
            assert!(
                !m.metadata.authentic_data,
                "packet {i}: AD set by the authority"
            );
            let sigs = m
                .answers
                .iter()
                .chain(&m.authorities)
                .filter(|r| r.record_type() == RecordType::RRSIG)
                .count();
            if !m.answers.is_empty() || !m.authorities.is_empty() {
                assert!(sigs > 0, "packet {i}: a DO answer without RRSIG: {m}");
                signed += 1;
            }
            assert!(
                m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
                "packet {i}: DO not echoed"
            );
        } else {
            // Unsigned answers are those of the same config without DNSSEC (the apex
            // DNSKEY aside, which only the signed zone has).
            let plain_said = plain.ordinary_udp(&plain_snap, pkt, src, &mut plain_out);
            let apex_any = Message::from_vec(pkt).ok().is_some_and(|m| {
                m.queries.first().is_some_and(|q| {
                    q.query_type() == RecordType::ANY
                        && q.name() == &Name::from_str("gslb.example.").unwrap()
                })
            });
            if plain_said && !apex_any {
                assert_eq!(
                    slow_out, plain_out,
                    "packet {i}: signing changed a non-DO answer"
                );
                unsigned_same += 1;
            }
        }
    }
    assert!(signed > 400, "only {signed} signed answers checked");
    assert!(fast > 500, "fast path answered only {fast}");
    assert!(
        fast_signed > 150 && fast_servfail > 5 && do_fallback > 150,
        "fast-path DO answers {fast_signed}, SERVFAIL {fast_servfail}, fallbacks {do_fallback}"
    );
    eprintln!("DO: fast {fast_signed} signed, {fast_servfail} SERVFAIL; {do_fallback} fell back");
    assert!(
        unsigned_same > 1000,
        "only {unsigned_same} unsigned answers compared"
    );
}

/// `base` plus a region of 16 IPv6 addresses and a service `many.gslb.example.` over it
/// and `us`: answers too long for small payloads, to compare truncation.
fn with_sixteen_addresses(base: &str) -> String {
    let many: String = (1..=16)
        .map(|i| format!("{{ address = \"2001:db8::1:{i:x}\" }}, "))
        .collect();
    format!(
        "{base}\n[regions.many]\nlocation = {{ lat = 51.5, lon = -0.1 }}\nendpoints = [{many}]\n\
         [services.\"many.gslb.example.\"]\nregions = [\"many\", \"us\"]\nmax_answers = 16\n"
    )
}

/// DO queries of a signed zone one by one: a GSLB name routed to addresses is the fast
/// path's (its RRSIGs after the addresses, DO echoed, AD clear even when the query set
/// it) and so is SERVFAIL; every reply that needs a proof or other records (NXDOMAIN,
/// NODATA at a GSLB name or for another type, static names, DNSKEY, CNAME, ANY, an empty
/// non-terminal) falls back; an answer too long for the payload is truncated as the
/// ordinary path truncates it. Wherever the fast path answers, its bytes are the
/// ordinary path's.
#[test]
fn signed_do_queries_fall_back_unless_addresses_or_servfail_and_truncate_alike() {
    let _serial = serial();
    let text = with_sixteen_addresses(&signed_config());
    let (shared, metrics) = snapshot_of(&text);
    let handler = Handler::new(shared.clone(), metrics.clone());
    let snap = shared.load();
    let mut memo = RouteMemo::default();
    let (mut fast_out, mut slow_out) = (Vec::new(), Vec::new());
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut ask = |i: usize, name: &str, t: RecordType, payload: u16, ad: bool| {
        let mut msg = Message::query();
        msg.metadata.id = i as u16;
        msg.metadata.authentic_data = ad;
        msg.add_query(Query::query(Name::from_str(name).unwrap(), t));
        let mut e = Edns::new();
        e.set_max_payload(payload).set_dnssec_ok(true);
        msg.set_edns(e);
        let pkt = msg.to_vec().unwrap();
        let said = fast::answer(&snap, &metrics, &mut memo, &pkt, src.ip(), &mut fast_out);
        assert!(handler.ordinary_udp(&snap, &pkt, src, &mut slow_out));
        if matches!(said, Fast::Reply(_)) {
            assert_eq!(fast_out, slow_out, "{name} {t} {payload} differs");
        }
        (
            matches!(said, Fast::Reply(_)),
            Message::from_vec(&slow_out).unwrap(),
        )
    };
    let mut i = 0;
    for (name, t) in [
        ("nope.gslb.example.", RecordType::A),  // NXDOMAIN: NSEC proof
        ("nd.gslb.example.", RecordType::A),    // all down, NODATA: NSEC
        ("www.gslb.example.", RecordType::TXT), // NODATA at a GSLB name
        ("ns1.gslb.example.", RecordType::A),   // static
        ("gslb.example.", RecordType::DNSKEY),  // apex DNSKEY
        ("gslb.example.", RecordType::SOA),     // static apex
        ("alias.gslb.example.", RecordType::A), // CNAME chain
        ("www.gslb.example.", RecordType::ANY), // ANY
        ("b.gslb.example.", RecordType::A),     // empty non-terminal
        ("many.gslb.example.", RecordType::MX), // NODATA, another type
    ] {
        i += 1;
        let (fast, reply) = ask(i, name, t, 1232, false);
        assert!(!fast, "{name} {t}: answered by the fast path: {reply}");
    }
    let (mut answered, mut truncated) = (0, 0);
    for (name, t) in [
        ("www.gslb.example.", RecordType::A),
        ("WwW.gslb.EXAMPLE.", RecordType::A),
        ("www.gslb.example.", RecordType::AAAA),
        ("w.gslb.example.", RecordType::A),
        ("many.gslb.example.", RecordType::AAAA),
        ("sf.gslb.example.", RecordType::A),
    ] {
        for payload in [512u16, 560, 1232, 4096] {
            for ad in [false, true] {
                i += 1;
                let (fast, reply) = ask(i, name, t, payload, ad);
                assert!(fast, "{name} {t} {payload}: fell back");
                answered += 1;
                assert!(!reply.metadata.authentic_data, "{name}: AD set");
                assert!(reply.edns.as_ref().unwrap().flags().dnssec_ok);
                if reply.metadata.truncation {
                    truncated += 1;
                    assert!(reply.answers.is_empty() && reply.additionals.is_empty());
                } else if reply.metadata.response_code == ResponseCode::NoError {
                    let sigs = reply
                        .answers
                        .iter()
                        .filter(|r| r.record_type() == RecordType::RRSIG)
                        .count();
                    assert_eq!(sigs, 1, "{name} {t}: {reply}");
                    assert_eq!(
                        reply.answers.len(),
                        sigs + reply
                            .answers
                            .iter()
                            .filter(|r| r.record_type() == t)
                            .count()
                    );
                } else {
                    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
                }
            }
        }
    }
    // 16 AAAA and their RRSIG are more than 560 bytes and less than 1232.
    assert_eq!(truncated, 4, "truncated replies of {answered}");
}

const SOURCES: [&str; 3] = ["81.2.69.160:5353", "127.0.0.1:5353", "[2001:db8::5]:53"];

/// Sends the corpus through `responder`, each query's ID XORed with `id_xor` and sent from
/// one of [`SOURCES`] chosen by its index plus `rotate`, and checks every reply against the
/// ordinary path's for the same packet and source. Returns the replies.
fn pass_through_responder(
    responder: &mut Responder,
    shared: &ArcSwap<Snapshot>,
    handler: &Handler,
    metrics: &Metrics,
    (id_xor, rotate): (u16, usize),
    what: &str,
) -> Vec<Option<Vec<u8>>> {
    let snap = shared.load();
    let (mut got, mut want) = (Vec::new(), Vec::new());
    let mut replies = Vec::new();
    for (i, pkt) in corpus().iter().enumerate() {
        let mut pkt = pkt.clone();
        if pkt.len() >= 2 {
            let id = u16::from_be_bytes([pkt[0], pkt[1]]) ^ id_xor;
            pkt[..2].copy_from_slice(&id.to_be_bytes());
        }
        let src: SocketAddr = SOURCES[(i + rotate) % SOURCES.len()].parse().unwrap();
        let said = responder.answer(&snap, handler, metrics, &pkt, src, &mut got);
        if said {
            assert!(
                handler.ordinary_udp(&snap, &pkt, src, &mut want),
                "{what}, packet {i}: answered, the ordinary path would not"
            );
            assert_eq!(
                got, want,
                "{what}, packet {i} from {src} differs from the ordinary path\nquery: {pkt:02x?}"
            );
        }
        replies.push(said.then(|| got.clone()));
    }
    responder.flush(metrics);
    replies
}

/// A UDP receive loop (answer cache, fast path, ordinary path) over a signed zone replies
/// as the ordinary path does, DO queries included (signatures come from the signature
/// cache, so the same RRset gets the same RRSIG bytes), twice over.
#[test]
fn receive_loop_over_a_signed_zone_replies_like_the_ordinary_path() {
    let _serial = serial();
    let (shared, metrics) = snapshot_of(&signed_config());
    let handler = Handler::new(shared.clone(), metrics.clone());
    let mut responder = Responder::new();
    pass_through_responder(
        &mut responder,
        &shared,
        &handler,
        &metrics,
        (0, 0),
        "signed",
    );
    pass_through_responder(
        &mut responder,
        &shared,
        &handler,
        &metrics,
        (0x5a5a, 1),
        "again",
    );
    assert!(
        metrics.answer_cache_hit.get() > 1000,
        "the answer cache was barely used"
    );
    assert!(
        metrics.dnssec.hits.get() > 500,
        "signature cache hits: {}",
        metrics.dnssec.hits.get()
    );
}

#[test]
fn answer_cache_replies_like_the_ordinary_path_across_health_flips_and_reloads() {
    let _serial = serial();
    let (shared, metrics) = snapshot();
    let handler = Handler::new(shared.clone(), metrics.clone());
    let mut responder = Responder::new();
    let hits = || metrics.answer_cache_hit.get();

    let first =
        pass_through_responder(&mut responder, &shared, &handler, &metrics, (0, 0), "first");
    let after_first = hits();
    // Repeats inside the corpus already hit; a second pass with new IDs hits far more, and
    // each hit must carry its own query's ID.
    let second = pass_through_responder(
        &mut responder,
        &shared,
        &handler,
        &metrics,
        (0x5a5a, 0),
        "second",
    );
    let second_hits = hits() - after_first;
    assert!(
        second_hits > 1000,
        "only {second_hits} cache hits when the corpus came round again"
    );
    assert!(second_hits > after_first, "{second_hits} vs {after_first}");
    assert!(
        first
            .iter()
            .flatten()
            .zip(second.iter().flatten())
            .any(|(a, b)| a[..2] != b[..2])
    );

    // Health flip: the region `down` comes up. Failover names change answers, so stale
    // cached replies would differ from the ordinary path.
    for r in &shared.load().model.regions {
        if r.name == "down" {
            r.endpoints[0].health.set(Probed::Up);
        }
    }
    let flipped = pass_through_responder(
        &mut responder,
        &shared,
        &handler,
        &metrics,
        (0x5a5a, 0),
        "after the health flip",
    );
    let changed = second.iter().zip(&flipped).filter(|(a, b)| a != b).count();
    assert!(changed > 50, "only {changed} replies changed with the flip");

    // Reload: another TTL for every GSLB name. The cache must not serve the old snapshot.
    let reloaded = config().replace(
        "[services.\"fo.gslb.example.\"]",
        "[services.\"fo.gslb.example.\"]\nttl = 7",
    );
    assert_ne!(reloaded, config());
    shared.store(Arc::new(build(&reloaded, &metrics)));
    let after_reload = pass_through_responder(
        &mut responder,
        &shared,
        &handler,
        &metrics,
        (0x1234, 0),
        "after the reload",
    );
    assert!(
        second
            .iter()
            .zip(&after_reload)
            .filter(|(a, b)| a != b)
            .count()
            > 50
    );

    // The same packets from other sources: replies that depended on the source (no
    // usable ECS) must not be served to another one.
    let before = hits();
    let rotated = pass_through_responder(
        &mut responder,
        &shared,
        &handler,
        &metrics,
        (0x1234, 1),
        "from other sources",
    );
    assert!(hits() - before > 500, "{} hits", hits() - before);
    assert!(
        after_reload
            .iter()
            .zip(&rotated)
            .filter(|(a, b)| a.as_ref().map(|a| &a[2..]) != b.as_ref().map(|b| &b[2..]))
            .count()
            > 50
    );
}

/// The metric families a reply is counted in, rendered.
fn counted(metrics: &Metrics) -> Vec<String> {
    let (_, text) = metrics.render();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .filter(|l| {
            l.starts_with("geode_dns_queries_total")
                || l.starts_with("geode_dns_answers_total")
                || l.starts_with("geode_geoip_lookups_total")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn replies_from_the_cache_are_counted_as_if_answered_afresh() {
    let _serial = serial();
    let run = |text: &str| {
        let (shared, metrics) = snapshot_of(text);
        let handler = Handler::new(shared.clone(), metrics.clone());
        let mut responder = Responder::new();
        for round in 0..3 {
            pass_through_responder(
                &mut responder,
                &shared,
                &handler,
                &metrics,
                (round, usize::from(round)),
                "count",
            );
        }
        (
            counted(&metrics),
            metrics.answer_cache_hit.get(),
            metrics.answer_cache_miss.get(),
        )
    };
    let (cached, hits, misses) = run(&config_with(""));
    let (uncached, no_hits, no_misses) = run(&config_with("answer_cache_kib = 0"));
    // Signed: DO answers of the ordinary path are kept and counted alike too.
    let (signed_cached, signed_hits, _) = run(&signed_config());
    let (signed_uncached, _, _) =
        run(&signed_config().replacen("[server]\n", "[server]\nanswer_cache_kib = 0\n", 1));
    assert!(
        signed_hits > hits,
        "signed answers were not kept: {signed_hits} vs {hits}"
    );
    assert_eq!(signed_cached, signed_uncached);
    assert!(hits > 2000, "{hits} hits");
    assert_eq!(
        (no_hits, no_misses),
        (0, 0),
        "a disabled cache counts nothing"
    );
    assert!(misses > 0);
    assert!(
        cached
            .iter()
            .any(|l| l.contains("NOERROR") && !l.ends_with(" 0"))
    );
    assert_eq!(cached, uncached);
}

/// Shapes the corpus rarely or never makes: replies too long for the datagram (the fast
/// path truncates them itself now), zone transfers, ANY, CNAME, opted-out ECS. Wherever
/// the fast path answers, its bytes are the ordinary path's.
#[test]
fn fast_path_truncates_refuses_and_answers_any_like_the_ordinary_path() {
    let _serial = serial();
    let text = with_sixteen_addresses(&config());
    let (shared, metrics) = snapshot_of(&text);
    let handler = Handler::new(shared.clone(), metrics.clone());
    let snap = shared.load();
    let mut memo = RouteMemo::default();
    let (mut fast_out, mut slow_out) = (Vec::new(), Vec::new());
    let mut queries = Vec::new();
    for name in ["many.gslb.example.", "MANY.gslb.example."] {
        for payload in [None, Some(512u16), Some(560), Some(1232)] {
            for ecs in [
                None,
                Some("2001:db8::77/128"),
                Some("2001:db8::/48"),
                Some("81.2.69.160/32"),
                Some("::ffff:81.2.69.160/128"),
                Some("::/0"),
            ] {
                queries.push((name, RecordType::AAAA, payload, ecs));
            }
        }
    }
    for name in [
        "www.gslb.example.",
        "many.gslb.example.",
        "nope.gslb.example.",
        "alias.gslb.example.",
        "gslb.example.",
        "outside.example.",
    ] {
        for t in [
            RecordType::AXFR,
            RecordType::IXFR,
            RecordType::ANY,
            RecordType::CNAME,
            RecordType::A,
        ] {
            for payload in [None, Some(1232)] {
                for ecs in [None, Some("0.0.0.0/0"), Some("81.2.69.0/24")] {
                    queries.push((name, t, payload, ecs));
                }
            }
        }
    }
    let (mut fast, mut truncated, mut any) = (0, 0, 0);
    for (i, (name, t, payload, ecs)) in queries.iter().enumerate() {
        let mut msg = Message::query();
        msg.metadata.id = i as u16;
        msg.metadata.recursion_desired = i % 2 == 0;
        msg.add_query(Query::query(Name::from_str(name).unwrap(), *t));
        if let Some(p) = payload {
            let mut e = Edns::new();
            e.set_max_payload(*p);
            if let Some(s) = ecs {
                e.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::from_str(s).unwrap()));
            }
            msg.set_edns(e);
        }
        let pkt = msg.to_vec().unwrap();
        let src: SocketAddr = SOURCES[i % SOURCES.len()].parse().unwrap();
        let said = fast::answer(&snap, &metrics, &mut memo, &pkt, src.ip(), &mut fast_out);
        assert!(
            handler.ordinary_udp(&snap, &pkt, src, &mut slow_out),
            "query {i}"
        );
        if matches!(said, Fast::Reply(_)) {
            fast += 1;
            truncated += usize::from(fast_out[2] & 0x02 != 0);
            any += usize::from(*t == RecordType::ANY);
            assert_eq!(
                fast_out, slow_out,
                "query {i}: {name} {t} {payload:?} {ecs:?} differs"
            );
        }
    }
    // 16 AAAA (483 bytes) plus an OPT with a 16-byte ECS address is 518 > 512: the two
    // /128 options at payload 512, for each spelling of the name.
    assert_eq!(truncated, 4, "fast-path truncations");
    assert!(any >= 5, "the fast path answered only {any} ANY queries");
    assert!(fast >= queries.len() / 3, "{fast} of {}", queries.len());
}

/// After a health flip, `prewarm_health` signs the RRsets the new health produces, so the
/// first DO query that gets one finds its signature made (no signature cache miss).
#[test]
fn a_health_flip_is_signed_ahead_of_the_first_do_query() {
    let _serial = serial();
    // us's first address probed, so that it can go down: us then answers with its
    // second and third, a set the snapshot's own pre-warm (first two) did not sign.
    let text = signed_config().replace(
        r#"{ address = "198.51.100.1" }"#,
        r#"{ address = "198.51.100.1", check = "c" }"#,
    );
    let (shared, metrics) = snapshot_of(&text);
    let handler = Handler::new(shared.clone(), metrics.clone());
    let snap = shared.load();
    let us = snap.model.regions.iter().find(|r| r.name == "us").unwrap();
    let down = us
        .endpoints
        .iter()
        .find(|e| e.address.to_string() == "198.51.100.1")
        .unwrap();
    down.health.set(Probed::Down);
    assert!(snap.zones.prewarm_health(&snap.model) > 0);
    let misses = metrics.dnssec.misses.get();
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_str("www.gslb.example.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.set_dnssec_ok(true);
    e.options_mut().insert(EdnsOption::Subnet(
        ClientSubnet::from_str("216.160.83.56/29").unwrap(),
    ));
    m.set_edns(e);
    let mut out = Vec::new();
    assert!(handler.ordinary_udp(
        &snap,
        &m.to_vec().unwrap(),
        "127.0.0.1:5353".parse().unwrap(),
        &mut out
    ));
    down.health.set(Probed::Up);
    let reply = Message::from_vec(&out).unwrap();
    let addrs: Vec<String> = reply
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(addrs, ["198.51.100.2", "198.51.100.3"], "{reply}");
    assert!(
        reply
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::RRSIG)
    );
    assert_eq!(
        metrics.dnssec.misses.get(),
        misses,
        "the post-flip RRset was signed on the query path"
    );
}
