//! BIND-format key files: reading (`K<zone>+<alg>+<tag>.private` with its `.key`
//! beside it), writing (`geode dnssec keygen`) and DS records (`geode dnssec ds`).
//!
//! A `.private` file of algorithm 13 or 15 holds the raw private key (the P-256 scalar or
//! the Ed25519 seed) in base64 on its `PrivateKey:` line; the `.key` file holds the DNSKEY
//! record. hickory's key types take PKCS#8 only, so the key pair is built with aws-lc-rs
//! from the raw bytes, which also checks that the private key belongs to the public one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use data_encoding::BASE64;
use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::DNSKEY;
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKeyBuf, SigningKey};
use hickory_proto::rr::Name;

/// DNSKEY flags of a zone key that is also a secure entry point (a combined
/// signing key: it signs the DNSKEY RRset and every other RRset).
pub const FLAGS_CSK: u16 = 257;
const ZONE_KEY_FLAG: u16 = 0x0100;
const REVOKE_FLAG: u16 = 0x0080;

/// One zone key: the DNSKEY and the private half that signs with it.
pub struct ZoneKey {
    /// The public key record data.
    pub dnskey: DNSKEY,
    /// Key tag (RFC 4034 appendix B).
    pub tag: u16,
    /// Algorithm (13 or 15).
    pub algorithm: Algorithm,
    signing: Box<dyn SigningKey>,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZoneKey({} tag {})", self.algorithm, self.tag)
    }
}

impl ZoneKey {
    /// Signs `data` (a to-be-signed RRset).
    pub fn sign(&self, data: &hickory_proto::dnssec::TBS) -> Result<Vec<u8>, String> {
        self.signing.sign(data).map_err(|e| e.to_string())
    }
}

/// The algorithms geode signs with: (number, BIND mnemonic, hickory algorithm).
const ALGORITHMS: [(u8, &str, Algorithm); 2] = [
    (13, "ECDSAP256SHA256", Algorithm::ECDSAP256SHA256),
    (15, "ED25519", Algorithm::ED25519),
];

fn algorithm(n: u8) -> Result<Algorithm, String> {
    ALGORITHMS
        .iter()
        .find(|(a, _, _)| *a == n)
        .map(|(_, _, alg)| *alg)
        .ok_or_else(|| format!("algorithm {n} is not supported (13 ECDSAP256SHA256 or 15 ED25519)"))
}

/// The `.key` file beside a `.private` file.
pub fn public_path(private: &Path) -> PathBuf {
    private.with_extension("key")
}

/// The DNSKEY of a `.key` file: (owner, flags, algorithm number, public key bytes).
fn parse_public(text: &str) -> Result<(Name, u16, u8, Vec<u8>), String> {
    let line = text
        .lines()
        .map(|l| l.split(';').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .ok_or(".key file holds no DNSKEY record")?;
    let tokens: Vec<&str> = line
        .split_whitespace()
        .filter(|t| *t != "(" && *t != ")")
        .collect();
    let at = tokens
        .iter()
        .position(|t| t.eq_ignore_ascii_case("DNSKEY"))
        .ok_or(".key file: no DNSKEY record on its first line")?;
    let owner = Name::from_str(tokens[0]).map_err(|e| format!(".key file: owner: {e}"))?;
    let field = |i: usize, what: &str| {
        tokens
            .get(at + i)
            .copied()
            .ok_or_else(|| format!(".key file: DNSKEY has no {what}"))
    };
    let flags: u16 = field(1, "flags")?
        .parse()
        .map_err(|_| ".key file: DNSKEY flags are not a number")?;
    if field(2, "protocol")? != "3" {
        return Err(".key file: DNSKEY protocol must be 3".into());
    }
    let alg: u8 = field(3, "algorithm")?
        .parse()
        .map_err(|_| ".key file: DNSKEY algorithm is not a number")?;
    let b64: String = tokens.get(at + 4..).unwrap_or_default().concat();
    if b64.is_empty() {
        return Err(".key file: DNSKEY has no public key".into());
    }
    let public = BASE64
        .decode(b64.as_bytes())
        .map_err(|e| format!(".key file: public key is not base64 ({e})"))?;
    Ok((owner, flags, alg, public))
}

/// The `Algorithm:` number and `PrivateKey:` bytes of a `.private` file.
fn parse_private(text: &str) -> Result<(u8, Vec<u8>), String> {
    let mut alg = None;
    let mut key = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "Private-key-format" if !v.trim().starts_with("v1.") => {
                return Err(format!(
                    ".private file: unknown Private-key-format {}",
                    v.trim()
                ));
            }
            "Algorithm" => {
                let n = v.split_whitespace().next().unwrap_or("");
                alg = Some(
                    n.parse::<u8>()
                        .map_err(|_| format!(".private file: algorithm {n:?} is not a number"))?,
                );
            }
            "PrivateKey" => {
                // Never put the value in the message: it is the secret.
                key = Some(
                    BASE64
                        .decode(v.trim().as_bytes())
                        .map_err(|_| ".private file: PrivateKey is not base64")?,
                );
            }
            _ => {}
        }
    }
    match (alg, key) {
        (Some(a), Some(k)) => Ok((a, k)),
        (None, _) => Err(".private file has no Algorithm line".into()),
        (_, None) => Err(".private file has no PrivateKey line".into()),
    }
}

