//! The answer cache: each UDP receive loop keeps the fast-path replies it sent, keyed by
//! the query bytes after the ID, and sends one again for the same bytes with only the ID
//! patched (what PowerDNS calls a packet cache).
//!
//! Why it is exact. A fast-path reply is a function of the query bytes after the ID
//! (flags, the question in its original case, the OPT record and its ECS option), of the
//! snapshot, of the endpoints' probed states and, when the query has no usable ECS, of
//! the source address. So:
//! - the cache remembers the snapshot generation and health epoch its entries were made
//!   under, and empties itself when either moves ([`AnswerCache::sync`]);
//! - a reply that depended on the source address is stored with that address and found
//!   only from it;
//! - an authoritative server does not decrement TTLs, so a stored reply never ages.
//!
//! A reply served again comes with its [`Tally`], so the metrics count what answering
//! afresh would have counted.
//!
//! Layout. An index of 8-way sets (one set is one 64-byte line of tags and positions)
//! points into a ring of variable-length entries written in order. The oldest entries are
//! overwritten first, pages are touched only as the cache fills, and a hit reads about
//! three cache lines. Nothing is allocated after [`AnswerCache::new`] and nothing is shared
//! between threads, so there is no lock.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use super::fast::Tally;
use crate::model::Fx;
use crate::route::mix;

/// Entries per index set: 8 tags and 8 positions fill one 64-byte line.
const WAYS: usize = 8;
/// Ring bytes per index way. A typical entry (an A query with ECS and its reply) takes
/// 130-200 bytes, so there are two to three ways per entry the ring holds: with fewer, a
/// full ring's keys overflow a set often enough for a set's cycle of keys to evict one
/// another (measured: 3% misses at one way per 128 bytes with 3,000 keys in 1 MiB).
const BYTES_PER_WAY: usize = 64;
/// Fixed part of a ring entry: key length, reply length, source kind, padding, tally.
const HDR: usize = 16;
/// Largest entry kept. Longer queries and replies are rare and are answered afresh.
const MAX_ENTRY: usize = 1024;
/// Smallest ring: room for a few of the largest entries.
const MIN_RING: usize = 4096;

/// One index set.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Set {
    /// Low 32 bits of the entry's hash.
    tag: [u32; WAYS],
    /// Ring position of the entry in 8-byte blocks, plus one; 0 = empty.
    pos: [u32; WAYS],
}

/// A lookup that found nothing; it carries the key's hash so that storing the reply
/// computed next does not hash the key again.
#[derive(Debug, Clone, Copy)]
pub struct Miss {
    hash: u64,
}

/// One receive loop's cache of fast-path replies. See the module docs.
#[derive(Debug)]
pub struct AnswerCache {
    sets: Box<[Set]>,
    /// `vec![0; n]`, so the allocator hands out untouched pages that count towards the
    /// resident size only once an entry is written there.
    ring: Box<[u8]>,
    /// Next write position, in 8-byte blocks since the index was last emptied.
    head: u32,
    /// Ring length in 8-byte blocks (a power of two).
    ring_blocks: u32,
    /// Per-cache random hash seed, so no one can aim queries at one set from outside.
    seed: u64,
    /// (snapshot generation, health epoch, DNSSEC validity slot) the entries were made
    /// under.
    era: (u64, u64, u64),
}

fn source_bits(src: IpAddr) -> (u8, [u8; 16]) {
    match src {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (16, a.octets()),
    }
}

impl AnswerCache {
    /// The capacity [`AnswerCache::new`] gives for `bytes`.
    pub fn new_capacity(bytes: usize) -> usize {
        bytes.clamp(MIN_RING, 1 << 31).next_power_of_two()
    }

    /// A cache of about `bytes` of entries: rounded up to a power of two, at least 4 KiB.
    pub fn new(bytes: usize) -> AnswerCache {
        let ring_len = Self::new_capacity(bytes);
        let sets = (ring_len / BYTES_PER_WAY / WAYS).max(1);
        AnswerCache {
            sets: vec![Set::default(); sets].into_boxed_slice(),
            ring: vec![0u8; ring_len].into_boxed_slice(),
            head: 0,
            ring_blocks: (ring_len / 8) as u32,
            seed: std::collections::hash_map::RandomState::new().hash_one(0x0067_656f_6465_u64),
            era: (0, 0, 0),
        }
    }

