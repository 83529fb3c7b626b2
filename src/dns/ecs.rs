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

/// Checks every ECS option in a query. Messages that cannot be walked are left to the
/// full decoder, which answers FORMERR on its own.
pub fn check(msg: &[u8]) -> Result<(), EcsError> {
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
        if rtype == 41 {
            let mut o = rdata;
            while o + 4 <= end {
                let (Some(code), Some(len)) = (u16_at(msg, o), u16_at(msg, o + 2)) else {
                    return Ok(());
                };
                let body = o + 4;
                let body_end = body + usize::from(len);
                if code == 8 {
                    let opt = msg.get(body..body_end).ok_or(EcsError::Truncated)?;
                    check_option(opt)?;
                }
                o = body_end;
            }
        }
        at = end;
    }
    Ok(())
}

/// Checks one ECS option body (FAMILY, SOURCE, SCOPE, ADDRESS).
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

/// True when an ECS address says nothing about where the client is (RFC 7871 section
/// 7.1.2 and DESIGN.md): then the resolver's own address is used.
pub fn unusable(addr: IpAddr, source_prefix: u8) -> bool {
    if source_prefix == 0 {
        return true;
    }
    match crate::geo::canonical_ip(addr) {
        IpAddr::V4(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The SCOPE PREFIX-LENGTH to echo for an option carrying `addr`. Routing works on the
/// IPv4 form of an IPv4-mapped IPv6 address, so its scope is an IPv4 prefix; the option
/// is IPv6, so the scope is moved into the mapped range (/27 -> /123).
pub fn reply_scope(addr: IpAddr, scope: u8) -> u8 {
    match addr {
        IpAddr::V6(v6) if scope > 0 && v6.to_ipv4_mapped().is_some() => (scope + 96).min(128),
        _ => scope,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc7871_7_2_1_mapped_scope_is_expressed_in_the_ipv6_option() {
        let mapped: IpAddr = "::ffff:81.2.69.160".parse().unwrap();
        assert_eq!(reply_scope(mapped, 27), 123);
        assert_eq!(reply_scope(mapped, 0), 0);
        assert_eq!(reply_scope("81.2.69.160".parse().unwrap(), 27), 27);
        assert_eq!(reply_scope("2001:db8::".parse().unwrap(), 32), 32);
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
