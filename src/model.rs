//! The validated, immutable configuration: zones, regions, services, endpoints, the
//! client-location tables, and the types a routing decision is made of.
//!
//! Nothing here knows about sockets, DNS wire format, GeoIP files or probes: `config`
//! builds a [`Model`], `route` reads it, and the I/O layers (`dns`, `geo`, `health`)
//! adapt it. Identifiers are indexes into the model's vectors so the query path follows
//! plain indexes instead of hashing names.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use ipnet::IpNet;

/// Index of a region in [`Model::regions`].
pub type RegionId = u16;
/// Index of a service in [`Model::services`].
pub type ServiceId = u16;
/// Index of a probe definition in [`Model::checks`].
pub type CheckId = u16;

/// The most regions one service may list; bounds the stack arrays of the routing path.
pub const MAX_SERVICE_REGIONS: usize = 64;
/// The most addresses one GSLB answer may carry (`max_answers` is validated against it).
pub const MAX_ANSWERS: usize = 16;

/// Everything a running geode serves, as validated from one config file.
#[derive(Debug)]
pub struct Model {
    /// Settings that only take effect at start (`[server]`).
    pub server: ServerSettings,
    /// Authoritative zones, most specific origin first.
    pub zones: Vec<Zone>,
    /// Named probe definitions (`[checks.*]`), sorted by name.
    pub checks: Vec<Check>,
    /// Regions (`[regions.*]`), sorted by name.
    pub regions: Vec<Region>,
    /// GSLB names (`[services.*]`), sorted by name.
    pub services: Vec<Service>,
    /// Measured RTT rows (`[latency]`).
    pub latency: KeyedTable<LatencyRow>,
    /// Operator overrides of GeoIP (`[client_networks]`), longest prefix first.
    pub client_networks: Vec<ClientNetwork>,
    /// Every network an operator named (client_networks, cidr latency rows, cidr fence
    /// keys): the ECS scope of an answer must never cover one of them that the client
    /// is not in, or a resolver would cache the answer for clients it does not fit.
    pub operator_networks: Vec<IpNet>,
}

/// `[server]`, in two parts whose types say when a change takes effect: [`StartSettings`]
/// are bound once at start (a reload that changes one is refused by name), while
/// [`LiveSettings`] are read from the current snapshot where they are used, so a reload
/// applies them. A new key has to be put in one of the two.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Keys fixed for the life of the process.
    pub start: StartSettings,
    /// Keys a reload applies.
    pub live: LiveSettings,
}

/// The start-only part of `[server]`: sockets are bound, and the TCP limits given to the
/// listeners, once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct StartSettings {
    /// DNS listen addresses; each serves UDP and TCP.
    pub dns_listen: Vec<SocketAddr>,
    /// Admin HTTP listen address.
    pub http_listen: Option<SocketAddr>,
    /// Number of SO_REUSEPORT UDP sockets per listen address (0 = one per core).
    pub udp_sockets: usize,
    /// Concurrent TCP connections served at most; more are closed at accept.
    pub tcp_max_connections: usize,
    /// Idle timeout of a TCP connection.
    pub tcp_idle_timeout: Duration,
}

/// The live part of `[server]`: each key is read from the current snapshot where it is
/// used.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    /// GeoIP database path, resolved against the config file's directory (reopened by
    /// a reload when the path or the file changes).
    pub geoip_db: Option<std::path::PathBuf>,
    /// Largest UDP response we send, whatever the client advertises (RFC 6891 6.2.5;
    /// 1232 avoids IP fragmentation, per DNS Flag Day 2020); read per query.
    pub max_udp_payload: u16,
    /// Bytes of answer cache per UDP socket (0 = no cache): fast-path replies kept and
    /// sent again for the same query bytes until the snapshot or any health state moves.
    /// A receive loop resizes its cache when it sees a new snapshot.
    pub answer_cache_bytes: usize,
    /// Quiet time a watched file must keep its content before a file-watch reload
    /// applies it (`server.reload_settle`); SIGHUP does not wait. The file watcher reads
    /// it from the current snapshot for each change.
    pub reload_settle: Duration,
}

