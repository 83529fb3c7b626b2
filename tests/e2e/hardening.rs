//! Issue 15, "no bad push, hostile packet or slow client takes geode down": one test per
//! defect, each against the real binary (DESIGN.md, "Reload safety rails").

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{GEODE, Geode, addrs};
use crate::metrics::{build_geoip, query_once, reloads};

const ZONE: &str = r#"
[zones."gslb.test."]
soa = { mname = "ns1.gslb.test.", rname = "hostmaster.gslb.test.", serial = 1, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }
ns = ["ns1.gslb.test."]
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]
"#;

fn service(addr: &str) -> String {
    format!(
        r#"
[regions.a]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "{addr}" }}]

[regions.b]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = [{{ address = "192.0.2.99" }}]

[services."www.gslb.test."]
regions = ["a", "b"]
"#
    )
}

async fn www(g: &Geode) -> (ResponseCode, Vec<String>) {
    let m = query_once(g, "www.gslb.test.", RecordType::A, None).await;
    (m.metadata.response_code, addrs(&m))
}

/// Waits until the success or failure reload counter passes `before`.
async fn await_reload(g: &Geode, result: &str, before: f64) {
    crate::assert_eventually!(
        15,
        reloads(g, result).await > before,
        "no {result} reload counted; log:\n{}",
        g.logs()
    );
}

