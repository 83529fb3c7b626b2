//! The peer message: what one instance tells its peers, how it is signed, and the checks
//! a receiver makes before believing it. No I/O and no clock of its own (the caller passes
//! `now`), so every rule here is unit-tested.
//!
//! A message is a JSON body carrying the sender's whole state (its own verdict on every
//! endpoint and every override entry it holds, tombstones included), signed with
//! HMAC-SHA256 under the shared secret in the [`SIGNATURE_HEADER`]. Whole-state messages
//! are idempotent: a peer that missed one catches up with the next (they are re-sent every
//! `stale_after / 4`), and a restarted peer with the first it hears.
//!
//! Checks, in order, before anything in the body is used:
//! 1. size at most [`MAX_MESSAGE`] (the transport enforces it while reading);
//! 2. the signature: hex of the right length, verified in constant time over the raw bytes;
//! 3. the body parses; the sender is not this instance's own node name;
//! 4. freshness: `sent_ms` within [`MAX_SKEW_MS`] of the receiver's clock, and `seq`
//!    strictly above the last accepted from that sender (so a recorded message cannot
//!    be replayed, within the window or after).

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::model::{Probed, Secret};
use crate::overrides::{Entry, Overrides};

/// The longest author name taken from a peer, bytes.
pub const MAX_AUTHOR: usize = 256;
/// The longest reason taken from a peer: the admin API's own bound.
pub use crate::admin::MAX_REASON;

/// Header carrying the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-geode-signature";
/// The path peers post to.
pub const PATH: &str = "/cluster/v1/state";
/// Largest message accepted, bytes (a few thousand endpoints and overrides).
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest difference between the sender's and the receiver's clock, ms.
pub const MAX_SKEW_MS: u64 = 30_000;

/// One instance's state, as sent to its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender's `[cluster] node`.
    pub node: String,
    /// Strictly increasing per sender (microseconds since the epoch at sending, bumped
    /// if the clock did not move), so a restart continues above the last one.
    pub seq: u64,
    /// When it was sent, unix ms.
    pub sent_ms: u64,
    /// The sender's own verdict on each endpoint it probes.
    pub votes: Vec<Vote>,
    /// Every override entry the sender holds; `None` when it has no `[admin]`.
    pub overrides: Option<Vec<Entry>>,
}

/// One endpoint's verdict from one vantage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Region name.
    pub region: String,
    /// Endpoint address as handed out.
    pub endpoint: String,
    /// `up`, `down` or `unknown`.
    pub verdict: Verdict,
}

/// A verdict on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Passing (after rise).
    Up,
    /// Failing (after fall).
    Down,
    /// No result yet.
    Unknown,
}

impl From<Probed> for Verdict {
    fn from(p: Probed) -> Verdict {
        match p {
            Probed::Up => Verdict::Up,
            Probed::Down => Verdict::Down,
            Probed::Unknown => Verdict::Unknown,
        }
    }
}

impl From<Verdict> for Probed {
    fn from(v: Verdict) -> Probed {
        match v {
            Verdict::Up => Probed::Up,
            Verdict::Down => Probed::Down,
            Verdict::Unknown => Probed::Unknown,
        }
    }
}

/// Why a message was refused (nothing in it was used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Missing or wrong signature (HTTP 401).
    Unauthorized,
    /// Signed, but not a message (HTTP 400).
    Malformed,
    /// Claims to come from this very instance: two instances share a node name (HTTP 400).
    OwnName,
    /// Sent too long ago or in the future, or not newer than the last accepted (HTTP 409).
    Replayed,
}

impl Refused {
    /// The `result` label of `geode_cluster_messages_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Unauthorized => "unauthorized",
            Refused::Malformed => "malformed",
            Refused::OwnName => "own_name",
            Refused::Replayed => "replayed",
        }
    }
}