impl ServerSettings {
    /// The start-only keys whose values differ between `self` (running) and `new`: a
    /// reload that changes any is refused by name. Every field of [`StartSettings`] is
    /// named below, none behind `..`, so a new start-only key does not compile until it
    /// is named here.
    pub fn start_only_changes(&self, new: &ServerSettings) -> Vec<&'static str> {
        let StartSettings {
            dns_listen,
            http_listen,
            udp_sockets,
            tcp_max_connections,
            tcp_idle_timeout,
        } = &self.start;
        let n = &new.start;
        [
            ("server.dns_listen", *dns_listen != n.dns_listen),
            ("server.http_listen", *http_listen != n.http_listen),
            ("server.udp_sockets", *udp_sockets != n.udp_sockets),
            (
                "server.tcp_max_connections",
                *tcp_max_connections != n.tcp_max_connections,
            ),
            (
                "server.tcp_idle_timeout",
                *tcp_idle_timeout != n.tcp_idle_timeout,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

#[cfg(test)]
impl ServerSettings {
    /// Settings for unit tests that bind nothing: no listeners, no GeoIP, no answer cache.
    pub(crate) fn for_tests() -> ServerSettings {
        ServerSettings {
            start: StartSettings {
                dns_listen: vec![],
                http_listen: None,
                udp_sockets: 1,
                tcp_max_connections: 16,
                tcp_idle_timeout: Duration::from_secs(10),
            },
            live: LiveSettings {
                geoip_db: None,
                max_udp_payload: 1232,
                answer_cache_bytes: 0,
                reload_settle: Duration::from_millis(500),
            },
        }
    }
}

/// A DNS name in presentation form, lower case, with the trailing dot: `www.gslb.example.`.
pub type DomainName = String;

/// One authoritative zone.
#[derive(Debug)]
pub struct Zone {
    /// Zone origin, lower case, trailing dot.
    pub origin: DomainName,
    /// Default TTL of the static records.
    pub ttl: u32,
    /// The SOA record data.
    pub soa: Soa,
    /// Apex NS targets.
    pub ns: Vec<DomainName>,
    /// Static records, names fully qualified and lower case.
    pub records: Vec<StaticRecord>,
    /// GSLB services whose names fall in this zone.
    pub services: Vec<ServiceId>,
    /// `[zones."NAME".dnssec]`: the zone is signed online when present.
    pub dnssec: Option<ZoneDnssec>,
}

/// `[zones."NAME".dnssec]`: online signing (DESIGN.md "DNSSEC (online signing)").
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneDnssec {
    /// The zone's key as written in the file (`zones."<this>"`), to name it in errors.
    pub config_key: String,
    /// BIND-format `.private` files, resolved against the config's directory; each has
    /// its `.key` beside it.
    pub key_files: Vec<PathBuf>,
    /// How NXDOMAIN and NODATA are proven.
    pub denial: Denial,
    /// The key files' contents, one per `key_files` entry, filled in by the load step
    /// (`state::load` through `crate::dnssec::read_keys`), which also checks them; empty
    /// straight after `config::parse`.
    pub keys: Vec<KeyMaterial>,
}

/// `denial = "nsec" | "compact"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A precomputed NSEC chain over the zone's names (RFC 4034, 4035).
    Nsec,
    /// Compact denial of existence, "black lies" with NXNAME (RFC 9824).
    Compact,
}

/// One key pair as read from its BIND files.
#[derive(Clone, PartialEq)]
pub struct KeyMaterial {
    /// The `.private` file.
    pub file: PathBuf,
    /// Text of the `.private` file. Never printed (see the `Debug` impl).
    pub private: String,
    /// Text of the `.key` file (the DNSKEY record).
    pub public: String,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A private key never reaches a log line, /status or an error message.
        f.debug_struct("KeyMaterial")
            .field("file", &self.file)
            .field("private", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

impl Zone {
    /// TTL of negative answers (RFC 2308 section 5: the lesser of the SOA TTL and MINIMUM).
    pub fn negative_ttl(&self) -> u32 {
        self.ttl.min(self.soa.minimum)
    }
}

/// SOA fields (RFC 1035 3.3.13).
#[derive(Debug, Clone, PartialEq)]
pub struct Soa {
    /// Primary name server.
    pub mname: DomainName,
    /// Mailbox of the person responsible, as a domain name.
    pub rname: DomainName,
    /// Zone serial.
    pub serial: u32,
    /// Secondary refresh interval, seconds.
    pub refresh: u32,
    /// Secondary retry interval, seconds.
    pub retry: u32,
    /// Secondary expiry, seconds.
    pub expire: u32,
    /// Negative-caching TTL bound, seconds.
    pub minimum: u32,
}

/// One static resource record.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticRecord {
    /// Owner name, fully qualified, lower case.
    pub name: DomainName,
    /// TTL in seconds.
    pub ttl: u32,
    /// Type and data.
    pub data: RecordData,
}

/// Record data for the types geode serves from config.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias target.
    Cname(DomainName),
    /// Character strings, each at most 255 bytes.
    Txt(Vec<String>),
    /// Mail exchanger.
    Mx {
        /// Preference, lower is preferred.
        preference: u16,
        /// Exchange host.
        exchange: DomainName,
    },
    /// Service locator (RFC 2782).
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: DomainName,
    },
    /// Certification authority authorization (RFC 8659).
    Caa {
        /// Issuer-critical flag.
        critical: bool,
        /// Property tag: issue, issuewild, iodef.
        tag: String,
        /// Property value.
        value: String,
    },
    /// Name server (apex only).
    Ns(DomainName),
    /// Pointer.
    Ptr(DomainName),
}

impl RecordData {
    /// The record type mnemonic, as written in config.
    pub fn type_name(&self) -> &'static str {
        match self {
            RecordData::A(_) => "A",
            RecordData::Aaaa(_) => "AAAA",
            RecordData::Cname(_) => "CNAME",
            RecordData::Txt(_) => "TXT",
            RecordData::Mx { .. } => "MX",
            RecordData::Srv { .. } => "SRV",
            RecordData::Caa { .. } => "CAA",
            RecordData::Ns(_) => "NS",
            RecordData::Ptr(_) => "PTR",
        }
    }
}

/// A probe definition (`[checks.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The check's name in config.
    pub name: String,
    /// Protocol and protocol options.
    pub kind: CheckKind,
    /// Port probed on the endpoint (or on its `probe` address when that has none).
    pub port: u16,
    /// Time between probe starts.
    pub interval: Duration,
    /// Hard deadline of one probe; always less than `interval`.
    pub timeout: Duration,
    /// Consecutive successes to go up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// TCP connect.
    Tcp,
    /// HTTP or HTTPS request.
    Http(HttpCheck),
}

