//! Metric names (part of the product contract, see DESIGN.md) and their handles.
//!
//! The query path never calls `with_label_values`: every (protocol, qtype, rcode) counter
//! is resolved once here, and per-(service, region) answer counters are resolved when a
//! snapshot is built. Labels are bounded: never a query name or a client address.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// `geode_dns_queries_total{protocol, qtype, rcode}`.
pub const DNS_QUERIES: &str = "geode_dns_queries_total";
/// `geode_dns_answers_total{service, region}`.
pub const DNS_ANSWERS: &str = "geode_dns_answers_total";
/// `geode_endpoint_up{region, endpoint}`.
pub const ENDPOINT_UP: &str = "geode_endpoint_up";
/// `geode_region_up{region}`.
pub const REGION_UP: &str = "geode_region_up";
/// `geode_health_probes_total{region, endpoint, result}`.
pub const PROBES: &str = "geode_health_probes_total";
/// `geode_health_probe_duration_seconds{region, endpoint}`.
pub const PROBE_DURATION: &str = "geode_health_probe_duration_seconds";
/// `geode_health_transitions_total{region, endpoint, to}`.
pub const TRANSITIONS: &str = "geode_health_transitions_total";
/// `geode_config_reloads_total{result}`.
pub const RELOADS: &str = "geode_config_reloads_total";
/// `geode_config_last_reload_success_timestamp_seconds`.
pub const LAST_RELOAD: &str = "geode_config_last_reload_success_timestamp_seconds";
/// `geode_geoip_lookups_total{result}`.
pub const GEOIP_LOOKUPS: &str = "geode_geoip_lookups_total";
/// `geode_build_info{version}`.
pub const BUILD_INFO: &str = "geode_build_info";
/// `geode_dns_answer_cache_total{result}`: geode's addition to the contract's families
/// (README "Metrics"), so an operator can see what share of UDP answers came from the
/// answer cache.
pub const ANSWER_CACHE: &str = "geode_dns_answer_cache_total";
/// `geode_dns_malformed_total{reason}`: geode's addition (README "Metrics"): datagrams and
/// messages dropped or refused as malformed, by [`MALFORMED_REASONS`].
pub const DNS_MALFORMED: &str = "geode_dns_malformed_total";

/// The reason label values of [`DNS_MALFORMED`] (index = `crate::dns::malformed::Malformed`).
pub const MALFORMED_REASONS: [&str; 6] = [
    "short",
    "response",
    "undecodable",
    "edns_option",
    "ecs",
    "question_count",
];

/// `geode_dnssec_signatures_total`: RRSIGs made (signature cache misses times keys).
pub const DNSSEC_SIGNATURES: &str = "geode_dnssec_signatures_total";
/// `geode_dnssec_signature_cache_total{result}`: RRsets looked up in the signature cache,
/// by result (hit, miss).
pub const DNSSEC_SIG_CACHE: &str = "geode_dnssec_signature_cache_total";
/// `geode_dnssec_compact_budget_exceeded_total`: compact-denial answers that fell back to
/// the NSEC chain because the zone's per-second signing budget was spent.
pub const DNSSEC_OVER_BUDGET: &str = "geode_dnssec_compact_budget_exceeded_total";

/// `geode_region_drained{region}`: 1 while the region is drained by config or override.
pub const REGION_DRAINED: &str = "geode_region_drained";
/// `geode_admin_changes_total{action}`: runtime override changes (and expiries).
pub const ADMIN_CHANGES: &str = "geode_admin_changes_total";

/// `geode_cluster_peer_up{peer}`: 1 while this instance's last message to the peer (its
/// configured address) was accepted, within `stale_after`.
pub const CLUSTER_PEER_UP: &str = "geode_cluster_peer_up";
/// `geode_endpoint_votes{region, endpoint, verdict}`: fresh vantages (own included) saying
/// `up`, `down` or `unknown` about an endpoint.
pub const ENDPOINT_VOTES: &str = "geode_endpoint_votes";
/// `geode_cluster_messages_total{result}`: peer messages received, by
/// `crate::cluster::wire::RESULTS` (accepted, or why refused).
pub const CLUSTER_MESSAGES: &str = "geode_cluster_messages_total";

