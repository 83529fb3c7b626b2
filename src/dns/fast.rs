//! The UDP fast path: the common query (one IN question, optional OPT carrying at most
//! an ECS option) for a GSLB name, or for a name that does not exist, is parsed and
//! answered straight from and into byte buffers, without hickory's message decoding,
//! per-query task, channel hop or record allocations.
//!
//! In a signed zone a query with DO is answered here only when it asks a GSLB name for
//! A or AAAA and the name routes to addresses (the RRSIGs come as bytes from the signature cache, see
//! [`crate::dnssec::ZoneSigner::cached_address_rrsigs`]) or to SERVFAIL (nothing to
//! sign); NODATA and NXDOMAIN need NSEC proofs, and a signature cache miss needs signing,
//! so those go to the ordinary path (`super::signed`).
//!
//! Anything else (static names, other types, other options, EDNS version > 0, malformed
//! input) returns [`Fast::Fallback`] and takes the ordinary path, which stays the
//! reference: `tests` and the differential test check that both paths produce the same
//! bytes. To make that possible the encoder here reproduces hickory-proto 0.26's name
//! compression exactly (see `Writer::name`), and the rules both paths apply (header
//! checks, qtype to family, payload, labels, the client's address) are the functions in
//! `super::rules` and [`crate::model::client_address`], not copies of them.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::sync::Arc;

use arc_swap::ArcSwap;

use hickory_server::proto::rr::{Name, RData};

use super::rules;
use crate::geo::{GeoLookup, locate};
use crate::metrics::{Metrics, Proto};
use crate::model::{ClientSource, Decision, Fx, Model, Outcome, client_address, health_epoch};
use crate::overrides::AdminView;
use crate::route::{Live, RouteMemo};
use crate::snapshot::Snapshot;

/// What the fast path did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// `out` holds the response; it was counted as the tally says.
    Reply(Tally),
    /// Not a fast-path query: use the ordinary path.
    Fallback,
}

/// What a fast-path reply counted in the metrics and what it depended on besides the
/// query bytes, the snapshot and health. The answer cache keeps it with a stored reply
/// so that a reply served again counts exactly what answering afresh would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Index in [`crate::metrics::QTYPES`].
    qtype: u8,
    /// Index in `RCODES`.
    rcode: u8,
    lookup: GeoLookup,
    /// (service, region) of a GSLB answer, for `geode_dns_answers_total`.
    answer: Option<(u16, u16)>,
    /// The client was located by the packet's source address (no usable ECS), so the
    /// same bytes from another address may get another reply.
    pub per_source: bool,
}

impl Tally {
    /// Counts the reply in `geode_dns_queries_total`, `geode_dns_answers_total` and
    /// `geode_geoip_lookups_total`. `snap` must be the snapshot that answered.
    pub fn count(&self, snap: &Snapshot, metrics: &Metrics) {
        self.lookup.count(metrics);
        if let Some((sid, r)) = self.answer {
            snap.answer_counters[usize::from(sid)][usize::from(r)].inc();
        }
        metrics.query(Proto::Udp, usize::from(self.qtype), usize::from(self.rcode));
    }

    /// The tally in one word, for the answer cache's byte store.
    pub(crate) fn pack(&self) -> u64 {
        let lookup = match self.lookup {
            GeoLookup::Skipped => 0u64,
            GeoLookup::Hit => 1,
            GeoLookup::Miss => 2,
        };
        let (has, sid, region) = match self.answer {
            Some((s, r)) => (1u64, s, r),
            None => (0, 0, 0),
        };
        u64::from(self.qtype)
            | u64::from(self.rcode) << 8
            | lookup << 16
            | has << 18
            | u64::from(self.per_source) << 19
            | u64::from(sid) << 32
            | u64::from(region) << 48
    }

    /// The tally of a reply the ordinary path made (a signed answer the answer cache
    /// keeps): indexes as [`crate::metrics::Metrics::query`] takes them.
    pub(crate) fn of_ordinary(
        qtype: usize,
        rcode: usize,
        lookup: GeoLookup,
        answer: Option<(u16, u16)>,
        per_source: bool,
    ) -> Tally {
        Tally {
            qtype: qtype as u8,
            rcode: rcode as u8,
            lookup,
            answer,
            per_source,
        }
    }

    /// The inverse of [`Tally::pack`].
    pub(crate) fn unpack(v: u64) -> Tally {
        Tally {
            qtype: v as u8,
            rcode: (v >> 8) as u8,
            lookup: match (v >> 16) & 3 {
                1 => GeoLookup::Hit,
                2 => GeoLookup::Miss,
                _ => GeoLookup::Skipped,
            },
            answer: (v >> 18 & 1 == 1).then_some(((v >> 32) as u16, (v >> 48) as u16)),
            per_source: v >> 19 & 1 == 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A GSLB name: its service and its index in [`FastIndex::owners`].
    Service(u16, u32),
    Other,
}

/// A zone's negative-answer SOA in wire form: the compiled zone's `negative_soa` record
/// (its one definition), with names as written there (case kept) for the encoder and
/// the origin lower-cased for matching query names.
#[derive(Debug)]
struct FastZone {
    origin: Vec<u8>,
    owner: Vec<u8>,
    negative_ttl: u32,
    mname: Vec<u8>,
    rname: Vec<u8>,
    serial: u32,
    refresh: u32,
    retry: u32,
    expire: u32,
    minimum: u32,
    /// Signed online: a query with DO is answered here only with addresses (signed from
    /// the signature cache) or SERVFAIL; else it goes to the ordinary path.
    signed: bool,
}

/// Wire-format lookup tables built with each snapshot.
#[derive(Debug, Default)]
pub struct FastIndex {
    names: HashMap<Box<[u8]>, Kind, BuildHasherDefault<Fx>>,
    zones: Vec<FastZone>,
    /// Each GSLB name as the signature cache keys its RRsets (case is ignored there).
    owners: Vec<crate::dnssec::OwnerKey>,
}

/// Uncompressed wire form of a name, case kept.
fn name_wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// Lower-case wire form of a presentation name (`www.example.` -> `\x03www\x07example\x00`).
pub fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out
}

impl FastIndex {
    /// Builds the tables from the model and its compiled zones (every existing name,
    /// empty non-terminals included, so absence means NXDOMAIN).
    pub fn build(_model: &Model, zones: &super::zones::ZoneIndex) -> FastIndex {
        let mut idx = FastIndex::default();
        for cz in &zones.zones {
            let soa = &cz.negative_soa;
            let RData::SOA(data) = &soa.data else {
                unreachable!("negative_soa is built as an SOA record")
            };
            idx.zones.push(FastZone {
                origin: wire(&cz.origin.to_string()),
                owner: name_wire(&soa.name),
                negative_ttl: soa.ttl,
                mname: name_wire(&data.mname),
                rname: name_wire(&data.rname),
                serial: data.serial,
                refresh: data.refresh as u32,
                retry: data.retry as u32,
                expire: data.expire as u32,
                minimum: data.minimum,
                signed: cz.signer.is_some(),
            });
            for (name, node) in &cz.nodes {
                let kind = match node.service {
                    Some(sid) if node.rrsets.is_empty() => {
                        idx.owners
                            .push(crate::dnssec::OwnerKey::new(&Name::from(name)));
                        Kind::Service(sid, (idx.owners.len() - 1) as u32)
                    }
                    _ => Kind::Other,
                };
                idx.names
                    .insert(wire(&name.to_string()).into_boxed_slice(), kind);
            }
        }
        idx
    }

