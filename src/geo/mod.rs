//! GeoIP: open, verify and compile a City-schema mmdb (GeoIP2, GeoLite2, DB-IP City
//! Lite), and locate a client from operator overrides first, the database second.
//!
//! The file is read into memory (regular files only, with a size bound) while it is
//! verified and compiled into a `trie::Trie` of location classes; then it is freed.
//! Serving from the file instead left ~50 MiB of a full GeoLite2-City resident after a
//! benchmark (every lookup touches a page of the tree and one of the data), and made
//! each lookup walk 7-byte records and decode a map. It is never memory-mapped: a mapped
//! file rewritten or truncated in place kills the process with SIGBUS. Tools like
//! geoipupdate replace the file by rename; reload opens the new one.
//!
//! - `compile`: open, verify (schema probe, damaged trees) and compile an mmdb;
//! - `classes`: the interned location classes the trie's leaves point at;
//! - `trie`: the compiled tree and the IPv4 table;
//! - `locate`: the one rule for locating a client (operator networks, then GeoIP);
//! - this file: the compiled database's public face (`GeoDb::open`, `GeoDb::lookup`).

mod classes;
mod compile;
mod locate;
mod trie;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::config::read::ReadError;
use crate::model::Coordinates;
use classes::Classes;
pub use compile::reference_lookup;
use compile::release_freed_memory;
pub use locate::{GeoLookup, canonical_ip, locate};
use trie::{Found, Trie, V4Table};

/// An open GeoIP database, compiled.
pub struct GeoDb {
    trie: Trie,
    /// Location classes; index [`trie::NO_DATA`] is the empty one.
    classes: Classes,
    /// Where IPv4 lookups start.
    v4: V4Start,
    /// The tree holds IPv6 addresses (ip_version 6).
    ipv6: bool,
    database_type: String,
    build_epoch: u64,
    path: PathBuf,
    identity: Option<FileIdentity>,
}

/// Where IPv4 lookups go, as an mmdb reader would find them.
#[derive(Debug)]
enum V4Start {
    /// The IPv4 tree, or the subtree at `::/96` of an IPv6 tree, compiled.
    Table(V4Table),
    /// An IPv6 tree with no IPv4 subtree: one answer, an IPv6 network above `::/96`.
    Above(Found),
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
            .field("classes", &self.classes.len())
            .field("nodes", &self.trie.node_count())
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
    /// The file could not be read: missing, not a regular file, or over the size bound.
    #[error("cannot read GeoIP database {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: ReadError,
    },
    /// The file opened but its tree or data section is damaged.
    #[error("GeoIP database {path} is damaged: {source}")]
    Damaged {
        /// The path.
        path: PathBuf,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
    /// The tree has more nodes or distinct locations than geode's compiled form holds
    /// (2^31 and 2^24; a full GeoLite2-City has 3.6 M and 130 k).
    #[error("GeoIP database {path} is too large to compile: {what}")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// What overflowed.
        what: &'static str,
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

impl GeoDb {
    /// Opens, verifies, probes and compiles a database; a database that cannot answer
    /// is refused before it serves (as CoreDNS's geoip plugin does).
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let db = Self::compile(path);
        release_freed_memory();
        db
    }

    /// True when the file at our path is still the one we opened.
    pub fn is_current(&self, path: &Path) -> bool {
        path == self.path && self.identity.is_some() && file_identity(path) == self.identity
    }

    /// The database_type from its metadata, e.g. `GeoLite2-City`.
    pub fn database_type(&self) -> &str {
        &self.database_type
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Build time (unix seconds) from the metadata.
    pub fn build_epoch(&self) -> u64 {
        self.build_epoch
    }

    /// Distinct location classes and bytes of heap the compiled form holds.
    pub fn footprint(&self) -> (usize, usize) {
        let table = match &self.v4 {
            V4Start::Table(t) => t.footprint().1,
            V4Start::Above(_) => 0,
        };
        (
            self.classes.len(),
            self.trie.heap_bytes() + table + self.classes.heap_bytes(),
        )
    }

    /// Looks an address up, answering exactly as an mmdb reader would (same network,
    /// same record): IPv4 in IPv4 form, `None` for IPv6 in an IPv4-only database.
    pub fn lookup(&self, ip: IpAddr) -> Option<GeoHit> {
        let (found, network) = match ip {
            IpAddr::V4(a) => match &self.v4 {
                V4Start::Table(t) => {
                    let f = t.find(u32::from(a));
                    (f, IpNet::new(ip, f.prefix).ok()?.trunc())
                }
                V4Start::Above(f) => (*f, IpNet::new(Ipv6Addr::UNSPECIFIED.into(), f.prefix).ok()?),
            },
            IpAddr::V6(a) if self.ipv6 => {
                let addr = u128::from(a);
                let mut f = self.trie.find(addr, 128);
                if f.class == trie::V4_SUBTREE
                    && let V4Start::Table(t) = &self.v4
                {
                    // An alias of the IPv4 subtree: the next 32 bits are an IPv4 address.
                    let below = t.find((addr << f.prefix >> 96) as u32);
                    f = Found {
                        class: below.class,
                        prefix: f.prefix + below.prefix,
                    };
                }
                (f, IpNet::new(ip, f.prefix).ok()?.trunc())
            }
            IpAddr::V6(_) => return None,
        };
        let (country, continent, coords) = self.classes.get(found.class as usize);
        Some(GeoHit {
            network,
            country,
            continent,
            coords,
        })
    }
}

#[cfg(test)]
mod tests;
