//! The admin API under `/api/v1/` on the admin HTTP listener: runtime overrides (drain,
//! undrain, weight, force) and their list. Mounted only with `[admin]`; without it every
//! `/api/v1/` path is 404.
//!
//! Every request, reads included, needs `Authorization: Bearer TOKEN`; the token is
//! compared in constant time ([`crate::model::Secret::matches`]) before the body is read,
//! and a missing or wrong one gets 401 and changes nothing. Bodies over
//! [`MAX_BODY`] bytes get 413. The contract is in README "Runtime overrides" and
//! `docs/admin-api.yaml` (OpenAPI).

// Helpers return the rejection as a ready `Response` (`Err` of 128 bytes): the admin path
// is a few requests an hour, and boxing would only add noise.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::admin::{AdminStore, Change, ChangeError, entry_json, now_ms};
use crate::overrides::{Action, Target};
use crate::state::App;

/// Largest request body accepted: a change is a few hundred bytes.
pub const MAX_BODY: usize = 4096;

/// Every route, in the order [`router`] mounts them: list, drain, undrain, weight, force.
pub const ROUTES: [&str; 5] = [
    "/api/v1/overrides",
    "/api/v1/drain",
    "/api/v1/undrain",
    "/api/v1/weight",
    "/api/v1/force",
];

#[derive(Clone)]
struct Api {
    app: App,
    store: Arc<AdminStore>,
}

/// The `/api/v1/` routes, when `[admin]` is configured.
pub fn router(app: &App) -> Option<Router> {
    let store = app.admin.clone()?;
    let [list_path, drain_path, undrain_path, weight_path, force_path] = ROUTES;
    Some(
        Router::new()
            .route(list_path, get(list))
            .route(drain_path, post(drain))
            .route(undrain_path, post(undrain))
            .route(weight_path, post(weight))
            .route(force_path, post(force))
            .with_state(Api {
                app: app.clone(),
                store,
            }),
    )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// 401 unless the request carries the current token.
fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    let snap = api.app.shared.load();
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match (&snap.admin_settings, offered) {
        (Some(settings), Some(token)) if settings.token.matches(token) => Ok(()),
        _ => Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response()),
    }
}

/// Checks the token, then reads and parses a body of at most [`MAX_BODY`] bytes.
async fn accept<T: for<'de> Deserialize<'de>>(
    api: &Api,
    req: Request,
) -> Result<(T, SocketAddr), Response> {
    authorize(api, req.headers())?;
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_BODY} bytes"),
            )
        })?;
    let parsed = serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))?;
    Ok((parsed, from))
}

/// Parses the optional `for` duration.
fn ttl(s: Option<&str>) -> Result<Option<Duration>, Response> {
    s.map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("for: {e}")))
}

async fn apply(api: &Api, change: Change, from: SocketAddr) -> Response {
    let store = api.store.clone();
    let shared = api.app.shared.clone();
    // The change writes and fsyncs the state file: off the runtime's worker threads.
    let result = tokio::task::spawn_blocking(move || store.change(&shared, change, from)).await;
    match result {
        Ok(Ok(entry)) => {
            let mut body = json!({ "applied": entry_json(&entry, now_ms()) });
            let snap = api.app.shared.load();
            // An undrain removes the runtime drain only: say so when the file drains too.
            if let (Target::Drain { region }, Action::Clear) = (&entry.target, entry.action)
                && snap
                    .model
                    .region_id(region)
                    .is_some_and(|r| snap.model.regions[usize::from(r)].drain)
            {
                body["note"] = json!(format!(
                    "region {region} stays drained: drain = true in the config file"
                ));
            }
            Json(body).into_response()
        }
        Ok(Err(ChangeError::Target(e))) if e.is_not_found() => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Ok(Err(e @ (ChangeError::Target(_) | ChangeError::Invalid(_)))) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(Err(e @ ChangeError::Persist { .. })) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let now = now_ms();
    let snap = api.app.shared.load();
    let view = snap.admin.load();
    let dangling: Vec<String> = view
        .dangling()
        .iter()
        .map(|(e, _)| e.target.to_string())
        .collect();
    let entries: Vec<_> = api
        .store
        .overrides()
        .entries()
        .map(|e| {
            let mut v = entry_json(e, now);
            if dangling.contains(&e.target.to_string())
                && let Some(o) = v.as_object_mut()
            {
                o.insert("state".into(), "dangling".into());
            }
            v
        })
        .collect();
    Json(json!({ "node": api.store.node(), "now": now, "overrides": entries })).into_response()
}

/// `POST /api/v1/drain`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    region: String,
    #[serde(default)]
    reason: String,
    #[serde(rename = "for")]
    ttl: Option<String>,
}

async fn drain(State(api): State<Api>, req: Request) -> Response {
    let (b, from) = match accept::<DrainBody>(&api, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ttl = match ttl(b.ttl.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let change = Change {
        target: Target::Drain { region: b.region },
        action: Action::Drain,
        reason: b.reason,
        ttl,
    };
    apply(&api, change, from).await
}

/// `POST /api/v1/undrain`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UndrainBody {
    region: String,
    #[serde(default)]
    reason: String,
}

async fn undrain(State(api): State<Api>, req: Request) -> Response {
    let (b, from) = match accept::<UndrainBody>(&api, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let change = Change {
        target: Target::Drain { region: b.region },
        action: Action::Clear,
        reason: b.reason,
        ttl: None,
    };
    apply(&api, change, from).await
}

/// `POST /api/v1/weight`: `weight` null clears the override; a missing `weight` is an
/// error, not a clear.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    region: String,
    #[serde(default, deserialize_with = "present")]
    weight: Option<Option<u32>>,
    service: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(rename = "for")]
    ttl: Option<String>,
}

