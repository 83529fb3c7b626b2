//! Validation of `[zones.*]`: SOA, NS and static records.

use super::*;
use crate::model::{Denial, ZoneDnssec};

impl Validator<'_> {
    /// `[zones."NAME".dnssec]`: paths and mode only; the key files are read and checked
    /// by the load step (`state::load`), which names them at `key_files` on error.
    pub(in crate::config) fn dnssec(
        &mut self,
        key: &str,
        d: &raw::RawDnssec,
        base: &Path,
    ) -> Option<ZoneDnssec> {
        let dp = ["zones", key, "dnssec"];
        let denial = match d.denial.as_deref() {
            None | Some("nsec") => Denial::Nsec,
            Some("compact") => Denial::Compact,
            Some(other) => {
                self.err(
                    &[&dp[..], &["denial"]].concat(),
                    format!("unknown denial {other:?} (nsec | compact)"),
                );
                Denial::Nsec
            }
        };
        if d.key_files.is_empty() {
            self.err(
                &[&dp[..], &["key_files"]].concat(),
                "at least one key file is needed (create one with `geode dnssec keygen --zone NAME`)",
            );
            return None;
        }
        let mut key_files = Vec::new();
        for (i, f) in d.key_files.iter().enumerate() {
            if !f.ends_with(".private") {
                self.err(
                    &[&dp[..], &["key_files", &i.to_string()]].concat(),
                    format!(
                        "{f:?} is not a BIND private key file name (K<zone>+<alg>+<tag>.private, \
                         with the .key file beside it)"
                    ),
                );
                continue;
            }
            key_files.push(base.join(f));
        }
        Some(ZoneDnssec {
            config_key: key.to_string(),
            key_files,
            denial,
            keys: Vec::new(),
        })
    }

    pub(in crate::config) fn zones(
        &mut self,
        raw: &BTreeMap<String, raw::RawZone>,
        base: &Path,
    ) -> Vec<Zone> {
        let mut zones: Vec<Zone> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        // In file order, so the second spelling of a zone is the one reported.
        let mut ordered: Vec<_> = raw.iter().collect();
        ordered.sort_by_key(|(k, _)| self.index.line(&["zones", k.as_str()]));
        let origins: Vec<String> = raw.keys().filter_map(|k| normalize_name(k).ok()).collect();
        for (key, z) in ordered {
            let zp = ["zones", key.as_str()];
            let origin = match normalize_name(key) {
                Ok(o) => o,
                Err(e) => {
                    self.err(&zp, e);
                    continue;
                }
            };
            if let Some(prev) = seen.insert(origin.clone(), key.clone()) {
                let line = self.index.line(&["zones", prev.as_str()]);
                self.err(
                    &zp,
                    format!("duplicate zone {origin} (already defined on line {line} as {prev:?})"),
                );
                continue;
            }
            let ttl = self.ttl(&["zones", key, "ttl"], z.ttl, 3600);
            let soa = match &z.soa {
                None => {
                    self.err(
                        &zp,
                        "missing soa (soa = { mname = …, rname = …, serial = … })",
                    );
                    None
                }
                Some(s) => {
                    let mut name = |field: &str, v: &str| match normalize_name(v) {
                        Ok(n) => n,
                        Err(e) => {
                            self.err(&["zones", key, "soa", field], e);
                            String::new()
                        }
                    };
                    Some(Soa {
                        mname: name("mname", &s.mname),
                        rname: name("rname", &s.rname),
                        serial: s.serial,
                        refresh: s.refresh.unwrap_or(3600),
                        retry: s.retry.unwrap_or(600),
                        expire: s.expire.unwrap_or(1_209_600),
                        minimum: s.minimum.unwrap_or(60),
                    })
                }
            };
            if z.ns.is_empty() {
                self.err(
                    &zp,
                    "missing ns (at least one name server, e.g. ns = [\"ns1.example.\"])",
                );
            }
            let mut ns = Vec::new();
            for (i, n) in z.ns.iter().enumerate() {
                match qualify(n, &origin) {
                    Ok(n) => ns.push(n),
                    Err(e) => self.err(&["zones", key, "ns", &i.to_string()], e),
                }
            }
            let mut records: Vec<StaticRecord> = Vec::new();
            for (i, r) in z.records.iter().enumerate() {
                let idx = i.to_string();
                let rp = ["zones", key.as_str(), "records", idx.as_str()];
                let name = match qualify(&r.name, &origin) {
                    Ok(n) if n.contains('*') => {
                        self.err(
                            &[&rp[..], &["name"]].concat(),
                            format!("wildcard records are not supported ({n} would match only itself; list each name)"),
                        );
                        continue;
                    }
                    Ok(n) if in_zone(&n, &origin) => {
                        // A name inside a more specific zone of this file is answered
                        // from that zone: here it would never be served.
                        if let Some(child) = origins
                            .iter()
                            .find(|o| **o != origin && in_zone(o, &origin) && in_zone(&n, o))
                        {
                            self.err(
                                &[&rp[..], &["name"]].concat(),
                                format!(
                                    "record name {n} is inside zone {child}, which this file also defines; it belongs there"
                                ),
                            );
                            continue;
                        }
                        n
                    }
                    Ok(n) => {
                        self.err(
                            &[&rp[..], &["name"]].concat(),
                            format!("record name {n} is outside its zone {origin}"),
                        );
                        continue;
                    }
                    Err(e) => {
                        self.err(&[&rp[..], &["name"]].concat(), e);
                        continue;
                    }
                };
                let data = match parse_record(&r.rtype, &r.value, &origin) {
                    Ok(d) => d,
                    Err(e) => {
                        self.err(&[&rp[..], &[e.key()]].concat(), e.into_message());
                        continue;
                    }
                };
                if matches!(data, RecordData::Ns(_)) && name != origin {
                    self.err(
                        &[&rp[..], &["type"]].concat(),
                        format!("NS records are only served at the apex ({origin}); delegating {name} is not supported"),
                    );
                    continue;
                }
                if matches!(data, RecordData::Cname(_)) && name == origin {
                    self.err(
                        &[&rp[..], &["type"]].concat(),
                        "CNAME at the zone apex (the apex has SOA and NS)",
                    );
                    continue;
                }
                let clash = records.iter().any(|o| {
                    o.name == name
                        && (matches!(o.data, RecordData::Cname(_))
                            != matches!(data, RecordData::Cname(_))
                            || matches!(data, RecordData::Cname(_)))
                });
                if clash {
                    self.err(
                        &[&rp[..], &["name"]].concat(),
                        format!("CNAME beside other data at {name} (RFC 1034 3.6.2: a CNAME owner has no other records)"),
                    );
                    continue;
                }
                if records.iter().any(|o| o.name == name && o.data == data) {
                    self.err(
                        &rp,
                        format!("duplicate {} record at {name}", data.type_name()),
                    );
                    continue;
                }
                let rttl = self.ttl(&[&rp[..], &["ttl"]].concat(), r.ttl, ttl);
                if let Some(o) = records.iter().find(|o| {
                    o.name == name && o.data.type_name() == data.type_name() && o.ttl != rttl
                }) {
                    self.err(
                        &[&rp[..], &["ttl"]].concat(),
                        format!(
                            "TTL {rttl} differs from the other {} records at {name} (TTL {}); an RRset has one TTL (RFC 2181 5.2)",
                            data.type_name(),
                            o.ttl
                        ),
                    );
                    continue;
                }
                records.push(StaticRecord {
                    name,
                    ttl: rttl,
                    data,
                });
            }
            let dnssec = z.dnssec.as_ref().and_then(|d| self.dnssec(key, d, base));
            if let Some(soa) = soa {
                zones.push(Zone {
                    origin,
                    ttl,
                    soa,
                    ns,
                    records,
                    services: Vec::new(),
                    dnssec,
                });
            }
        }
        // Most specific origin first, so the first zone that contains a name is its zone.
        zones.sort_by(|a, b| {
            b.origin
                .matches('.')
                .count()
                .cmp(&a.origin.matches('.').count())
                .then(a.origin.cmp(&b.origin))
        });
        zones
    }
}