/// Options of an HTTP(S) probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// true for https.
    pub tls: bool,
    /// Request path, starting with `/`.
    pub path: String,
    /// Host header and TLS SNI; the endpoint address when absent.
    pub host: Option<String>,
    /// Acceptable status codes; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// Substring the body must contain (first 64 KiB read).
    pub expect_body: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Verify the server certificate (https).
    pub tls_verify: bool,
}

/// One region: a complete copy of the service somewhere.
#[derive(Debug)]
pub struct Region {
    /// Region name.
    pub name: String,
    /// Where it is, for distance ranking.
    pub location: Option<Coordinates>,
    /// `location.trig()`, computed once when the model is built.
    pub trig: Option<Trig>,
    /// Share of traffic among regions picked together; 0 = standby.
    pub weight: u32,
    /// Endpoints that must be up for the region to be up.
    pub min_healthy: u32,
    /// Operator drain: never handed out, probes keep running.
    pub drain: bool,
    /// The addresses handed out.
    pub endpoints: Vec<Endpoint>,
    /// Has at least one IPv4 endpoint.
    pub has_v4: bool,
    /// Has at least one IPv6 endpoint.
    pub has_v6: bool,
}

impl Region {
    /// The region-up rule, its one definition: a region is up when at least
    /// `min_healthy` of its endpoints are up. The router (which also needs an endpoint
    /// of the asked family), `geode explain`, /status and `geode_region_up` all ask this.
    #[inline]
    pub fn enough_up(&self, endpoints_up: u64) -> bool {
        min_healthy_met(self.min_healthy, endpoints_up)
    }
}

/// [`Region::enough_up`] for a caller that keeps `min_healthy` without the region (the
/// health table's per-region cells).
#[inline]
pub fn min_healthy_met(min_healthy: u32, endpoints_up: u64) -> bool {
    endpoints_up >= u64::from(min_healthy)
}

/// An address handed out in answers, with how its health is known.
#[derive(Debug)]
pub struct Endpoint {
    /// Address put in A/AAAA answers.
    pub address: IpAddr,
    /// Probe definition; `None` means always up.
    pub check: Option<CheckId>,
    /// Where the probe connects; `address`:check port when absent.
    pub probe: Option<SocketAddr>,
    /// Live probed state, shared with the health table. Replaced by the health table
    /// when the snapshot is built so unchanged endpoints keep their state across reloads.
    pub health: Arc<HealthCell>,
}

impl Endpoint {
    /// The address and port the probe connects to.
    pub fn probe_target(&self, check: &Check) -> SocketAddr {
        self.probe
            .unwrap_or_else(|| SocketAddr::new(self.address, check.port))
    }
}

/// Identity of a probed endpoint across reloads: same address, same probe target and the
/// same check definition mean the same probe, whose state is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// Region the endpoint belongs to (its state is reported per region).
    pub region: String,
    /// Address handed out.
    pub address: IpAddr,
    /// Probe target.
    pub target: SocketAddr,
    /// Canonical text of the check definition.
    pub check: String,
}

/// Probed state of one endpoint; written by the health task, read lock-free per query.
#[derive(Debug, Default)]
pub struct HealthCell(AtomicU8);

/// Counts every change of any [`HealthCell`] (and every operator override, see
/// [`routing_changed`]) in the process, so a cache of answers can
/// tell in one load that no routing input outside the snapshot has moved.
static HEALTH_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Marks a change of routing state held outside the snapshot other than a health cell
/// (an operator override): caches keyed on [`health_epoch`] forget what they hold. Call
/// it after publishing the new state.
pub fn routing_changed() {
    HEALTH_EPOCH.fetch_add(1, Ordering::Release);
}

/// The current health epoch. A reader that loads it before reading health cells and sees
/// it unchanged later knows its answers used the states of this epoch or newer.
pub fn health_epoch() -> u64 {
    HEALTH_EPOCH.load(Ordering::Acquire)
}

/// Probed state values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// Not probed yet (a new endpoint is not handed out until its first probe).
    Unknown,
    /// Passing.
    Up,
    /// Failing.
    Down,
}

impl HealthCell {
    /// A cell in the given state.
    pub fn new(state: Probed) -> Self {
        let cell = HealthCell::default();
        cell.set(state);
        cell
    }
    /// Current state.
    pub fn get(&self) -> Probed {
        match self.0.load(Ordering::Relaxed) {
            1 => Probed::Up,
            2 => Probed::Down,
            _ => Probed::Unknown,
        }
    }
    /// Publishes a new state.
    pub fn set(&self, state: Probed) {
        let v = match state {
            Probed::Unknown => 0,
            Probed::Up => 1,
            Probed::Down => 2,
        };
        // The epoch moves after the state, with Release: whoever sees the new epoch
        // (Acquire in `health_epoch`) also sees the new state.
        if self.0.swap(v, Ordering::Relaxed) != v {
            HEALTH_EPOCH.fetch_add(1, Ordering::Release);
        }
    }
}

/// Latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinates {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
}

/// Mean Earth radius, km.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// Sines and cosines of a point's latitude and longitude. Ranking regions from one client
/// then needs no trigonometry per region: see [`Trig::hav`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trig {
    sin_lat: f64,
    cos_lat: f64,
    sin_lon: f64,
    cos_lon: f64,
}

