//! The DNS front end: our own receive loops, our answer code, hickory for decoding and
//! for encoding records.
//!
//! ```text
//!  UDP socket(s), one thread each: udp.rs (recvmmsg/sendmmsg batches, mmsg.rs)
//!   │  rules::unanswerable: < 12 bytes or QR=1 ─► no reply (counted, malformed.rs)
//!   ├─► cache.rs   AnswerCache: same bytes after the ID ─► stored reply, ID patched
//!   ├─► fast.rs    fast::answer: one IN question for a GSLB name or a missing name,
//!   │              optional OPT with at most ECS ─► parsed and written in place
//!   └─► Handler::ordinary_udp (everything else) ─┐
//!  TCP listener: tcp.rs (own accept loop, ───────┤
//!   idle timeout, connection cap)                ▼
//!                        Handler::ordinary: ecs::check_opt (bad options ─► FORMERR),
//!                        hickory Request::from_bytes (undecodable ─► FORMERR),
//!                        Handler::answer (synchronous, no locks):
//!     opcode != QUERY ─► NOTIMP            RFC 1035 4.1.1      ┐ rules.rs: the same
//!     EDNS version > 0 ─► BADVERS          RFC 6891 6.1.3      │ functions decide for
//!     qdcount != 1, bad ECS ─► FORMERR     RFC 9619, 7871 6    │ the fast path
//!     class != IN, AXFR/IXFR ─► REFUSED    RFC 6895 3.2        ┘
//!     name outside our zones ─► REFUSED
//!     zone lookup: CNAME chain (RFC 1034 4.3.2), GSLB route, NODATA / NXDOMAIN + SOA
//!     (RFC 2308), ANY answered minimally (RFC 8482) and at an alias with the CNAME
//!     alone, glue for apex NS
//!                                      ▼
//!                        encode: AA, owners compressed to the question, OPT with
//!                        payload and ECS scope; over UDP a reply that does not fit is
//!                        header + question + OPT with TC (RFC 6891 7, RFC 1035 4.2.1)
//! ```
//!
//! The client's address comes from [`crate::model::client_address`] on every path
//! (explain too). hickory's `Server` and `RequestHandler` are not used: both transports
//! call [`Handler::ordinary`] synchronously, and [`encode`] is the one place where the
//! ordinary path's responses become bytes (the fast path writes its own, checked byte
//! for byte against it by the differential test).

pub mod cache;
pub mod ecs;
pub mod fast;
pub mod listen;
pub mod malformed;
#[cfg(target_os = "linux")]
mod mmsg;
pub mod rules;
pub mod signed;
pub mod tcp;
pub mod udp;
pub mod zones;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::ProtoError;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, LowerQuery, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::Request;

use crate::geo::locate;
use crate::metrics::{Metrics, Proto};
use crate::model::{ClientLocation, ClientSource, Outcome, client_address};
use crate::route::{Live, route};
use crate::snapshot::{Shared, Snapshot};
use malformed::{Malformed, Reporter};

/// Longest CNAME chain followed inside our zones.
const MAX_CHAIN: usize = 8;

/// Answers queries from the current snapshot.
#[derive(Clone)]
pub struct Handler {
    shared: Shared,
    metrics: Arc<Metrics>,
    malformed: Arc<Reporter>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// A response under construction; records are borrowed from the snapshot where they can be.
pub struct Reply<'s> {
    /// Header of the response.
    pub meta: Metadata,
    /// ANSWER section.
    pub answers: Vec<Cow<'s, Record>>,
    /// SOA for AUTHORITY of negative answers.
    pub soa: Option<&'s Record>,
    /// AUTHORITY after the SOA: its RRSIGs and the NSEC proof, for DO queries in signed
    /// zones ([`signed::sign_reply`]); sent whole or not at all, like the SOA.
    pub authority: Vec<Cow<'s, Record>>,
    /// The name a negative answer (NXDOMAIN or NODATA) is about, for its denial proof.
    pub negative: Option<Name>,
    /// ADDITIONAL section.
    pub additionals: Vec<Cow<'s, Record>>,
    /// ECS scope to return.
    pub scope: u8,
    /// Why the query was answered FORMERR, for `geode_dns_malformed_total`.
    pub malformed: Option<Malformed>,
    /// (service, region) counted in `geode_dns_answers_total` for this reply.
    pub answered: Option<(u16, u16)>,
}

