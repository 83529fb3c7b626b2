//! recvmmsg(2) and sendmmsg(2) behind a safe interface: the only unsafe code of the UDP
//! server, kept here so it can be read in one sitting.
//!
//! A `Batch` owns every buffer the kernel reads or writes (datagram buffers, source
//! addresses, reply buffers, and the `mmsghdr`/`iovec` arrays that point at them). The
//! receive headers point into vectors allocated once in `Batch::new` and never resized,
//! so their heap buffers stay where they are (moving a `Batch` moves only the vectors'
//! handles): those pointers are set once and stay valid for the `Batch`'s life. So are the
//! send headers' pointers to their iovecs; the iovecs point at the replies, whose buffers
//! may grow, so they (and each header's destination) are rewritten from fresh borrows
//! right before each sendmmsg. The kernel writes through the pointers only during
//! a call, while the `Batch` is borrowed mutably; nothing in Rust reads or writes through
//! them. The raw pointers also make `Batch` neither `Send` nor `Sync`: it lives and dies
//! on one thread.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use libc::{
    c_int, c_long, c_uint, iovec, mmsghdr, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t,
};

/// Datagrams taken by one recvmmsg, with their sources and one reply buffer each, all
/// sent back by sendmmsg.
pub struct Batch {
    /// `slots` receive buffers of `max_len` bytes each, `stride` bytes apart.
    bufs: Vec<u8>,
    max_len: usize,
    /// `max_len` plus one cache line. At a 4096-byte stride every datagram would start at
    /// the same offset in its page, hence in the same L1 cache set (8 ways for 32 slots),
    /// and the headers of one batch would evict each other between the kernel's copy and
    /// our parse.
    stride: usize,
    /// Bytes received per slot: never more than `max_len` (the kernel cuts longer datagrams
    /// and sets MSG_TRUNC; the cut bytes are handed on, as recv_from does).
    lens: Vec<usize>,
    /// Source of each datagram, exactly as the kernel wrote it: also its reply's destination,
    /// so a reply goes back to the very address (and IPv6 scope) the query came from.
    names: Vec<sockaddr_storage>,
    name_lens: Vec<socklen_t>,
    /// One reply per slot; empty means "no reply".
    outs: Vec<Vec<u8>>,
    /// recvmmsg's headers, one per slot, each pointing at its slot's buffer (through
    /// `iovs`) and source address. Built once; recvmmsg itself writes only msg_len,
    /// msg_flags and msg_namelen, and only msg_namelen (the room for the address on the
    /// way in) is read again, so `recv` puts that back in the slots the kernel filled as
    /// it reads them.
    hdrs: Vec<mmsghdr>,
    iovs: Vec<iovec>,
    /// sendmmsg's headers, apart from the receive ones so that replying leaves those
    /// intact: at one datagram a batch, rebuilding the receive header a reply had taken
    /// over cost ~30 instructions a query (the receive loop went from 345 to 313;
    /// bench/README.md).
    send_hdrs: Vec<mmsghdr>,
    send_iovs: Vec<iovec>,
    /// Slots filled by the last `recv`.
    filled: usize,
    /// The receive headers are as `build_receive_headers` left them (false after a failed
    /// `recv`, which is not trusted to have left them alone).
    built: bool,
}

