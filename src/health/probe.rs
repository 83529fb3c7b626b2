//! One probe: TCP connect, or an HTTP(S) GET judged by status and body. Every probe opens
//! a fresh connection, never reads more than [`BODY_LIMIT`] of body, ignores proxy
//! environment variables, and reports failure in words an operator can act on
//! ("connection refused", "status 503", "certificate verify failed: …").

use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::model::{Check, CheckKind, HttpCheck};

/// Most body bytes read when looking for `expect_body`: a health page that hides its
/// marker deeper than this is misconfigured, and a probe must not stream a download.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// TLS client settings shared by every probe client. Building them is the expensive part
/// of a client (loading the system roots takes milliseconds and memory per copy), so it
/// happens once per health table instead of once per endpoint.
pub(crate) struct Tls {
    provider: Arc<CryptoProvider>,
    verifying: OnceLock<Result<ClientConfig, String>>,
    insecure: OnceLock<Result<ClientConfig, String>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Settings using the process-wide crypto provider, or aws-lc-rs (reqwest's own choice)
    /// when none was installed.
    pub(crate) fn new() -> Tls {
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        Tls {
            provider,
            verifying: OnceLock::new(),
            insecure: OnceLock::new(),
        }
    }

    /// The client config for `verify`; built on first use, so plain-HTTP deployments never
    /// read the system roots and hosts without a CA bundle only fail the checks that need it.
    fn config(&self, verify: bool) -> Result<ClientConfig, String> {
        let cell = if verify {
            &self.verifying
        } else {
            &self.insecure
        };
        cell.get_or_init(|| self.build(verify)).clone()
    }

    fn build(&self, verify: bool) -> Result<ClientConfig, String> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls setup failed: {e}"))?
            .dangerous();
        let builder = if verify {
            let verifier =
                rustls_platform_verifier::Verifier::new(self.provider.clone()).map_err(|e| {
                    format!("certificate verify failed: cannot load system CA certificates: {e}")
                })?;
            builder.with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            builder.with_custom_certificate_verifier(Arc::new(AcceptAnyCert(self.provider.clone())))
        };
        let mut config = builder.with_no_client_auth();
        // Probes speak HTTP/1.1 only: one request per connection, nothing to multiplex.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// `tls_verify = false`: any certificate is accepted (self-signed backends), but the
/// handshake signature is still checked against it so the peer proved it holds the key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The one place probe clients are configured. `resolve` pins a host name to the probe
/// target so HTTPS sends SNI and verifies the certificate for the name while connecting to
/// the target address, with no DNS lookup.
fn client(
    tls: Option<ClientConfig>,
    resolve: Option<(&str, SocketAddr)>,
) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        // A proxy from the environment would probe the proxy, not the endpoint.
        .no_proxy()
        // A fresh connection per probe: a kept-alive socket would hide a dead listener.
        .pool_max_idle_per_host(0)
        // A redirect is an answer about this endpoint; following it would probe another.
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .tcp_nodelay(true)
        .user_agent(concat!("geode-health/", env!("CARGO_PKG_VERSION")));
    if let Some(tls) = tls {
        b = b.tls_backend_preconfigured(tls);
    }
    if let Some((host, target)) = resolve {
        b = b.resolve(host, target);
    }
    b.build()
}

/// A ready-to-run probe for one (endpoint, check).
#[derive(Debug)]
pub(crate) enum Prober {
    /// TCP connect to the target.
    Tcp(SocketAddr),
    /// HTTP(S) request.
    Http(Box<HttpProber>),
    /// The probe cannot be built (bad header, no CA roots): every run fails with this.
    Broken(String),
}

/// The parts of an HTTP(S) probe prepared once per task.
#[derive(Debug)]
pub(crate) struct HttpProber {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    expect_status: Vec<u16>,
    expect_body: Option<String>,
}

impl Prober {
    /// Prepares the probe of `check` for the endpoint handed out as `address`, connecting
    /// to `target`.
    pub(crate) fn new(check: &Check, address: IpAddr, target: SocketAddr, tls: &Tls) -> Prober {
        match &check.kind {
            CheckKind::Tcp => Prober::Tcp(target),
            CheckKind::Http(h) => match HttpProber::new(h, address, target, tls) {
                Ok(p) => Prober::Http(Box::new(p)),
                Err(e) => Prober::Broken(e),
            },
        }
    }