/// A key that is present, possibly null: `Some(None)` for null, `None` when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

async fn weight(State(api): State<Api>, req: Request) -> Response {
    let (b, from) = match accept::<WeightBody>(&api, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(weight) = b.weight else {
        return error(
            StatusCode::BAD_REQUEST,
            "weight is required: a number, or null to clear the override",
        );
    };
    let ttl = match ttl(b.ttl.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let service = match b.service.as_deref().map(crate::config::normalize_name) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("service: {e}")),
    };
    if weight.is_none() && ttl.is_some() {
        return error(StatusCode::BAD_REQUEST, "a clear takes no `for`");
    }
    let change = Change {
        target: Target::Weight {
            region: b.region,
            service,
        },
        action: weight.map_or(Action::Clear, Action::Weight),
        reason: b.reason,
        ttl,
    };
    apply(&api, change, from).await
}

/// `POST /api/v1/force`: `state` is up, down or clear.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceBody {
    region: String,
    address: String,
    state: String,
    #[serde(default)]
    reason: String,
    #[serde(rename = "for")]
    ttl: Option<String>,
}

async fn force(State(api): State<Api>, req: Request) -> Response {
    let (b, from) = match accept::<ForceBody>(&api, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ttl = match ttl(b.ttl.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(address) = b.address.parse() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid address {:?}", b.address),
        );
    };
    let action = match b.state.as_str() {
        "up" => Action::ForceUp,
        "down" => Action::ForceDown,
        "clear" if ttl.is_none() => Action::Clear,
        "clear" => return error(StatusCode::BAD_REQUEST, "a clear takes no `for`"),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state {other:?}: expected up, down or clear"),
            );
        }
    };
    let change = Change {
        target: Target::Force {
            region: b.region,
            address,
        },
        action,
        reason: b.reason,
        ttl,
    };
    apply(&api, change, from).await
}

/// The `/status` keys one region gains from the overrides: `overrides` (the entries in
/// force on it), and `effective`, what routing uses and which input decided it
/// (`drained_by`: config, override or null; `up_by`: probes, or override when an
/// endpoint is forced).
pub fn region_status(
    snap: &crate::snapshot::Snapshot,
    view: &crate::overrides::AdminView,
    rid: crate::model::RegionId,
) -> serde_json::Map<String, serde_json::Value> {
    use crate::route::{HealthView, Live};
    let now = now_ms();
    let r = &snap.model.regions[usize::from(rid)];
    let live = Live(view);
    let up = r
        .endpoints
        .iter()
        .filter(|e| live.endpoint_up_in(rid, e))
        .count();
    let forced = r.endpoints.iter().any(|e| view.forced(rid, e).is_some());
    let drained_by = if r.drain {
        Some("config")
    } else if view.drained(rid) {
        Some("override")
    } else {
        None
    };
    let weights: serde_json::Map<String, serde_json::Value> = snap
        .model
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.regions.contains(&rid))
        .map(|(sid, s)| {
            let w = live.weight(sid as u16, s, rid, r);
            (s.name.clone(), w.into())
        })
        .collect();
    let mut m = serde_json::Map::new();
    m.insert(
        "overrides".into(),
        view.on_region(rid).map(|e| entry_json(e, now)).collect(),
    );
    m.insert(
        "effective".into(),
        json!({
            "drained": drained_by.is_some(),
            "drained_by": drained_by,
            "up": up as u32 >= r.min_healthy,
            "endpoints_up": up,
            "up_by": if forced { "override" } else { "probes" },
            "weights": weights,
        }),
    );
    m
}

/// The `/status` keys one endpoint gains: `override` (its force entry or null),
/// `effective_up` and `decided_by` (override, probe, or config for an endpoint without a
/// check).
pub fn endpoint_status(
    view: &crate::overrides::AdminView,
    rid: crate::model::RegionId,
    ep: &crate::model::Endpoint,
) -> serde_json::Map<String, serde_json::Value> {
    use crate::route::{HealthView, LiveHealth};
    let entry = view
        .entry(crate::overrides::Resolved::Force(rid, ep.address))
        .map(|e| entry_json(e, now_ms()));
    let (up, by) = match view.forced(rid, ep) {
        Some(up) => (up, "override"),
        None if ep.check.is_none() => (true, "config"),
        None => (LiveHealth.endpoint_up(ep), "probe"),
    };
    let mut m = serde_json::Map::new();
    m.insert("override".into(), entry.into());
    m.insert("effective_up".into(), up.into());
    m.insert("decided_by".into(), by.into());
    m
}

/// The `/status` top-level `admin` key: whether the API is on, this node's name and the
/// dangling overrides (kept, without effect, until cleared or the target comes back).
pub fn admin_status(app: &App, view: &crate::overrides::AdminView) -> serde_json::Value {
    let now = now_ms();
    match &app.admin {
        None => json!({ "enabled": false }),
        Some(store) => json!({
            "enabled": true,
            "node": store.node(),
            "dangling": view.dangling().iter().map(|(e, why)| {
                let mut v = entry_json(e, now);
                if let Some(o) = v.as_object_mut() {
                    o.insert("state".into(), "dangling".into());
                    o.insert("error".into(), why.to_string().into());
                }
                v
            }).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    /// The OpenAPI description names exactly the routes served.
    #[test]
    fn openapi_describes_every_route() {
        let doc = include_str!("../docs/admin-api.yaml");
        let described: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("  /api/v1/"))
            .map(|l| l.trim_end_matches(':'))
            .collect();
        let served: Vec<&str> = super::ROUTES
            .iter()
            .map(|r| r.trim_start_matches("/api/v1/"))
            .collect();
        assert_eq!(described, served);
    }
}