impl Batch {
    /// Room for `slots` datagrams of up to `max_len` bytes; everything is allocated here,
    /// once, and reused for every batch.
    pub fn new(slots: usize, max_len: usize) -> Batch {
        assert!(slots > 0 && slots <= c_uint::MAX as usize);
        #[allow(unsafe_code)]
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs of integers and raw
        // pointers; all-zero bytes are a valid value of each (AF_UNSPEC, null pointers,
        // zero lengths), and the headers' pointers are set below before any call.
        let (name, hdr) = unsafe {
            (
                std::mem::zeroed::<sockaddr_storage>(),
                std::mem::zeroed::<mmsghdr>(),
            )
        };
        let iov = iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut batch = Batch {
            bufs: vec![0; slots * (max_len + 64)],
            max_len,
            stride: max_len + 64,
            lens: vec![0; slots],
            names: vec![name; slots],
            name_lens: vec![0; slots],
            // 1232: our largest UDP answer (max_udp_payload), so replies rarely reallocate.
            outs: (0..slots).map(|_| Vec::with_capacity(1232)).collect(),
            hdrs: vec![hdr; slots],
            iovs: vec![iov; slots],
            send_hdrs: vec![hdr; slots],
            send_iovs: vec![iov; slots],
            filled: 0,
            built: false,
        };
        batch.build_receive_headers();
        // What every send header holds whatever it sends: one iovec, its own (the
        // vectors are never resized, so the pointers stay valid), and no control data.
        // `send` sets only the reply and its destination.
        for (hdr, iov) in batch.send_hdrs.iter_mut().zip(batch.send_iovs.iter_mut()) {
            let m = &mut hdr.msg_hdr;
            m.msg_iov = iov;
            m.msg_iovlen = 1;
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            m.msg_flags = 0;
        }
        batch
    }

    /// Blocks until at least one datagram is queued (or the socket's receive timeout
    /// passes: `WouldBlock`), then takes every queued datagram up to the batch size
    /// (MSG_WAITFORONE: a lone query is never held back waiting for company). Returns how
    /// many slots were filled; their reply buffers start empty.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.filled = 0;
        let slots = self.hdrs.len();
        if !self.built {
            self.build_receive_headers();
        }
        #[allow(unsafe_code)]
        // SAFETY: `hdrs` holds `slots` headers, built by `build_receive_headers` and since
        // then written only by the kernel (msg_len, msg_flags, msg_namelen; `send` has
        // headers of its own) and by the reset of msg_namelen below. Each points at one
        // iovec of `iovs` that describes a distinct `max_len`-byte chunk of `bufs`, and at
        // one distinct `sockaddr_storage` of `names` with its true size in msg_namelen.
        // All four vectors are owned by `self`, allocated once and never resized (so the
        // pointers stay valid), and borrowed mutably for this whole call: nothing touches
        // them until the kernel has returned. The timeout pointer may be null.
        //
        // The system call itself, not libc's recvmmsg: see `raw_recvmmsg`.
        let n = unsafe {
            raw_recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                slots as c_uint,
                libc::MSG_WAITFORONE as _,
            )
        };
        if n < 0 {
            // Nothing was received; rebuild everything next time rather than reason
            // about what a failed call may have written.
            self.built = false;
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(slots);
        // The kernel wrote msg_len, msg_namelen and msg_flags of these.
        for i in 0..n {
            let m = &mut self.hdrs[i];
            self.lens[i] = (m.msg_len as usize).min(self.max_len);
            self.name_lens[i] = m.msg_hdr.msg_namelen;
            // The whole room again for the next call, which reads it as the size of the
            // address buffer (msg_len and msg_flags are only written).
            m.msg_hdr.msg_namelen = size_of::<sockaddr_storage>() as socklen_t;
            self.outs[i].clear();
        }
        self.filled = n;
        Ok(n)
    }

    /// Points every receive header at its slot's buffer and source address, with the
    /// address's full room in msg_namelen.
    fn build_receive_headers(&mut self) {
        for (((hdr, iov), name), buf) in self
            .hdrs
            .iter_mut()
            .zip(self.iovs.iter_mut())
            .zip(self.names.iter_mut())
            .zip(self.bufs.chunks_exact_mut(self.stride))
        {
            let buf = &mut buf[..self.max_len];
            *iov = iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let m = &mut hdr.msg_hdr;
            m.msg_name = (name as *mut sockaddr_storage).cast();
            m.msg_namelen = size_of::<sockaddr_storage>() as socklen_t;
            m.msg_iov = iov;
            m.msg_iovlen = 1;
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            m.msg_flags = 0;
            hdr.msg_len = 0;
        }
        self.built = true;
    }

    /// Slot `i` of the last `recv`: the datagram, its source (None if the kernel gave an
    /// address that is neither IPv4 nor IPv6), and the buffer its reply goes in (leave it
    /// empty for no reply).
    pub fn slot(&mut self, i: usize) -> (&[u8], Option<SocketAddr>, &mut Vec<u8>) {
        assert!(i < self.filled, "slot {i} of {} received", self.filled);
        let start = i * self.stride;
        (
            &self.bufs[start..start + self.lens[i]],
            socket_addr(&self.names[i], self.name_lens[i]),
            &mut self.outs[i],
        )
    }

    /// Sends every non-empty reply of the last `recv` to its datagram's source, in as few
    /// sendmmsg calls as the kernel allows. A reply the kernel refuses (sendmmsg fails on
    /// the first message it is given) is skipped, so one bad destination costs only its
    /// own reply. Returns how many replies were sent.
    pub fn send(&mut self, sock: &UdpSocket) -> usize {
        let mut n = 0;
        for i in 0..self.filled {
            let out = &self.outs[i];
            if out.is_empty() {
                continue;
            }
            // Packed to the front: header n for the n-th reply.
            self.send_iovs[n] = iovec {
                iov_base: out.as_ptr().cast_mut().cast(),
                iov_len: out.len(),
            };
            // The rest of the header was set once, in `new`.
            let m = &mut self.send_hdrs[n].msg_hdr;
            m.msg_name = (&raw mut self.names[i]).cast();
            m.msg_namelen = self.name_lens[i];
            n += 1;
        }
        let (mut done, mut sent) = (0, 0);
        while done < n {
            #[allow(unsafe_code)]
            // SAFETY: `done < n <= send_hdrs.len()`, so the pointer stays inside `send_hdrs`
            // and the `n - done` headers from it were all set above (and in `new`): each
            // points at its own iovec of `send_iovs` (never resized), describing a live,
            // initialised reply in `outs` (only read: sendmmsg does not write through
            // iov_base), and at the source address in `names` with
            // the length the kernel itself returned for it. `self` is borrowed mutably for
            // the whole call, so none of these is moved, resized or touched meanwhile.
            let r = unsafe {
                raw_sendmmsg(
                    sock.as_raw_fd(),
                    self.send_hdrs.as_mut_ptr().add(done),
                    (n - done) as c_uint,
                    0,
                )
            };
            if r > 0 {
                done += r as usize;
                sent += r as usize;
            } else if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            } else {
                // The message at `done` failed (or, for r == 0, made no progress): drop it
                // and carry on with the rest; retrying would spin on a bad destination.
                done += 1;
            }
        }
        sent
    }
}

