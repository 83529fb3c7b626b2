//! Config tests: defaults, value parsing, name handling and where errors are reported.
//! Pure: text in, model or problems out; no sockets, no files beyond `include_str!`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::values::parse_txt;
use super::*;
use crate::model::{AllDown, CheckKind, ClientKey, Policy, RecordData};

const FILE: &str = "test.toml";

fn ok(text: &str) -> Model {
    match parse(text, Path::new(FILE)) {
        Ok(l) => l.model,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected problems, config was accepted:\n{text}"),
        Err(e) => e.problems,
    }
}

/// The one problem of a text: (line, key, message).
fn one(text: &str) -> (usize, String, String) {
    let p = problems(text);
    assert_eq!(p.len(), 1, "exactly one problem expected, got {p:#?}");
    (p[0].line, p[0].key.clone(), p[0].message.clone())
}

const ZONE: &str = r#"
[zones."gslb.example."]
soa = { mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }
ns  = ["ns1.gslb.example."]
"#;

fn zone_with(records: &str) -> String {
    format!("{ZONE}records = [\n{records}\n]\n")
}

fn records(m: &Model) -> Vec<(String, RecordData)> {
    m.zones[0]
        .records
        .iter()
        .map(|r| (r.name.clone(), r.data.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Defaults

#[test]
fn defaults_of_every_optional_key() {
    let m = ok(&format!(
        r#"{ZONE}
[checks.web]
type = "http"

[checks.raw]
type = "tcp"
port = 5432

[regions.eu-west]
endpoints = [{{ address = "192.0.2.20", check = "web" }}]

[services."www.gslb.example."]
regions = ["eu-west"]
"#
    ));
    // [server]
    let s = &m.server;
    assert_eq!(
        s.start.dns_listen,
        ["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(s.start.http_listen, Some("127.0.0.1:9153".parse().unwrap()));
    assert_eq!(s.live.geoip_db, None);
    assert_eq!(s.live.max_udp_payload, 1232);
    assert_eq!(s.start.tcp_idle_timeout, Duration::from_secs(10));
    assert_eq!(s.start.tcp_max_connections, 1024);
    assert_eq!(s.start.udp_sockets, 0);
    assert_eq!(s.live.answer_cache_bytes, 1 << 20);
    // Zone
    let z = &m.zones[0];
    assert_eq!(z.origin, "gslb.example.");
    assert_eq!(z.ttl, 3600);
    assert_eq!(
        (z.soa.refresh, z.soa.retry, z.soa.expire, z.soa.minimum),
        (3600, 600, 1_209_600, 60)
    );
    assert_eq!(z.negative_ttl(), 60, "min(SOA TTL, minimum)");
    // Checks (sorted by name)
    let web = m.checks.iter().find(|c| c.name == "web").unwrap();
    assert_eq!(web.interval, Duration::from_secs(5));
    assert_eq!(web.timeout, Duration::from_secs(2));
    assert_eq!((web.rise, web.fall), (2, 3));
    assert_eq!(web.port, 80);
    match &web.kind {
        CheckKind::Http(h) => {
            assert!(!h.tls);
            assert_eq!(h.path, "/");
            assert!(h.expect_status.is_empty(), "any 2xx");
            assert!(h.tls_verify);
        }
        k => panic!("http check expected, got {k:?}"),
    }
    let raw = m.checks.iter().find(|c| c.name == "raw").unwrap();
    assert_eq!(raw.kind, CheckKind::Tcp);
    assert_eq!(raw.port, 5432);
    // Region
    let r = &m.regions[0];
    assert_eq!(r.weight, 100);
    assert_eq!(r.min_healthy, 1);
    assert!(!r.drain);
    assert_eq!(r.location, None);
    assert!(r.has_v4 && !r.has_v6);
    // Service
    let svc = &m.services[0];
    assert_eq!(svc.name, "www.gslb.example.");
    assert_eq!(svc.ttl, 30);
    assert_eq!(svc.max_answers, 8);
    assert_eq!(svc.policy, Policy::Nearest);
    assert_eq!(svc.when_all_down, AllDown::All);
    assert_eq!(m.zones[0].services, [0]);
}

#[test]
fn default_timeout_is_below_a_short_interval() {
    let m = ok("[checks.fast]\ntype = \"https\"\ninterval = \"1s\"\n");
    let c = &m.checks[0];
    assert_eq!(c.interval, Duration::from_secs(1));
    assert!(c.timeout < c.interval, "{:?}", c.timeout);
    assert_eq!(c.port, 443, "https default port");
}

#[test]
fn an_empty_file_is_a_valid_config() {
    let m = ok("");
    assert!(m.zones.is_empty() && m.services.is_empty());
}

#[test]
fn empty_http_listen_disables_the_admin_server() {
    assert_eq!(
        ok("[server]\nhttp_listen = \"\"\n")
            .server
            .start
            .http_listen,
        None
    );
}

// ---------------------------------------------------------------------------------------
// Durations

#[test]
fn durations_in_every_unit() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("0.5m"), Ok(Duration::from_secs(30)));
}

#[test]
fn bad_durations_are_rejected_with_the_reason() {
    for (s, want) in [
        ("2", "unit must be ms, s, m or h"),
        ("2 sec", "unit must be ms, s, m or h"),
        ("2d", "unit must be ms, s, m or h"),
        ("2S", "unit must be ms, s, m or h"),
        ("ms", "expected e.g."),
        ("", "expected e.g."),
        ("-1s", "expected e.g."),
        ("1.2.3s", "expected e.g."),
        ("0s", "must be positive"),
        ("0ms", "must be positive"),
    ] {
        let e = parse_duration(s).expect_err(s);
        assert!(e.contains(want), "{s:?}: {e}");
        assert!(
            e.contains(&format!("{:?}", s.trim())),
            "names the value: {e}"
        );
    }
}

#[test]
fn a_bad_duration_is_reported_at_its_key() {
    let (line, key, msg) = one("[checks.web]\ntype = \"tcp\"\nport = 1\ninterval = \"5x\"\n");
    assert_eq!((line, key.as_str()), (4, "checks.web.interval"));
    assert!(msg.contains("\"5x\""), "{msg}");
}

#[test]
fn timeout_must_be_less_than_interval() {
    let (line, key, msg) =
        one("[checks.web]\ntype = \"tcp\"\nport = 1\ninterval = \"1s\"\ntimeout = \"1000ms\"\n");
    assert_eq!((line, key.as_str()), (5, "checks.web.timeout"));
    assert_eq!(msg, "timeout (1s) must be less than interval (1s)");
}

// ---------------------------------------------------------------------------------------
// Names

#[test]
fn names_are_lower_cased_and_fully_qualified() {
    assert_eq!(
        normalize_name("WWW.Gslb.Example").as_deref(),
        Ok("www.gslb.example.")
    );
    assert_eq!(
        normalize_name("gslb.example.").as_deref(),
        Ok("gslb.example.")
    );
    assert_eq!(normalize_name(" a.b ").as_deref(), Ok("a.b."));
    assert_eq!(normalize_name(".").as_deref(), Ok("."));
    assert_eq!(normalize_name("_sip._tcp.x").as_deref(), Ok("_sip._tcp.x."));
    assert_eq!(normalize_name("*.x").as_deref(), Ok("*.x."));
}

#[test]
fn bad_names_are_rejected() {
    assert!(normalize_name("").is_err());
    assert!(normalize_name("a..b").unwrap_err().contains("empty label"));
    assert!(normalize_name("..").unwrap_err().contains("empty label"));
    assert!(
        normalize_name(&format!("{}.x", "a".repeat(64)))
            .unwrap_err()
            .contains("longer than 63")
    );
    assert!(normalize_name(&format!("{}.x", "a".repeat(63))).is_ok());
    let long = vec!["abcdefghi"; 26].join(".");
    assert!(
        normalize_name(&long)
            .unwrap_err()
            .contains("longer than 255")
    );
    assert!(normalize_name("a b.x").unwrap_err().contains("characters"));
    assert!(
        normalize_name("exämple.x")
            .unwrap_err()
            .contains("characters")
    );
}

#[test]
fn in_zone_matches_whole_labels_only() {
    assert!(in_zone("gslb.example.", "gslb.example."));
    assert!(in_zone("www.gslb.example.", "gslb.example."));
    assert!(!in_zone("xgslb.example.", "gslb.example."));
    assert!(!in_zone("example.", "gslb.example."));
    assert!(in_zone("anything.", "."));
}

#[test]
fn record_names_relative_absolute_and_apex() {
    let m = ok(&zone_with(
        r#"  { name = "@", type = "A", value = "192.0.2.1" },
  { name = "www", type = "A", value = "192.0.2.2" },
  { name = "a.b", type = "A", value = "192.0.2.3" },
  { name = "WWW2.GSLB.Example.", type = "A", value = "192.0.2.4" },
  { name = "gslb.example.", type = "TXT", value = "apex" },
  { name = "alias", type = "CNAME", value = "www" },
  { name = "out", type = "CNAME", value = "www.example.net." },
  { name = "@", type = "MX", value = "10 Mail" },"#,
    ));
    let names: Vec<String> = records(&m).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "gslb.example.",
            "www.gslb.example.",
            "a.b.gslb.example.",
            "www2.gslb.example.",
            "gslb.example.",
            "alias.gslb.example.",
            "out.gslb.example.",
            "gslb.example.",
        ]
    );
    let data: Vec<RecordData> = records(&m).into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        data[5],
        RecordData::Cname("www.gslb.example.".into()),
        "relative target"
    );
    assert_eq!(
        data[6],
        RecordData::Cname("www.example.net.".into()),
        "absolute target"
    );
    assert_eq!(
        data[7],
        RecordData::Mx {
            preference: 10,
            exchange: "mail.gslb.example.".into()
        }
    );
    assert_eq!(m.zones[0].records[0].ttl, 3600, "zone default TTL");
}

