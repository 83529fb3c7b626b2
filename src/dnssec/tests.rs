use std::str::FromStr;

use hickory_proto::dnssec::Verifier;
use hickory_proto::rr::rdata::A;

use super::*;

fn counters() -> SignCounters {
    SignCounters {
        signatures: IntCounter::new("s", "s").unwrap(),
        hits: IntCounter::new("h", "h").unwrap(),
        misses: IntCounter::new("m", "m").unwrap(),
        over_budget: IntCounter::new("o", "o").unwrap(),
    }
}

fn material(alg: u8) -> KeyMaterial {
    let origin = Name::from_str("sign.test.").unwrap();
    let (_, private, public) = keys::generate(&origin, alg).unwrap();
    KeyMaterial {
        file: "K.private".into(),
        private,
        public,
    }
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn signer(keys: &[KeyMaterial], denial: Denial) -> ZoneSigner {
    ZoneSigner::new(
        name("sign.test."),
        keys,
        denial,
        300,
        60,
        vec![
            (name("sign.test."), vec![RecordType::SOA, RecordType::NS]),
            (name("www.sign.test."), vec![RecordType::A]),
            (name("b.a.sign.test."), vec![RecordType::TXT]),
            (name("z.sign.test."), vec![RecordType::A]),
        ],
        counters(),
    )
}

fn a(owner: &str, last: u8, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::new(192, 0, 2, last)))
}

fn rrsig(r: &Record) -> &RRSIG {
    match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(s)) => s,
        other => panic!("not an RRSIG: {other:?}"),
    }
}

#[test]
fn validity_is_the_same_for_every_moment_of_a_weekly_slot_and_covers_it() {
    let slot_start = 2_000 * WEEK;
    let (i0, e0) = validity(slot_start);
    for t in [slot_start + 1, slot_start + WEEK / 2, slot_start + WEEK - 1] {
        assert_eq!(validity(t), (i0, e0), "at {t}");
        // Valid from a day before the slot to more than a week after it.
        assert!(u64::from(i0) + BACKDATE <= t);
        assert!(u64::from(e0) >= t + WEEK + BACKDATE);
    }
    let (i1, _) = validity(slot_start + WEEK);
    assert_eq!(u64::from(i1), u64::from(i0) + WEEK);
}

#[test]
fn signatures_verify_for_both_algorithms_whatever_the_order_and_case_of_the_rrset() {
    for alg in [13, 15] {
        let s = signer(&[material(alg)], Denial::Nsec);
        let r1 = a("WwW.Sign.Test.", 1, 30);
        let r2 = a("www.sign.test.", 2, 30);
        let now = 1_800_000_000;
        let sigs = s.rrsigs(&[&r1, &r2], now).unwrap();
        assert_eq!(sigs.len(), 1);
        let sig = rrsig(&sigs[0]);
        let (inception, expiration) = validity(now);
        assert_eq!(sig.input().sig_inception.get(), inception);
        assert_eq!(sig.input().sig_expiration.get(), expiration);
        assert_eq!(sig.input().original_ttl, 30);
        assert_eq!(sig.input().num_labels, 3);
        let rrset = [r2.clone(), r1.clone()];
        let RData::DNSSEC(DNSSECRData::DNSKEY(key)) = &s.dnskeys[0].data else {
            panic!("not a DNSKEY")
        };
        key.verify_rrsig(&name("www.sign.test."), DNSClass::IN, sig, rrset.iter())
            .unwrap_or_else(|e| panic!("algorithm {alg}: {e}"));
        // Another order and another case: the same cached signature.
        let again = s.rrsigs(&[&r2, &a("WWW.SIGN.TEST.", 1, 30)], now).unwrap();
        assert!(Arc::ptr_eq(&sigs, &again), "algorithm {alg}: signed twice");
    }
}

#[test]
fn the_cache_key_covers_ttl_rdata_window_and_key_set() {
    let k1 = material(13);
    let s = signer(std::slice::from_ref(&k1), Denial::Nsec);
    let now = 1_800_000_000;
    let base = s.rrsigs(&[&a("www.sign.test.", 1, 30)], now).unwrap();
    for (what, other) in [
        ("ttl", s.rrsigs(&[&a("www.sign.test.", 1, 31)], now)),
        ("rdata", s.rrsigs(&[&a("www.sign.test.", 2, 30)], now)),
        ("owner", s.rrsigs(&[&a("z.sign.test.", 1, 30)], now)),
        (
            "window",
            s.rrsigs(&[&a("www.sign.test.", 1, 30)], now + WEEK),
        ),
    ] {
        assert!(
            !Arc::ptr_eq(&base, &other.unwrap()),
            "{what} must change the key"
        );
    }
    // Same slot: reused.
    let same = s.rrsigs(&[&a("www.sign.test.", 1, 30)], now + 60).unwrap();
    assert!(Arc::ptr_eq(&base, &same));
    // A second key: every RRset gets one signature per key, made afresh.
    let two = signer(&[k1, material(15)], Denial::Nsec);
    let both = two.rrsigs(&[&a("www.sign.test.", 1, 30)], now).unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(two.dnskeys.len(), 2);
}

