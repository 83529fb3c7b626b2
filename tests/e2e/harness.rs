//! Runs the real `geode` binary on port 0 and talks to it with real clients.
//!
//! The bound ports are read from the "listening on udp|tcp|http ADDR" log lines, as
//! hickory-dns's own server harness does; the process is killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hickory_net::DnsHandle;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::{DnsRequest, DnsRequestOptions, Edns, Message, Query};
use hickory_net::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;

/// Path of the geode binary cargo built for this test run.
pub const GEODE: &str = env!("CARGO_BIN_EXE_geode");

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// MaxMind's test City database, beside the repository.
pub fn maxmind_city() -> PathBuf {
    repo().join("tests/data/maxmind/GeoIP2-City-Test.mmdb")
}

/// Retries `$body` (an expression returning bool) until it holds or `$secs` pass.
#[macro_export]
macro_rules! assert_eventually {
    ($secs:expr, $body:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64($secs as f64);
        loop {
            if $body {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!($($msg)+);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// A running geode.
pub struct Geode {
    child: Option<Child>,
    /// UDP address (the first dns_listen).
    pub udp: SocketAddr,
    /// TCP address.
    pub tcp: SocketAddr,
    /// Admin HTTP address.
    pub http: SocketAddr,
    /// The config file it runs with.
    pub config: PathBuf,
    /// Scratch directory holding the config (kept alive with the process).
    pub dir: Arc<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
    /// Built once: building a client takes ~40 ms of CPU (TLS roots) in a debug build,
    /// and health tests run their backends on the same current-thread runtime, which a
    /// client built per request stalled every time /status or /metrics was read.
    client: reqwest::Client,
}

impl Geode {
    /// Writes `config` to a fresh directory and starts geode on it.
    pub fn start(config: &str) -> Geode {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let path = dir.path().join("geode.toml");
        std::fs::write(&path, config).expect("write config");
        Geode::start_at(dir, &path, &[])
    }

    /// Starts geode on an existing config file; `dir` is kept alive with it.
    pub fn start_at(dir: Arc<tempfile::TempDir>, config: &Path, extra: &[&str]) -> Geode {
        let mut args = vec![
            "--dns-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Geode::start_args(dir, config, &args)
    }

    /// Starts geode with exactly these arguments after `serve --config PATH` (no listen
    /// overrides added: a test of the file's own `dns_listen` passes only `--http-listen`).
    pub fn start_args(dir: Arc<tempfile::TempDir>, config: &Path, args: &[&str]) -> Geode {
        let mut child = Command::new(GEODE)
            .args(["serve", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info,hickory_server=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn geode");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                    let _ = tx.send(line);
                }
            });
        }
        let (mut udp, mut tcp, mut http) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let addr = |kind: &str| {
                        line.split(&format!("listening on {kind} "))
                            .nth(1)
                            .and_then(|a| SocketAddr::from_str(a.trim()).ok())
                    };
                    if udp.is_none() {
                        udp = addr("udp");
                    }
                    if tcp.is_none() {
                        tcp = addr("tcp");
                    }
                    if http.is_none() {
                        http = addr("http");
                    }
                    if line.contains(" ready") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("geode did not become ready; log:\n{}", log.lock().unwrap());
                }
            }
        }
        Geode {
            child: Some(child),
            udp: udp.expect("udp address logged"),
            tcp: tcp.expect("tcp address logged"),
            http: http.expect("http address logged"),
            config: config.to_path_buf(),
            dir,
            log,
            client: reqwest::Client::builder()
                .no_proxy()
                // No connection outlives the test runtime that opened it.
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
        }
    }

    /// Everything geode logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args(["-s", sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("geode did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A hickory-net UDP client.
    pub async fn udp_client(&self) -> Client<TokioRuntimeProvider> {
        let stream = UdpClientStream::builder(self.udp, TokioRuntimeProvider::default()).build();
        let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(bg);
        client
    }

    /// A hickory-net TCP client.
    pub async fn tcp_client(&self) -> Client<TokioRuntimeProvider> {
        let (stream, sender) =
            TcpClientStream::new(self.tcp, None, None, TokioRuntimeProvider::default());
        let (client, bg) =
            Client::<TokioRuntimeProvider>::new(stream.await.expect("tcp connect"), sender);
        tokio::spawn(bg);
        client
    }

    /// Sends one query (optionally with ECS) over UDP and returns the response.
    pub async fn query(&self, name: &str, rtype: RecordType, ecs: Option<&str>) -> Message {
        let client = self.udp_client().await;
        send(client, name, rtype, ecs).await
    }

    /// Same over TCP.
    pub async fn query_tcp(&self, name: &str, rtype: RecordType, ecs: Option<&str>) -> Message {
        let client = self.tcp_client().await;
        send(client, name, rtype, ecs).await
    }

    /// Runs dig against this server and returns its stdout.
    pub fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .arg(format!("@{}", self.udp.ip()))
            .args([
                "-p",
                &self.udp.port().to_string(),
                "+norec",
                "+time=2",
                "+tries=1",
            ])
            .args(args)
            .output()
            .expect("dig is installed (bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// GET on the admin server: (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .get(format!("http://{}{}", self.http, path))
            .send()
            .await
            .expect("http get");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Sends raw bytes over UDP; returns the reply, or None after `wait`.
    pub fn raw_udp(&self, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(wait)).unwrap();
        sock.send_to(packet, self.udp).unwrap();
        let mut buf = vec![0u8; 65535];
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }
}

impl Drop for Geode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Builds a query message with an optional ECS option (`"198.51.100.0/24"`).
pub fn query_message(name: &str, rtype: RecordType, ecs: Option<&str>) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
    msg.metadata.recursion_desired = false;
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(subnet) = ecs {
        edns.options_mut().insert(EdnsOption::Subnet(
            ClientSubnet::from_str(subnet).expect("subnet"),
        ));
    }
    msg.set_edns(edns);
    msg
}

/// Sends a message through a client and returns the response.
pub async fn send(
    mut client: Client<TokioRuntimeProvider>,
    name: &str,
    rtype: RecordType,
    ecs: Option<&str>,
) -> Message {
    let msg = query_message(name, rtype, ecs);
    let resp = client
        .send(DnsRequest::new(msg, DnsRequestOptions::default()))
        .next()
        .await
        .expect("a response")
        .expect("no transport error");
    let _ = &mut client;
    resp.into_message()
}

/// The A/AAAA addresses in a response, as strings, in order.
pub fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The ECS option of a response: (source prefix, scope prefix).
pub fn ecs_of(m: &Message) -> Option<(u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(cs) => Some((cs.source_prefix(), cs.scope_prefix())),
        _ => None,
    }
}

/// Plain query helper with class IN (for the ClientHandle API).
pub async fn plain(
    client: &mut Client<TokioRuntimeProvider>,
    name: &str,
    rtype: RecordType,
) -> Message {
    client
        .query(Name::from_str(name).unwrap(), DNSClass::IN, rtype)
        .await
        .expect("response")
        .into_message()
}

impl Geode {
    /// The exit status if the process has exited (crashed) already.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Geode {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}
