use super::classes::*;
use super::compile::*;
use std::net::Ipv4Addr;

use super::*;

const CITY_TEST: &str = "tests/data/maxmind/GeoIP2-City-Test.mmdb";

fn db() -> Option<GeoDb> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(CITY_TEST);
    Some(GeoDb::open(&p).expect("MaxMind test database opens"))
}

#[test]
fn maxmind_test_db_gb_network_and_prefix() {
    let db = db().unwrap();
    let hit = db.lookup("81.2.69.142".parse().unwrap()).unwrap();
    assert_eq!(hit.country, Some(*b"GB"));
    assert_eq!(hit.continent, Some(*b"EU"));
    assert!(hit.coords.is_some());
    assert_eq!(hit.network.to_string(), "81.2.69.142/31");
}

#[test]
fn ipv4_networks_are_reported_in_ipv4_form() {
    let db = db().unwrap();
    let hit = db.lookup("216.160.83.56".parse().unwrap()).unwrap();
    assert!(hit.network.addr().is_ipv4(), "{}", hit.network);
    assert_eq!(hit.country, Some(*b"US"));
}

#[test]
fn broken_databases_are_refused_with_the_path() {
    for f in [
        "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
        "GeoIP2-City-Test-Broken-Double-Format.mmdb",
    ] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/maxmind")
            .join(f);
        let err = GeoDb::open(&p).unwrap_err().to_string();
        assert!(err.contains(f), "{err}");
    }
}

#[test]
fn asn_database_is_refused_as_wrong_schema() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/maxmind/GeoLite2-ASN-Test.mmdb");
    assert!(matches!(GeoDb::open(&p), Err(GeoError::Schema { .. })));
}

