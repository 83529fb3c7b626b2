//! Active health checking through the real binary: local HTTP(S) backends that a test
//! switches at runtime between healthy, 503, refused, accept-and-hang and wrong body;
//! failover out of and back into DNS answers with measured times, `/status` reasons and
//! metrics, hysteresis against flapping, `when_all_down`, fences, `probe = "ip:port"`,
//! HTTPS with and without verification, `/readyz` after the first probe round, and a
//! reload that adds endpoints.
//!
//! Backends bind to 127.0.0.x only (all of 127/8 is loopback on Linux). Every wait is an
//! `assert_eventually!` with a generous deadline; the observed times are printed
//! (`cargo test --test e2e health -- --nocapture`) and only loosely bounded.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::RecordType;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;

use crate::harness::{GEODE, Geode, addrs};
use crate::metrics::{Exposition, query_once, scrape, try_query, udp_once};

// ---------------------------------------------------------------------------------------
// A switchable local backend
// ---------------------------------------------------------------------------------------

/// What the backend does with the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// `200 OK`, body "ok".
    Healthy = 0,
    /// `503 Service Unavailable`.
    Unavailable = 1,
    /// The listener is closed: connections are refused.
    Refused = 2,
    /// Accepts, reads the request, never answers.
    Hang = 3,
    /// `200 OK`, body "nope".
    WrongBody = 4,
    /// 200 "ok" and 503 in turn, one per request.
    Alternate = 5,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            0 => Mode::Healthy,
            1 => Mode::Unavailable,
            2 => Mode::Refused,
            3 => Mode::Hang,
            4 => Mode::WrongBody,
            _ => Mode::Alternate,
        }
    }
}

#[derive(Default)]
struct BackendState {
    mode: AtomicU8,
    /// Wakes the listener task after a mode change.
    wake: Notify,
    /// Whether a listener is bound right now.
    listening: AtomicBool,
    /// Requests read (whatever the answer).
    requests: AtomicUsize,
    /// Request counter of `Mode::Alternate`.
    turns: AtomicUsize,
    /// Host header of every request.
    hosts: Mutex<Vec<String>>,
}

impl BackendState {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }
}

/// A hand-written HTTP/1.1 (or HTTPS) server on 127.0.0.x whose behaviour a test switches.
struct Backend {
    addr: SocketAddr,
    state: Arc<BackendState>,
}

impl Backend {
    /// A plain HTTP backend on `ip` (a 127.0.0.x address), port chosen by the OS.
    async fn http(ip: &str, mode: Mode) -> Backend {
        Backend::start(ip, mode, None).await
    }

    /// An HTTPS backend with a fresh self-signed certificate for `www.test`.
    async fn https(ip: &str, mode: Mode) -> Backend {
        let cert = rcgen::generate_simple_self_signed(vec!["www.test".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Backend::start(ip, mode, Some(acceptor)).await
    }

    async fn start(ip: &str, mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(
            ip.is_loopback(),
            "test backends bind to loopback only: {ip}"
        );
        let listener = bind(SocketAddr::new(ip, 0)).expect("bind test backend");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState::default());
        state.mode.store(mode as u8, Ordering::SeqCst);
        state.listening.store(true, Ordering::SeqCst);
        tokio::spawn(supervise(listener, addr, state.clone(), tls));
        let b = Backend { addr, state };
        b.settle(mode).await;
        b
    }

    /// Switches the behaviour; returns once the listener matches it (closed for
    /// `Refused`, bound again otherwise).
    async fn set(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
        self.state.wake.notify_one();
        self.settle(mode).await;
    }

    async fn settle(&self, mode: Mode) {
        let want = mode != Mode::Refused;
        crate::assert_eventually!(
            5,
            self.state.listening.load(Ordering::SeqCst) == want,
            "backend {} did not {} within 5 s",
            self.addr,
            if want { "listen again" } else { "close" }
        );
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn hosts(&self) -> Vec<String> {
        self.state.hosts.lock().unwrap().clone()
    }
}

/// A listener with SO_REUSEADDR, so the port can be bound again right after it was
/// closed while earlier connections sit in TIME_WAIT.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(128)
}

/// Owns the listener: accepts while the mode is not `Refused`, drops the listener when it
/// becomes `Refused`, and binds the same port again when it stops being.
async fn supervise(
    first: TcpListener,
    addr: SocketAddr,
    state: Arc<BackendState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut next = Some(first);
    loop {
        if state.mode() == Mode::Refused {
            drop(next.take());
            state.listening.store(false, Ordering::SeqCst);
            state.wake.notified().await;
            continue;
        }
        let listener = match next.take() {
            Some(l) => l,
            None => {
                let give_up = Instant::now() + Duration::from_secs(5);
                loop {
                    match bind(addr) {
                        Ok(l) => break l,
                        Err(e) if Instant::now() > give_up => {
                            panic!("backend cannot bind {addr} again: {e}")
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        };
        state.listening.store(true, Ordering::SeqCst);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((sock, _)) = accepted else { continue };
                    let (state, tls) = (state.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            // A client that rejects the certificate aborts the handshake.
                            Some(acceptor) => {
                                if let Ok(s) = acceptor.accept(sock).await {
                                    serve(s, &state).await;
                                }
                            }
                            None => serve(sock, &state).await,
                        }
                    });
                }
                _ = state.wake.notified() => {
                    if state.mode() == Mode::Refused {
                        break;
                    }
                }
            }
        }
        // `listener` is dropped here: the port is closed before `listening` turns false.
    }
}

