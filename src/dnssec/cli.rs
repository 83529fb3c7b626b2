//! `geode dnssec keygen` and `geode dnssec ds`.

use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::Name;

use super::keys;

/// Exit code for a bad config (as `geode check`).
const EXIT_CONFIG: i32 = 64;
/// Exit code for a usage error.
const EXIT_USAGE: i32 = 2;

/// `geode dnssec keygen --zone NAME [--algorithm A] [--out DIR]`: writes
/// `K<zone>+<alg>+<tag>.key` and `.private` (mode 0600) into `out` and prints the stem.
pub fn keygen(zone: &str, algorithm: &str, out: &Path) -> i32 {
    let alg = match algorithm.to_ascii_lowercase().as_str() {
        "ecdsap256sha256" | "13" => 13,
        "ed25519" | "15" => 15,
        other => {
            eprintln!(
                "geode dnssec keygen: unknown algorithm {other:?} (ecdsap256sha256 | ed25519)"
            );
            return EXIT_USAGE;
        }
    };
    let origin = match crate::config::normalize_name(zone)
        .and_then(|z| Name::from_str(&z).map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("geode dnssec keygen: --zone {zone:?}: {e}");
            return EXIT_USAGE;
        }
    };
    let (stem, private, public) = match keys::generate(&origin, alg) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("geode dnssec keygen: {e}");
            return 1;
        }
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(out)?;
        let private_path = out.join(format!("{stem}.private"));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        std::io::Write::write_all(&mut opts.open(&private_path)?, private.as_bytes())?;
        std::fs::write(out.join(format!("{stem}.key")), public)?;
        Ok(())
    };
    match write() {
        Ok(()) => {
            println!("{stem}");
            0
        }
        Err(e) => {
            eprintln!(
                "geode dnssec keygen: cannot write {stem} in {}: {e}",
                out.display()
            );
            1
        }
    }
}

/// `geode dnssec ds --config PATH ZONE`: the DS record of every key of ZONE, after the
/// whole load path (so a bad key is reported as `geode check` would).
pub fn ds(config: &Path, zone: &str) -> i32 {
    let loaded = match crate::state::load(config, None) {
        Ok((loaded, _)) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let want = crate::config::normalize_name(zone).unwrap_or_else(|_| zone.to_string());
    let Some(z) = loaded.model.zones.iter().find(|z| z.origin == want) else {
        eprintln!(
            "geode dnssec ds: {want} is not a zone of {}",
            config.display()
        );
        return EXIT_USAGE;
    };
    let Some(d) = &z.dnssec else {
        eprintln!(
            "geode dnssec ds: zone {want} is not signed (no [zones.\"{want}\".dnssec] in {})",
            config.display()
        );
        return EXIT_USAGE;
    };
    let origin = Name::from_str(&z.origin).unwrap_or_else(|_| Name::root());
    for m in &d.keys {
        match keys::parse_key(&origin, &m.private, &m.public).and_then(|k| keys::ds(&origin, &k)) {
            Ok(ds) => println!("{ds}"),
            Err(e) => {
                eprintln!("{}: {e}", m.file.display());
                return EXIT_CONFIG;
            }
        }
    }
    0
}