impl Trig {
    /// The haversine term a = sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2), from the identity
    /// sin²(x/2) = (1 - cos x)/2 and the angle-difference formula for cos. It grows with
    /// distance, so regions can be ranked by it directly.
    #[inline]
    pub fn hav(&self, other: &Trig) -> f64 {
        let cos_dlat = self.cos_lat * other.cos_lat + self.sin_lat * other.sin_lat;
        let cos_dlon = self.cos_lon * other.cos_lon + self.sin_lon * other.sin_lon;
        (((1.0 - cos_dlat) + self.cos_lat * other.cos_lat * (1.0 - cos_dlon)) / 2.0).clamp(0.0, 1.0)
    }
}

/// Great-circle distance in km for a haversine term.
pub fn hav_to_km(a: f64) -> f64 {
    2.0 * EARTH_RADIUS_KM * a.clamp(0.0, 1.0).sqrt().asin()
}

/// The haversine term of a distance in km (capped at half the circumference).
pub fn km_to_hav(km: f64) -> f64 {
    let half_angle = (km / (2.0 * EARTH_RADIUS_KM)).clamp(0.0, std::f64::consts::FRAC_PI_2);
    half_angle.sin().powi(2)
}

impl Coordinates {
    /// Precomputed sines and cosines of this point.
    pub fn trig(&self) -> Trig {
        let (sin_lat, cos_lat) = self.lat.to_radians().sin_cos();
        let (sin_lon, cos_lon) = self.lon.to_radians().sin_cos();
        Trig {
            sin_lat,
            cos_lat,
            sin_lon,
            cos_lon,
        }
    }

    /// Great-circle distance in km (haversine, mean Earth radius).
    pub fn distance_km(&self, other: &Coordinates) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = la2 - la1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * 6371.0 * a.sqrt().min(1.0).asin()
    }
}

/// Routing policy of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Latency rows, then distance, then order; weights split ties.
    Nearest,
    /// Every up region in proportion to weight.
    Weighted,
    /// The first up region in `regions` order.
    Failover,
}

/// What to answer when no candidate region is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDown {
    /// Answer as if every candidate were up (fail open).
    All,
    /// The first candidate in `regions` order.
    First,
    /// NOERROR with no answer.
    NoData,
    /// SERVFAIL, so resolvers try elsewhere.
    ServFail,
}

/// A GSLB name.
#[derive(Debug)]
pub struct Service {
    /// The name, lower case, trailing dot.
    pub name: DomainName,
    /// Index of the zone it lives in.
    pub zone: usize,
    /// Candidate regions, in the operator's order (failover order, last-resort order).
    pub regions: Vec<RegionId>,
    /// How regions are ranked.
    pub policy: Policy,
    /// TTL of answers.
    pub ttl: u32,
    /// Addresses per answer.
    pub max_answers: u8,
    /// Behaviour when nothing is up.
    pub when_all_down: AllDown,
    /// Residency fences: a client matching a key only ever gets these regions.
    pub fence: KeyedTable<Vec<RegionId>>,
    /// Per-service weights (`weights = { eu-west = 300 }`): replace the named regions'
    /// own weight for this service only. Usually empty.
    pub weights: Vec<(RegionId, u32)>,
}

impl Service {
    /// The configured weight of region `rid` for this service: its `weights` entry, else
    /// the region's own `weight`. The one rule for both route and /status.
    #[inline]
    pub fn weight(&self, rid: RegionId, region: &Region) -> u32 {
        if self.weights.is_empty() {
            return region.weight;
        }
        self.weights
            .iter()
            .find(|(r, _)| *r == rid)
            .map_or(region.weight, |(_, w)| *w)
    }
}

/// `[admin]`: the runtime override API (README "Runtime overrides"). Absent = disabled.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// File holding the bearer token (resolved against the config file's directory).
    pub token_file: std::path::PathBuf,
    /// Where overrides persist, written atomically.
    pub state_file: std::path::PathBuf,
    /// The token read from `token_file` when the config was loaded (a reload re-reads it,
    /// so a token can be rotated without a restart).
    pub token: Secret,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token_file", &self.token_file)
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

/// How an instance combines its own verdict on an endpoint with its peers' (`[cluster]
/// health`). The rule itself is `crate::cluster::votes::combine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterHealth {
    /// Own probes only: peers' votes are shown but never count.
    Local,
    /// Down when a strict majority of fresh vantages say down.
    Quorum,
    /// Down only when every fresh vantage says down.
    All,
    /// Down when any fresh vantage says down.
    Any,
}

impl ClusterHealth {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            ClusterHealth::Local => "local",
            ClusterHealth::Quorum => "quorum",
            ClusterHealth::All => "all",
            ClusterHealth::Any => "any",
        }
    }
}

/// `[cluster]`: this instance's place in a fleet sharing health verdicts and overrides.
/// Start-only: a reload that changes it is refused by name (restart to change it).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Unique name of this instance (the vantage name in votes, the author of overrides).
    pub node: String,
    /// The other instances' admin HTTP addresses.
    pub peers: Vec<SocketAddr>,
    /// File holding the shared secret.
    pub secret_file: std::path::PathBuf,
    /// The shared secret (HMAC-SHA256 key of every peer message).
    pub secret: Secret,
    /// How votes combine.
    pub health: ClusterHealth,
    /// A peer not heard from this long does not vote.
    pub stale_after: Duration,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node", &self.node)
            .field("peers", &self.peers)
            .field("secret_file", &self.secret_file)
            .field("health", &self.health)
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

