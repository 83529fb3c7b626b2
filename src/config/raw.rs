//! A serde mirror of the TOML file, with no logic: every table rejects unknown keys and
//! every value keeps the shape it has in the file. Validation happens in `validate`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`: start-only settings.
    #[serde(default)]
    pub server: RawServer,
    /// `[zones."name."]`: authoritative zones.
    #[serde(default)]
    pub zones: BTreeMap<String, RawZone>,
    /// `[checks.NAME]`: probe definitions.
    #[serde(default)]
    pub checks: BTreeMap<String, RawCheck>,
    /// `[regions.NAME]`: regions and their endpoints.
    #[serde(default)]
    pub regions: BTreeMap<String, RawRegion>,
    /// `[services."name."]`: GSLB names.
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    /// `[latency]`: client group -> region -> RTT ms.
    #[serde(default)]
    pub latency: BTreeMap<String, BTreeMap<String, u32>>,
    /// `[client_networks]`: CIDR -> location override.
    #[serde(default)]
    pub client_networks: BTreeMap<String, RawClientNetwork>,
    /// `[admin]`: the runtime override API; absent = disabled.
    pub admin: Option<RawAdmin>,
    /// `[cluster]`: shared health verdicts and overrides with peers; absent = alone.
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Unique name of this instance. Required.
    pub node: Option<String>,
    /// The other instances' admin HTTP addresses (`ip:port`). Required (may be empty).
    pub peers: Option<Vec<String>>,
    /// File with the shared secret (one line), relative to the config file. Required.
    pub secret_file: Option<String>,
    /// `local | quorum | all | any`. Default `quorum`.
    pub health: Option<String>,
    /// A peer not heard from this long does not vote. Default `"5s"`.
    pub stale_after: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// File with the bearer token (one line), relative to the config file. Required.
    pub token_file: Option<String>,
    /// Where overrides persist (JSON, written atomically), relative to the config file.
    /// Required.
    pub state_file: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// DNS addresses (UDP and TCP each). Default `["127.0.0.1:5353"]`.
    pub dns_listen: Option<Vec<String>>,
    /// Admin HTTP address. Default `127.0.0.1:9153`; `""` disables it.
    pub http_listen: Option<String>,
    /// GeoIP2/GeoLite2/DB-IP City mmdb path, relative to the config file; `""` = none.
    pub geoip_db: Option<String>,
    /// Largest UDP response, 512..=4096. Default 1232.
    pub max_udp_payload: Option<u16>,
    /// TCP idle timeout. Default `"10s"`.
    pub tcp_idle_timeout: Option<String>,
    /// Concurrent TCP connections. Default 1024.
    pub tcp_max_connections: Option<usize>,
    /// SO_REUSEPORT UDP sockets per address; 0 = one per core. Default 0.
    pub udp_sockets: Option<usize>,
    /// Answer cache per UDP socket, in KiB; 0 disables it. Default 1024.
    pub answer_cache_kib: Option<u32>,
    /// How long the config file (and GeoIP database) must stay unchanged before a
    /// file-watch reload applies it, so a file written in place in several steps is
    /// never served half-written. SIGHUP applies at once. Default `"500ms"`.
    pub reload_settle: Option<String>,
}

/// `[zones."name."]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// Default TTL of static records. Default 3600.
    pub ttl: Option<u32>,
    /// The SOA (required).
    pub soa: Option<RawSoa>,
    /// Apex name servers (at least one).
    #[serde(default)]
    pub ns: Vec<String>,
    /// Static records.
    #[serde(default)]
    pub records: Vec<RawRecord>,
    /// Online DNSSEC signing of the zone (absent: unsigned).
    pub dnssec: Option<RawDnssec>,
}

/// `[zones."name.".dnssec]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnssec {
    /// BIND-format `.private` key files (each with its `.key` beside it), relative to the
    /// config file. At least one.
    #[serde(default)]
    pub key_files: Vec<String>,
    /// `"nsec"` (default) or `"compact"` (RFC 9824).
    pub denial: Option<String>,
}

/// `soa = { … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    /// Primary name server.
    pub mname: String,
    /// Responsible mailbox as a name.
    pub rname: String,
    /// Serial.
    pub serial: u32,
    /// Refresh seconds. Default 3600.
    pub refresh: Option<u32>,
    /// Retry seconds. Default 600.
    pub retry: Option<u32>,
    /// Expire seconds. Default 1209600.
    pub expire: Option<u32>,
    /// Negative TTL bound. Default 60.
    pub minimum: Option<u32>,
}

/// One static record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    /// Owner, relative to the zone (`@` = apex) or absolute with a trailing dot.
    pub name: String,
    /// A, AAAA, CNAME, TXT, MX, SRV, CAA, NS, PTR.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Record data in zone-file presentation form.
    pub value: String,
    /// TTL; the zone's `ttl` when absent.
    pub ttl: Option<u32>,
}

/// `[checks.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// http | https | tcp.
    #[serde(rename = "type")]
    pub kind: String,
    /// Port; default 80 (http), 443 (https); required for tcp.
    pub port: Option<u16>,
    /// HTTP path. Default "/".
    pub path: Option<String>,
    /// Host header and SNI.
    pub host: Option<String>,
    /// Default "5s".
    pub interval: Option<String>,
    /// Default "2s"; must be less than interval.
    pub timeout: Option<String>,
    /// Default 2.
    pub rise: Option<u32>,
    /// Default 3.
    pub fall: Option<u32>,
    /// Default: any 2xx.
    pub expect_status: Option<Vec<u16>>,
    /// Substring the body must contain.
    pub expect_body: Option<String>,
    /// Extra request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Verify the TLS certificate (https). Default true.
    pub tls_verify: Option<bool>,
}

/// `location = { lat, lon }`.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
}

/// `[regions.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    /// Where the region is.
    pub location: Option<RawLocation>,
    /// Default 100; 0 = standby.
    pub weight: Option<u32>,
    /// Default 1.
    pub min_healthy: Option<u32>,
    /// Default false.
    pub drain: Option<bool>,
    /// At least one.
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
}

/// One endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// IPv4 or IPv6 address handed out.
    pub address: String,
    /// Name of a `[checks.*]` entry; none = always up.
    pub check: Option<String>,
    /// Probe this `addr:port` (or `addr`) instead of the address; `"self"` probes this
    /// server's own admin HTTP listener, wherever it is bound (the demo's backends).
    pub probe: Option<String>,
}

/// `[services."name."]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Candidate regions in order.
    #[serde(default)]
    pub regions: Vec<String>,
    /// nearest | weighted | failover. Default nearest.
    pub policy: Option<String>,
    /// Default 30.
    pub ttl: Option<u32>,
    /// Default 8.
    pub max_answers: Option<u32>,
    /// all | first | nodata | servfail. Default all.
    pub when_all_down: Option<String>,
    /// Client group -> allowed regions.
    pub fence: Option<BTreeMap<String, Vec<String>>>,
    /// Region -> weight for this service only (replaces the region's `weight`).
    pub weights: Option<BTreeMap<String, u32>>,
}

/// `[client_networks]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientNetwork {
    /// Coordinates for these clients.
    pub location: Option<RawLocation>,
    /// ISO country for these clients.
    pub country: Option<String>,
    /// Continent for these clients.
    pub continent: Option<String>,
}
