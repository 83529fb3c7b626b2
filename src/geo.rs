//! GeoIP: open, verify and look up a City-schema mmdb (GeoIP2, GeoLite2, DB-IP City Lite),
//! and locate a client from operator overrides first, the database second.
//!
//! The database is memory-mapped: a full GeoLite2-City is ~60 MB and most of it is never
//! touched, so mapping keeps resident memory low. Tools like geoipupdate replace the file
//! by rename, so an open mapping keeps reading the old inode until we swap readers.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::countries;
use crate::model::{ClientLocation, ClientSource, Coordinates, LocatedBy, Model};

/// An open GeoIP database.
pub struct GeoDb {
    reader: maxminddb::Reader<maxminddb::Mmap>,
    path: PathBuf,
    identity: Option<FileIdentity>,
    /// Distinguishes this reader's records in the decode cache.
    id: u64,
}

/// What identifies one version of a file: replacing it by rename changes the inode,
/// rewriting it changes size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// The identity of the file now at `path`.
pub fn file_identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileIdentity {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("type", &self.database_type())
            .finish()
    }
}

/// Why a database was refused.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be opened or is not an mmdb.
    #[error("cannot open GeoIP database {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
    /// The file opened but its tree or data section is damaged.
    #[error("GeoIP database {path} is damaged: {source}")]
    Damaged {
        /// The path.
        path: PathBuf,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
    /// The database does not have the City/Country schema geode reads.
    #[error(
        "GeoIP database {path} has no country, continent or location data (type {db_type}); use a City or Country database"
    )]
    Schema {
        /// The path.
        path: PathBuf,
        /// Its database_type.
        db_type: String,
    },
}

/// The fields geode needs, decoded without copying strings.
#[derive(Deserialize, Default)]
struct Lean<'a> {
    #[serde(borrow, default)]
    country: Option<LeanCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<LeanCode<'a>>,
    #[serde(borrow, default)]
    continent: Option<LeanContinent<'a>>,
    #[serde(default)]
    location: Option<LeanLocation>,
}

#[derive(Deserialize)]
struct LeanCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct LeanContinent<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct LeanLocation {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// What the database says about one address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoHit {
    /// The database network the address fell in (valid even without data).
    pub network: IpNet,
    /// Country, when known.
    pub country: Option<[u8; 2]>,
    /// Continent, when known.
    pub continent: Option<[u8; 2]>,
    /// Coordinates, when known.
    pub coords: Option<Coordinates>,
}

impl GeoHit {
    /// True when the record carries anything geode can route on.
    pub fn has_data(&self) -> bool {
        self.country.is_some() || self.continent.is_some() || self.coords.is_some()
    }
}

fn code(s: Option<&str>) -> Option<[u8; 2]> {
    let b = s?.as_bytes();
    (b.len() == 2).then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
}

