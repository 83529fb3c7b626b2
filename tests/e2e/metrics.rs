//! `/metrics`: the families and label names DESIGN.md fixes, exact query, answer and
//! GeoIP counts, bounded labels, and what `promtool` says about the scrape and the
//! shipped alerting rules.
//!
//! The exposition parser and the no-retry UDP client here are shared with `reload.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::DnsHandle;
use hickory_net::client::Client;
use hickory_net::proto::op::{DnsRequest, DnsRequestOptions, Message, ResponseCode};
use hickory_net::proto::rr::RecordType;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;

use crate::harness::{Geode, addrs, query_message, repo};

#[allow(dead_code)] // main() and the helpers only it uses
#[path = "../../geoip/build_demo.rs"]
mod build_demo;

pub use build_demo::build as build_geoip;

/// The contract table of DESIGN.md ("Metrics"): name, type, label names.
pub const CONTRACT: [(&str, &str, &[&str]); 11] = [
    (
        "geode_dns_queries_total",
        "counter",
        &["protocol", "qtype", "rcode"],
    ),
    ("geode_dns_answers_total", "counter", &["service", "region"]),
    ("geode_endpoint_up", "gauge", &["region", "endpoint"]),
    ("geode_region_up", "gauge", &["region"]),
    (
        "geode_health_probes_total",
        "counter",
        &["region", "endpoint", "result"],
    ),
    (
        "geode_health_probe_duration_seconds",
        "histogram",
        &["region", "endpoint"],
    ),
    (
        "geode_health_transitions_total",
        "counter",
        &["region", "endpoint", "to"],
    ),
    ("geode_config_reloads_total", "counter", &["result"]),
    (
        "geode_config_last_reload_success_timestamp_seconds",
        "gauge",
        &[],
    ),
    ("geode_geoip_lookups_total", "counter", &["result"]),
    ("geode_build_info", "gauge", &["version"]),
];

/// Families that only exist once the health prober has endpoints with a `check`.
const HEALTH_FAMILIES: [&str; 5] = [
    "geode_endpoint_up",
    "geode_region_up",
    "geode_health_probes_total",
    "geode_health_probe_duration_seconds",
    "geode_health_transitions_total",
];

// ---------------------------------------------------------------------------------------
// Exposition parsing (Prometheus text format 0.0.4)
// ---------------------------------------------------------------------------------------

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as written (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Label pairs in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of a label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// `# TYPE` lines: family name -> type.
    pub types: BTreeMap<String, String>,
    /// Every sample.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format; panics with the offending line on anything malformed.
    pub fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                let (Some(name), Some(ty), None) = (it.next(), it.next(), it.next()) else {
                    panic!("malformed TYPE line: {line:?}");
                };
                let prev = out.types.insert(name.to_string(), ty.to_string());
                assert!(prev.is_none(), "TYPE given twice for {name}");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            out.samples.push(parse_sample(line));
        }
        out
    }

    /// The family a sample belongs to (histogram/summary suffixes stripped).
    pub fn family_of<'a>(&self, sample_name: &'a str) -> &'a str {
        if self.types.contains_key(sample_name) {
            return sample_name;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample_name.strip_suffix(suffix)
                && matches!(
                    self.types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
            {
                return base;
            }
        }
        sample_name
    }

    /// Label names used by a family's samples (`le`/`quantile` excluded).
    pub fn label_names(&self, family: &str) -> Option<BTreeSet<String>> {
        let mut seen = false;
        let mut names = BTreeSet::new();
        for s in &self.samples {
            if self.family_of(&s.name) != family {
                continue;
            }
            seen = true;
            for (k, _) in &s.labels {
                if k != "le" && k != "quantile" {
                    names.insert(k.clone());
                }
            }
        }
        seen.then_some(names)
    }

    /// The value of the sample with exactly this name and label set (any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Like [`Exposition::get`], 0 when the sample is absent (a counter not yet created).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

