//! Override data, merge and view: table tests of "latest change wins", the merge's
//! algebra (commutative, associative, idempotent) over generated entries, the state
//! file, and the view's effect on routing decisions.

use std::path::Path;

use super::*;
use crate::model::{ClientLocation, ClientSource, Family, Outcome};
use crate::route::{Live, LiveHealth, RouteMemo, explain, route};

fn e(target: &str, action: Action, author: &str, at: Millis, expires: Option<Millis>) -> Entry {
    Entry {
        target: target.parse().unwrap(),
        action,
        reason: String::new(),
        author: author.into(),
        at,
        expires,
    }
}

fn set(entries: &[Entry]) -> Overrides {
    let mut o = Overrides::new();
    for x in entries {
        o.apply(x.clone());
    }
    o
}

#[test]
fn targets_print_and_parse_back() {
    for t in [
        "drain:eu-west",
        "weight:eu-west",
        "weight:eu-west@www.gslb.example.",
        "force:eu-west/192.0.2.20",
        "force:eu-west/2001:db8::1",
    ] {
        let parsed: Target = t.parse().unwrap();
        assert_eq!(parsed.to_string(), t);
    }
    for bad in [
        "",
        "drain:",
        "drain",
        "weight:@x.",
        "weight:r@",
        "force:r",
        "force:r/notanip",
        "force:/1.2.3.4",
        "nope:r",
    ] {
        assert!(bad.parse::<Target>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn actions_fit_only_their_targets() {
    let d: Target = "drain:r".parse().unwrap();
    let w: Target = "weight:r".parse().unwrap();
    let f: Target = "force:r/192.0.2.1".parse().unwrap();
    let table = [
        (Action::Drain, [true, false, false]),
        (Action::Weight(3), [false, true, false]),
        (Action::ForceUp, [false, false, true]),
        (Action::ForceDown, [false, false, true]),
        (Action::Clear, [true, true, true]),
    ];
    for (a, fits) in table {
        assert_eq!([a.fits(&d), a.fits(&w), a.fits(&f)], fits, "{a:?}");
    }
    assert_eq!(Action::Clear.label(&d), "undrain");
    assert_eq!(Action::Clear.label(&w), "weight_clear");
    assert_eq!(Action::Clear.label(&f), "force_clear");
    for (a, t) in [
        (Action::Drain, &d),
        (Action::Clear, &d),
        (Action::ForceUp, &f),
    ] {
        assert!(crate::metrics::ADMIN_ACTIONS.contains(&a.label(t)));
    }
}

/// Table: (local, remote, winner). "Latest change wins" per target, whatever side it is on.
#[test]
fn merge_keeps_the_latest_change_of_each_target() {
    type Case = (&'static str, Vec<Entry>, Vec<Entry>, Vec<Entry>);
    let cases: Vec<Case> = vec![
        (
            "a later drain beats an earlier one",
            vec![e("drain:a", Action::Drain, "n1", 10, None)],
            vec![e("drain:a", Action::Drain, "n2", 20, None)],
            vec![e("drain:a", Action::Drain, "n2", 20, None)],
        ),
        (
            "an undrain (tombstone) after a drain wins: undrained at t2",
            vec![e("drain:a", Action::Drain, "n1", 10, None)],
            vec![e("drain:a", Action::Clear, "n2", 20, None)],
            vec![e("drain:a", Action::Clear, "n2", 20, None)],
        ),
        (
            "a drain after an undrain wins",
            vec![e("drain:a", Action::Clear, "n1", 10, None)],
            vec![e("drain:a", Action::Drain, "n2", 20, None)],
            vec![e("drain:a", Action::Drain, "n2", 20, None)],
        ),
        (
            "an expired later entry still beats an older live one (expiry kept)",
            vec![e("weight:a", Action::Weight(0), "n1", 10, Some(10_000_000))],
            vec![e("weight:a", Action::Weight(5), "n2", 20, Some(30))],
            vec![e("weight:a", Action::Weight(5), "n2", 20, Some(30))],
        ),
        (
            "same time: the greater author wins, on both sides",
            vec![e("force:a/192.0.2.1", Action::ForceUp, "alpha", 10, None)],
            vec![e("force:a/192.0.2.1", Action::ForceDown, "beta", 10, None)],
            vec![e("force:a/192.0.2.1", Action::ForceDown, "beta", 10, None)],
        ),
        (
            "different targets are independent",
            vec![e("drain:a", Action::Drain, "n1", 50, None)],
            vec![
                e("drain:b", Action::Drain, "n2", 1, None),
                e("weight:a", Action::Weight(7), "n2", 2, None),
            ],
            vec![
                e("drain:a", Action::Drain, "n1", 50, None),
                e("drain:b", Action::Drain, "n2", 1, None),
                e("weight:a", Action::Weight(7), "n2", 2, None),
            ],
        ),
        (
            "a region-wide weight and a per-service one are different targets",
            vec![e("weight:a", Action::Weight(1), "n1", 50, None)],
            vec![e("weight:a@x.", Action::Weight(2), "n2", 1, None)],
            vec![
                e("weight:a", Action::Weight(1), "n1", 50, None),
                e("weight:a@x.", Action::Weight(2), "n2", 1, None),
            ],
        ),
    ];
    for (name, local, remote, want) in cases {
        let (l, r) = (set(&local), set(&remote));
        let want = set(&want);
        assert_eq!(merge(&l, &r), want, "{name}");
        assert_eq!(merge(&r, &l), want, "{name} (other order)");
    }
}

#[test]
fn apply_refuses_an_older_change() {
    let mut o = set(&[e("drain:a", Action::Drain, "n", 20, None)]);
    assert!(!o.apply(e("drain:a", Action::Clear, "n", 10, None)));
    assert_eq!(
        o.get(&"drain:a".parse().unwrap()).unwrap().action,
        Action::Drain
    );
    assert!(o.apply(e("drain:a", Action::Clear, "n", 21, None)));
    assert_eq!(o.len(), 1, "a clear is kept as the target's entry");
}

/// A small deterministic generator (SplitMix64), so the property checks are repeatable.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        crate::route::mix(self.0)
    }
    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn entry(&mut self) -> Entry {
        let targets = [
            "drain:a",
            "drain:b",
            "weight:a",
            "weight:a@x.",
            "force:a/192.0.2.1",
        ];
        let t = targets[self.pick(targets.len() as u64) as usize];
        let target: Target = t.parse().unwrap();
        let action = loop {
            let a = match self.pick(5) {
                0 => Action::Drain,
                1 => Action::Weight(self.pick(3) as u32),
                2 => Action::ForceUp,
                3 => Action::ForceDown,
                _ => Action::Clear,
            };
            if a.fits(&target) {
                break a;
            }
        };
        Entry {
            target,
            action,
            reason: ["", "x"][self.pick(2) as usize].into(),
            author: ["n1", "n2", "n3"][self.pick(3) as usize].into(),
            // Few distinct times, so ties (the hard case) are common.
            at: self.pick(4),
            expires: [None, Some(2), Some(9)][self.pick(3) as usize],
        }
    }
    fn set(&mut self) -> Overrides {
        let n = self.pick(6);
        let mut o = Overrides::new();
        for _ in 0..n {
            o.apply(self.entry());
        }
        o
    }
}

#[test]
fn merge_is_commutative_associative_and_idempotent() {
    let mut g = Gen(7);
    let mut differing = 0;
    for _ in 0..3000 {
        let (a, b, c) = (g.set(), g.set(), g.set());
        assert_eq!(merge(&a, &b), merge(&b, &a), "commutative: {a:?} {b:?}");
        assert_eq!(
            merge(&merge(&a, &b), &c),
            merge(&a, &merge(&b, &c)),
            "associative"
        );
        assert_eq!(merge(&a, &a), a, "idempotent");
        assert_eq!(merge(&merge(&a, &b), &b), merge(&a, &b), "absorbs");
        // Every entry of the merge is one of the inputs' and no input entry beats it.
        let m = merge(&a, &b);
        for x in m.entries() {
            for y in a
                .entries()
                .chain(b.entries())
                .filter(|y| y.target == x.target)
            {
                assert!(!y.supersedes(x), "{y:?} beats the merged {x:?}");
            }
        }
        if a.entries()
            .any(|x| b.get(&x.target).is_some_and(|y| y != x))
        {
            differing += 1;
        }
    }
    // Coverage: the property held over many real conflicts, not vacuously.
    assert!(
        differing > 500,
        "only {differing} conflicting pairs generated"
    );
}

#[test]
fn state_file_round_trips_and_refuses_misfits() {
    let o = set(&[
        e("drain:a", Action::Drain, "n1", 10, Some(99)),
        e("drain:b", Action::Clear, "n1", 11, None),
        e("weight:a@www.x.", Action::Weight(300), "n2", 12, None),
        e("force:a/2001:db8::1", Action::ForceDown, "n2", 13, None),
    ]);
    let text = o.to_json();
    assert_eq!(Overrides::from_json(&text).unwrap(), o);
    assert!(text.contains(r#""action": "weight""#) && text.contains(r#""value": 300"#));
    let misfit = r#"{"version":1,"overrides":[{"target":"drain:a","action":"weight","value":3,"author":"n","at":1}]}"#;
    assert!(
        Overrides::from_json(misfit)
            .unwrap_err()
            .contains("does not fit")
    );
    assert!(Overrides::from_json(r#"{"version":2,"overrides":[]}"#).is_err());
    assert!(Overrides::from_json("{").is_err());
}

#[test]
fn next_expiry_ignores_past_and_cleared_entries() {
    let o = set(&[
        e("drain:a", Action::Drain, "n", 1, Some(50)),
        e("drain:b", Action::Drain, "n", 1, Some(80)),
        e("weight:a", Action::Clear, "n", 1, Some(60)),
        e("weight:b", Action::Weight(1), "n", 1, None),
    ]);
    assert_eq!(o.next_expiry(10), Some(50));
    assert_eq!(o.next_expiry(50), Some(80));
    assert_eq!(o.next_expiry(80), None);
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339(1_796_409_565_234), "2026-12-04T18:39:25.234Z");
}

// ---------------------------------------------------------------------------------------
// The view and routing

const CONFIG: &str = r#"
[zones."gslb.test."]
soa = { mname = "ns1.gslb.test.", rname = "h.gslb.test.", serial = 1 }
ns = ["ns1.gslb.test."]
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]
[regions.a]
endpoints = [{ address = "192.0.2.1" }, { address = "192.0.2.11" }]
[regions.b]
endpoints = [{ address = "192.0.2.2" }]
[regions.c]
drain = true
endpoints = [{ address = "192.0.2.3" }]
[services."fo.gslb.test."]
regions = ["a", "b"]
policy = "failover"
[services."wt.gslb.test."]
regions = ["a", "b"]
policy = "weighted"
weights = { a = 0 }
[services."nr.gslb.test."]
regions = ["a", "b"]
"#;

fn model() -> Model {
    crate::config::parse(CONFIG, Path::new("t.toml"))
        .unwrap()
        .model
}

fn client(n: u32) -> ClientLocation {
    ClientLocation::unknown(
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + (n << 8))),
        ClientSource::Resolver,
    )
}

fn region_of(m: &Model, view: &AdminView, svc: &str, n: u32) -> Option<String> {
    let d = route(
        m,
        m.service_id(svc).unwrap(),
        Family::V4,
        &client(n),
        &Live(view),
    );
    (d.outcome == Outcome::Answer).then(|| m.regions[usize::from(d.region.unwrap())].name.clone())
}

#[test]
fn view_applies_active_entries_and_reports_dangling_ones() {
    let m = model();
    let o = set(&[
        e("drain:a", Action::Drain, "n", 1, Some(100)),
        e("drain:b", Action::Clear, "n", 1, None),
        e("weight:b", Action::Weight(7), "n", 1, None),
        e("weight:a@wt.gslb.test.", Action::Weight(3), "n", 1, None),
        e("force:a/192.0.2.11", Action::ForceDown, "n", 1, None),
        e("drain:gone", Action::Drain, "n", 1, None),
        e("force:b/192.0.2.99", Action::ForceUp, "n", 1, None),
        e("weight:a@nope.gslb.test.", Action::Weight(1), "n", 1, None),
    ]);
    let (a, b) = (m.region_id("a").unwrap(), m.region_id("b").unwrap());
    let wt = m.service_id("wt.gslb.test.").unwrap();
    let fo = m.service_id("fo.gslb.test.").unwrap();
    let v = AdminView::build(&m, &o, 50);
    assert!(v.drained(a) && !v.drained(b));
    assert_eq!(
        v.weight(wt, a),
        Some(3),
        "per-service beats nothing region-wide"
    );
    assert_eq!(v.weight(fo, a), None);
    assert_eq!(v.weight(fo, b), Some(7));
    let ep11 = &m.regions[usize::from(a)].endpoints[1];
    assert_eq!(v.forced(a, ep11), Some(false));
    assert_eq!(v.forced(a, &m.regions[usize::from(a)].endpoints[0]), None);
    let dangling: Vec<String> = v
        .dangling()
        .iter()
        .map(|(e, _)| e.target.to_string())
        .collect();
    assert_eq!(
        dangling,
        [
            "drain:gone",
            "weight:a@nope.gslb.test.",
            "force:b/192.0.2.99"
        ]
    );
    // At 100 the drain has expired: inert, and no longer in the view.
    let later = AdminView::build(&m, &o, 100);
    assert!(!later.drained(a));
    assert_eq!(later.active().len(), v.active().len() - 1);
}

#[test]
fn resolve_says_404_for_unknown_names_and_400_for_mismatches() {
    let m = model();
    let r = |t: &str| resolve(&m, &t.parse().unwrap());
    assert!(r("drain:a").is_ok());
    assert!(r("drain:zz").unwrap_err().is_not_found());
    assert!(r("weight:a@nope.gslb.test.").unwrap_err().is_not_found());
    assert!(r("force:a/192.0.2.2").unwrap_err().is_not_found());
    let e = r("weight:c@wt.gslb.test.").unwrap_err();
    assert!(!e.is_not_found(), "{e}");
}

#[test]
fn routing_follows_drain_force_and_weight_overrides() {
    let m = model();
    let none = AdminView::none();
    // Without overrides, Live routes like LiveHealth.
    for n in 0..50 {
        for svc in ["fo.gslb.test.", "wt.gslb.test."] {
            let sid = m.service_id(svc).unwrap();
            assert_eq!(
                route(&m, sid, Family::V4, &client(n), &Live(&none)),
                route(&m, sid, Family::V4, &client(n), &LiveHealth),
            );
        }
    }
    assert_eq!(
        region_of(&m, &none, "fo.gslb.test.", 1).as_deref(),
        Some("a")
    );
    // The config's per-service weight 0 makes a a standby for wt only.
    assert!((0..200).all(|n| region_of(&m, &none, "wt.gslb.test.", n).as_deref() == Some("b")));

    let drained = AdminView::build(&m, &set(&[e("drain:a", Action::Drain, "n", 1, None)]), 2);
    assert_eq!(
        region_of(&m, &drained, "fo.gslb.test.", 1).as_deref(),
        Some("b")
    );

    // Both of a's endpoints forced down: a is down, failover moves to b.
    let forced = AdminView::build(
        &m,
        &set(&[
            e("force:a/192.0.2.1", Action::ForceDown, "n", 1, None),
            e("force:a/192.0.2.11", Action::ForceDown, "n", 1, None),
        ]),
        2,
    );
    assert_eq!(
        region_of(&m, &forced, "fo.gslb.test.", 1).as_deref(),
        Some("b")
    );
    // One forced down: a stays, answering with the other address only.
    let one = AdminView::build(
        &m,
        &set(&[e("force:a/192.0.2.1", Action::ForceDown, "n", 1, None)]),
        2,
    );
    let d = route(
        &m,
        m.service_id("fo.gslb.test.").unwrap(),
        Family::V4,
        &client(1),
        &Live(&one),
    );
    assert_eq!(
        d.addrs.as_slice(),
        ["192.0.2.11".parse::<IpAddr>().unwrap()]
    );

    // A per-service weight override: wt splits 1:1 between a and b; fo is untouched.
    let weighted = AdminView::build(
        &m,
        &set(&[e(
            "weight:a@wt.gslb.test.",
            Action::Weight(100),
            "n",
            1,
            None,
        )]),
        2,
    );
    let to_a = (0..2000)
        .filter(|&n| region_of(&m, &weighted, "wt.gslb.test.", n).as_deref() == Some("a"))
        .count();
    assert!((800..1200).contains(&to_a), "{to_a} of 2000 to a");
    assert_eq!(
        region_of(&m, &weighted, "fo.gslb.test.", 1).as_deref(),
        Some("a")
    );
}

#[test]
fn explain_names_the_override_that_drained_a_region() {
    let m = model();
    let mut entry = e("drain:a", Action::Drain, "fra-1", 1_796_409_565_234, None);
    entry.reason = "db failover".into();
    let v = AdminView::build(&m, &set(&[entry]), 1_796_409_565_300);
    let sid = m.service_id("fo.gslb.test.").unwrap();
    let mut exp = explain(&m, sid, Family::V4, &client(1), &Live(&v));
    v.annotate(&m, &mut exp);
    let a = exp.candidates.iter().find(|c| c.region == "a").unwrap();
    assert_eq!(a.status, "drained (override)");
    assert_eq!(
        a.overrides,
        ["override drain (drain:a, reason \"db failover\", by fra-1 at 2026-12-04T18:39:25.234Z)"]
    );
    assert!(exp.to_string().contains("reason \"db failover\""));
    assert_eq!(exp.region.as_deref(), Some("b"));
}

/// The route memo, fed the epoch the way the UDP loop is (`routing_changed` moves it on
/// every override change), gives the same decisions as routing afresh under each view;
/// without the new epoch it would keep the previous view's decisions.
#[test]
fn route_memo_matches_plain_routing_under_every_override_view() {
    let m = model();
    let nr = m.service_id("nr.gslb.test.").unwrap();
    let views = [
        AdminView::none(),
        AdminView::build(&m, &set(&[e("drain:a", Action::Drain, "n", 1, None)]), 2),
        AdminView::build(
            &m,
            &set(&[e("force:a/192.0.2.1", Action::ForceDown, "n", 1, None)]),
            2,
        ),
        AdminView::build(
            &m,
            &set(&[
                e("force:a/192.0.2.1", Action::ForceDown, "n", 1, None),
                e("force:a/192.0.2.11", Action::ForceDown, "n", 1, None),
            ]),
            2,
        ),
        AdminView::none(),
    ];
    let mut memo = RouteMemo::default();
    let mut seen = std::collections::HashSet::new();
    for (epoch, view) in views.iter().enumerate() {
        memo.sync(1, epoch as u64);
        for n in 0..200 {
            let mut kept = crate::model::Decision::default();
            memo.route_into(&m, nr, Family::V4, &client(n), &Live(view), &mut kept);
            let fresh = route(&m, nr, Family::V4, &client(n), &Live(view));
            assert_eq!(kept, fresh, "view {epoch}, client {n}");
            seen.insert(fresh.addrs.as_slice().to_vec());
        }
    }
    assert!(
        memo.hits() > 900,
        "the memo served {} decisions",
        memo.hits()
    );
    // Three different answers across the views: the comparison was not vacuous.
    assert_eq!(seen.len(), 3, "{seen:?}");
}
