//! DNSSEC online signing (DESIGN.md "DNSSEC (online signing)").
//!
//! ```text
//!  config::parse: [zones."NAME".dnssec] ─► model::ZoneDnssec (paths, denial)
//!  state::load ─► read_keys: the BIND files read, parsed and checked (file:line on error)
//!  Snapshot::build ─► dns::zones ─► ZoneSigner::new: keys, DNSKEY RRset, NSEC chain,
//!                     every static RRset and NSEC signed ahead (pre-warm), GSLB RRsets too
//!  query with DO ─► dns::signed::sign_reply ─► ZoneSigner::rrsigs (cache, else sign)
//!  UDP DO query, GSLB A/AAAA ─► dns::fast ─► ZoneSigner::cached_address_rrsigs (cache
//!                     only; a miss falls back to the ordinary path, which signs)
//! ```
//!
//! Why a GSLB answer signs little: an RRSIG covers the RRset in canonical order (any
//! rotation reuses it), ECS lives in the unsigned OPT record and the owner's case is
//! canonicalised away. So the signature cache is keyed by what is signed: owner (case
//! ignored), type, TTL, the RDATA as a set, the key set and the validity window (a 64-bit
//! hash of them indexes the map; an entry is compared in full before it is used).
//!
//! Validity windows are fixed weekly slots of Unix time (as PowerDNS does): every instance
//! with the same key emits the same inception and expiration, and a signature is reused
//! until its slot ends, at least 8 days before it expires.
//!
//! The cache is a process-wide map in 64 shards, each a `Mutex<HashMap>` held only for a
//! lookup or an insert, never while signing: a query waits at most for another thread's
//! hash lookup in the same shard. A per-snapshot table of precomputed signatures alone
//! could not hold the GSLB RRsets that health flips produce, and a lock-free map would be
//! a new dependency for no measurable gain at two to sixteen threads. Entries are keyed
//! by content, so snapshots share them and a reload re-signs only what changed.
//!
//! An entry also keeps its RRSIGs in wire form after the owner name (type, class, TTL,
//! RDLENGTH, RDATA: the signer name in it is never compressed, RFC 4034 3.1.7), encoded
//! once by hickory when signed. The UDP fast path (`dns::fast`) looks a GSLB answer's
//! RRset up by its addresses ([`ZoneSigner::cached_address_rrsigs`]), without building
//! records, and copies those bytes after a compressed owner.

pub mod cli;
pub mod keys;

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use hickory_proto::dnssec::TBS;
use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC, RRSIG, SigInput};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use prometheus::IntCounter;

pub use keys::ZoneKey;

use crate::config::ConfigError;
use crate::config::Loaded;
use crate::model::{Denial, Fx, KeyMaterial};

/// Length of a validity slot.
pub const WEEK: u64 = 7 * 86_400;
/// Signatures start this long before their slot, for validators whose clock is behind.
pub const BACKDATE: u64 = 86_400;
/// Largest key file read.
const MAX_KEY_BYTES: u64 = 64 << 10;
/// Shards of the signature cache.
const SHARDS: usize = 64;
/// Entries per shard; a full shard is emptied (it refills from the queries that use it).
const SHARD_ENTRIES: usize = 4096;
/// Compact denial: per zone, signatures a second for per-name NSEC records. Beyond it a
/// negative answer uses the precomputed NSEC chain, so a random-subdomain flood costs no
/// signing at all.
pub const COMPACT_BUDGET_PER_SECOND: u64 = 2000;

/// The validity slot of `now`: signatures made in one slot are identical in dates.
pub fn slot(now: u64) -> u64 {
    now / WEEK
}

/// The inception and expiration of signatures made at `now` (Unix seconds).
pub fn validity(now: u64) -> (u32, u32) {
    let slot = slot(now);
    let inception = slot * WEEK - BACKDATE;
    let expiration = (slot + 2) * WEEK + BACKDATE;
    (inception as u32, expiration as u32)
}