#[test]
fn the_nsec_chain_is_in_canonical_order_and_covers_every_name() {
    let s = signer(&[material(13)], Denial::Nsec);
    let owners: Vec<String> = s.chain.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(
        owners,
        [
            "sign.test.",
            "b.a.sign.test.",
            "www.sign.test.",
            "z.sign.test."
        ]
    );
    let apex = s.nsec_at(&name("sign.test.")).unwrap();
    let RData::DNSSEC(DNSSECRData::NSEC(n)) = &apex.data else {
        panic!()
    };
    assert_eq!(n.next_domain_name(), &name("b.a.sign.test."));
    for t in [
        RecordType::SOA,
        RecordType::NS,
        RecordType::DNSKEY,
        RecordType::NSEC,
        RecordType::RRSIG,
    ] {
        assert!(n.type_set().contains(t), "apex bitmap lacks {t}");
    }
    assert_eq!(apex.ttl, 60, "NSEC TTL is the negative TTL");
    // Covering: the predecessor; the last wraps to the apex.
    let cover = |q: &str| s.nsec_covering(&name(q)).unwrap().name.to_string();
    assert_eq!(cover("a.sign.test."), "sign.test."); // an empty non-terminal
    assert_eq!(cover("c.sign.test."), "b.a.sign.test.");
    assert_eq!(cover("*.sign.test."), "sign.test.");
    assert_eq!(cover("zz.sign.test."), "z.sign.test.");
    let last = s.nsec_at(&name("z.sign.test.")).unwrap();
    let RData::DNSSEC(DNSSECRData::NSEC(n)) = &last.data else {
        panic!()
    };
    assert_eq!(n.next_domain_name(), &name("sign.test."));
}

#[test]
fn the_compact_budget_allows_a_fixed_number_a_second() {
    let s = signer(&[material(13)], Denial::Compact);
    let now = 1_800_000_000;
    let granted = (0..COMPACT_BUDGET_PER_SECOND + 500)
        .filter(|_| s.take_budget(now))
        .count() as u64;
    assert_eq!(granted, COMPACT_BUDGET_PER_SECOND);
    assert!(s.take_budget(now + 1), "a new second has a new budget");
    // Over budget, a name never seen is not signed; a cached one still is served.
    for _ in 0..COMPACT_BUDGET_PER_SECOND {
        s.take_budget(now + 1);
    }
    let fresh = a("fresh.sign.test.", 9, 60);
    assert!(s.rrsigs_within_budget(&fresh, now + 1).is_none());
    let cached = a("cached.sign.test.", 9, 60);
    s.rrsigs(&[&cached], now + 1).unwrap();
    assert!(s.rrsigs_within_budget(&cached, now + 1).is_some());
}

/// The fast path's lookup by addresses finds exactly the entry the ordinary path's
/// records made (any order, any case of the owner), only after it was made, and hands
/// back hickory's own encoding of every RRSIG after its owner name.
#[test]
fn a_gslb_answer_is_found_by_its_addresses_with_the_rrsigs_in_wire_form() {
    let s = signer(&[material(13), material(15)], Denial::Nsec);
    let now = 1_800_000_000;
    let owner = OwnerKey::new(&name("www.sign.test."));
    let addrs: [IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
    assert!(
        s.cached_address_rrsigs(&owner, 30, &addrs, now).is_none(),
        "found before anything was signed"
    );
    assert_eq!(
        (s.counters.hits.get(), s.counters.misses.get()),
        (0, 0),
        "a fast-path miss is the ordinary path's to count"
    );
    let sigs = s
        .rrsigs(
            &[&a("WwW.Sign.Test.", 2, 30), &a("www.sign.test.", 1, 30)],
            now,
        )
        .unwrap();
    let wire = s
        .cached_address_rrsigs(&OwnerKey::new(&name("WWW.SIGN.TEST.")), 30, &addrs, now)
        .expect("the ordinary path's entry");
    assert_eq!(s.counters.hits.get(), 1);
    let mut want = Vec::new();
    for sig in sigs.iter() {
        let mut one = Vec::new();
        sig.emit(&mut BinEncoder::new(&mut one)).unwrap();
        let owner_len = "www.sign.test.".len() + 1;
        assert_eq!(&one[..owner_len], b"\x03www\x04sign\x04test\x00");
        want.extend_from_slice(&one[owner_len..]);
    }
    assert_eq!(&wire[..], &want[..]);
    assert_eq!(sigs.len(), 2);
    // Another order of the addresses: the same RRset.
    let swapped = [addrs[1], addrs[0]];
    assert!(s.cached_address_rrsigs(&owner, 30, &swapped, now).is_some());
    // Anything else signed is another RRset: TTL, addresses, owner, window, family.
    let v6: [IpAddr; 1] = ["2001:db8::1".parse().unwrap()];
    for (what, miss) in [
        ("ttl", s.cached_address_rrsigs(&owner, 31, &addrs, now)),
        (
            "subset",
            s.cached_address_rrsigs(&owner, 30, &addrs[..1], now),
        ),
        (
            "owner",
            s.cached_address_rrsigs(&OwnerKey::new(&name("z.sign.test.")), 30, &addrs, now),
        ),
        (
            "window",
            s.cached_address_rrsigs(&owner, 30, &addrs, now + WEEK),
        ),
        ("family", s.cached_address_rrsigs(&owner, 30, &v6, now)),
        ("empty", s.cached_address_rrsigs(&owner, 30, &[], now)),
    ] {
        assert!(miss.is_none(), "{what}: found");
    }
}