    /// Runs one probe under a hard deadline; `Err` carries the failure in words.
    #[cfg(test)]
    pub(crate) async fn run(&self, timeout: Duration) -> Result<(), String> {
        self.judge(timeout).await.map_err(|f| f.words)
    }

    /// Runs one probe under a hard deadline and says whose fault a failure is.
    pub(crate) async fn judge(&self, timeout: Duration) -> Result<(), Failure> {
        match tokio::time::timeout(timeout, self.probe()).await {
            Ok(r) => r,
            Err(_) => Err(Failure::backend(format!(
                "timed out after {}",
                duration_words(timeout)
            ))),
        }
    }

    async fn probe(&self) -> Result<(), Failure> {
        match self {
            Prober::Tcp(target) => tokio::net::TcpStream::connect(target)
                .await
                .map(drop)
                .map_err(|e| Failure::from_io(&e)),
            Prober::Http(h) => h.probe().await,
            Prober::Broken(e) => Err(Failure::backend(e.clone())),
        }
    }
}

/// A probe that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What happened, in words.
    pub words: String,
    /// The probe could not be made for a reason on this host (out of file descriptors,
    /// of socket buffers, of memory): it says nothing about the backend, so it must not
    /// count as a failure (a local fd shortage once marked every endpoint down).
    pub local: bool,
}

impl Failure {
    fn backend(words: String) -> Failure {
        Failure {
            words,
            local: false,
        }
    }

    fn from_io(e: &io::Error) -> Failure {
        Failure {
            words: io_words(e),
            local: is_local(e),
        }
    }
}

/// Errors that come from this host running short of a resource, not from the backend.
fn is_local(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl HttpProber {
    fn new(
        h: &HttpCheck,
        address: IpAddr,
        target: SocketAddr,
        tls: &Tls,
    ) -> Result<HttpProber, String> {
        // SNI needs a name; an IP literal as `host` is only a Host header.
        let sni = h
            .host
            .as_deref()
            .filter(|n| h.tls && n.parse::<IpAddr>().is_err());
        let url = match sni {
            Some(name) => format!("https://{name}:{}{}", target.port(), h.path),
            None => format!(
                "{}://{target}{}",
                if h.tls { "https" } else { "http" },
                h.path
            ),
        };
        let url = reqwest::Url::parse(&url).map_err(|e| format!("invalid probe URL {url}: {e}"))?;
        let host = match (&h.host, address) {
            (Some(name), _) => name.clone(),
            (None, IpAddr::V4(a)) => a.to_string(),
            (None, IpAddr::V6(a)) => format!("[{a}]"),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(&host).map_err(|_| format!("invalid Host header {host:?}"))?,
        );
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        for (name, value) in &h.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value of header {name}"))?;
            // A configured header replaces our default of the same name (Host, Connection).
            if n == HOST || n == CONNECTION {
                headers.insert(n, v);
            } else {
                headers.append(n, v);
            }
        }
        // Plain HTTP gets the cheap config too: reqwest would otherwise build its default
        // TLS setup, loading the system roots, for a client that never speaks TLS.
        let tls_config = if h.tls {
            Some(tls.config(h.tls_verify)?)
        } else {
            tls.config(false).ok()
        };
        // Pin the name as the URL spells it (lower case, punycode): reqwest matches the
        // override against that, and a miss would silently resolve the name in DNS instead.
        let pinned = sni.and(url.host_str()).map(|n| (n, target));
        let client = client(tls_config, pinned).map_err(|e| format!("probe client: {e}"))?;
        Ok(HttpProber {
            client,
            url,
            headers,
            expect_status: h.expect_status.clone(),
            expect_body: h.expect_body.clone(),
        })
    }

    async fn probe(&self) -> Result<(), Failure> {
        let resp = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| Failure {
                words: error_words(&e),
                local: io_source(&e).is_some_and(is_local),
            })?;
        self.judge(resp).await.map_err(Failure::backend)
    }

    async fn judge(&self, mut resp: reqwest::Response) -> Result<(), String> {
        let status = resp.status().as_u16();
        let status_ok = if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        };
        if !status_ok {
            return Err(format!("status {status}"));
        }
        let Some(needle) = self.expect_body.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(());
        };
        let needle = needle.as_bytes();
        let mut body = Vec::new();
        while body.len() < BODY_LIMIT {
            let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("reading body: {}", error_words(&e)))?
            else {
                break;
            };
            // Only the new bytes (plus an overlap for a marker split across chunks) need
            // searching; stop as soon as the marker is seen.
            let from = body.len().saturating_sub(needle.len() - 1);
            let take = chunk.len().min(BODY_LIMIT - body.len());
            body.extend_from_slice(&chunk[..take]);
            if contains(&body[from..], needle) {
                return Ok(());
            }
        }
        Err(format!(
            "body does not contain '{}'",
            String::from_utf8_lossy(needle)
        ))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `300ms`, `2s`, `1500ms`: the way durations are written in the config file.
