//! Validation of `[regions.*]` and their endpoints.

use super::*;

impl Validator<'_> {
    pub(in crate::config) fn regions(
        &mut self,
        raw: &BTreeMap<String, raw::RawRegion>,
        checks: &[Check],
    ) -> Vec<Region> {
        let mut out = Vec::new();
        for (name, r) in raw {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.err(
                    &["regions", name],
                    "region names use letters, digits, '-' and '_'",
                );
            }
            let location = self.location(&["regions", name, "location"], r.location);
            let weight = r.weight.unwrap_or(100);
            if weight > 1_000_000 {
                self.err(
                    &["regions", name, "weight"],
                    "weight must be at most 1000000",
                );
            }
            if r.endpoints.is_empty() {
                self.err(&["regions", name], "a region needs at least one endpoint");
            }
            let mut endpoints: Vec<Endpoint> = Vec::new();
            for (i, e) in r.endpoints.iter().enumerate() {
                let idx = i.to_string();
                let ep = ["regions", name.as_str(), "endpoints", idx.as_str()];
                let Ok(address) = e.address.trim().parse::<IpAddr>() else {
                    self.err(
                        &[&ep[..], &["address"]].concat(),
                        format!("invalid IP address {:?}", e.address),
                    );
                    continue;
                };
                if endpoints.iter().any(|o| o.address == address) {
                    self.err(
                        &[&ep[..], &["address"]].concat(),
                        format!("duplicate endpoint {address} in region {name}"),
                    );
                    continue;
                }
                let check = match &e.check {
                    None => None,
                    Some(c) => match checks.iter().position(|k| &k.name == c) {
                        Some(i) => Some(i as u16),
                        None => {
                            self.err(
                                &[&ep[..], &["check"]].concat(),
                                format!("unknown check {c:?}"),
                            );
                            continue;
                        }
                    },
                };
                let probe = match &e.probe {
                    None => None,
                    // This server's own admin HTTP: resolved in `model` once the server
                    // settings are known, and again when the listener is bound.
                    Some(p) if p == "self" => {
                        self.self_probes.push((name.clone(), address));
                        None
                    }
                    Some(p) => {
                        let port = check.map_or(0, |c| checks[usize::from(c)].port);
                        match p
                            .parse::<SocketAddr>()
                            .or_else(|_| p.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, port)))
                        {
                            Ok(sa) => Some(sa),
                            Err(_) => {
                                self.err(
                                    &[&ep[..], &["probe"]].concat(),
                                    format!("invalid probe address {p:?} (IP or IP:PORT)"),
                                );
                                continue;
                            }
                        }
                    }
                };
                if e.probe.is_some() && check.is_none() {
                    self.err(
                        &[&ep[..], &["probe"]].concat(),
                        "probe without check: name the check that probes it",
                    );
                }
                endpoints.push(Endpoint {
                    address,
                    check,
                    probe,
                    health: Arc::new(HealthCell::new(Probed::Unknown)),
                });
            }
            let min_healthy = r.min_healthy.unwrap_or(1);
            if min_healthy == 0 {
                self.err(&["regions", name, "min_healthy"], "must be at least 1");
            } else if !r.endpoints.is_empty() && min_healthy as usize > r.endpoints.len() {
                self.err(
                    &["regions", name, "min_healthy"],
                    format!(
                        "min_healthy {min_healthy} is more than the region's {} endpoints",
                        r.endpoints.len()
                    ),
                );
            }
            out.push(Region {
                name: name.clone(),
                location,
                trig: location.map(|l| l.trig()),
                weight,
                min_healthy,
                drain: r.drain.unwrap_or(false),
                has_v4: endpoints.iter().any(|e| e.address.is_ipv4()),
                has_v6: endpoints.iter().any(|e| e.address.is_ipv6()),
                endpoints,
            });
        }
        out
    }

    pub(in crate::config) fn region_list(
        &mut self,
        path: &[&str],
        names: &[String],
        ids: &HashMap<&str, RegionId>,
    ) -> Vec<RegionId> {
        let mut out = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let idx = i.to_string();
            let p = [path, &[idx.as_str()]].concat();
            match ids.get(n.as_str()) {
                None => self.err(&p, format!("unknown region {n:?}")),
                Some(id) if out.contains(id) => {
                    self.err(&p, format!("region {n:?} is listed twice"))
                }
                Some(id) => out.push(*id),
            }
        }
        out
    }
}
