//! DNSSEC online signing, end to end: unbound as a validating resolver (with its
//! subnetcache module sending ECS) and BIND's delv with a trust anchor must see every
//! answer of a signed zone as secure: GSLB answers for clients in different regions,
//! static names, CNAME chains into GSLB names, NXDOMAIN and NODATA, across a health flip
//! and across a reload that adds a key. Two instances with the same key emit the same
//! signature validity. unbound, delv and dig are started by the tests on loopback
//! (`.ci/run` installs them); a missing binary fails the test.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::assert_eventually;
use crate::harness::{Geode, repo};
use crate::tools::{start_unbound, which};

/// The vendored key every test starts with, and the one the reload test adds.
const KEY_A: &str = "Kgslb.example.+013+43822";
const KEY_B: &str = "Kgslb.example.+013+04232";

/// A signed zone: GSLB name `www` over three regions of the demo database (eu-west's
/// endpoint probed over TCP at `probe`), static names, a CNAME into the GSLB name and an
/// empty non-terminal. TTLs are short so unbound's cache does not hide a change.
fn config(keys: &[&str], denial: &str, probe: SocketAddr, extra: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}.private\"")).collect();
    format!(
        r#"
[server]
geoip_db = "{db}"

[zones."gslb.example."]
ttl = 2
soa = {{ mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1, minimum = 2 }}
ns = ["ns1.gslb.example."]
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "static", type = "A", value = "192.0.2.7" }},
  {{ name = "@", type = "TXT", value = "v=geode" }},
  {{ name = "docs", type = "CNAME", value = "www.gslb.example." }},
  {{ name = "a.deep", type = "TXT", value = "below an empty non-terminal" }},
  {extra}
]

[zones."gslb.example.".dnssec]
key_files = [{keys}]
denial = "{denial}"

[checks.port]
type = "tcp"
port = {port}
interval = "300ms"
timeout = "250ms"
rise = 1
fall = 1

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = [{{ address = "192.0.2.10" }}, {{ address = "2001:db8::10" }}]

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "192.0.2.20", check = "port", probe = "{probe}" }}]

[regions.ap-south]
location = {{ lat = 19.08, lon = 72.88 }}
endpoints = [{{ address = "192.0.2.40" }}]

[services."www.gslb.example."]
regions = ["us-east", "eu-west", "ap-south"]
ttl = 1
"#,
        db = repo().join("geoip/demo-city.mmdb").display(),
        keys = keys.join(", "),
        port = probe.port(),
    )
}

/// A scratch directory with the vendored keys and `geode.toml`.
fn setup(config: &str) -> (Arc<tempfile::TempDir>, std::path::PathBuf) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    for k in [KEY_A, KEY_B] {
        for ext in ["key", "private"] {
            std::fs::copy(
                repo().join(format!("tests/data/dnssec/{k}.{ext}")),
                dir.path().join(format!("{k}.{ext}")),
            )
            .unwrap();
        }
    }
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

/// The DNSKEY text of a vendored key: "257 3 13 BASE64".
fn dnskey(key: &str) -> String {
    let text =
        std::fs::read_to_string(repo().join(format!("tests/data/dnssec/{key}.key"))).unwrap();
    let line = text.lines().find(|l| !l.starts_with(';')).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    let at = f.iter().position(|t| *t == "DNSKEY").unwrap();
    format!(
        "{} {} {} {}",
        f[at + 1],
        f[at + 2],
        f[at + 3],
        f[at + 4..].concat()
    )
}

/// delv's trust anchor file for a vendored key.
fn delv_anchor(dir: &Path, key: &str) -> std::path::PathBuf {
    let mut f = dnskey(key)
        .splitn(4, ' ')
        .map(str::to_string)
        .collect::<Vec<_>>();
    let b64 = f.pop().unwrap();
    let path = dir.join(format!("anchor-{key}.conf"));
    std::fs::write(
        &path,
        format!(
            "trust-anchors {{\n  \"gslb.example.\" static-key {} {} {} \"{b64}\";\n}};\n",
            f[0], f[1], f[2]
        ),
    )
    .unwrap();
    path
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (status, flags) of a dig answer.
fn status_flags(out: &str) -> (String, String) {
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string();
    let flags = out
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_string();
    (status, flags)
}

/// The A addresses in a dig answer section.
fn answer_addrs(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[3] == "A").then(|| f[4].to_string())
        })
        .collect()
}

