//! Opening and verifying an mmdb, and compiling it into the trie of location classes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use super::classes::{Class, Classes, Decoded};
use super::trie::{self, Found, Trie, V4Table};
use super::{GeoDb, GeoError, GeoHit, V4Start, file_identity};
use crate::config::read::{MAX_GEOIP_BYTES, ReadError, read_regular};
use crate::countries;
use crate::model::Coordinates;

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

fn code(s: Option<&str>) -> Option<[u8; 2]> {
    let b = s?.as_bytes();
    (b.len() == 2).then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
}

impl GeoDb {
    pub(super) fn compile(path: &Path) -> Result<GeoDb, GeoError> {
        // Read before mapping: if the file is replaced in between, the stale identity
        // makes the next reload open it again, which is harmless.
        let identity = file_identity(path);
        let open_err = |source| GeoError::Open {
            path: path.to_path_buf(),
            source,
        };
        let damaged = |source| GeoError::Damaged {
            path: path.to_path_buf(),
            source,
        };
        // The file is read into memory, not mapped: a mapping of a file that is truncated
        // or rewritten in place (`cp new.mmdb city.mmdb`) while it is compiled kills the
        // process with SIGBUS. A copy in memory is the old or a torn version of the file,
        // and a torn one fails `verify` below, so the running database keeps serving.
        // Resident memory is the same either way (compiling touches every page).
        let bytes = read_regular(path, MAX_GEOIP_BYTES, "GeoIP database bound").map_err(|e| {
            match e {
                // Worded as before for a missing or unreadable file.
                ReadError::Io(e) => open_err(e.into()),
                other => GeoError::Read {
                    path: path.to_path_buf(),
                    source: other,
                },
            }
        })?;
        let reader = maxminddb::Reader::from_source(bytes.as_slice()).map_err(open_err)?;
        reader.verify().map_err(damaged)?;
        let meta = reader.metadata();
        let database_type = meta.database_type.clone();
        probe(path, &database_type)?;

        let node_count = meta.node_count;
        let record_size = meta.record_size;
        let ipv6 = meta.ip_version == 6;
        let node_bytes = usize::from(record_size) / 4;
        let tree = bytes
            .get(..node_count as usize * node_bytes)
            .ok_or_else(|| {
                damaged(maxminddb::MaxMindDbError::invalid_database(
                    "search tree past end of file",
                ))
            })?;
        let read = |n: u32, side: usize| -> u32 {
            let b = &tree[n as usize * node_bytes..][..node_bytes];
            let be3 = |x: &[u8]| u32::from(x[0]) << 16 | u32::from(x[1]) << 8 | u32::from(x[2]);
            match (record_size, side) {
                (24, 0) => be3(&b[0..3]),
                (24, _) => be3(&b[3..6]),
                (28, 0) => u32::from(b[3] & 0xf0) << 20 | be3(&b[0..3]),
                (28, _) => u32::from(b[3] & 0x0f) << 24 | be3(&b[4..7]),
                (_, 0) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                _ => u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            }
        };
        // Records are decoded once each (by pointer), then folded into classes by value.
        // The by-value index holds class ids only (4 bytes a slot, compared against
        // `classes`), not a copy of each class as key: 9 MB less at the start-up peak.
        // By pointer: a lossy direct-mapped cache (2 MiB) rather than a map of every
        // record (~500 k in GeoLite2-City, up to 9 MiB plus a doubling at the start-up
        // peak); a record evicted is decoded again, which costs time, not correctness.
        const CACHE_BITS: u32 = 18;
        let mut by_pointer: Vec<(u32, u32)> = vec![(0, 0); 1 << CACHE_BITS];
        let slot = |raw: u32| (raw.wrapping_mul(0x9e37_79b9) >> (32 - CACHE_BITS)) as usize;
        let mut by_value: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
        let mut classes: Vec<Class> = vec![Class::from((None, None, None))];
        by_value.insert_unique(classes[0].hash(), trie::NO_DATA, |_| 0);
        let mut class_of = |raw: u32, addr: u128| -> Result<u32, maxminddb::MaxMindDbError> {
            // A data pointer is above node_count + 16, so 0 marks an empty slot.
            let (cached, c) = by_pointer[slot(raw)];
            if cached == raw {
                return Ok(c);
            }
            let ip = if ipv6 {
                IpAddr::V6(Ipv6Addr::from(addr))
            } else {
                IpAddr::V4(Ipv4Addr::from((addr >> 96) as u32))
            };
            let class = Class::from(decode(&reader.lookup(ip)?));
            let h = class.hash();
            let c = match by_value.find(h, |&id| classes[id as usize].same(&class)) {
                Some(&id) => id,
                None => {
                    let id = classes.len() as u32;
                    classes.push(class);
                    by_value.insert_unique(h, id, |&id| classes[id as usize].hash());
                    id
                }
            };
            by_pointer[slot(raw)] = (raw, c);
            Ok(c)
        };
        let bits = if ipv6 { 128 } else { 32 };
        let too_large = |e| match e {
            trie::BuildError::Class(source) => damaged(source),
            trie::BuildError::TooLarge => GeoError::TooLarge {
                path: path.to_path_buf(),
                what: "nodes, classes or paths",
            },
        };
        // The IPv4 subtree's top record, found as the readers find it: 96 zero bits
        // down an IPv6 tree (fewer if the tree ends above), the root of an IPv4 tree.
        let (v4_top, v4_depth) = if ipv6 {
            let (mut v, mut d) = (0u32, 0u32);
            while d < 96 && v < node_count {
                v = read(v, 0);
                d += 1;
            }
            (v, d)
        } else {
            (0, 0)
        };
        let v4 = if v4_top < node_count && v4_depth == 96 || !ipv6 {
            let shift = if ipv6 { 0 } else { 96 };
            V4Start::Table(
                V4Table::build(v4_top, node_count, shift, read, &mut class_of)
                    .map_err(too_large)?,
            )
        } else {
            // The tree ends above ::/96: every IPv4 address gets that leaf, and the
            // readers report it as an IPv6 network.
            let class = if v4_top <= node_count {
                trie::NO_DATA
            } else {
                class_of(v4_top, 0).map_err(|e| too_large(trie::BuildError::Class(e)))?
            };
            V4Start::Above(Found {
                class,
                prefix: v4_depth as u8,
            })
        };

        let stop = matches!(v4, V4Start::Table(_)).then_some(v4_top);
        let trie = if ipv6 {
            Trie::build(node_count, bits, stop, read, &mut class_of).map_err(too_large)?
        } else {
            Trie::empty()
        };
        Ok(GeoDb {
            trie,
            classes: Classes::new(classes),
            v4,
            ipv6,
            build_epoch: meta.build_epoch,
            database_type,
            path: path.to_path_buf(),
            identity,
        })
    }
}

