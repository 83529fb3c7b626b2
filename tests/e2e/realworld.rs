//! The real components an operator puts around geode: unbound in front (sending ECS and
//! caching per scope), Prometheus behind (scraping /metrics). Both are started by the
//! test on loopback; `.ci/run` installs them. A missing binary fails the test.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::assert_eventually;
use crate::harness::{Geode, repo};
use crate::tools::{Daemon, free_port, start_unbound, which};

/// Regions around the demo database's networks, endpoints without checks (always up).
fn config() -> String {
    format!(
        r#"
[server]
geoip_db = "{db}"

[zones."gslb.example."]
soa = {{ mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }}
ns = ["ns1.gslb.example."]
records = [{{ name = "ns1", type = "A", value = "192.0.2.53" }}]

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = [{{ address = "192.0.2.10" }}]

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "192.0.2.20" }}]

[regions.ap-south]
location = {{ lat = 19.08, lon = 72.88 }}
endpoints = [{{ address = "192.0.2.40" }}]

[services."www.gslb.example."]
regions = ["us-east", "eu-west", "ap-south"]
"#,
        db = repo().join("geoip/demo-city.mmdb").display()
    )
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn udp_queries_seen(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("geode_dns_queries_total{") && l.contains("protocol=\"udp\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// unbound with the subnetcache module, a stub zone for gslb.example. pointing at geode,
/// and ECS sent to geode's address. Clients in different networks must get their own
/// regions right after each other (that only works if geode's scopes are right, because
/// unbound caches per scope), and a client inside an already-answered scope must be
/// served from unbound's cache without asking geode.
#[tokio::test]
async fn unbound_with_subnetcache_sends_ecs_and_caches_per_scope() {
    which("dig");
    let g = Geode::start(&config());
    let dir = tempfile::tempdir().unwrap();
    let (_unbound, resolver) = start_unbound(dir.path(), g.udp.port(), None);
    // Wait until unbound answers at all.
    assert_eventually!(
        10,
        dig(resolver, &["+short", "ns1.gslb.example"]).trim() == "192.0.2.53",
        "unbound never answered"
    );

    // London (81.2.69.0/24 in the demo database) -> eu-west.
    let london = dig(
        resolver,
        &["+short", "www.gslb.example", "+subnet=81.2.69.0/24"],
    );
    assert_eq!(london.trim(), "192.0.2.20", "london via unbound: {london}");
    // Stanford (171.64.0.0/14) right after -> us-east, not London's cached answer.
    let stanford = dig(
        resolver,
        &["+short", "www.gslb.example", "+subnet=171.64.1.0/24"],
    );
    assert_eq!(
        stanford.trim(),
        "192.0.2.10",
        "stanford via unbound: {stanford}"
    );
    // Tokyo (133.11.0.0/16) -> ap-south by distance.
    let tokyo = dig(
        resolver,
        &["+short", "www.gslb.example", "+subnet=133.11.7.0/24"],
    );
    assert_eq!(tokyo.trim(), "192.0.2.40", "tokyo via unbound: {tokyo}");

    // A third client in Stanford's /14: geode answered with scope /14, so unbound must
    // serve it from cache: geode sees no new query.
    let before = udp_queries_seen(&g.http_get("/metrics").await.1);
    let cached = dig(
        resolver,
        &["+short", "www.gslb.example", "+subnet=171.65.200.0/24"],
    );
    assert_eq!(cached.trim(), "192.0.2.10", "cached client: {cached}");
    let after = udp_queries_seen(&g.http_get("/metrics").await.1);
    assert_eq!(
        after, before,
        "unbound asked geode again instead of using its scope-/14 cache entry"
    );

    // And the scope geode gave unbound is the GeoIP network's.
    let direct = g.dig(&["www.gslb.example", "+subnet=171.64.1.0/24"]);
    assert!(
        direct.contains("CLIENT-SUBNET: 171.64.1.0/24/14"),
        "{direct}"
    );
}

/// Prometheus scrapes geode every second; `up{job="geode"}` is 1 and geode_region_up
/// has one series per region, read back through Prometheus's HTTP query API.
#[tokio::test]
async fn prometheus_scrapes_geode() {
    let prometheus = which("prometheus");
    let g = Geode::start(&config());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: geode\n    static_configs:\n      - targets: ['{}']\n",
            g.http
        ),
    )
    .unwrap();
    let _prom = Daemon(
        Command::new(prometheus)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let query = |q: &'static str| {
        let client = client.clone();
        async move {
            let encoded: String = q
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'_' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            let url = format!("http://127.0.0.1:{port}/api/v1/query?query={encoded}");
            let Ok(resp) = client.get(url).send().await else {
                return serde_json::Value::Null;
            };
            serde_json::from_str(&resp.text().await.unwrap_or_default())
                .unwrap_or(serde_json::Value::Null)
        }
    };
    let mut up;
    assert_eventually!(
        30,
        {
            up = query("up{job=\"geode\"}").await;
            up["data"]["result"][0]["value"][1] == "1"
        },
        "up{{job=\"geode\"}} never became 1: {up}"
    );
    let mut regions;
    assert_eventually!(
        10,
        {
            regions = query("geode_region_up").await;
            regions["data"]["result"].as_array().map_or(0, |a| a.len()) == 3
        },
        "geode_region_up should have 3 series: {regions}"
    );
    let mut names: Vec<String> = regions["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["metric"]["region"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["ap-south", "eu-west", "us-east"]);
}
