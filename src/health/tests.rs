//! Table tests: real probe tasks against local backends on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::probe::tests::{Reply, closed_port, hanging_backend, http_backend, http_check, reply};
use super::*;
use crate::model::{Check, CheckKind, Endpoint, KeyedTable, Region, ServerSettings};

struct Ep {
    address: &'static str,
    check: Option<u16>,
    probe: Option<SocketAddr>,
}

fn ep(address: &'static str, probe: SocketAddr) -> Ep {
    Ep {
        address,
        check: Some(0),
        probe: Some(probe),
    }
}

fn model(check: Check, regions: Vec<(&str, u32, Vec<Ep>)>) -> Model {
    Model {
        server: ServerSettings::for_tests(),
        zones: vec![],
        checks: vec![check],
        regions: regions
            .into_iter()
            .map(|(name, min_healthy, eps)| {
                let endpoints: Vec<Endpoint> = eps
                    .into_iter()
                    .map(|e| Endpoint {
                        address: e.address.parse().unwrap(),
                        check: e.check,
                        probe: e.probe,
                        health: Arc::new(HealthCell::default()),
                    })
                    .collect();
                Region {
                    name: name.into(),
                    location: None,
                    trig: None,
                    weight: 100,
                    min_healthy,
                    drain: false,
                    has_v4: endpoints.iter().any(|e| e.address.is_ipv4()),
                    has_v6: endpoints.iter().any(|e| e.address.is_ipv6()),
                    endpoints,
                }
            })
            .collect(),
        services: vec![],
        latency: KeyedTable::default(),
        client_networks: vec![],
        operator_networks: vec![],
    }
}

/// A fast check so the tests take a few hundred milliseconds.
fn fast(mut c: Check) -> Check {
    c.interval = Duration::from_millis(100);
    c.timeout = Duration::from_millis(80);
    c
}

fn tcp() -> Check {
    Check {
        name: "tcp".into(),
        kind: CheckKind::Tcp,
        ..fast(http_check(false, None))
    }
}

fn table() -> (Arc<HealthTable>, Arc<Metrics>) {
    let m = Arc::new(Metrics::new().unwrap());
    (HealthTable::new(m.clone()), m)
}

fn status_of(t: &HealthTable, endpoint: &str) -> EndpointStatus {
    t.status()
        .into_iter()
        .find(|s| s.endpoint == endpoint)
        .unwrap()
}