// recvmmsg(2) and sendmmsg(2) as bare system calls. glibc's wrappers are POSIX
// cancellation points: around the call they switch the thread to asynchronous
// cancellation and back (__pthread_enable_asynccancel / __pthread_disable_asynccancel),
// ~60 of the ~110 instructions a query the two wrappers cost at one datagram a batch
// (callgrind, bench/icount.sh). Nothing in geode cancels a thread with pthread_cancel (Rust
// has no such API; the loops stop through their `stop` flag and receive timeout), so that
// bookkeeping guards against nothing here. Arguments go as full words (variadic
// `syscall` reads each as a long). libc's `syscall` returns the kernel's result,
// or -1 with errno set, exactly as the wrappers do, so the callers are unchanged.

/// recvmmsg(2) without a timeout. Safety: as for `libc::recvmmsg` with a null timeout.
#[allow(unsafe_code)]
unsafe fn raw_recvmmsg(fd: c_int, hdrs: *mut mmsghdr, len: c_uint, flags: c_int) -> c_int {
    // SAFETY: the caller's contract is recvmmsg's; the null timeout means none.
    let r = unsafe {
        libc::syscall(
            libc::SYS_recvmmsg,
            c_long::from(fd),
            hdrs,
            c_long::from(len),
            c_long::from(flags),
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    // The kernel returns at most `len` (a c_uint of at most UIO_MAXIOV) or -1.
    r as c_int
}

/// sendmmsg(2). Safety: as for `libc::sendmmsg`.
#[allow(unsafe_code)]
unsafe fn raw_sendmmsg(fd: c_int, hdrs: *mut mmsghdr, len: c_uint, flags: c_int) -> c_int {
    // SAFETY: the caller's contract is sendmmsg's.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sendmmsg,
            c_long::from(fd),
            hdrs,
            c_long::from(len),
            c_long::from(flags),
        )
    };
    r as c_int
}