/// A secret that never prints (Debug shows `<redacted>`) and compares in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// True when `offered` is the secret. The time taken depends only on the lengths,
    /// never on where the first differing byte is, so a remote caller cannot find the
    /// token byte by byte from response times. Hand-written xor-fold rather than a crate:
    /// eight lines, and `black_box` keeps the compiler from turning it into an early exit.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        if secret.len() != offered.len() {
            return false;
        }
        let mut diff = 0u8;
        for (a, b) in secret.iter().zip(offered) {
            diff |= std::hint::black_box(a ^ b);
        }
        std::hint::black_box(diff) == 0
    }
}

impl Secret {
    /// The secret's bytes, as a MAC key. Never print or log them.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Client-group keys as written in config: `cidr:…`, `country:XX`, `continent:XX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A client network.
    Cidr(IpNet),
    /// ISO 3166-1 alpha-2 country.
    Country([u8; 2]),
    /// Continent code (EU, NA, …).
    Continent([u8; 2]),
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::Cidr(n) => write!(f, "cidr:{n}"),
            ClientKey::Country(c) => write!(f, "country:{}", code_str(c)),
            ClientKey::Continent(c) => write!(f, "continent:{}", code_str(c)),
        }
    }
}

/// A two-letter code as text.
pub fn code_str(c: &[u8; 2]) -> &str {
    std::str::from_utf8(c).unwrap_or("??")
}

/// A table keyed by client group; lookup returns the most specific row that matches
/// (longest cidr, then country, then continent).
#[derive(Debug, Clone, Default)]
pub struct KeyedTable<T> {
    /// cidr rows, longest prefix first.
    pub cidr: Vec<(IpNet, T)>,
    /// Country rows.
    pub country: HashMap<[u8; 2], T, BuildHasherDefault<Fx>>,
    /// Continent rows.
    pub continent: HashMap<[u8; 2], T, BuildHasherDefault<Fx>>,
}

impl<T> KeyedTable<T> {
    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.cidr.is_empty() && self.country.is_empty() && self.continent.is_empty()
    }

    /// Index in `cidr` of the row [`KeyedTable::lookup`] takes for an address, if a cidr
    /// row matches it: the first, which is the longest prefix containing it. The address
    /// reaches a lookup through this alone, so two addresses with the same answer here
    /// (and the same country and continent) look up the same row.
    #[inline]
    pub fn cidr_row(&self, ip: &IpAddr) -> Option<usize> {
        self.cidr.iter().position(|(n, _)| n.contains(ip))
    }

    /// The most specific row matching the client.
    // The emptiness test inlined into the caller, the search left out of line: most
    // configs have no latency table and most services no fence, and a call made only to
    // learn that cost ~40 instructions, twice per routing decision (bench/README.md).
    #[inline(always)]
    pub fn lookup(&self, client: &ClientLocation) -> Option<(ClientKey, &T)> {
        if self.is_empty() {
            None
        } else {
            self.lookup_rows(client)
        }
    }

    /// [`KeyedTable::lookup`] in a table with rows.
    #[inline(never)]
    fn lookup_rows(&self, client: &ClientLocation) -> Option<(ClientKey, &T)> {
        if let Some(i) = self.cidr_row(&client.ip) {
            let (net, row) = &self.cidr[i];
            return Some((ClientKey::Cidr(*net), row));
        }
        if let Some(c) = client.country
            && let Some(row) = self.country.get(&c)
        {
            return Some((ClientKey::Country(c), row));
        }
        if let Some(c) = client.continent
            && let Some(row) = self.continent.get(&c)
        {
            return Some((ClientKey::Continent(c), row));
        }
        None
    }
}

/// One `[latency]` row: RTT in ms to the regions it names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyRow {
    /// (region, rtt ms).
    pub rtt: Vec<(RegionId, u32)>,
}

impl LatencyRow {
    /// RTT to a region, when the row names it.
    pub fn get(&self, region: RegionId) -> Option<u32> {
        self.rtt
            .iter()
            .find(|(r, _)| *r == region)
            .map(|(_, ms)| *ms)
    }
}

/// One `[client_networks]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientNetwork {
    /// The network.
    pub net: IpNet,
    /// Coordinates to use for its clients.
    pub location: Option<Coordinates>,
    /// Country to use (also gives a continent and, without `location`, coordinates).
    pub country: Option<[u8; 2]>,
    /// Continent to use.
    pub continent: Option<[u8; 2]>,
}

/// Where a client's location came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocatedBy {
    /// An operator `[client_networks]` entry.
    ClientNetwork(IpNet),
    /// The GeoIP database; the network is the database record's network.
    GeoIp(IpNet),
    /// Nothing knows this client (the network, when GeoIP had none, is where it looked).
    Unknown(Option<IpNet>),
}

/// Which address identified the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    /// The EDNS Client Subnet option (address masked to the source prefix).
    Ecs {
        /// SOURCE PREFIX-LENGTH.
        source_prefix: u8,
    },
    /// The packet's source address (the resolver, or the client itself).
    Resolver,
}