fn parse_sample(line: &str) -> Sample {
    let bad = || -> ! { panic!("malformed sample line: {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        bad();
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let close;
        loop {
            // label name
            let start = match chars.peek() {
                Some(&(_, '}')) => {
                    close = chars.next().unwrap().0;
                    break;
                }
                Some(&(i, _)) => i,
                None => bad(),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.unwrap_or_else(|| bad());
            let key = r[start..eq].to_string();
            if chars.next().map(|(_, c)| c) != Some('"') {
                bad();
            }
            let mut val = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => val.push(c),
                        _ => bad(),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => val.push(c),
                    None => bad(),
                }
            }
            labels.push((key, val));
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    close = i;
                    break;
                }
                _ => bad(),
            }
        }
        rest = &r[close + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value: f64 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| bad());
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// GET /metrics, checked for status and content type.
pub async fn scrape_text(g: &Geode) -> String {
    let (status, body) = g.http_get("/metrics").await;
    assert_eq!(status, 200, "/metrics status; body: {body}");
    body
}

/// GET /metrics, parsed.
pub async fn scrape(g: &Geode) -> Exposition {
    Exposition::parse(&scrape_text(g).await)
}

/// `geode_config_reloads_total{result}`.
pub async fn reloads(g: &Geode, result: &str) -> f64 {
    scrape(g)
        .await
        .value("geode_config_reloads_total", &[("result", result)])
}

// ---------------------------------------------------------------------------------------
// A UDP client that sends each query exactly once
// ---------------------------------------------------------------------------------------

/// A hickory-net UDP client with a per-query timeout and no retransmission, so one call
/// is exactly one query on the wire (and a lost answer is an error, not a retry).
pub fn udp_once(server: SocketAddr, timeout: Duration) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout))
        .with_max_retries(0)
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    client
}

/// Sends one query through `client`; an error or timeout is an `Err` with the reason.
pub async fn try_query(
    client: &Client<TokioRuntimeProvider>,
    name: &str,
    rtype: RecordType,
    ecs: Option<&str>,
    timeout: Duration,
) -> Result<Message, String> {
    let msg = query_message(name, rtype, ecs);
    let mut responses = client.send(DnsRequest::new(msg, DnsRequestOptions::default()));
    match tokio::time::timeout(timeout, responses.next()).await {
        Err(_) => Err(format!("{name} {rtype}: no answer within {timeout:?}")),
        Ok(None) => Err(format!("{name} {rtype}: stream ended without a response")),
        Ok(Some(Err(e))) => Err(format!("{name} {rtype}: {e}")),
        Ok(Some(Ok(resp))) => Ok(resp.into_message()),
    }
}

/// One query over UDP, sent once; panics on a transport failure.
pub async fn query_once(g: &Geode, name: &str, rtype: RecordType, ecs: Option<&str>) -> Message {
    let client = udp_once(g.udp, Duration::from_secs(2));
    try_query(&client, name, rtype, ecs, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("query failed: {e}"))
}

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// A zone with two always-up regions; 198.51.100.0/24 prefers `a`, 203.0.113.0/24 `b`.
const ZONE: &str = r#"
[zones."gslb.test."]
ttl = 300
soa = { mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }
ns = ["ns1.gslb.test."]
records = [
  { name = "ns1", type = "A", value = "192.0.2.53" },
  { name = "@", type = "TXT", value = "v=geode-test" },
]

[services."www.gslb.test."]
regions = ["a", "b"]
ttl = 30

[latency]
"cidr:198.51.100.0/24" = { a = 10, b = 80 }
"cidr:203.0.113.0/24" = { a = 80, b = 10 }
"#;

/// No health checks, no GeoIP.
fn plain_config() -> String {
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:5353"]
{ZONE}
[regions.a]
endpoints = [{{ address = "192.0.2.1" }}]

[regions.b]
endpoints = [{{ address = "192.0.2.2" }}]
"#
    )
}

/// A GeoIP database that knows 198.51.100.0/24 (Dublin) and nothing else.
const GEO_CSV: &str = "network,continent,country,subdivision,lat,lon,city\n\
                       198.51.100.0/24,EU,IE,L,53.35,-6.26,Dublin\n";

