//! Binding: N SO_REUSEPORT UDP sockets per address (one receive loop each) served by
//! hickory-server, plus our TCP accept loop on the same address.

use std::io;
use std::net::SocketAddr;

use hickory_server::Server;
use socket2::{Domain, Protocol as SockProto, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
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
    server: Server<Handler>,
    tcp_tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProto::UDP))?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Bursts of queries must not overflow the kernel queue; 4 MiB is bounded by
    // net.core.rmem_max anyway, so a failure here is harmless.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
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

/// Binds every `dns_listen` address for UDP and TCP and starts serving. Logs one
/// `listening on udp|tcp ADDR` line per bound address with the real port.
pub fn bind(settings: &ServerSettings, handler: Handler) -> io::Result<Listeners> {
    let per_addr = match settings.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut server = Server::new(handler.clone());
    let (stop, stop_rx) = watch::channel(false);
    let mut out = Listeners {
        udp: Vec::new(),
        tcp: Vec::new(),
        server: Server::new(handler.clone()),
        tcp_tasks: Vec::new(),
        stop,
    };
    for &addr in &settings.dns_listen {
        // Port 0 picks a port for the first socket; the rest share it, and so does TCP.
        let first = udp_socket(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("bind udp {addr}: {e}")))?;
        let bound = first.local_addr()?;
        server.register_socket(first);
        for _ in 1..per_addr {
            server.register_socket(udp_socket(bound)?);
        }
        info!("listening on udp {bound}");
        out.udp.push(bound);
        let tcp = tcp_listener(bound)
            .map_err(|e| io::Error::new(e.kind(), format!("bind tcp {bound}: {e}")))?;
        let tbound = tcp.local_addr()?;
        info!("listening on tcp {tbound}");
        out.tcp.push(tbound);
        out.tcp_tasks.push(tokio::spawn(super::tcp::serve(
            tcp,
            handler.clone(),
            settings.tcp_idle_timeout,
            settings.tcp_max_connections,
            stop_rx.clone(),
        )));
    }
    out.server = server;
    Ok(out)
}

impl Listeners {
    /// Stops accepting, lets in-flight queries finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = self.server.shutdown_gracefully().await;
        for t in self.tcp_tasks {
            let _ = t.await;
        }
    }
}
