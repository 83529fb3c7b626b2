//! Config loading: TOML text -> [`raw`] serde mirror -> validated [`Model`].
//!
//! Two layers, as in NLnet Labs' cascade: the mirror only has shape (and rejects
//! unknown keys); validation collects *every* problem, each as `file:line: key: message`,
//! so an operator fixes a file in one pass. Pure: reads one file, no sockets, no GeoIP.

pub mod raw;
pub mod read;
pub mod spans;
pub mod unknown;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::countries;
use crate::model::{
    AdminSettings, AllDown, Check, CheckKind, ClientKey, ClientNetwork, Coordinates, Denial,
    Endpoint, HealthCell, HttpCheck, KeyedTable, LatencyRow, MAX_ANSWERS, MAX_SERVICE_REGIONS,
    Model, Policy, Probed, RecordData, Region, RegionId, Secret, ServerSettings, Service, Soa,
    StaticRecord, Zone, ZoneDnssec,
};
use raw::RawConfig;
use spans::{SpanIndex, render};

/// Largest TTL (RFC 2181 8).
const MAX_TTL: u32 = 0x7fff_ffff;
/// Largest `server.answer_cache_kib`: a cache is allocated per UDP socket, so a typo of a
/// few digits should be an error, not a machine out of memory.
const MAX_ANSWER_CACHE_KIB: u32 = 1 << 20;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is with the file as a whole.
    pub line: usize,
    /// Dotted key path, as written in TOML.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.key,
                self.message
            )
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// At least one.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A loaded file: the model plus what is needed to attribute later errors to lines.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub model: Model,
    /// `[admin]`, when the runtime override API is enabled.
    pub admin: Option<AdminSettings>,
    /// Where it came from.
    pub source: Source,
}

/// The file a model came from.
#[derive(Debug)]
pub struct Source {
    /// Path as given.
    pub file: PathBuf,
    /// FNV-1a 64 of the text, hex: identifies the running config in /status and logs.
    pub hash: String,
    /// Endpoints whose probe is `"self"`, as (region, address): they probe this server's
    /// own admin HTTP listener, wherever `--http-listen` puts it (see [`self_probe_target`]).
    pub self_probes: Vec<(String, IpAddr)>,
    index: SpanIndex,
}

/// Where a `probe = "self"` connects for an admin listener bound at `http`: the same
/// address, with loopback in place of a wildcard (a connect to 0.0.0.0 is not portable).
pub fn self_probe_target(http: SocketAddr) -> SocketAddr {
    let ip = match http.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, http.port())
}

impl Source {
    /// A problem located at a key of this file (for errors found after validation, such
    /// as a GeoIP database that cannot be opened).
    pub fn problem(&self, path: &[&str], message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: self.index.line(path),
            key: render(path),
            message: message.into(),
        }
    }
}