/// The client as the query identifies it; located only when a GSLB name needs it.
struct Client {
    ip: IpAddr,
    source: ClientSource,
    located: Option<ClientLocation>,
}

impl Handler {
    /// A handler over a shared snapshot.
    pub fn new(shared: Shared, metrics: Arc<Metrics>) -> Handler {
        Handler {
            shared,
            metrics,
            malformed: Arc::new(Reporter::default()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.load_full()
    }

    /// Counts (and, at a bounded rate, logs) one malformed message.
    pub fn report(&self, why: Malformed) {
        self.malformed.report(&self.metrics, why);
    }

    fn client(&self, request: &Request) -> (Client, Option<ClientSubnet>) {
        let ecs = request
            .edns
            .as_ref()
            .and_then(|e| match e.option(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(cs)) => Some(*cs),
                _ => None,
            });
        let (ip, source) = client_address(
            ecs.map(|cs| (cs.addr(), cs.source_prefix())),
            request.src().ip(),
        );
        let client = Client {
            ip,
            source,
            located: None,
        };
        (client, ecs)
    }

    /// Builds the reply for a decoded request. Synchronous and lock-free: one snapshot
    /// load, hash lookups, the pure router.
    pub fn answer<'s>(
        &self,
        snap: &'s Snapshot,
        request: &Request,
        client: &mut (impl ClientLocator + ?Sized),
    ) -> Reply<'s> {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = false;
        let mut reply = Reply {
            meta,
            answers: Vec::new(),
            soa: None,
            authority: Vec::new(),
            negative: None,
            additionals: Vec::new(),
            scope: 0,
            malformed: None,
            answered: None,
        };
        let fail = |mut r: Reply<'s>, rc: u16| {
            r.meta.response_code = <ResponseCode as From<u16>>::from(rc);
            r
        };
        let queries = request.queries.queries();
        let version = request.edns.as_ref().map(|e| e.version());
        if let Some(rc) =
            rules::header_rcode(u8::from(request.metadata.op_code), version, queries.len())
        {
            if rc == rules::rcode::FORMERR {
                reply.malformed = Some(Malformed::QuestionCount);
            }
            return fail(reply, rc);
        }
        if ecs::check(request.as_slice()).is_err() {
            reply.malformed = Some(Malformed::Ecs);
            return fail(reply, rules::rcode::FORMERR);
        }
        let query = &queries[0];
        let qtype = query.query_type();
        if let Some(rc) = rules::question_rcode(u16::from(query.query_class()), u16::from(qtype)) {
            return fail(reply, rc);
        }
        if snap.zones.find(query.name()).is_none() {
            return fail(reply, rules::rcode::REFUSED);
        }
        reply.meta.authoritative = true;

        let mut name: LowerName = query.name().clone();
        let mut owner: Name = query.original().name().clone();
        for _ in 0..MAX_CHAIN {
            let Some(zone) = snap.zones.find(&name) else {
                // The chain left our zones; the resolver follows it from here.
                return reply;
            };
            let Some(node) = zone.nodes.get(&name) else {
                reply.soa = Some(&zone.negative_soa);
                reply.negative = Some(Name::from(&name));
                return fail(reply, rules::rcode::NXDOMAIN);
            };
            if let Some(sid) = node.service
                && let Some(family) = rules::gslb_family(u16::from(qtype))
            {
                let loc = client.locate(snap);
                let d = route(&snap.model, sid, family, &loc, &Live(&snap.admin.load()));
                reply.scope = d.scope;
                match d.outcome {
                    Outcome::Answer => {
                        for a in d.addrs.as_slice() {
                            let data = match a {
                                IpAddr::V4(v4) => RData::A(A(*v4)),
                                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                            };
                            reply.answers.push(Cow::Owned(Record::from_rdata(
                                owner.clone(),
                                d.ttl,
                                data,
                            )));
                        }
                        if let Some(r) = d.region {
                            snap.answer_counters[usize::from(sid)][usize::from(r)].inc();
                            reply.answered = Some((sid, r));
                        }
                    }
                    Outcome::NoData => {
                        reply.soa = Some(&zone.negative_soa);
                        reply.negative = Some(Name::from(&name));
                    }
                    Outcome::ServFail => return fail(reply, rules::rcode::SERVFAIL),
                }
                return reply;
            }
            // RFC 1034 4.3.2: the chain is followed for every type but CNAME itself and
            // ANY, which the CNAME record alone answers (as Knot and NSD do).
            if let Some(cname) = node.cname()
                && !matches!(qtype, RecordType::CNAME | RecordType::ANY)
            {
                reply.answers.push(Cow::Borrowed(cname));
                if let RData::CNAME(target) = &cname.data {
                    owner = target.0.clone();
                    name = LowerName::from(&target.0);
                    continue;
                }
            }
            let rrset = if qtype == RecordType::ANY {
                // RFC 8482: one RRset is a sufficient answer to ANY.
                node.rrsets.first().map(|(_, v)| v.as_slice())
            } else {
                node.rrset(qtype)
            };
            match rrset {
                Some(records) => {
                    reply.answers.extend(records.iter().map(Cow::Borrowed));
                    if qtype == RecordType::NS && name == zone.origin {
                        reply
                            .additionals
                            .extend(zone.glue.iter().map(Cow::Borrowed));
                    }
                }
                None => {
                    reply.soa = Some(&zone.negative_soa);
                    reply.negative = Some(Name::from(&name));
                }
            }
            return reply;
        }
        // A CNAME loop or an over-long chain inside our own zones.
        fail(reply, rules::rcode::SERVFAIL)
    }
}

