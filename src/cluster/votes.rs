//! The combined verdict of one endpoint from the fresh votes of every vantage (this
//! instance's own included). Pure: no clock, no I/O; the caller decides which votes are
//! fresh (`[cluster] stale_after`).
//!
//! The one rule (DESIGN.md "Fleet"):
//! - `local`: own verdict only;
//! - `quorum`: down when a strict majority of the vantages with a verdict say down;
//! - `all`: down only when every vantage with a verdict says down (bias to healthy);
//! - `any`: down when any says down.
//!
//! A vantage that has no verdict yet (`Unknown`: no probe result) does not vote; when no
//! vantage has a verdict, the endpoint stays `Unknown` (not handed out, as at start).

use crate::model::{ClusterHealth, Probed};

/// How many fresh vantages say what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Vantages saying up.
    pub up: u32,
    /// Vantages saying down.
    pub down: u32,
}

impl Tally {
    /// Counts `votes` (`Unknown` ones are left out).
    pub fn of(votes: impl IntoIterator<Item = Probed>) -> Tally {
        let mut t = Tally::default();
        for v in votes {
            match v {
                Probed::Up => t.up += 1,
                Probed::Down => t.down += 1,
                Probed::Unknown => {}
            }
        }
        t
    }

    /// Vantages with a verdict.
    pub fn voters(self) -> u32 {
        self.up + self.down
    }
}

/// The combined verdict under `policy`, given this instance's own verdict and the fresh
/// peers' votes (in any order: the result does not depend on it).
pub fn combine(
    policy: ClusterHealth,
    own: Probed,
    fresh_peers: impl IntoIterator<Item = Probed>,
) -> Probed {
    if policy == ClusterHealth::Local {
        return own;
    }
    let t = Tally::of(std::iter::once(own).chain(fresh_peers));
    if t.voters() == 0 {
        return Probed::Unknown;
    }
    let down = match policy {
        ClusterHealth::Local => unreachable!("handled above"),
        // Strict majority: 2 of 4 is not down (a split keeps the endpoint in service).
        ClusterHealth::Quorum => u64::from(t.down) * 2 > u64::from(t.voters()),
        ClusterHealth::All => t.up == 0,
        ClusterHealth::Any => t.down > 0,
    };
    if down { Probed::Down } else { Probed::Up }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClusterHealth::{All, Any, Local, Quorum};
    use Probed::{Down as D, Unknown as U, Up as P};

    /// (policy, own, peers, combined)
    const TABLE: &[(ClusterHealth, Probed, &[Probed], Probed)] = &[
        // Alone (partitioned, or no peers): own verdict whatever the policy.
        (Quorum, P, &[], P),
        (Quorum, D, &[], D),
        (All, D, &[], D),
        (Any, P, &[], P),
        (Local, D, &[], D),
        // One vantage's path cut: quorum and all keep it, any drops it.
        (Quorum, D, &[P, P], P),
        (All, D, &[P, P], P),
        (Any, D, &[P, P], D),
        (Local, D, &[P, P], D),
        (Local, P, &[D, D], P),
        // Own path fine, the others see it down.
        (Quorum, P, &[D, D], D),
        (All, P, &[D, D], P),
        (Any, P, &[D], D),
        // Backend really down: everyone agrees.
        (Quorum, D, &[D, D], D),
        (All, D, &[D, D], D),
        (Any, D, &[D, D], D),
        // Strict majority: a tie is up.
        (Quorum, D, &[P], P),
        (Quorum, D, &[D, P, P], P),
        (Quorum, D, &[D, D, P], D),
        // Unknown does not vote.
        (Quorum, U, &[D], D),
        (Quorum, U, &[P], P),
        (Quorum, D, &[U, U], D),
        (All, U, &[U], U),
        (Quorum, U, &[], U),
        (Any, U, &[U, P], P),
        (Local, U, &[P], U),
    ];

    #[test]
    fn combine_follows_the_table() {
        for &(policy, own, peers, want) in TABLE {
            let got = combine(policy, own, peers.iter().copied());
            assert_eq!(got, want, "{policy:?} own={own:?} peers={peers:?}");
        }
    }

    fn all_votes(n: usize) -> Vec<Vec<Probed>> {
        let mut out = vec![vec![]];
        for _ in 0..n {
            out = out
                .into_iter()
                .flat_map(|v| {
                    [P, D, U].into_iter().map(move |x| {
                        let mut w = v.clone();
                        w.push(x);
                        w
                    })
                })
                .collect();
        }
        out
    }

    /// Every policy, every combination of up to 4 peers: the order of peers does not
    /// matter, and an added down vote never turns down into up (nor an added up vote
    /// up into down).
    #[test]
    fn combine_is_order_independent_and_monotonic() {
        for policy in [Local, Quorum, All, Any] {
            for n in 0..=4 {
                for own in [P, D, U] {
                    for peers in all_votes(n) {
                        let got = combine(policy, own, peers.iter().copied());
                        let mut rev = peers.clone();
                        rev.reverse();
                        assert_eq!(
                            got,
                            combine(policy, own, rev),
                            "{policy:?} {own:?} {peers:?}"
                        );
                        let mut more_down = peers.clone();
                        more_down.push(D);
                        if got == D {
                            assert_eq!(combine(policy, own, more_down), D, "{policy:?} {peers:?}");
                        }
                        let mut more_up = peers.clone();
                        more_up.push(P);
                        if got == P {
                            assert_eq!(combine(policy, own, more_up), P, "{policy:?} {peers:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unanimity_decides_under_every_shared_policy() {
        for policy in [Quorum, All, Any] {
            for n in 0..4 {
                assert_eq!(combine(policy, D, vec![D; n]), D);
                assert_eq!(combine(policy, P, vec![P; n]), P);
            }
        }
    }
}
