//! Fuzz harness on the stable toolchain: a seeded PRNG mutates valid queries, config
//! text and a GeoIP database, and every input goes through the public entry points.
//!
//! - DNS: the UDP fast path ([`fast::answer`]), the answer cache in front of it
//!   ([`Responder::answer`]) and the ordinary path ([`Handler::ordinary_udp`]), with and
//!   without ECS options (the ECS checks); differential: whenever the fast path answers,
//!   its reply must equal the ordinary path's byte for byte, and the cache must give the
//!   same reply again.
//! - Config: mutated TOML through `config::parse` (must return, never panic).
//! - GeoIP: mutated copies of MaxMind's test database through `GeoDb::open` (every
//!   1,000th input).
//!
//!   cargo run --release --example fuzz -- --iterations 1000000 [--seed N]
//!   cargo run --release --example fuzz -- --hours 8
//!   cargo run --release --example fuzz -- --replay tests/data/fuzz
//!
//! A finding prints its seed and input and writes the input to tests/data/fuzz/ (DNS
//! inputs as `dns-SEED.bin`, config as `config-SEED.toml`), where the `fuzz_corpus`
//! end-to-end test replays it forever after.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use geode::dns::Handler;
use geode::dns::fast::{self, Fast};
use geode::dns::udp::Responder;
use geode::metrics::Metrics;
use geode::snapshot::Snapshot;

/// The config every DNS input is answered under: GSLB names with latency rows, a fence,
/// client networks and MaxMind's test City database, so ECS and GeoIP paths are taken.
pub const CONFIG: &str = r#"
[server]
geoip_db = "tests/data/maxmind/GeoIP2-City-Test.mmdb"
answer_cache_kib = 64

[zones."gslb.example."]
ttl = 3600
soa = { mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }
ns = ["ns1.gslb.example."]
records = [
  { name = "ns1", type = "A", value = "192.0.2.53" },
  { name = "@", type = "TXT", value = "v=geode fuzz" },
  { name = "@", type = "MX", value = "10 mail.gslb.example." },
  { name = "mail", type = "AAAA", value = "2001:db8::25" },
  { name = "docs", type = "CNAME", value = "www.gslb.example." },
]

[regions.eu]
location = { lat = 53.35, lon = -6.26 }
endpoints = [{ address = "192.0.2.20" }, { address = "2001:db8::20" }]

[regions.us]
location = { lat = 39.04, lon = -77.49 }
endpoints = [{ address = "192.0.2.10" }, { address = "192.0.2.11" }]

[regions.ap]
location = { lat = 35.68, lon = 139.69 }
weight = 50
endpoints = [{ address = "2001:db8::30" }]

[services."www.gslb.example."]
regions = ["us", "eu", "ap"]
max_answers = 2
fence = { "continent:EU" = ["eu"] }

[services."w.gslb.example."]
regions = ["us", "ap"]
policy = "weighted"

[latency]
"country:JP" = { ap = 5, us = 140 }
"cidr:203.0.113.0/24" = { eu = 4 }

[client_networks]
"10.20.0.0/16" = { location = { lat = 40.7, lon = -74.0 } }
"#;

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.bits() % n.max(1) as u64) as usize
    }
}

