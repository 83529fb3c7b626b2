//! DNS over TCP (RFC 7766) with our own accept loop, because hickory-server's TCP
//! listener has no connection cap. Each message is answered synchronously by
//! [`Handler::ordinary`], the same code as the UDP ordinary path, without a size limit.
//!
//! - Pipelined queries on one connection are read and answered in order (RFC 7766 6.2.1).
//! - A connection idle longer than the idle timeout is closed (RFC 7766 6.2.3).
//! - At the connection cap, the connection idle the longest is closed to make room, so
//!   clients that open connections and send nothing cannot lock others out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tracing::debug;

use super::Handler;
use super::malformed::Malformed;
use super::rules;
use crate::metrics::Proto;

/// The bare FORMERR, kept under its old path.
pub use super::formerr;

struct Conn {
    last_active: Arc<AtomicU64>,
    kill: Arc<Notify>,
}

/// Live connections, for the cap and idle eviction. Touched per connection, never per query.
#[derive(Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Conn>,
}

/// Accepts and serves TCP connections until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    idle: Duration,
    max_conns: usize,
    mut stop: watch::Receiver<bool>,
) {
    let epoch = Instant::now();
    let table = Arc::new(Mutex::new(Table::default()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    debug!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let last_active = Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64));
        let kill = Arc::new(Notify::new());
        let id = {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            if t.conns.len() >= max_conns {
                let oldest = t
                    .conns
                    .iter()
                    .min_by_key(|(_, c)| c.last_active.load(Ordering::Relaxed))
                    .map(|(id, c)| (*id, c.kill.clone()));
                if let Some((oid, k)) = oldest {
                    k.notify_one();
                    t.conns.remove(&oid);
                }
            }
            t.next += 1;
            let id = t.next;
            t.conns.insert(
                id,
                Conn {
                    last_active: last_active.clone(),
                    kill: kill.clone(),
                },
            );
            id
        };
        let (handler, table, stop) = (handler.clone(), table.clone(), stop.clone());
        tokio::spawn(async move {
            connection(stream, peer, handler, idle, last_active, kill, epoch, stop).await;
            table
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .conns
                .remove(&id);
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    idle: Duration,
    last_active: Arc<AtomicU64>,
    kill: Arc<Notify>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let len = (msg.len() as u16).to_be_bytes();
            // A client that stops reading must not pin the connection: a write that makes
            // no progress for the idle timeout ends it (RFC 7766 6.2.3 / 6.2.4).
            let write = async {
                wr.write_all(&len).await?;
                wr.write_all(&msg).await
            };
            if !matches!(tokio::time::timeout(idle, write).await, Ok(Ok(()))) {
                break;
            }
        }
        let _ = tokio::time::timeout(idle, wr.shutdown()).await;
    });
    loop {
        let mut len = [0u8; 2];
        let read = async {
            rd.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::select! {
            _ = kill.notified() => break,
            _ = stop.changed() => break,
            // The writer gave up on a client that does not read.
            _ = tx.closed() => break,
            r = tokio::time::timeout(idle, read) => match r {
                Ok(Ok(b)) => b,
                _ => break,
            },
        };
        last_active.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        match rules::unanswerable(&buf) {
            // Shorter than a header: nothing to answer, and the stream is not DNS.
            Some(why @ Malformed::Short) => {
                handler.report(why);
                break;
            }
            // A response sent to us: never answer (reflection).
            Some(why) => {
                handler.report(why);
                continue;
            }
            None => {}
        }
        let mut out = Vec::with_capacity(512);
        let snap = handler.snapshot();
        if !handler.ordinary(&snap, &buf, peer, Proto::Tcp, &mut out) {
            continue;
        }
        drop(snap);
        // Waiting for room in the writer's queue is bounded too: eviction, shutdown and
        // a writer that gave up all end the connection here.
        tokio::select! {
            _ = kill.notified() => break,
            _ = stop.changed() => break,
            r = tx.send(out) => if r.is_err() { break },
        }
    }
    drop(tx);
    let _ = writer.await;
}