impl GeoDb {
    /// Opens, verifies and probes a database; a database that cannot answer is refused
    /// before it serves (as CoreDNS's geoip plugin does).
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        // Read before mapping: if the file is replaced in between, the stale identity
        // makes the next reload open it again, which is harmless.
        let identity = file_identity(path);
        // Verification reads every page of the file. Doing it on a mapping that is then
        // dropped keeps those pages out of our resident set: the serving mapping below
        // only faults in what lookups touch (a few MiB of a 60 MB GeoLite2-City).
        {
            let check = Self::map(path)?;
            check.verify().map_err(|source| GeoError::Damaged {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let reader = Self::map(path)?;
        let db = GeoDb {
            reader,
            path: path.to_path_buf(),
            identity,
            id: NEXT_DB_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        db.probe()?;
        Ok(db)
    }

    fn map(path: &Path) -> Result<maxminddb::Reader<maxminddb::Mmap>, GeoError> {
        // SAFETY: the mapping is read-only. The file must not be truncated in place while
        // mapped; geoipupdate and our docs replace it by rename, which leaves this mapping
        // on the old inode until the reader is dropped.
        #[allow(unsafe_code)]
        let reader = unsafe { maxminddb::Reader::open_mmap(path) };
        reader.map_err(|source| GeoError::Open {
            path: path.to_path_buf(),
            source,
        })
    }

    fn probe(&self) -> Result<(), GeoError> {
        let ty = self.database_type().to_string();
        let lower = ty.to_ascii_lowercase();
        if lower.contains("asn")
            || lower.contains("isp")
            || lower.contains("anonymous")
            || lower.contains("domain")
        {
            return Err(GeoError::Schema {
                path: self.path.clone(),
                db_type: ty,
            });
        }
        Ok(())
    }

    /// True when the file at our path is still the one we opened.
    pub fn is_current(&self, path: &Path) -> bool {
        path == self.path && self.identity.is_some() && file_identity(path) == self.identity
    }

    /// The database_type from its metadata, e.g. `GeoLite2-City`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Build time (unix seconds) from the metadata.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// Looks an address up. Damaged records read as "no data" rather than failing a query.
    pub fn lookup(&self, ip: IpAddr) -> Option<GeoHit> {
        let res = self.reader.lookup(ip).ok()?;
        let net = res.network().ok()?;
        let mut network = IpNet::new(net.ip(), net.prefix()).ok()?;
        // An IPv4 address in an IPv6 tree reports the network in IPv4 form already; a
        // mapped form would make scopes meaningless to the resolver.
        if let (IpAddr::V4(_), IpNet::V6(n6)) = (ip, network)
            && let Some(v4) = n6.network().to_ipv4_mapped()
        {
            let p = n6.prefix_len().saturating_sub(96);
            network = IpNet::new(IpAddr::V4(v4), p).ok()?;
        }
        let (country, continent, coords) = match res.offset() {
            None => (None, None, None),
            Some(offset) => cached(self.id, offset, || decode(&res)),
        };
        Some(GeoHit {
            network,
            country,
            continent,
            coords,
        })
    }
}

type Decoded = (Option<[u8; 2]>, Option<[u8; 2]>, Option<Coordinates>);

fn decode<S: AsRef<[u8]>>(res: &maxminddb::LookupResult<'_, S>) -> Decoded {
    let lean: Lean = res.decode().ok().flatten().unwrap_or_default();
    let country = code(lean.country.and_then(|c| c.iso_code))
        .or_else(|| code(lean.registered_country.and_then(|c| c.iso_code)));
    let continent = code(lean.continent.and_then(|c| c.code)).or_else(|| {
        country.and_then(|c| countries::country(crate::model::code_str(&c)).map(|k| k.continent))
    });
    let coords = lean.location.and_then(|l| match (l.latitude, l.longitude) {
        (Some(lat), Some(lon)) => Some(Coordinates { lat, lon }),
        _ => None,
    });
    (country, continent, coords)
}

/// Decoded records are cached per thread, keyed by (database, record offset): a City
/// database has far fewer distinct records than networks, and decoding one (skipping
/// the names in many languages) is most of the cost of a lookup. Per thread, so the
/// query path takes no lock; bounded, so a scan of the address space cannot grow it.
const CACHE_MAX: usize = 1 << 16;

/// (database id, record offset -> decoded record).
type Cache = (
    u64,
    std::collections::HashMap<usize, Decoded, std::hash::BuildHasherDefault<crate::model::Fx>>,
);

thread_local! {
    static CACHE: std::cell::RefCell<Cache> = std::cell::RefCell::new((0, std::collections::HashMap::default()));
}

fn cached(db: u64, offset: usize, decode: impl FnOnce() -> Decoded) -> Decoded {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != db || c.1.len() >= CACHE_MAX {
            c.0 = db;
            c.1.clear();
        }
        *c.1.entry(offset).or_insert_with(decode)
    })
}

static NEXT_DB_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Turns an IPv4-mapped IPv6 address into IPv4 (RFC 7871 treats it as IPv4).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Outcome of a GeoIP consultation, for the `geode_geoip_lookups_total` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoLookup {
    /// Not consulted (operator override, or no database).
    Skipped,
    /// The database had data.
    Hit,
    /// The database had nothing usable.
    Miss,
}

impl GeoLookup {
    /// Counts this lookup in `geode_geoip_lookups_total`.
    pub fn count(self, metrics: &crate::metrics::Metrics) {
        match self {
            GeoLookup::Hit => metrics.geoip_hit.inc(),
            GeoLookup::Miss => metrics.geoip_miss.inc(),
            GeoLookup::Skipped => {}
        }
    }
}

/// Locates a client: the longest `[client_networks]` match, else GeoIP, else unknown.
/// The scope is the deciding network's prefix, lengthened so the block it names holds no
/// operator network the client is not in.
pub fn locate(
    model: &Model,
    geo: Option<&GeoDb>,
    ip: IpAddr,
    source: ClientSource,
) -> (ClientLocation, GeoLookup) {
    let ip = canonical_ip(ip);
    let mut loc = ClientLocation::unknown(ip, source);
    let mut deciding = 0u8;
    let mut lookup = GeoLookup::Skipped;
    if let Some(cn) = model.client_networks.iter().find(|c| c.net.contains(&ip)) {
        let country = cn
            .country
            .and_then(|c| countries::country(crate::model::code_str(&c)));
        loc.by = LocatedBy::ClientNetwork(cn.net);
        loc.country = cn.country;
        loc.continent = cn.continent.or(country.map(|c| c.continent));
        loc.coords = cn.location.or(country.map(|c| Coordinates {
            lat: c.lat,
            lon: c.lon,
        }));
        deciding = cn.net.prefix_len();
    } else if let Some(db) = geo {
        match db.lookup(ip) {
            Some(hit) if hit.has_data() => {
                lookup = GeoLookup::Hit;
                loc.by = LocatedBy::GeoIp(hit.network);
                loc.country = hit.country;
                loc.continent = hit.continent;
                loc.coords = hit.coords.or_else(|| {
                    hit.country
                        .and_then(|c| countries::country(crate::model::code_str(&c)))
                        .map(|c| Coordinates {
                            lat: c.lat,
                            lon: c.lon,
                        })
                });
                deciding = hit.network.prefix_len();
            }
            Some(hit) => {
                lookup = GeoLookup::Miss;
                loc.by = LocatedBy::Unknown(Some(hit.network));
                deciding = hit.network.prefix_len();
            }
            None => lookup = GeoLookup::Miss,
        }
    }
    loc.scope = deciding.max(crate::model::scope_floor(ip, &model.operator_networks));
    (loc, lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CITY_TEST: &str = "../shared/geoip/GeoIP2-City-Test.mmdb";

    fn db() -> Option<GeoDb> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(CITY_TEST);
        Some(GeoDb::open(&p).expect("MaxMind test database opens"))
    }

    #[test]
    fn maxmind_test_db_gb_network_and_prefix() {
        let db = db().unwrap();
        let hit = db.lookup("81.2.69.142".parse().unwrap()).unwrap();
        assert_eq!(hit.country, Some(*b"GB"));
        assert_eq!(hit.continent, Some(*b"EU"));
        assert!(hit.coords.is_some());
        assert_eq!(hit.network.to_string(), "81.2.69.142/31");
    }

    #[test]
    fn ipv4_networks_are_reported_in_ipv4_form() {
        let db = db().unwrap();
        let hit = db.lookup("216.160.83.56".parse().unwrap()).unwrap();
        assert!(hit.network.addr().is_ipv4(), "{}", hit.network);
        assert_eq!(hit.country, Some(*b"US"));
    }

    #[test]
    fn broken_databases_are_refused_with_the_path() {
        for f in [
            "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
            "GeoIP2-City-Test-Broken-Double-Format.mmdb",
        ] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/geoip")
                .join(f);
            let err = GeoDb::open(&p).unwrap_err().to_string();
            assert!(err.contains(f), "{err}");
        }
    }

    #[test]
    fn asn_database_is_refused_as_wrong_schema() {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/geoip/GeoLite2-ASN-Test.mmdb");
        assert!(matches!(GeoDb::open(&p), Err(GeoError::Schema { .. })));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = GeoDb::open(Path::new("/nonexistent/x.mmdb"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.mmdb"), "{err}");
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        assert_eq!(
            canonical_ip("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical_ip("2001:db8::1".parse().unwrap()),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