/// True when an ECS address says nothing about where the client is (RFC 7871 7.1.2 and
/// DESIGN.md): source prefix 0, or an unspecified, loopback, link-local, multicast or
/// broadcast address (IPv4-mapped IPv6 judged as IPv4). Private and documentation ranges
/// are used as given: operators map them with `client_networks`.
#[inline]
pub fn ecs_unusable(addr: IpAddr, source_prefix: u8) -> bool {
    source_prefix == 0 || says_nothing(addr.to_canonical())
}

/// The address half of [`ecs_unusable`], for an address already in canonical form
/// (IPv4-mapped IPv6 turned into IPv4): [`client_address`] canonicalises once for both.
#[inline]
fn says_nothing(canonical: IpAddr) -> bool {
    match canonical {
        IpAddr::V4(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Which address locates the client: the one rule the UDP fast path, the ordinary path
/// and `explain` all call. `ecs` is the query's ECS (address, SOURCE PREFIX-LENGTH) when
/// it has one, `resolver` the address the query came from. A usable ECS subnet wins;
/// otherwise the resolver's own address stands for the client.
// Always inlined: called once per query from the fast path, where the call and the enum
// moves across it cost more than the rule (callgrind, benches/qpath.rs); a plain
// `#[inline]` left it out of line (~24 a query).
#[inline(always)]
pub fn client_address(ecs: Option<(IpAddr, u8)>, resolver: IpAddr) -> (IpAddr, ClientSource) {
    // `ecs_unusable`, with the canonical address computed once.
    if let Some((addr, source_prefix)) = ecs {
        let addr = addr.to_canonical();
        if source_prefix != 0 && !says_nothing(addr) {
            return (addr, ClientSource::Ecs { source_prefix });
        }
    }
    (resolver, ClientSource::Resolver)
}

/// A located client: input to [`crate::route::route`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientLocation {
    /// The address looked up (ECS address masked to its prefix, or the source address;
    /// IPv4-mapped IPv6 already turned into IPv4).
    pub ip: IpAddr,
    /// Where `ip` came from.
    pub source: ClientSource,
    /// What located it.
    pub by: LocatedBy,
    /// Coordinates, when known.
    pub coords: Option<Coordinates>,
    /// Country code, when known.
    pub country: Option<[u8; 2]>,
    /// Continent code, when known.
    pub continent: Option<[u8; 2]>,
    /// Prefix length for which this location holds (the deciding network, narrowed so it
    /// covers no operator network the client is not in).
    pub scope: u8,
}

impl ClientLocation {
    /// A client nothing is known about.
    pub fn unknown(ip: IpAddr, source: ClientSource) -> Self {
        ClientLocation {
            ip,
            source,
            by: LocatedBy::Unknown(None),
            coords: None,
            country: None,
            continent: None,
            scope: 0,
        }
    }

    /// The client subnet weighted choices hash on, so one resolver (or one ECS subnet)
    /// keeps getting the same answer: /24 for IPv4, /56 for IPv6, or the ECS source
    /// prefix when that is shorter.
    pub fn affinity_prefix(&self) -> u8 {
        let cap = if self.ip.is_ipv4() { 24 } else { 56 };
        match self.source {
            ClientSource::Ecs { source_prefix } => source_prefix.min(cap),
            ClientSource::Resolver => cap,
        }
    }
}

/// Address family an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

/// What an answer for a GSLB name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Addresses.
    Answer,
    /// The name exists but has nothing to give for this family or client.
    NoData,
    /// SERVFAIL (`when_all_down = "servfail"`).
    ServFail,
}

/// Up to [`MAX_ANSWERS`] addresses without a heap allocation.
#[derive(Debug, Clone, Copy)]
pub struct AddrList {
    addrs: [IpAddr; MAX_ANSWERS],
    len: u8,
}

impl Default for AddrList {
    fn default() -> Self {
        AddrList {
            addrs: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); MAX_ANSWERS],
            len: 0,
        }
    }
}

impl AddrList {
    /// Appends; returns false when full.
    pub fn push(&mut self, a: IpAddr) -> bool {
        if usize::from(self.len) == MAX_ANSWERS {
            return false;
        }
        self.addrs[usize::from(self.len)] = a;
        self.len += 1;
        true
    }
    /// The addresses.
    pub fn as_slice(&self) -> &[IpAddr] {
        &self.addrs[..usize::from(self.len)]
    }
    /// Number of addresses.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Empties the list (the slots past the length are left as they are).
    pub fn clear(&mut self) {
        self.len = 0;
    }
    /// Becomes equal to `other`, copying only its addresses: the whole list is some 270
    /// bytes, and a region answers with a few addresses (the route memo copies a kept
    /// list on every hit).
    // Always inlined: LLVM kept it out of line in the memo's hit path, a call per hit.
    #[inline(always)]
    pub fn assign(&mut self, other: &AddrList) {
        // The first few slots are copied whether used or not: a copy of a fixed size is
        // a few vector moves, one of the used length a call to memcpy. Slots past the
        // length are never read.
        const HEAD: usize = 4;
        self.addrs[..HEAD].copy_from_slice(&other.addrs[..HEAD]);
        let n = usize::from(other.len);
        if n > HEAD {
            self.addrs[HEAD..n].copy_from_slice(&other.addrs[HEAD..n]);
        }
        self.len = other.len;
    }
}

