//! The fleet (`[cluster]`): instances share their own health verdicts and their override
//! sets with a short static list of peers, with no coordinator.
//!
//! ```text
//!  probe flip ─► HealthTable ─► Vantages::own_changed ─► wake the sender
//!  admin change / merge ─► AdminStore::changed ─────────► wake the sender
//!  sender: on wake, and every stale_after/4 ─► Message (own votes + override set)
//!          ─► HMAC-SHA256 ─► POST http://PEER/cluster/v1/state (each peer, 1 s timeout)
//!  POST /cluster/v1/state ─► wire::open (size, signature, replay) ─► peer's votes kept
//!          ─► HealthTable::recombine (votes::combine per endpoint ─► cells ─► epoch)
//!          ─► AdminStore::merge_remote (overrides::merge ─► state file ─► view)
//!  ticker every stale_after/4 ─► recombine (stale peers stop voting), gauges
//! ```
//!
//! Transport is the admin HTTP server (axum) and a reqwest client, both already here: a
//! fleet is a handful of instances listed in the config, so there is nothing to discover
//! (no gossip library) and nothing to agree on (no consensus): every vote is one
//! instance's own observation, and every override merge is commutative.

pub mod votes;
pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::admin::{AdminStore, now_ms};
use crate::health::{HealthTable, VantageVote, Vantages};
use crate::metrics::Metrics;
use crate::model::{ClusterHealth, ClusterSettings, Probed};
use crate::overrides::{Entry, Overrides};
use crate::snapshot::Shared;
use wire::{Message, Refused, Verdict, Vote};

/// Whether the `peers` entry `peer` is this instance, whose admin listener bound `own`:
/// the same port, and the same address or, when listening on every address of a family
/// (`0.0.0.0`, or `::`, which takes IPv4 too), an address of this host (loopback, or one
/// a socket can be bound to here). Operators often give every instance the same list of
/// all of them; pushing to itself would only be refused (own node name).
pub fn is_own_listener(own: SocketAddr, peer: SocketAddr) -> bool {
    if own.port() != peer.port() {
        return false;
    }
    if own.ip() == peer.ip() {
        return true;
    }
    let family_listens = match own.ip() {
        IpAddr::V4(a) => a.is_unspecified() && peer.is_ipv4(),
        IpAddr::V6(a) => a.is_unspecified(),
    };
    family_listens
        && (peer.ip().is_loopback()
            || peer.ip().is_unspecified()
            || std::net::UdpSocket::bind((peer.ip(), 0)).is_ok())
}

/// How long a push to one peer may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// A running instance's view of its fleet.
pub struct Cluster {
    settings: ClusterSettings,
    health: Arc<HealthTable>,
    admin: Option<Arc<AdminStore>>,
    shared: Shared,
    metrics: Arc<Metrics>,
    /// The `peers` entries that name this very instance (see [`is_own_listener`]): not
    /// sent to, so one `peers` list can be copied to every instance.
    selves: Vec<SocketAddr>,
    peers: Mutex<HashMap<String, Peer>>,
    /// Last `seq` sent.
    seq: AtomicU64,
    /// Wakes the sender (own verdict changed).
    wake: Notify,
    /// Messages refused so far (for the rate-limited log line).
    refused: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What this instance last heard from one peer (by node name).
struct Peer {
    last_seq: u64,
    heard: Instant,
    /// (region, endpoint) -> the peer's own verdict.
    votes: HashMap<(String, String), Probed>,
}

impl Cluster {
    /// The fleet of `settings`; attaches itself to `health` so every verdict from now on
    /// is combined. Start its tasks with [`Cluster::spawn`].
    /// `own_http` is the address the admin listener bound, if any: a `peers` entry
    /// naming it is this instance and is skipped (logged once, here).
    pub fn new(
        settings: ClusterSettings,
        health: Arc<HealthTable>,
        admin: Option<Arc<AdminStore>>,
        shared: Shared,
        metrics: Arc<Metrics>,
        own_http: Option<SocketAddr>,
    ) -> Arc<Cluster> {
        for r in wire::RESULTS {
            metrics.cluster_messages.with_label_values(&[r]);
        }
        let selves: Vec<SocketAddr> = settings
            .peers
            .iter()
            .copied()
            .filter(|&p| own_http.is_some_and(|own| is_own_listener(own, p)))
            .collect();
        for p in &selves {
            info!(
                peer = %p,
                "cluster: this peers entry is this instance's own http_listen; not sending to itself"
            );
        }
        for p in settings.peers.iter().filter(|p| !selves.contains(p)) {
            metrics
                .cluster_peer_up
                .with_label_values(&[p.to_string().as_str()])
                .set(0);
        }
        info!(
            node = %settings.node,
            peers = ?settings.peers,
            health = settings.health.name(),
            stale_after = ?settings.stale_after,
            "cluster enabled"
        );
        let cluster = Arc::new(Cluster {
            settings,
            health: health.clone(),
            admin,
            shared,
            metrics,
            selves,
            peers: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            wake: Notify::new(),
            refused: AtomicU64::new(0),
        });
        health.attach_vantages(cluster.clone());
        cluster
    }

