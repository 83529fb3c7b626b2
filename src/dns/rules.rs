//! The rules both answer paths apply, each written once: the UDP fast path calls them on
//! raw header fields, the ordinary path on hickory's decoded request, so the two cannot
//! drift apart (the differential test checks the bytes they produce).
//!
//! Pure functions over numbers: no hickory types, no allocation.

use super::malformed::Malformed;
use crate::metrics::{QTYPES, RCODES};
use crate::model::Family;

/// Response codes geode sends (RFC 1035 4.1.1, RFC 6891 9). BADVERS is an extended code:
/// its low 4 bits go in the header, the rest in the OPT record.
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused.
    pub const REFUSED: u16 = 5;
    /// EDNS version not supported.
    pub const BADVERS: u16 = 16;
}

/// Query types with a rule of their own.
pub mod qtype {
    /// A.
    pub const A: u16 = 1;
    /// AAAA.
    pub const AAAA: u16 = 28;
    /// IXFR.
    pub const IXFR: u16 = 251;
    /// AXFR.
    pub const AXFR: u16 = 252;
    /// ANY (`*`).
    pub const ANY: u16 = 255;
}

/// Class IN.
pub const CLASS_IN: u16 = 1;

/// What gets no reply at all (RFC 1035 4.1.1): a datagram shorter than a header has
/// nothing to answer, and a response (QR=1) is never answered, which would invite
/// reflection loops. `None` means the message is a query worth looking at.
pub fn unanswerable(packet: &[u8]) -> Option<Malformed> {
    if packet.len() < 12 {
        Some(Malformed::Short)
    } else if packet[2] & 0x80 != 0 {
        Some(Malformed::Response)
    } else {
        None
    }
}

/// The header checks, in the order they apply: an opcode other than QUERY is NOTIMP
/// (RFC 1035 4.1.1), an EDNS version above 0 is BADVERS (RFC 6891 6.1.3), anything but
/// exactly one question is FORMERR (RFC 9619). `None`: the header is fine.
pub fn header_rcode(opcode: u8, edns_version: Option<u8>, qdcount: usize) -> Option<u16> {
    if opcode != 0 {
        Some(rcode::NOTIMP)
    } else if edns_version.is_some_and(|v| v > 0) {
        Some(rcode::BADVERS)
    } else if qdcount != 1 {
        Some(rcode::FORMERR)
    } else {
        None
    }
}

/// The question checks: a class other than IN is REFUSED (we serve IN only, RFC 6895
/// 3.2), and so are AXFR and IXFR for every name, existing or not (no zone transfers:
/// every instance reads the same config). `None`: look the name up.
pub fn question_rcode(qclass: u16, qtype: u16) -> Option<u16> {
    if qclass != CLASS_IN || matches!(qtype, qtype::AXFR | qtype::IXFR) {
        Some(rcode::REFUSED)
    } else {
        None
    }
}

/// The address family a query asks a GSLB name for: A and ANY (RFC 8482: one RRset is a
/// sufficient answer) get IPv4, AAAA gets IPv6; any other type has no data there.
pub fn gslb_family(qtype: u16) -> Option<Family> {
    match qtype {
        qtype::A | qtype::ANY => Some(Family::V4),
        qtype::AAAA => Some(Family::V6),
        _ => None,
    }
}

/// The UDP payload size the response OPT advertises: what the query offered, at least
/// 512 (RFC 6891 6.2.5), at most `cap` (`server.max_udp_payload`, below fragmentation).
pub fn response_payload(offered: u16, cap: u16) -> u16 {
    offered.max(512).min(cap)
}

/// Largest UDP response: the response OPT's payload, or 512 without EDNS (RFC 1035
/// 4.2.1). Longer answers are truncated (see `super::encode`).
pub fn udp_limit(payload: Option<u16>) -> u16 {
    payload.unwrap_or(512)
}

/// Index of a query type's label in [`QTYPES`] (`geode_dns_queries_total{qtype}`).
/// A match on the number straight to the index, as every query counts one: looking the
/// mnemonic up in [`QTYPES`] cost ~20 instructions a query. The test
/// `labels_cover_the_closed_sets` checks each index against [`QTYPES`] and hickory's
/// mnemonic for the number.
pub fn qtype_label(t: u16) -> usize {
    match t {
        1 => 0,    // A
        28 => 1,   // AAAA
        5 => 2,    // CNAME
        16 => 3,   // TXT
        15 => 4,   // MX
        33 => 5,   // SRV
        257 => 6,  // CAA
        2 => 7,    // NS
        6 => 8,    // SOA
        12 => 9,   // PTR
        255 => 10, // ANY
        65 => 11,  // HTTPS
        _ => QTYPES.len() - 1,
    }
}