    /// The most specific zone whose origin is a label-aligned suffix of `name`.
    fn zone_of(&self, name: &[u8]) -> Option<&FastZone> {
        self.zones.iter().find(|z| {
            let mut at = 0;
            loop {
                if name[at..] == z.origin[..] {
                    return true;
                }
                let l = usize::from(name[at]);
                if l == 0 {
                    return false;
                }
                at += 1 + l;
            }
        })
    }
}

/// hickory-proto 0.26 limits, mirrored so compression decisions match.
const COMPRESSION_CANDIDATE_LIMIT: usize = 64;
const COMPRESSED_NAME_LIMIT: usize = 120;

/// Compression candidates the fast path keeps: a response with more (a question name of
/// 15 labels or more: each label suffix of it is one) falls back to the ordinary path
/// rather than stopping early, since hickory stops only at [`COMPRESSION_CANDIDATE_LIMIT`].
const FAST_CANDIDATES: usize = 16;

/// A response writer whose name compression is hickory's: every label suffix of every
/// name written is a candidate, matched byte for byte (case-sensitive), first match
/// wins. The question name is written this way too, so later owners point into it.
///
/// A candidate's bytes are what was written before any compression, so they are
/// borrowed from the names passed in (the query packet, the snapshot's zone names)
/// rather than copied: nothing per query is zeroed or copied beyond the response.
struct Writer<'o, 'n> {
    out: &'o mut Vec<u8>,
    /// (offset in `out`, bytes written there).
    cand: [(u16, &'n [u8]); FAST_CANDIDATES],
    ncand: usize,
    names: usize,
    /// More candidates than `cand` holds: the response must come from the ordinary path.
    overflow: bool,
}

impl<'o, 'n> Writer<'o, 'n> {
    fn new(out: &'o mut Vec<u8>) -> Self {
        Writer {
            out,
            cand: [(0, &[]); FAST_CANDIDATES],
            ncand: 0,
            names: 0,
            overflow: false,
        }
    }

    /// Records that `bytes` were written at `at`.
    fn store(&mut self, at: usize, bytes: &'n [u8]) {
        if self.out.len() < 0x3FFF && self.ncand < COMPRESSION_CANDIDATE_LIMIT {
            match self.cand.get_mut(self.ncand) {
                Some(c) => *c = (at as u16, bytes),
                None => self.overflow = true,
            }
            self.ncand += 1;
        }
    }

    fn find(&self, bytes: &[u8]) -> Option<u16> {
        self.cand[..self.ncand.min(FAST_CANDIDATES)]
            .iter()
            // Answer owners are the question's own bytes: the same slice is found without
            // a memcmp call.
            .find(|(_, c)| std::ptr::eq(*c, bytes) || *c == bytes)
            .map(|(o, _)| *o)
    }

    /// Writes a name given in wire form, compressing as hickory does. `wire` is exactly
    /// one name, labels then the root label (the parsed question, or a name made by
    /// `name_wire`), so the root label is its last byte and no walk is needed to find it.
    fn name(&mut self, wire: &'n [u8]) {
        let end = wire.len() - 1;
        debug_assert_eq!(wire[end], 0, "a name in wire form ends with the root label");
        let base = self.out.len();
        let compress = self.names < COMPRESSED_NAME_LIMIT;
        if compress {
            self.names += 1;
        }
        if self.ncand == 0 && base + end < 0x3FFF {
            // The first name (the question): there is nothing to point at yet, so no
            // suffix is searched for; each becomes a candidate and the name is copied
            // whole. The same bytes and candidates as the loop below, which would find
            // nothing (~300 instructions a query less, bench/README.md).
            let mut at = 0;
            while at < end {
                self.store(base + at, &wire[at..end]);
                at += 1 + usize::from(wire[at]);
            }
            self.out.extend_from_slice(&wire[..=end]);
            return;
        }
        // Label by label: the suffix from `at` is either found (a pointer ends the name)
        // or written and becomes a candidate itself.
        let mut at = 0;
        while at < end {
            let suffix = &wire[at..end];
            if compress
                && let Some(loc) = self.find(suffix)
                && loc & 0xC000 == 0
            {
                self.out.extend_from_slice(&(0xC000 | loc).to_be_bytes());
                return;
            }
            self.store(base + at, suffix);
            let label = &wire[at..at + 1 + usize::from(wire[at])];
            self.out.extend_from_slice(label);
            at += label.len();
        }
        self.out.push(0);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The parsed fast-path query.
struct Query<'p> {
    /// Length of the lower-case wire name written to the caller's buffer.
    lname_len: usize,
    /// Original-case wire name.
    qname: &'p [u8],
    /// The question as received: the name, QTYPE and QCLASS (IN, or this is no fast-path
    /// query), which is also the response's question, byte for byte.
    question: &'p [u8],
    qtype: u16,
    /// Response OPT payload when the query had OPT.
    opt_payload: Option<u16>,
    /// The ECS option body, when present.
    ecs: Option<&'p [u8]>,
    /// The OPT record's DO bit (RFC 3225).
    dnssec_ok: bool,
    /// The query's OPT record as received (empty without one); it ends the packet. The
    /// response's OPT is this record with a few bytes changed (see `write_opt`).
    opt: &'p [u8],
}

/// Parses a fast-path query; the lower-case name goes to `lname` (the caller's, so the
/// returned query is small to move).
///
/// Fixed-size parts (the header, QTYPE/QCLASS, the OPT record's head, an option's header)
/// are split off the packet as arrays, so each is one length check instead of one per
/// byte read (~45 instructions a query less, bench/qpath); the test
/// `parse_accepts_and_reads_exactly_what_the_reference_parse_does` keeps the byte-by-byte
/// parser this replaced and compares the two.
fn parse<'p>(pkt: &'p [u8], cap: u16, lname: &mut [u8; 255]) -> Option<Query<'p>> {
    let (head, rest) = pkt.split_first_chunk::<12>()?;
    let [_, _, f0, f1, qd0, qd1, an0, an1, ns0, ns1, ar0, ar1] = *head;
    let flags = u16::from_be_bytes([f0, f1]);
    let opcode = (flags >> 11) as u8 & 0x0F;
    let qdcount = usize::from(u16::from_be_bytes([qd0, qd1]));
    // QR=0, TC=0, no answer/authority, at most the OPT: the shape this path handles.
    if flags & 0x8200 != 0 || [an0, an1, ns0, ns1] != [0; 4] {
        return None;
    }
    // NOTIMP, FORMERR (and BADVERS below) are the ordinary path's to answer.
    if rules::header_rcode(opcode, None, qdcount).is_some() {
        return None;
    }
    let arcount = u16::from_be_bytes([ar0, ar1]);
    if arcount > 1 {
        return None;
    }
    // The labels are walked for their lengths only; the name is then copied and
    // lower-cased whole (a per-byte copy inside this walk was ~150 instructions a query).
    // A wire name is at most 255 bytes (RFC 1035 3.1), so the walk reads only the first
    // 255 bytes after the header: a bound the compiler sees, for `at` and the copy.
    let window = &rest[..rest.len().min(255)];
    let mut at = 0;
    let mut labels = 0;
    loop {
        let l = usize::from(*window.get(at)?);
        if l == 0 {
            at += 1;
            break;
        }
        // At most 63 bytes a label (no pointer in a question here), 255 a name. The
        // next length byte read proves this label's bytes are all in the packet.
        if l > 63 || at + l + 2 > 255 {
            return None;
        }
        at += 1 + l;
        labels += 1;
    }
    // Each label suffix of the question name is a compression candidate: more than the
    // encoder keeps is the ordinary path's (see `FAST_CANDIDATES`).
    if labels > FAST_CANDIDATES {
        return None;
    }
    let (qname, after) = rest.split_at_checked(at)?;
    let ln = qname.len();
    let lower = lname.get_mut(..ln)?;
    lower.copy_from_slice(qname);
    // Length bytes are 1 to 63, below b'A', so lower-casing the whole wire name changes
    // only the labels' letters.
    lower.make_ascii_lowercase();
    let (&[t0, t1, c0, c1], opt) = after.split_first_chunk::<4>()?;
    let qtype = u16::from_be_bytes([t0, t1]);
    // Other classes and zone transfers are REFUSED for every name: the ordinary path's.
    if rules::question_rcode(u16::from_be_bytes([c0, c1]), qtype).is_some() {
        return None;
    }
    // Meta and transfer types (TKEY, TSIG, IXFR, AXFR, MAILB, MAILA) are the ordinary
    // path's: it refuses transfers, where the fast path answered NXDOMAIN (fuzz finding,
    // tests/data/fuzz/dns-1156966.bin). ANY (255) stays.
    if (128..=254).contains(&qtype) {
        return None;
    }
    let mut q = Query {
        lname_len: ln,
        qname,
        question: rest.get(..ln + 4)?,
        qtype,
        opt_payload: None,
        ecs: None,
        dnssec_ok: false,
        opt,
    };
    if arcount == 0 {
        return opt.is_empty().then_some(q);
    }
    // OPT: root owner, type 41, CLASS = payload, TTL = ext-rcode/version/flags, RDLEN;
    // the record ends the packet.
    let (&[owner, y0, y1, p0, p1, _, version, flags_hi, _, r0, r1], rdata) =
        opt.split_first_chunk::<11>()?;
    if owner != 0 || u16::from_be_bytes([y0, y1]) != 41 {
        return None;
    }
    if rules::header_rcode(opcode, Some(version), qdcount).is_some() {
        return None; // EDNS version > 0: BADVERS via the ordinary path.
    }
    q.dnssec_ok = flags_hi & 0x80 != 0;
    if usize::from(u16::from_be_bytes([r0, r1])) != rdata.len() {
        return None;
    }
    // At most one option, ECS, filling the RDATA: anything more (a second option, a
    // stray byte) is the ordinary path's.
    if let Some((&[k0, k1, l0, l1], body)) = rdata.split_first_chunk::<4>() {
        if u16::from_be_bytes([k0, k1]) != 8
            || usize::from(u16::from_be_bytes([l0, l1])) != body.len()
            || super::ecs::check_option(body).is_err()
        {
            return None;
        }
        q.ecs = Some(body);
    } else if !rdata.is_empty() {
        return None;
    }
    q.opt_payload = Some(rules::response_payload(u16::from_be_bytes([p0, p1]), cap));
    Some(q)
}

/// The ECS option's address, zero past the bytes the option carries.
///
/// `parse` let through only an option that fills the RDATA of an OPT record that ends the
/// packet, so the address is the packet's last bytes: the 4- or 16-byte word ending the
/// packet (every query that reaches here is longer than that) holds it in its low bytes,
/// and a shift puts them on top. One load and a shift, where copying the address into a
/// zeroed array was a call of `memcpy` and a byte-by-byte reassembly (~20 instructions a
/// query; bench/README.md). The test `the_ecs_address_read_from_the_packet_tail_is_the_options`
/// keeps the copying version and compares the two.
#[inline(always)]
fn ecs_addr(pkt: &[u8], body: &[u8]) -> IpAddr {
    debug_assert_eq!(body.as_ptr_range().end, pkt.as_ptr_range().end);
    // `ecs::check_option` held the address to SOURCE PREFIX-LENGTH's bytes: at most 4 for
    // IPv4, 16 for IPv6. A shift by the whole width (no address bytes) is 0.
    let missing = 8 * (body.len().saturating_sub(4) as u32);
    if body[1] == 1 {
        let w = pkt.last_chunk::<4>().map_or(0, |w| u32::from_be_bytes(*w));
        IpAddr::V4(Ipv4Addr::from(w.checked_shl(32 - missing).unwrap_or(0)))
    } else {
        let w = pkt
            .last_chunk::<16>()
            .map_or(0, |w| u128::from_be_bytes(*w));
        IpAddr::V6(Ipv6Addr::from(w.checked_shl(128 - missing).unwrap_or(0)))
    }
}

/// Length of the first RRSIG in signature-cache wire form (type, class, TTL, RDLENGTH,
/// RDATA; see [`crate::dnssec::ZoneSigner::cached_address_rrsigs`]).
fn sig_len(wire: &[u8]) -> usize {
    10 + usize::from(u16::from_be_bytes([wire[8], wire[9]]))
}

/// Number of RRSIGs in signature-cache wire form.
fn sig_count(mut wire: &[u8]) -> usize {
    let mut n = 0;
    while !wire.is_empty() {
        wire = &wire[sig_len(wire)..];
        n += 1;
    }
    n
}

/// Per-loop working memory of [`answer_with`]: the lower-cased query name and the routing
/// decision are written in place on every query, so keeping them across queries spares
/// zeroing some 540 bytes a query. Nothing in it outlives a query: `parse` writes the
/// name's bytes before they are read, and `RouteMemo::route_into` (through
/// `route::decision::begin`) sets every field of the decision before it is read.
#[derive(Debug)]
pub struct Scratch {
    lname: [u8; 255],
    decided: Decision,
    /// The operator overrides of the snapshot last routed from, revalidated per query
    /// instead of loaded (see [`Overrides::Cached`]).
    overrides: Option<arc_swap::Cache<OverridesOf, Arc<AdminView>>>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            lname: [0; 255],
            decided: Decision::default(),
            overrides: None,
        }
    }
}