/// Everything populated: GeoIP database, a TCP check against a listening port (up) and
/// one against a closed port (down). The returned listener must be kept alive.
fn full_geode() -> (Geode, std::net::TcpListener) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        dir.path().join("city.mmdb"),
        build_geoip(GEO_CSV).expect("build test GeoIP database"),
    )
    .unwrap();
    let config = format!(
        r#"
[server]
dns_listen = ["127.0.0.1:5353"]
geoip_db = "city.mmdb"

[checks.tcp]
type = "tcp"
port = {open_port}
interval = "500ms"
timeout = "200ms"
rise = 1
fall = 1
{ZONE}
[regions.a]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "192.0.2.1", check = "tcp", probe = "127.0.0.1:{open_port}" }}]

[regions.b]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = [
  {{ address = "192.0.2.2" }},
  {{ address = "192.0.2.3", check = "tcp", probe = "127.0.0.1:{closed_port}" }},
]
"#
    );
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, config).unwrap();
    (Geode::start_at(dir, &path, &[]), open)
}

/// A random token for names and addresses nobody else uses.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Runs promtool with `args` (stdin optional); FAILS the test when promtool is missing.
fn promtool(args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    let bin = PathBuf::from("/usr/bin/promtool");
    let bin = if bin.exists() {
        bin
    } else {
        PathBuf::from("promtool")
    };
    let mut child = Command::new(&bin)
        .args(args)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is required for this test and could not be run ({e}); \
                 install it: apt-get install prometheus (provides /usr/bin/promtool)"
            )
        });
    if let Some(input) = stdin {
        let mut sin = child.stdin.take().unwrap();
        sin.write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Checks `names` of the contract against a scrape: type and exact label names.
fn check_families(exp: &Exposition, names: &[&str], text: &str) {
    let mut problems = Vec::new();
    for (name, ty, labels) in CONTRACT.iter().filter(|(n, _, _)| names.contains(n)) {
        match exp.types.get(*name) {
            None => {
                problems.push(format!("{name}: no '# TYPE {name} ...' line"));
                continue;
            }
            Some(t) if t != ty => problems.push(format!("{name}: type {t}, expected {ty}")),
            Some(_) => {}
        }
        let want: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        match exp.label_names(name) {
            None => problems.push(format!("{name}: no samples")),
            Some(got) if got != want => {
                problems.push(format!("{name}: label names {got:?}, expected {want:?}"))
            }
            Some(_) => {}
        }
        if *ty == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                let s = format!("{name}{suffix}");
                if !exp.samples.iter().any(|x| x.name == s) {
                    problems.push(format!("{name}: no {s} samples"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "/metrics does not match DESIGN.md:\n  {}\n--- scrape ---\n{text}",
        problems.join("\n  ")
    );
}

/// Sends a few queries of every kind the non-health families count.
async fn traffic(g: &Geode) {
    query_once(g, "www.gslb.test.", RecordType::A, Some("198.51.100.0/24")).await;
    query_once(g, "www.gslb.test.", RecordType::A, Some("203.0.113.0/24")).await;
}

#[tokio::test]
async fn metrics_core_families_have_contract_names_types_and_labels() {
    let (g, _open) = full_geode();
    traffic(&g).await;
    let text = scrape_text(&g).await;
    let exp = Exposition::parse(&text);
    let core: Vec<&str> = CONTRACT
        .iter()
        .map(|(n, _, _)| *n)
        .filter(|n| !HEALTH_FAMILIES.contains(n))
        .collect();
    check_families(&exp, &core, &text);
}

#[tokio::test]
async fn metrics_health_families_have_contract_names_types_and_labels() {
    let (g, _open) = full_geode();
    // Probes run every 500 ms; give the prober time for results and a transition.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (text, exp) = loop {
        let text = scrape_text(&g).await;
        let exp = Exposition::parse(&text);
        if HEALTH_FAMILIES.iter().all(|f| exp.label_names(f).is_some()) {
            break (text, exp);
        }
        if std::time::Instant::now() > deadline {
            // Checking what is there names every missing family.
            check_families(&exp, &HEALTH_FAMILIES, &text);
            unreachable!();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    check_families(&exp, &HEALTH_FAMILIES, &text);
    // The closed port is down and the listening one up, with bounded label values.
    let ep = |e: &str| exp.get("geode_endpoint_up", &[("region", "b"), ("endpoint", e)]);
    assert_eq!(ep("192.0.2.3"), Some(0.0), "closed port is down:\n{text}");
    assert_eq!(
        exp.get(
            "geode_endpoint_up",
            &[("region", "a"), ("endpoint", "192.0.2.1")]
        ),
        Some(1.0),
        "listening port is up:\n{text}"
    );
    assert_eq!(
        exp.get("geode_region_up", &[("region", "a")]),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_queries_by_protocol_qtype_and_rcode_exactly() {
    let g = Geode::start(&plain_config());
    let key = |p: &'static str, q: &'static str, r: &'static str| {
        [("protocol", p), ("qtype", q), ("rcode", r)]
    };
    let name = "geode_dns_queries_total";
    let before = scrape(&g).await;

    const N: usize = 23;
    for _ in 0..N {
        let m = query_once(&g, "www.gslb.test.", RecordType::A, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    for i in 0..5 {
        let m = query_once(&g, &format!("nx{i}.gslb.test."), RecordType::A, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    for _ in 0..3 {
        let m = query_once(&g, "www.elsewhere.test.", RecordType::AAAA, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
    for _ in 0..4 {
        let m = g.query_tcp("gslb.test.", RecordType::TXT, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }

    let after = scrape(&g).await;
    let delta = |k: &[(&str, &str)]| after.value(name, k) - before.value(name, k);
    assert_eq!(delta(&key("udp", "A", "NOERROR")), N as f64);
    assert_eq!(delta(&key("udp", "A", "NXDOMAIN")), 5.0);
    assert_eq!(delta(&key("udp", "AAAA", "REFUSED")), 3.0);
    assert_eq!(delta(&key("tcp", "TXT", "NOERROR")), 4.0);
    // Nothing else moved: the total grew by exactly what was sent.
    let total = |e: &Exposition| -> f64 {
        e.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(total(&after) - total(&before), (N + 5 + 3 + 4) as f64);
}

#[tokio::test]
async fn metrics_count_gslb_answers_by_service_and_region() {
    let g = Geode::start(&plain_config());
    let answers = |e: &Exposition, region: &str| -> f64 {
        e.samples
            .iter()
            .filter(|s| {
                s.name == "geode_dns_answers_total"
                    && s.label("region") == Some(region)
                    && s.label("service")
                        .is_some_and(|v| v.trim_end_matches('.') == "www.gslb.test")
            })
            .map(|s| s.value)
            .sum()
    };
    let before = scrape(&g).await;
    for _ in 0..6 {
        let m = query_once(&g, "www.gslb.test.", RecordType::A, Some("198.51.100.0/24")).await;
        assert_eq!(addrs(&m), ["192.0.2.1"]);
    }
    for _ in 0..4 {
        let m = query_once(&g, "www.gslb.test.", RecordType::A, Some("203.0.113.0/24")).await;
        assert_eq!(addrs(&m), ["192.0.2.2"]);
    }
    // Static records are not GSLB answers.
    query_once(&g, "ns1.gslb.test.", RecordType::A, None).await;
    let after = scrape(&g).await;
    assert_eq!(answers(&after, "a") - answers(&before, "a"), 6.0);
    assert_eq!(answers(&after, "b") - answers(&before, "b"), 4.0);
    let total = |e: &Exposition| -> f64 {
        e.samples
            .iter()
            .filter(|s| s.name == "geode_dns_answers_total")
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(total(&after) - total(&before), 10.0);
}

#[tokio::test]
async fn metrics_count_geoip_hits_and_misses() {
    let (g, _open) = full_geode();
    let name = "geode_geoip_lookups_total";
    let before = scrape(&g).await;
    for _ in 0..4 {
        // In the database.
        query_once(&g, "www.gslb.test.", RecordType::A, Some("198.51.100.0/24")).await;
    }
    for _ in 0..3 {
        // Not in it.
        query_once(&g, "www.gslb.test.", RecordType::A, Some("203.0.113.0/24")).await;
    }
    // Static names never consult the database.
    query_once(&g, "ns1.gslb.test.", RecordType::A, Some("198.51.100.0/24")).await;
    let after = scrape(&g).await;
    let d = |r: &str| after.value(name, &[("result", r)]) - before.value(name, &[("result", r)]);
    assert_eq!(d("hit"), 4.0, "hits");
    assert_eq!(d("miss"), 3.0, "misses");
}

#[tokio::test]
async fn metrics_count_answer_cache_hits_and_misses() {
    // One UDP socket, so every query meets the same receive loop's cache.
    let one_socket = |extra: &str| {
        plain_config().replace(
            "[server]\n",
            &format!("[server]\nudp_sockets = 1\n{extra}\n"),
        )
    };
    let name = "geode_dns_answer_cache_total";
    for (extra, cached) in [("", true), ("answer_cache_kib = 0", false)] {
        let g = Geode::start(&one_socket(extra));
        let before = scrape(&g).await;
        const N: usize = 12;
        for _ in 0..N {
            let m = query_once(&g, "www.gslb.test.", RecordType::A, Some("198.51.100.0/24")).await;
            assert_eq!(addrs(&m), ["192.0.2.1"], "{extra}");
            let m = query_once(&g, "www.gslb.test.", RecordType::A, Some("203.0.113.0/24")).await;
            assert_eq!(addrs(&m), ["192.0.2.2"], "{extra}");
        }
        // Static names take the ordinary path: looked up, never stored.
        for _ in 0..3 {
            query_once(&g, "ns1.gslb.test.", RecordType::A, None).await;
        }
        let after = scrape(&g).await;
        let d =
            |r: &str| after.value(name, &[("result", r)]) - before.value(name, &[("result", r)]);
        if cached {
            assert_eq!(d("hit"), (2 * N - 2) as f64, "hits");
            assert_eq!(d("miss"), 2.0 + 3.0, "misses");
        } else {
            assert_eq!(
                (d("hit"), d("miss")),
                (0.0, 0.0),
                "a disabled cache counts nothing"
            );
        }
    }
}

#[tokio::test]
async fn metrics_build_info_is_one_with_the_package_version() {
    let g = Geode::start(&plain_config());
    let exp = scrape(&g).await;
    let infos: Vec<&Sample> = exp
        .samples
        .iter()
        .filter(|s| s.name == "geode_build_info")
        .collect();
    assert_eq!(infos.len(), 1, "one build_info sample: {infos:?}");
    assert_eq!(
        infos[0].label("version"),
        Some(env!("CARGO_PKG_VERSION")),
        "{infos:?}"
    );
    assert_eq!(infos[0].value, 1.0);
}

#[tokio::test]
async fn metrics_labels_never_carry_query_names_or_client_addresses() {
    let g = Geode::start(&plain_config());
    let token = random_u64();
    let mut secrets: Vec<String> = Vec::new();
    for i in 0..20u64 {
        let r = token.wrapping_add(i);
        let inside = format!("q{r:016x}.gslb.test.");
        let outside = format!("q{r:016x}.elsewhere.test.");
        // A client address per query, from a range nothing in the config mentions.
        let client = format!(
            "100.{}.{}.{}",
            64 + (r % 64),
            (r >> 8) % 256,
            (r >> 16) % 256
        );
        let ecs = format!("{client}/32");
        query_once(&g, &inside, RecordType::A, Some(&ecs)).await;
        query_once(&g, &outside, RecordType::TXT, Some(&ecs)).await;
        query_once(&g, "www.gslb.test.", RecordType::A, Some(&ecs)).await;
        secrets.push(inside.trim_end_matches('.').to_string());
        secrets.push(outside.trim_end_matches('.').to_string());
        secrets.push(format!("{r:016x}"));
        secrets.push(client);
    }
    let text = scrape_text(&g).await;
    let exp = Exposition::parse(&text);
    for s in &exp.samples {
        for (k, v) in &s.labels {
            assert!(
                !v.contains("127.0.0.1"),
                "{} label {k}={v:?} carries the client's source address",
                s.name
            );
            for secret in &secrets {
                assert!(
                    !v.contains(secret.as_str()),
                    "{} label {k}={v:?} carries {secret:?} (a query name or client address)",
                    s.name
                );
            }
        }
    }
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "/metrics mentions {secret:?}"
        );
    }
    // The label values geode does use come from small, fixed sets.
    for s in exp
        .samples
        .iter()
        .filter(|s| s.name == "geode_dns_queries_total")
    {
        let q = s.label("qtype").unwrap();
        assert!(
            crate_qtypes().contains(&q),
            "unbounded qtype label value {q:?}"
        );
    }
}

/// The qtype label values geode may use (mnemonics plus `other`).
fn crate_qtypes() -> &'static [&'static str] {
    &[
        "A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS", "SOA", "PTR", "ANY", "HTTPS",
        "other",
    ]
}

#[tokio::test]
async fn metrics_scrape_passes_promtool_check_metrics() {
    let (g, _open) = full_geode();
    traffic(&g).await;
    query_once(&g, "nx.gslb.test.", RecordType::AAAA, None).await;
    // Let the prober (when present) populate its families too.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let body = scrape_text(&g).await;
    let (ok, stdout, stderr) = promtool(&["check", "metrics"], Some(body.as_bytes()));
    assert!(
        ok && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool check metrics: ok={ok}\nstdout:\n{stdout}\nstderr:\n{stderr}\n--- scrape ---\n{body}"
    );
}

#[test]
fn metrics_promtool_check_rules_passes_on_shipped_rules() {
    let rules = repo().join("deploy/prometheus/rules.yml");
    assert!(
        rules.exists(),
        "deploy/prometheus/rules.yml is missing (the Prometheus rules are part of deploy/)"
    );
    let (ok, stdout, stderr) = promtool(&["check", "rules", "deploy/prometheus/rules.yml"], None);
    assert!(ok, "promtool check rules failed:\n{stdout}\n{stderr}");
}

#[test]
fn metrics_promtool_test_rules_passes_on_shipped_rule_tests() {
    let tests = repo().join("deploy/prometheus/rules_test.yml");
    assert!(
        tests.exists(),
        "deploy/prometheus/rules_test.yml is missing (the rules' unit tests are part of deploy/)"
    );
    let (ok, stdout, stderr) =
        promtool(&["test", "rules", "deploy/prometheus/rules_test.yml"], None);
    assert!(ok, "promtool test rules failed:\n{stdout}\n{stderr}");
}

#[test]
fn metrics_exposition_parser_reads_labels_escapes_and_histograms() {
    let text = "# HELP x_total help\n# TYPE x_total counter\n\
                x_total{a=\"1\",b=\"q\\\"u\\\\o\\nte\"} 3\n\
                # TYPE h histogram\nh_bucket{r=\"x\",le=\"+Inf\"} 2\nh_sum{r=\"x\"} 0.5\n\
                h_count{r=\"x\"} 2\nplain 1.5e3\n";
    let e = Exposition::parse(text);
    assert_eq!(e.value("x_total", &[("b", "q\"u\\o\nte"), ("a", "1")]), 3.0);
    assert_eq!(e.family_of("h_bucket"), "h");
    assert_eq!(
        e.label_names("h").unwrap(),
        BTreeSet::from(["r".to_string()])
    );
    assert_eq!(e.get("plain", &[]), Some(1500.0));
    assert_eq!(e.get("h_bucket", &[("r", "x"), ("le", "+Inf")]), Some(2.0));
}
