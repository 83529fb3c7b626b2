//! Admin HTTP: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (config
//! loaded, sockets bound, first probe round done), `/status` (JSON), `/explain` (JSON).
//! Bound to loopback by default: it reveals topology and health.
//!
//! Connections are served by hand rather than by `axum::serve`, which holds idle and
//! slow-header connections forever: a header read timeout, an idle timeout and a cap
//! on concurrent connections keep slow or idle clients from exhausting descriptors
//! that DNS over TCP and the probes need.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::route::LiveHealth;
use crate::snapshot::ClientSpec;
use crate::state::App;

/// Binds the admin socket and logs `listening on http ADDR`. Connections queue in the
/// kernel until [`serve`] starts, so probes of our own /healthz made meanwhile succeed.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind http {addr}: {e}")))?;
    info!("listening on http {}", listener.local_addr()?);
    Ok(listener)
}

/// Longest a client may take to send a request's headers. hyper also runs this timer
/// while a keep-alive connection waits for its next request, so it is the idle limit
/// between requests as well.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection on which no byte moves either way for this long is closed: a client
/// that stops reading a response, or sends a body that never ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Admin connections served at once; more are closed as soon as they are accepted.
/// Held connections each cost a file descriptor, shared with the DNS listeners and the
/// probes: without a cap, 3,000 idle clients ran the process out of descriptors.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves the admin endpoints on a bound socket.
pub fn serve(listener: tokio::net::TcpListener, app: App) -> JoinHandle<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/explain", get(explain))
        .with_state(app.clone());
    // `/api/v1/` (runtime overrides) exists only with `[admin]`: 404 otherwise.
    let router = match crate::admin_api::router(&app) {
        Some(api) => router.merge(api),
        None => router,
    };
    // `/cluster/v1/` (peer messages) exists only with `[cluster]`.
    let router = match &app.cluster {
        Some(c) => router.merge(c.router()),
        None => router,
    };
    tokio::spawn(accept_loop(listener, router))
}

/// Accepts admin connections and serves each under [`HEADER_READ_TIMEOUT`],
/// [`IDLE_TIMEOUT`] and [`MAX_CONNECTIONS`].
async fn accept_loop(listener: tokio::net::TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: the connection waits in the backlog; retrying at
                // once would spin. (axum::serve sleeps 1 s here.)
                debug!(error = %e, "admin accept failed; retrying in 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                warn!(
                    max = MAX_CONNECTIONS,
                    refused, "admin HTTP connection limit reached; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        // Connect info: every admin change logs the address it came from.
        let service = hyper_util::service::TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let last = Arc::new(AtomicU64::new(0));
            let start = tokio::time::Instant::now();
            let io = hyper_util::rt::TokioIo::new(Tracked {
                inner: stream,
                last: last.clone(),
                start,
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, service);
            tokio::select! {
                _ = conn => {}
                () = idle(last, start) => {}
            }
        });
    }
}

/// Resolves once no byte has moved for [`IDLE_TIMEOUT`].
async fn idle(last: Arc<AtomicU64>, start: tokio::time::Instant) {
    loop {
        let moved = start + Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = moved + IDLE_TIMEOUT;
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A stream that records when a byte last moved (milliseconds since `start`).
struct Tracked {
    inner: tokio::net::TcpStream,
    last: Arc<AtomicU64>,
    start: tokio::time::Instant,
}

impl Tracked {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis();
        self.last
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let (ctype, body) = app.metrics.render();
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    if app.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first probe round or the DNS sockets\n",
        )
            .into_response()
    }
}

