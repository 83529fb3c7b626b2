//! Builds the demo GeoIP database, `geoip/demo-city.mmdb`, from `geoip/demo-city.csv`.
//!
//! ```text
//! cargo run --example build-demo-geoip -- [CSV] [OUT]
//! ```
//!
//! Defaults: `geoip/demo-city.csv` -> `geoip/demo-city.mmdb`, relative to the crate root.
//! The output has the GeoIP2-City schema (`database_type` "GeoIP2-City"; `continent`,
//! `country`, `subdivisions`, `location`, `city`), so `maxminddb::geoip2::City` decodes it
//! exactly like a GeoLite2-City or DB-IP City Lite database. It is an IPv6 tree with the
//! IPv4 space aliased (IPv4 lookups work), and the build epoch is fixed, so the same CSV
//! always produces the same bytes.
//!
//! Tests reuse [`build`] by compiling this file as a module (not with `include!`: the file
//! starts with inner doc comments):
//!
//! ```ignore
//! #[allow(dead_code)] // main() and the helpers it alone uses
//! #[path = "../geoip/build_demo.rs"]
//! mod build_demo;
//! let bytes = build_demo::build(&std::fs::read_to_string("geoip/demo-city.csv")?)?;
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use mmdb_writer::Writer;
use mmdb_writer::ipnet::IpNet;
use serde::Serialize;

/// `database_type` written to the metadata; readers use it to pick the record schema.
pub const DATABASE_TYPE: &str = "GeoIP2-City";

/// Fixed build timestamp (2026-01-01T00:00:00Z) so the output is reproducible.
pub const BUILD_EPOCH: u64 = 1_767_225_600;

/// The required header line of the CSV source.
pub const HEADER: &str = "network,continent,country,subdivision,lat,lon,city";

/// English description stored in the metadata.
pub const DESCRIPTION: &str = "geode demo GeoIP database (GeoIP2-City schema): documentation, \
     private and a few approximate real-world networks; built from geoip/demo-city.csv. \
     Not for production use.";

/// Accuracy radius (km) written for every network.
const ACCURACY_RADIUS_KM: u16 = 100;

const CONTINENTS: [(&str, &str); 7] = [
    ("AF", "Africa"),
    ("AN", "Antarctica"),
    ("AS", "Asia"),
    ("EU", "Europe"),
    ("NA", "North America"),
    ("OC", "Oceania"),
    ("SA", "South America"),
];

/// English names for the countries the demo uses; any other valid code gets its code as
/// its name (the name is informational, geode routes on codes).
fn country_name(code: &str) -> &str {
    match code {
        "AQ" => "Antarctica",
        "AR" => "Argentina",
        "AU" => "Australia",
        "BR" => "Brazil",
        "CA" => "Canada",
        "CH" => "Switzerland",
        "CL" => "Chile",
        "CN" => "China",
        "DE" => "Germany",
        "EG" => "Egypt",
        "FR" => "France",
        "GB" => "United Kingdom",
        "IE" => "Ireland",
        "IN" => "India",
        "JP" => "Japan",
        "KE" => "Kenya",
        "KR" => "South Korea",
        "MU" => "Mauritius",
        "MX" => "Mexico",
        "NG" => "Nigeria",
        "NL" => "Netherlands",
        "NZ" => "New Zealand",
        "SG" => "Singapore",
        "US" => "United States",
        "ZA" => "South Africa",
        other => other,
    }
}

// Field layout of a GeoIP2-City record (the subset geode and maxminddb::geoip2::City use).
#[derive(Serialize)]
struct Names<'a> {
    en: &'a str,
}

#[derive(Serialize)]
struct Continent<'a> {
    code: &'a str,
    names: Names<'a>,
}

#[derive(Serialize)]
struct Country<'a> {
    iso_code: &'a str,
    names: Names<'a>,
}

#[derive(Serialize)]
struct Subdivision<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
    accuracy_radius: u16,
}

#[derive(Serialize)]
struct City<'a> {
    names: Names<'a>,
}

#[derive(Serialize)]
struct CityRecord<'a> {
    continent: Continent<'a>,
    country: Country<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subdivisions: Vec<Subdivision<'a>>,
    location: Location,
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<City<'a>>,
}

/// One validated CSV row.
struct Row<'a> {
    line: usize,
    network: IpNet,
    continent: &'static str,
    continent_name: &'static str,
    country: &'a str,
    subdivision: &'a str,
    lat: f64,
    lon: f64,
    city: &'a str,
}

impl Row<'_> {
    fn record(&self) -> CityRecord<'_> {
        CityRecord {
            continent: Continent {
                code: self.continent,
                names: Names {
                    en: self.continent_name,
                },
            },
            country: Country {
                iso_code: self.country,
                names: Names {
                    en: country_name(self.country),
                },
            },
            subdivisions: if self.subdivision.is_empty() {
                Vec::new()
            } else {
                vec![Subdivision {
                    iso_code: self.subdivision,
                }]
            },
            location: Location {
                latitude: self.lat,
                longitude: self.lon,
                accuracy_radius: ACCURACY_RADIUS_KM,
            },
            city: (!self.city.is_empty()).then_some(City {
                names: Names { en: self.city },
            }),
        }
    }
}

