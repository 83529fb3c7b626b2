//! A newcomer's first hour: the demo on another port, and every fatal error saying what
//! to do next, printed once.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::assert_eventually;
use crate::harness::{GEODE, Geode, repo};

/// A minimal valid config: one zone, no GeoIP, nothing probed.
const MINIMAL: &str = r#"
[server]
http_listen = ""

[zones."gslb.example."]
soa = { mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }
ns  = ["ns1.gslb.example."]
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]
"#;

/// Runs `geode serve` to its exit (it must fail to start) and returns its output.
fn serve_until_exit(cmd: &mut Command) -> Output {
    let child = cmd
        .env("RUST_LOG", "info,hickory_server=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn geode");
    let pid = child.id();
    // A watchdog instead of a timed assertion: a geode that wrongly keeps running is
    // killed after a generous minute, and the exit-code check below then fails.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    let out = child.wait_with_output().expect("wait for geode");
    let _ = tx.send(());
    out
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("geode.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The error line appears once (not a tracing ERROR plus the same text again).
fn assert_once(stderr: &str, needle: &str) {
    assert_eq!(
        stderr.matches(needle).count(),
        1,
        "{needle:?} printed exactly once; stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn demo_probes_follow_the_http_listener_it_is_given() {
    // The harness passes --http-listen 127.0.0.1:0: never the config's 9153.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let g = Geode::start_at(dir, &repo().join("config/example.toml"), &[]);
    assert_ne!(g.http.port(), 9153);
    let target = g.http.to_string();
    let mut last: String;
    assert_eventually!(
        20,
        {
            let (code, body) = g.http_get("/status").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let regions = v["regions"].as_array().cloned().unwrap_or_default();
            last = body;
            code == 200
                && regions.len() == 4
                && regions.iter().all(|r| {
                    r["up"] == true
                        && r["endpoints"].as_array().is_some_and(|eps| {
                            eps.iter().all(|e| {
                                e["probe"]["state"] == "up"
                                    && e["probe"]["probe_target"] == target.as_str()
                            })
                        })
                })
        },
        "every demo region up, probed at {target}; last /status:\n{last}"
    );
    assert!(
        !g.logs().contains("regions down"),
        "no region down at start:\n{}",
        g.logs()
    );
}

#[tokio::test]
async fn a_region_down_at_start_up_is_a_warning() {
    // A port nothing listens on: bind one, note it, close it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        r#"{MINIMAL}
[checks.web]
type = "tcp"
port = 1
interval = "1s"
timeout = "300ms"

[regions.lost]
endpoints = [{{ address = "192.0.2.10", check = "web", probe = "{closed}" }}]

[services."www.gslb.example."]
regions = ["lost"]
"#
    );
    let g = Geode::start(&config);
    let logs = g.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("regions down after the first probe round"))
        .unwrap_or_else(|| panic!("a start-up warning names the down regions:\n{logs}"));
    assert!(line.contains("WARN"), "at WARN: {line}");
    assert!(line.contains("lost"), "names the region: {line}");
    assert!(line.contains("/status"), "says where to look: {line}");
}

#[test]
fn dns_address_in_use_names_the_flag_to_change_it() {
    // Hold UDP and TCP on one port, as another DNS server would.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = udp.local_addr().unwrap();
    let _tcp = TcpListener::bind(addr).ok();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), MINIMAL);
    let out = serve_until_exit(
        Command::new(GEODE)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--dns-listen", &addr.to_string()]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1; stderr:\n{stderr}");
    assert_once(&stderr, "Address already in use");
    assert!(
        stderr.contains(&addr.to_string()),
        "names {addr}:\n{stderr}"
    );
    assert!(
        stderr.contains("--dns-listen"),
        "says what to do:\n{stderr}"
    );
}

