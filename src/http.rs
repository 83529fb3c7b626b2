//! Admin HTTP: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (config
//! loaded, sockets bound, first probe round done), `/status` (JSON), `/explain` (JSON).
//! Bound to loopback by default: it reveals topology and health.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::info;

use crate::app::App;
use crate::route::LiveHealth;
use crate::snapshot::ClientSpec;

/// Binds the admin socket and logs `listening on http ADDR`. Connections queue in the
/// kernel until [`serve`] starts, so probes of our own /healthz made meanwhile succeed.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind http {addr}: {e}")))?;
    info!("listening on http {}", listener.local_addr()?);
    Ok(listener)
}

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
    tokio::spawn(async move {
        // Connect info: every admin change logs the address it came from.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service).await;
    })
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
                "up": up as u32 >= r.min_healthy,
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
    Json(json!({
        "ready": app.ready.load(Ordering::SeqCst),
        "config": { "file": snap.file.display().to_string(), "hash": snap.hash, "loaded_at": loaded },
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
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ExplainParams {
    name: String,
    #[serde(rename = "type", default = "default_type")]
    qtype: String,
    client: String,
    resolver: Option<String>,
}

fn default_type() -> String {
    "A".into()
}

async fn explain(State(app): State<App>, Query(p): Query<ExplainParams>) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": m }))).into_response();
    let mut client: ClientSpec = match p.client.parse() {
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
    match snap.explain(&p.name, &p.qtype, client, &crate::route::Live(&admin)) {
        Ok(e) => Json(e).into_response(),
        Err(e) => bad(e),
    }
}