/// A CSV problem, located by 1-based line number.
#[derive(Debug)]
struct LineError {
    line: usize,
    message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl Error for LineError {}

fn err(line: usize, message: impl Into<String>) -> Box<dyn Error> {
    Box::new(LineError {
        line,
        message: message.into(),
    })
}

fn parse_coord(line: usize, what: &str, text: &str, limit: f64) -> Result<f64, Box<dyn Error>> {
    let value: f64 = text
        .parse()
        .map_err(|_| err(line, format!("{what} {text:?} is not a number")))?;
    if !value.is_finite() || value.abs() > limit {
        return Err(err(
            line,
            format!("{what} {text} is outside [-{limit}, {limit}]"),
        ));
    }
    Ok(value)
}

fn parse_row(line: usize, text: &str) -> Result<Row<'_>, Box<dyn Error>> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let [network, continent, country, subdivision, lat, lon, city] = fields[..] else {
        return Err(err(
            line,
            format!(
                "expected 7 comma-separated fields ({HEADER}), found {}",
                fields.len()
            ),
        ));
    };
    let network: IpNet = network
        .parse()
        .map_err(|_| err(line, format!("network {network:?} is not a CIDR prefix")))?;
    if network.trunc() != network {
        return Err(err(
            line,
            format!(
                "network {network} has host bits set (did you mean {}?)",
                network.trunc()
            ),
        ));
    }
    let &(continent, continent_name) = CONTINENTS
        .iter()
        .find(|(code, _)| *code == continent)
        .ok_or_else(|| {
            err(
                line,
                format!("continent {continent:?} is not one of AF AN AS EU NA OC SA"),
            )
        })?;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(err(
            line,
            format!("country {country:?} is not an upper-case ISO 3166-1 alpha-2 code"),
        ));
    }
    if subdivision.len() > 3
        || !subdivision
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(err(
            line,
            format!("subdivision {subdivision:?} is not an ISO 3166-2 suffix (e.g. VA, 13)"),
        ));
    }
    Ok(Row {
        line,
        network,
        continent,
        continent_name,
        country,
        subdivision,
        lat: parse_coord(line, "latitude", lat, 90.0)?,
        lon: parse_coord(line, "longitude", lon, 180.0)?,
        city,
    })
}

/// Parses the CSV source and returns the rows in file order.
fn parse(csv: &str) -> Result<Vec<Row<'_>>, Box<dyn Error>> {
    let mut rows = Vec::new();
    let mut seen_header = false;
    let mut first_line: HashMap<IpNet, usize> = HashMap::new();
    for (index, raw) in csv.lines().enumerate() {
        let line = index + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if !seen_header {
            let header: Vec<&str> = text.split(',').map(str::trim).collect();
            if header.join(",") != HEADER {
                return Err(err(
                    line,
                    format!("expected the header line {HEADER:?}, found {text:?}"),
                ));
            }
            seen_header = true;
            continue;
        }
        let row = parse_row(line, text)?;
        if let Some(previous) = first_line.insert(row.network, line) {
            return Err(err(
                line,
                format!(
                    "network {} is already defined on line {previous}",
                    row.network
                ),
            ));
        }
        rows.push(row);
    }
    if !seen_header {
        return Err(
            format!("no header line; the first non-comment line must be {HEADER:?}").into(),
        );
    }
    if rows.is_empty() {
        return Err("no networks: the CSV has a header but no rows".into());
    }
    Ok(rows)
}

/// Builds the GeoIP2-City-shaped mmdb for a CSV source (the contents of
/// `geoip/demo-city.csv`, not a path) and returns the database bytes.
///
/// Rows are inserted from the least to the most specific network, so where networks
/// overlap the more specific one wins regardless of row order. Errors name the CSV line.
pub fn build(csv: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut rows = parse(csv)?;
    // Depth in the IPv6 tree, where IPv4 lives under ::/96. The sort is stable, and equal
    // depths cannot overlap without being the same network (rejected by `parse`).
    rows.sort_by_key(|row| match row.network {
        IpNet::V4(net) => 96 + net.prefix_len(),
        IpNet::V6(net) => net.prefix_len(),
    });
    let mut writer = Writer::builder(DATABASE_TYPE)
        .description(&[("en", DESCRIPTION)])
        .build_epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(BUILD_EPOCH))
        .build();
    for row in &rows {
        writer
            .insert(row.network, &row.record())
            .map_err(|e| err(row.line, format!("cannot insert {}: {e}", row.network)))?;
    }
    Ok(writer.to_bytes()?)
}

fn run(csv_path: &Path, out_path: &Path) -> Result<usize, Box<dyn Error>> {
    let csv = std::fs::read_to_string(csv_path)
        .map_err(|e| format!("cannot read {}: {e}", csv_path.display()))?;
    let bytes = build(&csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    // Write a sibling temporary file and rename it into place: a running geode may have the
    // old file memory-mapped, and it reloads on rename (like geoipupdate's atomic replace).
    let mut tmp_name = out_path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp_path = out_path.with_file_name(tmp_name);
    std::fs::write(&tmp_path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", tmp_path.display()))?;
    std::fs::rename(&tmp_path, out_path).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            tmp_path.display(),
            out_path.display()
        )
    })?;
    Ok(bytes.len())
}

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 2 || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: cargo run --example build-demo-geoip -- [CSV] [OUT]\n\
             defaults: CSV = geoip/demo-city.csv, OUT = geoip/demo-city.mmdb (crate root)"
        );
        return if args.len() > 2 {
            ExitCode::from(64)
        } else {
            ExitCode::SUCCESS
        };
    }
    let csv_path = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("geoip/demo-city.csv"));
    let out_path = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("geoip/demo-city.mmdb"));
    match run(&csv_path, &out_path) {
        Ok(len) => {
            println!(
                "wrote {} ({len} bytes) from {}",
                out_path.display(),
                csv_path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("build-demo-geoip: {e}");
            ExitCode::FAILURE
        }
    }
}
