//! Validation of `[checks.*]` and `probe = "self"`.

use super::*;

impl Validator<'_> {
    pub(in crate::config) fn checks(
        &mut self,
        raw: &BTreeMap<String, raw::RawCheck>,
    ) -> Vec<Check> {
        let mut out = Vec::new();
        for (name, c) in raw {
            let p = |k: &'static str| ["checks", name.as_str(), k];
            let interval = self.duration(
                &p("interval"),
                c.interval.as_deref(),
                Duration::from_secs(5),
            );
            let timeout = self.duration(
                &p("timeout"),
                c.timeout.as_deref(),
                Duration::from_secs(2).min(interval / 2),
            );
            if timeout >= interval {
                self.err(
                    &p("timeout"),
                    format!("timeout ({timeout:?}) must be less than interval ({interval:?})"),
                );
            }
            let rise = c.rise.unwrap_or(2);
            let fall = c.fall.unwrap_or(3);
            if rise == 0 {
                self.err(&p("rise"), "must be at least 1");
            }
            if fall == 0 {
                self.err(&p("fall"), "must be at least 1");
            }
            let http_only = [
                ("path", c.path.is_some()),
                ("host", c.host.is_some()),
                ("expect_status", c.expect_status.is_some()),
                ("expect_body", c.expect_body.is_some()),
                ("headers", c.headers.is_some()),
                ("tls_verify", c.tls_verify.is_some()),
            ];
            let (kind, default_port) = match c.kind.as_str() {
                "tcp" => {
                    for (k, set) in http_only {
                        if set {
                            self.err(
                                &["checks", name, k],
                                "only http and https checks take this key",
                            );
                        }
                    }
                    (CheckKind::Tcp, None)
                }
                "http" | "https" => {
                    let tls = c.kind == "https";
                    if !tls && c.tls_verify.is_some() {
                        self.err(&p("tls_verify"), "only https checks take this key");
                    }
                    let path = c.path.clone().unwrap_or_else(|| "/".into());
                    if !path.starts_with('/') {
                        self.err(&p("path"), format!("path {path:?} must start with '/'"));
                    }
                    // CR/LF and other control characters cannot go on an HTTP request
                    // line or in a header: the probe would fail forever ("invalid Host
                    // header"), so the file is refused instead of the endpoint going down.
                    if let Some(m) = forbidden_char(&path, false) {
                        self.err(&p("path"), format!("path {path:?} {m}"));
                    }
                    if let Some(m) = c.host.as_deref().and_then(|h| forbidden_char(h, false)) {
                        let host = c.host.as_deref().unwrap_or_default();
                        self.err(&p("host"), format!("host {host:?} {m}"));
                    }
                    let expect_status = c.expect_status.clone().unwrap_or_default();
                    if let Some(bad) = expect_status.iter().find(|s| !(100..=599).contains(*s)) {
                        self.err(
                            &p("expect_status"),
                            format!("{bad} is not an HTTP status (100..599)"),
                        );
                    }
                    let headers: Vec<(String, String)> =
                        c.headers.clone().unwrap_or_default().into_iter().collect();
                    for (h, value) in &headers {
                        if let Some(m) = forbidden_char(value, true) {
                            self.err(
                                &["checks", name, "headers", h],
                                format!("header value {value:?} {m}"),
                            );
                        }
                        if h.is_empty()
                            || !h
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                        {
                            self.err(
                                &["checks", name, "headers", h],
                                format!("invalid header name {h:?}"),
                            );
                        }
                    }
                    let check = HttpCheck {
                        tls,
                        path,
                        host: c.host.clone(),
                        expect_status,
                        expect_body: c.expect_body.clone(),
                        headers,
                        tls_verify: c.tls_verify.unwrap_or(true),
                    };
                    (CheckKind::Http(check), Some(if tls { 443 } else { 80 }))
                }
                other => {
                    self.err(
                        &p("type"),
                        format!("unknown check type {other:?} (http, https or tcp)"),
                    );
                    continue;
                }
            };
            let port = match (c.port, default_port) {
                (Some(0), _) => {
                    self.err(&p("port"), "port must not be 0");
                    0
                }
                (Some(port), _) => port,
                (None, Some(d)) => d,
                (None, None) => {
                    self.err(&["checks", name], "tcp checks need a port");
                    0
                }
            };
            out.push(Check {
                name: name.clone(),
                kind,
                port,
                interval,
                timeout,
                rise: rise.max(1),
                fall: fall.max(1),
            });
        }
        out
    }

    /// Points `probe = "self"` endpoints at the file's own `http_listen`; the app moves
    /// them to the address actually bound (`--http-listen`, port 0).
    pub(in crate::config) fn resolve_self_probes(
        &mut self,
        server: &ServerSettings,
        regions: &mut [Region],
    ) {
        let probes = std::mem::take(&mut self.self_probes);
        for (region, address) in &probes {
            let Some(r) = regions.iter_mut().find(|r| &r.name == region) else {
                continue;
            };
            let Some(i) = r.endpoints.iter().position(|e| e.address == *address) else {
                continue;
            };
            match server.start.http_listen {
                Some(http) => r.endpoints[i].probe = Some(self_probe_target(http)),
                None => self.err(
                    &["regions", region, "endpoints", &i.to_string(), "probe"],
                    "probe = \"self\" probes this server's admin HTTP, but server.http_listen is \"\" (disabled)",
                ),
            }
        }
        self.self_probes = probes;
    }
}