/// Reads and checks the key files of every signed zone, storing their texts in the model
/// (`ZoneDnssec::keys`). The load step calls it after `config::load`; a problem is
/// reported at the zone's `dnssec.key_files` entry with the file named.
pub fn read_keys(loaded: &mut Loaded) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let source = &loaded.source;
    for zone in &mut loaded.model.zones {
        let Some(d) = zone.dnssec.as_mut() else {
            continue;
        };
        let origin = Name::from_str(&zone.origin).unwrap_or_else(|_| Name::root());
        d.keys.clear();
        let mut tags = Vec::new();
        for (i, file) in d.key_files.iter().enumerate() {
            let at = |m: String| {
                source.problem(
                    &[
                        "zones",
                        &d.config_key,
                        "dnssec",
                        "key_files",
                        &i.to_string(),
                    ],
                    format!("{}: {m}", file.display()),
                )
            };
            let read = |p: &std::path::Path, what: &str| {
                crate::config::read::read_regular(p, MAX_KEY_BYTES, "key file bound")
                    .map_err(|e| format!("cannot read {what}: {e}"))
                    .and_then(|b| String::from_utf8(b).map_err(|_| format!("{what} is not text")))
            };
            let public_file = keys::public_path(file);
            let texts = read(file, "it").and_then(|private| {
                let public = read(
                    &public_file,
                    &format!("its .key file {}", public_file.display()),
                )?;
                Ok((private, public))
            });
            let (private, public) = match texts {
                Ok(t) => t,
                Err(e) => {
                    problems.push(at(e));
                    continue;
                }
            };
            match keys::parse_key(&origin, &private, &public) {
                Ok(k) if tags.contains(&(k.tag, k.algorithm)) => {
                    problems.push(at(format!("key tag {} is listed twice", k.tag)));
                }
                Ok(k) => {
                    tags.push((k.tag, k.algorithm));
                    d.keys.push(KeyMaterial {
                        file: file.clone(),
                        private,
                        public,
                    });
                }
                Err(e) => problems.push(at(format!(
                    "{e} (hint: make a key with `geode dnssec keygen --zone {}`)",
                    zone.origin
                ))),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// The signing counters, resolved once.
#[derive(Debug, Clone)]
pub struct SignCounters {
    /// `geode_dnssec_signatures_total`.
    pub signatures: IntCounter,
    /// `geode_dnssec_signature_cache_total{result="hit"}`.
    pub hits: IntCounter,
    /// `geode_dnssec_signature_cache_total{result="miss"}`.
    pub misses: IntCounter,
    /// `geode_dnssec_compact_budget_exceeded_total`.
    pub over_budget: IntCounter,
}

/// One cached RRset's signatures with what they cover, compared in full on a lookup (the
/// map is keyed by a 64-bit hash of it, so a collision is a miss, never a wrong RRSIG).
struct Entry {
    keyset: u64,
    slot: u64,
    ttl: u32,
    rtype: RecordType,
    /// Compared case-insensitively (hickory's `Name` equality), as signing lower-cases it.
    owner: Name,
    /// `owner` in lower-case wire form, compared with an [`OwnerKey`]'s.
    owner_wire: Box<[u8]>,
    /// The RDATA, any order: an RRset is a set (RFC 2181 5).
    rdatas: Box<[RData]>,
    sigs: Arc<[Record]>,
    /// `sigs` in wire form after each owner name (see the module docs); empty if hickory
    /// could not encode them, which the fast path takes as a miss.
    wire: Arc<[u8]>,
}

/// A GSLB name as the signature cache keys its RRsets, made once per snapshot so that the
/// fast path neither hashes nor compares a [`Name`] per query.
#[derive(Debug, Clone)]
pub struct OwnerKey {
    /// [`name_hash`] of the name.
    hash: u64,
    /// The name in lower-case uncompressed wire form.
    wire: Box<[u8]>,
}

impl OwnerKey {
    /// The key of `name` (any case).
    pub fn new(name: &Name) -> OwnerKey {
        OwnerKey {
            hash: name_hash(name),
            wire: lower_wire(name),
        }
    }
}

/// Case-insensitive hash of a name (hickory's `Name` hash is).
fn name_hash(name: &Name) -> u64 {
    use std::hash::Hash;
    let mut h = Fx::default();
    name.hash(&mut h);
    h.finish()
}

/// Lower-case uncompressed wire form of a name.
fn lower_wire(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// An RRset as the cache sees it: non-empty, one owner, type and TTL.
#[derive(Clone, Copy)]
enum Rrset<'a> {
    /// Records of the ordinary path.
    Records(&'a [&'a Record]),
    /// A GSLB answer of the fast path: A (all IPv4) or AAAA (all IPv6) records.
    Addrs {
        owner: &'a OwnerKey,
        ttl: u32,
        addrs: &'a [IpAddr],
    },
}

/// The hash of one RDATA; A and AAAA by their address alone, so that the fast path's
/// addresses hash alike without an `RData` made for them.
fn rdata_hash(d: &RData) -> u64 {
    match d {
        RData::A(a) => addr_hash(IpAddr::V4(a.0)),
        RData::AAAA(a) => addr_hash(IpAddr::V6(a.0)),
        other => {
            use std::hash::Hash;
            let mut h = Fx::default();
            other.hash(&mut h);
            crate::route::mix(h.finish())
        }
    }
}

fn addr_hash(a: IpAddr) -> u64 {
    let mut h = Fx::default();
    match a {
        IpAddr::V4(v4) => h.write_u32(u32::from(v4)),
        IpAddr::V6(v6) => h.write_u128(u128::from(v6)),
    }
    crate::route::mix(h.finish())
}

/// True when `d` is the A or AAAA record of `a`.
fn is_addr(d: &RData, a: IpAddr) -> bool {
    match (d, a) {
        (RData::A(x), IpAddr::V4(v4)) => x.0 == v4,
        (RData::AAAA(x), IpAddr::V6(v6)) => x.0 == v6,
        _ => false,
    }
}

impl Rrset<'_> {
    fn ttl(&self) -> u32 {
        match self {
            Rrset::Records(r) => r[0].ttl,
            Rrset::Addrs { ttl, .. } => *ttl,
        }
    }
    fn rtype(&self) -> RecordType {
        match self {
            Rrset::Records(r) => r[0].record_type(),
            Rrset::Addrs { addrs, .. } => match addrs[0] {
                IpAddr::V4(_) => RecordType::A,
                IpAddr::V6(_) => RecordType::AAAA,
            },
        }
    }
    fn len(&self) -> usize {
        match self {
            Rrset::Records(r) => r.len(),
            Rrset::Addrs { addrs, .. } => addrs.len(),
        }
    }
    fn owner_hash(&self) -> u64 {
        match self {
            Rrset::Records(r) => name_hash(&r[0].name),
            Rrset::Addrs { owner, .. } => owner.hash,
        }
    }
    /// The sum of the RDATA hashes: the same for any order.
    fn rdata_sum(&self) -> u64 {
        match self {
            Rrset::Records(r) => r
                .iter()
                .fold(0u64, |s, r| s.wrapping_add(rdata_hash(&r.data))),
            Rrset::Addrs { addrs, .. } => addrs
                .iter()
                .fold(0u64, |s, a| s.wrapping_add(addr_hash(*a))),
        }
    }
}

impl Entry {
    fn covers(&self, keyset: u64, slot: u64, set: &Rrset<'_>) -> bool {
        let same_data = match set {
            Rrset::Records(r) => {
                self.owner == r[0].name && r.iter().all(|r| self.rdatas.contains(&r.data))
            }
            Rrset::Addrs { owner, addrs, .. } => {
                self.owner_wire == owner.wire
                    && addrs
                        .iter()
                        .all(|a| self.rdatas.iter().any(|d| is_addr(d, *a)))
            }
        };
        self.keyset == keyset
            && self.slot == slot
            && self.ttl == set.ttl()
            && self.rtype == set.rtype()
            && self.rdatas.len() == set.len()
            && same_data
    }
}

/// The RRSIGs in wire form after their owner names, or nothing if one does not encode.
fn sigs_wire(sigs: &[Record]) -> Arc<[u8]> {
    let mut out = Vec::new();
    let mut one = Vec::new();
    for s in sigs {
        one.clear();
        if s.emit(&mut BinEncoder::new(&mut one)).is_err() {
            return Arc::from(Vec::new());
        }
        // The owner is the first thing written to a fresh encoder: uncompressed labels.
        let mut at = 0;
        while one.get(at).is_some_and(|l| *l != 0) {
            at += 1 + usize::from(one[at]);
        }
        match one.get(at + 1..) {
            Some(rest) if rest.len() >= 10 => out.extend_from_slice(rest),
            _ => return Arc::from(Vec::new()),
        }
    }
    out.into()
}

/// Identity hashing: the keys are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Shard = Mutex<HashMap<u64, Entry, std::hash::BuildHasherDefault<Prehashed>>>;

/// The process-wide signature cache (see the module docs).
struct SigCache {
    shards: Vec<Shard>,
}

static CACHE: LazyLock<SigCache> = LazyLock::new(|| SigCache {
    shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
});

/// The cache key of an RRset: key set, slot, TTL, type, owner (case-insensitively) and
/// the RDATA in any order (hashed one by one and summed). Hashing walks the decoded
/// records; encoding them canonically to build a byte key cost 6% of a DO answer. The
/// fast path's lookup hashes a precomputed [`OwnerKey`] and the addresses: hickory's
/// `Name` hash and comparison were 70% of the instructions a signed fast-path answer
/// added (callgrind, benches/qpath.rs).
fn rrset_hash(keyset: u64, slot: u64, set: &Rrset<'_>) -> u64 {
    let mut h = Fx::default();
    h.write_u64(keyset);
    h.write_u64(slot);
    h.write_u32(set.ttl());
    h.write_u16(u16::from(set.rtype()));
    h.write_u64(set.owner_hash());
    h.write_u64(set.rdata_sum());
    crate::route::mix(h.finish())
}

impl SigCache {
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    /// `what` of the entry for `set`, if cached; the shard is locked only meanwhile.
    fn get<T>(
        &self,
        hash: u64,
        keyset: u64,
        slot: u64,
        set: &Rrset<'_>,
        what: impl FnOnce(&Entry) -> T,
    ) -> Option<T> {
        // A poisoned shard only means another thread panicked mid-insert; the map is
        // still a valid map.
        let shard = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        shard
            .get(&hash)
            .filter(|e| e.covers(keyset, slot, set))
            .map(what)
    }

    fn put(&self, hash: u64, entry: Entry) {
        let mut shard = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= SHARD_ENTRIES {
            shard.clear();
        }
        shard.insert(hash, entry);
    }
}

/// A signed zone's keys, DNSKEY RRset, NSEC chain and signing entry point.
pub struct ZoneSigner {
    origin: Name,
    keys: Vec<ZoneKey>,
    /// Identifies the key set in cache keys (a reload that adds a key signs afresh).
    keyset: u64,
    /// The apex DNSKEY RRset.
    pub dnskeys: Vec<Record>,
    /// How NXDOMAIN and NODATA are proven.
    pub denial: Denial,
    /// TTL of NSEC records: the zone's negative TTL (RFC 9077).
    pub nsec_ttl: u32,
    /// The NSEC chain, in canonical order of owner names.
    chain: Vec<Record>,
    counters: SignCounters,
    /// Compact denial budget: (second, signatures spent in it) packed in one word.
    budget: AtomicU64,
}

impl std::fmt::Debug for ZoneSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneSigner")
            .field("origin", &self.origin)
            .field("keys", &self.keys)
            .field("denial", &self.denial)
            .field("chain", &self.chain.len())
            .finish()
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ZoneSigner {
    /// A signer for `origin` with keys parsed from `material` (checked by [`read_keys`];
    /// a key that fails here anyway is left out and logged). `names` are the zone's owner
    /// names that hold data, with their types (DNSKEY is added at the apex): the NSEC
    /// chain is built over them.
    pub fn new(
        origin: Name,
        material: &[KeyMaterial],
        denial: Denial,
        dnskey_ttl: u32,
        nsec_ttl: u32,
        mut names: Vec<(Name, Vec<RecordType>)>,
        counters: SignCounters,
    ) -> ZoneSigner {
        let keys: Vec<ZoneKey> = material
            .iter()
            .filter_map(|m| match keys::parse_key(&origin, &m.private, &m.public) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(file = %m.file.display(), "DNSSEC key left out: {e}");
                    None
                }
            })
            .collect();
        let dnskeys: Vec<Record> = keys
            .iter()
            .map(|k| {
                Record::from_rdata(
                    origin.clone(),
                    dnskey_ttl,
                    RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone())),
                )
            })
            .collect();
        let mut h = Fx::default();
        for r in &dnskeys {
            let mut b = Vec::new();
            let _ = r.data.emit(&mut BinEncoder::new(&mut b));
            h.write(&b);
        }
        let keyset = crate::route::mix(h.finish());
        // The chain: every name with data, in canonical order; the last points back to
        // the apex (RFC 4034 4.1.1).
        for (n, types) in &mut names {
            if *n == origin && !dnskeys.is_empty() {
                types.push(RecordType::DNSKEY);
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names.dedup_by(|a, b| a.0 == b.0);
        let chain = (0..names.len())
            .map(|i| {
                let next = names[(i + 1) % names.len()].0.clone();
                let types = names[i].1.iter().copied();
                Record::from_rdata(
                    names[i].0.clone(),
                    nsec_ttl,
                    RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(next, types))),
                )
            })
            .collect();
        ZoneSigner {
            origin,
            keys,
            keyset,
            dnskeys,
            denial,
            nsec_ttl,
            chain,
            counters,
            budget: AtomicU64::new(0),
        }
    }

    /// The zone apex.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The RRSIGs (one per key) over an RRset: `records` share owner, type and TTL. From
    /// the cache when it has them, else signed now and cached. `None` when signing failed
    /// (logged) or there is no key.
    pub fn rrsigs(&self, records: &[&Record], now: u64) -> Option<Arc<[Record]>> {
        self.rrsigs_if(records, now, || true)
    }

    /// [`ZoneSigner::rrsigs`] for one record made for one answer (compact denial): a
    /// cache miss signs only within the zone's per-second budget, else `None`.
    pub fn rrsigs_within_budget(&self, record: &Record, now: u64) -> Option<Arc<[Record]>> {
        self.rrsigs_if(&[record], now, || self.take_budget(now))
    }

    fn rrsigs_if(
        &self,
        records: &[&Record],
        now: u64,
        may_sign: impl FnOnce() -> bool,
    ) -> Option<Arc<[Record]>> {
        let first = records.first()?;
        if self.keys.is_empty() {
            return None;
        }
        let (inception, expiration) = validity(now);
        let rtype = first.record_type();
        let slot = slot(now);
        let set = Rrset::Records(records);
        let hash = rrset_hash(self.keyset, slot, &set);
        if let Some(sigs) = CACHE.get(hash, self.keyset, slot, &set, |e| e.sigs.clone()) {
            self.counters.hits.inc();
            return Some(sigs);
        }
        self.counters.misses.inc();
        if !may_sign() {
            return None;
        }
        let owner = first.name.to_lowercase();
        let mut sigs = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let input = SigInput {
                type_covered: rtype,
                algorithm: k.algorithm,
                num_labels: owner.num_labels(),
                original_ttl: first.ttl,
                sig_expiration: SerialNumber::new(expiration),
                sig_inception: SerialNumber::new(inception),
                key_tag: k.tag,
                signer_name: self.origin.clone(),
            };
            let signed = TBS::from_input(&owner, DNSClass::IN, &input, records.iter().copied())
                .map_err(|e| e.to_string())
                .and_then(|tbs| k.sign(&tbs));
            match signed {
                Ok(sig) => {
                    self.counters.signatures.inc();
                    sigs.push(Record::from_rdata(
                        owner.clone(),
                        first.ttl,
                        RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
                    ));
                }
                Err(e) => {
                    tracing::error!(owner = %owner, "DNSSEC signing failed: {e}");
                    return None;
                }
            }
        }
        let sigs: Arc<[Record]> = sigs.into();
        let rdatas: Vec<RData> = records.iter().map(|r| r.data.clone()).collect();
        CACHE.put(
            hash,
            Entry {
                keyset: self.keyset,
                slot,
                ttl: first.ttl,
                rtype,
                owner_wire: lower_wire(&owner),
                owner,
                rdatas: rdatas.into_boxed_slice(),
                wire: sigs_wire(&sigs),
                sigs: sigs.clone(),
            },
        );
        Some(sigs)
    }

    /// The RRSIGs over a GSLB answer (the A or AAAA records of `owner` with `ttl` and
    /// `addrs`, one family, in any order) in wire form after each owner name, from the
    /// signature cache only: `None` on a miss (not counted: the caller falls back to the
    /// ordinary path, whose [`ZoneSigner::rrsigs`] counts it and signs), when there is no
    /// key, or when `addrs` is empty. The shard is locked for the lookup and a reference
    /// count; the caller copies the bytes after.
    pub fn cached_address_rrsigs(
        &self,
        owner: &OwnerKey,
        ttl: u32,
        addrs: &[IpAddr],
        now: u64,
    ) -> Option<Arc<[u8]>> {
        if self.keys.is_empty() || addrs.is_empty() {
            return None;
        }
        let slot = slot(now);
        let set = Rrset::Addrs { owner, ttl, addrs };
        let hash = rrset_hash(self.keyset, slot, &set);
        let wire = CACHE
            .get(hash, self.keyset, slot, &set, |e| e.wire.clone())
            .filter(|w| !w.is_empty())?;
        self.counters.hits.inc();
        Some(wire)
    }

    /// The chain's NSEC record owned by `name`, if `name` holds data.
    pub fn nsec_at(&self, name: &Name) -> Option<&Record> {
        self.chain
            .binary_search_by(|r| r.name.cmp(name))
            .ok()
            .map(|i| &self.chain[i])
    }

    /// The chain's NSEC record that covers `name` (its owner sorts at or before `name`
    /// and its next name after it). The apex is first, so every name in the zone has one.
    pub fn nsec_covering(&self, name: &Name) -> Option<&Record> {
        match self.chain.binary_search_by(|r| r.name.cmp(name)) {
            Ok(i) => self.chain.get(i),
            Err(0) => None,
            Err(i) => self.chain.get(i - 1),
        }
    }

    /// Signs every RRset of the chain and every given RRset ahead of queries.
    pub fn prewarm<'a>(&self, rrsets: impl Iterator<Item = Vec<&'a Record>>) {
        let now = now();
        for r in &self.chain {
            let _ = self.rrsigs(&[r], now);
        }
        let dnskeys: Vec<&Record> = self.dnskeys.iter().collect();
        let _ = self.rrsigs(&dnskeys, now);
        for set in rrsets {
            let _ = self.rrsigs(&set, now);
        }
    }

    /// Takes one signature from the compact-denial budget of the current second; false
    /// when it is spent (the caller then uses the NSEC chain, which is signed already).
    pub fn take_budget(&self, now: u64) -> bool {
        let mut cur = self.budget.load(Ordering::Relaxed);
        loop {
            let (sec, used) = (cur >> 20, cur & 0xF_FFFF);
            let next = if sec == now {
                if used >= COMPACT_BUDGET_PER_SECOND {
                    self.counters.over_budget.inc();
                    return false;
                }
                cur + 1
            } else {
                (now << 20) | 1
            };
            match self
                .budget
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    /// An NSEC record made for one answer (compact denial, or a GSLB name whose type is
    /// in the chain but answered NODATA now): `owner`, `next`, `types` plus RRSIG and NSEC.
    pub fn synthesized_nsec(&self, owner: Name, next: Name, types: Vec<RecordType>) -> Record {
        Record::from_rdata(
            owner,
            self.nsec_ttl,
            RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(next, types))),
        )
    }
}

#[cfg(test)]
mod tests;
