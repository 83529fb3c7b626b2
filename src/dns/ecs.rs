//! EDNS Client Subnet (RFC 7871) checks hickory's decoder does not make.
//!
//! hickory reads as many address bytes as SOURCE PREFIX-LENGTH needs and ignores the
//! rest, and keeps bits set beyond the prefix. RFC 7871 section 6 says both make the
//! option malformed (FORMERR), so the raw OPT record is walked here.

use std::net::IpAddr;

/// Why an ECS option is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// FAMILY is neither 1 (IPv4) nor 2 (IPv6).
    #[error("unknown address family {0}")]
    Family(u16),
    /// SOURCE PREFIX-LENGTH longer than the family's address.
    #[error("source prefix {0} is longer than the address")]
    Prefix(u8),
    /// ADDRESS is not exactly ceil(SOURCE PREFIX-LENGTH / 8) bytes.
    #[error("address is {stated} bytes, the prefix needs {needed}")]
    Length {
        /// Bytes present.
        stated: usize,
        /// Bytes the prefix needs.
        needed: usize,
    },
    /// Bits beyond SOURCE PREFIX-LENGTH are set.
    #[error("address has bits set beyond the source prefix")]
    HostBits,
    /// The message ends inside the option.
    #[error("truncated option")]
    Truncated,
}

fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l if l & 0xC0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// What is wrong with a query's OPT record, found before hickory decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OptError {
    /// The options do not fill the OPT RDATA exactly (one claims more bytes than are
    /// left, or a stray byte follows the last). hickory would drop them all and log a
    /// WARN line per message: see `super::malformed`.
    #[error("EDNS options do not fill the OPT RDATA")]
    Options,
    /// A malformed Client Subnet option.
    #[error("client subnet: {0}")]
    Ecs(#[from] EcsError),
}

/// Checks the OPT records of a query: options framing, then every ECS option. Messages
/// that cannot be walked are left to the full decoder, which answers FORMERR on its own.
pub fn check_opt(msg: &[u8]) -> Result<(), OptError> {
    let Some(counts) = (|| {
        Some([
            u16_at(msg, 4)?,
            u16_at(msg, 6)?,
            u16_at(msg, 8)?,
            u16_at(msg, 10)?,
        ])
    })() else {
        return Ok(());
    };
    let mut at = 12;
    for _ in 0..counts[0] {
        let Some(n) = skip_name(msg, at) else {
            return Ok(());
        };
        at = n + 4;
    }
    for _ in 0..u32::from(counts[1]) + u32::from(counts[2]) {
        let Some(n) = skip_name(msg, at) else {
            return Ok(());
        };
        let Some(rdlen) = u16_at(msg, n + 8) else {
            return Ok(());
        };
        at = n + 10 + usize::from(rdlen);
    }
    for _ in 0..counts[3] {
        let Some(n) = skip_name(msg, at) else {
            return Ok(());
        };
        let (Some(rtype), Some(rdlen)) = (u16_at(msg, n), u16_at(msg, n + 8)) else {
            return Ok(());
        };
        let rdata = n + 10;
        let end = rdata + usize::from(rdlen);
        if end > msg.len() {
            return Ok(());
        }
        if rtype == 41 {
            let mut o = rdata;
            while o < end {
                if o + 4 > end {
                    return Err(OptError::Options);
                }
                let (Some(code), Some(len)) = (u16_at(msg, o), u16_at(msg, o + 2)) else {
                    return Ok(());
                };
                let body = o + 4;
                let body_end = body + usize::from(len);
                if body_end > end {
                    return Err(OptError::Options);
                }
                if code == 8 {
                    check_option(&msg[body..body_end])?;
                }
                o = body_end;
            }
        }
        at = end;
    }
    Ok(())
}