impl Scratch {
    /// Lets go of a snapshot other than `current` that the cached overrides keep alive
    /// (a receive loop calls it when idle, so a reload's old snapshot is freed even if
    /// no GSLB query comes after it).
    pub fn release_stale(&mut self, current: &Snapshot) {
        if self
            .overrides
            .as_ref()
            .is_some_and(|c| !std::ptr::eq(c.arc_swap(), &current.admin))
        {
            self.overrides = None;
        }
    }
}

/// A snapshot's `admin` cell reached through an owned handle on the snapshot, so that a
/// cache of the cell can live across queries.
#[derive(Debug, Clone)]
pub struct OverridesOf(Arc<Snapshot>);

impl Deref for OverridesOf {
    type Target = ArcSwap<AdminView>;
    fn deref(&self) -> &ArcSwap<AdminView> {
        &self.0.admin
    }
}

/// Where a routed query reads the snapshot's operator overrides.
enum Overrides<'a> {
    /// A load from the snapshot (arc-swap's hazard-slot `load`).
    Load,
    /// The loop's cache of the cell of this snapshot: one relaxed pointer compare while
    /// the view is unchanged (~45 instructions a routed query less than a load). It is
    /// read after `health_epoch` (Acquire) as a load is: an override is published
    /// before `model::routing_changed` bumps the epoch (Release), so a query that saw
    /// the new epoch also sees the new pointer (coherence), and a changed pointer is
    /// taken with `load_full`, which synchronises the view's contents.
    Cached(
        &'a mut Option<arc_swap::Cache<OverridesOf, Arc<AdminView>>>,
        &'a Arc<Snapshot>,
    ),
}

/// Answers a query on the fast path, or says it is not one. `memo` is the calling
/// loop's [`RouteMemo`]; any memo gives the same bytes, a long-lived one answers faster.
pub fn answer(
    snap: &Snapshot,
    metrics: &Metrics,
    memo: &mut RouteMemo,
    pkt: &[u8],
    src: IpAddr,
    out: &mut Vec<u8>,
) -> Fast {
    let Scratch { lname, decided, .. } = &mut Scratch::default();
    respond(
        lname,
        decided,
        Overrides::Load,
        snap,
        metrics,
        memo,
        pkt,
        src,
        out,
    )
}

