//! The UDP server: one OS thread per SO_REUSEPORT socket, blocking receive, reused
//! buffers. Each packet tries the answer cache, the fast path (with its route memo), then
//! the ordinary path (`Handler::ordinary_udp`: hickory decoding, our answer and encoder).
//!
//! Threads instead of tokio tasks: measured 1.6-1.8x the queries per core of
//! hickory-server's UDP loop on this workload (no task spawn, no channel hop per query;
//! see CRATES.md 5.2 and README "Performance").
//!
//! On Linux the loop batches, as gdnsd does: one recvmmsg takes every queued query (up to
//! `BATCH`), one sendmmsg returns all their answers. With a recv_from and a send_to per
//! query, syscall entry/exit was a large share of the CPU per query; under load a batch
//! pays it once for many queries, and a lone query is still answered at once
//! (MSG_WAITFORONE never waits to fill a batch). The unsafe FFI lives in `super::mmsg`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Handler;
use super::cache::AnswerCache;
use super::fast::{self, Fast};
use crate::metrics::Metrics;
use crate::model::health_epoch;
use crate::route::RouteMemo;
use crate::snapshot::{Shared, Snapshot};

/// Largest datagram accepted; bigger ones are cut by the kernel and then malformed.
const MAX_QUERY: usize = 4096;

/// Datagrams per recvmmsg/sendmmsg. 32 already spreads a syscall over enough queries that
/// its cost per query is small, while the receive buffers (32 x `MAX_QUERY` = 128 KiB per
/// thread) stay cache-sized and the first query of a full batch waits for at most 31 others.
#[cfg(target_os = "linux")]
const BATCH: usize = 32;

/// How often a blocked receive wakes to notice a shutdown.
const POLL: Duration = Duration::from_millis(200);

/// Serves one socket until `stop` is set.
pub fn spawn(
    sock: UdpSocket,
    shared: Shared,
    handler: Handler,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(POLL))?;
    std::thread::Builder::new()
        .name("geode-udp".into())
        .spawn(move || serve(&sock, &shared, &handler, &metrics, &stop))
}

/// Answers datagrams for one receive loop: from its answer cache, else by the fast path,
/// else by the ordinary path. One per thread, so the cache needs no lock.
#[derive(Debug, Default)]
pub struct Responder {
    cache: Option<AnswerCache>,
    /// Nearest-region decisions by client place, for the fast path's cache misses.
    memo: RouteMemo,
    /// The fast path's working memory, kept so it is not zeroed per query.
    scratch: fast::Scratch,
    /// Snapshot generation whose `answer_cache_bytes` sized `cache`.
    sized_for: u64,
    /// That snapshot signs a zone, so its replies may carry signature dates and the
    /// cache must follow the DNSSEC validity slot (which costs a clock read a query).
    signs: bool,
    hits: u64,
    misses: u64,
}

impl Responder {
    /// A responder whose cache is sized by the first snapshot it answers from.
    pub fn new() -> Self {
        Responder::default()
    }

    /// Answers one datagram into `out`; false (and `out` empty) when it gets no reply.
    // Inlined into the receive loop, so the source address is not built in memory to be
    // passed (the fast path's own call stays).
    #[inline(always)]
    pub fn answer(
        &mut self,
        snap: &Arc<Snapshot>,
        handler: &Handler,
        metrics: &Metrics,
        packet: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        // Port 0 cannot be answered; nor can what `rules::unanswerable` names.
        if src.port() == 0 {
            out.clear();
            return false;
        }
        if let Some(why) = super::rules::unanswerable(packet) {
            handler.report(why);
            out.clear();
            return false;
        }
        if self.sized_for != snap.generation {
            self.resize(snap);
        }
        let key = &packet[2..];
        let mut miss = None;
        if let Some(cache) = &mut self.cache {
            // The epoch is read before the fast path reads any health state (see `sync`).
            // Without a signed zone no reply holds signature dates: slot 0 throughout,
            // and no clock read (~70 instructions a query). Signing comes and goes
            // only with a new snapshot, which empties the cache anyway.
            let slot = if self.signs {
                crate::dnssec::slot(crate::dnssec::now())
            } else {
                0
            };
            cache.sync(snap.generation, health_epoch(), slot);
            match cache.get(key, src.ip(), [packet[0], packet[1]], out) {
                Ok(tally) => {
                    self.hits += 1;
                    tally.count(snap, metrics);
                    return true;
                }
                Err(m) => {
                    self.misses += 1;
                    miss = Some(m);
                }
            }
        }
        let reply = match fast::answer_with(
            &mut self.scratch,
            snap,
            metrics,
            &mut self.memo,
            packet,
            src.ip(),
            out,
        ) {
            Fast::Reply(tally) => {
                if let (Some(cache), Some(miss)) = (&mut self.cache, miss) {
                    cache.put(miss, key, src.ip(), out, tally);
                }
                true
            }
            Fast::Fallback => {
                let (said, tally) = handler.ordinary_udp_tallied(snap, packet, src, out);
                // Signed answers are kept too: a validating resolver sets DO on every
                // query, and they are as exact as the fast path's (see `cache`).
                if let (Some(cache), Some(miss), Some(tally)) = (&mut self.cache, miss, tally) {
                    cache.put(miss, key, src.ip(), out, tally);
                }
                said
            }
        };
        if !reply {
            out.clear();
        }
        reply
    }