pub(crate) fn duration_words(d: Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

/// A reqwest failure in words, classified by the first informative error in its source
/// chain (the top-level error only says "error sending request for url").
fn error_words(e: &reqwest::Error) -> String {
    let mut io_err = None;
    let mut innermost: &(dyn StdError + 'static) = e;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return tls_words(t);
        }
        innermost = err;
        cur = match err.downcast_ref::<io::Error>() {
            Some(ioe) => {
                io_err = Some(ioe);
                // io::Error::source() skips the error it wraps, which is where rustls puts
                // its handshake failures (sometimes inside another io::Error).
                match ioe.get_ref() {
                    Some(inner) => Some(inner as &(dyn StdError + 'static)),
                    None => ioe.source(),
                }
            }
            None => err.source(),
        };
    }
    if let Some(ioe) = io_err {
        return io_words(ioe);
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if std::ptr::addr_eq(innermost, e) {
        return e.to_string();
    }
    innermost.to_string()
}

/// The first I/O error in a reqwest error's source chain.
fn io_source(e: &reqwest::Error) -> Option<&io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ioe) = err.downcast_ref::<io::Error>() {
            return Some(ioe);
        }
        cur = err.source();
    }
    None
}

fn tls_words(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                CertificateError::UnknownIssuer => {
                    "unknown issuer (self-signed or untrusted CA)".to_string()
                }
                CertificateError::BadSignature => "bad signature".to_string(),
                CertificateError::Expired => "certificate expired".to_string(),
                CertificateError::NotValidYet => "certificate not valid yet".to_string(),
                CertificateError::Revoked => "certificate revoked".to_string(),
                CertificateError::NotValidForName => {
                    "certificate not valid for this name".to_string()
                }
                CertificateError::BadEncoding => "bad certificate encoding".to_string(),
                other => other.to_string(),
            };
            format!("certificate verify failed: {why}")
        }
        other => format!("tls handshake failed: {other}"),
    }
}