    /// The settings it runs with (start-only).
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How often the whole state is re-sent and staleness re-checked.
    fn refresh(&self) -> Duration {
        (self.settings.stale_after / 4).max(Duration::from_millis(50))
    }

    fn fresh(&self, p: &Peer, now: Instant) -> bool {
        now.saturating_duration_since(p.heard) < self.settings.stale_after
    }

    /// Starts the sender and the staleness ticker.
    pub fn spawn(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let sender = {
            let c = self.clone();
            tokio::spawn(async move { c.send_loop().await })
        };
        let ticker = {
            let c = self.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(c.refresh());
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    c.health.recombine();
                    c.publish_votes();
                }
            })
        };
        vec![sender, ticker]
    }

    async fn send_loop(self: Arc<Self>) {
        let client = match reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .connect_timeout(PUSH_TIMEOUT)
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cluster: cannot build the HTTP client; not sending to peers");
                return;
            }
        };
        // Per peer: when its last push was accepted.
        let accepted: Arc<Mutex<HashMap<SocketAddr, Instant>>> = Arc::default();
        let mut in_flight: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
        loop {
            let (body, signature) = self.message();
            let now = Instant::now();
            for &peer in &self.settings.peers {
                if self.selves.contains(&peer) {
                    continue;
                }
                let ok = accepted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&peer)
                    .is_some_and(|t| now.saturating_duration_since(*t) < self.settings.stale_after);
                self.metrics
                    .cluster_peer_up
                    .with_label_values(&[peer.to_string().as_str()])
                    .set(i64::from(ok));
                // One push in flight per peer: a peer that hangs does not pile them up.
                if in_flight.get(&peer).is_some_and(|h| !h.is_finished()) {
                    continue;
                }
                let req = client
                    .post(format!("http://{peer}{}", wire::PATH))
                    .header(wire::SIGNATURE_HEADER, signature.clone())
                    .header("content-type", "application/json")
                    .body(body.clone());
                let accepted = accepted.clone();
                in_flight.insert(
                    peer,
                    tokio::spawn(async move {
                        match req.send().await {
                            Ok(r) if r.status().is_success() => {
                                accepted
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(peer, Instant::now());
                            }
                            Ok(r) => debug!(%peer, status = %r.status(), "cluster push refused"),
                            Err(e) => debug!(%peer, error = %e, "cluster push failed"),
                        }
                    }),
                );
            }
            let admin_changed = async {
                match &self.admin {
                    Some(a) => a.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(self.refresh()) => {}
                _ = self.wake.notified() => {}
                _ = admin_changed => {}
            }
        }
    }

    /// This instance's state as a signed message: (body, signature header).
    fn message(&self) -> (Vec<u8>, String) {
        let votes = self
            .health
            .own_verdicts()
            .into_iter()
            .map(|(region, endpoint, p)| Vote {
                region,
                endpoint,
                verdict: p.into(),
            })
            .collect();
        let overrides = self
            .admin
            .as_ref()
            .map(|a| a.overrides().entries().cloned().collect());
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        // Strictly increasing even if the clock did not move or stepped back.
        let prev = self.seq.fetch_max(micros, Ordering::SeqCst);
        let seq = if micros > prev {
            micros
        } else {
            self.seq.fetch_add(1, Ordering::SeqCst) + 1
        };
        let msg = Message {
            node: self.settings.node.clone(),
            seq,
            sent_ms: now_ms(),
            votes,
            overrides,
        };
        let body = serde_json::to_vec(&msg).unwrap_or_default();
        let signature = wire::sign(&self.settings.secret, &body);
        (body, signature)
    }

    /// Handles one received body; returns the HTTP status and counts the result.
    fn receive(&self, body: &[u8], signature: Option<&[u8]>, from: SocketAddr) -> StatusCode {
        let opened = wire::open(
            &self.settings.secret,
            &self.settings.node,
            body,
            signature,
            now_ms(),
            |node| self.lock().get(node).map(|p| p.last_seq),
        );
        let msg = match opened {
            Ok(m) => m,
            Err(why) => {
                self.metrics
                    .cluster_messages
                    .with_label_values(&[why.label()])
                    .inc();
                // Logged at the 1st, 2nd, 4th, 8th... refusal: a misconfigured peer is
                // visible, and an attacker cannot fill the log.
                let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(%from, reason = why.label(), refused_so_far = n, "cluster message refused (geode_cluster_messages_total counts every one)");
                }
                return match why {
                    Refused::Unauthorized => StatusCode::UNAUTHORIZED,
                    Refused::Malformed | Refused::OwnName => StatusCode::BAD_REQUEST,
                    Refused::Replayed => StatusCode::CONFLICT,
                };
            }
        };
        self.metrics
            .cluster_messages
            .with_label_values(&["accepted"])
            .inc();
        let Message {
            node,
            seq,
            votes,
            overrides,
            ..
        } = msg;
        let votes: HashMap<(String, String), Probed> = votes
            .into_iter()
            .map(|v| ((v.region, v.endpoint), Probed::from(v.verdict)))
            .collect();
        {
            let mut peers = self.lock();
            // Checked again under the lock: two messages from one sender may race.
            if peers.get(&node).is_some_and(|p| seq <= p.last_seq) {
                return StatusCode::CONFLICT;
            }
            if !peers.contains_key(&node) {
                info!(peer = %node, %from, "cluster: first message from a peer");
            }
            peers.insert(
                node.clone(),
                Peer {
                    last_seq: seq,
                    heard: Instant::now(),
                    votes,
                },
            );
        }
        self.health.recombine();
        self.publish_votes();
        if let (Some(store), Some(entries)) = (&self.admin, overrides) {
            let remote = self.acceptable(entries, &node);
            store.merge_remote(&self.shared, remote, &node);
        }
        StatusCode::OK
    }

    /// A peer's entries that may be merged ([`wire::acceptable`]); the others are logged.
    fn acceptable(&self, entries: Vec<Entry>, peer: &str) -> Overrides {
        let (out, refused) = wire::acceptable(entries, now_ms());
        for e in refused {
            warn!(%peer, "target" = %e.target, at = e.at, "override from a peer refused: does not fit its target, too long, or dated in the future");
        }
        out
    }

    /// `geode_endpoint_votes`: fresh vantages per verdict, own included.
    fn publish_votes(&self) {
        let own = self.health.own_verdicts();
        let now = Instant::now();
        let peers = self.lock();
        for (region, endpoint, mine) in own {
            let mut counts = [0i64; 3];
            let key = (region, endpoint);
            let fresh = peers
                .values()
                .filter(|p| self.fresh(p, now))
                .filter_map(|p| p.votes.get(&key).copied());
            for v in std::iter::once(mine).chain(fresh) {
                counts[match v {
                    Probed::Up => 0,
                    Probed::Down => 1,
                    Probed::Unknown => 2,
                }] += 1;
            }
            for (verdict, n) in ["up", "down", "unknown"].iter().zip(counts) {
                self.metrics
                    .endpoint_votes
                    .with_label_values(&[key.0.as_str(), key.1.as_str(), verdict])
                    .set(n);
            }
        }
    }

    /// The router for `/cluster/v1/`, mounted on the admin listener.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(wire::PATH, post(receive))
            // Our own bound replaces axum's default 2 MB one; larger bodies get 413.
            .layer(DefaultBodyLimit::max(wire::MAX_MESSAGE))
            .with_state(self.clone())
    }

    /// The `cluster` section of `/status`: settings (never the secret) and every peer.
    pub fn status(&self) -> serde_json::Value {
        let now = Instant::now();
        let peers = self.lock();
        let mut heard: Vec<_> = peers
            .iter()
            .map(|(node, p)| {
                json!({
                    "node": node,
                    "age_s": now.saturating_duration_since(p.heard).as_secs_f64(),
                    "fresh": self.fresh(p, now),
                })
            })
            .collect();
        heard.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
        json!({
            "node": self.settings.node,
            "peers": self.settings.peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "self_in_peers": self.selves.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "health": self.settings.health.name(),
            "stale_after_s": self.settings.stale_after.as_secs_f64(),
            "heard": heard,
        })
    }
}

