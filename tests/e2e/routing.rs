//! Routing acceptance through the real binary: MaxMind's GeoIP2-City test database, a real
//! DNS client sending EDNS Client Subnet, `geode explain` and `GET /explain`.
//!
//! Clients (networks from tests/data/maxmind/GeoIP2-City-Test.json):
//!   GB 81.2.69.160/27 (London)      SE 89.160.20.128/25 (Linköping), 2a02:d040::/29
//!   US 216.160.83.56/29 (Milton WA) CN 175.16.199.0/24 (Changchun), 2001:250::/31
//!   JP 2001:218::/32
//! Regions: eu-west London (IPv4 only), eu-north Stockholm, us-east Ashburn, us-west
//! Oregon, ap-east Shanghai; w-a/w-b/w-c weighted 70/20/10.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;

use hickory_net::proto::op::{Message, ResponseCode};
use hickory_net::proto::rr::{RData, RecordType};
use ipnet::IpNet;

use crate::harness::{GEODE, Geode, addrs, ecs_of, maxmind_city, send};

const GB: &str = "81.2.69.160/27";
const SE: &str = "89.160.20.128/25";
const SE6: &str = "2a02:d040::/29";
const US: &str = "216.160.83.56/29";
const CN: &str = "175.16.199.0/24";
const CN6: &str = "2001:250::/31";
const JP6: &str = "2001:218::/32";

const EU_WEST: &str = "192.0.2.10";
const EU_NORTH: &str = "192.0.2.20";
const EU_NORTH6: &str = "2001:db8::20";
const US_EAST: &str = "192.0.2.30";
const US_WEST: &str = "192.0.2.40";
const AP_EAST: &str = "192.0.2.50";

/// The test config: `drain_eu` drains both EU regions; `extra` is appended (latency rows,
/// client_networks).
fn config(drain_eu: bool, extra: &str) -> String {
    let db = maxmind_city()
        .canonicalize()
        .expect("tests/data/maxmind/GeoIP2-City-Test.mmdb exists");
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
http_listen = "127.0.0.1:0"
geoip_db = "{db}"

[zones."geo.test."]
ttl = 300
soa = {{ mname = "ns1.geo.test.", rname = "hostmaster.geo.test.", serial = 7, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }}
ns = ["ns1.geo.test."]
records = [ {{ name = "ns1", type = "A", value = "192.0.2.53" }} ]

[regions.eu-west]
location = {{ lat = 51.51, lon = -0.13 }}    # London; IPv4 only
drain = {drain_eu}
endpoints = [ {{ address = "{EU_WEST}" }} ]

[regions.eu-north]
location = {{ lat = 59.33, lon = 18.07 }}    # Stockholm
drain = {drain_eu}
endpoints = [ {{ address = "{EU_NORTH}" }}, {{ address = "{EU_NORTH6}" }} ]

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}   # Ashburn
endpoints = [ {{ address = "{US_EAST}" }}, {{ address = "2001:db8::30" }} ]

[regions.us-west]
location = {{ lat = 45.60, lon = -121.18 }}  # The Dalles, Oregon
endpoints = [ {{ address = "{US_WEST}" }}, {{ address = "2001:db8::40" }} ]

[regions.ap-east]
location = {{ lat = 31.23, lon = 121.47 }}   # Shanghai
endpoints = [ {{ address = "{AP_EAST}" }}, {{ address = "2001:db8::50" }} ]

[regions.w-a]
weight = 70
endpoints = [ {{ address = "198.51.100.1" }} ]

[regions.w-b]
weight = 20
endpoints = [ {{ address = "198.51.100.2" }} ]

[regions.w-c]
weight = 10
endpoints = [ {{ address = "198.51.100.3" }} ]

[services."www.geo.test."]
regions = ["us-east", "us-west", "eu-west", "eu-north", "ap-east"]
policy = "nearest"
ttl = 20

[services."open.geo.test."]
regions = ["eu-west", "eu-north", "us-east", "us-west", "ap-east"]

[services."eu.geo.test."]
regions = ["eu-west", "eu-north", "us-east", "us-west", "ap-east"]
when_all_down = "all"
fence = {{ "continent:EU" = ["eu-west", "eu-north"] }}

[services."fo.geo.test."]
regions = ["eu-west", "eu-north", "us-west", "us-east", "ap-east"]
policy = "failover"

[services."w.geo.test."]
regions = ["w-a", "w-b", "w-c"]
policy = "weighted"
{extra}
"#,
        db = db.display()
    )
}

/// Latency rows and a client_networks entry over the same regions.
const OVERRIDES: &str = r#"
[latency]
"country:SE" = { eu-west = 15 }                      # beats the distance to Stockholm
"continent:AS" = { us-west = 150, ap-east = 200 }
"cidr:175.16.199.0/24" = { ap-east = 30 }            # more specific than continent:AS

