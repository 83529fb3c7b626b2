//! Every unknown key of a document, before serde sees it.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key, so a file with two typos
//! would take two rounds of `geode check`. This walk reports all of them at once. The
//! accepted key names are not written down twice: `fields` asks serde's derived
//! `Deserialize` impl of each [`raw`](super::raw) struct for its field list, so a key
//! added to a raw struct is known here without touching this file. Only the nesting
//! (which key holds which struct) is spelled out in `walk_root`; a table this walk does
//! not descend into is still checked by serde, which then reports its first unknown key.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use toml::de::{DeTable, DeValue};

use super::raw::{
    RawCheck, RawClientNetwork, RawConfig, RawEndpoint, RawLocation, RawRecord, RawRegion,
    RawServer, RawService, RawSoa, RawZone,
};

/// One unknown key: its path (as rendered in errors), the byte offset of the key, and
/// the message in serde's wording.
pub type Unknown = (Vec<String>, usize, String);

/// Field names a derived `Deserialize` impl accepts, read from the `fields` argument it
/// passes to `deserialize_struct`.
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut out));
    out
}

/// Every unknown key in `doc`, in document order.
pub fn unknown_keys(doc: &DeTable<'_>) -> Vec<Unknown> {
    let mut out = Vec::new();
    walk_root(doc, &mut Vec::new(), &mut out);
    out.sort_by_key(|u| u.1);
    out
}

fn walk_root(doc: &DeTable<'_>, path: &mut Vec<String>, out: &mut Vec<Unknown>) {
    check::<RawConfig>(doc, path, out);
    for (k, v) in doc.iter() {
        path.push(k.get_ref().to_string());
        match (k.get_ref().as_ref(), v.get_ref()) {
            ("server", DeValue::Table(t)) => check::<RawServer>(t, path, out),
            ("zones", DeValue::Table(t)) => each_table(t, path, out, |z, path, out| {
                check::<RawZone>(z, path, out);
                for (k, v) in z.iter() {
                    path.push(k.get_ref().to_string());
                    match (k.get_ref().as_ref(), v.get_ref()) {
                        ("soa", DeValue::Table(t)) => check::<RawSoa>(t, path, out),
                        ("records", DeValue::Array(a)) => {
                            each_element(a, path, out, check::<RawRecord>);
                        }
                        _ => {}
                    }
                    path.pop();
                }
            }),
            ("checks", DeValue::Table(t)) => each_table(t, path, out, check::<RawCheck>),
            ("regions", DeValue::Table(t)) => each_table(t, path, out, |r, path, out| {
                check::<RawRegion>(r, path, out);
                for (k, v) in r.iter() {
                    path.push(k.get_ref().to_string());
                    match (k.get_ref().as_ref(), v.get_ref()) {
                        ("location", DeValue::Table(t)) => check::<RawLocation>(t, path, out),
                        ("endpoints", DeValue::Array(a)) => {
                            each_element(a, path, out, check::<RawEndpoint>);
                        }
                        _ => {}
                    }
                    path.pop();
                }
            }),
            ("services", DeValue::Table(t)) => each_table(t, path, out, check::<RawService>),
            ("client_networks", DeValue::Table(t)) => {
                each_table(t, path, out, |n, path, out| {
                    check::<RawClientNetwork>(n, path, out);
                    if let Some((k, DeValue::Table(loc))) = n
                        .iter()
                        .find(|(k, _)| k.get_ref() == "location")
                        .map(|(k, v)| (k, v.get_ref()))
                    {
                        path.push(k.get_ref().to_string());
                        check::<RawLocation>(loc, path, out);
                        path.pop();
                    }
                });
            }
            // `[latency]` maps free-form keys, and tables added later (admin, cluster…)
            // are left to serde.
            _ => {}
        }
        path.pop();
    }
}

/// Reports the keys of `table` that `T` does not accept. (`path` is a `Vec` because every
/// walker shares the [`Walk`] signature, and the others push to it.)
#[allow(clippy::ptr_arg)]
fn check<T: DeserializeOwned>(table: &DeTable<'_>, path: &mut Vec<String>, out: &mut Vec<Unknown>) {
    let known = fields::<T>();
    if known.is_empty() {
        return; // not a plain struct: nothing to compare against
    }
    for (k, _) in table.iter() {
        let name = k.get_ref();
        if !known.contains(&name.as_ref()) {
            let err: de::value::Error = de::Error::unknown_field(name, known);
            let mut p = path.clone();
            p.push(name.to_string());
            out.push((p, k.span().start, err.to_string()));
        }
    }
}

type Walk = fn(&DeTable<'_>, &mut Vec<String>, &mut Vec<Unknown>);

/// Applies `f` to every sub-table of a name-keyed table (`[zones."x."]`, `[regions.x]`).
fn each_table(table: &DeTable<'_>, path: &mut Vec<String>, out: &mut Vec<Unknown>, f: Walk) {
    for (k, v) in table.iter() {
        if let DeValue::Table(t) = v.get_ref() {
            path.push(k.get_ref().to_string());
            f(t, path, out);
            path.pop();
        }
    }
}

/// Applies `f` to every inline table of an array (`records`, `endpoints`).
fn each_element(
    array: &[toml::Spanned<DeValue<'_>>],
    path: &mut Vec<String>,
    out: &mut Vec<Unknown>,
    f: Walk,
) {
    for (i, item) in array.iter().enumerate() {
        if let DeValue::Table(t) = item.get_ref() {
            path.push(i.to_string());
            f(t, path, out);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(text: &str) -> Vec<String> {
        let doc = DeTable::parse(text).expect("valid TOML");
        unknown_keys(doc.get_ref())
            .into_iter()
            .map(|(p, _, m)| format!("{}: {m}", super::super::spans::render(&p)))
            .collect()
    }

    #[test]
    fn field_lists_come_from_serde() {
        assert!(fields::<RawServer>().contains(&"http_listen"));
        assert!(fields::<RawRecord>().contains(&"type"), "renamed fields");
        assert!(fields::<RawConfig>().contains(&"client_networks"));
    }

    #[test]
    fn every_unknown_key_is_found() {
        let text = "[server]\nhttp_listn = \"x\"\ngeoip = \"y\"\n\
                    [zones.\"a.\"]\nsoa = { mname = \"a.\", rname = \"b.\", serial = 1, minimun = 1 }\n\
                    records = [{ name = \"@\", type = \"A\", value = \"192.0.2.1\", tll = 1 }]\n\
                    [regions.r]\nlocation = { lat = 1, lng = 2 }\nendpoints = [{ adress = \"x\" }]\n\
                    [client_networks.\"10.0.0.0/8\"]\ncountri = \"DE\"\n\
                    [sevrices.x]\n";
        let got = unknown(text);
        assert_eq!(got.len(), 8, "{got:#?}");
        for key in [
            "server.http_listn",
            "server.geoip",
            "soa.minimun",
            "records[0].tll",
            "location.lng",
            "endpoints[0].adress",
            "countri",
            "sevrices",
        ] {
            assert!(got.iter().any(|g| g.contains(key)), "{key} in {got:#?}");
        }
    }

    #[test]
    fn the_example_and_latency_keys_are_known() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml"),
        )
        .unwrap();
        assert_eq!(unknown(&text), Vec::<String>::new());
        assert!(unknown("[latency]\n\"country:JP\" = { anything = 1 }\n").is_empty());
    }
}