/// Lists are equal when their addresses are: slots past the length do not count.
impl PartialEq for AddrList {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// The result of routing one query for a GSLB name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Answer, NODATA or SERVFAIL.
    pub outcome: Outcome,
    /// The region the addresses come from.
    pub region: Option<RegionId>,
    /// The addresses.
    pub addrs: AddrList,
    /// TTL of the answer records.
    pub ttl: u32,
    /// ECS SCOPE PREFIX-LENGTH: how much of the client address the answer depended on.
    pub scope: u8,
}

impl Default for Decision {
    /// NODATA with nothing in it; [`crate::route::route_into`] overwrites every field.
    fn default() -> Self {
        Decision {
            outcome: Outcome::NoData,
            region: None,
            addrs: AddrList::default(),
            ttl: 0,
            scope: 0,
        }
    }
}

impl Model {
    /// Region by name.
    pub fn region_id(&self, name: &str) -> Option<RegionId> {
        self.regions
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .map(|i| i as RegionId)
    }

    /// Service by name (lower case, trailing dot).
    pub fn service_id(&self, name: &str) -> Option<ServiceId> {
        self.services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| i as ServiceId)
    }

    /// Every probed endpoint with its identity, for the health table.
    pub fn probed_endpoints(
        &self,
    ) -> impl Iterator<Item = (EndpointKey, &Region, &Endpoint, &Check)> {
        self.regions.iter().flat_map(move |region| {
            region.endpoints.iter().filter_map(move |ep| {
                let check = &self.checks[usize::from(ep.check?)];
                Some((
                    EndpointKey {
                        region: region.name.clone(),
                        address: ep.address,
                        target: ep.probe_target(check),
                        check: format!("{check:?}"),
                    },
                    region,
                    ep,
                    check,
                ))
            })
        })
    }
}

/// The hasher for tables keyed by trusted data (config names, GeoIP record offsets, the
/// answer cache's keys, salted per process): SipHash's flood resistance buys nothing there
/// and costs a third of a lookup. An alias, so its users need not name the crate.
pub type Fx = rustc_hash::FxHasher;

