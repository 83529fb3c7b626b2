//! The DNS front end: hickory-server decodes, this module answers.
//!
//! ```text
//!   UDP socket(s) ──► hickory Server ─┐           (drops < 12 bytes and QR=1,
//!   TCP listener ──► tcp::serve ──────┤            FORMERR on undecodable input)
//!                                     ▼
//!                      Handler::answer (synchronous, no locks)
//!     opcode != QUERY ─► NOTIMP            RFC 1035 4.1.1
//!     EDNS version > 0 ─► BADVERS          RFC 6891 6.1.3
//!     qdcount != 1, bad ECS ─► FORMERR     RFC 7871 6
//!     name outside our zones ─► REFUSED
//!     zone lookup: CNAME chain (RFC 1034 4.3.2), GSLB route, NODATA / NXDOMAIN + SOA
//!     (RFC 2308), ANY answered minimally (RFC 8482), glue for apex NS
//!                                     ▼
//!     MessageResponseBuilder: AA, OPT with payload and ECS scope, TC when a UDP
//!     answer does not fit (RFC 6891 7, RFC 1035 4.2.1)
//! ```

pub mod cache;
pub mod ecs;
pub mod fast;
pub mod listen;
#[cfg(target_os = "linux")]
mod mmsg;
pub mod tcp;
pub mod udp;
pub mod zones;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::geo::locate;
use crate::metrics::{Metrics, Proto, qtype_index, rcode_index};
use crate::model::{ClientLocation, ClientSource, Family, Outcome};
use crate::route::{Live, route};
use crate::snapshot::{Shared, Snapshot};

/// Longest CNAME chain followed inside our zones.
const MAX_CHAIN: usize = 8;

/// Answers queries from the current snapshot.
#[derive(Clone)]
pub struct Handler {
    shared: Shared,
    metrics: Arc<Metrics>,
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
    /// ADDITIONAL section.
    pub additionals: Vec<Cow<'s, Record>>,
    /// ECS scope to return.
    pub scope: u8,
}

/// The client as the query identifies it; located only when a GSLB name needs it.
struct Client {
    ip: IpAddr,
    source: ClientSource,
    located: Option<ClientLocation>,
}

fn rcode_name(rc: ResponseCode) -> &'static str {
    match rc {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::BADVERS => "BADVERS",
        _ => "other",
    }
}

impl Handler {
    /// A handler over a shared snapshot.
    pub fn new(shared: Shared, metrics: Arc<Metrics>) -> Handler {
        Handler { shared, metrics }
    }

    fn client(&self, request: &Request) -> (Client, Option<ClientSubnet>) {
        let ecs = request
            .edns
            .as_ref()
            .and_then(|e| match e.option(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(cs)) => Some(*cs),
                _ => None,
            });
        let client = match ecs {
            Some(cs) if !ecs::unusable(cs.addr(), cs.source_prefix()) => Client {
                ip: crate::geo::canonical_ip(cs.addr()),
                source: ClientSource::Ecs {
                    source_prefix: cs.source_prefix(),
                },
                located: None,
            },
            _ => Client {
                ip: request.src().ip(),
                source: ClientSource::Resolver,
                located: None,
            },
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
            additionals: Vec::new(),
            scope: 0,
        };
        let fail = |mut r: Reply<'s>, rc: ResponseCode| {
            r.meta.response_code = rc;
            r
        };
        if request.metadata.op_code != OpCode::Query {
            return fail(reply, ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return fail(reply, ResponseCode::BADVERS);
        }
        let queries = request.queries.queries();
        if queries.len() != 1 {
            return fail(reply, ResponseCode::FormErr);
        }
        if ecs::check(request.as_slice()).is_err() {
            return fail(reply, ResponseCode::FormErr);
        }
        let query = &queries[0];
        let qtype = query.query_type();
        if !matches!(query.query_class(), DNSClass::IN) {
            return fail(reply, ResponseCode::Refused);
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // Zone transfer is not offered: every geode instance reads the same config.
            return fail(reply, ResponseCode::Refused);
        }
        if snap.zones.find(query.name()).is_none() {
            return fail(reply, ResponseCode::Refused);
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
                return fail(reply, ResponseCode::NXDomain);
            };
            if let Some(sid) = node.service {
                let family = match qtype {
                    RecordType::A | RecordType::ANY => Some(Family::V4),
                    RecordType::AAAA => Some(Family::V6),
                    _ => None,
                };
                if let Some(family) = family {
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
                            }
                        }
                        Outcome::NoData => reply.soa = Some(&zone.negative_soa),
                        Outcome::ServFail => return fail(reply, ResponseCode::ServFail),
                    }
                    return reply;
                }
            }
            if let Some(cname) = node.cname()
                && qtype != RecordType::CNAME
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
                None => reply.soa = Some(&zone.negative_soa),
            }
            return reply;
        }
        // A CNAME loop or an over-long chain inside our own zones.
        fail(reply, ResponseCode::ServFail)
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
        self.client.located = Some(loc);
        loc
    }
}