/// Reads and validates a config file.
///
/// Besides [`parse`]'s checks, the file must be a regular file of at most
/// [`read::MAX_CONFIG_BYTES`], and it must define a zone: an empty or comment-only file
/// (a truncated push, a ConfigMap that lost its key) would otherwise be applied and
/// answer REFUSED to everything while /readyz stays 200.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let whole_file = |message: String| ConfigError {
        problems: vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message,
        }],
    };
    let bytes = read::read_regular(path, read::MAX_CONFIG_BYTES, "config file bound")
        .map_err(|e| whole_file(format!("cannot read config file: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| whole_file(format!("cannot read config file: not UTF-8 ({e})")))?;
    let loaded = parse(&text, path)?;
    if loaded.model.zones.is_empty() {
        return Err(whole_file(
            "no zone defined: geode would answer REFUSED to every query; add a \
             [zones.\"example.com.\"] table with soa and ns (see config/example.toml)"
                .into(),
        ));
    }
    Ok(loaded)
}

/// Validates config text; `file` names it in errors and anchors relative paths.
pub fn parse(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    let file_problem = |line: usize, key: String, message: String| ConfigError {
        problems: vec![Problem {
            file: file.to_path_buf(),
            line,
            key,
            message,
        }],
    };
    let index = match SpanIndex::build(text) {
        Ok(i) => i,
        Err((span, msg)) => {
            let line = span.as_ref().map_or(1, |s| line_of_text(text, s.start));
            let mut msg = msg.trim().replace('`', "'");
            // "duplicate key" alone does not say which one; the span covers it.
            if let Some(k) = span
                .and_then(|s| text.get(s))
                .filter(|k| msg == "duplicate key" && !k.is_empty() && !k.contains('\n'))
            {
                msg = format!("duplicate key {}", k.trim());
            }
            return Err(file_problem(line, "(syntax)".into(), msg));
        }
    };
    // Every unknown key at once (serde's deny_unknown_fields would stop at the first).
    if let Ok(doc) = toml::de::DeTable::parse(text) {
        let unknown = unknown::unknown_keys(doc.get_ref());
        if !unknown.is_empty() {
            return Err(ConfigError {
                problems: unknown
                    .into_iter()
                    .map(|(path, at, message)| Problem {
                        file: file.to_path_buf(),
                        line: index.line_of(at),
                        key: render(&path),
                        message: humanize_serde(&message),
                    })
                    .collect(),
            });
        }
    }
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let message = humanize_serde(e.message());
            let key = index
                .path_at(at)
                .map(|p| {
                    // An unknown key is reported as itself, not as the innermost key
                    // of the table it opens (`[sevrices."www.example."]`).
                    match unknown_key_name(&message)
                        .and_then(|k| p.iter().rposition(|seg| seg == k))
                    {
                        Some(i) => render(&p[..=i]),
                        None => render(p),
                    }
                })
                .unwrap_or_else(|| "(document)".into());
            let line = e.span().map_or(1, |s| index.line_of(s.start));
            return Err(file_problem(line, key, message));
        }
    };
    let mut v = Validator {
        file: file.to_path_buf(),
        index: &index,
        problems: Vec::new(),
        self_probes: Vec::new(),
    };
    let base = file.parent().unwrap_or_else(|| Path::new("."));
    let admin = raw.admin.as_ref().and_then(|a| v.admin(a, base));
    let model = v.model(raw, base);
    if v.problems.is_empty() {
        let self_probes = v.self_probes;
        Ok(Loaded {
            model,
            admin,
            source: Source {
                file: file.to_path_buf(),
                hash: fnv_hex(text),
                index,
                self_probes,
            },
        })
    } else {
        v.problems.sort_by_key(|p| p.line);
        Err(ConfigError {
            problems: v.problems,
        })
    }
}

/// serde's wording, in the config file's terms: keys rather than fields, TOML type
/// names rather than Rust ones.
fn humanize_serde(message: &str) -> String {
    let mut m = message.trim().replace('`', "'");
    for (from, to) in [
        ("unknown field", "unknown key"),
        ("missing field", "missing key"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected usize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
    ] {
        m = m.replace(from, to);
    }
    m
}

/// The key named by an "unknown key 'x', expected …" message.
fn unknown_key_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown key '")?;
    rest.split_once('\'').map(|(k, _)| k)
}

