//! The fleet end to end: real geode binaries as separate hosts in Linux network
//! namespaces, real HTTP backends (python3 -m http.server) in another namespace, paths cut
//! with nftables, queries and admin calls made from inside the namespaces.
//!
//! ```text
//!   ns br (bridge br0) ── veth ── g1 10.77.0.1   geode, secret S
//!                      ── veth ── g2 10.77.0.2   geode, secret S
//!                      ── veth ── g3 10.77.0.3   geode, secret S
//!                      ── veth ── g4 10.77.0.4   geode, a wrong secret
//!                      ── veth ── bk 10.77.0.11 (region near), 10.77.0.12 (region far)
//! ```
//!
//! Every namespace is private to the run (names carry the pid and a counter), so the
//! 10.77.0.0/24 addresses never meet the host's. The [`Fleet`] guard kills every process
//! and deletes every namespace on drop, also when an assertion panics.
//!
//! Needs root (namespaces, nftables): without it the test fails when CI=true and says it
//! was skipped otherwise.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_net::proto::op::{Message, ResponseCode};
use hickory_net::proto::rr::RecordType;
use serde_json::Value;

use crate::harness::{GEODE, addrs, query_message};

const NEAR: &str = "10.77.0.11";
const FAR: &str = "10.77.0.12";
const NAME: &str = "www.gslb.test.";
const SECRET: &str = "fleet-test-secret-0123456789abcdef";
const TOKEN: &str = "fleet-admin-token";
/// Probe interval and fall: a backend really down is down everywhere within
/// INTERVAL × FALL + 2 s (DESIGN.md "Fleet").
const INTERVAL_MS: u64 = 250;
const FALL: u64 = 2;
const STALE_AFTER_MS: u64 = 1500;

static RUN: AtomicUsize = AtomicUsize::new(0);

/// Runs a command, panicking with its stderr when it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a shell command inside namespace `ns`.
fn in_ns_sh(ns: &str, cmd: &str) {
    run(&["ip", "netns", "exec", ns, "sh", "-c", cmd]);
}

/// Moves the calling thread into namespace `ns` (sockets it opens live there).
fn enter(ns: &str) {
    let f = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns(2) on a namespace fd we hold open; it changes only this thread's
    // network namespace, and the thread is ours (spawned for this purpose).
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .expect("namespace thread")
}

/// One A query over UDP from the current namespace: Err on timeout.
fn query(server: SocketAddr) -> Result<(ResponseCode, Vec<String>), String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut msg = query_message(NAME, RecordType::A, None);
    let id = rand_id();
    msg.metadata.id = id;
    sock.send_to(&msg.to_vec().unwrap(), server)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("no answer from {server}: {e}"))?;
        let m = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        if m.metadata.id == id {
            return Ok((m.metadata.response_code, addrs(&m)));
        }
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u16
}

/// A plain HTTP/1.1 request from the current namespace: (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // hyper may answer with chunked encoding: undo it.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut b = String::new();
        let mut r = rest;
        while let Some((len, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            b.push_str(&tail[..n]);
            r = tail[n..].trim_start_matches("\r\n");
        }
        b
    } else {
        rest.to_string()
    };
    (status, body)
}

/// A process in a namespace, killed on drop.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(ns: &str, args: &[&str], dir: &Path) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info,hickory_server=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?} in {ns}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Proc { child, log }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One geode host.
struct Node {
    name: String,
    ns: String,
    ip: String,
    config: PathBuf,
    proc: Option<Proc>,
}