/// One request on one connection, answered as the current mode says, then closed.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, state: &BackendState) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&head).into_owned();
    if let Some(host) = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
    }) {
        state.hosts.lock().unwrap().push(host);
    }
    let (status, body) = match state.mode() {
        Mode::Healthy => ("200 OK", "ok"),
        Mode::Unavailable => ("503 Service Unavailable", "unavailable"),
        Mode::WrongBody => ("200 OK", "nope"),
        Mode::Alternate => {
            if state.turns.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                ("200 OK", "ok")
            } else {
                ("503 Service Unavailable", "unavailable")
            }
        }
        Mode::Hang => {
            // Hold the connection open without a byte; the test's runtime ends it.
            tokio::time::sleep(Duration::from_secs(120)).await;
            return;
        }
        // Accepted just before the switch: close without an answer.
        Mode::Refused => return,
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(reply.as_bytes()).await.is_ok() {
        let _ = s.flush().await;
        let _ = s.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Configs and helpers
// ---------------------------------------------------------------------------------------

/// The client every test speaks for (ECS); latency rows make `near` its nearest region.
const CLIENT: &str = "198.51.100.0/24";
/// The always-up address of region `far`.
const FAR: &str = "192.0.2.99";

/// Probe interval and timeout of these tests. A loopback probe takes about a
/// millisecond; the timeout is far above that so a host stalled by CPU steal (seen at
/// 95-99% for seconds on shared CI machines) does not fail a healthy probe and flip an
/// endpoint the test expects to stay up. The interval must exceed the timeout.
const INTERVAL: &str = "1s";
const TIMEOUT: &str = "800ms";
/// How long a probe-driven change may take before a test gives up: fall or rise 2 is
/// two intervals plus a timeout (about 3 s); the rest is slack for a stalled host.
const SWITCH: u64 = 10;

const ZONE: &str = r#"
[server]
dns_listen = ["127.0.0.1:0"]

[zones."gslb.test."]
ttl = 300
soa = { mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }
ns = ["ns1.gslb.test."]
records = [ { name = "ns1", type = "A", value = "192.0.2.53" } ]
"#;

/// An HTTP check named `name` expecting "ok" in the body.
fn http_check(
    name: &str,
    port: u16,
    interval: &str,
    timeout: &str,
    rise: u32,
    fall: u32,
) -> String {
    format!(
        r#"
[checks.{name}]
type = "http"
port = {port}
path = "/health"
interval = "{interval}"
timeout = "{timeout}"
rise = {rise}
fall = {fall}
expect_body = "ok"
"#
    )
}

/// `www.gslb.test.`: region `near` (the endpoints the caller writes out, as TOML inline
/// tables) and region `far` (always up), `near` being nearer to CLIENT.
fn near_far(checks: &str, near_endpoints: &str) -> String {
    format!(
        r#"{ZONE}
{checks}
[regions.near]
endpoints = [{near_endpoints}]

[regions.far]
endpoints = [{{ address = "{FAR}" }}]

[services."www.gslb.test."]
regions = ["near", "far"]

[latency]
"cidr:{CLIENT}" = {{ near = 10, far = 80 }}
"#
    )
}

/// Starts geode off the runtime thread: the backends run on this (current-thread)
/// runtime and must answer the first probe round while the harness waits for "ready".
async fn start(config: String) -> Geode {
    tokio::task::spawn_blocking(move || Geode::start(&config))
        .await
        .expect("geode start")
}

/// The A addresses `name` gets for CLIENT (NOERROR asserted).
async fn answer(g: &Geode, name: &str, client: &str) -> Vec<String> {
    let m = query_once(g, name, RecordType::A, Some(client)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    let mut a = addrs(&m);
    a.sort();
    a
}

async fn www(g: &Geode) -> Vec<String> {
    answer(g, "www.gslb.test.", CLIENT).await
}

/// GET /status as JSON.
async fn status(g: &Geode) -> Value {
    let (code, body) = g.http_get("/status").await;
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// The /status entry of endpoint `address` in `region`.
fn endpoint_of(st: &Value, region: &str, address: &str) -> Value {
    st["regions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == region))
        .and_then(|r| r["endpoints"].as_array())
        .and_then(|es| es.iter().find(|e| e["address"] == address))
        .cloned()
        .unwrap_or_else(|| panic!("/status has no endpoint {address} in {region}: {st}"))
}

/// The last probe result of an endpoint, as /status words it.
async fn last_result(g: &Geode, region: &str, address: &str) -> String {
    let e = endpoint_of(&status(g).await, region, address);
    e["probe"]["last_result"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Health metrics of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    to_up: f64,
    to_down: f64,
    up: f64,
    success: f64,
    failure: f64,
}

fn counters(exp: &Exposition, region: &str, endpoint: &str) -> Counters {
    let t = |to| {
        exp.value(
            "geode_health_transitions_total",
            &[("region", region), ("endpoint", endpoint), ("to", to)],
        )
    };
    let p = |result| {
        exp.value(
            "geode_health_probes_total",
            &[
                ("region", region),
                ("endpoint", endpoint),
                ("result", result),
            ],
        )
    };
    Counters {
        to_up: t("up"),
        to_down: t("down"),
        up: exp.value(
            "geode_endpoint_up",
            &[("region", region), ("endpoint", endpoint)],
        ),
        success: p("success"),
        failure: p("failure"),
    }
}

async fn counters_now(g: &Geode, region: &str, endpoint: &str) -> Counters {
    counters(&scrape(g).await, region, endpoint)
}

// ---------------------------------------------------------------------------------------
// (1) every failure mode takes the endpoint out of answers, and healthy brings it back
// ---------------------------------------------------------------------------------------

/// The endpoint probed at its own address: 127.0.0.2 on the backend's port.
const NEAR_EP: &str = "127.0.0.2";

/// [`INTERVAL`], [`TIMEOUT`], fall 2, rise 2: `mode` takes the endpoint out of the
/// answers within [`SWITCH`] s (printed; about two intervals), /status says `reason`,
/// the metrics move; healthy again brings it back after `rise` successes.
async fn fails_over_and_back(mode: Mode, reason: &str) {
    let backend = Backend::http(NEAR_EP, Mode::Healthy).await;
    let config = near_far(
        &http_check("web", backend.port(), INTERVAL, TIMEOUT, 2, 2),
        &format!(r#"{{ address = "{NEAR_EP}", check = "web" }}"#),
    );
    let g = start(config).await;
    assert_eq!(www(&g).await, [NEAR_EP], "healthy at start; {}", g.logs());
    let c0 = counters_now(&g, "near", NEAR_EP).await;
    assert_eq!((c0.up, c0.to_down, c0.to_up), (1.0, 0.0, 0.0), "{c0:?}");

    // Out.
    backend.set(mode).await;
    let t = Instant::now();
    crate::assert_eventually!(
        SWITCH,
        www(&g).await == [FAR],
        "{mode:?}: endpoint still answered 5 s after the switch; /status: {}",
        status(&g).await
    );
    let out = t.elapsed();
    // The latest probe's words. Eventually rather than at this instant: when the host
    // stalls, one probe of a failing backend can time out first (seen on a shared VM).
    crate::assert_eventually!(
        SWITCH,
        last_result(&g, "near", NEAR_EP).await == reason,
        "{mode:?}: /status last_result is not {reason:?}: {}",
        status(&g).await
    );
    let st = endpoint_of(&status(&g).await, "near", NEAR_EP);
    assert_eq!(st["up"], false, "{st}");
    assert_eq!(st["probe"]["state"], "down", "{st}");
    crate::assert_eventually!(
        3,
        {
            let c = counters_now(&g, "near", NEAR_EP).await;
            c.to_down == 1.0 && c.up == 0.0 && c.to_up == 0.0 && c.failure >= c0.failure + 2.0
        },
        "{mode:?}: transitions/endpoint_up did not move: {:?}",
        counters_now(&g, "near", NEAR_EP).await
    );
    let region_up = scrape(&g)
        .await
        .value("geode_region_up", &[("region", "near")]);
    assert_eq!(region_up, 0.0, "{mode:?}: geode_region_up{{near}}");

    // Back in.
    let c1 = counters_now(&g, "near", NEAR_EP).await;
    backend.set(Mode::Healthy).await;
    let t = Instant::now();
    crate::assert_eventually!(
        SWITCH,
        www(&g).await == [NEAR_EP],
        "{mode:?}: endpoint not back 5 s after the backend recovered; /status: {}",
        status(&g).await
    );
    let back = t.elapsed();
    crate::assert_eventually!(
        3,
        {
            let c = counters_now(&g, "near", NEAR_EP).await;
            c.to_up == 1.0 && c.to_down == 1.0 && c.up == 1.0
        },
        "{mode:?}: transitions/endpoint_up did not move back: {:?}",
        counters_now(&g, "near", NEAR_EP).await
    );
    let c2 = counters_now(&g, "near", NEAR_EP).await;
    assert!(
        c2.success >= c1.success + 2.0,
        "{mode:?}: back after rise = 2 successes: {c1:?} -> {c2:?}"
    );
    crate::assert_eventually!(
        SWITCH,
        last_result(&g, "near", NEAR_EP).await == "ok",
        "{mode:?}: /status last_result is not ok: {}",
        status(&g).await
    );
    let log = g.logs();
    assert!(
        log.lines()
            .any(|l| l.contains("endpoint health changed") && l.contains(reason)),
        "{mode:?}: the flip is logged:\n{log}"
    );
    eprintln!(
        "health failover [{mode:?}] interval {INTERVAL} fall 2 rise 2: out {:.0} ms, in {:.0} ms \
         (reason {reason:?})",
        out.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn health_http_503_fails_over_and_recovers() {
    fails_over_and_back(Mode::Unavailable, "status 503").await;
}

#[tokio::test]
async fn health_connection_refused_fails_over_and_recovers() {
    fails_over_and_back(Mode::Refused, "connection refused").await;
}

#[tokio::test]
async fn health_accept_and_hang_fails_over_and_recovers() {
    fails_over_and_back(Mode::Hang, "timed out after 800ms").await;
}

#[tokio::test]
async fn health_wrong_body_fails_over_and_recovers() {
    fails_over_and_back(Mode::WrongBody, "body does not contain 'ok'").await;
}

// ---------------------------------------------------------------------------------------
// (2) hysteresis: alternating results never flip with rise = fall = 3
// ---------------------------------------------------------------------------------------

/// One spurious failure among alternating results is three failures in a row, so this
/// test, unlike the others, must not see a healthy probe time out: its timeout is 1.5 s
/// and it watches ten probes rather than a fixed time.
#[tokio::test]
async fn health_alternating_endpoint_never_flips_with_rise_fall_three() {
    let backend = Backend::http(NEAR_EP, Mode::Healthy).await;
    let config = near_far(
        &http_check("web", backend.port(), "2s", "1500ms", 3, 3),
        &format!(r#"{{ address = "{NEAR_EP}", check = "web" }}"#),
    );
    let g = start(config).await;
    assert_eq!(www(&g).await, [NEAR_EP]);
    backend.set(Mode::Alternate).await;
    let c0 = counters_now(&g, "near", NEAR_EP).await;
    let requests0 = backend.requests();

    let t = Instant::now();
    let mut queries = 0;
    while backend.requests() - requests0 < 10 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "10 probes at 2s took over 60 s: {}",
            backend.requests() - requests0
        );
        let a = www(&g).await;
        assert_eq!(
            a,
            [NEAR_EP],
            "alternating endpoint left the answers after {:?}; /status: {}",
            t.elapsed(),
            status(&g).await
        );
        queries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c1 = counters_now(&g, "near", NEAR_EP).await;
    let probes = backend.requests() - requests0;
    eprintln!(
        "health alternating rise=fall=3 over {:.1} s: {probes} probes \
         (+{} ok, +{} failed), {queries} queries, transitions up {} down {}",
        t.elapsed().as_secs_f64(),
        c1.success - c0.success,
        c1.failure - c0.failure,
        c1.to_up,
        c1.to_down
    );
    assert_eq!(
        (c1.to_up, c1.to_down),
        (0.0, 0.0),
        "no flip counted: {c1:?}; log:\n{}",
        g.logs()
    );
    assert_eq!(c1.up, 1.0, "{c1:?}");
    // The backend really alternated: both results seen several times.
    assert!(
        c1.success - c0.success >= 4.0 && c1.failure - c0.failure >= 4.0,
        "expected ~5 of each in 10 probes: {c0:?} -> {c1:?}"
    );
    let st = endpoint_of(&status(&g).await, "near", NEAR_EP);
    assert_eq!(st["probe"]["state"], "up", "{st}");
    assert_eq!(
        st["probe"]["consecutive"], 1,
        "alternating: streaks of one: {st}"
    );
}

// ---------------------------------------------------------------------------------------
// (3) when_all_down, and fences
// ---------------------------------------------------------------------------------------

/// Regions r1 (192.0.2.1, .2) and r2 (192.0.2.11, .12), every endpoint probed at
/// `probe`; r2 is nearer to CLIENT, r1 comes first in `regions`. One service per
/// when_all_down mode.
fn all_down_config(probe: SocketAddr) -> String {
    let ep = |a: &str| format!(r#"{{ address = "{a}", check = "web", probe = "{probe}" }}"#);
    let mut services = String::new();
    for mode in ["all", "first", "nodata", "servfail"] {
        services.push_str(&format!(
            "\n[services.\"{mode}.gslb.test.\"]\nregions = [\"r1\", \"r2\"]\nwhen_all_down = \"{mode}\"\n"
        ));
    }
    format!(
        r#"{ZONE}
{checks}
[regions.r1]
endpoints = [{e1}, {e2}]

[regions.r2]
endpoints = [{e11}, {e12}]
{services}
[latency]
"cidr:{CLIENT}" = {{ r1 = 80, r2 = 10 }}
"#,
        checks = http_check("web", 80, INTERVAL, TIMEOUT, 2, 2),
        e1 = ep("192.0.2.1"),
        e2 = ep("192.0.2.2"),
        e11 = ep("192.0.2.11"),
        e12 = ep("192.0.2.12"),
    )
}

async fn all_probed_down(g: &Geode, endpoints: &[(&str, &str)]) -> bool {
    let st = status(g).await;
    endpoints
        .iter()
        .all(|(r, a)| endpoint_of(&st, r, a)["probe"]["state"] == "down")
}

async fn all_probed_up(g: &Geode, endpoints: &[(&str, &str)]) -> bool {
    let st = status(g).await;
    endpoints
        .iter()
        .all(|(r, a)| endpoint_of(&st, r, a)["probe"]["state"] == "up")
}

#[tokio::test]
async fn health_all_regions_down_follows_when_all_down() {
    let backend = Backend::http("127.0.0.3", Mode::Unavailable).await;
    let g = start(all_down_config(backend.addr)).await;
    let eps = [
        ("r1", "192.0.2.1"),
        ("r1", "192.0.2.2"),
        ("r2", "192.0.2.11"),
        ("r2", "192.0.2.12"),
    ];
    crate::assert_eventually!(
        SWITCH,
        all_probed_down(&g, &eps).await,
        "every endpoint should be down; /status: {}",
        status(&g).await
    );

    // all: fail open to the nearest region, its down endpoints included.
    assert_eq!(
        answer(&g, "all.gslb.test.", CLIENT).await,
        ["192.0.2.11", "192.0.2.12"],
        "all: nearest region (r2), fail open"
    );
    // first: the first region in `regions` order, though r2 is nearer.
    assert_eq!(
        answer(&g, "first.gslb.test.", CLIENT).await,
        ["192.0.2.1", "192.0.2.2"],
        "first: r1"
    );
    // nodata: NOERROR, no answer, SOA in AUTHORITY.
    let m = query_once(&g, "nodata.gslb.test.", RecordType::A, Some(CLIENT)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert!(m.answers.is_empty(), "nodata: no answers: {m:?}");
    assert_eq!(m.authorities.len(), 1, "nodata: one SOA: {m:?}");
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{m:?}");
    assert!(m.metadata.authoritative, "{m:?}");
    // servfail.
    let m = query_once(&g, "servfail.gslb.test.", RecordType::A, Some(CLIENT)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert!(m.answers.is_empty(), "{m:?}");

    // Recovery: every mode answers the nearest healthy region again.
    backend.set(Mode::Healthy).await;
    let t = Instant::now();
    for name in ["all", "first", "nodata", "servfail"] {
        let name = format!("{name}.gslb.test.");
        crate::assert_eventually!(
            SWITCH,
            {
                let m = query_once(&g, &name, RecordType::A, Some(CLIENT)).await;
                m.metadata.response_code == ResponseCode::NoError && {
                    let mut a = addrs(&m);
                    a.sort();
                    a == ["192.0.2.11", "192.0.2.12"]
                }
            },
            "{name}: not back on r2 after recovery; /status: {}",
            status(&g).await
        );
    }
    eprintln!(
        "health when_all_down: every service back on the nearest region {:.0} ms after recovery",
        t.elapsed().as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn health_fence_is_never_crossed_when_everything_inside_is_down() {
    let backend = Backend::http("127.0.0.3", Mode::Unavailable).await;
    let probe = backend.addr;
    let config = format!(
        r#"{ZONE}
{checks}
[regions.eu]
endpoints = [
  {{ address = "192.0.2.31", check = "web", probe = "{probe}" }},
  {{ address = "192.0.2.32", check = "web", probe = "{probe}" }},
]

[regions.us]
endpoints = [{{ address = "192.0.2.41" }}]

[services."fenced.gslb.test."]
regions = ["eu", "us"]
when_all_down = "all"
fence = {{ "cidr:10.20.0.0/16" = ["eu"] }}
"#,
        checks = http_check("web", 80, INTERVAL, TIMEOUT, 2, 2),
    );
    let g = start(config).await;
    crate::assert_eventually!(
        SWITCH,
        all_probed_down(&g, &[("eu", "192.0.2.31"), ("eu", "192.0.2.32")]).await,
        "eu should be down; /status: {}",
        status(&g).await
    );
    // Unfenced client: eu is down, us is up and answers.
    assert_eq!(
        answer(&g, "fenced.gslb.test.", CLIENT).await,
        ["192.0.2.41"]
    );
    // Fenced client: only eu, down, fail open inside the fence; never us.
    for _ in 0..5 {
        assert_eq!(
            answer(&g, "fenced.gslb.test.", "10.20.1.0/24").await,
            ["192.0.2.31", "192.0.2.32"],
            "a fenced client must get only the fenced region, down or not"
        );
    }
    // Once eu recovers, the fenced client gets eu's endpoints because they are up.
    backend.set(Mode::Healthy).await;
    crate::assert_eventually!(
        SWITCH,
        all_probed_up(&g, &[("eu", "192.0.2.31"), ("eu", "192.0.2.32")]).await,
        "eu back up; /status: {}",
        status(&g).await
    );
    assert_eq!(
        answer(&g, "fenced.gslb.test.", "10.20.1.0/24").await,
        ["192.0.2.31", "192.0.2.32"]
    );
}

// ---------------------------------------------------------------------------------------
// (4) probe = "ip:port": hand out one address, probe another
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn health_probe_elsewhere_takes_the_handed_out_address_out() {
    let backend = Backend::http("127.0.0.3", Mode::Healthy).await;
    let config = near_far(
        &http_check("web", 80, INTERVAL, TIMEOUT, 2, 2),
        &format!(
            r#"{{ address = "192.0.2.10", check = "web", probe = "{}" }}"#,
            backend.addr
        ),
    );
    let g = start(config).await;
    assert_eq!(www(&g).await, ["192.0.2.10"]);
    let st = endpoint_of(&status(&g).await, "near", "192.0.2.10");
    assert_eq!(
        st["probe"]["probe_target"],
        backend.addr.to_string(),
        "{st}"
    );
    assert!(
        backend.requests() >= 1,
        "the probe reached the local backend"
    );
    assert!(
        backend.hosts().iter().all(|h| h == "192.0.2.10"),
        "Host header names the handed-out address: {:?}",
        backend.hosts()
    );

    backend.set(Mode::Unavailable).await;
    let t = Instant::now();
    crate::assert_eventually!(
        SWITCH,
        www(&g).await == [FAR],
        "192.0.2.10 still answered; /status: {}",
        status(&g).await
    );
    let out = t.elapsed();
    crate::assert_eventually!(
        SWITCH,
        last_result(&g, "near", "192.0.2.10").await == "status 503",
        "/status last_result is not the 503: {}",
        status(&g).await
    );
    backend.set(Mode::Healthy).await;
    let t = Instant::now();
    crate::assert_eventually!(
        SWITCH,
        www(&g).await == ["192.0.2.10"],
        "192.0.2.10 not back; /status: {}",
        status(&g).await
    );
    eprintln!(
        "health probe elsewhere (192.0.2.10 probed at {}): out {:.0} ms, in {:.0} ms",
        backend.addr,
        out.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}

// ---------------------------------------------------------------------------------------
// (5) HTTPS against a self-signed backend
// ---------------------------------------------------------------------------------------

/// The same [`TIMEOUT`] as the other tests: a TLS handshake to a loopback backend (debug
/// build) was seen taking 600 ms on a shared VM while the host stole its CPU.
#[tokio::test]
async fn health_https_self_signed_up_without_verification_down_with_it() {
    let backend = Backend::https("127.0.0.4", Mode::Healthy).await;
    let probe = backend.addr;
    let config = format!(
        r#"{ZONE}
[checks.insecure]
type = "https"
host = "www.test"
path = "/health"
interval = "{INTERVAL}"
timeout = "{TIMEOUT}"
expect_body = "ok"
tls_verify = false

[checks.verified]
type = "https"
host = "www.test"
path = "/health"
interval = "{INTERVAL}"
timeout = "{TIMEOUT}"
expect_body = "ok"

[regions.sec]
endpoints = [{{ address = "192.0.2.50", check = "insecure", probe = "{probe}" }}]

[regions.vsec]
endpoints = [{{ address = "192.0.2.60", check = "verified", probe = "{probe}" }}]

[regions.far]
endpoints = [{{ address = "{FAR}" }}]

[services."insecure.gslb.test."]
regions = ["sec", "far"]

[services."verified.gslb.test."]
regions = ["vsec", "far"]

[latency]
"cidr:{CLIENT}" = {{ sec = 10, vsec = 10, far = 80 }}
"#
    );
    let g = start(config).await;
    crate::assert_eventually!(
        SWITCH,
        answer(&g, "insecure.gslb.test.", CLIENT).await == ["192.0.2.50"],
        "tls_verify = false: self-signed backend should be up; /status: {}",
        status(&g).await
    );
    let st = status(&g).await;
    let sec = endpoint_of(&st, "sec", "192.0.2.50");
    assert_eq!(sec["probe"]["state"], "up", "{sec}");
    assert_eq!(sec["probe"]["last_result"], "ok", "{sec}");

    assert_eq!(
        answer(&g, "verified.gslb.test.", CLIENT).await,
        [FAR],
        "verification on: self-signed backend is down"
    );
    let vsec = endpoint_of(&st, "vsec", "192.0.2.60");
    assert_eq!(vsec["probe"]["state"], "down", "{vsec}");
    let why = vsec["probe"]["last_result"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("certificate verify failed"),
        "/status names the verification failure: {vsec}"
    );
    eprintln!("health https with verification: {why:?}");
}

// ---------------------------------------------------------------------------------------
// (6) /readyz only after the first probe round
// ---------------------------------------------------------------------------------------

/// A geode started by hand (the harness waits for "ready", this test must not); killed
/// on drop.
struct Unready {
    child: Child,
    /// Log lines without colour codes, with the time each was read.
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Drop for Unready {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Unready {
    fn spawn(config: &std::path::Path) -> Unready {
        let mut child = Command::new(GEODE)
            .args(["serve", "--config"])
            .arg(config)
            .args([
                "--dns-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info,hickory_server=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn geode");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push((Instant::now(), line));
            }
        });
        Unready { child, log }
    }

    /// The address of the "listening on KIND ADDR" line and when it was read, once logged.
    fn listening(&self, kind: &str) -> Option<(SocketAddr, Instant)> {
        let needle = format!("listening on {kind} ");
        self.log.lock().unwrap().iter().find_map(|(at, line)| {
            let a = line.split(&needle).nth(1)?;
            Some((SocketAddr::from_str(a.trim()).ok()?, *at))
        })
    }

    /// Waits up to 30 s for [`Unready::listening`].
    async fn await_listening(&self, kind: &str) -> (SocketAddr, Instant) {
        crate::assert_eventually!(
            30,
            self.listening(kind).is_some(),
            "no 'listening on {kind}' line; log:\n{}",
            self.text()
        );
        self.listening(kind).unwrap()
    }

    fn text(&self) -> String {
        let log = self.log.lock().unwrap();
        let lines: Vec<&str> = log.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }
}

#[tokio::test]
async fn health_readyz_turns_200_only_after_the_first_probe_round() {
    // The only checked endpoint hangs: its first probe takes the whole 1500ms timeout.
    let backend = Backend::http("127.0.0.5", Mode::Hang).await;
    let config = near_far(
        &http_check("web", 80, "3s", "1500ms", 2, 2),
        &format!(
            r#"{{ address = "192.0.2.10", check = "web", probe = "{}" }}"#,
            backend.addr
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, config).unwrap();
    let geode = Unready::spawn(&path);
    let (http, http_at) = geode.await_listening("http").await;

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (mut not_ready, mut first_200) = (0u32, None);
    let give_up = Instant::now() + Duration::from_secs(15);
    while Instant::now() < give_up {
        if let Ok(r) = client.get(format!("http://{http}/readyz")).send().await {
            let code = r.status().as_u16();
            if code == 200 {
                first_200 = Some(Instant::now());
                break;
            }
            assert_eq!(code, 503, "/readyz before ready");
            let body = r.text().await.unwrap_or_default();
            assert!(body.contains("not ready"), "{body}");
            not_ready += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_200 =
        first_200.unwrap_or_else(|| panic!("/readyz never 200; log:\n{}", geode.text()));
    let waited = first_200 - http_at;
    eprintln!(
        "health readyz: {not_ready} x 503, then 200 {:.0} ms after the admin socket was bound \
         (first probe round bounded by the 1500ms timeout)",
        waited.as_secs_f64() * 1e3
    );
    assert!(not_ready > 0, "/readyz said 503 while the first round ran");
    // The hanging probe cannot finish before its 1500ms timeout, and the admin socket is
    // bound before the round starts (margin for reading the log line late).
    assert!(
        waited >= Duration::from_millis(1200),
        "/readyz 200 only {waited:?} after the admin socket: before the first round ended"
    );

    // Log order: the first probe's result, then "ready".
    let (udp, _) = geode.await_listening("udp").await;
    crate::assert_eventually!(
        5,
        geode
            .text()
            .lines()
            .any(|l| l.trim_end().ends_with(" ready")),
        "no ready line; log:\n{}",
        geode.text()
    );
    let log = geode.text();
    let lines: Vec<&str> = log.lines().collect();
    let first = lines.iter().position(|l| {
        l.contains("endpoint down at first probe") && l.contains("timed out after 1500ms")
    });
    let ready = lines.iter().position(|l| l.trim_end().ends_with(" ready"));
    match (first, ready) {
        (Some(f), Some(r)) => assert!(f < r, "first probe result after 'ready':\n{log}"),
        _ => panic!("missing first-probe or ready line:\n{log}"),
    }

    // The first answer already respects health.
    let m = try_query(
        &udp_once(udp, Duration::from_secs(2)),
        "www.gslb.test.",
        RecordType::A,
        Some(CLIENT),
        Duration::from_secs(3),
    )
    .await
    .expect("query");
    assert_eq!(addrs(&m), [FAR], "{m:?}");
}

// ---------------------------------------------------------------------------------------
// (7) a reload that adds endpoints probes them before handing them out
// ---------------------------------------------------------------------------------------

/// Writes `text` to a temporary name beside `path`, then renames it over `path`.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn health_reload_probes_new_endpoints_before_handing_them_out() {
    let good = Backend::http("127.0.0.6", Mode::Healthy).await;
    let failing = Backend::http("127.0.0.6", Mode::Unavailable).await;
    let hanging = Backend::http("127.0.0.6", Mode::Hang).await;
    let fresh = Backend::http("127.0.0.6", Mode::Healthy).await;
    let ep = |a: &str, b: &Backend| {
        format!(
            r#"{{ address = "{a}", check = "web", probe = "{}" }}"#,
            b.addr
        )
    };
    let check = http_check("web", 80, INTERVAL, TIMEOUT, 2, 2);
    let v1 = near_far(&check, &ep("192.0.2.10", &good));
    let v2 = near_far(
        &check,
        &[
            ep("192.0.2.10", &good),
            ep("192.0.2.11", &failing),
            ep("192.0.2.12", &hanging),
            ep("192.0.2.13", &fresh),
        ]
        .join(", "),
    );
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, &v1).unwrap();
    let g = {
        let (dir, path) = (dir.clone(), path.clone());
        tokio::task::spawn_blocking(move || Geode::start_at(dir, &path, &[]))
            .await
            .unwrap()
    };
    assert_eq!(www(&g).await, ["192.0.2.10"]);

    // Query without pause from before the reload until well after it.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let watcher = {
        let (stop, seen, udp) = (stop.clone(), seen.clone(), g.udp);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let client = udp_once(udp, Duration::from_secs(2));
                if let Ok(m) = try_query(
                    &client,
                    "www.gslb.test.",
                    RecordType::A,
                    Some(CLIENT),
                    Duration::from_secs(3),
                )
                .await
                {
                    seen.lock().unwrap().push(addrs(&m));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let h0 = status(&g).await["config"]["hash"].clone();
    replace_file(&path, &v2);
    g.signal("HUP");
    let t = Instant::now();
    crate::assert_eventually!(
        10,
        status(&g).await["config"]["hash"] != h0,
        "reload not applied; log:\n{}",
        g.logs()
    );
    let reload = t.elapsed();
    // The healthy new endpoint was probed during the reload: in the answers at once.
    let t = Instant::now();
    crate::assert_eventually!(
        3,
        www(&g).await == ["192.0.2.10", "192.0.2.13"],
        "healthy new endpoint not handed out; /status: {}",
        status(&g).await
    );
    let fresh_in = t.elapsed();
    // Three probe intervals more of the failing ones failing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let leaked: Vec<_> = seen
        .iter()
        .filter(|a| a.iter().any(|x| x == "192.0.2.11" || x == "192.0.2.12"))
        .collect();
    eprintln!(
        "health reload: new config live {:.0} ms after SIGHUP, healthy new endpoint in answers \
         {:.0} ms after that; {} queries across the reload, {} with a failing new endpoint",
        reload.as_secs_f64() * 1e3,
        fresh_in.as_secs_f64() * 1e3,
        seen.len(),
        leaked.len()
    );
    assert!(seen.len() > 20, "the watcher queried: {}", seen.len());
    assert!(
        leaked.is_empty(),
        "a failing new endpoint was handed out: {leaked:?}; log:\n{}",
        g.logs()
    );
    // Each failing endpoint reports its own reason. Eventually, not at one instant: when
    // the host stalls, a probe of the 503 backend can time out first (seen on a shared VM).
    crate::assert_eventually!(
        SWITCH,
        endpoint_of(&status(&g).await, "near", "192.0.2.11")["probe"]["last_result"]
            == "status 503",
        "503 backend: {}",
        status(&g).await
    );
    crate::assert_eventually!(
        SWITCH,
        endpoint_of(&status(&g).await, "near", "192.0.2.12")["probe"]["last_result"]
            == "timed out after 800ms",
        "hanging backend: {}",
        status(&g).await
    );

    // Not vacuous: once its backend recovers, the new endpoint is handed out.
    failing.set(Mode::Healthy).await;
    crate::assert_eventually!(
        SWITCH,
        www(&g).await.contains(&"192.0.2.11".to_string()),
        "192.0.2.11 not handed out after its backend recovered; /status: {}",
        status(&g).await
    );
}

// ---------------------------------------------------------------------------------------
// Issue 15 (13): a failing TLS verification is one line per flip, not one per probe
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn health_tls_verification_failure_logs_once_not_per_probe() {
    let backend = Backend::https("127.0.0.4", Mode::Healthy).await;
    let probe = backend.addr;
    let config = format!(
        r#"{ZONE}
[checks.verified]
type = "https"
host = "www.test"
path = "/health"
interval = "500ms"
timeout = "400ms"

[regions.vsec]
endpoints = [{{ address = "192.0.2.60", check = "verified", probe = "{probe}" }}]

[regions.far]
endpoints = [{{ address = "{FAR}" }}]

[services."verified.gslb.test."]
regions = ["vsec", "far"]
"#
    );
    let g = start(config).await;
    let failures = |e: &Exposition| {
        e.value(
            "geode_health_probes_total",
            &[
                ("region", "vsec"),
                ("endpoint", "192.0.2.60"),
                ("result", "failure"),
            ],
        )
    };
    crate::assert_eventually!(
        20,
        failures(&scrape(&g).await) >= 6.0,
        "six failed probes; log:\n{}",
        g.logs()
    );
    let logs = g.logs();
    let verifier = logs
        .lines()
        .filter(|l| l.contains("rustls_platform_verifier") || l.contains("failed to verify TLS"))
        .count();
    assert_eq!(verifier, 0, "the verifier's own ERROR lines:\n{logs}");
    let about = logs.lines().filter(|l| l.contains("192.0.2.60")).count();
    assert_eq!(about, 1, "one line for the endpoint going down:\n{logs}");
}