/// [`answer`] with the caller's [`Scratch`]: a receive loop keeps one, like its memo.
/// Any scratch gives the same bytes.
pub fn answer_with(
    scratch: &mut Scratch,
    snap: &Arc<Snapshot>,
    metrics: &Metrics,
    memo: &mut RouteMemo,
    pkt: &[u8],
    src: IpAddr,
    out: &mut Vec<u8>,
) -> Fast {
    let Scratch {
        lname,
        decided,
        overrides,
    } = scratch;
    let overrides = Overrides::Cached(overrides, snap);
    respond(
        lname, decided, overrides, snap, metrics, memo, pkt, src, out,
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn respond(
    lname: &mut [u8; 255],
    decided: &mut Decision,
    overrides: Overrides<'_>,
    snap: &Snapshot,
    metrics: &Metrics,
    memo: &mut RouteMemo,
    pkt: &[u8],
    src: IpAddr,
    out: &mut Vec<u8>,
) -> Fast {
    let Some(q) = parse(pkt, snap.model.server.live.max_udp_payload, lname) else {
        return Fast::Fallback;
    };
    let lname = &lname[..q.lname_len];
    let ecs = q.ecs.map(|b| (b, ecs_addr(pkt, b)));
    let mut lookup = GeoLookup::Skipped;
    let mut service = None;
    let mut per_source = false;
    // (index in `FastIndex::owners`, zone index) of a GSLB name.
    let mut owner = None;
    let (zone, decision) = match snap.fast.names.get(lname) {
        Some(Kind::Service(sid, o)) => {
            let Some(family) = rules::gslb_family(q.qtype) else {
                return Fast::Fallback;
            };
            let (ip, source) = client_address(ecs.map(|(b, addr)| (addr, b[2])), src);
            per_source = source == ClientSource::Resolver;
            memo.sync(snap.generation, health_epoch());
            // Located once per address and snapshot: see `RouteMemo::located`.
            let geo = snap.geo.as_deref();
            let loc = memo.located(ip, source, |ip, source| {
                locate(&snap.model, geo, ip, source).0
            });
            lookup = GeoLookup::of(&loc, geo.is_some());
            service = Some(*sid);
            // Loaded after the epoch (see `model::routing_changed`): a memo of an older
            // epoch never keeps a decision made with an older view.
            let guard;
            let admin: &AdminView = match overrides {
                Overrides::Load => {
                    guard = snap.admin.load();
                    &guard
                }
                Overrides::Cached(slot, arc) => {
                    if slot
                        .as_ref()
                        .is_some_and(|c| !std::ptr::eq(c.arc_swap(), &arc.admin))
                    {
                        *slot = None;
                    }
                    slot.get_or_insert_with(|| arc_swap::Cache::new(OverridesOf(Arc::clone(arc))))
                        .load()
                }
            };
            // Routed in place (every field is set) and then only borrowed: see `route_into`.
            memo.route_into(&snap.model, *sid, family, &loc, &Live(admin), decided);
            let zi = snap.model.services[usize::from(*sid)].zone;
            owner = Some((*o, zi));
            (&snap.fast.zones[zi], Some(&*decided))
        }
        Some(Kind::Other) => return Fast::Fallback,
        None => match snap.fast.zone_of(lname) {
            Some(z) => (z, None),
            None => return Fast::Fallback,
        },
    };
    // RFC 4035 3.1: with DO in a signed zone, the answer RRset's RRSIGs (from the
    // signature cache) follow it and DO is echoed (RFC 3225 3); AD stays clear (3.1.6).
    // Denials need NSEC proofs and a cache miss needs signing: both are the ordinary
    // path's (`super::signed`). Nothing was counted yet, so it counts the query once.
    let signed = q.dnssec_ok && zone.signed;
    let mut rrsigs = None;
    if signed {
        match (&decision, owner) {
            // A and AAAA only: ANY (answered with one RRset, RFC 8482) stays with the
            // ordinary path, as every type but the two a resolver asks for does.
            (Some(d), Some((o, zi)))
                if d.outcome == Outcome::Answer && matches!(q.qtype, 1 | 28) =>
            {
                // `FastIndex::zones` is built in the order of the compiled zones.
                let signer = snap.zones.zones[zi].signer.as_ref();
                rrsigs = signer.and_then(|s| {
                    s.cached_address_rrsigs(
                        &snap.fast.owners[o as usize],
                        d.ttl,
                        d.addrs.as_slice(),
                        crate::dnssec::now(),
                    )
                });
                if rrsigs.is_none() {
                    return Fast::Fallback;
                }
            }
            (Some(d), _) if d.outcome == Outcome::ServFail && matches!(q.qtype, 1 | 28) => {}
            _ => return Fast::Fallback,
        }
    }
    let rrsigs: &[u8] = rrsigs.as_deref().unwrap_or(&[]);

    let (rcode, scope) = match &decision {
        None => (3u8, 0u8),
        Some(Decision {
            outcome: Outcome::ServFail,
            scope,
            ..
        }) => (2, *scope),
        Some(d) => (0, d.scope),
    };
    let body = Body {
        rcode,
        answer: decision
            .filter(|d| d.outcome == Outcome::Answer)
            .map(|d| (d.addrs.as_slice(), d.ttl)),
        rrsigs,
        negative: decision
            .is_none_or(|d| d.outcome == Outcome::NoData)
            .then_some(zone),
        scope,
        signed,
    };
    if !encode(pkt, &q, &body, ecs, out) {
        return Fast::Fallback;
    }
    let answer = match (service, decision) {
        (
            Some(sid),
            Some(Decision {
                outcome: Outcome::Answer,
                region: Some(r),
                ..
            }),
        ) => Some((sid, *r)),
        _ => None,
    };
    let tally = Tally {
        qtype: rules::qtype_label(q.qtype) as u8,
        rcode: rules::rcode_label(u16::from(rcode)) as u8,
        lookup,
        answer,
        per_source,
    };
    tally.count(snap, metrics);
    Fast::Reply(tally)
}

/// What a fast-path response holds besides its header and question.
struct Body<'a> {
    /// Header RCODE (NOERROR, SERVFAIL or NXDOMAIN).
    rcode: u8,
    /// The addresses and their TTL, when the outcome is an answer.
    answer: Option<(&'a [IpAddr], u32)>,
    /// The answer's RRSIGs in signature-cache wire form (empty if none).
    rrsigs: &'a [u8],
    /// NODATA or NXDOMAIN: the zone whose SOA goes in AUTHORITY.
    negative: Option<&'a FastZone>,
    /// ECS scope of the reply.
    scope: u8,
    /// DO is echoed in the OPT record.
    signed: bool,
}

/// Writes the response to `q` into `out`, truncated as the ordinary path truncates;
/// false when it must come from the ordinary path (more compression candidates than
/// the general encoder keeps).
///
/// Two encoders give the same bytes. Without an AUTHORITY section every name after the
/// question is an owner spelled exactly as the question name, and hickory's compression
/// finds that whole name first among its candidates, at offset 12: each owner is the
/// pointer C0 0C as long as hickory still compresses (fewer than
/// [`COMPRESSED_NAME_LIMIT`] names written before it) and the name is not the root
/// (which has no label to point at). `encode_answer` writes that case straight into a
/// buffer sized once; everything else (negative answers with their SOA, hundreds of
/// owners, the root) goes through the candidate-tracking [`Writer`]. The unit tests
/// compare the two on every shape the first one takes.
fn encode(
    pkt: &[u8],
    q: &Query<'_>,
    b: &Body<'_>,
    ecs: Option<(&[u8], IpAddr)>,
    out: &mut Vec<u8>,
) -> bool {
    let owners = b.answer.map_or(0, |(a, _)| a.len()) + sig_count(b.rrsigs);
    let (question_end, opt_at) =
        if b.negative.is_none() && q.qname.len() > 1 && owners < COMPRESSED_NAME_LIMIT {
            encode_answer(pkt, q, b, owners, ecs, out)
        } else {
            match encode_general(pkt, q, b, owners, ecs, out) {
                Some(at) => at,
                None => return false,
            }
        };
    if out.len() > usize::from(rules::udp_limit(q.opt_payload)) {
        // RFC 6891 7, as `super::encode` does: header, question, OPT, and TC.
        out.copy_within(opt_at.., question_end);
        out.truncate(out.len() - (opt_at - question_end));
        out[2] |= 0x02;
        out[6..10].fill(0);
    }
    true
}

/// The header: ID, QR AA, RD and CD echoed (RFC 1035 4.1.1; RFC 4035 3.2.2), one
/// question, `answers`, an SOA when negative, the OPT when the query had one.
fn header(pkt: &[u8], q: &Query<'_>, b: &Body<'_>, answers: usize) -> [u8; 12] {
    let an = (answers as u16).to_be_bytes();
    [
        pkt[0],
        pkt[1],
        0x84 | (pkt[2] & 0x01),
        (pkt[3] & 0x10) | b.rcode,
        0,
        1,
        an[0],
        an[1],
        0,
        u8::from(b.negative.is_some()),
        0,
        u8::from(q.opt_payload.is_some()),
    ]
}

/// Writes the OPT record: extended RCODE 0, version 0, DO when this is a signed answer,
/// and the ECS option answered with its scope.
///
/// That is the query's OPT record with a few bytes changed, so it is copied whole and
/// patched. `parse` let through only a record of at most one option, ECS, filling the
/// RDATA, with exactly the address bytes its source prefix needs (`ecs::check_option`):
/// RDLENGTH, the option's code and length, FAMILY, SOURCE PREFIX-LENGTH and the address
/// are the response's as they stand, and what differs is the payload (CLASS), the TTL
/// (extended RCODE, version, flags: only DO, when signed) and SCOPE PREFIX-LENGTH. One
/// copy of the record instead of three pieces built (~8 instructions a query less);
/// the test `the_opt_record_patched_equals_the_one_built` keeps the builder this replaced
/// and compares the two.
// Inlined into both encoders: left out of line it was a call of ~25 instructions a query
// (callgrind, benches/qpath.rs).
#[inline(always)]
fn write_opt(out: &mut Vec<u8>, q: &Query<'_>, b: &Body<'_>, ecs: Option<(&[u8], IpAddr)>) {
    let Some(payload) = q.opt_payload else {
        return;
    };
    let at = out.len();
    out.extend_from_slice(q.opt);
    // A query OPT is at least its 11-byte head (`parse`).
    if let Some((head, rdata)) = out[at..].split_first_chunk_mut::<11>() {
        let [p0, p1] = payload.to_be_bytes();
        let dnssec = if b.signed { 0x80 } else { 0 };
        head[3..9].copy_from_slice(&[p0, p1, 0, 0, dnssec, 0]);
        // SCOPE PREFIX-LENGTH: after the option's code and length, FAMILY and SOURCE.
        if let (Some((body, addr)), Some(scope)) = (ecs, rdata.get_mut(7)) {
            *scope = super::ecs::reply_scope(addr, body[2], b.scope);
        }
    }
}

/// Bytes of the OPT record `write_opt` writes: the query's.
fn opt_len(q: &Query<'_>) -> usize {
    q.opt.len()
}

/// The pointer to the question name, at offset 12 (RFC 1035 4.1.4).
const QUESTION_POINTER: [u8; 2] = [0xC0, 12];

/// The response without AUTHORITY and with every owner the pointer to the question (see
/// [`encode`] for when that holds). The buffer grows once, to a bound of the size, and
/// each record goes in as one fixed-size piece. Returns (end of the question, start of
/// the OPT record).
fn encode_answer(
    pkt: &[u8],
    q: &Query<'_>,
    b: &Body<'_>,
    owners: usize,
    ecs: Option<(&[u8], IpAddr)>,
    out: &mut Vec<u8>,
) -> (usize, usize) {
    let (addrs, ttl) = b.answer.unwrap_or((&[], 0));
    out.clear();
    // 2 + 10 + 16 bytes an AAAA record, 2 + its bytes an RRSIG record.
    out.reserve(
        12 + q.question.len()
            + 28 * addrs.len()
            + 2 * (owners - addrs.len())
            + b.rrsigs.len()
            + opt_len(q),
    );
    out.extend_from_slice(&header(pkt, q, b, owners));
    out.extend_from_slice(q.question);
    let question_end = out.len();
    let t = ttl.to_be_bytes();
    for a in addrs {
        match a {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                let [p0, p1] = QUESTION_POINTER;
                out.extend_from_slice(&[
                    p0, p1, 0, 1, 0, 1, t[0], t[1], t[2], t[3], 0, 4, o[0], o[1], o[2], o[3],
                ]);
            }
            IpAddr::V6(v6) => {
                let [p0, p1] = QUESTION_POINTER;
                let mut rr = [
                    p0, p1, 0, 28, 0, 1, t[0], t[1], t[2], t[3], 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0, 0,
                ];
                rr[12..].copy_from_slice(&v6.octets());
                out.extend_from_slice(&rr);
            }
        }
    }
    // Each RRSIG owned by the same spelling as the RRset (`signed::sign_sections`).
    let mut rest = b.rrsigs;
    while !rest.is_empty() {
        let len = sig_len(rest);
        out.extend_from_slice(&QUESTION_POINTER);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    let opt_at = out.len();
    write_opt(out, q, b, ecs);
    (question_end, opt_at)
}

/// Any fast-path response, names written through the hickory-compatible [`Writer`].
/// None when the names need more compression candidates than the writer keeps.
fn encode_general<'n>(
    pkt: &[u8],
    q: &Query<'n>,
    b: &Body<'n>,
    owners: usize,
    ecs: Option<(&[u8], IpAddr)>,
    out: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    out.clear();
    let mut w = Writer::new(out);
    w.out.extend_from_slice(&header(pkt, q, b, owners));
    // The question name is written as any other name, so its suffixes are compression
    // candidates and every answer owner becomes a pointer to it (hickory's `Query::emit`
    // in `super::encode` does the same).
    w.name(q.qname);
    w.u16(q.qtype);
    w.u16(rules::CLASS_IN);
    let question_end = w.out.len();
    if let Some((addrs, ttl)) = b.answer {
        for a in addrs {
            w.name(q.qname);
            match a {
                IpAddr::V4(v4) => {
                    w.u16(1);
                    w.u16(1);
                    w.u32(ttl);
                    w.u16(4);
                    w.out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    w.u16(28);
                    w.u16(1);
                    w.u32(ttl);
                    w.u16(16);
                    w.out.extend_from_slice(&v6.octets());
                }
            }
        }
        let mut rest = b.rrsigs;
        while !rest.is_empty() {
            let len = sig_len(rest);
            w.name(q.qname);
            w.out.extend_from_slice(&rest[..len]);
            rest = &rest[len..];
        }
    }
    if let Some(zone) = b.negative {
        // RFC 2308 3: the zone's SOA in AUTHORITY, TTL = min(SOA TTL, MINIMUM).
        w.name(&zone.owner);
        w.u16(6);
        w.u16(1);
        w.u32(zone.negative_ttl);
        let len_at = w.out.len();
        w.u16(0);
        w.name(&zone.mname);
        w.name(&zone.rname);
        w.u32(zone.serial);
        w.u32(zone.refresh);
        w.u32(zone.retry);
        w.u32(zone.expire);
        w.u32(zone.minimum);
        let rdlen = (w.out.len() - len_at - 2) as u16;
        w.out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
    if w.overflow {
        // Too many names to compress here: the ordinary path does it as hickory does.
        return None;
    }
    let opt_at = w.out.len();
    // The OPT owner is the root: a name of no labels, so no candidate and no pointer.
    write_opt(w.out, q, b, ecs);
    Some((question_end, opt_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (presentation form, case kept) of `qtype`, with an OPT record
    /// offering `payload` and carrying `ecs` (an option body) when `payload` is set.
    fn query(
        name: &str,
        qtype: u16,
        payload: Option<u16>,
        ecs: Option<&[u8]>,
        dnssec: bool,
    ) -> Vec<u8> {
        let mut p = vec![
            0xAB,
            0xCD,
            0x01,
            0x10,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(payload.is_some()),
        ];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        if let Some(payload) = payload {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dnssec { 0x80 } else { 0 }, 0]);
            let body = ecs.unwrap_or(&[]);
            let rdlen = if ecs.is_some() { 4 + body.len() } else { 0 };
            p.extend_from_slice(&(rdlen as u16).to_be_bytes());
            if ecs.is_some() {
                p.extend_from_slice(&[0, 8]);
                p.extend_from_slice(&(body.len() as u16).to_be_bytes());
                p.extend_from_slice(body);
            }
        }
        p
    }

    fn u16_at(p: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
    }

    /// `parse` as it was before it split fixed-size parts off the packet: byte by byte,
    /// each read bounds-checked. Kept as the reference the parser must agree with.
    fn reference_parse<'p>(pkt: &'p [u8], cap: u16, lname: &mut [u8; 255]) -> Option<Query<'p>> {
        if pkt.len() < 12 {
            return None;
        }
        let flags = u16_at(pkt, 2)?;
        let opcode = (flags >> 11) as u8 & 0x0F;
        let qdcount = usize::from(u16_at(pkt, 4)?);
        // QR=0, TC=0, no answer/authority, at most the OPT: the shape this path handles.
        if flags & 0x8200 != 0 || u16_at(pkt, 6)? != 0 || u16_at(pkt, 8)? != 0 {
            return None;
        }
        // NOTIMP, FORMERR (and BADVERS below) are the ordinary path's to answer.
        if rules::header_rcode(opcode, None, qdcount).is_some() {
            return None;
        }
        let arcount = u16_at(pkt, 10)?;
        if arcount > 1 {
            return None;
        }
        // The labels are walked for their lengths only; the name is then copied and
        // lower-cased whole (a per-byte copy inside this walk was ~150 instructions a query).
        let mut at = 12;
        let mut labels = 0;
        loop {
            let l = usize::from(*pkt.get(at)?);
            if l == 0 {
                at += 1;
                break;
            }
            // At most 63 bytes a label (no pointer in a question here), 255 a name. The
            // next length byte read proves this label's bytes are all in the packet.
            if l > 63 || at - 12 + l + 2 > 255 {
                return None;
            }
            at += 1 + l;
            labels += 1;
        }
        // Each label suffix of the question name is a compression candidate: more than the
        // encoder keeps is the ordinary path's (see `FAST_CANDIDATES`).
        if labels > FAST_CANDIDATES {
            return None;
        }
        let qname = &pkt[12..at];
        let ln = qname.len();
        let lower = &mut lname[..ln];
        lower.copy_from_slice(qname);
        // Length bytes are 1 to 63, below b'A', so lower-casing the whole wire name changes
        // only the labels' letters.
        lower.make_ascii_lowercase();
        let qtype = u16_at(pkt, at)?;
        // Other classes and zone transfers are REFUSED for every name: the ordinary path's.
        if rules::question_rcode(u16_at(pkt, at + 2)?, qtype).is_some() {
            return None;
        }
        // Meta and transfer types (TKEY, TSIG, IXFR, AXFR, MAILB, MAILA) are the ordinary
        // path's: it refuses transfers, where the fast path answered NXDOMAIN (fuzz finding,
        // tests/data/fuzz/dns-1156966.bin). ANY (255) stays.
        if (128..=254).contains(&qtype) {
            return None;
        }
        let q_end = at + 4;
        let mut q = Query {
            lname_len: ln,
            qname,
            question: pkt.get(12..q_end)?,
            qtype,
            opt_payload: None,
            ecs: None,
            dnssec_ok: false,
            // Not read before: compared with the packet's tail on its own.
            opt: &[],
        };
        if arcount == 0 {
            return (q_end == pkt.len()).then_some(q);
        }
        // OPT: root owner, type 41, CLASS = payload, TTL = ext-rcode/version/flags.
        if *pkt.get(q_end)? != 0 || u16_at(pkt, q_end + 1)? != 41 {
            return None;
        }
        let payload = u16_at(pkt, q_end + 3)?;
        if rules::header_rcode(opcode, Some(*pkt.get(q_end + 6)?), qdcount).is_some() {
            return None; // EDNS version > 0: BADVERS via the ordinary path.
        }
        q.dnssec_ok = *pkt.get(q_end + 7)? & 0x80 != 0;
        let rdlen = usize::from(u16_at(pkt, q_end + 9)?);
        let mut o = q_end + 11;
        let end = o + rdlen;
        if end != pkt.len() {
            return None;
        }
        while o < end {
            let code = u16_at(pkt, o)?;
            let len = usize::from(u16_at(pkt, o + 2)?);
            let body = pkt.get(o + 4..o + 4 + len)?;
            if code != 8 || q.ecs.is_some() || crate::dns::ecs::check_option(body).is_err() {
                return None;
            }
            q.ecs = Some(body);
            o += 4 + len;
        }
        q.opt_payload = Some(rules::response_payload(payload, cap));
        Some(q)
    }

    /// A small deterministic RNG (xorshift64) for the mutation tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// An ECS option body for `family` (1 or 2) and `prefix`, its address the first
    /// bytes of a fixed pattern with the bits beyond the prefix cleared (a valid option).
    fn ecs_body(family: u8, prefix: u8, scope: u8) -> Vec<u8> {
        let bytes = usize::from(prefix).div_ceil(8);
        let mut b = vec![0, family, prefix, scope];
        b.extend((0..bytes).map(|i| 0xA7u8.wrapping_mul(i as u8 + 1) | 0x81));
        if !prefix.is_multiple_of(8) {
            *b.last_mut().unwrap() &= 0xFFu8 << (8 - prefix % 8);
        }
        b
    }

    /// The ECS address as `ecs_addr` built it before it read the packet's tail: the
    /// option's address bytes copied into a zeroed array.
    fn ecs_addr_copied(body: &[u8]) -> IpAddr {
        let addr = &body[4..];
        if body[1] == 1 {
            let mut o = [0u8; 4];
            o[..addr.len()].copy_from_slice(addr);
            IpAddr::V4(Ipv4Addr::from(o))
        } else {
            let mut o = [0u8; 16];
            o[..addr.len()].copy_from_slice(addr);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    }

    #[test]
    fn the_ecs_address_read_from_the_packet_tail_is_the_options() {
        let mut seen = 0;
        for (family, max) in [(1u8, 32u8), (2, 128)] {
            for prefix in 0..=max {
                for name in [".", "a.", "Www.Example."] {
                    let body = ecs_body(family, prefix, 0);
                    let pkt = query(name, 1, Some(1232), Some(&body), false);
                    let mut lname = [0u8; 255];
                    let q = parse(&pkt, 1232, &mut lname).expect("a fast-path query");
                    let b = q.ecs.expect("the ECS option");
                    assert_eq!(b, &body[..]);
                    assert_eq!(
                        ecs_addr(&pkt, b),
                        ecs_addr_copied(b),
                        "family {family} /{prefix} {name}"
                    );
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 3 * (33 + 129));
    }

    /// Every query the helpers build that the parser tests below start from: names of
    /// every shape (root, mixed case, 16 and 17 labels, 63-byte labels, 255 and 256
    /// bytes), fast and ordinary types, with and without OPT, ECS of both families and
    /// every prefix, DO on and off.
    fn base_queries() -> Vec<Vec<u8>> {
        let sixteen: String = (0..16).map(|i| format!("l{i}.")).collect();
        let names = [
            ".".to_string(),
            "a.".to_string(),
            "WwW.Example.COM.".to_string(),
            "gslb.svc.example.".to_string(),
            sixteen.clone(),
            format!("x.{sixteen}"),
            format!("{}.example.", "x".repeat(63)),
            format!("{a}.{a}.{a}.{b}.", a = "A".repeat(63), b = "B".repeat(61)),
            format!("{a}.{a}.{a}.{b}.", a = "A".repeat(63), b = "B".repeat(62)),
        ];
        let ecs4 = ecs_body(1, 24, 0);
        let ecs6 = ecs_body(2, 56, 0);
        let mut out = Vec::new();
        for name in &names {
            for qtype in [0u16, 1, 6, 16, 28, 65, 127, 128, 251, 252, 254, 255, 65535] {
                for (payload, ecs) in [
                    (None, None),
                    (Some(512), None),
                    (Some(0), None),
                    (Some(1232), Some(&ecs4[..])),
                    (Some(4096), Some(&ecs6[..])),
                ] {
                    for dnssec in [false, true] {
                        out.push(query(name, qtype, payload, ecs, dnssec));
                    }
                }
            }
        }
        for (family, max) in [(1u8, 32u8), (2, 128)] {
            for prefix in 0..=max {
                for scope in [0, prefix] {
                    for payload in [0u16, 1232, 65535] {
                        for dnssec in [false, true] {
                            let ecs = ecs_body(family, prefix, scope);
                            out.push(query("www.Example.", 1, Some(payload), Some(&ecs), dnssec));
                        }
                    }
                }
            }
        }
        out
    }

    /// Parses `pkt` with both parsers and checks they agree: both reject it, or both
    /// accept it and read the same fields, the same bytes of the packet, and the same
    /// lower-case name. True when accepted.
    fn parsers_agree(pkt: &[u8], cap: u16) -> bool {
        // Different stale contents, so a name byte not written would show.
        let mut new_name = [0x11u8; 255];
        let mut ref_name = [0x22u8; 255];
        let new = parse(pkt, cap, &mut new_name);
        let old = reference_parse(pkt, cap, &mut ref_name);
        match (new, old) {
            (None, None) => false,
            (Some(n), Some(o)) => {
                let same_bytes = |a: &[u8], b: &[u8]| std::ptr::eq(a, b);
                assert_eq!(n.lname_len, o.lname_len, "{pkt:?}");
                assert!(same_bytes(n.qname, o.qname), "{pkt:?}");
                assert!(same_bytes(n.question, o.question), "{pkt:?}");
                assert_eq!(n.qtype, o.qtype, "{pkt:?}");
                assert_eq!(n.opt_payload, o.opt_payload, "{pkt:?}");
                match (n.ecs, o.ecs) {
                    (None, None) => {}
                    (Some(a), Some(b)) => assert!(same_bytes(a, b), "{pkt:?}"),
                    _ => panic!("ECS read differently: {pkt:?}"),
                }
                assert_eq!(n.dnssec_ok, o.dnssec_ok, "{pkt:?}");
                // The OPT record the response is patched from: the rest of the packet.
                assert!(same_bytes(n.opt, &pkt[12 + n.question.len()..]), "{pkt:?}");
                assert_eq!(n.opt.is_empty(), n.opt_payload.is_none(), "{pkt:?}");
                assert_eq!(new_name[..n.lname_len], ref_name[..o.lname_len], "{pkt:?}");
                true
            }
            (n, _) => {
                let by = if n.is_some() {
                    "parse"
                } else {
                    "the reference"
                };
                panic!("accepted by {by} only: {pkt:?}")
            }
        }
    }

    /// The parser accepts exactly the packets the byte-by-byte parser it replaced
    /// accepted, and reads the same fields from them: every query the helpers build,
    /// then 250,000 random mutations of them (bytes flipped or set, counts changed,
    /// truncated, extended).
    #[test]
    fn parse_accepts_and_reads_exactly_what_the_reference_parse_does() {
        let bases = base_queries();
        let caps = [512u16, 1232, 4096];
        let mut accepted = 0;
        for pkt in &bases {
            for cap in caps {
                accepted += usize::from(parsers_agree(pkt, cap));
            }
        }
        assert!(accepted > bases.len(), "{accepted} of {}", bases.len() * 3);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..250_000 {
            let mut pkt = bases[rng.below(bases.len())].clone();
            for _ in 0..1 + rng.below(3) {
                match rng.below(7) {
                    0 if !pkt.is_empty() => {
                        let i = rng.below(pkt.len());
                        pkt[i] ^= 1 << rng.below(8);
                    }
                    1 if !pkt.is_empty() => {
                        let i = rng.below(pkt.len());
                        pkt[i] = [0, 1, 2, 8, 41, 63, 64, 0x80, 0xC0, 0xFF][rng.below(10)];
                    }
                    2 if !pkt.is_empty() => {
                        let i = rng.below(pkt.len());
                        pkt[i] = rng.next() as u8;
                    }
                    3 => pkt.truncate(rng.below(pkt.len() + 1)),
                    4 => pkt.extend((0..1 + rng.below(8)).map(|_| rng.next() as u8)),
                    5 if pkt.len() >= 12 => {
                        // A count, or the flags.
                        let i = 2 + 2 * rng.below(5);
                        pkt[i] = 0;
                        pkt[i + 1] = rng.below(3) as u8;
                    }
                    _ if pkt.len() > 12 => {
                        // A byte near the end: the OPT record and its option.
                        let back = 1 + rng.below(pkt.len().min(40) - 1);
                        let i = pkt.len() - back;
                        pkt[i] = pkt[i].wrapping_add(rng.below(3) as u8).wrapping_sub(1);
                    }
                    _ => {}
                }
            }
            if parsers_agree(&pkt, caps[rng.below(3)]) {
                yes += 1;
            } else {
                no += 1;
            }
        }
        // Both outcomes are well represented.
        assert!(yes > 20_000 && no > 20_000, "{yes} accepted, {no} rejected");
    }

    /// `write_opt` as it was before it copied the query's OPT record: the record built
    /// field by field, the ECS option from its body. Kept as the reference.
    fn built_opt(out: &mut Vec<u8>, q: &Query<'_>, b: &Body<'_>, ecs: Option<(&[u8], IpAddr)>) {
        let Some(payload) = q.opt_payload else {
            return;
        };
        let p = payload.to_be_bytes();
        let rdlen = ecs
            .map_or(0, |(body, _)| 4 + body.len() as u16)
            .to_be_bytes();
        let dnssec = if b.signed { 0x80 } else { 0 };
        out.extend_from_slice(&[0, 0, 41, p[0], p[1], 0, 0, dnssec, 0, rdlen[0], rdlen[1]]);
        if let Some((body, addr)) = ecs {
            // `ecs::check_option` let only a body of at least 4 bytes through.
            let len = (body.len() as u16).to_be_bytes();
            let scope = crate::dns::ecs::reply_scope(addr, body[2], b.scope);
            out.extend_from_slice(&[0, 8, len[0], len[1], body[0], body[1], body[2], scope]);
            out.extend_from_slice(&body[4..]);
        }
    }

    /// Bytes of the OPT record `built_opt` writes.
    fn built_opt_len(q: &Query<'_>, ecs: Option<(&[u8], IpAddr)>) -> usize {
        match (q.opt_payload, ecs) {
            (None, _) => 0,
            (Some(_), None) => 11,
            (Some(_), Some((body, _))) => 15 + body.len(),
        }
    }

    /// The OPT record patched from the query's is byte for byte the one the builder it
    /// replaced writes, and as long as `opt_len` says: without ECS and with ECS of both
    /// families, every source prefix (IPv4-mapped IPv6 too), query SCOPE, extended RCODE
    /// and flag bits set or not, payloads below, at and above the cap, DO on and off, and
    /// the scopes an answer can have.
    #[test]
    fn the_opt_record_patched_equals_the_one_built() {
        let mut bodies: Vec<Option<Vec<u8>>> = vec![None];
        for (family, max) in [(1u8, 32u8), (2, 128)] {
            for prefix in 0..=max {
                for scope in [0, 1, prefix, 255] {
                    bodies.push(Some(ecs_body(family, prefix, scope)));
                }
            }
        }
        // ::ffff:81.2.69.160 under every prefix that keeps it IPv4-mapped.
        let mapped = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 81, 2, 69, 160];
        for prefix in 96..=128u8 {
            let mut b = vec![0, 2, prefix, 0];
            b.extend_from_slice(&mapped[..usize::from(prefix).div_ceil(8)]);
            if !prefix.is_multiple_of(8) {
                *b.last_mut().unwrap() &= 0xFFu8 << (8 - prefix % 8);
            }
            bodies.push(Some(b));
        }
        let mut cases = 0;
        for body in &bodies {
            for payload in [0u16, 511, 512, 1232, 1400, 4096, 65535] {
                for dnssec in [false, true] {
                    // Extended RCODE and the flags' other bits, which the response clears.
                    for (ext, flags) in [(0u8, 0u8), (0xA5, 0x5A)] {
                        let mut pkt =
                            query("Www.Example.", 1, Some(payload), body.as_deref(), dnssec);
                        let opt_at = 12 + "Www.Example.".len() + 1 + 4;
                        pkt[opt_at + 5] = ext;
                        pkt[opt_at + 7] |= flags & 0x7F;
                        pkt[opt_at + 8] = flags;
                        let mut lname = [0u8; 255];
                        let q = parse(&pkt, 1232, &mut lname).expect("a fast-path query");
                        assert_eq!(q.opt, &pkt[opt_at..]);
                        let ecs = q.ecs.map(|b| (b, ecs_addr(&pkt, b)));
                        for signed in [false, true] {
                            for scope in [0u8, 1, 8, 16, 24, 27, 32, 48, 56, 64, 128] {
                                let b = Body {
                                    rcode: 0,
                                    answer: None,
                                    rrsigs: &[],
                                    negative: None,
                                    scope,
                                    signed,
                                };
                                // Behind other bytes, as in a response.
                                let mut patched = vec![7u8; 5];
                                let mut built = vec![7u8; 5];
                                write_opt(&mut patched, &q, &b, ecs);
                                built_opt(&mut built, &q, &b, ecs);
                                assert_eq!(patched, built, "{body:?} {payload} {signed} {scope}");
                                assert_eq!(opt_len(&q), built_opt_len(&q, ecs));
                                assert_eq!(patched.len(), 5 + opt_len(&q));
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, bodies.len() * 7 * 2 * 2 * 2 * 11);
        // Without OPT there is none to write.
        let pkt = query("Www.Example.", 1, None, None, false);
        let mut lname = [0u8; 255];
        let q = parse(&pkt, 1232, &mut lname).unwrap();
        let b = Body {
            rcode: 0,
            answer: None,
            rrsigs: &[],
            negative: None,
            scope: 0,
            signed: false,
        };
        let mut out = Vec::new();
        write_opt(&mut out, &q, &b, None);
        assert!(out.is_empty());
        assert_eq!(opt_len(&q), 0);
    }

    /// Two RRSIGs in signature-cache wire form, 30 and 12 bytes of RDATA.
    fn rrsigs() -> Vec<u8> {
        let mut w = Vec::new();
        for len in [30u16, 12] {
            w.extend_from_slice(&[0, 46, 0, 1, 0, 0, 0x0E, 0x10]);
            w.extend_from_slice(&len.to_be_bytes());
            w.extend((0..len).map(|i| i as u8 ^ 0x5A));
        }
        w
    }

    /// The direct encoder gives the general (hickory-compatible) encoder's bytes for every
    /// response it writes: names of 1 to 16 labels in mixed case, A, AAAA and ANY, 0 to
    /// 16 addresses of either family, RRSIGs, SERVFAIL, with and without OPT and ECS,
    /// and payloads small enough to truncate.
    #[test]
    fn answers_written_directly_equal_the_general_encoders_bytes() {
        let ecs4: &[u8] = &[0, 1, 24, 0, 198, 51, 100];
        let ecs6: &[u8] = &[0, 2, 56, 0, 0x20, 1, 0x0d, 0xb8, 1, 2, 3];
        let sigs = rrsigs();
        let names = [
            "a.".to_string(),
            "WwW.Example.COM.".to_string(),
            "gslb.svc.example.".to_string(),
            (0..16).map(|i| format!("L{i}.")).collect::<String>(),
            format!("{}.example.", "x".repeat(63)),
        ];
        let v4: Vec<IpAddr> = (0..16).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let v6: Vec<IpAddr> = (0..16u16)
            .map(|i| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]))
            .collect();
        let mut cases = 0;
        for name in &names {
            for qtype in [1u16, 28, 255] {
                for (payload, ecs) in [
                    (None, None),
                    (Some(512), None),
                    (Some(1232), Some(ecs4)),
                    (Some(4096), Some(ecs6)),
                    (Some(600), Some(ecs4)),
                ] {
                    for dnssec in [false, true] {
                        let pkt = query(name, qtype, payload, ecs, dnssec);
                        let mut lname = [0u8; 255];
                        let q = parse(&pkt, 1232, &mut lname).expect("a fast-path query");
                        let ecs = q.ecs.map(|b| (b, ecs_addr(&pkt, b)));
                        let addrs = if qtype == 28 { &v6 } else { &v4 };
                        for n in 0..=16 {
                            for (rcode, with_sigs) in [(0u8, false), (0, true), (2, false)] {
                                let body = Body {
                                    rcode,
                                    answer: (rcode == 0).then_some((&addrs[..n], 300)),
                                    // SERVFAIL has no answer RRset to sign.
                                    rrsigs: if with_sigs && rcode == 0 { &sigs } else { &[] },
                                    negative: None,
                                    scope: 20,
                                    signed: dnssec,
                                };
                                let owners = match (rcode, with_sigs) {
                                    (0, true) => n + 2,
                                    (0, false) => n,
                                    _ => 0,
                                };
                                let mut direct = Vec::new();
                                let mut general = Vec::new();
                                let d = encode_answer(&pkt, &q, &body, owners, ecs, &mut direct);
                                let g = encode_general(&pkt, &q, &body, owners, ecs, &mut general)
                                    .expect("no more candidates than kept");
                                assert_eq!(d, g, "{name} {qtype} {payload:?} {n}");
                                assert_eq!(direct, general, "{name} {qtype} {payload:?} {n}");
                                // Through `encode` (which picks the direct one), truncation too.
                                let mut out = Vec::new();
                                assert!(encode(&pkt, &q, &body, ecs, &mut out));
                                let limit = usize::from(rules::udp_limit(q.opt_payload));
                                assert!(out.len() <= limit || n == 0, "{} > {limit}", out.len());
                                if direct.len() > limit {
                                    assert_eq!(out[2] & 0x02, 0x02, "TC");
                                    assert_eq!(&out[6..10], &[0; 4]);
                                } else {
                                    assert_eq!(out, direct);
                                }
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 5 * 3 * 5 * 2 * 17 * 3);
    }

    /// Answer owners are the 2-byte pointer to the question name at offset 12.
    #[test]
    fn answer_owners_point_at_the_question() {
        let pkt = query("Www.Example.", 1, None, None, false);
        let mut lname = [0u8; 255];
        let q = parse(&pkt, 1232, &mut lname).unwrap();
        let addrs = [IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2])];
        let body = Body {
            rcode: 0,
            answer: Some((&addrs, 60)),
            rrsigs: &[],
            negative: None,
            scope: 0,
            signed: false,
        };
        let mut out = Vec::new();
        assert!(encode(&pkt, &q, &body, None, &mut out));
        let first = 12 + q.question.len();
        assert_eq!(&out[first..first + 2], &[0xC0, 12]);
        assert_eq!(&out[first + 16..first + 18], &[0xC0, 12]);
        assert_eq!(out.len(), first + 32);
        assert_eq!(&out[12..first], q.question);
    }

    /// The lower-cased name is the wire form with only the letters A-Z changed: length
    /// bytes (here every length 1 to 63, and names up to 255 bytes) are kept.
    #[test]
    fn the_name_is_lower_cased_whole_and_only_its_letters_change() {
        let mut lname = [0u8; 255];
        for len in 1..=63usize {
            let label: String = (0..len).map(|i| (b"AzQ@[`_9-"[i % 9]) as char).collect();
            let name = format!("{label}.Ex{len}.");
            let pkt = query(&name, 1, None, None, false);
            let q = parse(&pkt, 1232, &mut lname).unwrap();
            assert_eq!(&lname[..q.lname_len], &wire(&name)[..], "{name}");
            assert_eq!(q.qname, &pkt[12..12 + q.lname_len]);
        }
        // 255 bytes: three labels of 63, one of 61, the root.
        let long = format!("{a}.{a}.{a}.{b}.", a = "A".repeat(63), b = "B".repeat(61));
        let pkt = query(&long, 1, None, None, false);
        let q = parse(&pkt, 1232, &mut lname).unwrap();
        assert_eq!(q.lname_len, 255);
        assert_eq!(&lname[..255], &wire(&long)[..]);
        let longer = format!("{a}.{a}.{a}.{b}.", a = "A".repeat(63), b = "B".repeat(62));
        assert!(parse(&query(&longer, 1, None, None, false), 1232, &mut lname).is_none());
    }

    /// A question name of more labels than the encoder keeps candidates for is the
    /// ordinary path's, wherever it would be answered.
    #[test]
    fn names_of_more_than_sixteen_labels_fall_back() {
        let sixteen: String = (0..16).map(|i| format!("l{i}.")).collect();
        let mut lname = [0u8; 255];
        assert!(parse(&query(&sixteen, 1, None, None, false), 1232, &mut lname).is_some());
        let seventeen = format!("x.{sixteen}");
        assert!(parse(&query(&seventeen, 1, None, None, false), 1232, &mut lname).is_none());
    }
}