/// Locates the client once per query, when a GSLB name needs it.
pub trait ClientLocator {
    /// The client's location in this snapshot.
    fn locate(&mut self, snap: &Snapshot) -> ClientLocation;
}

struct CountingLocator<'m> {
    client: Client,
    metrics: &'m Metrics,
    lookup: crate::geo::GeoLookup,
}

impl ClientLocator for CountingLocator<'_> {
    fn locate(&mut self, snap: &Snapshot) -> ClientLocation {
        if let Some(l) = self.client.located {
            return l;
        }
        let (loc, lookup) = locate(
            &snap.model,
            snap.geo.as_deref(),
            self.client.ip,
            self.client.source,
        );
        lookup.count(self.metrics);
        self.lookup = lookup;
        self.client.located = Some(loc);
        loc
    }
}

impl Handler {
    /// Answers a decoded request: the reply and the response OPT (when the query had one).
    /// Counts the query in `geode_dns_queries_total` (and a FORMERR for malformed input
    /// in `geode_dns_malformed_total`).
    pub fn prepare<'s>(&self, snap: &'s Snapshot, request: &Request) -> (Reply<'s>, Option<Edns>) {
        let (reply, edns, _) = self.prepare_tallied(snap, request);
        (reply, edns)
    }

    /// [`Handler::prepare`], plus the reply's tally when it is a signed answer the UDP
    /// answer cache may keep: a DO query in a signed zone answered NOERROR or NXDOMAIN.
    /// Such a reply is a function of the query bytes after the ID, the snapshot, health,
    /// the validity slot and (without usable ECS) the source address, as a fast-path
    /// reply is.
    fn prepare_tallied<'s>(
        &self,
        snap: &'s Snapshot,
        request: &Request,
    ) -> (Reply<'s>, Option<Edns>, Option<fast::Tally>) {
        let (client, ecs) = self.client(request);
        let per_source = client.source == ClientSource::Resolver;
        let mut locator = CountingLocator {
            client,
            metrics: &self.metrics,
            lookup: crate::geo::GeoLookup::Skipped,
        };
        let mut reply = self.answer(snap, request, &mut locator);
        // RFC 4035 3.1: DNSSEC records only for a query with DO, in a signed zone; RFC 3225
        // 3: DO is copied into the response then.
        let dnssec = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
            && reply.meta.authoritative
            && request
                .queries
                .queries()
                .first()
                .and_then(|q| signed::signed_zone(&snap.zones, q.name()))
                .is_some();
        if dnssec {
            let qtype = request.queries.queries()[0].query_type();
            signed::sign_reply(&snap.zones, &mut reply, qtype, crate::dnssec::now());
        }

        // OPT only when the query had one (RFC 6891 7); payload capped so UDP answers
        // stay below fragmentation size; ECS echoed with the scope the answer used.
        let resp_edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            let cap = snap.model.server.live.max_udp_payload;
            e.set_max_payload(rules::response_payload(req.max_payload(), cap))
                .set_version(0)
                .set_dnssec_ok(dnssec);
            if let (Some(mut cs), false) = (ecs, reply.meta.response_code == ResponseCode::FormErr)
            {
                cs.set_scope_prefix(ecs::reply_scope(cs.addr(), cs.source_prefix(), reply.scope));
                e.options_mut().insert(EdnsOption::Subnet(cs));
            }
            e
        });
        let qtype = request
            .queries
            .queries()
            .first()
            .map_or(u16::MAX, |q| u16::from(q.query_type()));
        let proto = if request.protocol() == Protocol::Udp {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let rcode = u16::from(reply.meta.response_code);
        self.metrics
            .query(proto, rules::qtype_label(qtype), rules::rcode_label(rcode));
        if let Some(why) = reply.malformed {
            self.report(why);
        }
        let tally = (dnssec
            && matches!(rcode, rules::rcode::NOERROR | rules::rcode::NXDOMAIN)
            && reply.malformed.is_none())
        .then(|| {
            fast::Tally::of_ordinary(
                rules::qtype_label(qtype),
                rules::rcode_label(rcode),
                locator.lookup,
                reply.answered,
                per_source,
            )
        });
        (reply, resp_edns, tally)
    }

    /// The ordinary path, synchronously, for UDP and TCP alike: checks the OPT record,
    /// decodes with hickory, answers, and [`encode`]s within the transport's size (512 or
    /// the response OPT's payload over UDP, 65535 over TCP). False means no reply at all.
    pub fn ordinary(
        &self,
        snap: &Snapshot,
        packet: &[u8],
        src: SocketAddr,
        proto: Proto,
        out: &mut Vec<u8>,
    ) -> bool {
        self.ordinary_tallied(snap, packet, src, proto, out).0
    }

    /// [`Handler::ordinary`], plus the tally of a reply the answer cache may keep (see
    /// [`Handler::prepare_tallied`]); none when the reply was truncated or failed.
    fn ordinary_tallied(
        &self,
        snap: &Snapshot,
        packet: &[u8],
        src: SocketAddr,
        proto: Proto,
        out: &mut Vec<u8>,
    ) -> (bool, Option<fast::Tally>) {
        out.clear();
        if let Some(why) = rules::unanswerable(packet) {
            self.report(why);
            return (false, None);
        }
        let formerr = |why: Malformed, out: &mut Vec<u8>| {
            out.extend_from_slice(&formerr(packet));
            self.report(why);
            self.metrics.query(
                proto,
                rules::qtype_label(u16::MAX),
                rules::rcode_label(rules::rcode::FORMERR),
            );
            true
        };
        // Before hickory sees the options: it would log a WARN line per message.
        if ecs::check_opt(packet) == Err(ecs::OptError::Options) {
            return (formerr(Malformed::EdnsOption, out), None);
        }
        let protocol = match proto {
            Proto::Udp => Protocol::Udp,
            Proto::Tcp => Protocol::Tcp,
        };
        let Ok(request) = Request::from_bytes(packet.to_vec(), src, protocol) else {
            return (formerr(Malformed::Undecodable, out), None);
        };
        let (reply, resp_edns, mut tally) = self.prepare_tallied(snap, &request);
        let limit = match proto {
            Proto::Udp => rules::udp_limit(resp_edns.as_ref().map(|e| e.max_payload())),
            Proto::Tcp => u16::MAX,
        };
        if encode(
            &reply,
            request.queries.queries(),
            resp_edns.as_ref(),
            limit,
            out,
        )
        .is_err()
        {
            tally = None;
            out.clear();
            let mut m = Metadata::response_from_request(&request.metadata);
            m.response_code = ResponseCode::ServFail;
            let mut enc = BinEncoder::new(out);
            let _ = Header {
                metadata: m,
                counts: HeaderCounts::default(),
            }
            .emit(&mut enc);
        }
        if out.get(2).is_some_and(|f| f & 0x02 != 0) {
            tally = None; // TC: the client retries over TCP; not worth keeping
        }
        (true, tally)
    }

    /// [`Handler::ordinary_udp`], plus the tally of a reply the UDP answer cache may keep
    /// (a signed answer; see `Handler::prepare_tallied`).
    pub fn ordinary_udp_tallied(
        &self,
        snap: &Snapshot,
        packet: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
    ) -> (bool, Option<fast::Tally>) {
        self.ordinary_tallied(snap, packet, src, Proto::Udp, out)
    }

    /// [`Handler::ordinary`] for a UDP datagram.
    pub fn ordinary_udp(
        &self,
        snap: &Snapshot,
        packet: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        self.ordinary(snap, packet, src, Proto::Udp, out)
    }
}