/// Checks every ECS option in a query (the ECS part of [`check_opt`]).
pub fn check(msg: &[u8]) -> Result<(), EcsError> {
    match check_opt(msg) {
        Err(OptError::Ecs(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Checks one ECS option body (FAMILY, SOURCE, SCOPE, ADDRESS).
// Inlined: the fast path asks only whether it fails, so the error it builds goes away.
#[inline(always)]
pub fn check_option(opt: &[u8]) -> Result<(), EcsError> {
    if opt.len() < 4 {
        return Err(EcsError::Truncated);
    }
    let family = u16::from_be_bytes([opt[0], opt[1]]);
    let source = opt[2];
    let max = match family {
        1 => 32,
        2 => 128,
        f => return Err(EcsError::Family(f)),
    };
    if source > max {
        return Err(EcsError::Prefix(source));
    }
    let addr = &opt[4..];
    let needed = usize::from(source).div_ceil(8);
    if addr.len() != needed {
        return Err(EcsError::Length {
            stated: addr.len(),
            needed,
        });
    }
    if !source.is_multiple_of(8) {
        let mask = 0xFFu8 >> (source % 8);
        if addr[needed - 1] & mask != 0 {
            return Err(EcsError::HostBits);
        }
    }
    Ok(())
}

/// True when an ECS address says nothing about where the client is; defined once, in
/// the model, beside the rule that picks the client's address.
pub use crate::model::ecs_unusable as unusable;

/// The SCOPE PREFIX-LENGTH to echo for an option carrying `addr` with `source_prefix`,
/// when the answer held for `scope` bits of the address that located the client.
///
/// - Source prefix 0: the client opted out, the answer cannot be about its subnet, so
///   the scope is 0 (RFC 7871 7.1.2; gdnsd does the same), whatever the resolver's own
///   address was located by.
/// - Routing works on the IPv4 form of an IPv4-mapped IPv6 address, so its scope is an
///   IPv4 prefix; the option is IPv6, so the scope is moved into the mapped range
///   (/27 -> /123).
pub fn reply_scope(addr: IpAddr, source_prefix: u8, scope: u8) -> u8 {
    match addr {
        _ if source_prefix == 0 => 0,
        IpAddr::V6(v6) if scope > 0 && v6.to_ipv4_mapped().is_some() => (scope + 96).min(128),
        _ => scope,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc7871_7_2_1_mapped_scope_is_expressed_in_the_ipv6_option() {
        let mapped: IpAddr = "::ffff:81.2.69.160".parse().unwrap();
        assert_eq!(reply_scope(mapped, 120, 27), 123);
        assert_eq!(reply_scope(mapped, 120, 0), 0);
        assert_eq!(reply_scope("81.2.69.160".parse().unwrap(), 32, 27), 27);
        assert_eq!(reply_scope("2001:db8::".parse().unwrap(), 48, 32), 32);
    }

    #[test]
    fn rfc7871_7_1_2_a_usable_subnet_locates_the_client_else_the_resolver() {
        use crate::model::{ClientSource, client_address};
        let resolver: IpAddr = "192.0.2.53".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_address(Some((ip("81.2.69.0"), 24)), resolver),
            (ip("81.2.69.0"), ClientSource::Ecs { source_prefix: 24 })
        );
        // IPv4-mapped IPv6 is located as IPv4.
        assert_eq!(
            client_address(Some((ip("::ffff:81.2.69.0"), 120)), resolver),
            (ip("81.2.69.0"), ClientSource::Ecs { source_prefix: 120 })
        );
        for unusable in [
            ("0.0.0.0", 0),
            ("81.2.69.0", 0),
            ("127.0.0.0", 24),
            ("fe80::", 64),
        ] {
            assert_eq!(
                client_address(Some((ip(unusable.0), unusable.1)), resolver),
                (resolver, ClientSource::Resolver),
                "{unusable:?}"
            );
        }
        assert_eq!(
            client_address(None, resolver),
            (resolver, ClientSource::Resolver)
        );
    }

    #[test]
    fn rfc7871_7_1_2_source_prefix_zero_gets_scope_zero() {
        assert_eq!(reply_scope("0.0.0.0".parse().unwrap(), 0, 8), 0);
        assert_eq!(reply_scope("::".parse().unwrap(), 0, 16), 0);
    }

    #[test]
    fn rfc6891_options_must_fill_the_opt_rdata() {
        // Header (QD 1, AR 1), question "a." A IN, OPT with RDATA `opts`.
        let msg = |opts: &[u8]| {
            let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, b'a', 0, 0, 1, 0, 1];
            m.extend([0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
            m.extend((opts.len() as u16).to_be_bytes());
            m.extend(opts);
            m
        };
        assert_eq!(check_opt(&msg(&[])), Ok(()));
        assert_eq!(check_opt(&msg(&[0, 10, 0, 2, 1, 2])), Ok(()));
        assert_eq!(check_opt(&msg(&[0, 10, 0, 0])), Ok(()));
        // Claims 7 bytes, 3 follow; a stray byte; half an option header.
        assert_eq!(
            check_opt(&msg(&[0, 10, 0, 7, 1, 2, 3])),
            Err(OptError::Options)
        );
        assert_eq!(check_opt(&msg(&[0, 10, 0, 0, 9])), Err(OptError::Options));
        assert_eq!(check_opt(&msg(&[0, 10])), Err(OptError::Options));
        // ECS bodies are checked too.
        assert_eq!(
            check_opt(&msg(&[0, 8, 0, 5, 0, 3, 8, 0, 1])),
            Err(OptError::Ecs(EcsError::Family(3)))
        );
        assert_eq!(check(&msg(&[0, 10, 0, 7, 1, 2, 3])), Ok(()));
    }

    use super::*;

    #[test]
    fn rfc7871_section6_well_formed_options_pass() {
        // FAMILY 1, SOURCE 24, SCOPE 0, 3 address bytes.
        assert_eq!(check_option(&[0, 1, 24, 0, 198, 51, 100]), Ok(()));
        // FAMILY 1, SOURCE 0: no address bytes.
        assert_eq!(check_option(&[0, 1, 0, 0]), Ok(()));
        // FAMILY 2, SOURCE 56: 7 bytes.
        assert_eq!(
            check_option(&[0, 2, 56, 0, 0x20, 1, 0x0d, 0xb8, 0, 0, 0]),
            Ok(())
        );
        // SOURCE 20: last byte's low nibble clear.
        assert_eq!(check_option(&[0, 1, 20, 0, 10, 20, 0x30]), Ok(()));
    }

    #[test]
    fn rfc7871_section6_address_longer_than_prefix_is_malformed() {
        assert_eq!(
            check_option(&[0, 1, 24, 0, 198, 51, 100, 7]),
            Err(EcsError::Length {
                stated: 4,
                needed: 3
            })
        );
    }

    #[test]
    fn rfc7871_section6_bits_beyond_prefix_are_malformed() {
        assert_eq!(
            check_option(&[0, 1, 20, 0, 10, 20, 0x31]),
            Err(EcsError::HostBits)
        );
    }

    #[test]
    fn rfc7871_section6_unknown_family_and_long_prefix_are_malformed() {
        assert_eq!(check_option(&[0, 3, 8, 0, 1]), Err(EcsError::Family(3)));
        assert_eq!(
            check_option(&[0, 1, 33, 0, 1, 2, 3, 4, 5]),
            Err(EcsError::Prefix(33))
        );
        assert_eq!(check_option(&[0, 1]), Err(EcsError::Truncated));
    }

    #[test]
    fn rfc7871_section7_1_2_unusable_addresses_fall_back_to_the_resolver() {
        assert!(unusable("0.0.0.0".parse().unwrap(), 0));
        assert!(unusable("198.51.100.0".parse().unwrap(), 0));
        assert!(unusable("127.0.0.0".parse().unwrap(), 24));
        assert!(unusable("169.254.1.0".parse().unwrap(), 24));
        assert!(unusable("224.0.0.0".parse().unwrap(), 24));
        assert!(unusable("fe80::".parse().unwrap(), 64));
        assert!(unusable("::ffff:127.0.0.1".parse().unwrap(), 120));
        // Private and documentation ranges are used as given.
        assert!(!unusable("10.1.0.0".parse().unwrap(), 16));
        assert!(!unusable("192.0.2.0".parse().unwrap(), 24));
    }
}
