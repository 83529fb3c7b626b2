//! Validation, one section per file: `Validator` walks the serde mirror, collects every
//! problem with its key path, and builds the [`Model`].

mod checks;
mod cluster;
mod regions;
mod server;
mod services;
mod zones;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::error::Problem;
use crate::config::raw::RawConfig;
use crate::config::spans::{SpanIndex, render};
use crate::config::values::{
    forbidden_char, in_zone, normalize_name, parse_client_key, parse_code, parse_duration,
    parse_net, parse_record, qualify,
};
use crate::config::{raw, self_probe_target};
use crate::model::{
    AdminSettings, AllDown, Check, CheckKind, ClientKey, ClientNetwork, Coordinates, Endpoint,
    HealthCell, HttpCheck, KeyedTable, LatencyRow, LiveSettings, MAX_ANSWERS, MAX_SERVICE_REGIONS,
    Model, Policy, Probed, RecordData, Region, RegionId, Secret, ServerSettings, Service, Soa,
    StartSettings, StaticRecord, Zone,
};

/// Largest TTL (RFC 2181 8).
pub(super) const MAX_TTL: u32 = 0x7fff_ffff;

/// Largest `server.answer_cache_kib`: a cache is allocated per UDP socket, so a typo of a
/// few digits should be an error, not a machine out of memory.
pub(super) const MAX_ANSWER_CACHE_KIB: u32 = 1 << 20;

/// Walks one file's serde mirror, section by section (one file each), collecting every
/// problem with its key path instead of stopping at the first.
pub(in crate::config) struct Validator<'a> {
    /// The file, for each problem.
    pub(in crate::config) file: PathBuf,
    /// Key path -> line, for each problem.
    pub(in crate::config) index: &'a SpanIndex,
    /// Everything found so far.
    pub(in crate::config) problems: Vec<Problem>,
    /// Endpoints with `probe = "self"`: (region, address).
    pub(in crate::config) self_probes: Vec<(String, IpAddr)>,
}

impl Validator<'_> {
    pub(in crate::config) fn err(&mut self, path: &[&str], message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line: self.index.line(path),
            key: render(path),
            message: message.into(),
        });
    }

    /// A TTL, at most 2^31 - 1 (RFC 2181 8: larger values are read as 0 by resolvers).
    pub(in crate::config) fn ttl(
        &mut self,
        path: &[&str],
        value: Option<u32>,
        default: u32,
    ) -> u32 {
        match value {
            Some(t) if t > MAX_TTL => {
                self.err(path, format!("TTL {t} is more than {MAX_TTL} (RFC 2181 8)"));
                MAX_TTL
            }
            Some(t) => t,
            None => default,
        }
    }

    pub(in crate::config) fn duration(
        &mut self,
        path: &[&str],
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        match value.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    pub(in crate::config) fn location(
        &mut self,
        path: &[&str],
        loc: Option<raw::RawLocation>,
    ) -> Option<Coordinates> {
        let loc = loc?;
        let mut ok = true;
        if !(-90.0..=90.0).contains(&loc.lat) {
            let p = [path, &["lat"]].concat();
            self.err(&p, format!("latitude {} is outside -90..90", loc.lat));
            ok = false;
        }
        if !(-180.0..=180.0).contains(&loc.lon) {
            let p = [path, &["lon"]].concat();
            self.err(&p, format!("longitude {} is outside -180..180", loc.lon));
            ok = false;
        }
        ok.then_some(Coordinates {
            lat: loc.lat,
            lon: loc.lon,
        })
    }

    pub(in crate::config) fn model(&mut self, raw: RawConfig, base: &Path) -> Model {
        let server = self.server(&raw.server, base);
        let mut zones = self.zones(&raw.zones, base);
        let checks = self.checks(&raw.checks);
        let mut regions = self.regions(&raw.regions, &checks);
        self.resolve_self_probes(&server, &mut regions);
        let region_ids: HashMap<&str, RegionId> = regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i as RegionId))
            .collect();
        let services = self.services(&raw.services, &region_ids, &mut zones);
        let latency = self.latency(&raw.latency, &region_ids);
        let client_networks = self.client_networks(&raw.client_networks);

        let mut operator_networks: Vec<IpNet> = client_networks.iter().map(|c| c.net).collect();
        operator_networks.extend(latency.cidr.iter().map(|(n, _)| *n));
        for s in &services {
            operator_networks.extend(s.fence.cidr.iter().map(|(n, _)| *n));
        }
        operator_networks.sort();
        operator_networks.dedup();

        Model {
            server,
            zones,
            checks,
            regions,
            services,
            latency,
            client_networks,
            operator_networks,
        }
    }
}

pub(super) fn insert_keyed<T>(table: &mut KeyedTable<T>, key: ClientKey, value: T) {
    match key {
        ClientKey::Cidr(n) => {
            table.cidr.push((n, value));
            table
                .cidr
                .sort_by_key(|e| std::cmp::Reverse(e.0.prefix_len()));
        }
        ClientKey::Country(c) => {
            table.country.insert(c, value);
        }
        ClientKey::Continent(c) => {
            table.continent.insert(c, value);
        }
    }
}