/// The kernel's source address as a `SocketAddr`, for the handlers (client IP, metrics).
fn socket_addr(name: &sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match c_int::from(name.ss_family) {
        libc::AF_INET if len >= size_of::<sockaddr_in>() => {
            #[allow(unsafe_code)]
            // SAFETY: the kernel wrote an AF_INET address of sockaddr_in's size into this
            // storage; sockaddr_storage is larger than sockaddr_in and at least as aligned.
            let a = unsafe { &*(name as *const sockaddr_storage).cast::<sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<sockaddr_in6>() => {
            #[allow(unsafe_code)]
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let a = unsafe { &*(name as *const sockaddr_storage).cast::<sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn bound(addr: &str) -> UdpSocket {
        let s = UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    /// Receives until `want` datagrams are in (they may come in several batches).
    fn recv_all(b: &mut Batch, server: &UdpSocket, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut got = Vec::new();
        while got.len() < want {
            let n = b.recv(server).expect("datagrams");
            for i in 0..n {
                let (p, src, _) = b.slot(i);
                got.push((p.to_vec(), src.expect("inet source")));
            }
        }
        got
    }

    /// The receive headers are built once; what the kernel writes into them must not
    /// shrink the next call's room for a source address (on one socket the kernel writes
    /// the same length every time, so no datagram test can see a missing reset).
    #[test]
    fn receive_headers_keep_the_whole_room_for_the_source_address() {
        let server = bound("127.0.0.1:0");
        let client = bound("127.0.0.1:0");
        let mut b = Batch::new(4, 64);
        let room = size_of::<sockaddr_storage>() as socklen_t;
        for round in 1..=3 {
            for k in 0..round {
                client.send_to(&[k], server.local_addr().unwrap()).unwrap();
            }
            let got = recv_all(&mut b, &server, round as usize);
            assert_eq!(got.len(), round as usize);
            assert!(
                b.hdrs.iter().all(|h| h.msg_hdr.msg_namelen == room),
                "round {round}: {:?}",
                b.hdrs
                    .iter()
                    .map(|h| h.msg_hdr.msg_namelen)
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_lone_datagram_is_returned_at_once_and_a_timeout_is_would_block() {
        let server = bound("127.0.0.1:0");
        server
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let client = bound("127.0.0.1:0");
        let mut b = Batch::new(8, 64);
        let t0 = Instant::now();
        let e = b.recv(&server).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2));

        client
            .send_to(b"one", server.local_addr().unwrap())
            .unwrap();
        let t0 = Instant::now();
        assert_eq!(b.recv(&server).unwrap(), 1);
        // MSG_WAITFORONE: no wait for the other 7 slots (nor the 100 ms timeout).
        assert!(t0.elapsed() < Duration::from_millis(90));
        let (p, src, out) = b.slot(0);
        assert_eq!(p, b"one");
        assert_eq!(src, Some(client.local_addr().unwrap()));
        assert!(out.is_empty());
    }

    /// `recv` rebuilds only the headers the last batch changed: batches of changing
    /// sizes, each answered, must still see every datagram whole and from its own source,
    /// including one longer than any before it in a slot a reply used.
    #[test]
    fn batches_of_changing_sizes_with_replies_between_keep_every_datagram_whole() {
        let server = bound("127.0.0.1:0");
        let to = server.local_addr().unwrap();
        let clients: Vec<UdpSocket> = (0..4).map(|_| bound("127.0.0.1:0")).collect();
        let mut b = Batch::new(4, 64);
        for (round, size) in [4usize, 1, 3, 1, 4, 2].into_iter().enumerate() {
            for (k, c) in clients.iter().take(size).enumerate() {
                let body = vec![b'a' + k as u8; 10 + round * 8 + k];
                c.send_to(&body, to).unwrap();
            }
            let mut seen = 0;
            while seen < size {
                let n = b.recv(&server).expect("datagrams");
                for i in 0..n {
                    let (p, src, out) = b.slot(i);
                    let k = clients
                        .iter()
                        .position(|c| Some(c.local_addr().unwrap()) == src)
                        .expect("a known source");
                    assert_eq!(p, vec![b'a' + k as u8; 10 + round * 8 + k], "round {round}");
                    out.extend_from_slice(p);
                    out.push(b'!');
                }
                assert_eq!(b.send(&server), n);
                seen += n;
            }
            for (k, c) in clients.iter().take(size).enumerate() {
                let mut buf = [0u8; 128];
                let (len, _) = c.recv_from(&mut buf).unwrap();
                let mut want = vec![b'a' + k as u8; 10 + round * 8 + k];
                want.push(b'!');
                assert_eq!(&buf[..len], &want[..], "reply of round {round}");
            }
        }
    }

    #[test]
    fn a_burst_fills_slots_keeps_sources_and_cuts_long_datagrams() {
        let server = bound("127.0.0.1:0");
        let to = server.local_addr().unwrap();
        let (c1, c2) = (bound("127.0.0.1:0"), bound("127.0.0.1:0"));
        let long = vec![7u8; 100];
        c1.send_to(b"a", to).unwrap();
        c2.send_to(b"b", to).unwrap();
        c1.send_to(&long, to).unwrap();
        let mut b = Batch::new(2, 64);
        let got = recv_all(&mut b, &server, 3);
        assert_eq!(got[0], (b"a".to_vec(), c1.local_addr().unwrap()));
        assert_eq!(got[1], (b"b".to_vec(), c2.local_addr().unwrap()));
        // Cut to the buffer, as recv_from does.
        assert_eq!(got[2], (vec![7u8; 64], c1.local_addr().unwrap()));
    }

    #[test]
    fn replies_go_to_their_sources_over_ipv6_too() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback: skipped");
            return;
        };
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let to = server.local_addr().unwrap();
        let (c1, c2) = (bound("[::1]:0"), bound("[::1]:0"));
        c1.send_to(b"q1", to).unwrap();
        c2.send_to(b"q2", to).unwrap();
        let mut b = Batch::new(4, 64);
        let mut seen = 0;
        while seen < 2 {
            let n = b.recv(&server).unwrap();
            for i in 0..n {
                let (p, _, out) = b.slot(i);
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(p);
                *out = reply;
            }
            assert_eq!(b.send(&server), n);
            seen += n;
        }
        let mut buf = [0u8; 16];
        let (len, from) = c1.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..len], from), (&b"re:q1"[..], to));
        let (len, from) = c2.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..len], from), (&b"re:q2"[..], to));
    }

    #[test]
    fn a_refused_reply_is_skipped_and_the_others_still_go_out() {
        let server = bound("127.0.0.1:0");
        let to = server.local_addr().unwrap();
        let client = bound("127.0.0.1:0");
        for q in [b"q0", b"q1", b"q2", b"q3"] {
            client.send_to(q, to).unwrap();
        }
        let mut b = Batch::new(4, 64);
        // Let the whole burst be queued, so it lands in one batch.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.recv(&server).unwrap(), 4);
        // q0 and q2 fail in the kernel (EMSGSIZE: larger than any UDP datagram), q1 gets
        // no reply at all, q3 is answered: exactly one datagram must arrive.
        for i in 0..4 {
            let (p, _, out) = b.slot(i);
            let p = p.to_vec();
            match i {
                0 | 2 => out.resize(70_000, 0),
                1 => {}
                _ => out.extend_from_slice(&p),
            }
        }
        assert_eq!(b.send(&server), 1);
        let mut buf = [0u8; 16];
        let (len, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"q3");
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(client.recv_from(&mut buf).is_err(), "only one reply");
    }
}
