//! DNSSEC on the ordinary path: a reply to a query with DO for a signed zone gets an
//! RRSIG after every RRset and, when negative, the signed SOA and the NSEC records that
//! prove the denial (RFC 4035 3.1). The fast path answers a GSLB A/AAAA query routed to
//! addresses itself, placing the cached RRSIGs as `sign_sections` does, and leaves every
//! other such query here (`fast.rs`).
//!
//! Denial, `denial = "nsec"` (RFC 4035 3.1.3): NXDOMAIN carries the chain's NSEC that
//! covers the name and the one that covers the wildcard at its closest encloser; NODATA
//! the NSEC at the name (or, at an empty non-terminal, the one covering it). A GSLB name
//! answered NODATA for a type its chain NSEC lists (every region of that family down with
//! `when_all_down = "nodata"`) gets a minimal NSEC made for the answer, without that type.
//!
//! `denial = "compact"` (RFC 9824): NXDOMAIN becomes NOERROR with an NSEC at the name whose
//! next name is `\000.name` and whose bitmap is RRSIG NSEC NXNAME; NODATA the same shape
//! with the name's types. These are signed per name, so within the zone's budget
//! (`dnssec::COMPACT_BUDGET_PER_SECOND`); beyond it the precomputed chain answers.
//!
//! The authority never sets AD (RFC 4035 3.1.6): the header starts from the request with
//! AD clear and nothing here sets it.

use std::borrow::Cow;
use std::sync::Arc;

use hickory_server::proto::dnssec::rdata::DNSSECRData;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::domain::Label;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::Reply;
use super::zones::{CompiledZone, ZoneIndex};
use crate::dnssec::ZoneSigner;
use crate::model::Denial;

/// RFC 9824 NXNAME pseudo-type: "this name does not exist" in a compact-denial bitmap.
pub const NXNAME: u16 = 128;

/// The signed zone that `query` falls in, if any: DO answers get DNSSEC records only then.
pub fn signed_zone<'s>(zones: &'s ZoneIndex, qname: &LowerName) -> Option<&'s CompiledZone> {
    zones.find(qname).filter(|z| z.signer.is_some())
}

fn signer_of<'s>(zones: &'s ZoneIndex, name: &Name) -> Option<&'s ZoneSigner> {
    zones
        .find(&LowerName::from(name))
        .and_then(|z| z.signer.as_ref())
}

/// Each run of records with one owner and type, followed by its RRSIGs (owned by the
/// same spelling of the name as the RRset, so the encoder compresses it alike).
fn sign_sections<'s>(
    zones: &'s ZoneIndex,
    records: Vec<Cow<'s, Record>>,
    now: u64,
) -> Vec<Cow<'s, Record>> {
    let mut runs: Vec<(usize, Option<Arc<[Record]>>)> = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let (name, t) = (&records[i].name, records[i].record_type());
        let mut j = i + 1;
        while j < records.len() && records[j].record_type() == t && records[j].name == *name {
            j += 1;
        }
        let set: Vec<&Record> = records[i..j].iter().map(|r| r.as_ref()).collect();
        runs.push((j, signer_of(zones, name).and_then(|s| s.rrsigs(&set, now))));
        i = j;
    }
    let mut out = Vec::with_capacity(records.len() + runs.len());
    let mut records = records.into_iter();
    let mut at = 0;
    for (end, sigs) in runs {
        let mut owner = None;
        for r in records.by_ref().take(end - at) {
            owner.get_or_insert_with(|| r.name.clone());
            out.push(r);
        }
        at = end;
        if let (Some(sigs), Some(owner)) = (sigs, owner) {
            out.extend(sigs.iter().map(|s| {
                let mut s = s.clone();
                s.name = owner.clone();
                Cow::Owned(s)
            }));
        }
    }
    out
}

/// An NSEC record and its RRSIGs, for AUTHORITY.
fn push_signed<'s>(
    signer: &ZoneSigner,
    auth: &mut Vec<Cow<'s, Record>>,
    nsec: Cow<'s, Record>,
    now: u64,
) {
    if auth
        .iter()
        .any(|r| r.name == nsec.name && r.record_type() == RecordType::NSEC)
    {
        return;
    }
    let sigs = signer.rrsigs(&[nsec.as_ref()], now);
    auth.push(nsec);
    if let Some(sigs) = sigs {
        auth.extend(sigs.iter().cloned().map(Cow::Owned));
    }
}

fn nsec_types(r: &Record) -> Vec<RecordType> {
    match &r.data {
        RData::DNSSEC(DNSSECRData::NSEC(n)) => n
            .type_bit_maps()
            .filter(|t| !matches!(t, RecordType::NSEC | RecordType::RRSIG))
            .collect(),
        _ => Vec::new(),
    }
}

