//! Binding: N SO_REUSEPORT UDP sockets per address (one receive thread each, see
//! `udp`), plus our TCP accept loop on the same address.

use std::io;
use std::net::SocketAddr;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol as SockProto, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use super::Handler;
use crate::model::ServerSettings;

/// Bound DNS sockets and the tasks serving them.
pub struct Listeners {
    /// Bound UDP addresses (real ports).
    pub udp: Vec<SocketAddr>,
    /// Bound TCP addresses (real ports).
    pub tcp: Vec<SocketAddr>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    udp_stop: Arc<AtomicBool>,
    tcp_tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProto::UDP))?;
    s.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Bursts of queries must not overflow the kernel queue; 4 MiB is bounded by
    // net.core.rmem_max anyway, so a failure here is harmless.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProto::TCP),
    )?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Binds the UDP socket(s) and the TCP listener of one address.
///
/// With port 0 the kernel may hand out a UDP port that another process of the same user
/// holds with SO_REUSEPORT, and the two would silently share it. So port 0 binds one
/// exclusive UDP socket (tests and ad-hoc runs need no more), then TCP on the same port,
/// retrying when that TCP port is taken.
fn bind_pair(
    addr: SocketAddr,
    per_addr: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let udp_err = |e: io::Error| io::Error::new(e.kind(), format!("bind udp {addr}: {e}"));
    if addr.port() != 0 {
        let mut socks = Vec::with_capacity(per_addr);
        for _ in 0..per_addr.max(1) {
            socks.push(udp_socket(addr, true).map_err(udp_err)?);
        }
        let tcp = tcp_listener(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("bind tcp {addr}: {e}")))?;
        return Ok((socks, tcp));
    }
    let mut last = None;
    for _ in 0..16 {
        let udp = udp_socket(addr, false).map_err(udp_err)?;
        let bound = udp.local_addr()?;
        match tcp_listener(bound) {
            Ok(tcp) => return Ok((vec![udp], tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(io::Error::new(e.kind(), format!("bind tcp {bound}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other(format!("no free port for {addr}"))))
}

/// Binds every `dns_listen` address for UDP and TCP and starts serving. Logs one
/// `listening on udp|tcp ADDR` line per bound address with the real port.
pub fn bind(
    settings: &ServerSettings,
    handler: Handler,
    shared: crate::snapshot::Shared,
    metrics: Arc<crate::metrics::Metrics>,
) -> io::Result<Listeners> {
    let per_addr = match settings.start.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (stop, stop_rx) = watch::channel(false);
    let mut out = Listeners {
        udp: Vec::new(),
        tcp: Vec::new(),
        udp_threads: Vec::new(),
        udp_stop: Arc::new(AtomicBool::new(false)),
        tcp_tasks: Vec::new(),
        stop,
    };
    for &addr in &settings.start.dns_listen {
        let (socks, tcp) = bind_pair(addr, per_addr)?;
        let bound = socks[0].local_addr()?;
        for sock in socks {
            out.udp_threads.push(super::udp::spawn(
                sock,
                shared.clone(),
                handler.clone(),
                metrics.clone(),
                out.udp_stop.clone(),
            )?);
        }
        info!("listening on udp {bound}");
        out.udp.push(bound);
        let tbound = tcp.local_addr()?;
        info!("listening on tcp {tbound}");
        out.tcp.push(tbound);
        out.tcp_tasks.push(tokio::spawn(super::tcp::serve(
            tcp,
            handler.clone(),
            settings.start.tcp_idle_timeout,
            settings.start.tcp_max_connections,
            stop_rx.clone(),
        )));
    }
    Ok(out)
}

impl Listeners {
    /// Stops accepting, lets in-flight queries finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.udp_stop.store(true, Ordering::Relaxed);
        let threads = self.udp_threads;
        let _ = tokio::task::spawn_blocking(move || {
            threads.into_iter().for_each(|t| {
                let _ = t.join();
            })
        })
        .await;
        for t in self.tcp_tasks {
            let _ = t.await;
        }
    }
}