fn name_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A well-formed query: header, one question, optionally EDNS with an ECS option.
pub fn query(id: u16, name: &str, qtype: u16, ecs: Option<(u16, u8, &[u8])>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[
        0x00,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(ecs.is_some() || id.is_multiple_of(2)),
    ]);
    q.extend_from_slice(&name_wire(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if ecs.is_some() || id.is_multiple_of(2) {
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        match ecs {
            Some((family, prefix, addr)) => {
                let len = 4 + addr.len() as u16;
                q.extend_from_slice(&(len + 4).to_be_bytes());
                q.extend_from_slice(&[0, 8]);
                q.extend_from_slice(&len.to_be_bytes());
                q.extend_from_slice(&family.to_be_bytes());
                q.extend_from_slice(&[prefix, 0]);
                q.extend_from_slice(addr);
            }
            None => q.extend_from_slice(&[0, 0]),
        }
    }
    q
}

/// Valid queries the mutator starts from.
pub fn seeds() -> Vec<Vec<u8>> {
    let names = [
        "www.gslb.example.",
        "WwW.GsLb.ExAmPlE.",
        "w.gslb.example.",
        "gslb.example.",
        "docs.gslb.example.",
        "mail.gslb.example.",
        "nx.gslb.example.",
        "a.b.www.gslb.example.",
        "example.com.",
        ".",
    ];
    let qtypes = [1u16, 28, 16, 15, 6, 2, 255, 5, 33, 65];
    let ecs: [Option<(u16, u8, &[u8])>; 8] = [
        None,
        Some((1, 24, &[81, 2, 69])),
        Some((1, 24, &[203, 0, 113])),
        Some((1, 16, &[10, 20])),
        Some((1, 0, &[])),
        Some((2, 48, &[0x24, 0x0f, 0, 0, 0, 0])),
        Some((1, 32, &[127, 0, 0, 1])),
        Some((2, 56, &[0x20, 0x01, 0x02, 0x18, 0, 0, 0])),
    ];
    let mut out = Vec::new();
    let mut id = 1u16;
    for n in names {
        for t in qtypes {
            for e in ecs {
                let q = query(id, n, t, e);
                // The same query with DO (a validating resolver's), so that with
                // GEODE_FUZZ_DNSSEC=1 the fast path's signed answers are fuzzed too.
                let opt = 12 + name_wire(n).len() + 4;
                if q.len() > opt + 7 {
                    let mut d = q.clone();
                    d[opt + 7] |= 0x80;
                    out.push(d);
                }
                out.push(q);
                id = id.wrapping_add(1);
            }
        }
    }
    out
}

/// One mutation step: flips, overwrites with interesting bytes, inserts, deletes,
/// truncates, duplicates a run, or splices in part of another seed.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xff, 0xc0, 0x3f, 41, 8, 12];
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.bits() as u8);
            }
            3 if len > 0 => {
                input.remove(rng.below(len));
            }
            4 if len > 0 => input.truncate(rng.below(len)),
            5 if len > 1 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(8)).min(len);
                let run = input[a..b].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, run);
            }
            6 if !other.is_empty() => {
                let a = rng.below(other.len());
                let b = (a + 1 + rng.below(16)).min(other.len());
                let at = rng.below(len + 1);
                let end = (at + (b - a)).min(len);
                input.splice(at..end, other[a..b].iter().copied());
            }
            _ if len >= 2 => {
                // A 16-bit field (counts, lengths, types) set to an edge value.
                let i = rng.below(len - 1);
                let v: u16 = [0, 1, 2, 0xffff, 0x8000, 0x00ff, 41, 8][rng.below(8)];
                input[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => input.push(rng.bits() as u8),
        }
    }
    input.truncate(4096);
}

/// Everything one DNS input is run against.
pub struct Target {
    snap: Arc<Snapshot>,
    metrics: Arc<Metrics>,
    handler: Handler,
    memo: geode::route::RouteMemo,
    responder: Responder,
    fast_out: Vec<u8>,
    ordinary_out: Vec<u8>,
    cached_out: Vec<u8>,
    /// Inputs the fast path answered (and were compared with the ordinary path).
    pub compared: u64,
}

