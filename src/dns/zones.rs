//! The model's zones compiled to hickory records, once per snapshot, so a query only
//! looks a name up in a hash map and borrows ready-made records.

use std::collections::HashMap;
use std::str::FromStr;

use hickory_server::proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::model::{Model, RecordData, ServiceId};

/// One owner name in a zone.
#[derive(Debug, Default)]
pub struct Node {
    /// RRsets at this name, by type.
    pub rrsets: Vec<(RecordType, Vec<Record>)>,
    /// The GSLB service answered at this name.
    pub service: Option<ServiceId>,
}

impl Node {
    /// The RRset of a type.
    pub fn rrset(&self, t: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(rt, _)| *rt == t)
            .map(|(_, v)| v.as_slice())
    }
    /// The CNAME record, when this name is an alias.
    pub fn cname(&self) -> Option<&Record> {
        self.rrset(RecordType::CNAME).and_then(|r| r.first())
    }
}

/// One compiled zone.
#[derive(Debug)]
pub struct CompiledZone {
    /// Origin.
    pub origin: LowerName,
    /// SOA with the negative TTL, for AUTHORITY of NXDOMAIN/NODATA (RFC 2308 section 3).
    pub negative_soa: Record,
    /// A/AAAA of in-zone name servers, for ADDITIONAL of NS answers.
    pub glue: Vec<Record>,
    /// Names, including empty non-terminals (present with no RRsets).
    pub nodes: HashMap<LowerName, Node>,
}

/// All zones of a snapshot, most specific origin first.
#[derive(Debug, Default)]
pub struct ZoneIndex {
    /// The zones.
    pub zones: Vec<CompiledZone>,
}

fn name(s: &str) -> Name {
    // Names were validated by config; a failure here would be a validator bug, and the
    // root is a harmless stand-in that makes it visible in answers rather than a crash.
    Name::from_str(s).unwrap_or_else(|_| Name::root())
}

fn rdata(d: &RecordData) -> RData {
    match d {
        RecordData::A(a) => RData::A(A(*a)),
        RecordData::Aaaa(a) => RData::AAAA(AAAA(*a)),
        RecordData::Cname(n) => RData::CNAME(CNAME(name(n))),
        RecordData::Ns(n) => RData::NS(NS(name(n))),
        RecordData::Ptr(n) => RData::PTR(PTR(name(n))),
        RecordData::Txt(t) => RData::TXT(TXT::new(t.clone())),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, name(exchange))),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target))),
        RecordData::Caa {
            critical,
            tag,
            value,
        } => {
            let mut caa = CAA::new_issue(*critical, None, Vec::new());
            caa.tag = tag.clone();
            caa.value = value.as_bytes().to_vec();
            RData::CAA(caa)
        }
    }
}

impl ZoneIndex {
    /// Compiles every zone of a model.
    pub fn build(model: &Model) -> ZoneIndex {
        let mut zones = Vec::with_capacity(model.zones.len());
        for z in &model.zones {
            let origin = name(&z.origin);
            let soa = SOA::new(
                name(&z.soa.mname),
                name(&z.soa.rname),
                z.soa.serial,
                z.soa.refresh as i32,
                z.soa.retry as i32,
                z.soa.expire as i32,
                z.soa.minimum,
            );
            let mut nodes: HashMap<LowerName, Node> = HashMap::new();
            let mut add = |owner: &str, ttl: u32, data: RData| {
                let rec = Record::from_rdata(name(owner), ttl, data);
                let node = nodes.entry(LowerName::from(&name(owner))).or_default();
                let t = rec.record_type();
                match node.rrsets.iter_mut().find(|(rt, _)| *rt == t) {
                    Some((_, v)) => v.push(rec),
                    None => node.rrsets.push((t, vec![rec])),
                }
            };
            add(&z.origin, z.ttl, RData::SOA(soa.clone()));
            for ns in &z.ns {
                add(&z.origin, z.ttl, RData::NS(NS(name(ns))));
            }
            for r in &z.records {
                add(&r.name, r.ttl, rdata(&r.data));
            }
            for &sid in &z.services {
                let svc = &model.services[usize::from(sid)];
                nodes
                    .entry(LowerName::from(&name(&svc.name)))
                    .or_default()
                    .service = Some(sid);
            }
            // Empty non-terminals: every ancestor of a name, up to the origin, exists
            // (RFC 8020), so it answers NODATA rather than NXDOMAIN.
            let owners: Vec<Name> = nodes.keys().map(Name::from).collect();
            for owner in owners {
                let mut n = owner.base_name();
                while n.num_labels() > origin.num_labels() && origin.zone_of(&n) {
                    nodes.entry(LowerName::from(&n)).or_default();
                    n = n.base_name();
                }
            }
            let glue =
                z.ns.iter()
                    .filter_map(|ns| nodes.get(&LowerName::from(&name(ns))))
                    .flat_map(|node| {
                        node.rrset(RecordType::A)
                            .unwrap_or_default()
                            .iter()
                            .chain(node.rrset(RecordType::AAAA).unwrap_or_default())
                    })
                    .cloned()
                    .collect();
            zones.push(CompiledZone {
                origin: LowerName::from(&origin),
                negative_soa: Record::from_rdata(origin.clone(), z.negative_ttl(), RData::SOA(soa)),
                glue,
                nodes,
            });
        }
        ZoneIndex { zones }
    }

    /// The most specific zone containing a name.
    pub fn find(&self, qname: &LowerName) -> Option<&CompiledZone> {
        self.zones.iter().find(|z| z.origin.zone_of(qname))
    }
}