impl Vantages for Cluster {
    fn combined(&self, region: &str, endpoint: &str, own: Probed) -> Probed {
        if self.settings.health == ClusterHealth::Local {
            return own;
        }
        let key = (region.to_string(), endpoint.to_string());
        let now = Instant::now();
        let peers = self.lock();
        let fresh = peers
            .values()
            .filter(|p| self.fresh(p, now))
            .filter_map(|p| p.votes.get(&key).copied());
        votes::combine(self.settings.health, own, fresh)
    }

    fn votes(&self, region: &str, endpoint: &str) -> Vec<VantageVote> {
        let key = (region.to_string(), endpoint.to_string());
        let now = Instant::now();
        let peers = self.lock();
        let mut out: Vec<_> = peers
            .iter()
            .filter_map(|(node, p)| {
                let v = p.votes.get(&key)?;
                Some(VantageVote {
                    node: node.clone(),
                    state: match Verdict::from(*v) {
                        Verdict::Up => "up",
                        Verdict::Down => "down",
                        Verdict::Unknown => "unknown",
                    },
                    age_s: now.saturating_duration_since(p.heard).as_secs_f64(),
                    fresh: self.fresh(p, now),
                })
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    fn own_changed(&self) {
        self.publish_votes();
        self.wake.notify_one();
    }
}

async fn receive(
    State(cluster): State<Arc<Cluster>>,
    axum::extract::ConnectInfo(from): axum::extract::ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(_) => {
            cluster
                .metrics
                .cluster_messages
                .with_label_values(&["too_large"])
                .inc();
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes\n", wire::MAX_MESSAGE),
            )
                .into_response();
        }
    };
    let signature = headers
        .get(wire::SIGNATURE_HEADER)
        .map(|v| v.as_bytes().to_vec());
    // A merge of a peer's overrides writes and fsyncs the state file: off the runtime's
    // worker threads.
    let status =
        tokio::task::spawn_blocking(move || cluster.receive(&body, signature.as_deref(), from))
            .await
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, status.canonical_reason().unwrap_or("").to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::is_own_listener;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peers_entry_is_this_instance_only_at_its_own_listener() {
        // (own listener, peers entry, is it this instance)
        let cases = [
            ("127.0.0.1:9153", "127.0.0.1:9153", true),
            ("127.0.0.1:9153", "127.0.0.1:9154", false),
            // Bound to one address: another address of the host is another listener.
            ("127.0.0.1:9153", "127.0.0.2:9153", false),
            ("0.0.0.0:9153", "127.0.0.5:9153", true),
            ("0.0.0.0:9153", "0.0.0.0:9153", true),
            // Not an address of this host (TEST-NET-1): another instance.
            ("0.0.0.0:9153", "192.0.2.7:9153", false),
            ("0.0.0.0:9154", "127.0.0.1:9153", false),
            // An IPv4 wildcard does not take IPv6; the IPv6 one takes both.
            ("0.0.0.0:9153", "[::1]:9153", false),
            ("[::]:9153", "[::1]:9153", true),
            ("[::]:9153", "127.0.0.1:9153", true),
            ("[::]:9153", "[2001:db8::7]:9153", false),
        ];
        for (own, peer, want) in cases {
            assert_eq!(is_own_listener(a(own), a(peer)), want, "{own} / {peer}");
        }
    }
}