[client_networks]
"81.2.69.128/26" = { location = { lat = 59.33, lon = 18.07 } }   # this GB network sits in Stockholm
"#;

/// The network MaxMind's test data puts `ip` in (longest match), IPv4 networks written in
/// IPv4 form, with its country: the oracle for scopes, independent of geode's reader.
fn json_network(ip: IpAddr) -> (IpNet, Option<String>) {
    let path = maxmind_city().with_extension("json");
    let text = std::fs::read_to_string(&path).expect("GeoIP2-City-Test.json");
    let entries: Vec<HashMap<String, serde_json::Value>> =
        serde_json::from_str(&text).expect("json");
    let mut best: Option<(IpNet, Option<String>)> = None;
    for (net, data) in entries.iter().flatten() {
        let mut n: IpNet = net.parse().expect("network");
        if let IpNet::V6(v6) = n {
            let o = v6.network().octets();
            if v6.prefix_len() >= 96 && o[..12].iter().all(|b| *b == 0) {
                let v4 = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
                n = IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap();
            }
        }
        if n.contains(&ip)
            && best
                .as_ref()
                .is_none_or(|(b, _)| n.prefix_len() > b.prefix_len())
        {
            let country = data["country"]["iso_code"].as_str().map(str::to_string);
            best = Some((n, country));
        }
    }
    best.unwrap_or_else(|| panic!("{ip} is not in the test database"))
}

fn ecs_addr(subnet: &str) -> IpAddr {
    subnet.parse::<IpNet>().unwrap().addr()
}

fn soa_in_authority(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| matches!(r.data, RData::SOA(_)))
}

fn assert_nodata(m: &Message, what: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}");
    assert!(m.answers.is_empty(), "{what}: {:?}", m.answers);
    assert!(soa_in_authority(m), "{what}: SOA in AUTHORITY");
    assert!(m.metadata.authoritative, "{what}");
}

#[tokio::test]
async fn gb_se_us_cn_clients_reach_their_nearest_region_with_the_geoip_scope() {
    let g = Geode::start(&config(false, ""));
    let cases = [
        ("GB", GB, RecordType::A, EU_WEST, "GB"),
        ("SE", SE, RecordType::A, EU_NORTH, "SE"),
        ("SE over IPv6", SE6, RecordType::A, EU_NORTH, "SE"),
        ("US", US, RecordType::A, US_WEST, "US"),
        ("CN", CN, RecordType::A, AP_EAST, "CN"),
        ("CN over IPv6", CN6, RecordType::A, AP_EAST, "CN"),
        ("SE, AAAA", SE, RecordType::AAAA, EU_NORTH6, "SE"),
    ];
    for (what, subnet, qtype, want, country) in cases {
        let m = g.query("www.geo.test.", qtype, Some(subnet)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}");
        assert!(m.metadata.authoritative, "{what}");
        assert_eq!(addrs(&m), [want], "{what}");
        assert_eq!(m.answers[0].ttl, 20, "{what}: the service TTL");
        // The scope is the prefix of the GeoIP network that decided the answer.
        let (net, c) = json_network(ecs_addr(subnet));
        assert_eq!(c.as_deref(), Some(country), "{what}: test data");
        let source: IpNet = subnet.parse().unwrap();
        assert_eq!(
            ecs_of(&m),
            Some((source.prefix_len(), net.prefix_len())),
            "{what}: scope must be the GeoIP network {net}"
        );
    }
    // Same answers over TCP.
    let m = g.query_tcp("www.geo.test.", RecordType::A, Some(CN)).await;
    assert_eq!(addrs(&m), [AP_EAST]);
}

#[tokio::test]
async fn aaaa_comes_from_the_nearest_region_with_ipv6_endpoints() {
    let g = Geode::start(&config(false, ""));
    // London's nearest region (eu-west) is IPv4-only: A from it, AAAA from Stockholm.
    let a = g.query("www.geo.test.", RecordType::A, Some(GB)).await;
    assert_eq!(addrs(&a), [EU_WEST]);
    let aaaa = g.query("www.geo.test.", RecordType::AAAA, Some(GB)).await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&aaaa), [EU_NORTH6]);
    assert_eq!(ecs_of(&aaaa), Some((27, 27)));
    // A service whose only region has no IPv6: NODATA, never NXDOMAIN.
    let g2 = Geode::start(&config(false, "").replace(
        r#"[services."w.geo.test."]"#,
        "[services.\"v4.geo.test.\"]\nregions = [\"eu-west\"]\n\n[services.\"w.geo.test.\"]",
    ));
    let m = g2.query("v4.geo.test.", RecordType::AAAA, Some(GB)).await;
    assert_nodata(&m, "AAAA of an IPv4-only service");
    assert_eq!(
        ecs_of(&m),
        Some((27, 0)),
        "NODATA does not depend on the client"
    );
    let m = g2.query("v4.geo.test.", RecordType::A, Some(GB)).await;
    assert_eq!(addrs(&m), [EU_WEST]);
}

