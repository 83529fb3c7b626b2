//! Validation of `[services.*]`, `[latency]` and `[client_networks]`.

use super::*;

impl Validator<'_> {
    pub(in crate::config) fn services(
        &mut self,
        raw: &BTreeMap<String, raw::RawService>,
        ids: &HashMap<&str, RegionId>,
        zones: &mut [Zone],
    ) -> Vec<Service> {
        let mut out: Vec<Service> = Vec::new();
        // In file order, so the second spelling of a name is the one reported.
        let mut ordered: Vec<_> = raw.iter().collect();
        ordered.sort_by_key(|(k, _)| self.index.line(&["services", k.as_str()]));
        let mut seen: HashMap<String, String> = HashMap::new();
        for (key, s) in ordered {
            let sp = ["services", key.as_str()];
            let p = |k: &'static str| ["services", key.as_str(), k];
            let name = match normalize_name(key) {
                Ok(n) => n,
                Err(e) => {
                    self.err(&sp, e);
                    continue;
                }
            };
            if let Some(prev) = seen.insert(name.clone(), key.clone()) {
                let line = self.index.line(&["services", prev.as_str()]);
                self.err(
                    &sp,
                    format!(
                        "duplicate service {name} (already defined on line {line} as {prev:?})"
                    ),
                );
                continue;
            }
            if name.contains('*') {
                self.err(
                    &sp,
                    format!("wildcard names are not supported ({name} would match only itself; list each name)"),
                );
                continue;
            }
            let Some(zone) = zones.iter().position(|z| in_zone(&name, &z.origin)) else {
                self.err(&sp, format!("service {name} is outside every zone"));
                continue;
            };
            if let Some(r) = zones[zone].records.iter().find(|r| {
                r.name == name
                    && matches!(
                        r.data,
                        RecordData::A(_) | RecordData::Aaaa(_) | RecordData::Cname(_)
                    )
            }) {
                self.err(
                    &sp,
                    format!(
                        "service {name} clashes with a static {} record of the same name",
                        r.data.type_name()
                    ),
                );
                continue;
            }
            if s.regions.is_empty() {
                self.err(&p("regions"), "a service needs at least one region");
            }
            if s.regions.len() > MAX_SERVICE_REGIONS {
                self.err(
                    &p("regions"),
                    format!("at most {MAX_SERVICE_REGIONS} regions per service"),
                );
            }
            let regions = self.region_list(&p("regions"), &s.regions, ids);
            let policy = match s.policy.as_deref().unwrap_or("nearest") {
                "nearest" => Policy::Nearest,
                "weighted" => Policy::Weighted,
                "failover" => Policy::Failover,
                o => {
                    self.err(
                        &p("policy"),
                        format!("unknown policy {o:?} (nearest, weighted or failover)"),
                    );
                    Policy::Nearest
                }
            };
            let when_all_down = match s.when_all_down.as_deref().unwrap_or("all") {
                "all" => AllDown::All,
                "first" => AllDown::First,
                "nodata" => AllDown::NoData,
                "servfail" => AllDown::ServFail,
                o => {
                    self.err(
                        &p("when_all_down"),
                        format!("unknown value {o:?} (all, first, nodata or servfail)"),
                    );
                    AllDown::All
                }
            };
            let max_answers = s.max_answers.unwrap_or(8);
            if max_answers == 0 || max_answers as usize > MAX_ANSWERS {
                self.err(
                    &p("max_answers"),
                    format!("must be between 1 and {MAX_ANSWERS}"),
                );
            }
            let mut fence = KeyedTable::default();
            for (fk, names) in s.fence.iter().flatten() {
                let fp = ["services", key.as_str(), "fence", fk.as_str()];
                let list = self.region_list(&fp, names, ids);
                for (i, r) in list.iter().enumerate() {
                    if !regions.contains(r) {
                        self.err(
                            &[&fp[..], &[i.to_string().as_str()]].concat(),
                            format!(
                                "fence region {:?} is not one of the service's regions",
                                names[i]
                            ),
                        );
                    }
                }
                if names.is_empty() {
                    self.err(&fp, "a fence must allow at least one region");
                }
                match parse_client_key(fk) {
                    Ok(k) => insert_keyed(&mut fence, k, list),
                    Err(e) => self.err(&fp, e),
                }
            }
            let mut weights = Vec::new();
            for (region, w) in s.weights.iter().flatten() {
                let wp = ["services", key.as_str(), "weights", region.as_str()];
                match ids.get(region.as_str()) {
                    None => self.err(&wp, format!("unknown region {region:?}")),
                    Some(id) if !regions.contains(id) => self.err(
                        &wp,
                        format!("region {region:?} is not one of the service's regions"),
                    ),
                    Some(_) if *w > 1_000_000 => self.err(&wp, "weight must be at most 1000000"),
                    Some(id) => weights.push((*id, *w)),
                }
            }
            out.push(Service {
                name,
                zone,
                weights,
                regions,
                policy,
                ttl: self.ttl(&p("ttl"), s.ttl, 30),
                max_answers: max_answers.clamp(1, MAX_ANSWERS as u32) as u8,
                when_all_down,
                fence,
            });
        }
        // Services are sorted by name (binary search); fix zone back-references.
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by(|a, b| out[*a].name.cmp(&out[*b].name));
        let mut sorted: Vec<Option<Service>> = out.into_iter().map(Some).collect();
        let out: Vec<Service> = order.iter().filter_map(|&i| sorted[i].take()).collect();
        for (zi, z) in zones.iter_mut().enumerate() {
            z.services = out
                .iter()
                .enumerate()
                .filter(|(_, s)| s.zone == zi)
                .map(|(i, _)| i as u16)
                .collect();
        }
        out
    }

    pub(in crate::config) fn latency(
        &mut self,
        raw: &BTreeMap<String, BTreeMap<String, u32>>,
        ids: &HashMap<&str, RegionId>,
    ) -> KeyedTable<LatencyRow> {
        let mut table = KeyedTable::default();
        for (key, row) in raw {
            let mut rtt = Vec::new();
            for (region, ms) in row {
                match ids.get(region.as_str()) {
                    Some(id) => rtt.push((*id, *ms)),
                    None => self.err(
                        &["latency", key, region],
                        format!("unknown region {region:?}"),
                    ),
                }
            }
            match parse_client_key(key) {
                Ok(k) => insert_keyed(&mut table, k, LatencyRow { rtt }),
                Err(e) => self.err(&["latency", key], e),
            }
        }
        table
    }

    pub(in crate::config) fn client_networks(
        &mut self,
        raw: &BTreeMap<String, raw::RawClientNetwork>,
    ) -> Vec<ClientNetwork> {
        let mut out = Vec::new();
        for (key, c) in raw {
            let net = match parse_net(key) {
                Ok(n) => n,
                Err(e) => {
                    self.err(&["client_networks", key], e);
                    continue;
                }
            };
            let location = self.location(&["client_networks", key, "location"], c.location);
            let country = c
                .country
                .as_deref()
                .and_then(|s| match parse_code(s, "country") {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.err(&["client_networks", key, "country"], e);
                        None
                    }
                });
            let continent = c
                .continent
                .as_deref()
                .and_then(|s| match parse_code(s, "continent") {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.err(&["client_networks", key, "continent"], e);
                        None
                    }
                });
            if c.location.is_none() && c.country.is_none() && c.continent.is_none() {
                self.err(
                    &["client_networks", key],
                    "give at least one of location, country, continent",
                );
            }
            out.push(ClientNetwork {
                net,
                location,
                country,
                continent,
            });
        }
        out.sort_by(|a, b| {
            b.net
                .prefix_len()
                .cmp(&a.net.prefix_len())
                .then(a.net.cmp(&b.net))
        });
        out
    }
}
