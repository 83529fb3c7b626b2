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
    /// The zone's keys, DNSKEY RRset and NSEC chain, when `[zones."NAME".dnssec]` is set.
    pub signer: Option<crate::dnssec::ZoneSigner>,
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

/// The zone's signer: its NSEC chain runs over every name with data, GSLB names with
/// the address types their regions can answer.
fn signer(
    model: &Model,
    z: &crate::model::Zone,
    origin: &Name,
    d: &crate::model::ZoneDnssec,
    nodes: &HashMap<LowerName, Node>,
    counters: crate::dnssec::SignCounters,
) -> crate::dnssec::ZoneSigner {
    let names = nodes
        .iter()
        .filter(|(_, n)| !n.rrsets.is_empty() || n.service.is_some())
        .map(|(name, n)| {
            let mut types: Vec<RecordType> = n.rrsets.iter().map(|(t, _)| *t).collect();
            if let Some(sid) = n.service {
                let svc = &model.services[usize::from(sid)];
                let regions = || svc.regions.iter().map(|r| &model.regions[usize::from(*r)]);
                if regions().any(|r| r.has_v4) {
                    types.push(RecordType::A);
                }
                if regions().any(|r| r.has_v6) {
                    types.push(RecordType::AAAA);
                }
            }
            (Name::from(name), types)
        })
        .collect();
    crate::dnssec::ZoneSigner::new(
        origin.clone(),
        &d.keys,
        d.denial,
        z.ttl,
        z.negative_ttl(),
        names,
        counters,
    )
}

/// Signs ahead what queries will ask for: every static RRset, the negative SOA, the NSEC
/// chain, and per GSLB service and region the RRset of its first `max_answers`
/// addresses of each family (the answer while all are up).
fn prewarm(
    model: &Model,
    z: &crate::model::Zone,
    signer: &crate::dnssec::ZoneSigner,
    nodes: &HashMap<LowerName, Node>,
    negative_soa: &Record,
) {
    let gslb = gslb_rrsets(model, z, |_| true);
    let statics = nodes
        .values()
        .flat_map(|n| n.rrsets.iter().map(|(_, v)| v.iter().collect::<Vec<_>>()));
    signer.prewarm(
        statics
            .chain(std::iter::once(vec![negative_soa]))
            .chain(gslb.iter().map(|s| s.iter().collect())),
    );
}

/// Per service, region and family of a zone, the RRset of the first `max_answers`
/// addresses of the endpoints `keep` lets through.
fn gslb_rrsets(
    model: &Model,
    z: &crate::model::Zone,
    keep: impl Fn(&crate::model::Endpoint) -> bool,
) -> Vec<Vec<Record>> {
    let mut gslb: Vec<Vec<Record>> = Vec::new();
    for &sid in &z.services {
        let svc = &model.services[usize::from(sid)];
        let owner = name(&svc.name);
        for &rid in &svc.regions {
            let region = &model.regions[usize::from(rid)];
            for v4 in [true, false] {
                let set: Vec<Record> = region
                    .endpoints
                    .iter()
                    .filter(|e| e.address.is_ipv4() == v4 && keep(e))
                    .take(usize::from(svc.max_answers))
                    .map(|e| {
                        let data = match e.address {
                            std::net::IpAddr::V4(a) => RData::A(A(a)),
                            std::net::IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                        };
                        Record::from_rdata(owner.clone(), svc.ttl, data)
                    })
                    .collect();
                if !set.is_empty() {
                    gslb.push(set);
                }
            }
        }
    }
    gslb
}

impl ZoneIndex {
    /// Compiles every zone of a model.
    pub fn build(model: &Model, counters: &crate::dnssec::SignCounters) -> ZoneIndex {
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
            let signer = z.dnssec.as_ref().map(|d| {
                let signer = signer(model, z, &origin, d, &nodes, counters.clone());
                // The DNSKEY RRset is zone data: answered with or without DO.
                if !signer.dnskeys.is_empty()
                    && let Some(apex) = nodes.get_mut(&LowerName::from(&origin))
                {
                    apex.rrsets
                        .push((RecordType::DNSKEY, signer.dnskeys.clone()));
                }
                signer
            });
            let negative_soa =
                Record::from_rdata(origin.clone(), z.negative_ttl(), RData::SOA(soa));
            if let Some(s) = &signer {
                prewarm(model, z, s, &nodes, &negative_soa);
            }
            zones.push(CompiledZone {
                origin: LowerName::from(&origin),
                negative_soa,
                glue,
                nodes,
                signer,
            });
        }
        ZoneIndex { zones }
    }

    /// After a health flip: signs each signed zone's GSLB RRsets made of the endpoints
    /// probed up now (per service, region and family, the first `max_answers`), so the
    /// answers the flip produces are signed off the query path. Returns the RRsets
    /// looked at. A forced state or a pick other than the first addresses is signed on
    /// the first query that needs it, as before.
    pub fn prewarm_health(&self, model: &Model) -> usize {
        let mut n = 0;
        for (cz, z) in self.zones.iter().zip(&model.zones) {
            let Some(signer) = &cz.signer else { continue };
            let sets = gslb_rrsets(model, z, |e| e.health.get() == crate::model::Probed::Up);
            let now = crate::dnssec::now();
            for set in &sets {
                let refs: Vec<&Record> = set.iter().collect();
                let _ = signer.rrsigs(&refs, now);
            }
            n += sets.len();
        }
        n
    }

    /// The most specific zone containing a name.
    pub fn find(&self, qname: &LowerName) -> Option<&CompiledZone> {
        self.zones.iter().find(|z| z.origin.zone_of(qname))
    }
}