#[tokio::test]
async fn latency_rows_and_client_networks_override_distance_and_geoip() {
    let g = Geode::start(&config(false, OVERRIDES));
    // country:SE row beats the distance to Stockholm.
    let m = g.query("www.geo.test.", RecordType::A, Some(SE)).await;
    assert_eq!(addrs(&m), [EU_WEST], "latency row beats distance");
    assert_eq!(ecs_of(&m), Some((25, 25)));
    // cidr:175.16.199.0/24 beats continent:AS for this CN network...
    let m = g.query("www.geo.test.", RecordType::A, Some(CN)).await;
    assert_eq!(addrs(&m), [AP_EAST], "cidr row beats continent row");
    assert_eq!(ecs_of(&m), Some((24, 24)));
    // ...while other Asian clients follow the continent row, against distance.
    for subnet in [CN6, JP6] {
        let m = g.query("www.geo.test.", RecordType::A, Some(subnet)).await;
        assert_eq!(addrs(&m), [US_WEST], "{subnet}: continent:AS row");
    }
    // client_networks beats GeoIP: this London network is routed as if in Stockholm,
    // and the scope is the client_networks entry's prefix (/26), not GeoIP's /27.
    let m = g.query("www.geo.test.", RecordType::A, Some(GB)).await;
    assert_eq!(addrs(&m), [EU_NORTH], "client_networks beats GeoIP");
    assert_eq!(ecs_of(&m), Some((27, 26)));
    // A GB client outside that entry still goes by GeoIP.
    let m = g
        .query("www.geo.test.", RecordType::A, Some("81.2.69.192/28"))
        .await;
    assert_eq!(addrs(&m), [EU_WEST]);
    assert_eq!(ecs_of(&m), Some((28, 28)));

    // The same decisions, explained over HTTP.
    let (status, body) = g
        .http_get(&format!("/explain?name=www.geo.test.&type=A&client={CN}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["region"], "ap-east", "{e}");
    assert_eq!(e["latency_row"], "cidr:175.16.199.0/24", "{e}");
    assert_eq!(e["located_by"], "geoip 175.16.199.0/24", "{e}");
    assert_eq!(
        e["candidates"][0]["rank_reason"],
        "latency cidr:175.16.199.0/24 30 ms"
    );
    assert!(
        e["candidates"][1]["rank_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("distance ") && r.ends_with(" km")),
        "regions not in the row follow by distance: {e}"
    );
    let (_, body) = g
        .http_get(&format!("/explain?name=www.geo.test.&type=A&client={GB}"))
        .await;
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["located_by"], "client_networks 81.2.69.128/26", "{e}");
    assert_eq!(e["region"], "eu-north", "{e}");
    assert_eq!(e["scope"], 26, "{e}");
}

#[tokio::test]
async fn fenced_eu_client_never_leaves_the_eu_even_when_every_eu_region_is_drained() {
    // Not drained: the fence keeps EU clients in the EU (US clients are unaffected).
    let g = Geode::start(&config(false, ""));
    let m = g.query("eu.geo.test.", RecordType::A, Some(GB)).await;
    assert_eq!(addrs(&m), [EU_WEST]);
    let m = g.query("eu.geo.test.", RecordType::A, Some(US)).await;
    assert_eq!(addrs(&m), [US_WEST]);
    drop(g);

    let g = Geode::start(&config(true, ""));
    for (subnet, qtype) in [
        (GB, RecordType::A),
        (GB, RecordType::AAAA),
        (SE, RecordType::A),
        (SE6, RecordType::AAAA),
    ] {
        let m = g.query("eu.geo.test.", qtype, Some(subnet)).await;
        assert_nodata(&m, &format!("fenced {subnet} {qtype}"));
        // The answer depended on where the client is (the fence): GeoIP scope.
        let (net, _) = json_network(ecs_addr(subnet));
        let source: IpNet = subnet.parse().unwrap();
        assert_eq!(
            ecs_of(&m),
            Some((source.prefix_len(), net.prefix_len())),
            "{subnet}"
        );
    }
    // The unfenced service sends the same EU client to the nearest undrained region,
    // and unfenced clients of the fenced service are answered as usual.
    let m = g.query("open.geo.test.", RecordType::A, Some(GB)).await;
    assert_eq!(addrs(&m), [US_EAST]);
    let m = g.query("eu.geo.test.", RecordType::A, Some(US)).await;
    assert_eq!(addrs(&m), [US_WEST]);
    let m = g.query("eu.geo.test.", RecordType::A, Some(CN)).await;
    assert_eq!(addrs(&m), [AP_EAST]);
    // Drained regions are shown as such.
    let (_, body) = g
        .http_get(&format!("/explain?name=eu.geo.test.&type=A&client={GB}"))
        .await;
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["outcome"], "NODATA", "{e}");
    let statuses: HashMap<String, String> = e["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["region"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(statuses["eu-west"], "drained");
    assert_eq!(statuses["eu-north"], "drained");
    assert_eq!(statuses["us-east"], "fenced out");
    assert_eq!(statuses["ap-east"], "fenced out");
}

#[tokio::test]
async fn failover_follows_the_regions_order_for_every_client() {
    let g = Geode::start(&config(false, ""));
    for subnet in [GB, US, CN, SE6] {
        let m = g.query("fo.geo.test.", RecordType::A, Some(subnet)).await;
        assert_eq!(addrs(&m), [EU_WEST], "{subnet}");
        let source: IpNet = subnet.parse().unwrap();
        assert_eq!(
            ecs_of(&m),
            Some((source.prefix_len(), 0)),
            "failover does not depend on the client"
        );
    }
    // eu-west has no IPv6: AAAA fails over to the next in order.
    let m = g.query("fo.geo.test.", RecordType::AAAA, Some(US)).await;
    assert_eq!(addrs(&m), [EU_NORTH6]);
    drop(g);
    // Both EU regions drained: the next in order, us-west, not the nearest.
    let g = Geode::start(&config(true, ""));
    for subnet in [GB, US, CN] {
        let m = g.query("fo.geo.test.", RecordType::A, Some(subnet)).await;
        assert_eq!(addrs(&m), [US_WEST], "{subnet}");
    }
}

#[tokio::test]
async fn weighted_split_over_a_thousand_client_subnets() {
    let g = Geode::start(&config(false, ""));
    let client = g.udp_client().await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut first: Vec<(String, Vec<String>)> = Vec::new();
    const N: usize = 1000;
    for i in 0..N {
        let subnet = format!("100.{}.{}.0/24", 64 + i / 256, i % 256);
        let m = send(client.clone(), "w.geo.test.", RecordType::A, Some(&subnet)).await;
        let a = addrs(&m);
        assert_eq!(a.len(), 1, "{subnet}: {a:?}");
        assert_eq!(
            ecs_of(&m),
            Some((24, 24)),
            "{subnet}: weighted hash on the /24"
        );
        *counts.entry(a[0].clone()).or_default() += 1;
        if i < 20 {
            first.push((subnet, a));
        }
    }
    let pct = |a: &str| 100.0 * counts.get(a).copied().unwrap_or(0) as f64 / N as f64;
    for (addr, want) in [
        ("198.51.100.1", 70.0),
        ("198.51.100.2", 20.0),
        ("198.51.100.3", 10.0),
    ] {
        let got = pct(addr);
        assert!(
            (got - want).abs() <= 5.0,
            "{addr}: {got}% want {want}% ± 5: {counts:?}"
        );
    }
    // The same subnet keeps its answer.
    for (subnet, a) in first {
        let m = send(client.clone(), "w.geo.test.", RecordType::A, Some(&subnet)).await;
        assert_eq!(addrs(&m), a, "{subnet}");
    }
}

#[tokio::test]
async fn geode_explain_prints_the_decision_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, config(false, OVERRIDES)).unwrap();
    let run = |client: &str, extra: &[&str]| {
        let out = Command::new(GEODE)
            .args(["explain", "--config"])
            .arg(&path)
            .args(["--client", client, "www.geo.test."])
            .args(extra)
            .output()
            .expect("run geode explain");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "geode explain {client}: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    // US client: GeoIP located, ranked by distance.
    let out = run(US, &[]);
    for want in [
        "client   216.160.83.56 from ecs /29",
        "located  geoip 216.160.83.56/29, country US, continent NA",
        "=>  1. us-west",
        "distance ",
        " km",
        "answer   ANSWER us-west 192.0.2.40 ttl 20 ecs-scope /29",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    // CN client: the cidr latency row, then distance for the rest.
    let out = run(CN, &[]);
    for want in [
        "located  geoip 175.16.199.0/24, country CN, continent AS",
        "latency  row cidr:175.16.199.0/24",
        "latency cidr:175.16.199.0/24 30 ms",
        "ap-east",
        "answer   ANSWER ap-east 192.0.2.50",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    // AAAA for the London network (relocated to Stockholm by client_networks).
    let out = run(GB, &["AAAA"]);
    for want in [
        "located  client_networks 81.2.69.128/26",
        "no IPv6 endpoints",
        "answer   ANSWER eu-north 2001:db8::20",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
}