/// Reads a key pair from the texts of its `.private` and `.key` files and checks it is a
/// zone key of `origin` whose private half matches the public one.
pub fn parse_key(origin: &Name, private: &str, public: &str) -> Result<ZoneKey, String> {
    let (owner, flags, alg_pub, public_bytes) = parse_public(public)?;
    if !owner.eq(origin) {
        return Err(format!(
            "the key belongs to {owner}, not to this zone {origin}"
        ));
    }
    if flags & ZONE_KEY_FLAG == 0 {
        return Err(format!(
            "DNSKEY flags {flags} lack the zone key bit (use 257, a combined signing key)"
        ));
    }
    if flags & REVOKE_FLAG != 0 {
        return Err(format!("DNSKEY flags {flags} mark the key revoked"));
    }
    let (alg_priv, secret) = parse_private(private)?;
    if alg_priv != alg_pub {
        return Err(format!(
            "the .private file is algorithm {alg_priv}, its .key file algorithm {alg_pub}"
        ));
    }
    let algorithm = algorithm(alg_pub)?;
    let mismatch = |_| "the private key does not match the public key in the .key file".to_string();
    let signing: Box<dyn SigningKey> = match algorithm {
        Algorithm::ECDSAP256SHA256 => {
            if public_bytes.len() != 64 || secret.len() != 32 {
                return Err(
                    "an algorithm 13 key has a 32-byte private and a 64-byte public key".into(),
                );
            }
            let mut point = Vec::with_capacity(65);
            point.push(4); // SEC1 uncompressed point; DNSKEY drops this byte (RFC 6605 4)
            point.extend_from_slice(&public_bytes);
            let pair = EcdsaKeyPair::from_private_key_and_public_key(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &secret,
                &point,
            )
            .map_err(mismatch)?;
            Box::new(EcdsaSigningKey::from_ecdsa(pair, algorithm))
        }
        _ => {
            if public_bytes.len() != 32 || secret.len() != 32 {
                return Err(
                    "an algorithm 15 key has a 32-byte seed and a 32-byte public key".into(),
                );
            }
            let pair = Ed25519KeyPair::from_seed_and_public_key(&secret, &public_bytes)
                .map_err(mismatch)?;
            Box::new(Ed25519SigningKey::from_ed25519(pair))
        }
    };
    let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(public_bytes, algorithm));
    let tag = dnskey.calculate_key_tag().map_err(|e| e.to_string())?;
    Ok(ZoneKey {
        dnskey,
        tag,
        algorithm,
        signing,
    })
}