#[test]
fn zone_names_and_ns_are_normalized() {
    let m = ok(r#"
[zones."GSLB.Example"]
soa = { mname = "NS1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }
ns  = ["ns1", "ns.other.example."]
"#);
    let z = &m.zones[0];
    assert_eq!(z.origin, "gslb.example.");
    assert_eq!(z.soa.mname, "ns1.gslb.example.");
    assert_eq!(z.ns, ["ns1.gslb.example.", "ns.other.example."]);
}

#[test]
fn zones_are_ordered_most_specific_first() {
    let m = ok(r#"
[zones."example."]
soa = { mname = "ns1.example.", rname = "h.example.", serial = 1 }
ns  = ["ns1.example."]
[zones."gslb.example."]
soa = { mname = "ns1.example.", rname = "h.example.", serial = 1 }
ns  = ["ns1.example."]
"#);
    let origins: Vec<&str> = m.zones.iter().map(|z| z.origin.as_str()).collect();
    assert_eq!(origins, ["gslb.example.", "example."]);
}

// ---------------------------------------------------------------------------------------
// TXT

#[test]
fn txt_quoted_strings_are_separate_character_strings() {
    assert_eq!(
        parse_txt(r#""v=spf1 -all" "second""#).unwrap(),
        ["v=spf1 -all", "second"]
    );
    assert_eq!(parse_txt(r#"  "a"   "b"  "c" "#).unwrap(), ["a", "b", "c"]);
    assert_eq!(
        parse_txt(r#""with \"quote\" and \\""#).unwrap(),
        [r#"with "quote" and \"#]
    );
    assert_eq!(parse_txt(r#""""#).unwrap(), [""]);
}

#[test]
fn txt_unquoted_is_one_value_split_at_255_bytes() {
    assert_eq!(parse_txt("v=geode demo").unwrap(), ["v=geode demo"]);
    let long = "z".repeat(600);
    let parts = parse_txt(&long).unwrap();
    assert_eq!(
        parts.iter().map(String::len).collect::<Vec<_>>(),
        [255, 255, 90]
    );
    assert_eq!(parts.concat(), long);
    assert_eq!(parse_txt(&"q".repeat(255)).unwrap().len(), 1);
    // Multi-byte characters are never cut in half.
    let wide = "é".repeat(200); // 400 bytes
    let parts = parse_txt(&wide).unwrap();
    assert!(parts.iter().all(|p| p.len() <= 255));
    assert_eq!(parts.concat(), wide);
}

#[test]
fn txt_bad_quoting_is_rejected() {
    assert!(parse_txt(r#""open"#).unwrap_err().contains("unterminated"));
    assert!(
        parse_txt(r#""a" b"#)
            .unwrap_err()
            .contains("between quoted")
    );
    let long = format!("\"{}\"", "q".repeat(256));
    assert!(parse_txt(&long).unwrap_err().contains("longer than 255"));
}

#[test]
fn txt_records_in_a_zone() {
    let m = ok(&zone_with(
        r#"  { name = "@", type = "TXT", value = '"one" "two"' },"#,
    ));
    assert_eq!(
        records(&m)[0].1,
        RecordData::Txt(vec!["one".into(), "two".into()])
    );
}

// ---------------------------------------------------------------------------------------
// Other record data

#[test]
fn every_record_type_parses() {
    let m = ok(&zone_with(
        r#"  { name = "a", type = "A", value = "192.0.2.1" },
  { name = "a", type = "aaaa", value = "2001:db8::1" },
  { name = "_s._tcp", type = "SRV", value = "10 60 5060 sip" },
  { name = "@", type = "CAA", value = '128 issue "ca.example"' },
  { name = "p", type = "PTR", value = "host.example." },
  { name = "@", type = "NS", value = "ns2" },"#,
    ));
    let d: Vec<RecordData> = records(&m).into_iter().map(|(_, d)| d).collect();
    assert_eq!(d[0], RecordData::A("192.0.2.1".parse().unwrap()));
    assert_eq!(d[1], RecordData::Aaaa("2001:db8::1".parse().unwrap()));
    assert_eq!(
        d[2],
        RecordData::Srv {
            priority: 10,
            weight: 60,
            port: 5060,
            target: "sip.gslb.example.".into()
        }
    );
    assert_eq!(
        d[3],
        RecordData::Caa {
            critical: true,
            tag: "issue".into(),
            value: "ca.example".into()
        }
    );
    assert_eq!(d[4], RecordData::Ptr("host.example.".into()));
    assert_eq!(d[5], RecordData::Ns("ns2.gslb.example.".into()));
}

#[test]
fn bad_record_values_name_the_value() {
    for (rec, key, want) in [
        (
            r#"{ name = "a", type = "A", value = "192.0.2.256" }"#,
            "value",
            "invalid IPv4 address \"192.0.2.256\"",
        ),
        (
            r#"{ name = "a", type = "AAAA", value = "192.0.2.1" }"#,
            "value",
            "invalid IPv6 address",
        ),
        (
            r#"{ name = "@", type = "MX", value = "mail" }"#,
            "value",
            "MX value must be \"PREFERENCE EXCHANGE\"",
        ),
        (
            r#"{ name = "@", type = "MX", value = "x mail" }"#,
            "value",
            "invalid preference \"x\"",
        ),
        (
            r#"{ name = "s", type = "SRV", value = "1 2 70000 t" }"#,
            "value",
            "invalid port \"70000\"",
        ),
        (
            r#"{ name = "@", type = "CAA", value = "0 policy x" }"#,
            "value",
            "CAA tag must be",
        ),
        (
            r#"{ name = "h", type = "HINFO", value = "x y" }"#,
            "type",
            "unsupported record type \"HINFO\"",
        ),
        (
            r#"{ name = "@", type = "SOA", value = "x" }"#,
            "type",
            "the SOA comes from the zone's soa key",
        ),
        (
            r#"{ name = "a..b", type = "A", value = "192.0.2.1" }"#,
            "name",
            "empty label",
        ),
        (
            r#"{ name = "www.other.", type = "A", value = "192.0.2.1" }"#,
            "name",
            "outside its zone gslb.example.",
        ),
        (
            r#"{ name = "@", type = "CNAME", value = "x" }"#,
            "type",
            "CNAME at the zone apex",
        ),
        (
            r#"{ name = "sub", type = "NS", value = "ns.x." }"#,
            "type",
            "only served at the apex",
        ),
    ] {
        let (line, k, msg) = one(&zone_with(&format!("  {rec},")));
        assert_eq!(line, 6, "{rec}");
        assert_eq!(
            k,
            format!("zones.\"gslb.example.\".records[0].{key}"),
            "{rec}"
        );
        assert!(msg.contains(want), "{rec}: {msg}");
    }
}

#[test]
fn cname_beside_other_data_is_rejected_either_way_round() {
    for recs in [
        "  { name = \"w\", type = \"A\", value = \"192.0.2.1\" },\n  { name = \"w\", type = \"CNAME\", value = \"x\" },",
        "  { name = \"w\", type = \"CNAME\", value = \"x\" },\n  { name = \"w\", type = \"TXT\", value = \"t\" },",
        "  { name = \"w\", type = \"CNAME\", value = \"x\" },\n  { name = \"W\", type = \"CNAME\", value = \"y\" },",
    ] {
        let (line, key, msg) = one(&zone_with(recs));
        assert_eq!(line, 7, "{recs}");
        assert_eq!(key, "zones.\"gslb.example.\".records[1].name");
        assert!(
            msg.starts_with("CNAME beside other data at w.gslb.example."),
            "{msg}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The example config

#[test]
fn the_example_config_parses() {
    let text = include_str!("../../config/example.toml");
    let loaded = parse(text, Path::new("config/example.toml")).unwrap_or_else(|e| panic!("{e}"));
    let m = &loaded.model;
    assert_eq!(m.zones.len(), 1);
    assert_eq!(m.zones[0].origin, "gslb.example.");
    assert_eq!(m.regions.len(), 4);
    assert_eq!(m.services.len(), 1);
    assert_eq!(m.services[0].max_answers, 2);
    assert_eq!(m.checks.len(), 1);
    assert_eq!(
        m.server.live.geoip_db.as_deref(),
        Some(Path::new("config/../geoip/demo-city.mmdb")),
        "relative to the config file"
    );
    assert_eq!(
        m.server.start.dns_listen,
        ["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
    );
    // docs CNAME www: relative target inside the zone.
    assert!(
        m.zones[0]
            .records
            .iter()
            .any(|r| r.name == "docs.gslb.example."
                && r.data == RecordData::Cname("www.gslb.example.".into()))
    );
    assert_eq!(loaded.source.hash.len(), 16);
}

// ---------------------------------------------------------------------------------------
// Where errors are reported

#[test]
fn syntax_errors_are_reported_on_their_line() {
    let (line, key, msg) =
        one("[server]\ndns_listen = [\"127.0.0.1:53\"]\n\n[zones.\"x.\"\nttl = 1\n");
    assert_eq!((line, key.as_str()), (4, "(syntax)"));
    assert!(!msg.contains('`'), "no Rust-style quoting: {msg}");
    let (line, _, msg) = one("[server]\nhttp_listen = \"a\"\nhttp_listen = \"b\"\n");
    assert_eq!(line, 3);
    assert_eq!(msg, "duplicate key http_listen");
}

#[test]
fn unknown_keys_are_reported_as_themselves() {
    let (line, key, msg) = one("\n[server]\ndns_listen = [\"127.0.0.1:53\"]\nhttp_listn = \"x\"\n");
    assert_eq!((line, key.as_str()), (4, "server.http_listn"));
    assert!(
        msg.starts_with("unknown key 'http_listn', expected one of"),
        "{msg}"
    );
    // A misspelt top-level table: the key is the table, not what it opens.
    let (line, key, msg) = one("# c\n\n[sevrices.\"www.x.\"]\nregions = []\n");
    assert_eq!((line, key.as_str()), (3, "sevrices"));
    assert!(msg.starts_with("unknown key 'sevrices'"), "{msg}");
    // Inside an inline table inside an array.
    let (line, key, _) = one(&zone_with(
        "  { name = \"a\", type = \"A\", value = \"192.0.2.1\" },\n  { name = \"b\", type = \"A\", value = \"192.0.2.2\", tll = 5 },",
    ));
    assert_eq!(
        (line, key.as_str()),
        (7, "zones.\"gslb.example.\".records[1].tll")
    );
}

#[test]
fn wrong_types_say_what_was_expected_in_toml_terms() {
    let (line, key, msg) = one("[server]\n\ndns_listen = \"127.0.0.1:53\"\n");
    assert_eq!((line, key.as_str()), (3, "server.dns_listen"));
    assert!(msg.ends_with("expected an array"), "{msg}");
    let (_, _, msg) = one(&format!("{ZONE}ttl = \"60\"\n"));
    assert!(msg.contains("expected a whole number"), "{msg}");
    let (line, key, msg) =
        one("[zones.\"gslb.example.\"]\nsoa = { mname = \"a.\", rname = \"b.\" }\nns = [\"a.\"]\n");
    assert_eq!((line, key.as_str()), (2, "zones.\"gslb.example.\".soa"));
    assert_eq!(msg, "missing key 'serial'");
}

#[test]
fn a_missing_key_is_reported_on_its_table() {
    let (line, key, msg) =
        one("# zones\n\n[zones.\"gslb.example.\"]\nns = [\"ns1.gslb.example.\"]\n");
    assert_eq!((line, key.as_str()), (3, "zones.\"gslb.example.\""));
    assert!(msg.starts_with("missing soa"), "{msg}");
}

#[test]
fn duplicate_zone_is_reported_on_the_second_spelling() {
    let text = r#"
[zones."GSLB.example."]
soa = { mname = "ns1.gslb.example.", rname = "h.gslb.example.", serial = 1 }
ns  = ["ns1.gslb.example."]

[zones."gslb.example"]
soa = { mname = "ns1.gslb.example.", rname = "h.gslb.example.", serial = 2 }
ns  = ["ns1.gslb.example."]
"#;
    let (line, key, msg) = one(text);
    assert_eq!((line, key.as_str()), (6, "zones.\"gslb.example\""));
    assert_eq!(
        msg,
        "duplicate zone gslb.example. (already defined on line 2 as \"GSLB.example.\")"
    );
}

#[test]
fn duplicate_service_is_reported_on_the_second_spelling() {
    let text = format!(
        r#"{ZONE}
[regions.r]
endpoints = [{{ address = "192.0.2.1" }}]

[services."www.gslb.example"]
regions = ["r"]

[services."WWW.gslb.example."]
regions = ["r"]
"#
    );
    let (line, key, msg) = one(&text);
    assert_eq!((line, key.as_str()), (12, "services.\"WWW.gslb.example.\""));
    assert!(
        msg.starts_with("duplicate service www.gslb.example. (already defined on line 9"),
        "{msg}"
    );
}

#[test]
fn semantic_errors_name_file_line_and_key() {
    let text = format!(
        r#"{ZONE}
[checks.web]
type = "http"

[regions.eu-west]
location = {{ lat = 95.0, lon = 8.0 }}
endpoints = [
  {{ address = "192.0.2.20", check = "web" }},
  {{ address = "192.0.2.21", check = "nope" }},
]

[services."www.gslb.example."]
regions = ["eu-west", "us-east"]
fence = {{ "country:DE" = ["eu-west"], "country:XX" = ["eu-west"] }}

[latency]
"continent:EU" = {{ eu-west = 18, mars = 1 }}

[client_networks]
"10.0.0.1/8" = {{ country = "DE" }}
"#
    );
    let p = problems(&text);
    let got: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (10, "regions.eu-west.location.lat"),
            (13, "regions.eu-west.endpoints[1].check"),
            (17, "services.\"www.gslb.example.\".regions[1]"),
            (18, "services.\"www.gslb.example.\".fence.\"country:XX\""),
            (21, "latency.\"continent:EU\".mars"),
            (24, "client_networks.\"10.0.0.1/8\""),
        ],
        "{p:#?}"
    );
    assert!(
        p.windows(2).all(|w| w[0].line <= w[1].line),
        "sorted by line"
    );
    let shown = ConfigError { problems: p }.to_string();
    assert!(
        shown.starts_with(
            "test.toml:10: regions.eu-west.location.lat: latitude 95 is outside -90..90\n"
        ),
        "{shown}"
    );
    assert!(shown.contains("did you mean 10.0.0.0/8?"), "{shown}");
}

#[test]
fn service_outside_every_zone_and_fence_outside_service() {
    let text = format!(
        r#"{ZONE}
[regions.a]
endpoints = [{{ address = "192.0.2.1" }}]
[regions.b]
endpoints = [{{ address = "192.0.2.2" }}]

[services."www.other.example."]
regions = ["a"]

[services."www.gslb.example."]
regions = ["a"]
fence = {{ "continent:EU" = ["a", "b"] }}
"#
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].line, 11);
    assert_eq!(
        p[0].message,
        "service www.other.example. is outside every zone"
    );
    assert_eq!(p[1].line, 16);
    assert_eq!(
        p[1].key,
        "services.\"www.gslb.example.\".fence.\"continent:EU\"[1]"
    );
    assert_eq!(
        p[1].message,
        "fence region \"b\" is not one of the service's regions"
    );
}

#[test]
fn client_keys_parse() {
    assert_eq!(
        parse_client_key("cidr:10.0.0.0/8"),
        Ok(ClientKey::Cidr("10.0.0.0/8".parse().unwrap()))
    );
    assert_eq!(
        parse_client_key("country:de"),
        Ok(ClientKey::Country(*b"DE"))
    );
    assert_eq!(
        parse_client_key("continent:EU"),
        Ok(ClientKey::Continent(*b"EU"))
    );
    assert!(
        parse_client_key("country:XX")
            .unwrap_err()
            .contains("unknown country")
    );
    assert!(
        parse_client_key("continent:XX")
            .unwrap_err()
            .contains("unknown continent")
    );
    assert!(
        parse_client_key("region:EU")
            .unwrap_err()
            .contains("invalid client group")
    );
    assert!(parse_client_key("EU").is_err());
    assert!(
        parse_client_key("cidr:10.0.0.1/8")
            .unwrap_err()
            .contains("host bits")
    );
    assert!(
        parse_client_key("cidr:10.0.0.0/40")
            .unwrap_err()
            .contains("invalid network")
    );
}

#[test]
fn server_settings_are_validated() {
    let p = problems(
        "[server]\ndns_listen = []\nmax_udp_payload = 100\ntcp_max_connections = 0\nhttp_listen = \"nope\"\nanswer_cache_kib = 1048577\n",
    );
    let got: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "server.dns_listen"),
            (3, "server.max_udp_payload"),
            (4, "server.tcp_max_connections"),
            (5, "server.http_listen"),
            (6, "server.answer_cache_kib"),
        ]
    );
    let off = ok("[server]\nanswer_cache_kib = 0\n").server;
    assert_eq!(off.live.answer_cache_bytes, 0);
    let most = ok("[server]\nanswer_cache_kib = 1048576\n").server;
    assert_eq!(most.live.answer_cache_bytes, 1 << 30);
}

#[test]
fn start_only_changes_are_named() {
    let a = ok("[server]\ndns_listen = [\"127.0.0.1:1\"]\n").server;
    let b = ok("[server]\ndns_listen = [\"127.0.0.1:2\"]\ntcp_idle_timeout = \"3s\"\n").server;
    assert_eq!(
        start_only_changes(&a, &b),
        ["server.dns_listen", "server.tcp_idle_timeout"]
    );
    assert!(start_only_changes(&a, &a).is_empty());
}

// ---------------------------------------------------------------------------------------
// Traps that would load fine and then serve something else than the operator meant

#[test]
fn durations_of_a_year_or_more_are_rejected_as_too_long() {
    let e = parse_duration("9000h").unwrap_err();
    assert!(e.contains("less than a year"), "{e}");
}

#[test]
fn wildcard_names_are_rejected_not_served_literally() {
    let (line, key, msg) = one(&zone_with(
        r#"  { name = "*", type = "A", value = "192.0.2.1" },"#,
    ));
    assert_eq!(
        (line, key.as_str()),
        (6, "zones.\"gslb.example.\".records[0].name")
    );
    assert_eq!(
        msg,
        "wildcard records are not supported (*.gslb.example. would match only itself; list each name)"
    );
    let (line, key, _) = one(&format!(
        "{ZONE}\n[regions.r]\nendpoints = [{{ address = \"192.0.2.1\" }}]\n[services.\"*.gslb.example.\"]\nregions = [\"r\"]\n"
    ));
    assert_eq!((line, key.as_str()), (8, "services.\"*.gslb.example.\""));
}

#[test]
fn ttls_above_2_pow_31_are_rejected() {
    let (line, key, msg) = one(&format!("{ZONE}ttl = 2147483648\n"));
    assert_eq!((line, key.as_str()), (5, "zones.\"gslb.example.\".ttl"));
    assert_eq!(msg, "TTL 2147483648 is more than 2147483647 (RFC 2181 8)");
    let (_, key, _) = one(&zone_with(
        r#"  { name = "a", type = "A", value = "192.0.2.1", ttl = 4294967295 },"#,
    ));
    assert_eq!(key, "zones.\"gslb.example.\".records[0].ttl");
    assert_eq!(
        ok(&format!("{ZONE}ttl = 2147483647\n")).zones[0].ttl,
        2147483647
    );
}

#[test]
fn one_ttl_per_rrset() {
    let (line, key, msg) = one(&zone_with(
        "  { name = \"a\", type = \"A\", value = \"192.0.2.1\", ttl = 60 },\n  { name = \"a\", type = \"TXT\", value = \"t\" },\n  { name = \"a\", type = \"A\", value = \"192.0.2.2\" },",
    ));
    assert_eq!(
        (line, key.as_str()),
        (8, "zones.\"gslb.example.\".records[2].ttl")
    );
    assert_eq!(
        msg,
        "TTL 3600 differs from the other A records at a.gslb.example. (TTL 60); an RRset has one TTL (RFC 2181 5.2)"
    );
    // Same TTL spelt out or inherited: fine.
    ok(&zone_with(
        "  { name = \"a\", type = \"A\", value = \"192.0.2.1\", ttl = 3600 },\n  { name = \"a\", type = \"A\", value = \"192.0.2.2\" },",
    ));
}

#[test]
fn a_record_inside_a_more_specific_zone_of_the_file_is_rejected() {
    let text = r#"
[zones."example."]
soa = { mname = "ns1.example.", rname = "h.example.", serial = 1 }
ns  = ["ns1.example."]
records = [
  { name = "ns1", type = "A", value = "192.0.2.1" },
  { name = "www.gslb", type = "A", value = "192.0.2.2" },
]

[zones."gslb.example."]
soa = { mname = "ns1.example.", rname = "h.example.", serial = 1 }
ns  = ["ns1.example."]
"#;
    let (line, key, msg) = one(text);
    assert_eq!(
        (line, key.as_str()),
        (7, "zones.\"example.\".records[1].name")
    );
    assert_eq!(
        msg,
        "record name www.gslb.example. is inside zone gslb.example., which this file also defines; it belongs there"
    );
}

// ---------------------------------------------------------------------------------------
// Per-service weights and [admin]

#[test]
fn per_service_weights_replace_the_region_weight_for_that_service_only() {
    let m = ok(&format!(
        r#"{ZONE}
[regions.eu-west]
weight = 100
endpoints = [{{ address = "192.0.2.20" }}]
[regions.us-east]
endpoints = [{{ address = "192.0.2.10" }}]
[services."a.gslb.example."]
regions = ["eu-west", "us-east"]
policy = "weighted"
weights = {{ eu-west = 300 }}
[services."b.gslb.example."]
regions = ["eu-west", "us-east"]
"#
    ));
    let eu = m.region_id("eu-west").unwrap();
    let region = &m.regions[usize::from(eu)];
    let a = &m.services[usize::from(m.service_id("a.gslb.example.").unwrap())];
    let b = &m.services[usize::from(m.service_id("b.gslb.example.").unwrap())];
    assert_eq!(a.weight(eu, region), 300);
    assert_eq!(b.weight(eu, region), 100);
    let us = m.region_id("us-east").unwrap();
    assert_eq!(a.weight(us, &m.regions[usize::from(us)]), 100);
}

#[test]
fn per_service_weights_are_bounded() {
    let (line, key, msg) = one(&format!(
        r#"{ZONE}
[regions.eu-west]
endpoints = [{{ address = "192.0.2.20" }}]
[services."a.gslb.example."]
regions = ["eu-west"]
weights = {{ eu-west = 2000000 }}
"#
    ));
    assert_eq!(
        (line, key.as_str(), msg.as_str()),
        (
            10,
            "services.\"a.gslb.example.\".weights.eu-west",
            "weight must be at most 1000000"
        )
    );
}

#[test]
fn admin_needs_both_files() {
    let p = problems(&format!("[admin]\ntoken_file = \"t\"\n{ZONE}"));
    assert!(
        p.iter()
            .any(|p| p.key == "admin.state_file" && p.message == "[admin] needs state_file"),
        "{p:#?}"
    );
}

#[test]
fn secrets_compare_whole_and_never_print() {
    let s = crate::model::Secret::new("tok3n".into());
    assert!(s.matches(b"tok3n"));
    for wrong in [&b""[..], b"tok3", b"tok3n!", b"Tok3n", b"tok3m"] {
        assert!(!s.matches(wrong), "{wrong:?}");
    }
    assert_eq!(format!("{s:?}"), "<redacted>");
}

// [cluster]

#[test]
fn cluster_errors_name_their_key_and_line() {
    let text = format!(
        "{ZONE}\n[cluster]\nnode = \"fra 1\"\npeers = [\"10.0.0.2:9153\", \"nope\", \"10.0.0.2:9153\"]\nhealth = \"most\"\nstale_after = \"100ms\"\n"
    );
    let p = problems(&text);
    let find = |key: &str, part: &str| {
        p.iter()
            .find(|p| p.key == key && p.message.contains(part))
            .unwrap_or_else(|| panic!("no {key} problem with {part:?} in {p:#?}"))
            .line
    };
    assert_eq!(find("cluster", "[cluster] needs secret_file"), 6);
    assert_eq!(find("cluster.node", "must be 1 to 64"), 7);
    assert_eq!(
        find("cluster.peers", "peers[1] = \"nope\" is not ip:port"),
        8
    );
    assert_eq!(find("cluster.peers", "listed twice"), 8);
    assert_eq!(
        find("cluster.health", "not one of local, quorum, all, any"),
        9
    );
    assert_eq!(find("cluster.stale_after", "at least 200ms"), 10);
}

#[test]
fn cluster_unknown_keys_and_a_missing_secret_file_are_reported() {
    let (line, key, msg) = one(&format!(
        "{ZONE}\n[cluster]\nnode = \"a\"\npeers = []\nsecret_file = \"s\"\nsecrt = \"x\"\n"
    ));
    assert_eq!((line, key.as_str()), (10, "cluster.secrt"), "{msg}");
    assert!(msg.contains("unknown"), "{msg}");
    let (line, key, msg) = one(&format!(
        "{ZONE}\n[cluster]\nnode = \"a\"\npeers = []\nsecret_file = \"no-such-secret\"\n"
    ));
    assert_eq!((line, key.as_str()), (9, "cluster.secret_file"), "{msg}");
    assert!(msg.contains("cannot read"), "{msg}");
}
