//! Config loading: TOML text -> [`raw`] serde mirror -> validated [`Model`].
//!
//! Two layers, as in NLnet Labs' cascade: the mirror only has shape (and rejects
//! unknown keys); validation collects *every* problem, each as `file:line: key: message`,
//! so an operator fixes a file in one pass. Pure: reads one file, no sockets, no GeoIP.

mod error;
pub mod raw;
pub mod read;
pub mod spans;
pub mod unknown;
mod validate;
mod values;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::model::{AdminSettings, ClusterSettings, Model, ServerSettings};
use raw::RawConfig;
use spans::{SpanIndex, render};

pub use error::{ConfigError, Problem};
use error::{humanize_serde, line_of_text, unknown_key_name};
use validate::Validator;
pub use values::{in_zone, normalize_name, parse_client_key, parse_duration};

/// The shortest cluster secret accepted, bytes.
pub const MIN_CLUSTER_SECRET: usize = 16;

/// A loaded file: the model plus what is needed to attribute later errors to lines.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub model: Model,
    /// `[admin]`, when the runtime override API is enabled.
    pub admin: Option<AdminSettings>,
    /// `[cluster]`, when this instance shares verdicts and overrides with peers.
    pub cluster: Option<ClusterSettings>,
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
    let cluster = raw.cluster.as_ref().and_then(|c| v.cluster(c, base));
    let model = v.model(raw, base);
    if v.problems.is_empty() {
        let self_probes = v.self_probes;
        Ok(Loaded {
            model,
            admin,
            cluster,
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

fn fnv_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The start-only keys whose values differ: a reload that changes any is refused by name.
/// Which keys are start-only is decided in one place, [`ServerSettings::start_only_changes`].
pub fn start_only_changes(old: &ServerSettings, new: &ServerSettings) -> Vec<&'static str> {
    old.start_only_changes(new)
}

#[cfg(test)]
mod tests;
