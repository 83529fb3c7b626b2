//! Locating a client: operator networks first, the database second.

use std::net::IpAddr;

use super::GeoDb;
use crate::countries;
use crate::model::{ClientLocation, ClientSource, Coordinates, LocatedBy, Model};

/// Turns an IPv4-mapped IPv6 address into IPv4 (RFC 7871 treats it as IPv4).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Outcome of a GeoIP consultation, for the `geode_geoip_lookups_total` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoLookup {
    /// Not consulted (operator override, or no database).
    Skipped,
    /// The database had data.
    Hit,
    /// The database had nothing usable.
    Miss,
}

impl GeoLookup {
    /// What consulting the database came to for a location [`locate`] made: a hit when
    /// GeoIP located it, a miss when the database was consulted and did not, else not
    /// consulted. The one rule, so a location kept by address (the fast path's
    /// `RouteMemo::located`) counts as the fresh one did.
    pub fn of(loc: &ClientLocation, database: bool) -> GeoLookup {
        match loc.by {
            LocatedBy::GeoIp(_) => GeoLookup::Hit,
            LocatedBy::Unknown(_) if database => GeoLookup::Miss,
            LocatedBy::Unknown(_) | LocatedBy::ClientNetwork(_) => GeoLookup::Skipped,
        }
    }

    /// Counts this lookup in `geode_geoip_lookups_total`.
    pub fn count(self, metrics: &crate::metrics::Metrics) {
        match self {
            GeoLookup::Hit => metrics.geoip_hit.inc(),
            GeoLookup::Miss => metrics.geoip_miss.inc(),
            GeoLookup::Skipped => {}
        }
    }
}

/// Locates a client: the longest `[client_networks]` match, else GeoIP, else unknown.
/// The scope is the deciding network's prefix, lengthened so the block it names holds no
/// operator network the client is not in.
#[inline]
pub fn locate(
    model: &Model,
    geo: Option<&GeoDb>,
    ip: IpAddr,
    source: ClientSource,
) -> (ClientLocation, GeoLookup) {
    // Inlined, so a caller that keeps only the location (the fast path) builds no pair.
    let loc = located(model, geo, ip, source);
    (loc, GeoLookup::of(&loc, geo.is_some()))
}

/// [`locate`]'s location.
fn located(model: &Model, geo: Option<&GeoDb>, ip: IpAddr, source: ClientSource) -> ClientLocation {
    let ip = canonical_ip(ip);
    let mut loc = ClientLocation::unknown(ip, source);
    let mut deciding = 0u8;
    if let Some(cn) = model.client_networks.iter().find(|c| c.net.contains(&ip)) {
        let country = cn
            .country
            .and_then(|c| countries::country(crate::model::code_str(&c)));
        loc.by = LocatedBy::ClientNetwork(cn.net);
        loc.country = cn.country;
        loc.continent = cn.continent.or(country.map(|c| c.continent));
        loc.coords = cn.location.or(country.map(|c| Coordinates {
            lat: c.lat,
            lon: c.lon,
        }));
        deciding = cn.net.prefix_len();
    } else if let Some(db) = geo {
        match db.lookup(ip) {
            Some(hit) if hit.has_data() => {
                loc.by = LocatedBy::GeoIp(hit.network);
                loc.country = hit.country;
                loc.continent = hit.continent;
                loc.coords = hit.coords.or_else(|| {
                    hit.country
                        .and_then(|c| countries::country(crate::model::code_str(&c)))
                        .map(|c| Coordinates {
                            lat: c.lat,
                            lon: c.lon,
                        })
                });
                deciding = hit.network.prefix_len();
            }
            Some(hit) => {
                loc.by = LocatedBy::Unknown(Some(hit.network));
                deciding = hit.network.prefix_len();
            }
            None => {}
        }
    }
    loc.scope = deciding.max(crate::model::scope_floor(ip, &model.operator_networks));
    loc
}