fn metrics_text(m: &Metrics) -> String {
    String::from_utf8(m.render().1).unwrap()
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the first round, then (so a CPU-starved test machine does not make the
/// tests flaky) for every endpoint to have a result. The first round's own bound is
/// tested apart, with timeouts that leave room.
async fn settle(t: &HealthTable, round: FirstRound) {
    round.wait().await;
    until("every endpoint has a result", || {
        t.status().iter().all(|s| s.state != "unknown")
    })
    .await;
}

fn cell(m: &Model, region: usize, i: usize) -> Arc<HealthCell> {
    m.regions[region].endpoints[i].health.clone()
}

#[tokio::test]
async fn sync_keeps_cells_of_unchanged_keys_and_drops_removed_ones() {
    let (t, _) = table();
    let (a, b, c) = (
        closed_port().await,
        closed_port().await,
        closed_port().await,
    );
    let mut m1 = model(
        tcp(),
        vec![("eu", 1, vec![ep("192.0.2.1", a), ep("192.0.2.2", b)])],
    );
    settle(&t, t.sync(&mut m1)).await;
    let mut m2 = model(
        tcp(),
        vec![("eu", 1, vec![ep("192.0.2.1", a), ep("192.0.2.3", c)])],
    );
    let round = t.sync(&mut m2);
    assert_eq!(round.new, 1);
    assert!(
        Arc::ptr_eq(&cell(&m1, 0, 0), &cell(&m2, 0, 0)),
        "unchanged key keeps its cell"
    );
    assert!(!Arc::ptr_eq(&cell(&m1, 0, 1), &cell(&m2, 0, 1)));
    // The kept cell still holds its state; the new one starts unknown.
    assert_eq!(cell(&m2, 0, 0).get(), Probed::Down);
    assert_eq!(cell(&m2, 0, 1).get(), Probed::Unknown);
    settle(&t, round).await;
    assert_eq!(cell(&m2, 0, 1).get(), Probed::Down);
    let eps: Vec<_> = t.status().into_iter().map(|s| s.endpoint).collect();
    assert_eq!(eps, ["192.0.2.1", "192.0.2.3"]);
    // A changed probe target is a different endpoint identity.
    let mut m3 = model(
        tcp(),
        vec![("eu", 1, vec![ep("192.0.2.1", b), ep("192.0.2.3", c)])],
    );
    let _ = t.sync(&mut m3);
    assert!(!Arc::ptr_eq(&cell(&m2, 0, 0), &cell(&m3, 0, 0)));
    assert!(Arc::ptr_eq(&cell(&m2, 0, 1), &cell(&m3, 0, 1)));
}

#[tokio::test]
async fn first_round_then_flips_follow_rise_and_fall() {
    let replying: Reply = Arc::new(Mutex::new(reply("200 OK", b"ok")));
    let (addr, _) = http_backend(replying.clone()).await;
    let (t, m) = table();
    let mut md = model(
        fast(http_check(false, Some("ok"))),
        vec![("eu", 1, vec![ep("192.0.2.1", addr)])],
    );
    settle(&t, t.sync(&mut md)).await;
    let c = cell(&md, 0, 0);
    assert_eq!(c.get(), Probed::Up, "one probe decides a new endpoint");
    let up = m.endpoint_up.with_label_values(&["eu", "192.0.2.1"]);
    let region_up = m.region_up.with_label_values(&["eu"]);
    let to_down = m
        .transitions
        .with_label_values(&["eu", "192.0.2.1", "down"]);
    let to_up = m.transitions.with_label_values(&["eu", "192.0.2.1", "up"]);
    assert_eq!(
        (up.get(), region_up.get(), to_up.get(), to_down.get()),
        (1, 1, 0, 0)
    );
    let s = status_of(&t, "192.0.2.1");
    assert_eq!(
        (s.state, s.last_result.as_deref(), s.check.as_deref()),
        ("up", Some("ok"), Some("web"))
    );
    assert_eq!(s.probe_target, Some(addr.to_string()));
    assert!(s.since.is_some() && s.last_probe_at.is_some() && s.last_probe_latency_ms.is_some());

    *replying.lock().unwrap() = reply("503 Service Unavailable", b"");
    until("down", || c.get() == Probed::Down).await;
    let s = status_of(&t, "192.0.2.1");
    assert_eq!(
        (s.state, s.last_result.as_deref()),
        ("down", Some("status 503"))
    );
    assert!(s.consecutive >= 2, "{s:?}");
    assert_eq!(
        (up.get(), region_up.get(), to_up.get(), to_down.get()),
        (0, 0, 0, 1)
    );

    *replying.lock().unwrap() = reply("200 OK", b"ok");
    until("up", || c.get() == Probed::Up).await;
    assert_eq!(
        (up.get(), region_up.get(), to_up.get(), to_down.get()),
        (1, 1, 1, 1)
    );
    let probes = m
        .probes
        .with_label_values(&["eu", "192.0.2.1", "success"])
        .get()
        + m.probes
            .with_label_values(&["eu", "192.0.2.1", "failure"])
            .get();
    assert_eq!(
        m.probe_histogram("eu", "192.0.2.1").get_sample_count(),
        probes
    );
}

#[tokio::test]
async fn first_round_waits_for_every_new_endpoint() {
    let (ok, _) = http_backend(Arc::new(Mutex::new(reply("200 OK", b"")))).await;
    let (t, _) = table();
    let mut check = http_check(false, None);
    check.timeout = Duration::from_millis(300);
    let eps = vec![ep("192.0.2.1", ok), ep("192.0.2.2", closed_port().await)];
    let mut md = model(check, vec![("eu", 1, eps)]);
    let round = t.sync(&mut md);
    assert_eq!(round.new, 2);
    round.wait().await;
    // No polling: once wait() returns, every new endpoint has its state.
    assert_eq!(
        (cell(&md, 0, 0).get(), cell(&md, 0, 1).get()),
        (Probed::Up, Probed::Down)
    );
}

#[tokio::test]
async fn first_round_wait_gives_up_at_its_deadline() {
    // A sender that is never dropped: an endpoint whose first result never comes.
    let (tx, rx) = mpsc::channel::<()>(1);
    let started = Instant::now();
    FirstRound {
        rx: Some(rx),
        deadline: started + Duration::from_millis(100),
        new: 1,
    }
    .wait()
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(tx);
}

#[tokio::test]
async fn a_hung_backend_is_down_with_the_timeout_in_words() {
    let addr = hanging_backend().await;
    let (t, _) = table();
    let mut md = model(
        fast(http_check(false, None)),
        vec![("eu", 1, vec![ep("192.0.2.1", addr)])],
    );
    settle(&t, t.sync(&mut md)).await;
    assert_eq!(cell(&md, 0, 0).get(), Probed::Down);
    assert_eq!(
        status_of(&t, "192.0.2.1").last_result.as_deref(),
        Some("timed out after 80ms")
    );
}

#[tokio::test]
async fn unchanged_endpoints_are_not_reprobed_on_sync() {
    let (addr, seen) = http_backend(Arc::new(Mutex::new(reply("200 OK", b"")))).await;
    let (t, _) = table();
    let mut check = fast(http_check(false, None));
    check.interval = Duration::from_secs(5);
    let mut m1 = model(check.clone(), vec![("eu", 1, vec![ep("192.0.2.1", addr)])]);
    settle(&t, t.sync(&mut m1)).await;
    assert_eq!(seen.connections.load(Ordering::Relaxed), 1);
    let mut m2 = model(check, vec![("eu", 1, vec![ep("192.0.2.1", addr)])]);
    let round = t.sync(&mut m2);
    assert!(round.rx.is_none(), "nothing new, nothing to wait for");
    round.wait().await;
    assert_eq!(cell(&m2, 0, 0).get(), Probed::Up);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.connections.load(Ordering::Relaxed),
        1,
        "no restarted probe task"
    );
}

#[tokio::test]
async fn removed_endpoints_stop_being_probed_and_lose_their_labels() {
    let (addr, seen) = http_backend(Arc::new(Mutex::new(reply("200 OK", b"")))).await;
    let (t, m) = table();
    let check = fast(http_check(false, None));
    let mut m1 = model(
        check.clone(),
        vec![("eu", 1, vec![ep("192.0.2.1", addr)]), ("us", 1, vec![])],
    );
    settle(&t, t.sync(&mut m1)).await;
    until("a second probe", || {
        seen.connections.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(metrics_text(&m).contains("endpoint=\"192.0.2.1\""));
    let mut m2 = model(check, vec![("us", 0, vec![])]);
    let _ = t.sync(&mut m2);
    let after = seen.connections.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(350)).await;
    // One probe may have been in flight when the task was stopped.
    assert!(seen.connections.load(Ordering::Relaxed) <= after + 1);
    let text = metrics_text(&m);
    assert!(!text.contains("192.0.2.1"), "{text}");
    assert!(!text.contains("region=\"eu\""), "{text}");
    assert!(text.contains("geode_region_up{region=\"us\"} 1"), "{text}");
    assert!(t.status().is_empty());
}

#[tokio::test]
async fn endpoints_without_a_check_are_up_and_count_for_the_region() {
    let dead = closed_port().await;
    let (t, m) = table();
    let unchecked = Ep {
        address: "2001:db8::1",
        check: None,
        probe: None,
    };
    let mut md = model(
        tcp(),
        vec![("eu", 2, vec![unchecked, ep("192.0.2.1", dead)])],
    );
    settle(&t, t.sync(&mut md)).await;
    assert_eq!(cell(&md, 0, 0).get(), Probed::Up);
    assert_eq!(
        m.endpoint_up
            .with_label_values(&["eu", "2001:db8::1"])
            .get(),
        1
    );
    // One of two required endpoints up: the region is down.
    assert_eq!(m.region_up.with_label_values(&["eu"]).get(), 0);
    let s = status_of(&t, "2001:db8::1");
    assert_eq!((s.state, s.check, s.probe_target), ("up", None, None));
    assert_eq!(
        status_of(&t, "192.0.2.1").last_result.as_deref(),
        Some("connection refused")
    );

    let unchecked = Ep {
        address: "2001:db8::1",
        check: None,
        probe: None,
    };
    let mut md = model(
        tcp(),
        vec![("eu", 1, vec![unchecked, ep("192.0.2.1", dead)])],
    );
    let _ = t.sync(&mut md);
    assert_eq!(
        m.region_up.with_label_values(&["eu"]).get(),
        1,
        "min_healthy applies on sync"
    );
}

#[tokio::test]
async fn status_serializes_to_the_documented_fields() {
    let (t, _) = table();
    let mut md = model(
        tcp(),
        vec![("eu", 1, vec![ep("192.0.2.1", closed_port().await)])],
    );
    settle(&t, t.sync(&mut md)).await;
    let v = serde_json::to_value(t.status()).unwrap();
    let row = &v[0];
    for field in [
        "region",
        "endpoint",
        "probe_target",
        "check",
        "state",
        "since",
        "last_result",
        "last_probe_latency_ms",
        "last_probe_at",
        "consecutive",
    ] {
        assert!(row.get(field).is_some(), "{field} missing in {row}");
    }
    assert_eq!(row["state"], "down");
    assert!(row["since"].as_f64().unwrap() > 1.7e9);
}

#[tokio::test]
async fn shutdown_stops_every_probe() {
    let (addr, seen) = http_backend(Arc::new(Mutex::new(reply("200 OK", b"")))).await;
    let (t, _) = table();
    let mut md = model(
        fast(http_check(false, None)),
        vec![("eu", 1, vec![ep("192.0.2.1", addr)])],
    );
    settle(&t, t.sync(&mut md)).await;
    t.shutdown();
    let after = seen.connections.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.connections.load(Ordering::Relaxed) <= after + 1);
    assert_eq!(cell(&md, 0, 0).get(), Probed::Up, "state is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_starts_are_recorded_when_asked() {
    let (t, _) = table();
    let log = Arc::new(LatenessLog::new());
    t.record_lateness(log.clone());
    let target = hanging_backend().await;
    let eps = vec![
        ep("192.0.2.1", target),
        ep("192.0.2.2", target),
        ep("192.0.2.3", target),
    ];
    let mut md = model(tcp(), vec![("eu", 1, eps)]);
    settle(&t, t.sync(&mut md)).await;
    let samples = log.take();
    assert_eq!(samples.len(), 3);
    // Lateness, not a timestamp: bounded by the settle wait. Not a timing bound: a
    // stalled host may start a probe late, and that is what the log is for.
    assert!(
        samples.iter().all(|d| *d < Duration::from_secs(5)),
        "{samples:?}"
    );
}