fn line_of_text(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn fnv_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Parses `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. \"500ms\", \"2s\", \"1m\")"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: unit must be ms, s, m or h"
            ));
        }
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("invalid duration {s:?}: must be positive"));
    }
    if secs >= 86400.0 * 365.0 {
        return Err(format!("invalid duration {s:?}: must be less than a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Lower-cases and checks a domain name; adds the trailing dot.
pub fn normalize_name(s: &str) -> Result<String, String> {
    let mut n = s.trim().to_ascii_lowercase();
    if n.is_empty() {
        return Err("empty name".into());
    }
    if n == "." {
        return Ok(n);
    }
    if !n.ends_with('.') {
        n.push('.');
    }
    if n.len() > 254 {
        return Err(format!("name {s:?} is longer than 255 bytes"));
    }
    for label in n[..n.len() - 1].split('.') {
        if label.is_empty() {
            return Err(format!("name {s:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("name {s:?} has a label longer than 63 bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
        {
            return Err(format!(
                "name {s:?} has characters other than letters, digits, '-' and '_'"
            ));
        }
    }
    Ok(n)
}

/// True when `name` is `origin` or below it (both normalized).
pub fn in_zone(name: &str, origin: &str) -> bool {
    origin == "." || name == origin || name.ends_with(&format!(".{origin}"))
}

/// Resolves a record name against its zone: `@` is the apex, a trailing dot is absolute,
/// anything else is relative (zone-file convention).
fn qualify(name: &str, origin: &str) -> Result<String, String> {
    let name = name.trim();
    if name == "@" {
        return Ok(origin.to_string());
    }
    if name.ends_with('.') {
        return normalize_name(name);
    }
    if origin == "." {
        return normalize_name(name);
    }
    normalize_name(&format!("{name}.{origin}"))
}

fn parse_code(s: &str, what: &str) -> Result<[u8; 2], String> {
    let up = s.trim().to_ascii_uppercase();
    match what {
        "country" if countries::country(&up).is_some() => Ok([up.as_bytes()[0], up.as_bytes()[1]]),
        "continent" if countries::is_continent(&up) => Ok([up.as_bytes()[0], up.as_bytes()[1]]),
        "country" => Err(format!(
            "unknown country {s:?} (ISO 3166-1 alpha-2, e.g. \"DE\")"
        )),
        _ => Err(format!(
            "unknown continent {s:?} (one of AF, AN, AS, EU, NA, OC, SA)"
        )),
    }
}

/// Parses a network that must be written in canonical form (no host bits set).
fn parse_net(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid network {s:?} (expected CIDR like \"10.0.0.0/8\")"))?;
    if net.trunc() != net {
        return Err(format!(
            "network {s:?} has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses a client group key: `cidr:…`, `country:XX`, `continent:XX`.
pub fn parse_client_key(s: &str) -> Result<ClientKey, String> {
    let (kind, val) = s.split_once(':').ok_or_else(|| {
        format!("invalid client group {s:?} (expected cidr:NET, country:XX or continent:XX)")
    })?;
    match kind {
        "cidr" => Ok(ClientKey::Cidr(parse_net(val)?)),
        "country" => Ok(ClientKey::Country(parse_code(val, "country")?)),
        "continent" => Ok(ClientKey::Continent(parse_code(val, "continent")?)),
        _ => Err(format!(
            "invalid client group {s:?} (expected cidr:NET, country:XX or continent:XX)"
        )),
    }
}

/// Splits TXT presentation text into character strings: `"a" "b c"` gives two strings;
/// unquoted text is one value cut into 255-byte strings (RFC 1035 3.3.14).
fn parse_txt(value: &str) -> Result<Vec<String>, String> {
    let v = value.trim();
    if !v.starts_with('"') {
        let mut out = Vec::new();
        let mut cur = String::new();
        for ch in value.chars() {
            if cur.len() + ch.len_utf8() > 255 {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(ch);
        }
        out.push(cur);
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('"') => {}
            Some(c) => return Err(format!("unexpected {c:?} between quoted TXT strings")),
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                None => return Err("unterminated quoted TXT string".into()),
                Some('"') => break,
                Some('\\') => s.push(chars.next().ok_or("dangling backslash in TXT string")?),
                Some(c) => s.push(c),
            }
        }
        if s.len() > 255 {
            return Err(
                "a quoted TXT string is longer than 255 bytes (split it into several)".into(),
            );
        }
        out.push(s);
    }
    Ok(out)
}

/// Why a `[[zone.records]]` entry is refused: the kind says which key the problem names.
#[derive(Debug, Clone, PartialEq)]
enum RecordError {
    /// The `type` is not one geode serves.
    Type(String),
    /// The `value` does not parse as its type.
    Value(String),
}

impl RecordError {
    /// The record's key the problem is reported at.
    fn key(&self) -> &'static str {
        match self {
            RecordError::Type(_) => "type",
            RecordError::Value(_) => "value",
        }
    }

    fn into_message(self) -> String {
        match self {
            RecordError::Type(m) | RecordError::Value(m) => m,
        }
    }
}

fn parse_record(rtype: &str, value: &str, origin: &str) -> Result<RecordData, RecordError> {
    match parse_record_value(rtype, value, origin) {
        Ok(Some(data)) => Ok(data),
        Ok(None) => Err(RecordError::Type(format!(
            "unsupported record type {rtype:?} (A, AAAA, CNAME, TXT, MX, SRV, CAA, NS or PTR; the SOA comes from the zone's soa key)",
            rtype = rtype.to_ascii_uppercase()
        ))),
        Err(e) => Err(RecordError::Value(e)),
    }
}

/// The record's data, or `None` when geode does not serve its type.
fn parse_record_value(
    rtype: &str,
    value: &str,
    origin: &str,
) -> Result<Option<RecordData>, String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let name = |s: &str| qualify(s, origin);
    let num = |s: &str, what: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid {what} {s:?}"))
    };
    let want = |n: usize, shape: &str| {
        if fields.len() == n {
            Ok(())
        } else {
            Err(format!("{rtype} value must be \"{shape}\", got {value:?}"))
        }
    };
    match rtype.to_ascii_uppercase().as_str() {
        "A" => value
            .trim()
            .parse()
            .map(|a| Some(RecordData::A(a)))
            .map_err(|_| format!("invalid IPv4 address {value:?}")),
        "AAAA" => value
            .trim()
            .parse()
            .map(|a| Some(RecordData::Aaaa(a)))
            .map_err(|_| format!("invalid IPv6 address {value:?}")),
        "CNAME" => Ok(Some(RecordData::Cname(name(value)?))),
        "NS" => Ok(Some(RecordData::Ns(name(value)?))),
        "PTR" => Ok(Some(RecordData::Ptr(name(value)?))),
        "TXT" => Ok(Some(RecordData::Txt(parse_txt(value)?))),
        "MX" => {
            want(2, "PREFERENCE EXCHANGE")?;
            Ok(Some(RecordData::Mx {
                preference: num(fields[0], "preference")?,
                exchange: name(fields[1])?,
            }))
        }
        "SRV" => {
            want(4, "PRIORITY WEIGHT PORT TARGET")?;
            Ok(Some(RecordData::Srv {
                priority: num(fields[0], "priority")?,
                weight: num(fields[1], "weight")?,
                port: num(fields[2], "port")?,
                target: name(fields[3])?,
            }))
        }
        "CAA" => {
            let mut parts = value.trim().splitn(3, char::is_whitespace);
            let (Some(flags), Some(tag), Some(val)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "CAA value must be \"FLAGS TAG VALUE\", got {value:?}"
                ));
            };
            let flags: u8 = flags
                .parse()
                .map_err(|_| format!("invalid CAA flags {flags:?}"))?;
            if !matches!(tag, "issue" | "issuewild" | "iodef") {
                return Err(format!(
                    "CAA tag must be issue, issuewild or iodef, got {tag:?}"
                ));
            }
            let val = val.trim().trim_matches('"').to_string();
            Ok(Some(RecordData::Caa {
                critical: flags & 0x80 != 0,
                tag: tag.to_string(),
                value: val,
            }))
        }
        _ => Ok(None),
    }
}

struct Validator<'a> {
    file: PathBuf,
    index: &'a SpanIndex,
    problems: Vec<Problem>,
    /// Endpoints with `probe = "self"`: (region, address).
    self_probes: Vec<(String, IpAddr)>,
}

impl Validator<'_> {
    fn err(&mut self, path: &[&str], message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line: self.index.line(path),
            key: render(path),
            message: message.into(),
        });
    }

    /// A TTL, at most 2^31 - 1 (RFC 2181 8: larger values are read as 0 by resolvers).
    fn ttl(&mut self, path: &[&str], value: Option<u32>, default: u32) -> u32 {
        match value {
            Some(t) if t > MAX_TTL => {
                self.err(path, format!("TTL {t} is more than {MAX_TTL} (RFC 2181 8)"));
                MAX_TTL
            }
            Some(t) => t,
            None => default,
        }
    }

    fn duration(&mut self, path: &[&str], value: Option<&str>, default: Duration) -> Duration {
        match value.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    fn location(&mut self, path: &[&str], loc: Option<raw::RawLocation>) -> Option<Coordinates> {
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

    /// `[admin]`: both files are required; the token file must hold one non-empty line
    /// and must not be readable or writable by every user (it is a credential).
    fn admin(&mut self, a: &raw::RawAdmin, base: &Path) -> Option<AdminSettings> {
        let (Some(token_file), Some(state_file)) = (&a.token_file, &a.state_file) else {
            for (k, v) in [("token_file", &a.token_file), ("state_file", &a.state_file)] {
                if v.is_none() {
                    self.err(&["admin", k], format!("[admin] needs {k}"));
                }
            }
            return None;
        };
        let path = base.join(token_file);
        let key = ["admin", "token_file"];
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                self.err(&key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            self.err(
                &key,
                format!(
                    "{} is accessible to every user (mode {mode:04o}); it holds the admin token: chmod o-rwx it (e.g. chmod 600)",
                    path.display()
                ),
            );
            return None;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.err(&key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let token = text.trim_end_matches(['\n', '\r']);
        if token.is_empty() || token.contains(char::is_whitespace) {
            self.err(
                &key,
                format!(
                    "{} must hold the token on one line, without spaces",
                    path.display()
                ),
            );
            return None;
        }
        let state_path = base.join(state_file);
        let state_dir = state_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !state_dir.is_dir() {
            // Found now rather than at the first change, in the middle of an incident.
            self.err(
                &["admin", "state_file"],
                format!(
                    "directory {} does not exist (overrides could not be saved)",
                    state_dir.display()
                ),
            );
            return None;
        }
        Some(AdminSettings {
            token_file: path,
            state_file: state_path,
            token: Secret::new(token.to_string()),
        })
    }

    fn model(&mut self, raw: RawConfig, base: &Path) -> Model {
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

    fn server(&mut self, s: &raw::RawServer, base: &Path) -> ServerSettings {
        let mut dns_listen = Vec::new();
        let listen = s
            .dns_listen
            .clone()
            .unwrap_or_else(|| vec!["127.0.0.1:5353".into()]);
        if listen.is_empty() {
            self.err(&["server", "dns_listen"], "at least one address is needed");
        }
        for (i, a) in listen.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(sa) => dns_listen.push(sa),
                Err(_) => self.err(
                    &["server", "dns_listen", &i.to_string()],
                    format!("invalid address {a:?} (expected IP:PORT, e.g. \"127.0.0.1:53\" or \"[::1]:53\")"),
                ),
            }
        }
        let http_listen = match s.http_listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9153))),
            Some("") => None,
            Some(a) => match a.parse::<SocketAddr>() {
                Ok(sa) => Some(sa),
                Err(_) => {
                    self.err(
                        &["server", "http_listen"],
                        format!("invalid address {a:?} (expected IP:PORT)"),
                    );
                    None
                }
            },
        };
        let max_udp_payload = s.max_udp_payload.unwrap_or(1232);
        if !(512..=4096).contains(&max_udp_payload) {
            self.err(
                &["server", "max_udp_payload"],
                "must be between 512 and 4096",
            );
        }
        let tcp_max_connections = s.tcp_max_connections.unwrap_or(1024);
        if tcp_max_connections == 0 {
            self.err(&["server", "tcp_max_connections"], "must be at least 1");
        }
        let answer_cache_kib = s.answer_cache_kib.unwrap_or(1024);
        if answer_cache_kib > MAX_ANSWER_CACHE_KIB {
            self.err(
                &["server", "answer_cache_kib"],
                format!("must be at most {MAX_ANSWER_CACHE_KIB} (1 GiB per UDP socket)"),
            );
        }
        ServerSettings {
            dns_listen,
            http_listen,
            // `""` means no GeoIP, as `http_listen = ""` means no admin HTTP.
            geoip_db: s
                .geoip_db
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(|p| base.join(p)),
            max_udp_payload: max_udp_payload.clamp(512, 4096),
            tcp_idle_timeout: self.duration(
                &["server", "tcp_idle_timeout"],
                s.tcp_idle_timeout.as_deref(),
                Duration::from_secs(10),
            ),
            tcp_max_connections: tcp_max_connections.max(1),
            udp_sockets: s.udp_sockets.unwrap_or(0),
            answer_cache_bytes: answer_cache_kib.min(MAX_ANSWER_CACHE_KIB) as usize * 1024,
            reload_settle: self.duration(
                &["server", "reload_settle"],
                s.reload_settle.as_deref(),
                Duration::from_millis(500),
            ),
        }
    }

    /// `[zones."NAME".dnssec]`: paths and mode only; the key files are read and checked
    /// by the load step (`state::load`), which names them at `key_files` on error.
    fn dnssec(&mut self, key: &str, d: &raw::RawDnssec, base: &Path) -> Option<ZoneDnssec> {
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

    fn zones(&mut self, raw: &BTreeMap<String, raw::RawZone>, base: &Path) -> Vec<Zone> {
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

    fn checks(&mut self, raw: &BTreeMap<String, raw::RawCheck>) -> Vec<Check> {
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
    fn resolve_self_probes(&mut self, server: &ServerSettings, regions: &mut [Region]) {
        let probes = std::mem::take(&mut self.self_probes);
        for (region, address) in &probes {
            let Some(r) = regions.iter_mut().find(|r| &r.name == region) else {
                continue;
            };
            let Some(i) = r.endpoints.iter().position(|e| e.address == *address) else {
                continue;
            };
            match server.http_listen {
                Some(http) => r.endpoints[i].probe = Some(self_probe_target(http)),
                None => self.err(
                    &["regions", region, "endpoints", &i.to_string(), "probe"],
                    "probe = \"self\" probes this server's admin HTTP, but server.http_listen is \"\" (disabled)",
                ),
            }
        }
        self.self_probes = probes;
    }

    fn regions(&mut self, raw: &BTreeMap<String, raw::RawRegion>, checks: &[Check]) -> Vec<Region> {
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

    fn region_list(
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

    fn services(
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

    fn latency(
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

    fn client_networks(
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

fn insert_keyed<T>(table: &mut KeyedTable<T>, key: ClientKey, value: T) {
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

/// What is wrong with a probe's path, host or header value that cannot go on the wire:
/// a control character (HTAB allowed in header values, RFC 9110 5.5) or, outside
/// header values, a space.
fn forbidden_char(s: &str, header_value: bool) -> Option<String> {
    let bad = s.chars().find(|&c| {
        (c.is_control() && !(header_value && c == '\t')) || (!header_value && c.is_whitespace())
    })?;
    let what = if header_value {
        "control characters cannot be sent in an HTTP header"
    } else {
        "control characters and spaces cannot be sent in an HTTP request"
    };
    Some(format!(
        "contains {bad:?} (U+{:04X}); {what}",
        u32::from(bad)
    ))
}

/// The start-only keys whose values differ: a reload that changes any is refused by name.
/// Which keys are start-only is decided in one place, [`ServerSettings::start_only_changes`].
pub fn start_only_changes(old: &ServerSettings, new: &ServerSettings) -> Vec<&'static str> {
    old.start_only_changes(new)
}

#[cfg(test)]
mod tests;
