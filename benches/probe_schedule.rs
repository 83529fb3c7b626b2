//! Probe scheduler under load: 1,000 endpoints with a TCP check at a 1 s interval, probing
//! a few local listeners on 127.0.0.1, on the multi-threaded runtime for ~10 s. Reports how
//! late each probe started against its schedule (p50/p99/max) and the probe rate.
//!
//! The first round is reported apart: every endpoint is due within its first 100 ms, so it
//! is a deliberate burst. Lateness includes tokio's 1 ms timer resolution (deadlines are
//! rounded up to the next millisecond tick).
//!
//! `cargo bench --bench probe_schedule`; GEODE_BENCH_ENDPOINTS and GEODE_BENCH_SECS
//! override the defaults (1000, 10).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geode::health::{HealthTable, LatenessLog};
use geode::metrics::Metrics;
use tokio::net::TcpListener;

const LISTENERS: usize = 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A config with `n` endpoints in regions of 100, each probing one of `targets`. The
/// addresses handed out are in 198.18.0.0/15 (benchmarking range) and are never contacted:
/// every endpoint has `probe` pointing at a loopback listener.
fn config(n: usize, targets: &[std::net::SocketAddr]) -> String {
    let mut c = String::from(
        r#"
[zones."gslb.example."]
soa = { mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }
ns  = ["ns1.gslb.example."]

[checks.tcp]
type = "tcp"
port = 80
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2
"#,
    );
    for r in 0..n.div_ceil(100) {
        let _ = writeln!(
            c,
            "\n[regions.r{r:02}]\nlocation = {{ lat = 0.0, lon = 0.0 }}\nendpoints = ["
        );
        for i in (r * 100)..((r + 1) * 100).min(n) {
            let t = targets[i % targets.len()];
            let _ = writeln!(
                c,
                "  {{ address = \"198.18.{}.{}\", check = \"tcp\", probe = \"{t}\" }},",
                i / 250,
                i % 250 + 1
            );
        }
        c.push_str("]\n");
    }
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// User + system CPU seconds of this process (Linux), to put the probe rate in context.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU time the hypervisor gave to other guests (Linux /proc/stat "steal"), summed over
/// CPUs: lateness on a starved VM says little about the scheduler, so it is printed too.
fn steal_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?;
    Some(cpu.split_whitespace().nth(8)?.parse::<f64>().ok()? / 100.0)
}

fn main() {
    let n = env_or("GEODE_BENCH_ENDPOINTS", 1000) as usize;
    let secs = env_or("GEODE_BENCH_SECS", 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut targets = Vec::new();
        for _ in 0..LISTENERS {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
            targets.push(l.local_addr().expect("local addr"));
            tokio::spawn(async move {
                while let Ok((sock, _)) = l.accept().await {
                    drop(sock);
                }
            });
        }
        let text = config(n, &targets);
        let mut model = match geode::config::parse(&text, Path::new("bench.toml")) {
            Ok(l) => l.model,
            Err(e) => panic!("bench config rejected:\n{e}"),
        };
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let table = HealthTable::new(metrics);
        let log = Arc::new(LatenessLog::new());
        table.record_lateness(log.clone());

        let started = Instant::now();
        let round = table.sync(&mut model);
        let sync_took = started.elapsed();
        round.wait().await;
        let first_round = started.elapsed();
        let first = log.take();
        let up = table.status().iter().filter(|s| s.state == "up").count();

        // The second probe of each endpoint lands 0.5-1.5 intervals after its first; from
        // then on every endpoint is on its own phase grid, which is what is measured.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = log.take();

        let cpu0 = cpu_seconds();
        let steal0 = steal_seconds();
        let steady_from = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let mut steady = log.take();
        let elapsed = steady_from.elapsed();
        let cpu = cpu_seconds().zip(cpu0).map(|(a, b)| a - b);
        let steal = steal_seconds().zip(steal0).map(|(a, b)| a - b);
        table.shutdown();

        steady.sort();
        let rate = steady.len() as f64 / elapsed.as_secs_f64();
        println!("probe_schedule: {n} endpoints, tcp check, interval 1s, {LISTENERS} loopback listeners, multi-threaded runtime");
        println!(
            "  sync {:.1} ms; first round: {} probes, complete in {:.1} ms, {up}/{n} up; start lateness max {:.3} ms",
            ms(sync_took),
            first.len(),
            ms(first_round),
            ms(first.iter().max().copied().unwrap_or_default())
        );
        println!(
            "  steady state {:.1} s: {} probes, {:.0} probes/s (expected {n}/s)",
            elapsed.as_secs_f64(),
            steady.len(),
            rate
        );
        println!(
            "  start lateness vs schedule: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            ms(percentile(&steady, 0.50)),
            ms(percentile(&steady, 0.99)),
            ms(steady.last().copied().unwrap_or_default())
        );
        if let Some(cpu) = cpu {
            println!("  cpu: {:.2} s over {:.1} s ({:.1}% of one core)", cpu, elapsed.as_secs_f64(), cpu / elapsed.as_secs_f64() * 100.0);
        }
        if let Some(steal) = steal {
            println!("  hypervisor steal during the run: {steal:.2} cpu-seconds (non-zero: the numbers above are noisy)");
        }
    });
}