/// Index of a response code's label in `RCODES` (`geode_dns_queries_total{rcode}`),
/// by number as [`qtype_label`] is.
pub fn rcode_label(rc: u16) -> usize {
    match rc {
        rcode::NOERROR => 0,
        rcode::NXDOMAIN => 1,
        rcode::REFUSED => 2,
        rcode::FORMERR => 3,
        rcode::SERVFAIL => 4,
        rcode::NOTIMP => 5,
        rcode::BADVERS => 6,
        _ => RCODES.len() - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1035_4_1_1_header_checks_apply_in_order() {
        assert_eq!(header_rcode(2, Some(1), 2), Some(rcode::NOTIMP));
        assert_eq!(header_rcode(0, Some(1), 2), Some(rcode::BADVERS));
        assert_eq!(header_rcode(0, Some(0), 2), Some(rcode::FORMERR));
        assert_eq!(header_rcode(0, None, 0), Some(rcode::FORMERR));
        assert_eq!(header_rcode(0, None, 1), None);
    }

    #[test]
    fn zone_transfers_and_other_classes_are_refused() {
        assert_eq!(question_rcode(1, qtype::AXFR), Some(rcode::REFUSED));
        assert_eq!(question_rcode(1, qtype::IXFR), Some(rcode::REFUSED));
        assert_eq!(question_rcode(3, qtype::A), Some(rcode::REFUSED));
        assert_eq!(question_rcode(1, qtype::A), None);
    }

    #[test]
    fn rfc6891_payload_and_udp_limits() {
        assert_eq!(response_payload(100, 1232), 512);
        assert_eq!(response_payload(4096, 1232), 1232);
        assert_eq!(response_payload(1400, 1232), 1232);
        assert_eq!(response_payload(700, 1232), 700);
        assert_eq!(udp_limit(None), 512);
        assert_eq!(udp_limit(Some(1232)), 1232);
    }

    #[test]
    fn labels_cover_the_closed_sets() {
        use hickory_server::proto::op::ResponseCode;
        use hickory_server::proto::rr::RecordType;
        // Every number maps to the label its mnemonic has, and every label but `other`
        // is reached.
        let mut seen = [false; QTYPES.len()];
        for t in 0..=u16::MAX {
            let i = qtype_label(t);
            seen[i] = true;
            let name = match RecordType::from(t) {
                RecordType::ANY => "ANY".to_string(),
                r => r.to_string(),
            };
            if i == QTYPES.len() - 1 {
                assert!(!QTYPES.contains(&name.as_str()), "{t} {name}");
            } else {
                assert_eq!(QTYPES[i], name, "qtype {t}");
            }
        }
        assert!(seen.iter().all(|&s| s));
        let mut seen = [false; RCODES.len()];
        for rc in 0..=4095u16 {
            let i = rcode_label(rc);
            seen[i] = true;
            // 16 is BADSIG in TSIG and BADVERS in an OPT (RFC 6891 9); geode means the latter.
            let name = match rc {
                16 => "BADVERS".to_string(),
                _ => format!(
                    "{:?}",
                    ResponseCode::from((rc >> 4) as u8, (rc & 0xF) as u8)
                )
                .to_uppercase(),
            };
            if i == RCODES.len() - 1 {
                assert!(!RCODES.contains(&name.as_str()), "{rc} {name}");
            } else {
                assert_eq!(RCODES[i], name, "rcode {rc}");
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(QTYPES[qtype_label(1)], "A");
        assert_eq!(QTYPES[qtype_label(255)], "ANY");
        assert_eq!(QTYPES[qtype_label(99)], "other");
        assert_eq!(RCODES[rcode_label(3)], "NXDOMAIN");
        assert_eq!(RCODES[rcode_label(16)], "BADVERS");
        assert_eq!(RCODES[rcode_label(9)], "other");
    }

    #[test]
    fn short_datagrams_and_responses_get_no_reply() {
        assert_eq!(unanswerable(&[0; 11]), Some(Malformed::Short));
        let mut q = [0u8; 12];
        assert_eq!(unanswerable(&q), None);
        q[2] = 0x80;
        assert_eq!(unanswerable(&q), Some(Malformed::Response));
    }
}
