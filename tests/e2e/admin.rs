//! Runtime overrides through the real binary: the `/api/v1/` admin API and the
//! `geode admin` CLI against real TCP backends on loopback. Drain, undrain, expiry
//! without queries, force up/down/clear, per-service weights (TOML and runtime, split
//! measured over hundreds of ECS subnets), 401 on every route for a missing or wrong
//! token, 404/400 for unknown targets, 413 for big bodies, persistence across reload and
//! restart, dangling overrides, the API absent without `[admin]`, and a token file
//! readable by everyone refused at start.
//!
//! A change must show in the very next answer: each test warms the answer cache with
//! the same query first, then asserts on the first query after the change, with no
//! retry.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use hickory_net::proto::rr::RecordType;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::{GEODE, Geode, addrs};
use crate::metrics::{query_once, scrape};

const TOKEN: &str = "e2e-admin-token-5f0c2a";
/// Prefers region a by latency row.
const NEAR_A: &str = "198.51.100.0/24";

/// A TCP backend that accepts (and drops) every connection, for `type = "tcp"` checks.
async fn backend() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn serve_backend(l: TcpListener) {
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
}

/// A loopback port nothing listens on (bound, then closed): its probes are refused.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Regions a and b probe live backends, c a dead one. `near` prefers a for NEAR_A,
/// `fo` fails over from c to b, `wt` splits a:b by weight, `wt0` has a per-service
/// weight 0 for a in TOML.
fn config(pa: u16, pb: u16, pc: u16, admin: bool, txt: &str) -> String {
    let admin = if admin {
        "[admin]\ntoken_file = \"admin.token\"\nstate_file = \"state/overrides.json\"\n"
    } else {
        ""
    };
    format!(
        r#"{admin}
[zones."gslb.test."]
soa = {{ mname = "ns1.gslb.test.", rname = "h.gslb.test.", serial = 1 }}
ns = ["ns1.gslb.test."]
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "@", type = "TXT", value = "{txt}" }},
]

[checks.tcp]
type = "tcp"
port = 9
interval = "300ms"
timeout = "200ms"
rise = 1
fall = 1

[regions.a]
endpoints = [{{ address = "192.0.2.1", check = "tcp", probe = "127.0.0.1:{pa}" }}]
[regions.b]
endpoints = [{{ address = "192.0.2.2", check = "tcp", probe = "127.0.0.1:{pb}" }}]
[regions.c]
endpoints = [{{ address = "192.0.2.3", check = "tcp", probe = "127.0.0.1:{pc}" }}]

[services."near.gslb.test."]
regions = ["a", "b"]
[services."fo.gslb.test."]
regions = ["c", "b"]
policy = "failover"
[services."wt.gslb.test."]
regions = ["a", "b"]
policy = "weighted"
[services."wt0.gslb.test."]
regions = ["a", "b"]
policy = "weighted"
weights = {{ a = 0 }}

[latency]
"cidr:{NEAR_A}" = {{ a = 10, b = 80 }}
"#
    )
}

