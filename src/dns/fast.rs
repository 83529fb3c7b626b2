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

use hickory_server::proto::rr::{Name, RData};

use super::rules;
use crate::geo::{GeoLookup, locate};
use crate::metrics::{Metrics, Proto};
use crate::model::{ClientSource, Decision, Fx, Model, Outcome, client_address, health_epoch};
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
    qtype: u16,
    /// Response OPT payload when the query had OPT.
    opt_payload: Option<u16>,
    /// The ECS option body, when present.
    ecs: Option<&'p [u8]>,
    /// The OPT record's DO bit (RFC 3225).
    dnssec_ok: bool,
}

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Parses a fast-path query; the lower-case name goes to `lname` (the caller's, so the
/// returned query is small to move).
fn parse<'p>(pkt: &'p [u8], cap: u16, lname: &mut [u8; 255]) -> Option<Query<'p>> {
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
    let mut ln = 0;
    let mut at = 12;
    loop {
        let l = usize::from(*pkt.get(at)?);
        if l == 0 {
            lname[ln] = 0;
            ln += 1;
            at += 1;
            break;
        }
        if l > 63 || ln + l + 2 > 255 {
            return None;
        }
        let label = pkt.get(at + 1..at + 1 + l)?;
        lname[ln] = l as u8;
        for (d, s) in lname[ln + 1..ln + 1 + l].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        ln += 1 + l;
        at += 1 + l;
    }
    let qname = &pkt[12..at];
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
        qtype,
        opt_payload: None,
        ecs: None,
        dnssec_ok: false,
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
        if code != 8 || q.ecs.is_some() || super::ecs::check_option(body).is_err() {
            return None;
        }
        q.ecs = Some(body);
        o += 4 + len;
    }
    q.opt_payload = Some(rules::response_payload(payload, cap));
    Some(q)
}

fn ecs_addr(body: &[u8]) -> IpAddr {
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
    let mut lname = [0u8; 255];
    let Some(q) = parse(pkt, snap.model.server.live.max_udp_payload, &mut lname) else {
        return Fast::Fallback;
    };
    let lname = &lname[..q.lname_len];
    let ecs = q.ecs.map(|b| (b, ecs_addr(b)));
    let mut lookup = GeoLookup::Skipped;
    let mut service = None;
    let mut per_source = false;
    // Routed in place and then only borrowed: see `route_into`.
    let mut decided = Decision::default();
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
            let admin = snap.admin.load();
            memo.route_into(&snap.model, *sid, family, &loc, &Live(&admin), &mut decided);
            let zi = snap.model.services[usize::from(*sid)].zone;
            owner = Some((*o, zi));
            (&snap.fast.zones[zi], Some(&decided))
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
    out.clear();
    let mut w = Writer::new(out);
    // Header: ID, QR AA, RD and CD echoed (RFC 1035 4.1.1; RFC 4035 3.2.2).
    w.out.extend_from_slice(&pkt[..2]);
    w.out.push(0x84 | (pkt[2] & 0x01));
    w.out.push((pkt[3] & 0x10) | rcode);
    let answers = match &decision {
        Some(d) if d.outcome == Outcome::Answer => (d.addrs.len() + sig_count(rrsigs)) as u16,
        _ => 0,
    };
    let negative = decision
        .as_ref()
        .is_none_or(|d| d.outcome == Outcome::NoData);
    w.u16(1);
    w.u16(answers);
    w.u16(u16::from(negative));
    w.u16(u16::from(q.opt_payload.is_some()));
    // The question name is written as any other name, so its suffixes are compression
    // candidates and every answer owner becomes a pointer to it (hickory's `Query::emit`
    // in `super::encode` does the same).
    w.name(q.qname);
    w.u16(q.qtype);
    w.u16(rules::CLASS_IN);
    let question_end = w.out.len();

    if let Some(d) = decision.as_ref().filter(|d| d.outcome == Outcome::Answer) {
        for a in d.addrs.as_slice() {
            w.name(q.qname);
            match a {
                IpAddr::V4(v4) => {
                    w.u16(1);
                    w.u16(1);
                    w.u32(d.ttl);
                    w.u16(4);
                    w.out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    w.u16(28);
                    w.u16(1);
                    w.u32(d.ttl);
                    w.u16(16);
                    w.out.extend_from_slice(&v6.octets());
                }
            }
        }
        // Each RRSIG owned by the same spelling as the RRset (`signed::sign_sections`).
        let mut rest = rrsigs;
        while !rest.is_empty() {
            let len = sig_len(rest);
            w.name(q.qname);
            w.out.extend_from_slice(&rest[..len]);
            rest = &rest[len..];
        }
    }
    if negative {
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
    let opt_at = w.out.len();
    if let Some(payload) = q.opt_payload {
        w.name(&[0]);
        w.u16(41);
        w.u16(payload);
        // Extended RCODE 0, version 0, DO when this is a signed answer.
        w.u32(if signed { 0x8000 } else { 0 });
        match ecs {
            Some((body, addr)) => {
                w.u16(4 + body.len() as u16);
                w.u16(8);
                w.u16(body.len() as u16);
                w.out.extend_from_slice(&body[..3]);
                w.out.push(super::ecs::reply_scope(addr, body[2], scope));
                w.out.extend_from_slice(&body[4..]);
            }
            None => w.u16(0),
        }
    }
    if w.overflow {
        // Too many names to compress here: the ordinary path does it as hickory does.
        return Fast::Fallback;
    }
    if out.len() > usize::from(rules::udp_limit(q.opt_payload)) {
        // RFC 6891 7, as `super::encode` does: header, question, OPT, and TC.
        out.copy_within(opt_at.., question_end);
        out.truncate(out.len() - (opt_at - question_end));
        out[2] |= 0x02;
        out[6..10].fill(0);
    }
    let answer = match (service, &decision) {
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