impl Handler {
    /// Answers a decoded request: the reply and the response OPT (when the query had one).
    pub fn prepare<'s>(&self, snap: &'s Snapshot, request: &Request) -> (Reply<'s>, Option<Edns>) {
        let (client, ecs) = self.client(request);
        let mut locator = CountingLocator {
            client,
            metrics: &self.metrics,
        };
        let reply = self.answer(snap, request, &mut locator);

        // OPT only when the query had one (RFC 6891 7); payload capped so UDP answers
        // stay below fragmentation size; ECS echoed with the scope the answer used.
        let resp_edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            let cap = snap.model.server.max_udp_payload;
            e.set_max_payload(req.max_payload().max(512).min(cap))
                .set_version(0);
            if let (Some(mut cs), false) = (ecs, reply.meta.response_code == ResponseCode::FormErr)
            {
                cs.set_scope_prefix(ecs::reply_scope(cs.addr(), reply.scope));
                e.options_mut().insert(EdnsOption::Subnet(cs));
            }
            e
        });
        let qtype = request.queries.queries().first().map_or("other", |q| {
            let t = q.query_type();
            if t == RecordType::ANY {
                "ANY"
            } else {
                t.into()
            }
        });
        let proto = if request.protocol() == Protocol::Udp {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        self.metrics.query(
            proto,
            qtype_index(qtype),
            rcode_index(rcode_name(reply.meta.response_code)),
        );
        (reply, resp_edns)
    }

    /// The ordinary UDP path, synchronously: decode with hickory, answer, encode with
    /// hickory's size limit (TC when it does not fit). `None` means no reply at all.
    pub fn ordinary_udp(
        &self,
        snap: &Snapshot,
        packet: &[u8],
        src: std::net::SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        if packet.len() < 12 || packet[2] & 0x80 != 0 {
            return false;
        }
        let request = match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
            Ok(r) => r,
            Err(_) => {
                out.extend_from_slice(&tcp::formerr(packet));
                self.metrics
                    .query(Proto::Udp, qtype_index("other"), rcode_index("FORMERR"));
                return true;
            }
        };
        if request.metadata.message_type == hickory_server::proto::op::MessageType::Response {
            return false;
        }
        let (reply, resp_edns) = self.prepare(snap, &request);
        let builder = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref());
        let response = builder.build(
            reply.meta,
            reply.answers.iter().map(|c| c.as_ref()),
            std::iter::empty(),
            reply.soa,
            reply.additionals.iter().map(|c| c.as_ref()),
        );
        let mut enc = BinEncoder::new(out);
        // RFC 1035 4.2.1: 512 without EDNS; else what the response OPT advertises.
        enc.set_max_size(resp_edns.as_ref().map_or(512, |e| e.max_payload()));
        if response.destructive_emit(&mut enc).is_err() {
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
        true
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let snap = self.shared.load();
        let (reply, resp_edns) = self.prepare(&snap, request);
        let builder = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref());
        let response = builder.build(
            reply.meta,
            reply.answers.iter().map(|c| c.as_ref()),
            std::iter::empty(),
            reply.soa,
            reply.additionals.iter().map(|c| c.as_ref()),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => {
                let mut m = Metadata::response_from_request(&request.metadata);
                m.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: m,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