/// A scratch directory with the token file (mode 0600) and the config.
fn setup(config: &str) -> (Arc<tempfile::TempDir>, PathBuf) {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    write_token(dir.path(), 0o600);
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

fn write_token(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("admin.token");
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A request to the admin API with an optional `Authorization` value: (status, JSON).
async fn call(g: &Geode, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let url = format!("http://{}{path}", g.http);
    let mut req = match method {
        "GET" => http().get(url),
        _ => http()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
    };
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(g: &Geode, path: &str, body: Value) -> (u16, Value) {
    call(
        g,
        "POST",
        path,
        Some(&format!("Bearer {TOKEN}")),
        &body.to_string(),
    )
    .await
}

/// `geode admin ARGS` against this server, token from `--token-file`.
fn cli(g: &Geode, args: &[&str]) -> Output {
    Command::new(GEODE)
        .arg("admin")
        .args(args)
        .args(["--server", &format!("http://{}", g.http)])
        .arg("--token-file")
        .arg(g.dir.path().join("admin.token"))
        .env_remove("GEODE_ADMIN_TOKEN")
        .output()
        .expect("run geode admin")
}

fn cli_ok(g: &Geode, args: &[&str]) -> String {
    let out = cli(g, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "geode admin {args:?}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn answer(g: &Geode, name: &str, ecs: Option<&str>) -> Vec<String> {
    addrs(&query_once(g, name, RecordType::A, ecs).await)
}

/// Asks twice (the second from the answer cache) and checks both.
async fn warm(g: &Geode, name: &str, ecs: Option<&str>, want: &str) {
    for _ in 0..2 {
        assert_eq!(
            answer(g, name, ecs).await,
            [want],
            "{name} {ecs:?} before the change"
        );
    }
}

async fn status_region(g: &Geode, name: &str) -> Value {
    let (code, body) = g.http_get("/status").await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("region {name} in /status: {v:#}"))
}

async fn drained_metric(g: &Geode, region: &str) -> Option<f64> {
    scrape(g)
        .await
        .get("geode_region_drained", &[("region", region)])
}

async fn changes(g: &Geode, action: &str) -> f64 {
    scrape(g)
        .await
        .value("geode_admin_changes_total", &[("action", action)])
}

/// Starts geode with live backends for a and b and a dead one for c; waits until the
/// first probes put a and b up (the first round is done at "ready").
async fn start(admin: bool) -> (Geode, Vec<TcpListener>) {
    let (la, pa) = backend().await;
    let (lb, pb) = backend().await;
    let (dir, path) = setup(&config(pa, pb, dead_port(), admin, "v=1"));
    let g = Geode::start_at(dir, &path, &[]);
    (g, vec![la, lb])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_drain_undrain_expiry_and_force_change_the_next_answer() {
    let (g, backends) = start(true).await;
    for l in backends {
        serve_backend(l);
    }
    let near = "near.gslb.test.";
    warm(&g, near, Some(NEAR_A), "192.0.2.1").await;
    assert_eq!(drained_metric(&g, "a").await, Some(0.0));

    // Drain through the API: the next answer (same query bytes) is b's.
    let (code, body) = post(
        &g,
        "/api/v1/drain",
        json!({"region": "a", "reason": "db failover"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["applied"]["target"], "drain:a");
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.2"]);
    assert_eq!(drained_metric(&g, "a").await, Some(1.0));
    assert_eq!(changes(&g, "drain").await, 1.0);
    let a = status_region(&g, "a").await;
    assert_eq!(a["drain"], false, "configured state stays: {a:#}");
    assert_eq!(a["up"], true, "probed state stays: {a:#}");
    assert_eq!(a["effective"]["drained_by"], "override", "{a:#}");
    assert_eq!(a["overrides"][0]["reason"], "db failover", "{a:#}");
    let (_, exp) = g
        .http_get(&format!("/explain?name={near}&client={NEAR_A}"))
        .await;
    let exp: Value = serde_json::from_str(&exp).unwrap();
    let cand = exp["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["region"] == "a")
        .unwrap()
        .clone();
    assert_eq!(cand["status"], "drained (override)", "{exp:#}");
    assert!(
        cand["overrides"][0]
            .as_str()
            .unwrap()
            .contains("reason \"db failover\""),
        "{exp:#}"
    );
    let log = g.logs();
    let line = log
        .lines()
        .find(|l| l.contains("admin change") && l.contains("drain:a"))
        .unwrap_or_else(|| panic!("no change line:\n{log}"));
    for part in [
        "action=\"drain\"",
        "reason=\"db failover\"",
        "from=127.0.0.1:",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    assert!(!log.contains(TOKEN), "the token is never logged");

    // Undrain through the CLI: the next answer is a's again, and the undrain is kept
    // as a change of its own (a tombstone).
    cli_ok(&g, &["undrain", "a", "--reason", "db back"]);
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.1"]);
    assert_eq!(drained_metric(&g, "a").await, Some(0.0));
    let list = cli_ok(&g, &["list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    let entry = &list["overrides"][0];
    assert_eq!(
        (&entry["target"], &entry["action"], &entry["state"]),
        (&json!("drain:a"), &json!("clear"), &json!("cleared")),
        "{list:#}"
    );
    assert_eq!(changes(&g, "undrain").await, 1.0);

    // Drain for 1 s: it ends by itself, with no query arriving meanwhile.
    cli_ok(&g, &["drain", "a", "--for", "1s", "--reason", "short"]);
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.2"]);
    let started = std::time::Instant::now();
    crate::assert_eventually!(
        5,
        changes(&g, "expire").await == 1.0 && drained_metric(&g, "a").await == Some(0.0),
        "the drain did not expire"
    );
    println!("drain --for 1s expired after {:?}", started.elapsed());
    assert!(g.logs().contains("admin override expired"));
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.1"]);

    // Force: c's backend is dead, so fo answers b; c forced up answers c, cleared b.
    let fo = "fo.gslb.test.";
    warm(&g, fo, None, "192.0.2.2").await;
    cli_ok(
        &g,
        &["force", "c/192.0.2.3", "up", "--reason", "probe is wrong"],
    );
    assert_eq!(answer(&g, fo, None).await, ["192.0.2.3"]);
    let c = status_region(&g, "c").await;
    let ep = &c["endpoints"][0];
    assert_eq!(
        (&ep["up"], &ep["effective_up"], &ep["decided_by"]),
        (&json!(false), &json!(true), &json!("override")),
        "{c:#}"
    );
    cli_ok(&g, &["force", "c/192.0.2.3", "clear"]);
    assert_eq!(answer(&g, fo, None).await, ["192.0.2.2"]);
    // A healthy endpoint forced down leaves the answers; cleared, it comes back.
    cli_ok(&g, &["force", "a/192.0.2.1", "down"]);
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.2"]);
    cli_ok(&g, &["force", "a/192.0.2.1", "clear"]);
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.1"]);
    for a in ["force_up", "force_down"] {
        assert_eq!(changes(&g, a).await, 1.0, "{a}");
    }
    assert_eq!(changes(&g, "force_clear").await, 2.0);
}

/// Share of 400 ECS /24s answered with region a.
async fn share_a(g: &Geode, name: &str) -> usize {
    let mut a = 0;
    for i in 0..400u32 {
        let ecs = format!("10.{}.{}.0/24", i / 256, i % 256);
        let got = answer(g, name, Some(&ecs)).await;
        assert_eq!(got.len(), 1, "{name} {ecs}: {got:?}");
        a += usize::from(got[0] == "192.0.2.1");
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_weight_per_service_changes_that_service_only() {
    let (g, backends) = start(true).await;
    for l in backends {
        serve_backend(l);
    }
    // TOML: wt0 has a at weight 0 (standby) for wt0 only; wt splits evenly.
    assert_eq!(share_a(&g, "wt0.gslb.test.").await, 0);
    let even = share_a(&g, "wt.gslb.test.").await;
    println!("wt, a:b = 100:100: {even}/400 to a");
    assert!((160..=240).contains(&even), "{even}/400 to a");
    warm(&g, "near.gslb.test.", Some(NEAR_A), "192.0.2.1").await;

    // Runtime, per service: a at 300 for wt (b stays 100): about 3/4 to a.
    let out = cli_ok(
        &g,
        &[
            "weight",
            "a",
            "300",
            "--service",
            "wt.gslb.test",
            "--reason",
            "shift",
        ],
    );
    assert!(out.contains("weight:a@wt.gslb.test."), "{out}");
    let heavy = share_a(&g, "wt.gslb.test.").await;
    println!("wt, a:b = 300:100: {heavy}/400 to a");
    assert!((265..=335).contains(&heavy), "{heavy}/400 to a");
    // The other services are untouched: wt0 keeps its TOML weight 0 for a.
    assert_eq!(share_a(&g, "wt0.gslb.test.").await, 0);

    // Weight 0 for wt only: a is a standby there, and nowhere else.
    cli_ok(&g, &["weight", "a", "0", "--service", "wt.gslb.test."]);
    assert_eq!(share_a(&g, "wt.gslb.test.").await, 0);
    assert_eq!(
        answer(&g, "near.gslb.test.", Some(NEAR_A)).await,
        ["192.0.2.1"]
    );

    // A runtime override of wt0's TOML weight: a at 100 for wt0 brings it back in.
    cli_ok(&g, &["weight", "a", "100", "--service", "wt0.gslb.test."]);
    let back = share_a(&g, "wt0.gslb.test.").await;
    assert!((160..=240).contains(&back), "{back}/400 to a");

    // Cleared: wt is even again.
    cli_ok(&g, &["weight", "a", "clear", "--service", "wt.gslb.test."]);
    assert_eq!(share_a(&g, "wt.gslb.test.").await, even);
    let s = status_region(&g, "a").await;
    assert_eq!(s["effective"]["weights"]["wt0.gslb.test."], 100, "{s:#}");
    assert_eq!(s["effective"]["weights"]["wt.gslb.test."], 100, "{s:#}");
    assert_eq!(changes(&g, "weight").await, 3.0);
    assert_eq!(changes(&g, "weight_clear").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_missing_and_wrong_tokens_unknown_targets_and_big_bodies() {
    let (g, backends) = start(true).await;
    for l in backends {
        serve_backend(l);
    }
    warm(&g, "near.gslb.test.", Some(NEAR_A), "192.0.2.1").await;
    let routes = [
        ("POST", "/api/v1/drain", json!({"region": "a"})),
        ("POST", "/api/v1/undrain", json!({"region": "a"})),
        (
            "POST",
            "/api/v1/weight",
            json!({"region": "a", "weight": 0}),
        ),
        (
            "POST",
            "/api/v1/force",
            json!({"region": "a", "address": "192.0.2.1", "state": "down"}),
        ),
        ("GET", "/api/v1/overrides", json!(null)),
    ];
    let wrong = [
        None,
        Some(String::new()),
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
    ];
    for (method, path, body) in &routes {
        for auth in &wrong {
            let (code, resp) = call(&g, method, path, auth.as_deref(), &body.to_string()).await;
            assert_eq!(code, 401, "{method} {path} with {auth:?}: {resp}");
        }
    }
    // Nothing changed: the same answer, no state file, no change counted.
    assert_eq!(
        answer(&g, "near.gslb.test.", Some(NEAR_A)).await,
        ["192.0.2.1"]
    );
    assert!(!g.dir.path().join("state/overrides.json").exists());
    let exp = scrape(&g).await;
    let total: f64 = exp
        .samples
        .iter()
        .filter(|s| s.name == "geode_admin_changes_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 0.0);
    // The CLI reports a wrong token and exits 1.
    let out = Command::new(GEODE)
        .args([
            "admin",
            "drain",
            "a",
            "--server",
            &format!("http://{}", g.http),
        ])
        .env("GEODE_ADMIN_TOKEN", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Names that do not exist: 404; names that do not go together or bad values: 400.
    let cases = [
        (
            "/api/v1/drain",
            json!({"region": "nowhere"}),
            404,
            "unknown region",
        ),
        (
            "/api/v1/undrain",
            json!({"region": "nowhere"}),
            404,
            "unknown region",
        ),
        (
            "/api/v1/weight",
            json!({"region": "a", "weight": 5, "service": "nope.gslb.test."}),
            404,
            "unknown service",
        ),
        (
            "/api/v1/force",
            json!({"region": "a", "address": "192.0.2.99", "state": "down"}),
            404,
            "has no endpoint",
        ),
        (
            "/api/v1/weight",
            json!({"region": "c", "weight": 5, "service": "wt.gslb.test."}),
            400,
            "does not list",
        ),
        (
            "/api/v1/force",
            json!({"region": "a", "address": "not-an-ip", "state": "down"}),
            400,
            "invalid address",
        ),
        (
            "/api/v1/force",
            json!({"region": "a", "address": "192.0.2.1", "state": "sideways"}),
            400,
            "expected up, down or clear",
        ),
        (
            "/api/v1/weight",
            json!({"region": "a", "weight": 2000000}),
            400,
            "at most",
        ),
        (
            "/api/v1/drain",
            json!({"region": "a", "for": "soon"}),
            400,
            "for:",
        ),
        ("/api/v1/drain", json!({"regoin": "a"}), 400, "invalid JSON"),
        (
            "/api/v1/weight",
            json!({"region": "a"}),
            400,
            "weight is required",
        ),
    ];
    for (path, body, want, text) in cases {
        let (code, resp) = post(&g, path, body.clone()).await;
        assert_eq!(code, want, "{path} {body}: {resp}");
        assert!(
            resp["error"].as_str().unwrap().contains(text),
            "{path} {body}: {resp}"
        );
    }
    let big = json!({"region": "a", "reason": "x".repeat(5000)}).to_string();
    let (code, _) = call(
        &g,
        "POST",
        "/api/v1/drain",
        Some(&format!("Bearer {TOKEN}")),
        &big,
    )
    .await;
    assert_eq!(code, 413);
    assert!(!g.dir.path().join("state/overrides.json").exists());
    assert_eq!(
        answer(&g, "near.gslb.test.", Some(NEAR_A)).await,
        ["192.0.2.1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_overrides_survive_reload_and_restart_and_dangle_when_their_target_goes() {
    let (la, pa) = backend().await;
    let (lb, pb) = backend().await;
    serve_backend(la);
    serve_backend(lb);
    let pc = dead_port();
    let (dir, path) = setup(&config(pa, pb, pc, true, "v=1"));
    let g = Geode::start_at(dir.clone(), &path, &[]);
    let near = "near.gslb.test.";
    post(
        &g,
        "/api/v1/drain",
        json!({"region": "a", "reason": "kept"}),
    )
    .await;
    post(
        &g,
        "/api/v1/force",
        json!({"region": "c", "address": "192.0.2.3", "state": "up"}),
    )
    .await;
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.2"]);
    let state = std::fs::read_to_string(dir.path().join("state/overrides.json")).unwrap();
    assert!(
        state.contains("drain:a") && state.contains("kept"),
        "{state}"
    );

    // Reload (a change that moves no answer): the overrides stay.
    std::fs::write(&path, config(pa, pb, pc, true, "v=2")).unwrap();
    g.signal("HUP");
    crate::assert_eventually!(
        10,
        g.logs().contains("config reloaded"),
        "no reload:\n{}",
        g.logs()
    );
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.2"]);
    assert_eq!(answer(&g, "fo.gslb.test.", None).await, ["192.0.2.3"]);

    // Restart on the same files: still drained and forced.
    assert!(g.stop().success());
    let g = Geode::start_at(dir.clone(), &path, &[]);
    assert_eq!(answer(&g, near, Some(NEAR_A)).await, ["192.0.2.2"]);
    assert_eq!(answer(&g, "fo.gslb.test.", None).await, ["192.0.2.3"]);
    assert_eq!(drained_metric(&g, "a").await, Some(1.0));

    // A reload whose config loses the endpoint: the force is kept, reported as dangling
    // in /status and the log, and has no effect; it can still be cleared.
    let lost = config(pa, pb, pc, true, "v=3").replace("192.0.2.3", "192.0.2.33");
    std::fs::write(&path, lost).unwrap();
    g.signal("HUP");
    crate::assert_eventually!(
        10,
        g.logs().contains("override is dangling"),
        "no dangling warning:\n{}",
        g.logs()
    );
    let (_, status) = g.http_get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let dangling = &status["admin"]["dangling"];
    assert_eq!(dangling[0]["target"], "force:c/192.0.2.3", "{status:#}");
    assert_eq!(answer(&g, "fo.gslb.test.", None).await, ["192.0.2.2"]);
    let (code, body) = post(
        &g,
        "/api/v1/force",
        json!({"region": "c", "address": "192.0.2.3", "state": "clear"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (_, status) = g.http_get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["admin"]["dangling"], json!([]), "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_absent_without_an_admin_section() {
    let (g, _backends) = start(false).await;
    for (method, path) in [("POST", "/api/v1/drain"), ("GET", "/api/v1/overrides")] {
        let (code, _) = call(
            &g,
            method,
            path,
            Some(&format!("Bearer {TOKEN}")),
            &json!({"region": "a"}).to_string(),
        )
        .await;
        assert_eq!(code, 404, "{method} {path}");
    }
    let (_, status) = g.http_get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["admin"]["enabled"], false);
}

#[test]
fn admin_token_file_readable_by_everyone_is_refused_at_start() {
    let (dir, path) = setup(&config(1, 2, 3, true, "v=1"));
    write_token(dir.path(), 0o644);
    let out = Command::new(GEODE)
        .args(["serve", "--config"])
        .arg(&path)
        .args([
            "--dns-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("admin.token_file") && stderr.contains("mode 0644"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN));
}

#[test]
fn admin_malformed_state_file_is_refused_at_start() {
    let (dir, path) = setup(&config(1, 2, 3, true, "v=1"));
    std::fs::write(dir.path().join("state/overrides.json"), "{\"version\": 1, ").unwrap();
    let out = Command::new(GEODE)
        .args(["serve", "--config"])
        .arg(&path)
        .args([
            "--dns-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("admin.state_file") && stderr.contains("fix or remove it"),
        "{stderr}"
    );
}