#[test]
fn missing_file_names_the_path() {
    let err = GeoDb::open(Path::new("/nonexistent/x.mmdb"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/x.mmdb"), "{err}");
}

/// Addresses that exercise every network's edges and the IPv6 tree's aliases of the
/// IPv4 subtree, plus pseudo-random ones.
fn probe_addresses(reader: &maxminddb::Reader<Vec<u8>>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let opts = maxminddb::WithinOptions::default()
        .include_networks_without_data()
        .include_aliased_networks();
    for item in reader.networks(opts).unwrap() {
        let net = item.unwrap().network().unwrap();
        let net = IpNet::new(net.ip(), net.prefix()).unwrap();
        out.push(net.network());
        out.push(net.broadcast());
        if let IpNet::V6(n) = net {
            // The same network seen through its IPv4 form, where it has one.
            if let Some(v4) = n.network().to_ipv4_mapped() {
                out.push(IpAddr::V4(v4));
            }
        }
    }
    let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    for _ in 0..20_000 {
        x = x
            .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
            .wrapping_add(1);
        out.push(IpAddr::V6(Ipv6Addr::from(x)));
        out.push(IpAddr::V4(Ipv4Addr::from((x >> 64) as u32)));
        for prefix in [0u128, 0xffff << 32, 0x2002u128 << 112] {
            out.push(IpAddr::V6(Ipv6Addr::from(
                prefix
                    | u128::from((x >> 32) as u32)
                        << (if prefix >> 112 == 0x2002 { 80 } else { 0 }),
            )));
        }
    }
    out
}

fn class(lat: f64, lon: f64) -> Class {
    Class::from((Some(*b"GB"), Some(*b"EU"), Some(Coordinates { lat, lon })))
}

fn same(a: Decoded, b: Decoded) -> bool {
    let bits = |d: Decoded| d.2.map(|c| (c.lat.to_bits(), c.lon.to_bits()));
    a.0 == b.0 && a.1 == b.1 && bits(a) == bits(b)
}

#[test]
fn fixed_point_classes_give_back_every_coordinate_bit_for_bit() {
    // Decimals of up to 7 places, parsed as a database's writer would have written
    // them, plus the extremes and a class without coordinates.
    let mut classes = vec![Class::from((None, None, None)), class(90.0, -180.0)];
    classes.push(class(-90.0, 180.0));
    classes.push(class(0.0, 0.0));
    classes.push(class(37.751, -97.822));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for places in 0..=7 {
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let scale = 10i64.pow(places);
            let coord = |v: u64, max: i64| {
                let units = (v % (2 * max * scale as u64 as i64 + 1) as u64) as i64 - max * scale;
                let s = format!(
                    "{}{}.{:0width$}",
                    if units < 0 { "-" } else { "" },
                    units.abs() / scale,
                    units.abs() % scale,
                    width = places as usize
                );
                s.parse::<f64>().unwrap()
            };
            classes.push(class(coord(x >> 20, 90), coord(x.rotate_left(29), 180)));
        }
    }
    let fixed = Classes::new(classes.clone());
    assert!(matches!(&fixed, Classes::Fixed { odd, .. } if odd.is_empty()));
    assert_eq!(fixed.len(), classes.len());
    for (i, c) in classes.iter().enumerate() {
        assert!(
            same(fixed.get(i), c.get()),
            "class {i}: {:?} vs {:?}",
            fixed.get(i),
            c.get()
        );
    }
    assert_eq!(fixed.get(0), (None, None, None));
    assert_eq!(fixed.heap_bytes(), 12 * classes.len());
}

/// Coordinates that are no decimal of 7 places: one GeoLite2-City really has, a
/// sum, a negative zero (it would come back as 0.0), a tiny one and the largest.
const ODD_COORDS: [f64; 6] = [
    18.790399999999998,
    0.1 + 0.2,
    -0.0,
    1e-9,
    f64::MAX,
    -180.00000001,
];

#[test]
fn odd_coordinates_stay_exact_in_the_side_table() {
    let mut classes: Vec<Class> = (1..=1000)
        .map(|i| class(f64::from(i) / 100.0, -f64::from(i) / 10.0))
        .collect();
    for (k, &odd) in ODD_COORDS.iter().enumerate() {
        classes[100 + 150 * k] = class(odd, 10.0);
        classes[101 + 150 * k] = class(10.0, odd);
    }
    let kept = Classes::new(classes.clone());
    let Classes::Fixed { odd, .. } = &kept else {
        panic!("12 odd classes of 1000 keep the fixed layout");
    };
    assert_eq!(odd.len(), 2 * ODD_COORDS.len());
    for (i, c) in classes.iter().enumerate() {
        assert!(
            same(kept.get(i), c.get()),
            "class {i}: {:?} vs {:?}",
            kept.get(i),
            c.get()
        );
    }
    assert_eq!(
        kept.heap_bytes(),
        12 * 1000 + std::mem::size_of::<(u32, Class)>() * odd.len()
    );
}

#[test]
fn many_odd_coordinates_keep_the_f64_layout() {
    for odd in ODD_COORDS {
        let classes: Vec<Class> = (0..640)
            .map(|i| class(37.751, if i % 7 == 0 { odd } else { -97.822 }))
            .collect();
        let kept = Classes::new(classes.clone());
        assert!(
            matches!(kept, Classes::Exact(_)),
            "{odd}: 92 odd classes of 640"
        );
        for (i, c) in classes.iter().enumerate() {
            assert!(same(kept.get(i), c.get()), "{odd}");
        }
    }
}

#[test]
fn compiled_lookups_match_the_mmdb_reader_on_every_test_database() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for f in [
        "tests/data/maxmind/GeoIP2-City-Test.mmdb",
        "tests/data/maxmind/GeoLite2-City-Test.mmdb",
        "tests/data/maxmind/GeoLite2-Country-Test.mmdb",
        "geoip/demo-city.mmdb",
    ] {
        let path = root.join(f);
        let db = GeoDb::open(&path).expect(f);
        // Their coordinates have few decimals, so these lookups also check the
        // fixed-point layout against the reader.
        assert!(matches!(db.classes, Classes::Fixed { .. }), "{f}");
        let reader = maxminddb::Reader::open_readfile(&path).unwrap();
        for ip in probe_addresses(&reader) {
            assert_eq!(db.lookup(ip), reference_lookup(&reader, ip), "{f}: {ip}");
            checked += 1;
        }
    }
    assert!(checked > 100_000, "{checked}");
}