    /// Bytes of entries the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// Empties the cache when `snapshot` (a [`crate::snapshot::Snapshot::generation`]),
    /// `health` (a [`crate::model::health_epoch`]) or `slot` (the DNSSEC validity slot,
    /// [`crate::dnssec::slot`]: signed replies carry its dates) differs from what its
    /// entries were made under. Call it before answering, with the health epoch read
    /// before the answer's health states are.
    pub fn sync(&mut self, snapshot: u64, health: u64, slot: u64) {
        if self.era != (snapshot, health, slot) {
            self.clear();
            self.era = (snapshot, health, slot);
        }
    }

    fn clear(&mut self) {
        self.sets.fill(Set::default());
        self.head = 0;
    }

    fn hash(&self, key: &[u8]) -> u64 {
        // Fx is a word at a time: a query key is about 50 bytes, so a handful of
        // multiplies; the finaliser spreads them over the set index and the tag.
        let mut h = Fx::default();
        h.write_u64(self.seed ^ key.len() as u64);
        h.write(key);
        mix(h.finish())
    }

    fn with_source(hash: u64, src: IpAddr) -> u64 {
        let (_, b) = source_bits(src);
        let v = u128::from_le_bytes(b);
        // One finaliser: `hash` is already seeded and mixed, the source only has to move
        // it. Two sources that fold to the same word share a tag and set, which costs a
        // miss at most: `read` compares the stored source itself.
        mix(hash ^ v as u64 ^ ((v >> 64) as u64).rotate_left(32) ^ 0x0053_5243)
    }

    fn set_of(&self, hash: u64) -> usize {
        (hash >> 32) as usize & (self.sets.len() - 1)
    }

    /// True while the entry at block `p` has not been overwritten.
    fn live(&self, p: u32) -> bool {
        self.head.wrapping_sub(p) <= self.ring_blocks
    }

    /// Looks up `key` (the query after its 2-byte ID) from `src`. On a hit the stored
    /// reply is written to `out` behind `id` and its tally returned.
    pub fn get(
        &self,
        key: &[u8],
        src: IpAddr,
        id: [u8; 2],
        out: &mut Vec<u8>,
    ) -> Result<Tally, Miss> {
        if HDR + key.len() > MAX_ENTRY {
            // Never stored (`put` refuses it too), so not worth hashing.
            return Err(Miss { hash: 0 });
        }
        let hash = self.hash(key);
        let miss = Miss { hash };
        if let Some(t) = self.probe(hash, key, None, id, out) {
            return Ok(t);
        }
        match self.probe(Self::with_source(hash, src), key, Some(src), id, out) {
            Some(t) => Ok(t),
            None => Err(miss),
        }
    }

    // Inlined into `get`'s two calls: the call and its seven arguments cost a fifth of
    // a probe that finds nothing (callgrind, bench/icount.sh, cache on).
    #[inline(always)]
    fn probe(
        &self,
        hash: u64,
        key: &[u8],
        src: Option<IpAddr>,
        id: [u8; 2],
        out: &mut Vec<u8>,
    ) -> Option<Tally> {
        let set = &self.sets[self.set_of(hash)];
        let tag = hash as u32;
        // The ways whose tag matches, as a bit mask computed without branches (the
        // compiler compares all eight tags at once), then only those are looked at:
        // a miss, the common case at high cardinality, costs no per-way branch.
        let mut matches = 0u32;
        for (w, t) in set.tag.iter().enumerate() {
            matches |= u32::from(*t == tag) << w;
        }
        while matches != 0 {
            let w = matches.trailing_zeros() as usize;
            matches &= matches - 1;
            let pos = set.pos[w];
            if pos != 0
                && self.live(pos - 1)
                && let Some(t) = self.read(pos - 1, key, src, id, out)
            {
                return Some(t);
            }
        }
        None
    }

