//! Reload: SIGHUP, directory watching (rename, in-place rewrite, Kubernetes ConfigMap
//! symlink swap, geoipupdate-style GeoIP replacement), refusal of bad files and of
//! start-only keys, health state across reloads, and no failed query while reloading.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::RecordType;

use crate::harness::{Geode, addrs, ecs_of};
use crate::metrics::{build_geoip, query_once, reloads, scrape, try_query, udp_once};

// ---------------------------------------------------------------------------------------
// Config under test
// ---------------------------------------------------------------------------------------

/// The client every latency test speaks for (ECS).
const CLIENT: &str = "198.51.100.0/24";

/// The knobs the tests turn.
#[derive(Debug, Clone)]
struct Knobs {
    /// `[latency]` row for CLIENT: RTT to regions a and b. Lower wins `near`.
    lat_a: u32,
    lat_b: u32,
    /// Weights of regions c and d (service `wt`, policy weighted). 0 = standby.
    w_c: u32,
    w_d: u32,
    /// Extra `[server]` lines.
    server: String,
    /// A TXT record at the apex, to make a change that moves no answer.
    txt: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            lat_a: 10,
            lat_b: 50,
            w_c: 100,
            w_d: 0,
            server: String::new(),
            txt: "v=1".into(),
        }
    }
}

impl Knobs {
    fn toml(&self) -> String {
        let Knobs {
            lat_a,
            lat_b,
            w_c,
            w_d,
            server,
            txt,
        } = self;
        format!(
            r#"# geode reload test
[server]
dns_listen = ["127.0.0.1:5353"]
{server}

[zones."gslb.test."]
ttl = 300
soa = {{ mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }}
ns = ["ns1.gslb.test."]
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "@", type = "TXT", value = "{txt}" }},
]

[regions.a]
endpoints = [{{ address = "192.0.2.1" }}]

[regions.b]
endpoints = [{{ address = "192.0.2.2" }}]

[regions.c]
weight = {w_c}
endpoints = [{{ address = "192.0.2.3" }}]

[regions.d]
weight = {w_d}
endpoints = [{{ address = "192.0.2.4" }}]

[services."near.gslb.test."]
regions = ["a", "b"]
policy = "nearest"

[services."wt.gslb.test."]
regions = ["c", "d"]
policy = "weighted"

[latency]
"cidr:{CLIENT}" = {{ a = {lat_a}, b = {lat_b} }}
"#
        )
    }

    /// What `near` and `wt` answer for CLIENT under this config.
    fn expected(&self) -> (&'static str, &'static str) {
        let near = if self.lat_a <= self.lat_b {
            "192.0.2.1"
        } else {
            "192.0.2.2"
        };
        let wt = if self.w_c > 0 && self.w_d == 0 {
            "192.0.2.3"
        } else if self.w_d > 0 && self.w_c == 0 {
            "192.0.2.4"
        } else {
            panic!("test configs keep one of c/d at weight 0")
        };
        (near, wt)
    }
}

/// The two valid configs the tests switch between, and their answers.
fn v1() -> Knobs {
    Knobs::default()
}
fn v2() -> Knobs {
    Knobs {
        lat_a: 60,
        lat_b: 5,
        w_c: 0,
        w_d: 100,
        ..Knobs::default()
    }
}

/// `(near, wt)` as geode answers them now, for CLIENT.
async fn answers(g: &Geode) -> (String, String) {
    let one = |m: hickory_net::proto::op::Message| {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
        let a = addrs(&m);
        assert_eq!(a.len(), 1, "one address per answer: {a:?}");
        a[0].clone()
    };
    let near = one(query_once(g, "near.gslb.test.", RecordType::A, Some(CLIENT)).await);
    let wt = one(query_once(g, "wt.gslb.test.", RecordType::A, Some(CLIENT)).await);
    (near, wt)
}

async fn answers_are(g: &Geode, k: &Knobs) -> bool {
    let (n, w) = k.expected();
    let (near, wt) = answers(g).await;
    near == n && wt == w
}

// ---------------------------------------------------------------------------------------
// Helpers: files, logs, /status
// ---------------------------------------------------------------------------------------