/// Every `result` label value of `geode_cluster_messages_total`.
pub const RESULTS: [&str; 6] = [
    "accepted",
    "unauthorized",
    "malformed",
    "own_name",
    "replayed",
    "too_large",
];

fn key(secret: &Secret) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// The signature header value of `body`: lowercase hex of its HMAC-SHA256.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `signature` (the header value) is the HMAC of `body`. The comparison is
/// aws-lc's constant-time one; only the hex decoding (of what the caller sent) is not.
pub fn verify(secret: &Secret, body: &[u8], signature: &[u8]) -> bool {
    if signature.len() != 64 {
        return false;
    }
    let mut tag = [0u8; 32];
    for (i, pair) in signature.chunks(2).enumerate() {
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        match (hex(pair[0]), hex(pair[1])) {
            (Some(h), Some(l)) => tag[i] = h << 4 | l,
            _ => return false,
        }
    }
    hmac::verify(&key(secret), body, &tag).is_ok()
}

/// Checks a received body (size already bounded) in the order of the module docs, and
/// returns the message when it may be used. `last_seq` is the highest `seq` accepted
/// from the message's sender so far (looked up once the sender is known).
pub fn open(
    secret: &Secret,
    own_node: &str,
    body: &[u8],
    signature: Option<&[u8]>,
    now_ms: u64,
    last_seq: impl FnOnce(&str) -> Option<u64>,
) -> Result<Message, Refused> {
    if !signature.is_some_and(|s| verify(secret, body, s)) {
        return Err(Refused::Unauthorized);
    }
    let msg: Message = serde_json::from_slice(body).map_err(|_| Refused::Malformed)?;
    if msg.node == own_node {
        return Err(Refused::OwnName);
    }
    if msg.sent_ms.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(Refused::Replayed);
    }
    if last_seq(&msg.node).is_some_and(|last| msg.seq <= last) {
        return Err(Refused::Replayed);
    }
    Ok(msg)
}