    /// Lets go of anything that keeps a snapshot other than `current` alive (the fast
    /// path's cached overrides): for a loop with nothing to answer after a reload.
    pub fn idle(&mut self, current: &Snapshot) {
        self.scratch.release_stale(current);
    }

    /// Follows `server.answer_cache_kib` across reloads: a new size gets a new cache.
    fn resize(&mut self, snap: &Snapshot) {
        self.sized_for = snap.generation;
        self.signs = snap.zones.zones.iter().any(|z| z.signer.is_some());
        self.scratch.release_stale(snap);
        let want = snap.model.server.live.answer_cache_bytes;
        let have = self.cache.as_ref().map(|c| c.capacity());
        if want == 0 {
            self.cache = None;
        } else if have != Some(AnswerCache::new_capacity(want)) {
            self.cache = Some(AnswerCache::new(want));
        }
    }

    /// Adds this loop's cache hits and misses to the shared counters: once per batch
    /// rather than per query, so threads do not contend on them.
    pub fn flush(&mut self, metrics: &Metrics) {
        if self.hits > 0 {
            metrics.answer_cache_hit.inc_by(self.hits);
            self.hits = 0;
        }
        if self.misses > 0 {
            metrics.answer_cache_miss.inc_by(self.misses);
            self.misses = 0;
        }
    }
}

/// One socket's loop: a recvmmsg batch in, every answer of it out in sendmmsg.
#[cfg(target_os = "linux")]
fn serve(
    sock: &UdpSocket,
    shared: &Shared,
    handler: &Handler,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    // Allocated once per thread: BATCH receive buffers and BATCH reply buffers.
    let mut batch = super::mmsg::Batch::new(BATCH, MAX_QUERY);
    let mut responder = Responder::new();
    // The snapshot is kept between batches and only revalidated: one relaxed load of the
    // shared pointer while it is unchanged, where a `load` took a hazard slot each batch
    // (~50 instructions a query at one datagram a batch). A new snapshot is taken by the
    // next batch (arc-swap's `load_full` then synchronises its contents); an old one is
    // released at the latest when the receive timeout next wakes the loop.
    let mut current = arc_swap::Cache::new(Arc::clone(shared));
    while !stop.load(Ordering::Relaxed) {
        // Timeout (EAGAIN, to look at `stop`), EINTR, or a transient error: go round.
        let Ok(n) = batch.recv(sock) else {
            responder.idle(current.load());
            continue;
        };
        {
            // One snapshot per batch: the queries of one burst see the same config.
            let snap = current.load();
            for i in 0..n {
                let (packet, src, out) = batch.slot(i);
                match src {
                    Some(src) => {
                        responder.answer(snap, handler, metrics, packet, src, out);
                    }
                    None => out.clear(),
                }
            }
        }
        // Before sending, so whoever has an answer sees it counted.
        responder.flush(metrics);
        batch.send(sock);
    }
}

/// One socket's loop without recvmmsg/sendmmsg: a datagram at a time.
#[cfg(not(target_os = "linux"))]
fn serve(
    sock: &UdpSocket,
    shared: &Shared,
    handler: &Handler,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; MAX_QUERY];
    let mut out = Vec::with_capacity(1232);
    let mut responder = Responder::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let snap = shared.load();
        let reply = responder.answer(&snap, handler, metrics, &buf[..len], src, &mut out);
        responder.flush(metrics);
        if reply {
            let _ = sock.send_to(&out, src);
        }
    }
}