impl Target {
    /// The fuzz config and database loaded from the repository at `root`.
    pub fn new(root: &Path) -> Target {
        let file = root.join("fuzz.toml");
        // GEODE_FUZZ_DNSSEC=1 signs the zone with the vendored test key, so inputs with
        // DO take the signing path (RRSIGs, NSEC proofs) on the ordinary path.
        let text = match std::env::var_os("GEODE_FUZZ_DNSSEC") {
            Some(_) => format!(
                "{CONFIG}\n[zones.\"gslb.example.\".dnssec]\nkey_files = [\"{}\"]\n",
                root.join("tests/data/dnssec/Kgslb.example.+013+43822.private")
                    .display()
            ),
            None => CONFIG.to_string(),
        };
        let mut loaded = geode::config::parse(&text, &file).expect("the fuzz config is valid");
        geode::dnssec::read_keys(&mut loaded).expect("the test key reads");
        let geo = loaded
            .model
            .server
            .live
            .geoip_db
            .as_ref()
            .map(|p| Arc::new(geode::geo::GeoDb::open(p).expect("test database opens")));
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let snap = Arc::new(Snapshot::build(
            geode::snapshot::HealthAttached::unprobed(loaded),
            geo,
            &metrics,
        ));
        let shared = Arc::new(ArcSwap::from(snap.clone()));
        Target {
            handler: Handler::new(shared, metrics.clone()),
            snap,
            metrics,
            memo: geode::route::RouteMemo::default(),
            responder: Responder::new(),
            fast_out: Vec::with_capacity(4096),
            ordinary_out: Vec::with_capacity(4096),
            cached_out: Vec::with_capacity(4096),
            compared: 0,
        }
    }

    /// Runs one input; `Err` says what went wrong (a panic is caught by the caller).
    pub fn dns(&mut self, pkt: &[u8], src: SocketAddr) -> Result<(), String> {
        let fast = fast::answer(
            &self.snap,
            &self.metrics,
            &mut self.memo,
            pkt,
            src.ip(),
            &mut self.fast_out,
        );
        let answered = self
            .handler
            .ordinary_udp(&self.snap, pkt, src, &mut self.ordinary_out);
        if let Fast::Reply(_) = fast {
            self.compared += 1;
            if !answered || self.fast_out != self.ordinary_out {
                return Err(format!(
                    "fast path and ordinary path differ:\n fast     {:02x?}\n ordinary {:02x?}",
                    self.fast_out,
                    if answered {
                        &self.ordinary_out[..]
                    } else {
                        &[]
                    }
                ));
            }
        }
        // The cache, twice: the second answer may come from the cache and must be the
        // same bytes as the first.
        let a = self.responder.answer(
            &self.snap,
            &self.handler,
            &self.metrics,
            pkt,
            src,
            &mut self.cached_out,
        );
        let first = self.cached_out.clone();
        let b = self.responder.answer(
            &self.snap,
            &self.handler,
            &self.metrics,
            pkt,
            src,
            &mut self.cached_out,
        );
        if a != b || first != self.cached_out {
            return Err(format!(
                "the answer cache gave a different reply the second time:\n first  {first:02x?}\n second {:02x?}",
                self.cached_out
            ));
        }
        Ok(())
    }
}

fn sources() -> [SocketAddr; 4] {
    [
        "81.2.69.142:5300".parse().unwrap(),
        "127.0.0.1:5300".parse().unwrap(),
        "[2001:218::1]:5300".parse().unwrap(),
        "203.0.113.9:5300".parse().unwrap(),
    ]
}