#[test]
fn classes_are_shared_and_siblings_fold() {
    let db = db().unwrap();
    let reader =
        maxminddb::Reader::open_readfile(Path::new(env!("CARGO_MANIFEST_DIR")).join(CITY_TEST))
            .unwrap();
    let (classes, bytes) = db.footprint();
    assert!(classes > 1 && bytes > 0);
    assert!(
        db.trie.node_count() < reader.metadata().node_count as usize,
        "{} compiled nodes vs {} in the file",
        db.trie.node_count(),
        reader.metadata().node_count
    );
}

/// Builds a City-schema database with `n` pseudo-random networks drawn from a few
/// locations (so sibling networks often share a class and fold).
fn synthetic(
    dir: &Path,
    name: &str,
    version: mmdb_writer::IpVersion,
    size: mmdb_writer::RecordSize,
    aliasing: mmdb_writer::Ipv4Aliasing,
    v4_nets: bool,
) -> PathBuf {
    use mmdb_writer::ipnet::{IpNet as WNet, Ipv4Net, Ipv6Net};
    #[derive(serde::Serialize)]
    struct Loc {
        latitude: f64,
        longitude: f64,
    }
    #[derive(serde::Serialize)]
    struct Code {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Rec {
        country: Code,
        location: Loc,
        postal: Code,
    }
    let mut w = mmdb_writer::Writer::builder("Test-City")
        .ip_version(version)
        .record_size(size)
        .ipv4_aliasing(aliasing)
        .description(&[("en", "geode test")])
        .build();
    let places = [("US", 40.7, -74.0), ("DE", 50.1, 8.7), ("JP", 35.7, 139.7)];
    // Postal codes differ per record, so records differ but classes repeat.
    let postals = ["1", "2", "3", "4"];
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
    for i in 0..3000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (cc, lat, lon) = places[(x >> 60) as usize % 3];
        let rec = Rec {
            country: Code { iso_code: cc },
            location: Loc {
                latitude: lat,
                longitude: lon,
            },
            postal: Code {
                iso_code: postals[(x >> 40) as usize % 4],
            },
        };
        let net = if v4_nets && i % 3 != 0 {
            let len = 8 + (x >> 20) as u8 % 25;
            WNet::V4(
                Ipv4Net::new(std::net::Ipv4Addr::from((x >> 16) as u32), len)
                    .unwrap()
                    .trunc(),
            )
        } else if version == mmdb_writer::IpVersion::V6 {
            let len = 16 + (x >> 24) as u8 % 100;
            let a = (u128::from(x) << 64 | u128::from(x.rotate_left(17))) | (0x2400u128 << 112);
            WNet::V6(
                Ipv6Net::new(std::net::Ipv6Addr::from(a), len)
                    .unwrap()
                    .trunc(),
            )
        } else {
            continue;
        };
        w.insert(net, &rec).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

#[test]
fn compiled_lookups_match_the_mmdb_reader_on_every_tree_shape() {
    use mmdb_writer::{IpVersion as V, Ipv4Aliasing as A, RecordSize as R};
    let dir = tempfile::tempdir().unwrap();
    let shapes = [
        ("v4-24", V::V4, R::Bits24, A::Enabled, true),
        ("v4-28", V::V4, R::Bits28, A::Enabled, true),
        ("v4-32", V::V4, R::Bits32, A::Enabled, true),
        ("v6-aliased", V::V6, R::Bits28, A::Enabled, true),
        ("v6-unaliased", V::V6, R::Bits24, A::Disabled, true),
        ("v6-no-ipv4", V::V6, R::Bits32, A::Disabled, false),
    ];
    for (name, version, size, aliasing, v4) in shapes {
        let path = synthetic(dir.path(), name, version, size, aliasing, v4);
        let db = GeoDb::open(&path).expect(name);
        let reader = maxminddb::Reader::open_readfile(&path).unwrap();
        assert!(db.footprint().0 <= 4, "{name}: 3 places + no data");
        for ip in probe_addresses(&reader) {
            assert_eq!(db.lookup(ip), reference_lookup(&reader, ip), "{name}: {ip}");
        }
    }
}

#[test]
fn mapped_ipv6_is_ipv4() {
    assert_eq!(
        canonical_ip("::ffff:192.0.2.1".parse().unwrap()),
        "192.0.2.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        canonical_ip("2001:db8::1".parse().unwrap()),
        "2001:db8::1".parse::<IpAddr>().unwrap()
    );
}