/// The `action` label values of [`ADMIN_CHANGES`].
pub const ADMIN_ACTIONS: [&str; 8] = [
    "drain",
    "undrain",
    "weight",
    "weight_clear",
    "force_up",
    "force_down",
    "force_clear",
    "expire",
];

/// Transport a query came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp = 0,
    /// TCP.
    Tcp = 1,
}

/// The qtype label values; anything else counts as `other`.
pub const QTYPES: [&str; 13] = [
    "A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS", "SOA", "PTR", "ANY", "HTTPS", "other",
];
/// The rcode label values; anything else counts as `other`.
pub const RCODES: [&str; 8] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "SERVFAIL", "NOTIMP", "BADVERS", "other",
];

/// Index of a qtype mnemonic in [`QTYPES`].
pub fn qtype_index(name: &str) -> usize {
    QTYPES
        .iter()
        .position(|q| *q == name)
        .unwrap_or(QTYPES.len() - 1)
}

/// Index of an rcode mnemonic in [`RCODES`].
pub fn rcode_index(name: &str) -> usize {
    RCODES
        .iter()
        .position(|q| *q == name)
        .unwrap_or(RCODES.len() - 1)
}

/// Every geode metric, registered on one registry.
pub struct Metrics {
    /// The registry /metrics gathers.
    pub registry: Registry,
    queries: [[[IntCounter; RCODES.len()]; QTYPES.len()]; 2],
    /// Answers by service and region; children are resolved per snapshot.
    pub answers: IntCounterVec,
    /// Endpoint probed state.
    pub endpoint_up: IntGaugeVec,
    /// Region state (at least min_healthy endpoints up).
    pub region_up: IntGaugeVec,
    /// Probe results.
    pub probes: IntCounterVec,
    /// Probe latency.
    pub probe_duration: HistogramVec,
    /// Up/down flips.
    pub transitions: IntCounterVec,
    /// Successful reloads.
    pub reload_success: IntCounter,
    /// Failed reloads.
    pub reload_failure: IntCounter,
    /// Unix time of the last successful (re)load.
    pub last_reload: Gauge,
    /// GeoIP lookups with data.
    pub geoip_hit: IntCounter,
    /// GeoIP lookups without data.
    pub geoip_miss: IntCounter,
    /// UDP queries answered from the answer cache.
    pub answer_cache_hit: IntCounter,
    /// UDP queries looked up in the answer cache and not found there.
    pub answer_cache_miss: IntCounter,
    /// Malformed input by reason, indexed like [`MALFORMED_REASONS`].
    pub malformed: [IntCounter; MALFORMED_REASONS.len()],
    /// Drained state by region (config or override).
    pub region_drained: IntGaugeVec,
    /// Runtime override changes by action ([`ADMIN_ACTIONS`]).
    pub admin_changes: IntCounterVec,
    /// [`CLUSTER_PEER_UP`].
    pub cluster_peer_up: IntGaugeVec,
    /// [`ENDPOINT_VOTES`].
    pub endpoint_votes: IntGaugeVec,
    /// [`CLUSTER_MESSAGES`].
    pub cluster_messages: IntCounterVec,
    /// DNSSEC signing counters, handed to every zone signer.
    pub dnssec: crate::dnssec::SignCounters,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);

        let queries_vec = IntCounterVec::new(
            Opts::new(
                DNS_QUERIES,
                "DNS queries answered, by transport, query type and response code.",
            ),
            &["protocol", "qtype", "rcode"],
        )?;
        reg(Box::new(queries_vec.clone()))?;
        let queries = [Proto::Udp, Proto::Tcp].map(|p| {
            let proto = if p == Proto::Udp { "udp" } else { "tcp" };
            QTYPES.map(|q| RCODES.map(|r| queries_vec.with_label_values(&[proto, q, r])))
        });
        let answers = IntCounterVec::new(
            Opts::new(
                DNS_ANSWERS,
                "GSLB answers given, by service and the region answered with.",
            ),
            &["service", "region"],
        )?;
        reg(Box::new(answers.clone()))?;
        let endpoint_up = IntGaugeVec::new(
            Opts::new(ENDPOINT_UP, "1 when the endpoint passes its health checks."),
            &["region", "endpoint"],
        )?;
        reg(Box::new(endpoint_up.clone()))?;
        let region_up = IntGaugeVec::new(
            Opts::new(
                REGION_UP,
                "1 when at least min_healthy of the region's endpoints are up.",
            ),
            &["region"],
        )?;
        reg(Box::new(region_up.clone()))?;
        let probes = IntCounterVec::new(
            Opts::new(PROBES, "Health probes run, by result."),
            &["region", "endpoint", "result"],
        )?;
        reg(Box::new(probes.clone()))?;
        let probe_duration = HistogramVec::new(
            HistogramOpts::new(PROBE_DURATION, "Health probe duration.").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["region", "endpoint"],
        )?;
        reg(Box::new(probe_duration.clone()))?;
        let transitions = IntCounterVec::new(
            Opts::new(TRANSITIONS, "Endpoint health flips, by new state."),
            &["region", "endpoint", "to"],
        )?;
        reg(Box::new(transitions.clone()))?;
        let reloads = IntCounterVec::new(
            Opts::new(RELOADS, "Config reloads, by result."),
            &["result"],
        )?;
        reg(Box::new(reloads.clone()))?;
        let last_reload = Gauge::new(LAST_RELOAD, "Unix time of the last successful config load.")?;
        reg(Box::new(last_reload.clone()))?;
        let geoip = IntCounterVec::new(
            Opts::new(GEOIP_LOOKUPS, "GeoIP lookups, by result."),
            &["result"],
        )?;
        reg(Box::new(geoip.clone()))?;
        let cache = IntCounterVec::new(
            Opts::new(
                ANSWER_CACHE,
                "UDP queries looked up in the answer cache, by result (hit, miss).",
            ),
            &["result"],
        )?;
        reg(Box::new(cache.clone()))?;
        let malformed = IntCounterVec::new(
            Opts::new(
                DNS_MALFORMED,
                "DNS messages dropped or answered FORMERR as malformed, by reason.",
            ),
            &["reason"],
        )?;
        reg(Box::new(malformed.clone()))?;
        let build = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Build information; always 1."),
            &["version"],
        )?;
        reg(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let region_drained = IntGaugeVec::new(
            Opts::new(
                REGION_DRAINED,
                "1 while the region is drained, by config (drain = true) or by a runtime override.",
            ),
            &["region"],
        )?;
        reg(Box::new(region_drained.clone()))?;
        let admin_changes = IntCounterVec::new(
            Opts::new(
                ADMIN_CHANGES,
                "Runtime override changes made through the admin API, and expiries, by action.",
            ),
            &["action"],
        )?;
        reg(Box::new(admin_changes.clone()))?;
        let cluster_peer_up = IntGaugeVec::new(
            Opts::new(
                CLUSTER_PEER_UP,
                "1 while the last message to this peer was accepted within stale_after ([cluster]).",
            ),
            &["peer"],
        )?;
        reg(Box::new(cluster_peer_up.clone()))?;
        let endpoint_votes = IntGaugeVec::new(
            Opts::new(
                ENDPOINT_VOTES,
                "Fresh vantages (this instance included) giving this verdict on the endpoint ([cluster]).",
            ),
            &["region", "endpoint", "verdict"],
        )?;
        reg(Box::new(endpoint_votes.clone()))?;
        let cluster_messages = IntCounterVec::new(
            Opts::new(
                CLUSTER_MESSAGES,
                "Peer messages received, by result: accepted, or why refused ([cluster]).",
            ),
            &["result"],
        )?;
        reg(Box::new(cluster_messages.clone()))?;
        let signatures = IntCounter::new(
            DNSSEC_SIGNATURES,
            "RRSIG records made by online signing (signature cache misses times keys).",
        )?;
        reg(Box::new(signatures.clone()))?;
        let sig_cache = IntCounterVec::new(
            Opts::new(
                DNSSEC_SIG_CACHE,
                "RRsets of DO answers looked up in the signature cache, by result (hit, miss).",
            ),
            &["result"],
        )?;
        reg(Box::new(sig_cache.clone()))?;
        let over_budget = IntCounter::new(
            DNSSEC_OVER_BUDGET,
            "Compact-denial answers that used the NSEC chain because the signing budget was spent.",
        )?;
        reg(Box::new(over_budget.clone()))?;
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            queries,
            answers,
            endpoint_up,
            region_up,
            probes,
            probe_duration,
            transitions,
            reload_success: reloads.with_label_values(&["success"]),
            reload_failure: reloads.with_label_values(&["failure"]),
            last_reload,
            geoip_hit: geoip.with_label_values(&["hit"]),
            geoip_miss: geoip.with_label_values(&["miss"]),
            answer_cache_hit: cache.with_label_values(&["hit"]),
            answer_cache_miss: cache.with_label_values(&["miss"]),
            malformed: MALFORMED_REASONS.map(|r| malformed.with_label_values(&[r])),
            region_drained,
            cluster_peer_up,
            endpoint_votes,
            cluster_messages,
            admin_changes,
            dnssec: crate::dnssec::SignCounters {
                signatures,
                hits: sig_cache.with_label_values(&["hit"]),
                misses: sig_cache.with_label_values(&["miss"]),
                over_budget,
            },
            registry,
        })
    }

    /// Counts one query; indexes come from [`qtype_index`] and [`rcode_index`].
    #[inline]
    pub fn query(&self, proto: Proto, qtype: usize, rcode: usize) {
        self.queries[proto as usize][qtype.min(QTYPES.len() - 1)][rcode.min(RCODES.len() - 1)]
            .inc();
    }

    /// A probe-duration child (resolved when a probe task starts, not per probe).
    pub fn probe_histogram(&self, region: &str, endpoint: &str) -> Histogram {
        self.probe_duration.with_label_values(&[region, endpoint])
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> (String, Vec<u8>) {
        let enc = TextEncoder::new();
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        (enc.format_type().to_string(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_family_is_exposed() {
        let m = Metrics::new().unwrap();
        m.query(Proto::Udp, qtype_index("A"), rcode_index("NOERROR"));
        m.answers.with_label_values(&["www.example.", "eu"]).inc();
        m.endpoint_up.with_label_values(&["eu", "192.0.2.1"]).set(1);
        m.region_up.with_label_values(&["eu"]).set(1);
        m.probes
            .with_label_values(&["eu", "192.0.2.1", "success"])
            .inc();
        m.probe_histogram("eu", "192.0.2.1").observe(0.001);
        m.transitions
            .with_label_values(&["eu", "192.0.2.1", "up"])
            .inc();
        m.reload_success.inc();
        m.geoip_hit.inc();
        m.answer_cache_hit.inc();
        m.region_drained.with_label_values(&["eu"]).set(1);
        m.admin_changes.with_label_values(&["drain"]).inc();
        let (_, body) = m.render();
        let text = String::from_utf8(body).unwrap();
        for name in [
            DNS_QUERIES,
            DNS_ANSWERS,
            ENDPOINT_UP,
            REGION_UP,
            PROBES,
            PROBE_DURATION,
            TRANSITIONS,
            RELOADS,
            LAST_RELOAD,
            GEOIP_LOOKUPS,
            BUILD_INFO,
            ANSWER_CACHE,
            REGION_DRAINED,
            ADMIN_CHANGES,
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(
            text.contains(
                "geode_dns_queries_total{protocol=\"udp\",qtype=\"A\",rcode=\"NOERROR\"} 1"
            )
        );
    }

    #[test]
    fn unknown_labels_fold_into_other() {
        assert_eq!(QTYPES[qtype_index("NAPTR")], "other");
        assert_eq!(RCODES[rcode_index("YXDOMAIN")], "other");
    }
}