/// Runs `f`, turning a panic into an error message.
fn guarded(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Config text through the parser: any result but a panic is fine.
pub fn config(text: &[u8], root: &Path) -> Result<(), String> {
    let text = String::from_utf8_lossy(text);
    guarded(|| {
        let _ = geode::config::parse(&text, &root.join("fuzz.toml"));
        Ok(())
    })
}

/// Replays every saved input of `dir`; returns how many ran. Err on the first failure.
pub fn replay(dir: &Path, root: &Path) -> Result<usize, String> {
    let mut target = Target::new(root);
    let mut n = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let r = if name.starts_with("dns-") {
            let mut r = Ok(());
            for src in sources() {
                r = r.and_then(|()| guarded(|| target.dns(&bytes, src)));
            }
            r
        } else if name.starts_with("config-") {
            config(&bytes, root)
        } else {
            continue;
        };
        r.map_err(|e| format!("{name}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

fn save(root: &Path, name: &str, bytes: &[u8]) {
    let dir = root.join("tests/data/fuzz");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(name), bytes);
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(dir) = arg("--replay") {
        match replay(Path::new(&dir), &root) {
            Ok(n) => println!("replayed {n} inputs: ok"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let iterations: u64 =
        arg("--iterations").map_or(1_000_000, |s| s.parse().expect("--iterations N"));
    let deadline = arg("--hours").map(|h| {
        Instant::now() + Duration::from_secs_f64(h.parse::<f64>().expect("--hours H") * 3600.0)
    });
    let seed: u64 = arg("--seed").map_or(1, |s| s.parse().expect("--seed N"));
    // Panics are findings, reported with their seed; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));

    let mut target = Target::new(&root);
    let seeds = seeds();
    let config_seed = CONFIG.as_bytes().to_vec();
    let mmdb = std::fs::read(root.join("tests/data/maxmind/GeoIP2-City-Test.mmdb"))
        .expect("MaxMind test database");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let srcs = sources();
    let started = Instant::now();
    let (mut dns_n, mut config_n, mut geo_n, mut findings) = (0u64, 0u64, 0u64, 0u64);
    let mut i = 0u64;
    loop {
        if deadline.map_or(i >= iterations, |d| {
            i.is_multiple_of(4096) && Instant::now() >= d
        }) {
            break;
        }
        // Each input is reproducible from (seed, i) alone.
        let input_seed = seed.wrapping_mul(1_000_003).wrapping_add(i);
        let mut rng = Rng::new(input_seed);
        i += 1;
        let r = if i.is_multiple_of(1000) {
            geo_n += 1;
            let mut db = mmdb.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(db.len());
                db[at] = rng.bits() as u8;
            }
            if rng.below(4) == 0 {
                db.truncate(rng.below(db.len()));
            }
            let path = scratch.path().join("city.mmdb");
            std::fs::write(&path, &db).expect("write scratch database");
            guarded(|| {
                if let Ok(g) = geode::geo::GeoDb::open(&path) {
                    for s in srcs {
                        let _ = g.lookup(s.ip());
                    }
                }
                Ok(())
            })
            .map_err(|e| (format!("geo-{input_seed}.mmdb"), db, e))
        } else if i.is_multiple_of(50) {
            config_n += 1;
            let mut text = config_seed.clone();
            for _ in 0..1 + rng.below(4) {
                mutate(
                    &mut rng,
                    &mut text,
                    b"[]{}=\",.:#\n\"zones.\"regions\"0.0.0.0/0\"1s\"",
                );
            }
            config(&text, &root).map_err(|e| (format!("config-{input_seed}.toml"), text, e))
        } else {
            dns_n += 1;
            let mut pkt = seeds[rng.below(seeds.len())].clone();
            let other = &seeds[rng.below(seeds.len())];
            if rng.below(16) != 0 {
                mutate(&mut rng, &mut pkt, other);
            }
            let src = srcs[rng.below(srcs.len())];
            guarded(|| target.dns(&pkt, src)).map_err(|e| (format!("dns-{input_seed}.bin"), pkt, e))
        };
        if let Err((name, bytes, why)) = r {
            findings += 1;
            eprintln!("FINDING seed {input_seed} ({name}): {why}\n input {bytes:02x?}");
            save(&root, &name, &bytes);
            if findings >= 10 {
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz: {dns_n} DNS inputs ({} compared fast vs ordinary), {config_n} configs, {geo_n} GeoIP databases in {secs:.1} s ({:.0} DNS inputs/s); {findings} findings",
        target.compared,
        dns_n as f64 / secs
    );
    let d = &target.metrics.dnssec;
    if d.hits.get() + d.misses.get() > 0 {
        println!(
            "fuzz: signed answers looked up {} RRsets in the signature cache ({} signatures made)",
            d.hits.get() + d.misses.get(),
            d.signatures.get()
        );
    }
    if findings > 0 {
        std::process::exit(1);
    }
}