/// The shortest prefix around `ip` that covers no operator network the client is not in
/// and lies inside every operator network it is in. A resolver caches an answer for the
/// whole ECS scope block, so a block that straddled an operator network would hand this
/// client's answer to clients the operator routes differently.
pub fn scope_floor(ip: IpAddr, nets: &[IpNet]) -> u8 {
    let mut floor = 0u8;
    for n in nets {
        let p = match (ip, n) {
            (IpAddr::V4(a), IpNet::V4(n4)) => {
                if n4.contains(&a) {
                    n4.prefix_len()
                } else {
                    let common = (u32::from(a) ^ u32::from(n4.network())).leading_zeros() as u8;
                    common.min(n4.prefix_len()) + 1
                }
            }
            (IpAddr::V6(a), IpNet::V6(n6)) => {
                if n6.contains(&a) {
                    n6.prefix_len()
                } else {
                    let common = (u128::from(a) ^ u128::from(n6.network())).leading_zeros() as u8;
                    common.min(n6.prefix_len()) + 1
                }
            }
            _ => 0,
        };
        floor = floor.max(p);
    }
    floor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_address_applies_ecs_unusable_to_the_canonical_address() {
        // client_address inlines ecs_unusable (one canonicalisation): the same rule.
        let resolver: IpAddr = "198.51.100.53".parse().unwrap();
        let mut addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.1.0",
            "224.0.0.0",
            "239.1.2.0",
            "255.255.255.255",
            "10.0.0.0",
            "192.0.2.0",
            "::",
            "::1",
            "fe80::",
            "febf::",
            "fec0::",
            "ff02::",
            "2001:db8::",
            "::ffff:127.0.0.1",
            "::ffff:192.0.2.0",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            "::ffff:169.254.0.0",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut x = 7u64;
        for _ in 0..2000 {
            x = crate::route::mix(x);
            addrs.push(IpAddr::V4((x as u32).into()));
            addrs.push(IpAddr::V6(
                u128::from(x).rotate_right((x % 128) as u32).into(),
            ));
            addrs.push(IpAddr::V6(Ipv4Addr::from(x as u32).to_ipv6_mapped()));
        }
        for a in addrs {
            for p in [0u8, 1, 24, 56, 128] {
                let want = if ecs_unusable(a, p) {
                    (resolver, ClientSource::Resolver)
                } else {
                    (a.to_canonical(), ClientSource::Ecs { source_prefix: p })
                };
                assert_eq!(client_address(Some((a, p)), resolver), want, "{a}/{p}");
            }
        }
        assert_eq!(
            client_address(None, resolver),
            (resolver, ClientSource::Resolver)
        );
    }

    #[test]
    fn scope_floor_excludes_operator_networks_the_client_is_not_in() {
        let nets: Vec<IpNet> = vec![
            "10.20.0.0/16".parse().unwrap(),
            "2001:db8:1::/48".parse().unwrap(),
        ];
        // Inside the /16: at least /16.
        assert_eq!(scope_floor("10.20.3.4".parse().unwrap(), &nets), 16);
        // 10.21.x shares 15 bits with 10.20/16: a /16 block around it excludes 10.20/16.
        assert_eq!(scope_floor("10.21.0.1".parse().unwrap(), &nets), 16);
        // 10.128.x differs at bit 9: a /9 already excludes it.
        assert_eq!(scope_floor("10.128.0.1".parse().unwrap(), &nets), 9);
        // Other family: no constraint.
        assert_eq!(scope_floor("192.0.2.1".parse().unwrap(), &nets[1..]), 0);
        assert_eq!(scope_floor("2001:db8:2::1".parse().unwrap(), &nets), 47);
        assert_eq!(scope_floor("10.0.0.1".parse().unwrap(), &[]), 0);
    }

    #[test]
    fn distance_dublin_to_virginia_is_about_5500_km() {
        let dublin = Coordinates {
            lat: 53.35,
            lon: -6.26,
        };
        let ashburn = Coordinates {
            lat: 39.04,
            lon: -77.49,
        };
        let d = dublin.distance_km(&ashburn);
        assert!((5400.0..5600.0).contains(&d), "{d}");
        assert_eq!(dublin.distance_km(&dublin), 0.0);
    }

    #[test]
    fn precomputed_trig_matches_haversine() {
        let pts = [
            (53.35, -6.26),
            (39.04, -77.49),
            (-33.87, 151.21),
            (35.68, 139.69),
            (0.0, 0.0),
            (0.0, 180.0),
            (51.5, -0.1),
            (51.5001, -0.1),
        ];
        for a in pts {
            for b in pts {
                let (ca, cb) = (
                    Coordinates { lat: a.0, lon: a.1 },
                    Coordinates { lat: b.0, lon: b.1 },
                );
                let km = hav_to_km(ca.trig().hav(&cb.trig()));
                assert!(
                    (km - ca.distance_km(&cb)).abs() < 1e-3 * km.max(1.0),
                    "{a:?} {b:?}: {km} vs {}",
                    ca.distance_km(&cb)
                );
                assert!((hav_to_km(km_to_hav(km)) - km).abs() < 1e-6 * km.max(1.0));
            }
        }
    }

    #[test]
    fn antipodes_do_not_produce_nan() {
        let a = Coordinates { lat: 0.0, lon: 0.0 };
        let b = Coordinates {
            lat: 0.0,
            lon: 180.0,
        };
        let d = a.distance_km(&b);
        assert!((20000.0..20040.0).contains(&d), "{d}");
    }

    #[test]
    fn rfc2308_negative_ttl_is_min_of_soa_ttl_and_minimum() {
        let soa = Soa {
            mname: "ns1.".into(),
            rname: "h.".into(),
            serial: 1,
            refresh: 1,
            retry: 1,
            expire: 1,
            minimum: 60,
        };
        let mut z = Zone {
            origin: "x.".into(),
            ttl: 3600,
            soa: soa.clone(),
            ns: vec![],
            records: vec![],
            services: vec![],
            dnssec: None,
        };
        assert_eq!(z.negative_ttl(), 60);
        z.ttl = 30;
        assert_eq!(z.negative_ttl(), 30);
    }

    #[test]
    fn addr_list_caps_at_max_answers() {
        let mut l = AddrList::default();
        for i in 0..MAX_ANSWERS {
            assert!(l.push(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i as u8))));
        }
        assert!(!l.push(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(l.len(), MAX_ANSWERS);
    }

    #[test]
    fn an_assigned_list_equals_its_source_whatever_it_held() {
        // A longer, shorter, empty or full list before: afterwards the same addresses
        // in the same order, and pushing goes on after them.
        let list = |n: usize, base: u8| {
            let mut l = AddrList::default();
            for i in 0..n {
                l.push(IpAddr::V4(Ipv4Addr::new(198, 51, base, i as u8)));
            }
            l
        };
        for before in [0, 1, 3, 5, MAX_ANSWERS] {
            for n in [0, 1, 2, 4, 5, MAX_ANSWERS] {
                let mut l = list(before, 1);
                let src = list(n, 2);
                l.assign(&src);
                assert_eq!(l, src);
                assert_eq!(l.as_slice(), src.as_slice());
                if n < MAX_ANSWERS {
                    assert!(l.push(IpAddr::V6(Ipv6Addr::LOCALHOST)));
                    assert_eq!(l.as_slice()[n], IpAddr::V6(Ipv6Addr::LOCALHOST));
                    assert_eq!(&l.as_slice()[..n], src.as_slice());
                }
            }
        }
    }

    #[test]
    fn keyed_table_prefers_cidr_then_country_then_continent() {
        let mut t = KeyedTable::<u32>::default();
        t.continent.insert(*b"EU", 1);
        t.country.insert(*b"DE", 2);
        t.cidr.push(("198.18.0.0/15".parse().unwrap(), 3));
        let mut c = ClientLocation::unknown("198.18.1.1".parse().unwrap(), ClientSource::Resolver);
        c.country = Some(*b"DE");
        c.continent = Some(*b"EU");
        assert_eq!(t.lookup(&c).map(|(_, v)| *v), Some(3));
        c.ip = "192.0.2.1".parse().unwrap();
        assert_eq!(t.lookup(&c).map(|(_, v)| *v), Some(2));
        c.country = Some(*b"FR");
        assert_eq!(
            t.lookup(&c).map(|(k, v)| (k.to_string(), *v)),
            Some(("continent:EU".into(), 1))
        );
        c.continent = None;
        assert!(t.lookup(&c).is_none());
    }
}