/// Writes `text` to a temporary name in the same directory, then renames it over `path`
/// (what careful editors, `install`, and geoipupdate do).
fn replace_file(path: &Path, bytes: impl AsRef<[u8]>) {
    let dir = path.parent().unwrap();
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// GET /status as JSON.
async fn status(g: &Geode) -> serde_json::Value {
    let (code, body) = g.http_get("/status").await;
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// The running config's hash from /status.
async fn hash(g: &Geode) -> String {
    status(g)
        .await
        .pointer("/config/hash")
        .and_then(|h| h.as_str())
        .unwrap_or_else(|| panic!("/status has no config.hash"))
        .to_string()
}

/// Waits until the running config's hash differs from `old`; returns the new one.
async fn await_new_hash(g: &Geode, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = hash(g).await;
        if h != old {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "config hash still {old} after 10 s; log:\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `geode_config_reloads_total{result="failure"}` exceeds `before`.
async fn await_failure(g: &Geode, before: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = reloads(g, "failure").await;
        if now > before {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no failed reload counted within 10 s (still {now}); log:\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Config dir with `geode.toml`, returned with the temp dir that owns it.
fn config_dir(text: &str) -> (Arc<tempfile::TempDir>, PathBuf) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

// ---------------------------------------------------------------------------------------
// (1) edits apply: SIGHUP, rename, in-place rewrite
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reload_sighup_applies_latency_and_weight_edits() {
    // The file lives in a subdirectory geode does not watch (geode.toml is a symlink to
    // it), so only the signal can make these edits take effect.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir(dir.path().join("store")).unwrap();
    let real = dir.path().join("store/geode.toml");
    std::fs::write(&real, v1().toml()).unwrap();
    let path = dir.path().join("geode.toml");
    std::os::unix::fs::symlink("store/geode.toml", &path).unwrap();
    let g = Geode::start_at(dir, &path, &[]);
    assert!(answers_are(&g, &v1()).await, "{:?}", answers(&g).await);

    // Latency row: b becomes nearer than a.
    let mut k = v1();
    k.lat_a = 70;
    k.lat_b = 7;
    std::fs::write(&real, k.toml()).unwrap();
    let h0 = hash(&g).await;
    g.signal("HUP");
    let h1 = await_new_hash(&g, &h0).await;
    assert_eq!(answers(&g).await, ("192.0.2.2".into(), "192.0.2.3".into()));

    // Weight: c to standby, d takes the traffic.
    k.w_c = 0;
    k.w_d = 100;
    std::fs::write(&real, k.toml()).unwrap();
    g.signal("HUP");
    await_new_hash(&g, &h1).await;
    assert_eq!(answers(&g).await, ("192.0.2.2".into(), "192.0.2.4".into()));

    let log = g.logs();
    assert!(
        log.lines()
            .any(|l| l.contains("config reloaded") && l.contains("SIGHUP")),
        "a reload triggered by SIGHUP is logged:\n{log}"
    );
}

#[tokio::test]
async fn reload_file_replaced_by_rename_applies_without_sighup() {
    let (dir, path) = config_dir(&v1().toml());
    let g = Geode::start_at(dir, &path, &[]);
    assert!(answers_are(&g, &v1()).await);

    let mut k = v1();
    k.lat_a = 90; // latency edit
    replace_file(&path, k.toml());
    crate::assert_eventually!(
        10,
        answers(&g).await.0 == "192.0.2.2",
        "latency edit not applied after rename; log:\n{}",
        g.logs()
    );
    k.w_c = 0; // weight edit
    k.w_d = 50;
    replace_file(&path, k.toml());
    crate::assert_eventually!(
        10,
        answers_are(&g, &k).await,
        "weight edit not applied after rename; log:\n{}",
        g.logs()
    );
    assert!(
        g.logs().contains("file change"),
        "reload attributed to the file change:\n{}",
        g.logs()
    );
}

#[tokio::test]
async fn reload_file_rewritten_in_place_applies_without_sighup() {
    let (dir, path) = config_dir(&v1().toml());
    let g = Geode::start_at(dir, &path, &[]);
    assert!(answers_are(&g, &v1()).await);

    // Truncate and rewrite the same inode, as `cat > file` or many editors do.
    std::fs::write(&path, v2().toml()).unwrap();
    crate::assert_eventually!(
        10,
        answers_are(&g, &v2()).await,
        "in-place rewrite not applied; answers {:?}; log:\n{}",
        answers(&g).await,
        g.logs()
    );
    std::fs::write(&path, v1().toml()).unwrap();
    crate::assert_eventually!(
        10,
        answers_are(&g, &v1()).await,
        "second in-place rewrite not applied; log:\n{}",
        g.logs()
    );
}

// ---------------------------------------------------------------------------------------
// (2) broken files keep the old answers
// ---------------------------------------------------------------------------------------

/// Writes `bad`, SIGHUPs, and checks: failure counted, old answers, log line `expect`.
async fn refuses(g: &Geode, path: &Path, bad: &str, expect: &str) {
    let before = reloads(g, "failure").await;
    let ok_before = reloads(g, "success").await;
    let h = hash(g).await;
    replace_file(path, bad);
    g.signal("HUP");
    await_failure(g, before).await;
    assert!(answers_are(g, &v1()).await, "old answers keep serving");
    assert_eq!(hash(g).await, h, "the running config is unchanged");
    assert_eq!(
        reloads(g, "success").await,
        ok_before,
        "a broken file is never counted as a successful reload"
    );
    crate::assert_eventually!(
        5,
        g.logs().contains(expect),
        "log names file:line:key {expect:?}; log:\n{}",
        g.logs()
    );
}

#[tokio::test]
async fn reload_broken_files_are_refused_and_old_answers_continue() {
    let (dir, path) = config_dir(&v1().toml());
    let g = Geode::start_at(dir, &path, &[]);
    assert!(answers_are(&g, &v1()).await);
    let file = path.display().to_string();

    // Syntax error: a value missing on the weight line of region c (line 24).
    let good = v2().toml();
    let line = good
        .lines()
        .position(|l| l.starts_with("weight = 0"))
        .unwrap()
        + 1;
    let syntax = good.replacen("weight = 0\n", "weight = \n", 1);
    refuses(&g, &path, &syntax, &format!("{file}:{line}:")).await;

    // Validation error: a service naming a region that does not exist.
    let valid_syntax = v2()
        .toml()
        .replace(r#"regions = ["c", "d"]"#, r#"regions = ["c", "nowhere"]"#);
    let line = valid_syntax
        .lines()
        .position(|l| l.contains("nowhere"))
        .unwrap()
        + 1;
    refuses(
        &g,
        &path,
        &valid_syntax,
        &format!("{file}:{line}: services.\"wt.gslb.test.\".regions[1]: unknown region"),
    )
    .await;

    // Validation error of a value: a negative weight.
    let negative = v2().toml().replacen("weight = 0\n", "weight = -1\n", 1);
    let line = negative.lines().position(|l| l == "weight = -1").unwrap() + 1;
    refuses(
        &g,
        &path,
        &negative,
        &format!("{file}:{line}: regions.c.weight"),
    )
    .await;

    // And a good file after all that applies.
    let h = hash(&g).await;
    replace_file(&path, v2().toml());
    g.signal("HUP");
    await_new_hash(&g, &h).await;
    assert!(answers_are(&g, &v2()).await);
}

// ---------------------------------------------------------------------------------------
// (3) no failed query while reloading
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_fifty_times_under_query_load_without_a_failed_query() {
    let (dir, path) = config_dir(&v1().toml());
    let g = Geode::start_at(dir, &path, &[]);
    assert!(answers_are(&g, &v1()).await);
    let ok_before = reloads(&g, "success").await;
    let fail_before = reloads(&g, "failure").await;

    let valid_near = ["192.0.2.1", "192.0.2.2"];
    let valid_wt = ["192.0.2.3", "192.0.2.4"];
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let stop = stop.clone();
        let server = g.udp;
        tasks.push(tokio::spawn(async move {
            // One send per query: a retransmission would hide a drop. 3 s to answer, so a
            // dropped query still fails while a host that stalls for a second does not.
            let client = udp_once(server, Duration::from_secs(3));
            let mut sent = 0u64;
            let mut failures: Vec<String> = Vec::new();
            let mut seen: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let (name, valid) = if (sent + t).is_multiple_of(2) {
                    ("near.gslb.test.", &valid_near)
                } else {
                    ("wt.gslb.test.", &valid_wt)
                };
                sent += 1;
                match try_query(
                    &client,
                    name,
                    RecordType::A,
                    Some(CLIENT),
                    Duration::from_millis(3100),
                )
                .await
                {
                    Err(e) => failures.push(e),
                    Ok(m) => {
                        let a = addrs(&m);
                        if m.metadata.response_code != ResponseCode::NoError
                            || a.len() != 1
                            || !valid.contains(&a[0].as_str())
                        {
                            failures.push(format!("{name}: {:?} {a:?}", m.metadata.response_code));
                        } else {
                            *seen.entry(a[0].clone()).or_default() += 1;
                        }
                    }
                }
            }
            (sent, failures, seen)
        }));
    }

    // 50 reloads, valid and broken alternately, SIGHUP after each write, ~50-100 ms apart.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let broken = [
        "[server\n".to_string(), // syntax
        v1().toml()
            .replace(r#"regions = ["a", "b"]"#, "regions = []"), // validation
    ];
    for i in 0..50 {
        let text = if i % 2 == 1 {
            broken[(i / 2) % 2].clone()
        } else if i % 4 == 0 {
            v2().toml()
        } else {
            v1().toml()
        };
        replace_file(&path, text);
        g.signal("HUP");
        tokio::time::sleep(Duration::from_millis(50 + (i as u64 * 37) % 51)).await;
    }
    let reload_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let mut failures = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (sent, f, s) = t.await.unwrap();
        total += sent;
        failures.extend(f);
        for (k, v) in s {
            *seen.entry(k).or_default() += v;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} queries failed while reloading, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(total > 200, "the query stream ran ({total} queries)");
    // The reloads really happened during the stream: both configs' answers were seen.
    for a in valid_near.iter().chain(&valid_wt) {
        assert!(
            seen.contains_key(*a),
            "answer {a} never seen during the reloads; seen {seen:?}; log:\n{}",
            g.logs()
        );
    }
    let ok = reloads(&g, "success").await - ok_before;
    let failed = reloads(&g, "failure").await - fail_before;
    assert!(
        ok >= 10.0 && failed >= 10.0,
        "reloads ran: {ok} succeeded, {failed} failed (25 + 25 triggered)"
    );
    eprintln!(
        "{total} queries, 0 failed, over 50 reloads in {reload_secs:.1} s \
         ({ok} ok / {failed} refused reloads counted); answers {seen:?}"
    );
    // A broken config leaves the last valid one serving. Checked one write at a time: in
    // the burst above, a reload may read the file only after the next write landed (the
    // host stalled the process for longer than the gap), so which valid config was last
    // loaded there is not known.
    replace_file(&path, v2().toml());
    g.signal("HUP");
    crate::assert_eventually!(
        5,
        answers_are(&g, &v2()).await,
        "v2 serves after its reload"
    );
    let refused = reloads(&g, "failure").await;
    replace_file(&path, broken[0].clone());
    g.signal("HUP");
    await_failure(&g, refused).await;
    assert!(
        answers_are(&g, &v2()).await,
        "the last valid config serves after a broken one"
    );
}

// ---------------------------------------------------------------------------------------
// (4) GeoIP database replaced like geoipupdate does
// ---------------------------------------------------------------------------------------

const CSV_HEADER: &str = "network,continent,country,subdivision,lat,lon,city\n";

fn geo_csv(row: &str) -> String {
    format!("{CSV_HEADER}{row}\n10.9.0.0/16,AS,JP,13,35.68,139.69,Tokyo\n")
}

#[tokio::test]
async fn reload_geoip_database_replacement_moves_answers_without_sighup() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let geodir = dir.path().join("geoip");
    std::fs::create_dir(&geodir).unwrap();
    let db = geodir.join("City.mmdb");
    let dublin = geo_csv("198.51.100.0/24,EU,IE,L,53.35,-6.26,Dublin");
    let ashburn = geo_csv("198.51.100.0/24,NA,US,VA,39.04,-77.49,Ashburn");
    std::fs::write(&db, build_geoip(&dublin).unwrap()).unwrap();
    let config = r#"
[server]
dns_listen = ["127.0.0.1:5353"]
geoip_db = "geoip/City.mmdb"

[zones."gslb.test."]
soa = { mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }
ns = ["ns1.gslb.test."]
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]

[regions.eu]
location = { lat = 53.35, lon = -6.26 }
endpoints = [{ address = "192.0.2.20" }]

[regions.us]
location = { lat = 39.04, lon = -77.49 }
endpoints = [{ address = "192.0.2.10" }]

[services."www.gslb.test."]
regions = ["us", "eu"]
"#;
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, config).unwrap();
    let g = Geode::start_at(dir, &path, &[]);
    let ask = || async {
        let m = query_once(&g, "www.gslb.test.", RecordType::A, Some(CLIENT)).await;
        assert_eq!(ecs_of(&m), Some((24, 24)), "scope is the GeoIP network");
        addrs(&m)
    };
    assert_eq!(ask().await, ["192.0.2.20"], "Dublin -> eu");
    let h = hash(&g).await;

    // The network moves to Virginia: new file written beside, renamed over.
    replace_file(&db, build_geoip(&ashburn).unwrap());
    crate::assert_eventually!(
        10,
        ask().await == ["192.0.2.10"],
        "answer did not move after the GeoIP database was replaced; log:\n{}",
        g.logs()
    );
    assert_eq!(hash(&g).await, h, "the config itself did not change");

    // A damaged replacement is refused; the old reader keeps serving.
    let before = reloads(&g, "failure").await;
    replace_file(
        &db,
        b"this is not an mmdb file\0\x01\x02\x03garbage".repeat(64),
    );
    await_failure(&g, before).await;
    for _ in 0..10 {
        assert_eq!(ask().await, ["192.0.2.10"], "old database keeps answering");
    }
    crate::assert_eventually!(
        5,
        g.logs().contains("server.geoip_db"),
        "the refusal names server.geoip_db; log:\n{}",
        g.logs()
    );
    assert_eq!(
        status(&g)
            .await
            .pointer("/geoip/type")
            .and_then(|t| t.as_str()),
        Some("GeoIP2-City"),
        "/status still shows the open database"
    );

    // A good file again is picked up.
    replace_file(&db, build_geoip(&dublin).unwrap());
    crate::assert_eventually!(
        10,
        ask().await == ["192.0.2.20"],
        "a valid database after a broken one is loaded; log:\n{}",
        g.logs()
    );
}

// ---------------------------------------------------------------------------------------
// (5) health state survives a reload
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reload_keeps_a_down_endpoint_down() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = |weight_b: u32, txt: &str| {
        format!(
            r#"
[server]
dns_listen = ["127.0.0.1:5353"]

[zones."gslb.test."]
soa = {{ mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }}
ns = ["ns1.gslb.test."]
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "@", type = "TXT", value = "{txt}" }},
]

[checks.tcp]
type = "tcp"
port = {closed}
interval = "2s"
timeout = "300ms"
rise = 2
fall = 1

[regions.a]
endpoints = [{{ address = "192.0.2.1", check = "tcp", probe = "127.0.0.1:{closed}" }}]

[regions.b]
weight = {weight_b}
endpoints = [{{ address = "192.0.2.2" }}]

[services."near.gslb.test."]
regions = ["a", "b"]
when_all_down = "all"

[latency]
"cidr:{CLIENT}" = {{ a = 10, b = 50 }}
"#
        )
    };
    let (dir, path) = config_dir(&config(100, "one"));
    let g = Geode::start_at(dir, &path, &[]);
    let near =
        || async { addrs(&query_once(&g, "near.gslb.test.", RecordType::A, Some(CLIENT)).await) };
    crate::assert_eventually!(
        5,
        near().await == ["192.0.2.2"],
        "region a (its only endpoint probes a closed port) should be down and b answer; \
         got {:?}; /status: {}",
        near().await,
        status(&g).await
    );

    // Unrelated edits, and a rise of 2 with a 2 s interval: a reload that re-created the
    // endpoint's state (unknown/up) would show a within the next seconds.
    for (i, txt) in ["two", "three"].iter().enumerate() {
        let h = hash(&g).await;
        replace_file(&path, config(90 - i as u32, txt));
        g.signal("HUP");
        await_new_hash(&g, &h).await;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            assert_eq!(
                near().await,
                ["192.0.2.2"],
                "the down endpoint came back up across a reload; log:\n{}",
                g.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let st = status(&g).await;
    let a = st["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "a")
        .unwrap();
    assert_eq!(a["up"], false, "/status: {st}");
    assert_eq!(a["endpoints"][0]["up"], false, "/status: {st}");
}

// ---------------------------------------------------------------------------------------
// (6) start-only keys are refused by name, nothing in the file applies
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reload_refuses_start_only_change_and_applies_nothing_from_that_file() {
    // The harness always overrides dns_listen/http_listen on the command line, so here the
    // start-only key is server.tcp_max_connections (see the next test for dns_listen).
    let mut k = v1();
    k.server = "tcp_max_connections = 100".into();
    let (dir, path) = config_dir(&k.toml());
    let g = Geode::start_at(dir, &path, &[]);
    assert!(answers_are(&g, &v1()).await);
    let h = hash(&g).await;
    let before = reloads(&g, "failure").await;
    let ok_before = reloads(&g, "success").await;

    let mut bad = v2();
    bad.server = "tcp_max_connections = 200".into();
    replace_file(&path, bad.toml());
    g.signal("HUP");
    await_failure(&g, before).await;
    crate::assert_eventually!(
        5,
        g.logs()
            .lines()
            .any(|l| l.contains("server.tcp_max_connections") && l.contains("restart")),
        "the refusal names the key and says a restart is needed; log:\n{}",
        g.logs()
    );
    assert!(
        answers_are(&g, &v1()).await,
        "the weight and latency changes in the refused file must not apply: {:?}",
        answers(&g).await
    );
    assert_eq!(hash(&g).await, h);
    assert_eq!(reloads(&g, "success").await, ok_before);

    // Put the key back and the rest of the edits apply.
    let mut fixed = v2();
    fixed.server = "tcp_max_connections = 100".into();
    replace_file(&path, fixed.toml());
    g.signal("HUP");
    await_new_hash(&g, &h).await;
    assert!(answers_are(&g, &v2()).await);
}

#[tokio::test]
async fn reload_refuses_dns_listen_change_by_name() {
    // dns_listen from the file (port 0: the kernel picks), no CLI override.
    let with_listen = |k: &Knobs, listen: &str| {
        k.toml().replace(
            r#"dns_listen = ["127.0.0.1:5353"]"#,
            &format!("dns_listen = {listen}"),
        )
    };
    let (dir, path) = config_dir(&with_listen(&v1(), r#"["127.0.0.1:0"]"#));
    let g = Geode::start_args(dir, &path, &["--http-listen", "127.0.0.1:0"]);
    assert_eq!(answers(&g).await.1, "192.0.2.3");
    let before = reloads(&g, "failure").await;

    // Move the listener (never bound: the reload is refused) and swap the weights.
    replace_file(&path, with_listen(&v2(), r#"["127.0.0.1:0", "[::1]:0"]"#));
    g.signal("HUP");
    await_failure(&g, before).await;
    // The refusal is counted, then logged.
    crate::assert_eventually!(
        5,
        g.logs()
            .lines()
            .any(|l| l.contains("server.dns_listen") && l.contains("restart")),
        "the refusal names server.dns_listen:\n{}",
        g.logs()
    );
    let log = g.logs();
    assert_eq!(
        answers(&g).await.1,
        "192.0.2.3",
        "the weight change in the refused file must not apply"
    );
    assert_eq!(
        log.matches("listening on udp").count(),
        1,
        "nothing new was bound:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// (7) /status and the reload metrics
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reload_status_shows_hash_and_load_time_and_metrics_advance() {
    let (dir, path) = config_dir(&v1().toml());
    let g = Geode::start_at(dir, &path, &[]);
    // A SIGHUP right after "ready" must reload, never kill the process.
    g.signal("HUP");
    let st0 = status(&g).await;
    let h0 = st0["config"]["hash"]
        .as_str()
        .expect("config.hash")
        .to_string();
    let t0 = st0["config"]["loaded_at"]
        .as_f64()
        .expect("config.loaded_at (unix seconds)");
    assert!(!h0.is_empty());
    assert_eq!(st0["config"]["file"].as_str(), Some(path.to_str().unwrap()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&t0),
        "loaded_at {t0} is about now ({now})"
    );
    crate::assert_eventually!(
        5,
        reloads(&g, "success").await >= 2.0,
        "the early SIGHUP reloaded (start + 1); log:\n{}",
        g.logs()
    );
    let gauge = |e: &crate::metrics::Exposition| {
        e.get("geode_config_last_reload_success_timestamp_seconds", &[])
            .expect("last reload gauge")
    };
    let m0 = scrape(&g).await;
    let ts0 = gauge(&m0);
    let ok0 = m0.value("geode_config_reloads_total", &[("result", "success")]);
    assert!(
        (now - 60.0..=now + 1.0).contains(&ts0),
        "timestamp gauge {ts0} is about now ({now})"
    );

    // Let the wall clock pass a whole second so even a seconds-resolution gauge moves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    replace_file(&path, v2().toml());
    g.signal("HUP");
    let h1 = await_new_hash(&g, &h0).await;
    assert_ne!(h1, h0);
    let st1 = status(&g).await;
    let t1 = st1["config"]["loaded_at"].as_f64().unwrap();
    assert!(t1 > t0, "loaded_at moved: {t0} -> {t1}");
    crate::assert_eventually!(
        5,
        gauge(&scrape(&g).await) > ts0,
        "geode_config_last_reload_success_timestamp_seconds did not increase from {ts0}"
    );
    let m1 = scrape(&g).await;
    assert!(m1.value("geode_config_reloads_total", &[("result", "success")]) > ok0);
    assert!(
        (gauge(&m1) - t1).abs() < 2.0,
        "the gauge ({}) and /status loaded_at ({t1}) agree",
        gauge(&m1)
    );
    // The same text again: same hash (the hash identifies content).
    replace_file(&path, v1().toml());
    g.signal("HUP");
    let h2 = await_new_hash(&g, &h1).await;
    assert_eq!(h2, h0, "hash is a function of the file's content");
}

// ---------------------------------------------------------------------------------------
// (8) Kubernetes ConfigMap symlink swap
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reload_configmap_symlink_swap_triggers_reload() {
    // What the kubelet builds for a mounted ConfigMap:
    //   ..2026_a/geode.toml   ..data -> ..2026_a   geode.toml -> ..data/geode.toml
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let d = dir.path();
    std::fs::create_dir(d.join("..2026_a")).unwrap();
    std::fs::write(d.join("..2026_a/geode.toml"), v1().toml()).unwrap();
    std::os::unix::fs::symlink("..2026_a", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/geode.toml", d.join("geode.toml")).unwrap();
    let path = d.join("geode.toml");
    let g = Geode::start_at(dir.clone(), &path, &[]);
    assert!(answers_are(&g, &v1()).await);

    // The update: new timestamped dir, `..data_tmp` symlink, renamed over `..data`.
    let swap = |name: &str, text: String| {
        std::fs::create_dir(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("geode.toml"), text).unwrap();
        std::os::unix::fs::symlink(name, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    };
    swap("..2026_b", v2().toml());
    crate::assert_eventually!(
        10,
        answers_are(&g, &v2()).await,
        "ConfigMap swap not picked up; answers {:?}; log:\n{}",
        answers(&g).await,
        g.logs()
    );
    // The kubelet then deletes the old dir; a second update works too.
    std::fs::remove_dir_all(d.join("..2026_a")).unwrap();
    swap("..2026_c", v1().toml());
    crate::assert_eventually!(
        10,
        answers_are(&g, &v1()).await,
        "second ConfigMap swap not picked up; log:\n{}",
        g.logs()
    );
}
