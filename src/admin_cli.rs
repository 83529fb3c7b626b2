//! `geode admin …`: a client of a running server's `/api/v1/` (see [`crate::admin_api`]).
//! Exit codes: 0 done, 1 the server refused or could not be reached, 2 usage.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// What to ask the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Drain a region.
    Drain {
        /// Region name.
        region: String,
        /// Why.
        reason: String,
        /// `--for`.
        ttl: Option<String>,
    },
    /// Undo a runtime drain.
    Undrain {
        /// Region name.
        region: String,
        /// Why.
        reason: String,
    },
    /// Set (or with `None`, clear) a weight.
    Weight {
        /// Region name.
        region: String,
        /// The weight; `None` clears the override.
        weight: Option<u32>,
        /// One service only.
        service: Option<String>,
        /// Why.
        reason: String,
        /// `--for`.
        ttl: Option<String>,
    },
    /// Force an endpoint up or down, or clear that.
    Force {
        /// Region name.
        region: String,
        /// Endpoint address.
        address: String,
        /// up, down or clear.
        state: String,
        /// Why.
        reason: String,
        /// `--for`.
        ttl: Option<String>,
    },
    /// List the overrides.
    List {
        /// Print the server's JSON as is.
        json: bool,
    },
}

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Base URL, e.g. `http://127.0.0.1:9153`.
    pub server: String,
    /// `--token-file`; else `GEODE_ADMIN_TOKEN`.
    pub token_file: Option<PathBuf>,
}

fn token(conn: &Connection) -> Result<String, String> {
    let raw = match &conn.token_file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read token file {}: {e}", f.display()))?,
        None => std::env::var("GEODE_ADMIN_TOKEN")
            .map_err(|_| "no token: pass --token-file FILE or set GEODE_ADMIN_TOKEN".to_string())?,
    };
    let t = raw.trim().to_string();
    if t.is_empty() {
        return Err("the admin token is empty".into());
    }
    Ok(t)
}

/// The (path, body) of a change; `None` for a list.
fn to_call(req: &Request) -> Option<(&'static str, Value)> {
    let opt = |s: &Option<String>| s.clone().map_or(Value::Null, Value::from);
    match req {
        Request::Drain {
            region,
            reason,
            ttl,
        } => Some((
            "drain",
            json!({ "region": region, "reason": reason, "for": opt(ttl) }),
        )),
        Request::Undrain { region, reason } => {
            Some(("undrain", json!({ "region": region, "reason": reason })))
        }
        Request::Weight {
            region,
            weight,
            service,
            reason,
            ttl,
        } => Some((
            "weight",
            json!({ "region": region, "weight": weight, "service": opt(service), "reason": reason, "for": opt(ttl) }),
        )),
        Request::Force {
            region,
            address,
            state,
            reason,
            ttl,
        } => Some((
            "force",
            json!({ "region": region, "address": address, "state": state, "reason": reason, "for": opt(ttl) }),
        )),
        Request::List { .. } => None,
    }
}

/// Runs one request; returns the exit code. Prints the result on stdout, errors on stderr.
pub fn run(conn: &Connection, req: Request) -> i32 {
    let token = match token(conn) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("geode admin: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("geode admin: cannot start runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(call(conn, &token, &req)) {
        Ok(v) => {
            print!("{}", render(&req, &v));
            0
        }
        Err(e) => {
            eprintln!("geode admin: {e}");
            1
        }
    }
}

async fn call(conn: &Connection, token: &str, req: &Request) -> Result<Value, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let base = conn.server.trim_end_matches('/');
    let auth = format!("Bearer {token}");
    let resp = match to_call(req) {
        None => client
            .get(format!("{base}/api/v1/overrides"))
            .header("authorization", auth),
        Some((path, body)) => client
            .post(format!("{base}/api/v1/{path}"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body.to_string()),
    }
    .send()
    .await
    .map_err(|e| format!("{base}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(v)
    } else {
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string);
        Err(format!("{status}: {msg}"))
    }
}

fn render(req: &Request, v: &Value) -> String {
    let s = |v: &Value, k: &str| {
        v.get(k)
            .map(|x| match x {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "-".into())
    };
    match req {
        Request::List { json: true } => format!("{v:#}\n"),
        Request::List { json: false } => {
            let mut out = format!(
                "{:<40} {:<12} {:<7} {:<9} {:<16} {:<24} {:<24} {}\n",
                "TARGET", "ACTION", "VALUE", "STATE", "AUTHOR", "AT", "EXPIRES", "REASON"
            );
            for e in v
                .get("overrides")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{:<40} {:<12} {:<7} {:<9} {:<16} {:<24} {:<24} {}\n",
                    s(e, "target"),
                    s(e, "action"),
                    s(e, "value"),
                    s(e, "state"),
                    s(e, "author"),
                    s(e, "at_rfc3339"),
                    s(e, "expires_rfc3339"),
                    s(e, "reason"),
                ));
            }
            out
        }
        _ => {
            let a = v.get("applied").unwrap_or(v);
            let mut out = format!(
                "ok: {} {}{} (state {}, expires {})\n",
                s(a, "target"),
                s(a, "action"),
                a.get("value")
                    .filter(|x| !x.is_null())
                    .map(|x| format!(" {x}"))
                    .unwrap_or_default(),
                s(a, "state"),
                s(a, "expires_rfc3339"),
            );
            if let Some(note) = v.get("note").and_then(Value::as_str) {
                out.push_str(&format!("note: {note}\n"));
            }
            out
        }
    }
}

/// Splits `REGION/ADDRESS`.
pub fn split_endpoint(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((r, a)) if !r.is_empty() && !a.is_empty() => Ok((r.into(), a.into())),
        _ => Err(format!("expected REGION/ADDRESS, got {s:?}")),
    }
}

/// Parses a weight argument: a number, or `clear`.
pub fn parse_weight(s: &str) -> Result<Option<u32>, String> {
    if s == "clear" {
        return Ok(None);
    }
    s.parse::<u32>()
        .map(Some)
        .map_err(|_| format!("weight {s:?}: expected a number or `clear`"))
}