    // Out of line: taken only when a tag matches, so `get` stays small.
    #[inline(never)]
    fn read(
        &self,
        p: u32,
        key: &[u8],
        src: Option<IpAddr>,
        id: [u8; 2],
        out: &mut Vec<u8>,
    ) -> Option<Tally> {
        let at = (p & (self.ring_blocks - 1)) as usize * 8;
        let hdr = self.ring.get(at..at + HDR)?;
        let klen = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
        let rlen = usize::from(u16::from_le_bytes([hdr[2], hdr[3]]));
        let slen = usize::from(hdr[4]);
        let tally = u64::from_le_bytes(hdr[8..16].try_into().ok()?);
        if klen != key.len() {
            return None;
        }
        let body = self.ring.get(at + HDR..at + HDR + slen + klen + rlen)?;
        let (stored_src, rest) = body.split_at(slen);
        let (stored_key, reply) = rest.split_at(klen);
        match src {
            None if slen != 0 => return None,
            None => {}
            Some(ip) => {
                let (n, b) = source_bits(ip);
                if stored_src != &b[..usize::from(n)] {
                    return None;
                }
            }
        }
        if stored_key != key {
            return None;
        }
        out.clear();
        out.extend_from_slice(&id);
        out.extend_from_slice(reply);
        Some(Tally::unpack(tally))
    }

