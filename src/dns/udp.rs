//! The UDP server: one OS thread per SO_REUSEPORT socket, blocking receive, a reused
//! buffer pair. Each packet tries the fast path, then the ordinary hickory path.
//!
//! Threads instead of tokio tasks: measured 1.6-1.8x the queries per core of
//! hickory-server's UDP loop on this workload (no task spawn, no channel hop per query;
//! see CRATES.md 5.2 and README "Performance").

use std::net::{SocketAddr, UdpSocket};
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
        .spawn(move || {
            let mut buf = vec![0u8; MAX_QUERY];
            let mut out = Vec::with_capacity(1232);
            while !stop.load(Ordering::Relaxed) {
                let (len, src): (usize, SocketAddr) = match sock.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(_) => continue,
                };
                // Port 0 cannot be answered; a response-to-a-response invites reflection.
                if src.port() == 0 || len < 12 || buf[2] & 0x80 != 0 {
                    continue;
                }
                let packet = &buf[..len];
                let snap = shared.load();
                let reply = match fast::answer(&snap, &metrics, packet, src.ip(), &mut out) {
                    Fast::Reply => true,
                    Fast::Fallback => handler.ordinary_udp(&snap, packet, src, &mut out),
                };
                if reply {
                    let _ = sock.send_to(&out, src);
                }
            }
        })
}