/// Compiling allocates ~100 MB of scratch (a memo per source node, the runs before they
/// are split into blocks, the maps that intern records). glibc keeps most of it after
/// it is freed (its mmap threshold rises after the first big free), which measured 12 MiB
/// of resident garbage; handing it back keeps the resident set to what is in use.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no
        // memory that is in use and is safe to call from any thread at any time.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

pub(super) fn probe(path: &Path, ty: &str) -> Result<(), GeoError> {
    let lower = ty.to_ascii_lowercase();
    if lower.contains("asn")
        || lower.contains("isp")
        || lower.contains("anonymous")
        || lower.contains("domain")
    {
        return Err(GeoError::Schema {
            path: path.to_path_buf(),
            db_type: ty.to_string(),
        });
    }
    Ok(())
}

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

/// What the mmdb reader itself answers for `ip`, decoded as geode decodes it: the
/// reference [`GeoDb::lookup`] must equal (tests and `cargo bench --bench fast` check).
pub fn reference_lookup<S: AsRef<[u8]>>(
    reader: &maxminddb::Reader<S>,
    ip: IpAddr,
) -> Option<GeoHit> {
    let res = reader.lookup(ip).ok()?;
    let net = res.network().ok()?;
    let network = IpNet::new(net.ip(), net.prefix()).ok()?;
    let (country, continent, coords) = match res.offset() {
        None => (None, None, None),
        Some(_) => decode(&res),
    };
    Some(GeoHit {
        network,
        country,
        continent,
        coords,
    })
}