    /// Stores `reply` (a whole response; its ID is not kept) as the answer to `key` after
    /// a [`Miss`]. A reply whose tally says it depended on the source is stored for `src`
    /// alone.
    pub fn put(&mut self, miss: Miss, key: &[u8], src: IpAddr, reply: &[u8], tally: Tally) {
        let (slen, sbytes) = if tally.per_source {
            let (n, b) = source_bits(src);
            (usize::from(n), b)
        } else {
            (0, [0; 16])
        };
        let Some(body) = reply.get(2..) else {
            return;
        };
        let len = HDR + slen + key.len() + body.len();
        if len > MAX_ENTRY {
            return;
        }
        let blocks = len.div_ceil(8) as u32;
        // Positions only grow until the index is emptied; empty it well before they could
        // wrap, so a position never names two entries.
        if self.head > u32::MAX - 2 * self.ring_blocks {
            self.clear();
        }
        let mut off = self.head & (self.ring_blocks - 1);
        if off + blocks > self.ring_blocks {
            // An entry never straddles the end of the ring.
            self.head += self.ring_blocks - off;
            off = 0;
        }
        let p = self.head;
        self.head += blocks;

        let at = off as usize * 8;
        // Header, source, key, reply: split once rather than indexed field by field.
        let (k, r, t) = (
            (key.len() as u16).to_le_bytes(),
            (body.len() as u16).to_le_bytes(),
            tally.pack().to_le_bytes(),
        );
        let (hdr, rest) = self.ring[at..at + len].split_at_mut(HDR);
        hdr.copy_from_slice(&[
            k[0], k[1], r[0], r[1], slen as u8, 0, 0, 0, t[0], t[1], t[2], t[3], t[4], t[5], t[6],
            t[7],
        ]);
        let (stored_src, rest) = rest.split_at_mut(slen);
        let (stored_key, stored_reply) = rest.split_at_mut(key.len());
        stored_src.copy_from_slice(&sbytes[..slen]);
        stored_key.copy_from_slice(key);
        stored_reply.copy_from_slice(body);

        let hash = if tally.per_source {
            Self::with_source(miss.hash, src)
        } else {
            miss.hash
        };
        let s = self.set_of(hash);
        // The way to reuse: an empty or overwritten one, else the oldest entry.
        let set = &self.sets[s];
        let w = (0..WAYS)
            .find(|&w| set.pos[w] == 0 || !self.live(set.pos[w] - 1))
            .unwrap_or_else(|| (0..WAYS).min_by_key(|&w| set.pos[w]).unwrap_or(0));
        let set = &mut self.sets[s];
        set.tag[w] = hash as u32;
        set.pos[w] = p + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(per_source: bool) -> Tally {
        // qtype A, NOERROR, a GeoIP hit, service 1 answered from region 2.
        let t = Tally::unpack(1 << 16 | 1 << 18 | 1 << 32 | 2 << 48);
        Tally::unpack(t.pack() | u64::from(per_source) << 19)
    }

    fn key(i: u32) -> Vec<u8> {
        // Shaped like a query after its ID: flags, counts, a question, an ECS option.
        let mut k = vec![
            1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
        ];
        k.extend_from_slice(&i.to_be_bytes());
        k
    }

    fn reply(i: u32) -> Vec<u8> {
        let mut r = vec![0xAA, 0xBB, 0x84, 0];
        r.extend_from_slice(&i.to_le_bytes());
        r.extend_from_slice(&[7; 60]);
        r
    }

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn fill(c: &mut AnswerCache, n: u32, per_source: bool) {
        let mut out = Vec::new();
        for i in 0..n {
            let miss = c.get(&key(i), SRC, [0, 0], &mut out).unwrap_err();
            c.put(miss, &key(i), SRC, &reply(i), tally(per_source));
        }
    }

    #[test]
    fn a_stored_reply_comes_back_with_the_new_id_and_its_tally() {
        let mut c = AnswerCache::new(64 * 1024);
        c.sync(1, 1, 0);
        fill(&mut c, 100, false);
        let mut out = Vec::new();
        for i in 0..100 {
            let t = c.get(&key(i), SRC, [0x12, 0x34], &mut out).unwrap();
            assert_eq!(t, tally(false));
            let mut want = reply(i);
            want[..2].copy_from_slice(&[0x12, 0x34]);
            assert_eq!(out, want, "entry {i}");
        }
        // Another source gets the same reply: it did not depend on the source.
        assert!(
            c.get(&key(5), "2001:db8::1".parse().unwrap(), [0, 0], &mut out)
                .is_ok()
        );
        // A key differing in one byte, or shorter, is not found.
        let mut k = key(5);
        k[12] = b'W';
        assert!(c.get(&k, SRC, [0, 0], &mut out).is_err());
        assert!(c.get(&key(5)[..20], SRC, [0, 0], &mut out).is_err());
    }

    #[test]
    fn a_per_source_reply_is_found_only_from_its_source() {
        let mut c = AnswerCache::new(64 * 1024);
        c.sync(1, 1, 0);
        fill(&mut c, 10, true);
        let mut out = Vec::new();
        assert!(c.get(&key(3), SRC, [0, 0], &mut out).is_ok());
        for other in ["192.0.2.2", "::ffff:192.0.2.1", "c000:201::"] {
            let ip: IpAddr = other.parse().unwrap();
            assert!(c.get(&key(3), ip, [0, 0], &mut out).is_err(), "{other}");
        }
        // Each source keeps its own reply.
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let miss = c.get(&key(3), v6, [0, 0], &mut out).unwrap_err();
        c.put(miss, &key(3), v6, &reply(99), tally(true));
        c.get(&key(3), v6, [0xAA, 0xBB], &mut out).unwrap();
        assert_eq!(out, reply(99));
        c.get(&key(3), SRC, [0xAA, 0xBB], &mut out).unwrap();
        assert_eq!(out, reply(3));
    }

    #[test]
    fn a_new_snapshot_or_health_epoch_empties_it() {
        let mut c = AnswerCache::new(64 * 1024);
        let mut out = Vec::new();
        c.sync(1, 1, 0);
        fill(&mut c, 10, false);
        c.sync(1, 1, 0);
        assert!(c.get(&key(1), SRC, [0, 0], &mut out).is_ok());
        c.sync(1, 2, 0);
        assert!(c.get(&key(1), SRC, [0, 0], &mut out).is_err());
        fill(&mut c, 10, false);
        c.sync(2, 2, 0);
        assert!(c.get(&key(1), SRC, [0, 0], &mut out).is_err());
    }

    #[test]
    fn the_oldest_entries_give_way_and_the_newest_stay_exact() {
        // 4 KiB of ring holds about 36 of these 112-byte entries, its index 64.
        let mut c = AnswerCache::new(4096);
        c.sync(1, 1, 0);
        let mut out = Vec::new();
        for round in 0..3u32 {
            let base = round * 1000;
            for i in base..base + 500 {
                let miss = c.get(&key(i), SRC, [0, 0], &mut out).unwrap_err();
                c.put(miss, &key(i), SRC, &reply(i), tally(false));
                // Whatever is found is exactly what was stored for that key.
                for j in i.saturating_sub(60).max(base)..=i {
                    if c.get(&key(j), SRC, [0xAA, 0xBB], &mut out).is_ok() {
                        assert_eq!(out, reply(j), "entry {j} after storing {i}");
                    }
                }
            }
            let found = (base..base + 500)
                .filter(|&j| c.get(&key(j), SRC, [0, 0], &mut out).is_ok())
                .count();
            assert!(
                (20..=45).contains(&found),
                "{found} of the last entries kept in 4 KiB"
            );
            // The most recent one is always there.
            assert!(c.get(&key(base + 499), SRC, [0, 0], &mut out).is_ok());
        }
    }

    #[test]
    fn positions_near_overflow_empty_the_index_instead_of_wrapping() {
        let mut c = AnswerCache::new(4096);
        c.sync(1, 1, 0);
        c.head = u32::MAX - 2 * c.ring_blocks - 3;
        let mut out = Vec::new();
        fill(&mut c, 30, false);
        assert!(c.head < 1000, "head {}", c.head);
        for i in 20..30 {
            c.get(&key(i), SRC, [0xAA, 0xBB], &mut out).unwrap();
            assert_eq!(out, reply(i));
        }
    }

    /// Several ways of a set with the probed tag: each is read in turn until the stored
    /// key matches, so a tag collision never serves another key's reply.
    #[test]
    fn ways_sharing_a_tag_are_told_apart_by_their_keys() {
        let mut c = AnswerCache::new(64 * 1024);
        c.sync(1, 1, 0);
        let mut out = Vec::new();
        let miss = c.get(&key(1), SRC, [0, 0], &mut out).unwrap_err();
        let s = c.set_of(miss.hash);
        let tag = miss.hash as u32;
        // Three entries in the set of key 1, all given its tag: two other keys first.
        for (w, i) in [(0, 7), (3, 8), (5, 1)] {
            c.put(miss, &key(i), SRC, &reply(i), tally(false));
            let p = c.sets[s].pos.iter().copied().max().unwrap();
            c.sets[s].pos = c.sets[s].pos.map(|q| if q == p { 0 } else { q });
            c.sets[s].tag[w] = tag;
            c.sets[s].pos[w] = p;
        }
        c.get(&key(1), SRC, [0xAA, 0xBB], &mut out).unwrap();
        assert_eq!(out, reply(1));
        assert!(c.get(&key(2), SRC, [0, 0], &mut out).is_err());
    }

    #[test]
    fn oversized_entries_are_not_kept() {
        let mut c = AnswerCache::new(64 * 1024);
        c.sync(1, 1, 0);
        let mut out = Vec::new();
        let big = vec![9u8; MAX_ENTRY];
        let miss = c.get(&key(1), SRC, [0, 0], &mut out).unwrap_err();
        c.put(miss, &key(1), SRC, &big, tally(false));
        assert!(c.get(&key(1), SRC, [0, 0], &mut out).is_err());
        let long_key = vec![1u8; MAX_ENTRY];
        assert!(c.get(&long_key, SRC, [0, 0], &mut out).is_err());
    }

    #[test]
    fn sizes_round_to_powers_of_two() {
        assert_eq!(AnswerCache::new(0).capacity(), MIN_RING);
        assert_eq!(AnswerCache::new(5000).capacity(), 8192);
        assert_eq!(AnswerCache::new(1 << 20).capacity(), 1 << 20);
        assert_eq!(AnswerCache::new(1 << 20).sets.len(), 2048);
    }
}