/// A bare FORMERR for a message whose header decoded but whose body did not: ID and
/// opcode copied, QR set, no sections (RFC 1035 4.1.1).
pub fn formerr(query: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[0] = query[0];
    h[1] = query[1];
    h[2] = 0x80 | (query[2] & 0x78) | (query[2] & 0x01);
    h[3] = 0x01;
    h
}

/// Encodes a reply to `queries`: the one place where the ordinary path (UDP and TCP)
/// turns an answer into bytes, so anything added to every response (signatures, say)
/// goes here.
///
/// - The question is written with hickory's name compression, so every later owner
///   equal to the question name (or a suffix of it) is a 2-byte pointer (RFC 1035 4.1.4).
/// - The OPT record always fits (RFC 6891 7): its bytes are reserved before the records.
/// - ANSWER or AUTHORITY records that do not fit in `limit`: the reply is the header,
///   the question and the OPT record, with TC set, nothing of the records (as Knot
///   does); clients retry over TCP. ADDITIONAL records that do not fit are left out
///   without TC (RFC 2181 9).
pub fn encode(
    reply: &Reply<'_>,
    queries: &[LowerQuery],
    edns: Option<&Edns>,
    limit: u16,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    out.clear();
    let mut opt = Vec::new();
    if let Some(e) = edns {
        let mut e = e.clone();
        e.set_rcode_high(reply.meta.response_code.high());
        e.emit(&mut BinEncoder::new(&mut opt))?;
    }
    let mut counts = HeaderCounts {
        queries: queries.len() as u16,
        ..HeaderCounts::default()
    };
    let mut truncated = false;
    {
        let mut enc = BinEncoder::new(out);
        Header {
            metadata: reply.meta,
            counts,
        }
        .emit(&mut enc)?;
        for q in queries {
            q.original().emit(&mut enc)?;
        }
        let question_end = enc.offset();
        enc.set_max_size(limit.saturating_sub(opt.len() as u16));
        for r in &reply.answers {
            if !fits(&mut enc, r)? {
                truncated = true;
                break;
            }
            counts.answers += 1;
        }
        if let (Some(soa), false) = (reply.soa, truncated) {
            if fits(&mut enc, soa)? {
                counts.authorities = 1;
            } else {
                truncated = true;
            }
        }
        if !truncated {
            for r in &reply.authority {
                if !fits(&mut enc, r)? {
                    truncated = true;
                    break;
                }
                counts.authorities += 1;
            }
        }
        if truncated {
            enc.set_offset(question_end);
            enc.trim();
            counts.answers = 0;
            counts.authorities = 0;
        } else {
            for r in &reply.additionals {
                if !fits(&mut enc, r)? {
                    break;
                }
                counts.additionals += 1;
            }
        }
        enc.set_max_size(limit);
        if !opt.is_empty() {
            enc.emit_vec(&opt)?;
            counts.additionals += 1;
        }
    }
    if truncated {
        out[2] |= 0x02;
    }
    for (i, c) in [
        counts.queries,
        counts.answers,
        counts.authorities,
        counts.additionals,
    ]
    .into_iter()
    .enumerate()
    {
        out[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
    Ok(())
}

/// Writes one record if it fits; if not, leaves the message as it was before it.
fn fits(enc: &mut BinEncoder<'_>, record: &Record) -> Result<bool, ProtoError> {
    let at = enc.offset();
    match record.emit(enc) {
        Ok(()) => Ok(true),
        Err(ProtoError::MaxBufferSizeExceeded(_)) => {
            enc.set_offset(at);
            enc.trim();
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