fn io_words(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let words = match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::ConnectionAborted => "connection aborted",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::TimedOut => "connect timed out",
        K::UnexpectedEof => "connection closed early",
        _ => {
            return match e.get_ref() {
                Some(inner) => inner.to_string(),
                None => {
                    // "Broken pipe (os error 32)" -> "broken pipe": the errno adds nothing.
                    let s = e.to_string();
                    let s = s.split(" (os error").next().unwrap_or(&s);
                    let mut c = s.chars();
                    c.next()
                        .map(|f| f.to_lowercase().chain(c).collect())
                        .unwrap_or_default()
                }
            };
        }
    };
    words.to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What a test backend saw.
    #[derive(Debug, Default)]
    pub(crate) struct Seen {
        /// Connections accepted.
        pub connections: AtomicUsize,
        /// Request heads, lower-cased.
        pub requests: Mutex<Vec<String>>,
        /// TLS SNI of each handshake.
        pub sni: Mutex<Vec<Option<String>>>,
    }

    /// The response a backend sends; swappable while it runs.
    pub(crate) type Reply = Arc<Mutex<Vec<u8>>>;

    pub(crate) fn reply(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// Answers requests on one connection until the client closes it, or after the first
    /// when the reply says `connection: close` (so keep-alive reuse would be visible).
    async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seen: &Seen, reply: &Reply) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            seen.requests
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).to_lowercase());
            head.clear();
            let r = reply.lock().unwrap().clone();
            if s.write_all(&r).await.is_err() {
                return;
            }
            if String::from_utf8_lossy(&r)
                .to_lowercase()
                .contains("connection: close")
            {
                let _ = s.shutdown().await;
                return;
            }
        }
    }

    /// A plain HTTP/1.1 backend on 127.0.0.1 answering every request with `reply`.
    pub(crate) async fn http_backend(reply: Reply) -> (SocketAddr, Arc<Seen>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                s2.connections.fetch_add(1, Ordering::Relaxed);
                let (seen, reply) = (s2.clone(), reply.clone());
                tokio::spawn(async move { serve_http(sock, &seen, &reply).await });
            }
        });
        (addr, seen)
    }

    /// An HTTPS backend with a fresh self-signed certificate for `www.test`.
    async fn https_backend(reply: Reply) -> (SocketAddr, Arc<Seen>) {
        let cert = rcgen::generate_simple_self_signed(vec!["www.test".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                s2.connections.fetch_add(1, Ordering::Relaxed);
                let (seen, reply, acceptor) = (s2.clone(), reply.clone(), acceptor.clone());
                tokio::spawn(async move {
                    // A client that rejects our certificate aborts the handshake: nothing to serve.
                    if let Ok(tls) = acceptor.accept(sock).await {
                        seen.sni
                            .lock()
                            .unwrap()
                            .push(tls.get_ref().1.server_name().map(str::to_string));
                        serve_http(tls, &seen, &reply).await;
                    }
                });
            }
        });
        (addr, seen)
    }

    /// Accepts connections and never answers.
    pub(crate) async fn hanging_backend() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = l.accept().await {
                held.push(sock);
            }
        });
        addr
    }

    /// A loopback port nothing listens on (bound, then released).
    pub(crate) async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        addr
    }

    pub(crate) fn http_check(tls: bool, expect_body: Option<&str>) -> Check {
        Check {
            name: "web".into(),
            kind: CheckKind::Http(HttpCheck {
                tls,
                path: "/health".into(),
                host: None,
                expect_status: vec![],
                expect_body: expect_body.map(str::to_string),
                headers: vec![],
                tls_verify: true,
            }),
            port: 80,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            rise: 2,
            fall: 2,
        }
    }

    fn tcp_check() -> Check {
        Check {
            kind: CheckKind::Tcp,
            name: "tcp".into(),
            ..http_check(false, None)
        }
    }

    fn edit(check: &mut Check, f: impl FnOnce(&mut HttpCheck)) {
        if let CheckKind::Http(h) = &mut check.kind {
            f(h);
        }
    }

    const DOC_ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

    async fn probe(check: &Check, target: SocketAddr) -> Result<(), String> {
        Prober::new(check, DOC_ADDR, target, &Tls::new())
            .run(check.timeout)
            .await
    }

    fn replying(status: &str, body: &[u8]) -> Reply {
        Arc::new(Mutex::new(reply(status, body)))
    }

    #[tokio::test]
    async fn http_200_with_expected_body_is_up() {
        let (addr, seen) = http_backend(replying("200 OK", b"all ok\n")).await;
        assert_eq!(probe(&http_check(false, Some("ok")), addr).await, Ok(()));
        let req = seen.requests.lock().unwrap()[0].clone();
        assert!(req.starts_with("get /health http/1.1\r\n"), "{req}");
        // No `host` configured: the endpoint address, even when the probe goes elsewhere.
        assert!(req.contains("\r\nhost: 192.0.2.10\r\n"), "{req}");
        assert!(req.contains("\r\nconnection: close\r\n"), "{req}");
    }

    #[tokio::test]
    async fn http_503_is_down_with_status_in_words() {
        let (addr, _) = http_backend(replying("503 Service Unavailable", b"ok")).await;
        assert_eq!(
            probe(&http_check(false, None), addr).await,
            Err("status 503".into())
        );
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_fail_the_default_2xx() {
        let (addr, seen) = http_backend(replying(
            "301 Moved Permanently\r\nlocation: /elsewhere",
            b"",
        ))
        .await;
        assert_eq!(
            probe(&http_check(false, None), addr).await,
            Err("status 301".into())
        );
        assert_eq!(seen.connections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn expect_status_replaces_the_2xx_default() {
        let (addr, _) = http_backend(replying("404 Not Found", b"")).await;
        let mut c = http_check(false, None);
        edit(&mut c, |h| h.expect_status = vec![404]);
        assert_eq!(probe(&c, addr).await, Ok(()));
        edit(&mut c, |h| h.expect_status = vec![200]);
        assert_eq!(probe(&c, addr).await, Err("status 404".into()));
    }

    #[tokio::test]
    async fn wrong_body_is_down() {
        let (addr, _) = http_backend(replying("200 OK", b"degraded")).await;
        assert_eq!(
            probe(&http_check(false, Some("ok")), addr).await,
            Err("body does not contain 'ok'".into())
        );
    }

    #[tokio::test]
    async fn body_is_read_at_most_64k() {
        // Marker right after the limit: not seen.
        let mut body = vec![b'x'; BODY_LIMIT];
        body.extend_from_slice(b"ok");
        let (addr, _) = http_backend(replying("200 OK", &body)).await;
        assert_eq!(
            probe(&http_check(false, Some("ok")), addr).await,
            Err("body does not contain 'ok'".into())
        );
        // Marker ending exactly at the limit, in a body far larger than it: found.
        let mut body = vec![b'x'; BODY_LIMIT - 2];
        body.extend_from_slice(b"ok");
        body.extend(std::iter::repeat_n(b'y', 4 << 20));
        let (addr, _) = http_backend(replying("200 OK", &body)).await;
        assert_eq!(probe(&http_check(false, Some("ok")), addr).await, Ok(()));
    }

    #[tokio::test]
    async fn extra_headers_and_host_are_sent() {
        let (addr, seen) = http_backend(replying("200 OK", b"")).await;
        let mut c = http_check(false, None);
        edit(&mut c, |h| {
            h.host = Some("www.gslb.example".into());
            h.headers = vec![("X-Probe".into(), "geode".into())];
        });
        assert_eq!(probe(&c, addr).await, Ok(()));
        let req = seen.requests.lock().unwrap()[0].clone();
        assert!(req.contains("\r\nhost: www.gslb.example\r\n"), "{req}");
        assert!(req.contains("\r\nx-probe: geode\r\n"), "{req}");
    }

    #[tokio::test]
    async fn every_probe_opens_a_fresh_connection() {
        // The backend does not close on its own; only the client's Connection: close and
        // the empty pool make the second probe reconnect.
        let (addr, seen) = http_backend(Arc::new(Mutex::new(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        )))
        .await;
        let p = Prober::new(&http_check(false, None), DOC_ADDR, addr, &Tls::new());
        for _ in 0..3 {
            assert_eq!(p.run(Duration::from_millis(300)).await, Ok(()));
        }
        assert_eq!(seen.connections.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn connection_refused_in_words() {
        let addr = closed_port().await;
        assert_eq!(
            probe(&http_check(false, None), addr).await,
            Err("connection refused".into())
        );
        assert_eq!(
            probe(&tcp_check(), addr).await,
            Err("connection refused".into())
        );
    }

    #[tokio::test]
    async fn a_backend_that_accepts_and_hangs_times_out() {
        let addr = hanging_backend().await;
        let started = std::time::Instant::now();
        assert_eq!(
            probe(&http_check(false, None), addr).await,
            Err("timed out after 300ms".into())
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn tcp_connect_is_up() {
        let addr = hanging_backend().await;
        assert_eq!(probe(&tcp_check(), addr).await, Ok(()));
    }

    #[tokio::test]
    async fn https_self_signed_is_up_without_verification() {
        let (addr, seen) = https_backend(replying("200 OK", b"ok")).await;
        let mut c = http_check(true, Some("ok"));
        edit(&mut c, |h| {
            h.tls_verify = false;
            h.host = Some("www.test".into());
        });
        assert_eq!(probe(&c, addr).await, Ok(()));
        // Connected to the target while naming the host in SNI and Host.
        assert_eq!(
            seen.sni.lock().unwrap().as_slice(),
            &[Some("www.test".to_string())]
        );
        assert!(seen.requests.lock().unwrap()[0].contains("\r\nhost: www.test\r\n"));
    }

    #[tokio::test]
    async fn an_upper_case_host_still_connects_to_the_target() {
        let (addr, seen) = https_backend(replying("200 OK", b"")).await;
        let mut c = http_check(true, None);
        edit(&mut c, |h| {
            h.tls_verify = false;
            h.host = Some("WWW.Test".into());
        });
        assert_eq!(probe(&c, addr).await, Ok(()));
        assert_eq!(
            seen.sni.lock().unwrap().as_slice(),
            &[Some("www.test".to_string())]
        );
    }

    #[tokio::test]
    async fn https_without_host_connects_to_the_target_address() {
        let (addr, seen) = https_backend(replying("200 OK", b"")).await;
        let mut c = http_check(true, None);
        edit(&mut c, |h| h.tls_verify = false);
        assert_eq!(probe(&c, addr).await, Ok(()));
        // No name to send: SNI is never an IP address.
        assert_eq!(seen.sni.lock().unwrap().as_slice(), &[None]);
    }

    #[tokio::test]
    async fn https_self_signed_fails_verification_in_words() {
        let (addr, seen) = https_backend(replying("200 OK", b"ok")).await;
        let mut c = http_check(true, None);
        edit(&mut c, |h| h.host = Some("www.test".into()));
        let err = probe(&c, addr).await.unwrap_err();
        assert!(err.starts_with("certificate verify failed: "), "{err}");
        assert!(seen.requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn tls_against_a_plain_http_port_is_a_handshake_failure() {
        // Like most HTTP servers given a ClientHello: a 400 in plain text, then close.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let _ = sock
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let mut c = http_check(true, None);
        edit(&mut c, |h| h.tls_verify = false);
        let err = probe(&c, addr).await.unwrap_err();
        assert!(err.starts_with("tls handshake failed: "), "{err}");
    }

    #[test]
    fn durations_are_written_like_the_config() {
        assert_eq!(duration_words(Duration::from_millis(300)), "300ms");
        assert_eq!(duration_words(Duration::from_secs(2)), "2s");
        assert_eq!(duration_words(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_words(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn io_errors_lose_their_errno() {
        assert_eq!(
            io_words(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            "connection refused"
        );
        assert_eq!(io_words(&io::Error::from_raw_os_error(32)), "broken pipe");
    }

    #[test]
    fn a_marker_split_across_chunks_is_found() {
        assert!(contains(b"xxokyy", b"ok"));
        assert!(!contains(b"o", b"ok"));
    }

    #[tokio::test]
    async fn a_bad_header_breaks_only_its_own_probe() {
        let mut c = http_check(false, None);
        edit(&mut c, |h| {
            h.headers = vec![("bad header".into(), "x".into())]
        });
        let p = Prober::new(&c, DOC_ADDR, closed_port().await, &Tls::new());
        assert_eq!(
            p.run(Duration::from_millis(300)).await,
            Err("invalid header name \"bad header\"".into())
        );
    }
}