async fn status(State(app): State<App>) -> Response {
    let snap = app.shared.load();
    let admin = snap.admin.load();
    let probed = app.health.status();
    let mut by_ep: HashMap<(String, String), serde_json::Value> = HashMap::new();
    for s in probed {
        let key = (s.region.clone(), s.endpoint.clone());
        by_ep.insert(key, serde_json::to_value(&s).unwrap_or_default());
    }
    let regions: Vec<_> = snap
        .model
        .regions
        .iter()
        .enumerate()
        .map(|(rid, r)| {
            use crate::route::HealthView;
            let rid = rid as crate::model::RegionId;
            let up = r
                .endpoints
                .iter()
                .filter(|e| LiveHealth.endpoint_up(e))
                .count();
            let endpoints: Vec<_> = r
                .endpoints
                .iter()
                .map(|e| {
                    let probe = by_ep.remove(&(r.name.clone(), e.address.to_string()));
                    let mut v = json!({
                        "address": e.address.to_string(),
                        "check": e.check.map(|c| snap.model.checks[usize::from(c)].name.clone()),
                        "up": LiveHealth.endpoint_up(e),
                        "probe": probe,
                    });
                    if let Some(o) = v.as_object_mut() {
                        o.extend(crate::admin_api::endpoint_status(&admin, rid, e));
                    }
                    v
                })
                .collect();
            let mut v = json!({
                "name": r.name,
                "up": r.enough_up(up as u64),
                "endpoints_up": up,
                "min_healthy": r.min_healthy,
                "drain": r.drain,
                "weight": r.weight,
                "location": r.location.map(|l| json!({"lat": l.lat, "lon": l.lon})),
                "endpoints": endpoints,
            });
            if let Some(o) = v.as_object_mut() {
                o.extend(crate::admin_api::region_status(&snap, &admin, rid));
            }
            v
        })
        .collect();
    let loaded = snap
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let last_failure = app.last_reload_failure.lock().ok().and_then(|f| f.clone());
    pretty_json(&json!({
        "ready": app.ready.load(Ordering::SeqCst),
        "config": { "file": snap.file.display().to_string(), "hash": snap.hash, "loaded_at": loaded },
        "last_reload_failure": last_failure,
        "geoip": snap.geo.as_ref().map(|g| json!({
            "path": g.path().display().to_string(),
            "type": g.database_type(),
            "build_epoch": g.build_epoch(),
        })),
        "services": snap.model.services.iter().map(|s| json!({
            "name": s.name,
            "policy": format!("{:?}", s.policy).to_lowercase(),
            "regions": s.regions.iter().map(|r| snap.model.regions[usize::from(*r)].name.clone()).collect::<Vec<_>>(),
            "ttl": s.ttl,
        })).collect::<Vec<_>>(),
        "regions": regions,
        "admin": crate::admin_api::admin_status(&app, &admin),
        "cluster": app.cluster.as_ref().map(|c| c.status()),
    }))
}

/// JSON indented for a person reading it with curl (`/status | head` shows the top of
/// it); a few hundred bytes more than compact JSON on a page fetched by hand.
fn pretty_json(value: &serde_json::Value) -> Response {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_default();
    body.push('\n');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `/explain` parameters. All optional here so that a missing one gets a JSON error
/// naming it, not axum's plain-text rejection.
#[derive(Deserialize)]
struct ExplainParams {
    name: Option<String>,
    #[serde(rename = "type", default = "default_type")]
    qtype: String,
    client: Option<String>,
    resolver: Option<String>,
}

fn default_type() -> String {
    "A".into()
}

async fn explain(
    State(app): State<App>,
    query: Result<Query<ExplainParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": m }))).into_response();
    const USAGE: &str = "usage: /explain?name=NAME&type=A|AAAA&client=IP[/LEN][&resolver=IP]";
    let p = match query {
        Ok(Query(p)) => p,
        Err(e) => return bad(format!("{}; {USAGE}", e.body_text())),
    };
    let (Some(name), Some(client)) = (p.name, p.client) else {
        return bad(format!(
            "missing parameter: name and client are required; {USAGE}"
        ));
    };
    let mut client: ClientSpec = match client.parse() {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    if let Some(r) = p.resolver {
        match r.parse() {
            Ok(ip) => client.resolver = Some(ip),
            Err(_) => return bad(format!("invalid resolver address {r:?}")),
        }
    }
    let snap = app.shared.load();
    let admin = snap.admin.load();
    match snap.explain(&name, &p.qtype, client, &crate::route::Live(&admin)) {
        Ok(e) if app.cluster.is_some() => {
            // With `[cluster]`, name the endpoints whose combined verdict (the one the
            // decision used) differs from this instance's own probes.
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            let differs: Vec<_> = app
                .health
                .status()
                .into_iter()
                .filter(|s| s.own_state.is_some_and(|own| own != s.state))
                .map(|s| {
                    json!({
                        "region": s.region,
                        "endpoint": s.endpoint,
                        "combined": s.state,
                        "own": s.own_state,
                        "votes": s.votes,
                        "note": format!(
                            "the fleet's combined verdict ({}) differs from this instance's own probe ({})",
                            s.state,
                            s.own_state.unwrap_or("unknown")
                        ),
                    })
                })
                .collect();
            if let Some(o) = v.as_object_mut() {
                o.insert("combined_differs_from_local".into(), json!(differs));
            }
            Json(v).into_response()
        }
        Ok(e) => Json(e).into_response(),
        Err(e) => bad(e),
    }
}