// (2) An empty or comment-only config is never applied.
#[tokio::test]
async fn hardening_comment_only_config_is_refused_and_the_old_one_keeps_serving() {
    let g = Geode::start(&format!("{ZONE}{}", service("192.0.2.1")));
    assert_eq!(
        www(&g).await,
        (ResponseCode::NoError, vec!["192.0.2.1".into()])
    );
    let out = Command::new(GEODE)
        .args(["check", "--config"])
        .arg(g.dir.path().join("empty.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "a missing file is a bad config"
    );
    std::fs::write(g.dir.path().join("empty.toml"), "# nothing here yet\n").unwrap();
    let out = Command::new(GEODE)
        .args(["check", "--config"])
        .arg(g.dir.path().join("empty.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("no zone defined"), "{stderr}");
    assert!(stderr.contains("[zones."), "says what to add: {stderr}");

    let failed = reloads(&g, "failure").await;
    std::fs::write(&g.config, "# emptied by a bad push\n").unwrap();
    g.signal("HUP");
    await_reload(&g, "failure", failed).await;
    for _ in 0..5 {
        assert_eq!(
            www(&g).await,
            (ResponseCode::NoError, vec!["192.0.2.1".into()]),
            "the running config keeps answering; log:\n{}",
            g.logs()
        );
    }
}

// (2) A file written in place in two steps is not applied half-written.
#[tokio::test]
async fn hardening_file_written_in_two_steps_is_applied_once_whole() {
    // The settle time is long next to the gap between the two writes, so a loaded
    // machine cannot stretch the gap past it.
    let head = format!("[server]\nreload_settle = \"3s\"\n{ZONE}");
    let g = Geode::start(&format!("{head}{}", service("192.0.2.1")));
    assert_eq!(www(&g).await.1, ["192.0.2.1"]);
    let ok = reloads(&g, "success").await;
    let failed = reloads(&g, "failure").await;
    // Step 1: the zone alone (a valid file: the service is gone, www is NXDOMAIN).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&g.config)
        .unwrap();
    f.write_all(head.as_bytes()).unwrap();
    f.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Step 2: the rest, with a new address.
    f.write_all(service("192.0.2.2").as_bytes()).unwrap();
    drop(f);
    // Meanwhile, and until the new answer shows, www never stops answering.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (rcode, a) = www(&g).await;
        assert_eq!(
            rcode,
            ResponseCode::NoError,
            "a half-written file was applied; log:\n{}",
            g.logs()
        );
        if a == ["192.0.2.2"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never applied; log:\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reloads(&g, "success").await, ok + 1.0, "{}", g.logs());
    assert_eq!(reloads(&g, "failure").await, failed, "{}", g.logs());
}

// (8) Unbounded reads: a FIFO or a device is refused at once.
#[test]
fn hardening_check_refuses_fifos_and_devices_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("city.mmdb");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let config = dir.path().join("geode.toml");
    std::fs::write(
        &config,
        format!("[server]\ngeoip_db = \"city.mmdb\"\n{ZONE}"),
    )
    .unwrap();
    let run = |path: &Path| {
        let mut child = Command::new(GEODE)
            .args(["check", "--config"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                return (st.code(), err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("geode check {} hangs", path.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (code, err) = run(&config);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("server.geoip_db") && err.contains("FIFO"),
        "{err}"
    );
    let (code, err) = run(Path::new("/dev/urandom"));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

// (3) Idle and slow-header admin connections are closed; /healthz keeps answering.
#[tokio::test]
async fn hardening_admin_http_closes_idle_and_slow_header_connections() {
    let g = Geode::start(&format!("{ZONE}{}", service("192.0.2.1")));
    const EACH: usize = 100;
    let mut held = Vec::new();
    for i in 0..2 * EACH {
        let mut s = tokio::net::TcpStream::connect(g.http).await.unwrap();
        if i % 2 == 1 {
            // Slow headers: a request line and never the end of the head.
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        held.push(s);
    }
    let (status, _) = g.http_get("/healthz").await;
    assert_eq!(
        status,
        200,
        "/healthz answers while {} are held",
        held.len()
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut open = held.len();
    while open > 0 && Instant::now() < deadline {
        open = 0;
        for s in &mut held {
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                // A 408 or similar may come before the close.
                Ok(Ok(_)) => open += 1,
                Err(_) => open += 1,
            }
        }
        if open > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "admin connections still held {:.1} s after opening {}: {open}",
        started.elapsed().as_secs_f64(),
        held.len()
    );
    assert_eq!(open, 0, "idle/slow connections still held after 60 s");
    let (status, _) = g.http_get("/healthz").await;
    assert_eq!(status, 200);
}

/// A City database large enough that compiling it takes over a second: `n` IPv4 /24s
/// spread over the address space, each with its own coordinates, plus the test client's
/// network at `(lat, lon)`.
fn big_geoip(n: u32, lat: f64, lon: f64) -> Vec<u8> {
    let mut csv = String::from("network,continent,country,subdivision,lat,lon,city\n");
    csv.push_str(&format!("198.51.100.0/24,EU,IE,L,{lat},{lon},Client\n"));
    let mut x: u32 = 0x9e37_79b9;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n as usize {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let net = x & 0xffff_ff00;
        let first = net >> 24;
        // Public-looking unicast only, and never the client's network.
        if !(1..224).contains(&first) || first == 127 || first == 10 || (net >> 8) == 0xc63364 {
            continue;
        }
        if seen.insert(net) {
            let a = std::net::Ipv4Addr::from(net);
            let la = f64::from(x % 17_000) / 100.0 - 85.0;
            let lo = f64::from((x >> 8) % 35_000) / 100.0 - 175.0;
            csv.push_str(&format!("{a}/24,EU,DE,BE,{la},{lo},C{}\n", seen.len()));
        }
    }
    build_geoip(&csv).expect("build the large test database")
}

// (1) Rewriting or truncating the GeoIP database in place while it is compiled never
// crashes geode; the old database serves until a complete new one verifies.
#[tokio::test]
async fn hardening_geoip_rewritten_in_place_during_compile_never_crashes() {
    let t = Instant::now();
    let dublin = Arc::new(big_geoip(150_000, 53.35, -6.26));
    let ashburn = big_geoip(150_000, 39.04, -77.49);
    eprintln!(
        "built 2 databases of {} bytes in {:.1} s",
        dublin.len(),
        t.elapsed().as_secs_f64()
    );
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("city.mmdb");
    std::fs::write(&db, &*dublin).unwrap();
    let config = dir.path().join("geode.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ngeoip_db = \"city.mmdb\"\n{ZONE}{}",
            service("192.0.2.20").replace("192.0.2.99", "192.0.2.10")
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut g = Geode::start_at(dir, &config, &[]);
    eprintln!(
        "geode started (database compiled) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ask = |g: &Geode| {
        let g_udp = g.udp;
        async move {
            let client = crate::metrics::udp_once(g_udp, Duration::from_secs(2));
            let m = crate::metrics::try_query(
                &client,
                "www.gslb.test.",
                RecordType::A,
                Some("198.51.100.0/24"),
                Duration::from_secs(3),
            )
            .await
            .expect("geode answers");
            addrs(&m)
        }
    };
    assert_eq!(ask(&g).await, ["192.0.2.20"], "Dublin -> a");
    for round in 0..3 {
        // `cp dublin.mmdb city.mmdb`: rewritten in place (same inode), then a SIGHUP
        // starts compiling it at once; the file is cut short while that runs.
        std::fs::write(&db, &*dublin).unwrap();
        g.signal("HUP");
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .unwrap()
            .set_len(1_000_000)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            g.exited().is_none(),
            "round {round}: geode died: {:?}; log:\n{}",
            g.exited(),
            g.logs()
        );
        assert_eq!(
            ask(&g).await,
            ["192.0.2.20"],
            "round {round}: old database serves"
        );
    }
    // A complete new database, written in place, is picked up once it verifies.
    std::fs::write(&db, &ashburn).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(g.exited().is_none(), "geode died; log:\n{}", g.logs());
        if ask(&g).await == ["192.0.2.10"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new database never applied; log:\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(g.exited().is_none(), "geode died; log:\n{}", g.logs());
}

// (3) Out of file descriptors: probes that cannot open a socket are skipped, and a
// healthy endpoint is not marked down for it.
#[tokio::test]
async fn hardening_fd_exhaustion_does_not_mark_healthy_endpoints_down() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = backend.accept().await {
            held.push(s);
        }
    });
    let config = format!(
        r#"
[checks.tcp]
type = "tcp"
port = {port}
interval = "300ms"
timeout = "200ms"
rise = 1
fall = 1
{ZONE}
[regions.a]
endpoints = [{{ address = "192.0.2.1", check = "tcp", probe = "127.0.0.1:{port}" }}]

[regions.b]
endpoints = [{{ address = "192.0.2.99" }}]

[services."www.gslb.test."]
regions = ["a", "b"]
policy = "failover"
"#
    );
    let g = Geode::start(&config);
    crate::assert_eventually!(
        10,
        www(&g).await.1 == ["192.0.2.1"],
        "a is up; log:\n{}",
        g.logs()
    );
    let pid = g.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // A few descriptors of headroom, then admin connections take them all.
    let limit = open + 8;
    let ok = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) is installed")
        .success();
    assert!(ok, "prlimit failed");
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Ok(s) = tokio::net::TcpStream::connect(g.http).await {
            held.push(s);
        }
    }
    // Ten probe intervals with no descriptor to spare: the endpoint stays up.
    for _ in 0..15 {
        assert_eq!(
            www(&g).await.1,
            ["192.0.2.1"],
            "a healthy endpoint marked down for a local fd shortage; log:\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        g.logs().contains("probe skipped"),
        "the probe met EMFILE and said so; log:\n{}",
        g.logs()
    );
    drop(held);
}