/// Asks unbound and asserts a validated (AD) answer with `status`; returns dig's output.
fn validated(resolver: SocketAddr, args: &[&str], status: &str) -> String {
    let out = dig(resolver, &[&["+dnssec"], args].concat());
    let (st, flags) = status_flags(&out);
    assert_eq!(st, status, "unbound {args:?}: {out}");
    assert!(
        flags.split_whitespace().any(|f| f == "ad"),
        "unbound did not validate {args:?} (no AD): {out}"
    );
    out
}

/// delv validates `name type` against the anchor: "fully validated" (positive or
/// negative).
fn delv_validates(geode: SocketAddr, anchor: &Path, name: &str, rtype: &str) -> String {
    let delv = which("delv");
    let out = Command::new(delv)
        .arg(format!("@{}", geode.ip()))
        .args(["-p", &geode.port().to_string(), "-a"])
        .arg(anchor)
        .args(["+root=gslb.example", name, rtype])
        .output()
        .expect("delv");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("fully validated") && !text.contains("resolution failed: SERVFAIL"),
        "delv did not validate {name} {rtype}: {text}"
    );
    text
}

async fn reloads_ok(g: &Geode) -> f64 {
    let m = g.http_get("/metrics").await.1;
    m.lines()
        .find(|l| l.starts_with("geode_config_reloads_total{result=\"success\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The acceptance scenario: unbound (validator + subnetcache, ECS from the client's
/// `+subnet`) gets AD for the GSLB name from clients in three regions, for a static name,
/// a CNAME into the GSLB name, the DNSKEY RRset, NXDOMAIN and NODATA (also at an empty
/// non-terminal), across a health flip and across a reload that adds a key; delv with
/// a trust anchor file validates the same answers (with the added key as its only anchor
/// after the reload).
#[tokio::test]
async fn dnssec_unbound_and_delv_validate_gslb_static_and_negative_answers() {
    which("dig");
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let probe = backend.local_addr().unwrap();
    let (dir, path) = setup(&config(&[KEY_A], "nsec", probe, ""));
    let g = Geode::start_at(dir.clone(), &path, &[]);
    let (_unbound, resolver) = start_unbound(dir.path(), g.udp.port(), Some(&dnskey(KEY_A)));
    assert_eventually!(
        10,
        status_flags(&dig(resolver, &["+dnssec", "static.gslb.example"]))
            .1
            .contains("ad"),
        "unbound never validated static.gslb.example; geode log:\n{}",
        g.logs()
    );

    // GSLB answers, one client per region (ECS in the client's query to unbound).
    for (subnet, want) in [
        ("81.2.69.0/24", "192.0.2.20"),
        ("171.64.1.0/24", "192.0.2.10"),
        ("133.11.7.0/24", "192.0.2.40"),
    ] {
        let sub = format!("+subnet={subnet}");
        let out = validated(resolver, &["www.gslb.example", &sub], "NOERROR");
        assert_eq!(answer_addrs(&out), [want], "{subnet}: {out}");
    }
    validated(resolver, &["www.gslb.example", "AAAA"], "NOERROR");
    let out = validated(resolver, &["static.gslb.example"], "NOERROR");
    assert_eq!(answer_addrs(&out), ["192.0.2.7"]);
    let out = validated(
        resolver,
        &["docs.gslb.example", "+subnet=81.2.69.0/24"],
        "NOERROR",
    );
    assert!(out.contains("CNAME"), "{out}");
    validated(resolver, &["gslb.example", "DNSKEY"], "NOERROR");
    validated(resolver, &["gslb.example", "TXT"], "NOERROR");
    // Denial: NXDOMAIN, NODATA at a static name, at the GSLB name, at an empty
    // non-terminal, and NXDOMAIN below an existing name.
    validated(resolver, &["nope.gslb.example"], "NXDOMAIN");
    validated(resolver, &["zzz.gslb.example"], "NXDOMAIN");
    validated(resolver, &["x.static.gslb.example"], "NXDOMAIN");
    validated(resolver, &["static.gslb.example", "TXT"], "NOERROR");
    validated(resolver, &["www.gslb.example", "TXT"], "NOERROR");
    validated(resolver, &["deep.gslb.example", "A"], "NOERROR");

    let anchor_a = delv_anchor(dir.path(), KEY_A);
    for (name, rtype) in [
        ("www.gslb.example", "A"),
        ("www.gslb.example", "AAAA"),
        ("static.gslb.example", "A"),
        ("docs.gslb.example", "A"),
        ("gslb.example", "DNSKEY"),
        ("nope.gslb.example", "A"),
        ("static.gslb.example", "TXT"),
        ("deep.gslb.example", "A"),
    ] {
        delv_validates(g.udp, &anchor_a, name, rtype);
    }

    // Health flip: eu-west's only endpoint goes down; London now gets the next region,
    // still validated (a new RRset, signed on the query that first needs it).
    drop(backend);
    assert_eventually!(
        10,
        answer_addrs(&dig(
            resolver,
            &["+dnssec", "www.gslb.example", "+subnet=81.2.69.0/24"]
        )) != ["192.0.2.20"],
        "eu-west never went down"
    );
    let out = validated(
        resolver,
        &["www.gslb.example", "+subnet=81.2.69.0/24"],
        "NOERROR",
    );
    assert_ne!(answer_addrs(&out), ["192.0.2.20"], "{out}");

    // Reload that adds a key (and a name): the DNSKEY RRset has both, every RRset is
    // signed by both, unbound (anchored on the first) still validates, and delv with only
    // the new key as anchor validates too.
    let before = reloads_ok(&g).await;
    std::fs::write(
        &path,
        config(
            &[KEY_A, KEY_B],
            "nsec",
            probe,
            r#"{ name = "added", type = "A", value = "192.0.2.8" },"#,
        ),
    )
    .unwrap();
    g.signal("HUP");
    assert_eventually!(
        15,
        reloads_ok(&g).await > before,
        "reload with the added key was not applied; log:\n{}",
        g.logs()
    );
    let direct = g.dig(&["+dnssec", "gslb.example", "DNSKEY"]);
    assert_eq!(direct.matches("\tDNSKEY\t").count(), 2, "{direct}");
    let direct = g.dig(&["+dnssec", "added.gslb.example", "A"]);
    assert_eq!(direct.matches("RRSIG\tA 13").count(), 2, "{direct}");
    assert_eventually!(
        10,
        status_flags(&dig(resolver, &["+dnssec", "added.gslb.example"]))
            .1
            .contains("ad"),
        "unbound did not validate a name added with the new key"
    );
    validated(
        resolver,
        &["www.gslb.example", "+subnet=171.64.1.0/24"],
        "NOERROR",
    );
    validated(resolver, &["nope2.gslb.example"], "NXDOMAIN");
    let anchor_b = delv_anchor(dir.path(), KEY_B);
    for (name, rtype) in [
        ("gslb.example", "DNSKEY"),
        ("www.gslb.example", "A"),
        ("added.gslb.example", "A"),
        ("nope.gslb.example", "A"),
    ] {
        delv_validates(g.udp, &anchor_b, name, rtype);
    }
    // And removing the first key again: only the new one signs.
    let before = reloads_ok(&g).await;
    std::fs::write(&path, config(&[KEY_B], "nsec", probe, "")).unwrap();
    g.signal("HUP");
    assert_eventually!(15, reloads_ok(&g).await > before, "reload not applied");
    let direct = g.dig(&["+dnssec", "gslb.example", "DNSKEY"]);
    assert_eq!(direct.matches("\tDNSKEY\t").count(), 1, "{direct}");
    assert!(direct.contains(" 4232 gslb.example."), "{direct}");
    delv_validates(g.udp, &anchor_b, "static.gslb.example", "A");
}

/// The signature's (inception, expiration, key tag) in a dig answer.
fn rrsig_dates(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter(|l| !l.starts_with(';') && l.contains("\tRRSIG\t"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // owner ttl IN RRSIG type alg labels origttl expiration inception tag signer sig
            (f[9].to_string(), f[8].to_string(), f[10].to_string())
        })
        .collect()
}

/// Two instances with the same key emit identical inception and expiration (fixed
/// weekly windows), for static, GSLB and negative answers, and delv validates both.
#[tokio::test]
async fn dnssec_two_instances_with_the_same_key_emit_identical_validity() {
    which("dig");
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = config(&[KEY_A], "nsec", probe.local_addr().unwrap(), "");
    let (d1, p1) = setup(&cfg);
    let g1 = Geode::start_at(d1.clone(), &p1, &[]);
    let (d2, p2) = setup(&cfg);
    let g2 = Geode::start_at(d2, &p2, &[]);
    for q in [
        vec!["static.gslb.example", "A"],
        vec!["www.gslb.example", "A", "+subnet=133.11.7.0/24"],
        vec!["nope.gslb.example", "A"],
    ] {
        let a = rrsig_dates(&g1.dig(&[&["+dnssec"], &q[..]].concat()));
        let b = rrsig_dates(&g2.dig(&[&["+dnssec"], &q[..]].concat()));
        assert!(!a.is_empty(), "{q:?}: no RRSIG");
        assert_eq!(a, b, "{q:?}: the instances disagree");
        for (inception, expiration, tag) in &a {
            assert_eq!(tag, "43822");
            assert!(inception < expiration);
        }
    }
    let anchor = delv_anchor(d1.path(), KEY_A);
    delv_validates(g1.udp, &anchor, "www.gslb.example", "A");
    delv_validates(g2.udp, &anchor, "www.gslb.example", "A");

    // The signing metrics: signatures were made (pre-warm included) and the answers
    // above came from the signature cache.
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    let m = g1.http_get("/metrics").await.1;
    assert!(metric(&m, "geode_dnssec_signatures_total ") > 5.0, "{m}");
    assert!(metric(&m, "geode_dnssec_signature_cache_total{result=\"hit\"}") >= 3.0);
    metric(&m, "geode_dnssec_signature_cache_total{result=\"miss\"}");
    metric(&m, "geode_dnssec_compact_budget_exceeded_total ");
}

/// `denial = "compact"` (RFC 9824): NXDOMAIN is answered NOERROR with an NSEC at the name
/// listing NXNAME; NODATA with the name's own types; both validate in unbound and delv.
#[tokio::test]
async fn dnssec_compact_denial_validates() {
    which("dig");
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let (dir, path) = setup(&config(
        &[KEY_A],
        "compact",
        probe.local_addr().unwrap(),
        "",
    ));
    let g = Geode::start_at(dir.clone(), &path, &[]);
    let direct = g.dig(&["+dnssec", "nope.gslb.example", "A"]);
    assert_eq!(status_flags(&direct).0, "NOERROR", "{direct}");
    assert!(
        direct.contains("NSEC\t\\000.nope.gslb.example. RRSIG NSEC TYPE128"),
        "compact denial NSEC: {direct}"
    );
    let anchor = delv_anchor(dir.path(), KEY_A);
    delv_validates(g.udp, &anchor, "nope.gslb.example", "A");
    delv_validates(g.udp, &anchor, "static.gslb.example", "TXT");
    delv_validates(g.udp, &anchor, "www.gslb.example", "A");
    let (_unbound, resolver) = start_unbound(dir.path(), g.udp.port(), Some(&dnskey(KEY_A)));
    assert_eventually!(
        10,
        status_flags(&dig(resolver, &["+dnssec", "static.gslb.example"]))
            .1
            .contains("ad"),
        "unbound never validated static.gslb.example"
    );
    validated(resolver, &["nope.gslb.example"], "NOERROR");
    validated(resolver, &["www.gslb.example", "TXT"], "NOERROR");
}

/// A signed answer that does not fit the client's UDP size is header + question + OPT
/// with TC (no partial RRset or proof); over TCP the same query gets it whole. Without
/// DO the same name is answered unsigned.
#[tokio::test]
async fn dnssec_signed_answers_that_do_not_fit_set_tc_and_do_is_echoed() {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let (dir, path) = setup(&config(
        &[KEY_A, KEY_B],
        "nsec",
        probe.local_addr().unwrap(),
        "",
    ));
    let g = Geode::start_at(dir, &path, &[]);
    let small = g.dig(&["+dnssec", "+bufsize=512", "+ignore", "nope.gslb.example"]);
    let (status, flags) = status_flags(&small);
    assert_eq!(status, "NXDOMAIN", "{small}");
    assert!(flags.contains("tc"), "{small}");
    assert!(small.contains("ANSWER: 0, AUTHORITY: 0"), "{small}");
    let tcp = g.dig(&["+dnssec", "+tcp", "nope.gslb.example"]);
    assert!(tcp.contains("NSEC"), "{tcp}");
    assert!(!status_flags(&tcp).1.contains("tc"), "{tcp}");
    assert!(
        tcp.contains("; EDNS: version: 0, flags: do;"),
        "DO echoed: {tcp}"
    );
    assert!(
        !status_flags(&tcp).1.contains("ad"),
        "an authority never sets AD: {tcp}"
    );
    let plain = g.dig(&["nope.gslb.example"]);
    assert!(
        !plain.contains("RRSIG") && !plain.contains("NSEC"),
        "{plain}"
    );
    assert!(!plain.contains("flags: do"), "{plain}");
}

/// `geode dnssec keygen` writes BIND-format pairs (both algorithms) that BIND's own
/// `dnssec-dsfromkey` reads; `geode dnssec ds` prints the same DS; a zone signed with the
/// generated Ed25519 key validates in delv.
#[tokio::test]
async fn dnssec_keygen_and_ds_agree_with_bind_and_ed25519_validates() {
    let dsfromkey = which("dnssec-dsfromkey");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut stems = Vec::new();
    for alg in ["ecdsap256sha256", "ed25519"] {
        let out = Command::new(crate::harness::GEODE)
            .args([
                "dnssec",
                "keygen",
                "--zone",
                "gslb.example",
                "--algorithm",
                alg,
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stem = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(stem.starts_with("Kgslb.example.+01"), "{stem}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(format!("{stem}.private")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the private key is readable by others");
        }
        stems.push(stem);
    }
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let path = dir.path().join("geode.toml");
    std::fs::write(
        &path,
        config(
            &[&stems[0], &stems[1]],
            "nsec",
            probe.local_addr().unwrap(),
            "",
        ),
    )
    .unwrap();
    let ours = Command::new(crate::harness::GEODE)
        .args(["dnssec", "ds", "--config"])
        .arg(&path)
        .arg("gslb.example.")
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let ours = String::from_utf8_lossy(&ours.stdout).to_string();
    for stem in &stems {
        let bind = Command::new(&dsfromkey)
            .arg("-2")
            .arg(dir.path().join(format!("{stem}.key")))
            .output()
            .unwrap();
        let bind = String::from_utf8_lossy(&bind.stdout).trim().to_string();
        assert!(
            !bind.is_empty() && ours.contains(&bind),
            "ours:\n{ours}\nBIND: {bind}"
        );
    }
    // Serve with the Ed25519 key alone; delv anchored on it validates.
    std::fs::write(
        &path,
        config(&[&stems[1]], "nsec", probe.local_addr().unwrap(), ""),
    )
    .unwrap();
    let g = Geode::start_at(dir.clone(), &path, &[]);
    let key = std::fs::read_to_string(dir.path().join(format!("{}.key", stems[1]))).unwrap();
    let line = key.lines().find(|l| !l.starts_with(';')).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    let at = f.iter().position(|t| *t == "DNSKEY").unwrap();
    let anchor = dir.path().join("anchor15.conf");
    std::fs::write(
        &anchor,
        format!(
            "trust-anchors {{\n  \"gslb.example.\" static-key {} {} {} \"{}\";\n}};\n",
            f[at + 1],
            f[at + 2],
            f[at + 3],
            f[at + 4..].concat()
        ),
    )
    .unwrap();
    assert_eq!(f[at + 3], "15");
    delv_validates(g.udp, &anchor, "www.gslb.example", "A");
    delv_validates(g.udp, &anchor, "nope.gslb.example", "A");
}

/// A GSLB name whose regions are all down with `when_all_down = "nodata"` answers NODATA
/// for a type its chain NSEC lists: the NSEC is made for the answer without that type,
/// and delv validates it (the chain's NSEC would prove the opposite).
#[tokio::test]
async fn dnssec_nodata_of_a_gslb_name_with_every_region_down_validates() {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead); // nothing listens there: every probe fails
    let text = format!(
        "{}\n[regions.gone]\nlocation = {{ lat = 0.0, lon = 0.0 }}\n\
         endpoints = [{{ address = \"192.0.2.99\", check = \"port\", probe = \"{dead_addr}\" }}]\n\n\
         [services.\"nd.gslb.example.\"]\nregions = [\"gone\"]\nwhen_all_down = \"nodata\"\n",
        config(&[KEY_A], "nsec", probe.local_addr().unwrap(), "")
    );
    let (dir, path) = setup(&text);
    let g = Geode::start_at(dir.clone(), &path, &[]);
    let direct = g.dig(&["+dnssec", "nd.gslb.example", "A"]);
    assert_eq!(status_flags(&direct).0, "NOERROR", "{direct}");
    let nsec = direct
        .lines()
        .find(|l| l.starts_with("nd.gslb.example.") && l.contains("\tNSEC\t"))
        .unwrap_or_else(|| panic!("no NSEC at the name: {direct}"));
    let types: Vec<&str> = nsec.split_whitespace().skip(5).collect();
    assert_eq!(types, ["RRSIG", "NSEC"], "a minimal NSEC without A: {nsec}");
    let anchor = delv_anchor(dir.path(), KEY_A);
    delv_validates(g.udp, &anchor, "nd.gslb.example", "A");
}