/// Splits a peer's override entries into those that may be merged and those refused: an
/// entry is refused when its action does not fit its target, its reason or author is
/// too long, or it is dated more than [`MAX_SKEW_MS`] after `now_ms` (it would win over
/// every later change until the clocks caught up).
pub fn acceptable(entries: Vec<Entry>, now_ms: u64) -> (Overrides, Vec<Entry>) {
    let latest = now_ms.saturating_add(MAX_SKEW_MS);
    let mut out = Overrides::new();
    let mut refused = Vec::new();
    for e in entries {
        if !e.action.fits(&e.target)
            || e.reason.len() > MAX_REASON
            || e.author.len() > MAX_AUTHOR
            || e.at > latest
        {
            refused.push(e);
        } else {
            out.apply(e);
        }
    }
    (out, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("0123456789abcdef0123456789abcdef".into())
    }

    fn msg(node: &str, seq: u64, sent_ms: u64) -> Vec<u8> {
        serde_json::to_vec(&Message {
            node: node.into(),
            seq,
            sent_ms,
            votes: vec![Vote {
                region: "eu".into(),
                endpoint: "10.0.0.1".into(),
                verdict: Verdict::Down,
            }],
            overrides: None,
        })
        .unwrap()
    }

    #[test]
    fn a_signed_fresh_message_opens() {
        let body = msg("b", 5, 1_000_000);
        let sig = sign(&secret(), &body);
        let m = open(
            &secret(),
            "a",
            &body,
            Some(sig.as_bytes()),
            1_000_500,
            |_| Some(4),
        )
        .unwrap();
        assert_eq!(m.node, "b");
        assert_eq!(m.votes[0].verdict, Verdict::Down);
        // Upper-case hex is the same signature.
        let upper = sig.to_uppercase();
        assert!(verify(&secret(), &body, upper.as_bytes()));
    }

    #[test]
    fn wrong_missing_or_mangled_signatures_are_unauthorized() {
        let body = msg("b", 5, 1_000_000);
        let other = Secret::new("another-secret-of-enough-bytes!!".into());
        let wrong = sign(&other, &body);
        let good = sign(&secret(), &body);
        let open_with =
            |sig: Option<&[u8]>, body: &[u8]| open(&secret(), "a", body, sig, 1_000_000, |_| None);
        assert_eq!(open_with(None, &body), Err(Refused::Unauthorized));
        assert_eq!(
            open_with(Some(wrong.as_bytes()), &body),
            Err(Refused::Unauthorized)
        );
        assert_eq!(
            open_with(Some(&good.as_bytes()[..63]), &body),
            Err(Refused::Unauthorized)
        );
        assert_eq!(open_with(Some(b"zz"), &body), Err(Refused::Unauthorized));
        let mut nonhex = good.clone().into_bytes();
        nonhex[0] = b'g';
        assert_eq!(open_with(Some(&nonhex), &body), Err(Refused::Unauthorized));
        // One changed byte of the body: the signature no longer fits.
        let mut tampered = body.clone();
        let i = tampered.iter().position(|&b| b == b'5').unwrap();
        tampered[i] = b'6';
        assert_eq!(
            open_with(Some(good.as_bytes()), &tampered),
            Err(Refused::Unauthorized)
        );
        // Signed garbage is malformed, not unauthorized.
        let garbage = b"{\"node\":1}";
        let sig = sign(&secret(), garbage);
        assert_eq!(
            open_with(Some(sig.as_bytes()), garbage),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn replays_old_and_future_messages_and_own_name_are_refused() {
        let s = secret();
        let check = |node: &str, seq: u64, sent: u64, now: u64, last: Option<u64>| {
            let body = msg(node, seq, sent);
            let sig = sign(&s, &body);
            open(&s, "a", &body, Some(sig.as_bytes()), now, |_| last).map(|m| m.seq)
        };
        assert_eq!(
            check("b", 5, 100_000, 100_000, Some(5)),
            Err(Refused::Replayed)
        );
        assert_eq!(
            check("b", 4, 100_000, 100_000, Some(5)),
            Err(Refused::Replayed)
        );
        assert_eq!(check("b", 6, 100_000, 100_000, Some(5)), Ok(6));
        assert_eq!(
            check("b", 6, 100_000, 100_000 + MAX_SKEW_MS + 1, None),
            Err(Refused::Replayed)
        );
        assert_eq!(
            check("b", 6, 100_000 + MAX_SKEW_MS + 1, 100_000, None),
            Err(Refused::Replayed)
        );
        assert_eq!(check("b", 6, 100_000 + MAX_SKEW_MS, 100_000, None), Ok(6));
        assert_eq!(check("a", 6, 100_000, 100_000, None), Err(Refused::OwnName));
    }

    #[test]
    fn peer_overrides_future_dated_unfit_or_oversized_are_refused() {
        use crate::overrides::{Action, Target};
        let drain = |at: u64| Entry {
            target: "drain:eu".parse::<Target>().unwrap(),
            action: Action::Drain,
            reason: String::new(),
            author: "b".into(),
            at,
            expires: None,
        };
        let now = 1_000_000;
        let unfit = Entry {
            action: Action::Weight(3),
            ..drain(now)
        };
        let long = Entry {
            reason: "x".repeat(MAX_REASON + 1),
            ..drain(now)
        };
        let (ok, refused) = acceptable(
            vec![
                drain(now + MAX_SKEW_MS + 1),
                unfit.clone(),
                long.clone(),
                drain(now - 5),
            ],
            now,
        );
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert_eq!(ok.len(), 1);
        assert_eq!(ok.entries().next().unwrap().at, now - 5);
        // Latest per target among the accepted, as the merge would pick.
        let (ok, _) = acceptable(vec![drain(now - 5), drain(now + MAX_SKEW_MS)], now);
        assert_eq!(ok.entries().next().unwrap().at, now + MAX_SKEW_MS);
    }
}
