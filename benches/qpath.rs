//! The fast path over the `geo` workload in a plain loop, for instruction counts: criterion
//! times (benches/fast.rs) move by ±40% on a shared VM, callgrind's counts do not.
//!
//! ```sh
//! sed "s|^geoip_db *=.*|geoip_db = \"$PWD/geoip/demo-city.mmdb\"|" bench/geode-bench.toml \
//!     > /tmp/demo-bench.toml
//! cargo bench --bench qpath --no-run          # prints the binary's path
//! QPATH_CONFIG=/tmp/demo-bench.toml valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='qpath::run' target/release/deps/qpath-HASH 2
//! ```
//!
//! `QPATH_WORKLOAD` names another message file (default bench/data/geo.bin, e.g.
//! bench/data/realistic.bin), `QPATH_LIMIT` keeps its first N messages.
//!
//! Arguments: rounds over the 3,000 messages (default 1), then KiB of memory to touch
//! between queries as a stand-in for the kernel's cache footprint (default 0).
//! Counts cover the warm-up round too: divide by 3,000 x (rounds + 1).
//! `QPATH_CONFIG` names the config (default bench/geode-bench.toml, the full
//! GeoLite2-City: ~9 minutes to load under callgrind; a copy pointing `geoip_db` at
//! geoip/demo-city.mmdb loads in seconds and exercises the same code). Without valgrind
//! it prints wall time per query.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use geode::dns::fast;
use geode::metrics::Metrics;
use geode::snapshot::Snapshot;

mod common;

/// The measured loop; `--toggle-collect` names it, so it is never inlined.
#[inline(never)]
fn run(
    snap: &Snapshot,
    metrics: &Metrics,
    msgs: &[Vec<u8>],
    rounds: usize,
    touch: &mut [u8],
) -> (usize, u64) {
    let mut out = Vec::with_capacity(1232);
    let mut memo = geode::route::RouteMemo::default();
    let src = IpAddr::from([127, 0, 0, 1]);
    let lines = touch.len() / 64;
    let mut replies = 0;
    for r in 0..rounds {
        for (i, m) in msgs.iter().enumerate() {
            if fast::answer(snap, metrics, &mut memo, m, src, &mut out) != fast::Fast::Fallback {
                replies += 1;
            }
            for j in 0..16.min(lines) {
                let x = (i * 7919 + r + j * 97) % lines;
                touch[x * 64] = touch[x * 64].wrapping_add(1);
            }
        }
    }
    (replies, memo.hits())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::env::var_os("QPATH_CONFIG")
        .map_or_else(|| root.join("bench/geode-bench.toml"), PathBuf::from);
    let (loaded, geo) = geode::state::load(&config, None).unwrap_or_else(|e| {
        panic!(
            "{} does not load (run bench/fetch-geolite2.sh first):\n{e}",
            config.display()
        )
    });
    let metrics = Metrics::new().expect("metrics");
    let snap = Snapshot::build(
        geode::snapshot::HealthAttached::unprobed(loaded),
        geo,
        &metrics,
    );
    let workload = std::env::var_os("QPATH_WORKLOAD")
        .map_or_else(|| root.join("bench/data/geo.bin"), PathBuf::from);
    let mut msgs = common::load_messages(&workload).unwrap_or_else(|| {
        panic!(
            "{} missing: python3 bench/gen-workload.py (see bench/README.md)",
            workload.display()
        )
    });
    if let Some(limit) = std::env::var_os("QPATH_LIMIT") {
        msgs.truncate(
            limit
                .to_str()
                .and_then(|s| s.parse().ok())
                .expect("QPATH_LIMIT: a count"),
        );
    }
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let rounds: usize = args.next().map_or(1, |s| s.parse().expect("rounds"));
    let kib: usize = args.next().map_or(0, |s| s.parse().expect("KiB"));
    let mut touch = vec![0u8; kib * 1024];
    run(&snap, &metrics, &msgs, 1, &mut []);
    let t = Instant::now();
    let (replies, memo_hits) = run(&snap, &metrics, &msgs, rounds, &mut touch);
    eprintln!(
        "{} messages x {rounds}: {replies} fast-path replies, {memo_hits} route memo hits, \
         {:.0} ns per query (wall)",
        msgs.len(),
        t.elapsed().as_nanos() as f64 / (msgs.len() * rounds) as f64
    );
}
