//! The UDP server: one OS thread per SO_REUSEPORT socket, blocking receive, reused
//! buffers. Each packet tries the fast path, then the ordinary hickory path.
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

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Handler;
use super::fast::{self, Fast};
use crate::metrics::Metrics;
use crate::snapshot::Shared;

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

/// Answers one datagram into `out`; false (and `out` empty) when it gets no reply.
fn answer(
    snap: &crate::snapshot::Snapshot,
    handler: &Handler,
    metrics: &Metrics,
    packet: &[u8],
    src: std::net::SocketAddr,
    out: &mut Vec<u8>,
) -> bool {
    // Port 0 cannot be answered; a response-to-a-response invites reflection.
    if src.port() == 0 || packet.len() < 12 || packet[2] & 0x80 != 0 {
        out.clear();
        return false;
    }
    let reply = match fast::answer(snap, metrics, packet, src.ip(), out) {
        Fast::Reply => true,
        Fast::Fallback => handler.ordinary_udp(snap, packet, src, out),
    };
    if !reply {
        out.clear();
    }
    reply
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
    while !stop.load(Ordering::Relaxed) {
        // Timeout (EAGAIN, to look at `stop`), EINTR, or a transient error: go round.
        let Ok(n) = batch.recv(sock) else {
            continue;
        };
        {
            // One snapshot per batch: the queries of one burst see the same config.
            let snap = shared.load();
            for i in 0..n {
                let (packet, src, out) = batch.slot(i);
                match src {
                    Some(src) => {
                        answer(&snap, handler, metrics, packet, src, out);
                    }
                    None => out.clear(),
                }
            }
        }
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
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let snap = shared.load();
        if answer(&snap, handler, metrics, &buf[..len], src, &mut out) {
            let _ = sock.send_to(&out, src);
        }
    }
}