/// A new key pair in BIND format: (file stem `K<zone>+<alg>+<tag>`, `.private` text,
/// `.key` text).
pub fn generate(origin: &Name, alg: u8) -> Result<(String, String, String), String> {
    let algorithm = algorithm(alg)?;
    let (secret, public): (Vec<u8>, Vec<u8>) = match algorithm {
        Algorithm::ECDSAP256SHA256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| "key generation failed")?;
            let scalar = pair
                .private_key()
                .as_be_bytes()
                .map_err(|_| "key export failed")?;
            (
                scalar.as_ref().to_vec(),
                pair.public_key().as_ref()[1..].to_vec(),
            )
        }
        _ => {
            let pair = Ed25519KeyPair::generate().map_err(|_| "key generation failed")?;
            let seed = pair
                .seed()
                .and_then(|s| s.as_be_bytes())
                .map_err(|_| "key export failed")?;
            (seed.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
    };
    let dnskey = DNSKEY::with_flags(FLAGS_CSK, PublicKeyBuf::new(public.clone(), algorithm));
    let tag = dnskey.calculate_key_tag().map_err(|e| e.to_string())?;
    let mnemonic = ALGORITHMS
        .iter()
        .find(|(a, _, _)| *a == alg)
        .map_or("", |a| a.1);
    let zone = origin.to_ascii();
    let stem = format!("K{zone}+{alg:03}+{tag:05}");
    let private = format!(
        "Private-key-format: v1.3\nAlgorithm: {alg} ({mnemonic})\nPrivateKey: {}\n",
        BASE64.encode(&secret)
    );
    let key = format!(
        "; This is a key-signing key, keyid {tag}, for {zone}\n\
         ; written by geode dnssec keygen (a combined signing key: flags {FLAGS_CSK})\n\
         {zone} IN DNSKEY {FLAGS_CSK} 3 {alg} {}\n",
        BASE64.encode(&public)
    );
    Ok((stem, private, key))
}

/// The DS record (SHA-256 digest) of a key, in presentation form.
pub fn ds(origin: &Name, key: &ZoneKey) -> Result<String, String> {
    let digest = key
        .dnskey
        .to_digest(origin, DigestType::SHA256)
        .map_err(|e| e.to_string())?;
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(hex, "{b:02X}");
    }
    Ok(format!(
        "{} IN DS {} {} 2 {hex}",
        origin.to_ascii(),
        key.tag,
        u8::from(key.algorithm)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_str("gslb.example.").unwrap()
    }

    #[test]
    fn generated_keys_read_back_with_the_same_tag_for_both_algorithms() {
        for alg in [13, 15] {
            let (stem, private, public) = generate(&origin(), alg).unwrap();
            let key = parse_key(&origin(), &private, &public).unwrap();
            assert_eq!(stem, format!("Kgslb.example.+{alg:03}+{:05}", key.tag));
            assert_eq!(u8::from(key.algorithm), alg);
            assert_eq!(key.dnskey.flags(), 257);
        }
    }

    #[test]
    fn mismatched_foreign_and_malformed_keys_are_refused_without_the_secret() {
        let (_, private, public) = generate(&origin(), 13).unwrap();
        let (_, other_private, _) = generate(&origin(), 13).unwrap();
        let e = parse_key(&origin(), &other_private, &public).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let secret = other_private
            .lines()
            .nth(2)
            .unwrap()
            .split(": ")
            .nth(1)
            .unwrap();
        assert!(!e.contains(secret));
        let e = parse_key(
            &Name::from_str("other.example.").unwrap(),
            &private,
            &public,
        )
        .unwrap_err();
        assert!(e.contains("belongs to gslb.example."), "{e}");
        let e = parse_key(&origin(), &private, &public.replace(" 257 ", " 1 ")).unwrap_err();
        assert!(e.contains("zone key bit"), "{e}");
        let e = parse_key(&origin(), &private.replace("PrivateKey", "X"), &public).unwrap_err();
        assert!(e.contains("no PrivateKey"), "{e}");
        let e = parse_key(&origin(), &private, &public.replace(" 13 ", " 8 ")).unwrap_err();
        assert!(e.contains("algorithm 13, its .key file algorithm 8"), "{e}");
    }

    #[test]
    fn vendored_bind_keys_read_and_their_ds_is_what_dnssec_dsfromkey_printed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dnssec");
        let expected = std::fs::read_to_string(dir.join("dsfromkey.txt")).unwrap();
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let private = entry.unwrap().path();
            if private.extension().is_none_or(|e| e != "private") {
                continue;
            }
            let key = parse_key(
                &origin(),
                &std::fs::read_to_string(&private).unwrap(),
                &std::fs::read_to_string(public_path(&private)).unwrap(),
            )
            .unwrap();
            let ds = ds(&origin(), &key).unwrap();
            assert!(
                expected.lines().any(|l| l == ds),
                "{ds} not in dsfromkey.txt"
            );
            seen += 1;
        }
        assert_eq!(seen, 3, "three vendored keys");
    }
}