#[test]
fn http_address_in_use_names_the_flag_to_change_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), MINIMAL);
    let out = serve_until_exit(
        Command::new(GEODE)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--dns-listen", "127.0.0.1:0", "--http-listen"])
            .arg(addr.to_string()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1; stderr:\n{stderr}");
    assert_once(&stderr, "Address already in use");
    assert!(
        stderr.contains("--http-listen"),
        "says what to do:\n{stderr}"
    );
}

#[test]
fn port_53_without_the_capability_points_at_cap_net_bind_service() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), MINIMAL);
    let mut cmd;
    let netns = || {
        Command::new("unshare")
            .args(["--net", "true"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if nix_is_root() && netns() {
        // As root (CI), take the capability away in a network namespace of our own: its
        // loopback is ours alone and its unprivileged-port floor is the default 1024.
        cmd = Command::new("unshare");
        cmd.args([
            "--net",
            "setpriv",
            "--bounding-set=-net_bind_service",
            "--inh-caps=-net_bind_service",
            GEODE,
        ]);
    } else {
        let floor = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .unwrap_or(1024);
        if floor <= 53 || nix_is_root() {
            eprintln!("skipped: this process may bind port 53 here (root, or floor {floor})");
            return;
        }
        cmd = Command::new(GEODE);
    }
    cmd.args(["serve", "--config"])
        .arg(&config)
        .args(["--dns-listen", "127.0.0.1:53"]);
    let out = serve_until_exit(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1; stderr:\n{stderr}");
    assert_once(&stderr, "Permission denied");
    assert!(
        stderr.contains("CAP_NET_BIND_SERVICE") && stderr.contains("deploy/systemd"),
        "says what to do:\n{stderr}"
    );
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_bad_config_at_serve_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[server]\nhttp_listn = \"x\"\n");
    let out = serve_until_exit(Command::new(GEODE).args(["serve", "--config"]).arg(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "exit 64; stderr:\n{stderr}");
    assert_once(&stderr, "server.http_listn: unknown key 'http_listn'");
}

#[test]
fn an_empty_geoip_db_means_no_geoip() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &MINIMAL.replace("http_listen = \"\"", "http_listen = \"\"\ngeoip_db = \"\""),
    );
    let out = Command::new(GEODE)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "geoip_db = \"\" is valid; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("geoip"), "and opens no database: {stdout}");
}

#[tokio::test]
async fn explain_answers_json_even_when_the_request_is_wrong() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let g = Geode::start_at(dir, &repo().join("config/example.toml"), &[]);
    for path in [
        "/explain?name=www.gslb.example.",
        "/explain",
        "/explain?name=www.gslb.example.&client=not-an-ip",
        "/explain?name=nothing.example.&client=192.0.2.1",
    ] {
        let (code, body) = g.http_get(path).await;
        assert!(
            (400..500).contains(&code),
            "{path}: 4xx, got {code}: {body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: JSON body ({e}): {body}"));
        let error = v["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{path}: an error message: {body}");
    }
    let (_, body) = g.http_get("/explain?name=www.gslb.example.").await;
    assert!(
        body.contains("client"),
        "names the missing parameter: {body}"
    );
}

#[tokio::test]
async fn status_is_readable_and_shows_the_last_failed_reload() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("geode.toml");
    std::fs::copy(repo().join("config/example.toml"), &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "../geoip/demo-city.mmdb",
        &repo().join("geoip/demo-city.mmdb").display().to_string(),
    );
    std::fs::write(&path, &text).unwrap();
    let g = Geode::start_at(dir.clone(), &path, &[]);
    let (code, body) = g.http_get("/status").await;
    assert_eq!(code, 200);
    assert!(
        body.lines().count() > 20 && body.lines().all(|l| l.len() < 200),
        "pretty-printed, so `| head` shows something:\n{body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["last_reload_failure"].is_null(), "{body}");

    std::fs::write(&path, text.replace("[server]", "[server]\nttl_typo = 1")).unwrap();
    g.signal("HUP");
    let mut last: String;
    assert_eventually!(
        20,
        {
            let (_, body) = g.http_get("/status").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            last = body;
            v["last_reload_failure"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("ttl_typo"))
                && v["last_reload_failure"]["at"]
                    .as_f64()
                    .is_some_and(|t| t > 0.0)
        },
        "the rejected reload shows in /status; last:\n{last}"
    );
}
