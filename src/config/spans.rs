//! Where every key of a TOML document is: its dotted path mapped to the line it is on,
//! so validation (which works on plain serde structs) can still say `file:line: key`.

use std::collections::HashMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// Path of a key inside the document, e.g. `["regions", "eu-west", "endpoints", "1"]`.
pub type KeyPath = Vec<String>;

/// Byte spans of keys and values, by path.
#[derive(Debug, Default)]
pub struct SpanIndex {
    /// Path -> span of the key (or of the array element).
    spans: HashMap<String, Range<usize>>,
    /// (span of key-or-value, path), for mapping a parser error back to a key.
    ordered: Vec<(Range<usize>, KeyPath)>,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

/// Renders a key path the way an operator would write it in TOML:
/// `zones."gslb.example.".records[2].name`.
pub fn render(path: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for seg in path {
        let seg = seg.as_ref();
        if seg.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push('[');
            out.push_str(seg);
            out.push(']');
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        if !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            out.push_str(seg);
        } else {
            out.push('"');
            out.push_str(&seg.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
        }
    }
    out
}

impl SpanIndex {
    /// Indexes a document. Parse errors are returned as (span, message).
    pub fn build(text: &str) -> Result<Self, (Option<Range<usize>>, String)> {
        let doc = DeTable::parse(text).map_err(|e| (e.span(), e.message().to_string()))?;
        let mut idx = SpanIndex {
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            ..SpanIndex::default()
        };
        let mut path = Vec::new();
        idx.walk_table(doc.get_ref(), &mut path);
        Ok(idx)
    }

    fn walk_table(&mut self, table: &DeTable<'_>, path: &mut KeyPath) {
        for (k, v) in table.iter() {
            path.push(k.get_ref().to_string());
            self.record(path, k.span(), v.span());
            self.walk_value(v.get_ref(), path);
            path.pop();
        }
    }

    fn walk_value(&mut self, v: &DeValue<'_>, path: &mut KeyPath) {
        match v {
            DeValue::Table(t) => self.walk_table(t, path),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    path.push(i.to_string());
                    self.record(path, item.span(), item.span());
                    self.walk_value(item.get_ref(), path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn record(&mut self, path: &KeyPath, key: Range<usize>, value: Range<usize>) {
        self.spans.entry(path.join("\u{1f}")).or_insert(key.clone());
        let whole = key.start.min(value.start)..key.end.max(value.end);
        self.ordered.push((whole, path.clone()));
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// Line of a key; falls back to its closest indexed ancestor (a missing key is
    /// reported on the table that should have had it), then to line 1.
    pub fn line(&self, path: &[impl AsRef<str>]) -> usize {
        let segs: Vec<&str> = path.iter().map(|s| s.as_ref()).collect();
        for n in (1..=segs.len()).rev() {
            if let Some(span) = self.spans.get(&segs[..n].join("\u{1f}")) {
                return self.line_of(span.start);
            }
        }
        1
    }

    /// The innermost key whose key-or-value span contains `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&KeyPath> {
        self.ordered
            .iter()
            .filter(|(span, _)| span.start <= offset && offset < span.end.max(span.start + 1))
            .max_by_key(|(span, path)| (path.len(), std::cmp::Reverse(span.end - span.start)))
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[server]\ndns_listen = [\"127.0.0.1:53\"]\n\n[zones.\"gslb.example.\"]\nttl = 60\nrecords = [\n  { name = \"a\", type = \"A\", value = \"192.0.2.1\" },\n  { name = \"b\", type = \"A\", value = \"x\" },\n]\n";

    #[test]
    fn lines_of_nested_keys_and_array_elements() {
        let idx = SpanIndex::build(DOC).unwrap();
        assert_eq!(idx.line(&["server", "dns_listen"]), 2);
        assert_eq!(idx.line(&["zones", "gslb.example.", "ttl"]), 5);
        assert_eq!(
            idx.line(&["zones", "gslb.example.", "records", "1", "value"]),
            8
        );
        // Missing key: reported where its table is.
        assert_eq!(idx.line(&["zones", "gslb.example.", "soa"]), 4);
        assert_eq!(idx.line(&["nothing"]), 1);
    }

    #[test]
    fn error_offset_maps_back_to_innermost_key() {
        let idx = SpanIndex::build(DOC).unwrap();
        let at = DOC.find("\"x\"").unwrap();
        let p = idx.path_at(at).unwrap();
        assert_eq!(render(p), "zones.\"gslb.example.\".records[1].value");
    }

    #[test]
    fn syntax_error_has_a_span() {
        let err = SpanIndex::build("[server\n").unwrap_err();
        assert!(err.0.is_some());
    }
}