fn nsec_next(r: &Record) -> Option<&Name> {
    match &r.data {
        RData::DNSSEC(DNSSECRData::NSEC(n)) => Some(n.next_domain_name()),
        _ => None,
    }
}

/// The longest ancestor of `name` (or `name` itself) that exists in the zone.
fn closest_encloser(zone: &CompiledZone, name: &Name) -> Name {
    let mut n = name.clone();
    while n.num_labels() > zone.origin.num_labels()
        && !zone.nodes.contains_key(&LowerName::from(&n))
    {
        n = n.base_name();
    }
    n
}

/// The chain's proof that `name` does not exist, or has no `qtype` (RFC 4035 3.1.3).
fn chain_proof<'s>(
    zone: &'s CompiledZone,
    signer: &'s ZoneSigner,
    name: &Name,
    qtype: RecordType,
    nxdomain: bool,
    auth: &mut Vec<Cow<'s, Record>>,
    now: u64,
) {
    if nxdomain {
        if let Some(n) = signer.nsec_covering(name) {
            push_signed(signer, auth, Cow::Borrowed(n), now);
        }
        let ce = closest_encloser(zone, name);
        if let Ok(wild) = ce.prepend_label("*")
            && let Some(n) = signer.nsec_covering(&wild)
        {
            push_signed(signer, auth, Cow::Borrowed(n), now);
        }
        return;
    }
    match signer.nsec_at(name) {
        Some(n) => {
            let types = nsec_types(n);
            if types.contains(&qtype) || types.contains(&RecordType::CNAME) {
                // The type exists in the chain's view but this answer has none of it.
                let types = types.into_iter().filter(|t| *t != qtype).collect();
                let next = nsec_next(n)
                    .cloned()
                    .unwrap_or_else(|| signer.origin().clone());
                let nsec = signer.synthesized_nsec(n.name.clone(), next, types);
                push_signed(signer, auth, Cow::Owned(nsec), now);
            } else {
                push_signed(signer, auth, Cow::Borrowed(n), now);
            }
        }
        // An empty non-terminal: the NSEC before it, whose next name is below it.
        None => {
            if let Some(n) = signer.nsec_covering(name) {
                push_signed(signer, auth, Cow::Borrowed(n), now);
            }
        }
    }
}

/// RFC 9824's NSEC for `name`, signed within the budget; false when the budget is spent.
fn compact_proof<'s>(
    signer: &ZoneSigner,
    name: &Name,
    qtype: RecordType,
    nxdomain: bool,
    auth: &mut Vec<Cow<'s, Record>>,
    now: u64,
) -> bool {
    let owner = name.to_lowercase();
    let types: Vec<RecordType> = if nxdomain {
        vec![RecordType::Unknown(NXNAME)]
    } else {
        signer
            .nsec_at(&owner)
            .map(nsec_types)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| *t != qtype)
            .collect()
    };
    let Ok(next) = Label::from_raw_bytes(&[0]).and_then(|l| owner.prepend_label(l)) else {
        return false;
    };
    let nsec = signer.synthesized_nsec(owner, next, types);
    match signer.rrsigs_within_budget(&nsec, now) {
        Some(sigs) => {
            auth.push(Cow::Owned(nsec));
            auth.extend(sigs.iter().cloned().map(Cow::Owned));
            true
        }
        None => false,
    }
}

/// Adds the DNSSEC records to a reply for a DO query in a signed zone. `qtype` is the
/// question's type.
pub fn sign_reply<'s>(zones: &'s ZoneIndex, reply: &mut Reply<'s>, qtype: RecordType, now: u64) {
    reply.meta.authentic_data = false;
    reply.answers = sign_sections(zones, std::mem::take(&mut reply.answers), now);
    reply.additionals = sign_sections(zones, std::mem::take(&mut reply.additionals), now);
    let (Some(soa), Some(name)) = (reply.soa, reply.negative.clone()) else {
        return;
    };
    let Some(zone) = zones.find(&LowerName::from(&soa.name)) else {
        return;
    };
    let Some(signer) = zone.signer.as_ref() else {
        return;
    };
    let mut auth = Vec::new();
    if let Some(sigs) = signer.rrsigs(&[soa], now) {
        auth.extend(sigs.iter().cloned().map(Cow::Owned));
    }
    let nxdomain = reply.meta.response_code == ResponseCode::NXDomain;
    let compact = signer.denial == Denial::Compact
        && compact_proof(signer, &name, qtype, nxdomain, &mut auth, now);
    if compact {
        if nxdomain {
            // RFC 9824 3: the name "exists" with only NSEC and RRSIG; NOERROR.
            reply.meta.response_code = ResponseCode::NoError;
        }
    } else {
        chain_proof(zone, signer, &name, qtype, nxdomain, &mut auth, now);
    }
    reply.authority = auth;
}
