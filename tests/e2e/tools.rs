//! External programs the end-to-end tests drive (unbound, delv, dig, prometheus, BIND's
//! tools): finding them, a free port for them, and stopping them when a test ends.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The path of `bin`; a test that needs a missing tool fails and says how to get it.
pub fn which(bin: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "{bin} is not installed: run .ci/run (it installs it with apt-get)"
    );
    path
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed and reaped when the test ends, also when it panics.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// unbound on loopback with subnetcache sending ECS (as a public resolver would) and a
/// stub zone for `gslb.example.` pointing at geode's UDP port. With `trust_anchor` (a
/// DNSKEY's presentation rdata) it also validates the zone against it.
pub fn start_unbound(
    dir: &Path,
    geode_port: u16,
    trust_anchor: Option<&str>,
) -> (Daemon, SocketAddr) {
    let unbound = which("unbound");
    let port = free_port();
    let conf = dir.join("unbound.conf");
    let (modules, anchor) = match trust_anchor {
        Some(key) => (
            "subnetcache validator iterator",
            format!("    val-log-level: 2\n    trust-anchor: \"gslb.example. DNSKEY {key}\"\n"),
        ),
        None => ("subnetcache iterator", String::new()),
    };
    std::fs::write(
        &conf,
        format!(
            r#"server:
    interface: 127.0.0.1
    port: {port}
    do-daemonize: no
    use-syslog: no
    logfile: ""
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    verbosity: 1
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "{modules}"
    send-client-subnet: 127.0.0.0/8
    max-client-subnet-ipv4: 24
    qname-minimisation: no
    harden-referral-path: no
    target-fetch-policy: "0 0 0 0 0"
{anchor}stub-zone:
    name: "gslb.example."
    stub-addr: 127.0.0.1@{geode_port}
"#,
            dir = dir.display(),
        ),
    )
    .unwrap();
    let d = Daemon(
        Command::new(unbound)
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound"),
    );
    (d, SocketAddr::from(([127, 0, 0, 1], port)))
}
