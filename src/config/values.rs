//! Value parsers shared by the sections: durations, names, codes, networks, client
//! keys and record data. Each returns a message for the key it was given.

use std::time::Duration;

use ipnet::IpNet;

use crate::countries;
use crate::model::{ClientKey, RecordData};

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
pub(super) fn qualify(name: &str, origin: &str) -> Result<String, String> {
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

pub(super) fn parse_code(s: &str, what: &str) -> Result<[u8; 2], String> {
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
pub(super) fn parse_net(s: &str) -> Result<IpNet, String> {
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
pub(super) fn parse_txt(value: &str) -> Result<Vec<String>, String> {
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
pub(super) enum RecordError {
    /// The `type` is not one geode serves.
    Type(String),
    /// The `value` does not parse as its type.
    Value(String),
}

impl RecordError {
    /// The record's key the problem is reported at.
    pub(super) fn key(&self) -> &'static str {
        match self {
            RecordError::Type(_) => "type",
            RecordError::Value(_) => "value",
        }
    }

    pub(super) fn into_message(self) -> String {
        match self {
            RecordError::Type(m) | RecordError::Value(m) => m,
        }
    }
}

pub(super) fn parse_record(
    rtype: &str,
    value: &str,
    origin: &str,
) -> Result<RecordData, RecordError> {
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
pub(super) fn parse_record_value(
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

/// What is wrong with a probe's path, host or header value that cannot go on the wire:
/// a control character (HTAB allowed in header values, RFC 9110 5.5) or, outside
/// header values, a space.
pub(super) fn forbidden_char(s: &str, header_value: bool) -> Option<String> {
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