impl Node {
    fn dns(&self) -> SocketAddr {
        format!("{}:5353", self.ip).parse().unwrap()
    }
    fn http_addr(&self) -> SocketAddr {
        format!("{}:9153", self.ip).parse().unwrap()
    }
    fn get(&self, path: &str) -> (u16, String) {
        let addr = self.http_addr();
        let path = path.to_string();
        in_ns(&self.ns, move || http(addr, "GET", &path, &[], ""))
    }
    fn status(&self) -> Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
    fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
    fn admin(&self, path: &str, body: &str) -> (u16, String) {
        let addr = self.http_addr();
        let (path, body) = (path.to_string(), body.to_string());
        in_ns(&self.ns, move || {
            http(
                addr,
                "POST",
                &path,
                &[
                    ("Authorization", &format!("Bearer {TOKEN}")),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
        })
    }
    fn answer(&self) -> Result<(ResponseCode, Vec<String>), String> {
        let dns = self.dns();
        in_ns(&self.ns, move || query(dns))
    }
    /// The near endpoint's row in /status.
    fn near_probe(&self) -> Value {
        let s = self.status();
        s["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "near")
            .unwrap()["endpoints"][0]["probe"]
            .clone()
    }
    fn logs(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.log.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

/// The test network and everything running in it. Field order is drop order: query
/// loops stop, processes die, then the namespaces go.
struct Fleet {
    loops: Vec<QueryLoop>,
    nodes: Vec<Node>,
    backends: Vec<Option<Proc>>,
    net: Net,
    dir: tempfile::TempDir,
}

/// Namespaces of one run; deleted on drop (their veth ends go with them).
struct Net {
    namespaces: Vec<String>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Net {
    /// Adds host namespace `ns` on the bridge with `ips`.
    fn host(&mut self, br: &str, tag: &str, i: usize, ns: &str, ips: &[&str]) {
        run(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        let (a, b) = (format!("{tag}a{i}"), format!("{tag}b{i}"));
        run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        run(&["ip", "link", "set", &a, "netns", ns]);
        run(&["ip", "link", "set", &b, "netns", br]);
        in_ns_sh(
            br,
            &format!("ip link set {b} master br0 && ip link set {b} up"),
        );
        let mut cmd =
            format!("ip link set lo up && ip link set {a} name eth0 && ip link set eth0 up");
        for ip in ips {
            cmd.push_str(&format!(" && ip addr add {ip}/24 dev eth0"));
        }
        in_ns_sh(ns, &cmd);
    }
}

fn config(node: &str, ip: &str, peers: &[&str], secret_file: &str) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}:9153\"")).collect();
    format!(
        r#"
[server]
dns_listen = ["{ip}:5353"]
http_listen = "{ip}:9153"

[zones."gslb.test."]
soa = {{ mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1 }}
ns = ["ns1.gslb.test."]

[checks.web]
type = "http"
port = 8080
path = "/"
interval = "{INTERVAL_MS}ms"
timeout = "200ms"
rise = 2
fall = {FALL}

[regions.near]
endpoints = [{{ address = "{NEAR}", check = "web" }}]

[regions.far]
endpoints = [{{ address = "{FAR}", check = "web" }}]

[services."{NAME}"]
regions = ["near", "far"]
ttl = 5

[latency]
"cidr:10.77.0.0/24" = {{ near = 10, far = 80 }}

[admin]
token_file = "admin.token"
state_file = "state-{node}.json"

[cluster]
node = "{node}"
peers = [{peers}]
secret_file = "{secret_file}"
health = "quorum"
stale_after = "{STALE_AFTER_MS}ms"
"#,
        peers = peers.join(", ")
    )
}

/// A query every 20 ms to one instance from its own namespace, recording every timeout,
/// SERVFAIL or other failure; paused while that instance restarts.
struct QueryLoop {
    name: String,
    stop: Arc<AtomicBool>,
    /// Pauses and resumes so far (odd = paused): a query is counted only when no pause
    /// or resume happened while it was out (one sent just before a kill is not).
    pauses: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl QueryLoop {
    /// `t0`: the test's start, so failures line up with the phases it prints.
    fn start(node: &Node, t0: Instant) -> QueryLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let pauses = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (ns, dns) = (node.ns.clone(), node.dns());
        let thread = {
            let (stop, pauses, failures, count) = (
                stop.clone(),
                pauses.clone(),
                failures.clone(),
                count.clone(),
            );
            let start = t0;
            std::thread::spawn(move || {
                enter(&ns);
                while !stop.load(Ordering::Relaxed) {
                    let p = pauses.load(Ordering::SeqCst);
                    if p % 2 == 0 {
                        let r = query(dns);
                        if pauses.load(Ordering::SeqCst) == p {
                            count.fetch_add(1, Ordering::Relaxed);
                            let bad = match &r {
                                Ok((ResponseCode::NoError, a)) if !a.is_empty() => None,
                                other => Some(format!("{other:?}")),
                            };
                            if let Some(b) = bad {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{:.2}s: {b}", start.elapsed().as_secs_f64()));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        QueryLoop {
            name: node.name.clone(),
            stop,
            pauses,
            failures,
            count,
            thread: Some(thread),
        }
    }
}

impl Drop for QueryLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// True when running as root; otherwise fails under CI and returns false (the caller
/// returns, and the message says the test did not run).
fn root_or_fail() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let tools = ["ip", "nft", "python3"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if root && tools {
        return true;
    }
    let why = format!("fleet tests need root and ip, nft, python3 (root: {root}, tools: {tools})");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("SKIPPED (not a pass): {why}");
    false
}

impl Fleet {
    fn start() -> Fleet {
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let tag = format!("f{pid}{n}");
        let dir = tempfile::tempdir().unwrap();
        let mut net = Net {
            namespaces: Vec::new(),
        };
        let br = format!("geode-fleet-{pid}-{n}-br");
        run(&["ip", "netns", "add", &br]);
        net.namespaces.push(br.clone());
        in_ns_sh(
            &br,
            "ip link set lo up && ip link add br0 type bridge && ip link set br0 up",
        );
        let ns = |h: &str| format!("geode-fleet-{pid}-{n}-{h}");
        net.host(&br, &tag, 0, &ns("bk"), &[NEAR, FAR]);
        let names = ["g1", "g2", "g3", "g4"];
        for (i, name) in names.iter().enumerate() {
            net.host(
                &br,
                &tag,
                i + 1,
                &ns(name),
                &[&format!("10.77.0.{}", i + 1)],
            );
        }

        // Files: secrets and tokens readable by the owner only.
        let write_secret = |file: &str, text: &str| {
            let p = dir.path().join(file);
            std::fs::write(&p, format!("{text}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write_secret("cluster.key", SECRET);
        write_secret("wrong.key", "a-wrong-secret-of-enough-length-000");
        write_secret("admin.token", TOKEN);
        std::fs::create_dir(dir.path().join("www")).unwrap();

        let mut fleet = Fleet {
            loops: Vec::new(),
            nodes: Vec::new(),
            backends: vec![None, None],
            net,
            dir,
        };
        fleet.start_backend(0);
        fleet.start_backend(1);
        let ips: Vec<String> = (1..=4).map(|i| format!("10.77.0.{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            // g4 knows the others but holds a wrong secret; the others do not list it.
            let peers: Vec<&str> = if i == 3 {
                ips[..3].iter().map(String::as_str).collect()
            } else {
                ips[..3]
                    .iter()
                    .filter(|p| **p != ips[i])
                    .map(String::as_str)
                    .collect()
            };
            let secret = if i == 3 { "wrong.key" } else { "cluster.key" };
            let path = fleet.dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, config(name, &ips[i], &peers, secret)).unwrap();
            fleet.nodes.push(Node {
                name: name.to_string(),
                ns: ns(name),
                ip: ips[i].clone(),
                config: path,
                proc: None,
            });
        }
        for i in 0..4 {
            fleet.start_node(i);
        }
        for i in 0..4 {
            fleet.wait_ready(i);
        }
        fleet
    }

    fn start_backend(&mut self, i: usize) {
        let ip = [NEAR, FAR][i];
        let ns = self.net.namespaces[1].clone();
        let www = self.dir.path().join("www");
        self.backends[i] = Some(Proc::spawn(
            &ns,
            &[
                "python3",
                "-c",
                // http.server's own test(), with a listen backlog of 128 rather than 5:
                // probes whose SYN-ACKs an nftables cut drops stay half-open for a while.
                "import sys, http.server as h; h.ThreadingHTTPServer.request_queue_size = 128; \
                 h.test(HandlerClass=h.SimpleHTTPRequestHandler, ServerClass=h.ThreadingHTTPServer, \
                 port=8080, bind=sys.argv[1])",
                ip,
            ],
            &www,
        ));
        // Listening before anyone probes it (python takes a moment to start).
        let addr: SocketAddr = format!("{ip}:8080").parse().unwrap();
        let up = in_ns(&ns, move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        });
        assert!(up, "backend {ip} not listening after 10 s");
    }

    fn stop_backend(&mut self, i: usize) {
        self.backends[i] = None;
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let config = node.config.to_string_lossy().into_owned();
        node.proc = Some(Proc::spawn(
            &node.ns,
            &[GEODE, "serve", "--config", &config],
            self.dir.path(),
        ));
    }

    fn wait_ready(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = node.http_addr();
        loop {
            let ready = in_ns(&node.ns, move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    && http(addr, "GET", "/readyz", &[], "").0 == 200
            });
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = node.proc.as_mut().map(|p| p.child.try_wait()) {
                panic!("{} exited with {status}:\n{}", node.name, node.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in 20 s:\n{}",
                node.name,
                node.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds (or replaces) nftables rule set `table` in host `i`'s namespace: drop what
    /// comes in from `sources`.
    fn cut(&self, i: usize, table: &str, sources: &[&str]) {
        let ns = &self.nodes[i].ns;
        let _ = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "delete", "table", "inet", table])
            .stderr(Stdio::null())
            .status();
        in_ns_sh(
            ns,
            &format!(
                "nft add table inet {table} && nft add chain inet {table} input '{{ type filter hook input priority 0; }}' && nft add rule inet {table} input ip saddr {{ {} }} drop",
                sources.join(", ")
            ),
        );
    }

    fn heal(&self, i: usize, table: &str) {
        in_ns_sh(&self.nodes[i].ns, &format!("nft delete table inet {table}"));
    }

    /// Waits until every node in `which` answers `want`; returns how long it took.
    fn until_answers(&self, which: &[usize], want: &str, within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        let mut pending: Vec<usize> = which.to_vec();
        loop {
            pending.retain(|&i| {
                !matches!(self.nodes[i].answer(), Ok((ResponseCode::NoError, a)) if a == [want])
            });
            if pending.is_empty() {
                return start.elapsed();
            }
            if start.elapsed() > within {
                let got: Vec<_> = pending
                    .iter()
                    .map(|&i| (self.nodes[i].name.clone(), self.nodes[i].answer()))
                    .collect();
                let status: Vec<_> = pending
                    .iter()
                    .map(|&i| self.nodes[i].near_probe())
                    .collect();
                panic!(
                    "{what}: not {want} within {within:?}: {got:?}\nnear probe rows: {status:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Asserts every node in `which` keeps answering `want` for `how_long`.
    fn keeps_answering(&self, which: &[usize], want: &str, how_long: Duration, what: &str) {
        let start = Instant::now();
        while start.elapsed() < how_long {
            for &i in which {
                let got = self.nodes[i].answer();
                if !matches!(&got, Ok((ResponseCode::NoError, a)) if *a == [want]) {
                    let status = self.nodes[i].status();
                    let log = self.nodes[i].logs();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    panic!(
                        "{what}: {} answered {got:?} after {:?}, want {want}\nregions: {:#}\nlog (last lines first):\n{}",
                        self.nodes[i].name,
                        start.elapsed(),
                        status["regions"],
                        tail.join("\n")
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Fleet {
    /// Waits until every instance's own probes see both backends up again: each step
    /// starts from the same healthy fleet.
    fn settle(&self, what: &str) {
        for i in 0..3 {
            wait_for(Duration::from_secs(5), what, || {
                let s = self.nodes[i].status();
                s["regions"].as_array().unwrap().iter().all(|r| {
                    r["endpoints"][0]["probe"]["own_state"] == "up"
                        && r["endpoints"][0]["probe"]["state"] == "up"
                })
            });
        }
    }
}

fn wait_for(within: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Acceptance 1, 2, 3, 5 and 6 of the fleet (DESIGN.md "Fleet"), and 4 (overrides),
/// on one network: each step leaves the fleet as it found it.
#[test]
fn fleet_shares_health_verdicts_and_overrides_across_namespaces() {
    if !root_or_fail() {
        return;
    }
    let t0 = Instant::now();
    let mut f = Fleet::start();
    let shared = [0, 1, 2];
    let fall = Duration::from_millis(INTERVAL_MS * FALL);
    let stale = Duration::from_millis(STALE_AFTER_MS);

    // Everyone hears from everyone (g4 excepted), probes near up, and answers near.
    for i in 0..4 {
        wait_for(Duration::from_secs(5), "near up everywhere", || {
            let row = f.nodes[i].near_probe();
            row["own_state"] == "up" && row["state"] == "up"
        });
    }
    f.until_answers(&shared, NEAR, Duration::from_secs(5), "start");
    for i in shared {
        wait_for(stale * 2, "peers heard", || {
            let s = f.nodes[i].status();
            s["cluster"]["heard"]
                .as_array()
                .is_some_and(|h| h.len() == 2 && h.iter().all(|p| p["fresh"] == true))
        });
    }
    for i in 0..4 {
        f.loops.push(QueryLoop::start(&f.nodes[i], t0));
    }

    // 1. g1's path to the near backend is cut: g1's own probe says down, the combined
    //    verdict (2 of 3 up) keeps near in service on all three.
    f.cut(0, "pathcut", &[NEAR]);
    wait_for(
        fall + Duration::from_secs(3),
        "g1's own verdict down",
        || f.nodes[0].near_probe()["own_state"] == "down",
    );
    let row = f.nodes[0].near_probe();
    assert_eq!(row["state"], "up", "{row:#}");
    let votes = row["votes"].as_array().unwrap();
    assert!(
        votes.len() >= 2
            && votes
                .iter()
                .filter(|v| v["state"] == "up" && v["fresh"] == true)
                .count()
                == 2,
        "{row:#}"
    );
    let (_, explain) = f.nodes[0].get(&format!("/explain?name={NAME}&type=A&client=10.77.0.1"));
    assert!(
        explain.contains("differs from this instance's own probe"),
        "{explain}"
    );
    wait_for(Duration::from_secs(1), "geode_endpoint_votes on g1", || {
        let (_, metrics) = f.nodes[0].get("/metrics");
        metrics.contains(
            r#"geode_endpoint_votes{endpoint="10.77.0.11",region="near",verdict="down"} 1"#,
        ) && metrics
            .contains(r#"geode_endpoint_votes{endpoint="10.77.0.11",region="near",verdict="up"} 2"#)
    });
    let (_, metrics) = f.nodes[0].get("/metrics");
    assert!(
        metrics.contains(r#"geode_cluster_peer_up{peer="10.77.0.2:9153"} 1"#),
        "{metrics}"
    );
    assert!(!metrics.contains(SECRET), "secret in metrics");
    f.keeps_answering(&shared, NEAR, Duration::from_secs(2), "one vantage cut");
    f.heal(0, "pathcut");
    f.settle("g1's own verdict up again");

    // 2. The near backend really goes down: all three stop answering it within
    //    fall × interval + 2 s, and bring it back after it recovers.
    f.stop_backend(0);
    let down = f.until_answers(&shared, FAR, fall + Duration::from_secs(2), "backend down");
    eprintln!(
        "fleet: [{:.2}s] backend down -> all three answer far after {down:?}",
        t0.elapsed().as_secs_f64()
    );
    f.start_backend(0);
    let up = f.until_answers(&shared, NEAR, Duration::from_secs(5), "backend back");
    eprintln!(
        "fleet: [{:.2}s] backend back -> all three answer near after {up:?}",
        t0.elapsed().as_secs_f64()
    );
    f.settle("every instance's own verdict up after the recovery");

    // 3. g3 is partitioned from its peers: it keeps answering, and once its peers are
    //    stale it follows its own probes (its path to near cut too), while g1 and g2,
    //    for whom g3 is stale, keep near.
    f.cut(2, "partition", &["10.77.0.1", "10.77.0.2"]);
    f.keeps_answering(
        &[2],
        NEAR,
        stale + Duration::from_millis(500),
        "partitioned",
    );
    wait_for(Duration::from_secs(2), "g3 sees its peers stale", || {
        let s = f.nodes[2].status();
        s["cluster"]["heard"]
            .as_array()
            .is_some_and(|h| h.iter().all(|p| p["fresh"] == false))
    });
    f.cut(2, "partition", &["10.77.0.1", "10.77.0.2", NEAR]);
    let alone = f.until_answers(
        &[2],
        FAR,
        fall + Duration::from_secs(2),
        "partitioned g3 on its own probes",
    );
    eprintln!(
        "fleet: [{:.2}s] partitioned g3 follows its own probe after {alone:?}",
        t0.elapsed().as_secs_f64()
    );
    f.keeps_answering(
        &[0, 1],
        NEAR,
        Duration::from_secs(1),
        "g1, g2 with g3 stale",
    );
    f.heal(2, "partition");
    f.until_answers(&shared, NEAR, Duration::from_secs(5), "partition healed");
    f.settle("g3's own verdict up again");

    // 5. g4 holds a wrong secret: its messages are refused (401) and counted, it is
    //    heard by no one, and its drain changes nobody's answers. Forged messages
    //    (wrong signature, claiming four vantages see near down) change nothing either;
    //    a correctly signed but replayed (old) message is refused too.
    let unauthorized = r#"geode_cluster_messages_total{result="unauthorized"}"#;
    wait_for(Duration::from_secs(3), "g4 refused and counted", || {
        shared
            .iter()
            .all(|&i| f.nodes[i].metric(unauthorized) >= 1.0)
    });
    let (code, body) = f.nodes[3].admin(
        "/api/v1/drain",
        r#"{"region":"near","reason":"wrong secret"}"#,
    );
    assert_eq!(code, 200, "{body}");
    f.until_answers(&[3], FAR, Duration::from_secs(2), "g4 drains itself");
    let before: Vec<f64> = shared
        .iter()
        .map(|&i| f.nodes[i].metric(unauthorized))
        .collect();
    for fake in ["x1", "x2", "x3", "x4"] {
        let body = serde_json::json!({
            "node": fake, "seq": u64::MAX - 1, "sent_ms": geode::admin::now_ms(),
            "votes": [{"region": "near", "endpoint": NEAR, "verdict": "down"}],
            "overrides": [],
        })
        .to_string();
        let other = geode::model::Secret::new("a-wrong-secret-of-enough-length-000".into());
        let sig = geode::cluster::wire::sign(&other, body.as_bytes());
        for &i in &shared {
            let addr = f.nodes[i].http_addr();
            let (body, sig) = (body.clone(), sig.clone());
            let (code, _) = in_ns(&f.nodes[3].ns, move || {
                http(
                    addr,
                    "POST",
                    "/cluster/v1/state",
                    &[("X-Geode-Signature", &sig)],
                    &body,
                )
            });
            assert_eq!(code, 401);
            let addr = f.nodes[i].http_addr();
            let body = format!("{{\"node\":\"{fake}\"}}");
            let (code, _) = in_ns(&f.nodes[3].ns, move || {
                http(addr, "POST", "/cluster/v1/state", &[], &body)
            });
            assert_eq!(code, 401);
        }
    }
    // A message signed with the right secret but older than the window is a replay.
    let stale_msg = serde_json::json!({
        "node": "g2", "seq": 1, "sent_ms": 1_000,
        "votes": [{"region": "near", "endpoint": NEAR, "verdict": "down"}], "overrides": [],
    })
    .to_string();
    let right = geode::model::Secret::new(SECRET.into());
    let sig = geode::cluster::wire::sign(&right, stale_msg.as_bytes());
    let addr = f.nodes[0].http_addr();
    let (code, _) = in_ns(&f.nodes[3].ns, move || {
        http(
            addr,
            "POST",
            "/cluster/v1/state",
            &[("X-Geode-Signature", &sig)],
            &stale_msg,
        )
    });
    assert_eq!(code, 409);
    f.keeps_answering(&shared, NEAR, Duration::from_secs(2), "wrong secret");
    for (k, &i) in shared.iter().enumerate() {
        assert!(f.nodes[i].metric(unauthorized) >= before[k] + 8.0);
        let s = f.nodes[i].status();
        let heard = s["cluster"]["heard"].to_string();
        assert!(!heard.contains("g4") && !heard.contains("x1"), "{heard}");
        assert!(!s.to_string().contains(SECRET), "secret in /status");
        assert!(
            f.nodes[i].metric(r#"geode_cluster_messages_total{result="replayed"}"#)
                >= f64::from(u8::from(i == 0)),
        );
    }
    let (code, _) = f.nodes[3].admin("/api/v1/undrain", r#"{"region":"near"}"#);
    assert_eq!(code, 200);

    // 4. A drain on g1 reaches g2 and g3 within 2 s; it survives g2's restart (state
    //    file), and an undrain on g3 restores all.
    let (code, body) = f.nodes[0].admin(
        "/api/v1/drain",
        r#"{"region":"near","reason":"fleet test"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let drain = f.until_answers(&shared, FAR, Duration::from_secs(2), "drain propagation");
    eprintln!(
        "fleet: [{:.2}s] drain on g1 -> g1, g2, g3 answer far after {drain:?}",
        t0.elapsed().as_secs_f64()
    );
    eprintln!("fleet: [{:.2}s] restarting g2", t0.elapsed().as_secs_f64());
    f.loops[1].pauses.fetch_add(1, Ordering::SeqCst);
    f.nodes[1].proc = None;
    // A change made while g2 is down reaches it when it is back (from its peers).
    let (code, _) = f.nodes[2].admin(
        "/api/v1/weight",
        r#"{"region":"far","service":"www.gslb.test.","weight":7}"#,
    );
    assert_eq!(code, 200);
    f.start_node(1);
    f.wait_ready(1);
    f.loops[1].pauses.fetch_add(1, Ordering::SeqCst);
    eprintln!("fleet: [{:.2}s] g2 ready again", t0.elapsed().as_secs_f64());
    let got = f.nodes[1].answer();
    assert!(
        matches!(&got, Ok((ResponseCode::NoError, a)) if *a == [FAR]),
        "restarted g2 answered {got:?}: the drain did not survive the restart"
    );
    let caught_up = wait_for(
        Duration::from_secs(2),
        "g2 catches up from its peers",
        || {
            let (_, list) = f.nodes[1].get_with_token("/api/v1/overrides");
            let list: Value = serde_json::from_str(&list).unwrap_or_default();
            list.to_string().contains(r#""action":"weight","#)
                && list.to_string().contains(r#""value":7"#)
        },
    );
    eprintln!(
        "fleet: [{:.2}s] restarted g2 has the change made while it was down after {caught_up:?}",
        t0.elapsed().as_secs_f64()
    );
    let (code, _) = f.nodes[2].admin("/api/v1/undrain", r#"{"region":"near"}"#);
    assert_eq!(code, 200);
    let undrain = f.until_answers(&shared, NEAR, Duration::from_secs(2), "undrain propagation");
    eprintln!(
        "fleet: [{:.2}s] undrain on g3 -> all answer near after {undrain:?}",
        t0.elapsed().as_secs_f64()
    );
    // A drain with an expiry travels with it: every instance ends it on time.
    let (code, body) = f.nodes[1].admin(
        "/api/v1/drain",
        r#"{"region":"near","reason":"short","for":"2s"}"#,
    );
    assert_eq!(code, 200, "{body}");
    f.until_answers(
        &shared,
        FAR,
        Duration::from_secs(2),
        "timed drain propagation",
    );
    let ended = f.until_answers(&shared, NEAR, Duration::from_secs(4), "timed drain expiry");
    eprintln!(
        "fleet: [{:.2}s] a 2 s drain from g2 ended everywhere {ended:?} after it arrived",
        t0.elapsed().as_secs_f64()
    );

    // 6. No query of any loop timed out or failed during the whole test.
    for l in &f.loops {
        let failures = l.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{}: {} of {} queries failed: {:?}",
            l.name,
            failures.len(),
            l.count.load(Ordering::Relaxed),
            &failures[..failures.len().min(10)]
        );
        assert!(
            l.count.load(Ordering::Relaxed) > 100,
            "{} barely ran",
            l.name
        );
    }
    for n in &f.nodes {
        assert!(!n.logs().contains(SECRET), "secret in {}'s log", n.name);
    }
}

impl Node {
    fn get_with_token(&self, path: &str) -> (u16, String) {
        let addr = self.http_addr();
        let path = path.to_string();
        in_ns(&self.ns, move || {
            http(
                addr,
                "GET",
                &path,
                &[("Authorization", &format!("Bearer {TOKEN}"))],
                "",
            )
        })
    }
}

/// `[cluster]` is start-only: a reload that changes it is refused by name and nothing of
/// the file applies; the secret shows nowhere. Loopback only (no root needed).
#[tokio::test]
async fn fleet_cluster_change_on_reload_is_refused_by_name() {
    let (dir, _) = loopback_fleet(0);
    let text = |stale: &str| {
        format!(
            r#"{}
[cluster]
node = "solo"
peers = ["127.0.0.1:1"]
secret_file = "cluster.key"
stale_after = "{stale}"
"#,
            one_region()
        )
    };
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, text("2s")).unwrap();
    let g = tokio::task::spawn_blocking({
        let (dir, path) = (dir.clone(), path.clone());
        move || crate::harness::Geode::start_at(dir, &path, &[])
    })
    .await
    .unwrap();
    let status = |g: &crate::harness::Geode| {
        let g = g.http;
        async move {
            let body = reqwest::get(format!("http://{g}/status"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let s = status(&g).await;
    assert_eq!(s["cluster"]["stale_after_s"], 2.0, "{s:#}");
    assert_eq!(s["cluster"]["node"], "solo");

    // A change of stale_after: refused, named, nothing applied.
    let tmp = dir.path().join("geode.toml.tmp");
    std::fs::write(&tmp, text("3s")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    g.signal("HUP");
    crate::assert_eventually!(
        5,
        g.logs()
            .lines()
            .any(|l| l.contains("cluster changed") && l.contains("restart")),
        "the refusal names cluster:\n{}",
        g.logs()
    );
    let s = status(&g).await;
    assert_eq!(s["cluster"]["stale_after_s"], 2.0, "{s:#}");

    // The dead peer is down, and the secret is nowhere to be seen.
    let metrics = reqwest::get(format!("http://{}/metrics", g.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"geode_cluster_peer_up{peer="127.0.0.1:1"} 0"#),
        "{metrics}"
    );
    for (what, text) in [
        ("status", s.to_string()),
        ("metrics", metrics),
        ("log", g.logs()),
    ] {
        assert!(!text.contains(SECRET), "secret in {what}");
    }

    // Unsigned traffic is refused with 401 and counted; an oversized body gets 413.
    let client = reqwest::Client::new();
    let url = format!("http://{}/cluster/v1/state", g.http);
    let r = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .post(&url)
        .body(vec![b' '; geode::cluster::wire::MAX_MESSAGE + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let metrics = reqwest::get(format!("http://{}/metrics", g.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"geode_cluster_messages_total{result="unauthorized"} 1"#)
            && metrics.contains(r#"geode_cluster_messages_total{result="too_large"} 1"#),
        "{metrics}"
    );
}

/// A free loopback port (bound, then released for geode to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A zone and one service ([`NAME`]) on one region at [`NEAR`], for the loopback fleet tests that
/// only look at the cluster itself.
fn one_region() -> String {
    format!(
        r#"
[zones."gslb.test."]
soa = {{ mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1 }}
ns = ["ns1.gslb.test."]

[regions.near]
endpoints = [{{ address = "{NEAR}" }}]

[services."{NAME}"]
regions = ["near"]
"#
    )
}

/// A directory holding the fleet's `cluster.key` (mode 0600) and `n` free loopback
/// addresses for the instances' admin listeners.
fn loopback_fleet(n: usize) -> (Arc<tempfile::TempDir>, Vec<SocketAddr>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let secret = dir.path().join("cluster.key");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let admin = (0..n)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    (dir, admin)
}

/// Starts instance `node` of a [`loopback_fleet`] from its whole config `text`, with its
/// admin listener at `admin` and DNS on any free loopback port.
fn start_on_loopback(
    dir: &Arc<tempfile::TempDir>,
    node: &str,
    text: &str,
    admin: SocketAddr,
) -> crate::harness::Geode {
    let path = dir.path().join(format!("{node}.toml"));
    std::fs::write(&path, text).unwrap();
    let listen = admin.to_string();
    crate::harness::Geode::start_args(
        dir.clone(),
        &path,
        &["--dns-listen", "127.0.0.1:0", "--http-listen", &listen],
    )
}

/// Waits until `g` has heard `n` peers, each still fresh.
fn wait_heard(g: &crate::harness::Geode, n: usize) {
    wait_for(Duration::from_secs(5), "peers heard", || {
        let (_, body) = http(g.http, "GET", "/status", &[], "");
        let s: Value = serde_json::from_str(&body).unwrap_or_default();
        s["cluster"]["heard"]
            .as_array()
            .is_some_and(|h| h.len() == n && h.iter().all(|p| p["fresh"] == true))
    });
}

/// Every `[cluster] health` policy end to end, on loopback (no root needed): three
/// instances share one endpoint, whose probe target differs per instance, so instance a
/// sees it down (a closed port) while b and c see it up (a listening one).
#[test]
fn fleet_policies_combine_votes_on_loopback() {
    // The "up" backend: a TCP check only needs the connection to be accepted.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in backend.incoming() {
            drop(c);
        }
    });
    let down = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // (policy, what a / b / c answer)
    let table = [
        ("quorum", ["near", "near", "near"]),
        ("all", ["near", "near", "near"]),
        ("any", ["far", "far", "far"]),
        ("local", ["far", "near", "near"]),
    ];
    for (policy, want) in table {
        let (dir, admin) = loopback_fleet(3);
        let nodes = ["a", "b", "c"];
        let geodes: Vec<crate::harness::Geode> = (0..3)
            .map(|i| {
                let peers: Vec<String> = (0..3)
                    .filter(|&j| j != i)
                    .map(|j| format!("\"{}\"", admin[j]))
                    .collect();
                let probe = if i == 0 { down } else { up };
                let text = format!(
                    r#"
[zones."gslb.test."]
soa = {{ mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1 }}
ns = ["ns1.gslb.test."]

[checks.tcp]
type = "tcp"
port = 9
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1

[regions.near]
endpoints = [{{ address = "{NEAR}", check = "tcp", probe = "{probe}" }}]

[regions.far]
endpoints = [{{ address = "{FAR}" }}]

[services."{NAME}"]
regions = ["near", "far"]

[latency]
"cidr:127.0.0.0/8" = {{ near = 10, far = 80 }}

[cluster]
node = "{node}"
peers = [{peers}]
secret_file = "cluster.key"
health = "{policy}"
stale_after = "1s"
"#,
                    node = nodes[i],
                    peers = peers.join(", ")
                );
                start_on_loopback(&dir, nodes[i], &text, admin[i])
            })
            .collect();
        // Every instance hears both others.
        for g in &geodes {
            wait_heard(g, 2);
        }
        for (i, g) in geodes.iter().enumerate() {
            let want_ip = if want[i] == "near" { NEAR } else { FAR };
            wait_for(
                Duration::from_secs(3),
                &format!("{policy}: {} answers {}", nodes[i], want[i]),
                || matches!(query(g.udp), Ok((ResponseCode::NoError, a)) if a == [want_ip]),
            );
        }
        // And it holds (votes refreshed a few times over).
        std::thread::sleep(Duration::from_millis(600));
        for (i, g) in geodes.iter().enumerate() {
            let want_ip = if want[i] == "near" { NEAR } else { FAR };
            let got = query(g.udp);
            assert!(
                matches!(&got, Ok((ResponseCode::NoError, a)) if *a == [want_ip]),
                "{policy}: {} answered {got:?}, want {}",
                nodes[i],
                want[i]
            );
        }
        // a's own probe says down; what routing uses is the combined verdict.
        let (_, body) = http(geodes[0].http, "GET", "/status", &[], "");
        let s: Value = serde_json::from_str(&body).unwrap();
        let near = s["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "near")
            .unwrap();
        let row = &near["endpoints"][0]["probe"];
        assert_eq!(row["own_state"], "down", "{row:#}");
        let combined = if want[0] == "near" { "up" } else { "down" };
        assert_eq!(row["state"], combined, "{policy}: {row:#}");
    }
}

/// One `peers` list naming every instance, copied to each (the easy way to deploy):
/// each instance recognises its own entry and does not push to itself, so no message is
/// refused as carrying its own node name, and each still hears every other instance.
#[test]
fn a_peers_list_naming_every_instance_works_on_each_of_them() {
    let (dir, admin) = loopback_fleet(3);
    let all: Vec<String> = admin.iter().map(|a| format!("\"{a}\"")).collect();
    let nodes = ["a", "b", "c"];
    let geodes: Vec<crate::harness::Geode> = (0..3)
        .map(|i| {
            let text = format!(
                r#"{}
[cluster]
node = "{node}"
peers = [{peers}]
secret_file = "cluster.key"
stale_after = "1s"
"#,
                one_region(),
                node = nodes[i],
                peers = all.join(", ")
            );
            start_on_loopback(&dir, nodes[i], &text, admin[i])
        })
        .collect();
    for (i, g) in geodes.iter().enumerate() {
        wait_heard(g, 2);
        let (_, body) = http(g.http, "GET", "/status", &[], "");
        let s: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            s["cluster"]["self_in_peers"],
            serde_json::json!([admin[i].to_string()]),
            "{}",
            s["cluster"]
        );
    }
    // Several refresh rounds (stale_after / 4 = 250 ms) later: nothing was refused, and
    // only the two real peers have an up gauge, both up.
    std::thread::sleep(Duration::from_millis(800));
    for (i, g) in geodes.iter().enumerate() {
        let (_, m) = http(g.http, "GET", "/metrics", &[], "");
        for result in ["own_name", "unauthorized", "malformed", "replayed"] {
            let line = format!("geode_cluster_messages_total{{result=\"{result}\"}} 0");
            assert!(m.contains(&line), "{}: want {line}\n{m}", nodes[i]);
        }
        for (j, peer) in admin.iter().enumerate() {
            let gauge = format!("geode_cluster_peer_up{{peer=\"{peer}\"}}");
            let value = m
                .lines()
                .find_map(|l| l.strip_prefix(&gauge))
                .map(str::trim);
            let want = (i != j).then_some("1");
            assert_eq!(value, want, "{}: {gauge}", nodes[i]);
        }
        assert!(
            g.logs().contains("not sending to itself"),
            "{}: {}",
            nodes[i],
            g.logs()
        );
    }
}
