//! DNS protocol conformance of the real binary, one test per RFC section: header flags,
//! negative answers, error rcodes, EDNS0, truncation, CNAME chasing, ANY, every record
//! type served from config, DNS over TCP, dig end to end, a clean SIGTERM, and bursts
//! of UDP queries (answered in recvmmsg/sendmmsg batches).
//!
//! Edge cases are sent as hand-built datagrams (`Packet`), so what goes on the wire is
//! exactly what the test says; answers are decoded with hickory's `Message`.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_net::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_net::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Geode, addrs};

/// Record type numbers for raw packets.
const T_A: u16 = 1;
const T_NS: u16 = 2;
const T_TXT: u16 = 16;

/// How long to wait for a reply that must not come.
const SILENCE: Duration = Duration::from_millis(400);
/// How long to wait for a reply that must come.
const REPLY: Duration = Duration::from_secs(3);

/// 200 bytes of TXT text, distinct per `i`.
fn txt200(i: usize) -> String {
    format!("{i:03}-{}", "x".repeat(196))
}

/// A long unquoted TXT value: split by geode into 255 + 45 bytes.
fn txt300() -> String {
    format!("L{}", "y".repeat(299))
}

/// The zones every protocol test serves. `server` is extra `[server]` lines.
fn config(server: &str) -> String {
    let big: String = (0..20)
        .map(|i| {
            format!(
                "  {{ name = \"big\", type = \"TXT\", value = \"{}\" }},\n",
                txt200(i)
            )
        })
        .collect();
    let medium: String = (0..4)
        .map(|i| {
            format!(
                "  {{ name = \"medium\", type = \"TXT\", value = \"{}\" }},\n",
                txt200(i)
            )
        })
        .collect();
    format!(
        r#"
[server]
{server}

[zones."gslb.example."]
ttl = 300
soa = {{ mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 2026010101, refresh = 3600, retry = 600, expire = 1209600, minimum = 60 }}
ns  = ["ns1.gslb.example.", "ns2.gslb.example.", "ns.elsewhere.example.net."]
records = [
  {{ name = "ns1",    type = "A",     value = "192.0.2.53" }},
  {{ name = "ns1",    type = "AAAA",  value = "2001:db8::53" }},
  {{ name = "ns2",    type = "A",     value = "198.51.100.53" }},
  {{ name = "static", type = "A",     value = "192.0.2.1" }},
  {{ name = "static", type = "A",     value = "192.0.2.2" }},
  {{ name = "static", type = "AAAA",  value = "2001:db8::1" }},
  {{ name = "a.b",    type = "A",     value = "192.0.2.3" }},
  {{ name = "alias",  type = "CNAME", value = "static" }},
  {{ name = "chain",  type = "CNAME", value = "alias.gslb.example." }},
  {{ name = "to-gslb", type = "CNAME", value = "www" }},
  {{ name = "out",    type = "CNAME", value = "www.example.net." }},
  {{ name = "dangling", type = "CNAME", value = "nothing-here" }},
  {{ name = "loop1",  type = "CNAME", value = "loop2" }},
  {{ name = "loop2",  type = "CNAME", value = "loop1" }},
  {{ name = "@",      type = "TXT",   value = '"v=geode" "second string"' }},
  {{ name = "long",   type = "TXT",   value = "{long}" }},
  {{ name = "@",      type = "MX",    value = "10 mail" }},
  {{ name = "@",      type = "MX",    value = "20 mx.example.net." }},
  {{ name = "mail",   type = "A",     value = "192.0.2.25" }},
  {{ name = "_sip._tcp", type = "SRV", value = "10 60 5060 sip.gslb.example." }},
  {{ name = "@",      type = "CAA",   value = '0 issue "letsencrypt.org"' }},
  {{ name = "@",      type = "CAA",   value = '128 iodef "mailto:sec@gslb.example"' }},
  {{ name = "sub",    type = "A",     value = "192.0.2.4", ttl = 42 }},
]

[zones."big.example."]
ttl = 45
soa = {{ mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 7, minimum = 3600 }}
ns  = ["ns1.gslb.example."]
records = [
{big}{medium}]

[zones."2.0.192.in-addr.arpa."]
ttl = 600
soa = {{ mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }}
ns  = ["ns1.gslb.example."]
records = [
  {{ name = "53", type = "PTR", value = "ns1.gslb.example." }},
]

[regions.one]
location = {{ lat = 50.0, lon = 8.0 }}
endpoints = [ {{ address = "192.0.2.10" }}, {{ address = "2001:db8::10" }} ]

[services."www.gslb.example."]
regions = ["one"]
ttl = 30

[regions.many]
location = {{ lat = 50.0, lon = 8.0 }}
endpoints = [
{many}]

[services."many.gslb.example."]
regions = ["many"]
max_answers = 16

[regions.far]
location = {{ lat = -33.9, lon = 151.2 }}
endpoints = [ {{ address = "198.51.100.77" }}, {{ address = "2001:db8::77" }} ]

[services."geo.gslb.example."]
regions = ["one", "far"]
"#,
        long = txt300(),
        many = (1..=16)
            .map(|i| format!("  {{ address = \"2001:db8::1:{i:x}\" }},\n"))
            .collect::<String>(),
    )
}

fn start() -> Geode {
    Geode::start(&config(""))
}

// ---------------------------------------------------------------------------------------
// Raw packets

/// A hand-built DNS message.
struct Packet {
    id: u16,
    /// Header bytes 2-3: QR, opcode, AA, TC, RD, RA, Z, rcode.
    flags: u16,
    questions: Vec<(String, u16)>,
    /// OPT record: (UDP payload size, EDNS version).
    opt: Option<(u16, u8)>,
}

impl Packet {
    fn query(id: u16, name: &str, qtype: u16) -> Packet {
        Packet {
            id,
            flags: 0,
            questions: vec![(name.to_string(), qtype)],
            opt: None,
        }
    }
    fn opcode(mut self, op: u8) -> Packet {
        self.flags = (self.flags & !0x7800) | (u16::from(op) << 11);
        self
    }
    fn qr(mut self) -> Packet {
        self.flags |= 0x8000;
        self
    }
    fn edns(mut self, payload: u16, version: u8) -> Packet {
        self.opt = Some((payload, version));
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(self.id.to_be_bytes());
        b.extend(self.flags.to_be_bytes());
        b.extend((self.questions.len() as u16).to_be_bytes());
        b.extend([0, 0, 0, 0]);
        b.extend(u16::from(self.opt.is_some()).to_be_bytes());
        for (name, qtype) in &self.questions {
            b.extend(wire_name(name));
            b.extend(qtype.to_be_bytes());
            b.extend(1u16.to_be_bytes());
        }
        if let Some((payload, version)) = self.opt {
            b.push(0);
            b.extend(41u16.to_be_bytes());
            b.extend(payload.to_be_bytes());
            b.extend([0, version, 0, 0]);
            b.extend(0u16.to_be_bytes());
        }
        b
    }
}

/// A name in wire format, case kept.
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
    out
}

fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("undecodable reply {bytes:02x?}: {e}"))
}

/// Sends raw bytes over UDP and decodes the reply, which must come.
fn exchange(g: &Geode, packet: &[u8]) -> Message {
    let reply = g
        .raw_udp(packet, REPLY)
        .unwrap_or_else(|| panic!("no reply to {packet:02x?}"));
    decode(&reply)
}

/// A query message without EDNS (the harness's helper always adds OPT).
fn plain_query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

/// A query with OPT advertising `payload`.
fn edns_query(name: &str, rtype: RecordType, payload: u16, version: u8) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4343;
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(payload).set_version(version);
    m.set_edns(e);
    m.to_vec().unwrap()
}

async fn tcp_send(stream: &mut TcpStream, msg: &[u8]) {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend(msg);
    stream.write_all(&framed).await.expect("tcp write");
}

async fn tcp_recv(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    tokio::time::timeout(REPLY, stream.read_exact(&mut len))
        .await
        .expect("tcp reply in time")
        .expect("tcp read length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tokio::time::timeout(REPLY, stream.read_exact(&mut buf))
        .await
        .expect("tcp reply body in time")
        .expect("tcp read body");
    buf
}

/// One query over a fresh TCP connection.
async fn tcp_exchange(addr: SocketAddr, msg: &[u8]) -> Message {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    tcp_send(&mut s, msg).await;
    decode(&tcp_recv(&mut s).await)
}

/// The server still answers an ordinary query.
async fn still_serving(g: &Geode) {
    let m = g.query("static.gslb.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
}

fn soa_ttl(m: &Message) -> u32 {
    assert_eq!(m.authorities.len(), 1, "one SOA in AUTHORITY: {m:?}");
    let soa = &m.authorities[0];
    assert_eq!(
        soa.record_type(),
        RecordType::SOA,
        "AUTHORITY holds the SOA"
    );
    soa.ttl
}

fn types(records: &[Record]) -> Vec<RecordType> {
    records.iter().map(|r| r.record_type()).collect()
}

fn txt_strings(r: &Record) -> Vec<String> {
    match &r.data {
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        other => panic!("not TXT: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Header flags, negative answers

#[tokio::test]
async fn rfc1035_4_1_1_aa_set_on_authoritative_answers() {
    let g = start();
    for (name, t, rcode) in [
        ("static.gslb.example.", RecordType::A, ResponseCode::NoError),
        ("www.gslb.example.", RecordType::A, ResponseCode::NoError),
        (
            "static.gslb.example.",
            RecordType::MX,
            ResponseCode::NoError,
        ),
        ("nope.gslb.example.", RecordType::A, ResponseCode::NXDomain),
        ("gslb.example.", RecordType::SOA, ResponseCode::NoError),
    ] {
        let m = g.query(name, t, None).await;
        assert_eq!(m.metadata.response_code, rcode, "{name} {t}");
        assert!(m.metadata.authoritative, "AA on {name} {t}");
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(!m.metadata.recursion_available, "RA is never set");
    }
    let refused = g.query("example.com.", RecordType::A, None).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(!refused.metadata.authoritative, "no AA outside our zones");
}

#[tokio::test]
async fn rfc1034_4_3_2_ns_answer_carries_in_zone_glue_in_additional() {
    let g = start();
    let m = g.query("gslb.example.", RecordType::NS, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let mut ns: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(n) => n.0.to_string(),
            o => panic!("not NS: {o:?}"),
        })
        .collect();
    ns.sort();
    assert_eq!(
        ns,
        [
            "ns.elsewhere.example.net.",
            "ns1.gslb.example.",
            "ns2.gslb.example."
        ]
    );
    let mut glue: Vec<String> = m
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(format!("{} A {}", r.name, a.0)),
            RData::AAAA(a) => Some(format!("{} AAAA {}", r.name, a.0)),
            _ => None,
        })
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            "ns1.gslb.example. A 192.0.2.53",
            "ns1.gslb.example. AAAA 2001:db8::53",
            "ns2.gslb.example. A 198.51.100.53",
        ],
        "glue for in-zone name servers only"
    );
    // A zone whose name server lives in another of our zones gets no glue from there.
    let big = g.query("big.example.", RecordType::NS, None).await;
    assert_eq!(big.answers.len(), 1);
    assert!(
        big.additionals
            .iter()
            .all(|r| r.record_type() == RecordType::OPT),
        "no out-of-zone glue: {:?}",
        big.additionals
    );
}

#[tokio::test]
async fn rfc2308_3_nxdomain_carries_zone_soa_with_negative_ttl() {
    let g = start();
    let m = g.query("nope.gslb.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    // min(SOA TTL 300, minimum 60)
    assert_eq!(soa_ttl(&m), 60);
    assert_eq!(
        m.authorities[0].name,
        Name::from_str("gslb.example.").unwrap()
    );
    // Below an existing name, too.
    let deep = g.query("x.static.gslb.example.", RecordType::A, None).await;
    assert_eq!(deep.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_ttl(&deep), 60);
    // min(SOA TTL 45, minimum 3600): the other bound.
    let big = g.query("nope.big.example.", RecordType::TXT, None).await;
    assert_eq!(big.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_ttl(&big), 45);
    assert_eq!(
        big.authorities[0].name,
        Name::from_str("big.example.").unwrap()
    );
}

#[tokio::test]
async fn rfc2308_3_nodata_carries_zone_soa_with_negative_ttl() {
    let g = start();
    for (name, t) in [
        ("static.gslb.example.", RecordType::TXT),
        ("www.gslb.example.", RecordType::MX),
        ("www.gslb.example.", RecordType::TXT),
        ("ns2.gslb.example.", RecordType::AAAA),
    ] {
        let m = g.query(name, t, None).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "NODATA is NOERROR: {name} {t}"
        );
        assert!(m.answers.is_empty(), "{name} {t}: {:?}", m.answers);
        assert_eq!(soa_ttl(&m), 60, "{name} {t}");
    }
    let big = g.query("big.big.example.", RecordType::A, None).await;
    assert_eq!(big.metadata.response_code, ResponseCode::NoError);
    assert_eq!(soa_ttl(&big), 45);
}

#[tokio::test]
async fn rfc8020_2_empty_non_terminal_is_nodata() {
    let g = start();
    // a.b.gslb.example exists, so b.gslb.example is an empty non-terminal.
    for name in ["b.gslb.example.", "_tcp.gslb.example."] {
        let m = g.query(name, RecordType::A, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty());
        assert_eq!(soa_ttl(&m), 60);
    }
    let real = g.query("a.b.gslb.example.", RecordType::A, None).await;
    assert_eq!(addrs(&real), ["192.0.2.3"]);
    // Below the empty non-terminal, only what exists exists.
    let nx = g.query("c.b.gslb.example.", RecordType::A, None).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}

// ---------------------------------------------------------------------------------------
// Error rcodes and what gets no reply

#[test]
fn rfc1035_4_1_1_refused_for_names_outside_every_zone() {
    let g = start();
    for name in [
        "example.com.",
        "example.",
        "xgslb.example.",
        "gslb.example.net.",
        ".",
    ] {
        let m = exchange(&g, &Packet::query(7, name, T_A).bytes());
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
        assert_eq!(m.metadata.id, 7);
        assert!(m.answers.is_empty() && m.authorities.is_empty(), "{name}");
    }
}

#[test]
fn rfc1035_4_1_1_notimp_for_opcodes_other_than_query() {
    let g = start();
    for (op, want) in [
        (1u8, OpCode::Unknown(1)),
        (2, OpCode::Status),
        (4, OpCode::Notify),
        (5, OpCode::Update),
        (15, OpCode::Unknown(15)),
    ] {
        for (i, (name, qtype)) in [
            ("gslb.example.", 6),
            ("www.gslb.example.", T_A),
            ("nope.gslb.example.", T_A),
        ]
        .into_iter()
        .enumerate()
        {
            let id = 0x1000 + u16::from(op) * 16 + i as u16;
            let raw = Packet::query(id, name, qtype)
                .opcode(op)
                .edns(1232, 0)
                .bytes();
            let m = exchange(&g, &raw);
            assert_eq!(m.metadata.id, id);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.op_code, want, "opcode echoed");
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NotImp,
                "opcode {op} {name}"
            );
            assert!(m.answers.is_empty() && m.authorities.is_empty(), "{name}");
        }
    }
}

#[test]
fn rfc1035_4_1_1_formerr_for_malformed_questions() {
    let g = start();
    let zero = Packet {
        id: 0x0a0a,
        flags: 0,
        questions: vec![],
        opt: None,
    };
    let m = exchange(&g, &zero.bytes());
    assert_eq!(m.metadata.id, 0x0a0a);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "qdcount 0");
    assert!(m.answers.is_empty());

    let two = Packet {
        id: 0x0b0b,
        flags: 0,
        questions: vec![
            ("static.gslb.example.".into(), T_A),
            ("www.gslb.example.".into(), T_A),
        ],
        opt: None,
    };
    let m = exchange(&g, &two.bytes());
    assert_eq!(m.metadata.id, 0x0b0b);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "qdcount 2");
    assert!(m.answers.is_empty());
    // The same with a GSLB name or a missing name first, with and without EDNS.
    for first in ["www.gslb.example.", "nope.gslb.example."] {
        for opt in [None, Some((1232, 0))] {
            let two = Packet {
                id: 0x0b0c,
                flags: 0,
                questions: vec![(first.into(), T_A), ("static.gslb.example.".into(), T_A)],
                opt,
            };
            let m = exchange(&g, &two.bytes());
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::FormErr,
                "{first} {opt:?}"
            );
            assert!(m.answers.is_empty(), "{first} {opt:?}");
        }
    }

    // qdcount says 1, but the question is cut off after the name.
    let mut cut = Packet::query(0x0c0c, "static.gslb.example.", T_A).bytes();
    cut.truncate(cut.len() - 3);
    let m = exchange(&g, &cut);
    assert_eq!(m.metadata.id, 0x0c0c);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::FormErr,
        "short question"
    );
}

#[test]
fn rfc1035_4_1_1_no_reply_to_responses_or_short_datagrams() {
    let g = start();
    // A well-formed message with QR=1: answering would make us a reflector.
    let resp = Packet::query(9, "static.gslb.example.", T_A).qr().bytes();
    assert_eq!(g.raw_udp(&resp, SILENCE), None, "reply to a response");
    let resp_edns = Packet::query(9, "static.gslb.example.", T_A)
        .qr()
        .edns(1232, 0)
        .bytes();
    assert_eq!(g.raw_udp(&resp_edns, SILENCE), None, "reply to a response");
    // Shorter than a header.
    let query = Packet::query(9, "static.gslb.example.", T_A).bytes();
    for len in [1, 2, 5, 11] {
        assert_eq!(
            g.raw_udp(&query[..len], SILENCE),
            None,
            "reply to a {len}-byte datagram"
        );
    }
    // And it still answers.
    let m = exchange(&g, &query);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
}

#[tokio::test]
async fn rfc1035_4_1_1_garbage_does_not_crash_the_server() {
    let g = start();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![0u8; 12],
        vec![0xff; 12],
        vec![0xff; 512],
        // qdcount 1, then a label longer than the datagram.
        [&[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63][..], b"abc"].concat(),
        // A compression pointer to itself.
        vec![
            0x12, 0x35, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ],
        // A reserved label type (0x40).
        vec![
            0x12, 0x36, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, b'a', 0, 0, 1, 0, 1,
        ],
        // Counts far beyond the data.
        vec![
            0x12, 0x37, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        // An OPT record whose RDLENGTH runs past the end.
        {
            let mut p = Packet::query(0x1238, "static.gslb.example.", T_A)
                .edns(1232, 0)
                .bytes();
            let n = p.len();
            p[n - 2..].copy_from_slice(&[0x00, 0x40]);
            p.extend([0, 8, 0, 7, 0, 1, 24]);
            p
        },
    ];
    // Deterministic pseudo-random junk of many lengths.
    let mut x: u32 = 0x9e37_79b9;
    for len in [12usize, 13, 17, 31, 64, 100, 300, 600, 1500] {
        let mut p = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p.push(x as u8);
        }
        p[2] &= 0x7f; // a query, so it is not simply dropped as a response
        garbage.push(p);
    }
    for p in &garbage {
        if let Some(reply) = g.raw_udp(p, SILENCE) {
            assert!(reply.len() >= 12, "reply shorter than a header to {p:02x?}");
            assert_eq!(reply[..2], p[..2], "reply ID matches for {p:02x?}");
            assert!(reply[2] & 0x80 != 0, "reply has QR=1");
            let rcode = reply[3] & 0x0f;
            assert!(
                [1, 4, 5].contains(&rcode) || (reply[3] & 0x0f == 0 && p[2] & 0x78 == 0),
                "FORMERR/NOTIMP/REFUSED (or a real answer) for garbage, got rcode {rcode} to {p:02x?}"
            );
        }
    }
    // Malformed *responses* (QR=1) get no FORMERR back either: that would reflect.
    for p in &garbage {
        let mut r = p.clone();
        r[2] |= 0x80;
        assert_eq!(
            g.raw_udp(&r, Duration::from_millis(150)),
            None,
            "reply to malformed response {r:02x?}"
        );
    }
    // Over TCP too: garbage in a length-prefixed frame, then a frame too short to be DNS.
    for p in garbage.iter().take(6) {
        let mut s = TcpStream::connect(g.tcp).await.unwrap();
        tcp_send(&mut s, p).await;
        let mut buf = [0u8; 2];
        let _ = tokio::time::timeout(SILENCE, s.read(&mut buf)).await;
    }
    let mut s = TcpStream::connect(g.tcp).await.unwrap();
    tcp_send(&mut s, &[1, 2, 3]).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(REPLY, s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "a 3-byte TCP message closes the connection");

    still_serving(&g).await;
    let tcp = g
        .query_tcp("static.gslb.example.", RecordType::A, None)
        .await;
    assert_eq!(addrs(&tcp), ["192.0.2.1", "192.0.2.2"]);
}

#[test]
fn rfc6895_3_2_class_other_than_in_is_refused() {
    let g = start();
    // version.bind CH TXT: we serve class IN only.
    let mut p = Packet::query(0x0ccc, "version.bind.", T_TXT).bytes();
    let n = p.len();
    p[n - 2..].copy_from_slice(&3u16.to_be_bytes());
    let m = exchange(&g, &p);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // Also for names inside our zone (static, GSLB, missing), with and without EDNS.
    for name in [
        "static.gslb.example.",
        "www.gslb.example.",
        "nope.gslb.example.",
    ] {
        for edns in [false, true] {
            let mut p = Packet::query(0x0ccd, name, T_A).bytes();
            let at = 12 + wire_name(name).len() + 2;
            p[at..at + 2].copy_from_slice(&3u16.to_be_bytes());
            if edns {
                p[11] = 1;
                p.extend([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
            }
            let m = exchange(&g, &p);
            assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name} CH");
            assert!(m.answers.is_empty(), "{name} CH");
        }
    }
}

#[test]
fn rfc1035_4_1_1_id_and_rd_are_copied_into_the_response() {
    let g = start();
    for (i, name) in [
        "static.gslb.example.",
        "www.gslb.example.",
        "nope.gslb.example.",
        "x.www.gslb.example.",
        "example.com.",
    ]
    .into_iter()
    .enumerate()
    {
        for (rd, opt) in [(false, None), (true, None), (true, Some((1232, 0)))] {
            let id = 0xa000 + i as u16;
            let mut p = Packet::query(id, name, T_A);
            if rd {
                p.flags |= 0x0100;
            }
            p.opt = opt;
            let m = exchange(&g, &p.bytes());
            assert_eq!(m.metadata.id, id, "{name}");
            assert_eq!(m.metadata.recursion_desired, rd, "RD copied: {name}");
            assert!(!m.metadata.recursion_available, "RA never set: {name}");
            assert_eq!(m.metadata.op_code, OpCode::Query);
            assert_eq!(m.queries.len(), 1, "question echoed: {name}");
        }
    }
    // Below a GSLB name nothing exists.
    let m = exchange(&g, &Packet::query(1, "x.www.gslb.example.", T_A).bytes());
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_ttl(&m), 60);
}

// ---------------------------------------------------------------------------------------
// EDNS0 and truncation

#[test]
fn rfc6891_7_opt_echoed_only_when_query_had_opt() {
    let g = start();
    let without = exchange(&g, &plain_query("static.gslb.example.", RecordType::A));
    assert!(
        without.edns.is_none(),
        "no OPT in reply to a query without OPT"
    );
    assert_eq!(addrs(&without), ["192.0.2.1", "192.0.2.2"]);
    let nx = exchange(&g, &plain_query("nope.gslb.example.", RecordType::A));
    assert!(nx.edns.is_none());
    let refused = exchange(&g, &plain_query("example.com.", RecordType::A));
    assert!(refused.edns.is_none());

    let with = exchange(
        &g,
        &edns_query("static.gslb.example.", RecordType::A, 1232, 0),
    );
    let e = with
        .edns
        .as_ref()
        .expect("OPT in reply to a query with OPT");
    assert_eq!(e.version(), 0);
    assert_eq!(
        with.additionals
            .iter()
            .filter(|r| r.record_type() == RecordType::OPT)
            .count(),
        0,
        "OPT is not also an ordinary additional record"
    );
    let nx = exchange(
        &g,
        &edns_query("nope.gslb.example.", RecordType::A, 1232, 0),
    );
    assert!(nx.edns.is_some(), "OPT on negative answers too");
}

#[test]
fn rfc6891_6_2_5_payload_size_honoured_and_capped_at_1232() {
    let g = start();
    // A 4096-byte advertisement gets our 1232 cap back, and no datagram larger than it.
    let raw = g
        .raw_udp(
            &edns_query("big.big.example.", RecordType::TXT, 4096, 0),
            REPLY,
        )
        .expect("reply");
    assert!(raw.len() <= 1232, "datagram of {} bytes", raw.len());
    let m = decode(&raw);
    let payload = m.edns.as_ref().expect("OPT").max_payload();
    assert!(
        (512..=1232).contains(&payload),
        "advertised payload {payload}"
    );
    assert!(m.metadata.truncation, "4 KB of TXT does not fit in 1232");
    // Same cap on GSLB and negative answers.
    for name in ["www.gslb.example.", "nope.gslb.example."] {
        let m = exchange(&g, &edns_query(name, RecordType::A, 4096, 0));
        let payload = m.edns.as_ref().expect("OPT").max_payload();
        assert!((512..=1232).contains(&payload), "{name}: {payload}");
    }

    // ~900 bytes: too big for 512 (no EDNS), fits the advertised 1232.
    let no_edns = g
        .raw_udp(&plain_query("medium.big.example.", RecordType::TXT), REPLY)
        .expect("reply");
    assert!(no_edns.len() <= 512, "{} bytes without EDNS", no_edns.len());
    assert!(decode(&no_edns).metadata.truncation);
    let with = exchange(
        &g,
        &edns_query("medium.big.example.", RecordType::TXT, 1232, 0),
    );
    assert!(!with.metadata.truncation);
    assert_eq!(with.answers.len(), 4);
    // An advertisement below 512 counts as 512 (RFC 6891 6.2.5).
    let tiny = g
        .raw_udp(
            &edns_query("medium.big.example.", RecordType::TXT, 100, 0),
            REPLY,
        )
        .expect("reply");
    assert!(tiny.len() <= 512);
    assert!(decode(&tiny).metadata.truncation);
}

#[test]
fn rfc6891_6_1_3_badvers_for_edns_version_above_zero() {
    let g = start();
    for (version, name) in [
        (1u8, "static.gslb.example."),
        (2, "static.gslb.example."),
        (255, "static.gslb.example."),
        (1, "www.gslb.example."),
        (1, "nope.gslb.example."),
        (1, "example.com."),
    ] {
        let m = exchange(&g, &edns_query(name, RecordType::A, 1232, version));
        // hickory decodes extended rcode 16 as BADSIG (same number as BADVERS).
        assert_eq!(
            u16::from(m.metadata.response_code),
            16,
            "BADVERS for version {version} ({name})"
        );
        let e = m.edns.as_ref().expect("BADVERS travels in OPT");
        assert_eq!(e.version(), 0, "we say which version we speak");
        assert!(m.answers.is_empty());
    }
    // Raw bytes too: extended rcode 16 = header rcode 0 + OPT high byte 1.
    let raw = g
        .raw_udp(
            &Packet::query(0x0bad, "static.gslb.example.", T_A)
                .edns(1232, 1)
                .bytes(),
            REPLY,
        )
        .expect("reply");
    assert_eq!(raw[3] & 0x0f, 0, "low rcode bits");
    let opt_ttl_hi = raw[raw.len() - 6];
    assert_eq!(opt_ttl_hi, 1, "extended rcode high bits in OPT: {raw:02x?}");
}

#[tokio::test]
async fn rfc1035_4_2_1_tc_set_when_udp_answer_does_not_fit_and_tcp_carries_it_whole() {
    let g = start();
    let udp = exchange(&g, &plain_query("big.big.example.", RecordType::TXT));
    assert!(udp.metadata.truncation, "TC over UDP without EDNS");
    assert!(udp.answers.len() < 20);
    let udp_edns = g.query("big.big.example.", RecordType::TXT, None).await;
    assert!(udp_edns.metadata.truncation, "TC over UDP with 1232");

    let tcp = tcp_exchange(g.tcp, &plain_query("big.big.example.", RecordType::TXT)).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 20, "the whole RRset over TCP");
    let mut got: Vec<String> = tcp.answers.iter().flat_map(txt_strings).collect();
    got.sort();
    let want: Vec<String> = (0..20).map(txt200).collect();
    assert_eq!(got, want);
    let tcp_edns = g.query_tcp("big.big.example.", RecordType::TXT, None).await;
    assert!(!tcp_edns.metadata.truncation);
    assert_eq!(tcp_edns.answers.len(), 20);
}

// ---------------------------------------------------------------------------------------
// Names

#[test]
fn rfc4343_3_names_are_case_insensitive_and_question_case_is_echoed() {
    let g = start();
    for (qname, qtype, want) in [
        ("WwW.GsLb.ExAmPlE.", T_A, 1usize),
        ("STATIC.gslb.EXAMPLE.", T_A, 2),
        ("GsLb.ExAmPlE.", T_NS, 3),
        ("NoPe.GSLB.example.", T_A, 0),
    ] {
        let p = Packet::query(0x0c0c, qname, qtype).bytes();
        let raw = g.raw_udp(&p, REPLY).expect("reply");
        let qlen = wire_name(qname).len() + 4;
        assert_eq!(
            raw[12..12 + qlen],
            p[12..12 + qlen],
            "question echoed byte for byte for {qname}"
        );
        let m = decode(&raw);
        assert_eq!(m.queries[0].name().to_string(), qname);
        assert_eq!(
            m.answers
                .iter()
                .filter(|r| r.record_type().is_ip_addr() || r.record_type() == RecordType::NS)
                .count(),
            want,
            "{qname}"
        );
        assert!(m.metadata.authoritative, "{qname}");
    }
}

// ---------------------------------------------------------------------------------------
// CNAME

fn cname_target(r: &Record) -> String {
    match &r.data {
        RData::CNAME(c) => c.0.to_string(),
        o => panic!("not CNAME: {o:?}"),
    }
}

#[tokio::test]
async fn rfc1034_4_3_2_in_zone_cname_is_followed_to_static_target() {
    let g = start();
    let m = g.query("alias.gslb.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        types(&m.answers),
        [RecordType::CNAME, RecordType::A, RecordType::A]
    );
    assert_eq!(m.answers[0].name.to_string(), "alias.gslb.example.");
    assert_eq!(cname_target(&m.answers[0]), "static.gslb.example.");
    assert_eq!(m.answers[1].name.to_string(), "static.gslb.example.");
    assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
    let v6 = g.query("alias.gslb.example.", RecordType::AAAA, None).await;
    assert_eq!(addrs(&v6), ["2001:db8::1"]);
    // Asking for the CNAME itself does not chase it.
    let c = g
        .query("alias.gslb.example.", RecordType::CNAME, None)
        .await;
    assert_eq!(types(&c.answers), [RecordType::CNAME]);
    // A target without the type: the CNAME plus NODATA.
    let mx = g.query("alias.gslb.example.", RecordType::MX, None).await;
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&mx.answers), [RecordType::CNAME]);
    assert_eq!(soa_ttl(&mx), 60);
}

#[tokio::test]
async fn rfc1034_4_3_2_in_zone_cname_is_followed_to_gslb_target() {
    let g = start();
    let m = g.query("to-gslb.gslb.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&m.answers), [RecordType::CNAME, RecordType::A]);
    assert_eq!(cname_target(&m.answers[0]), "www.gslb.example.");
    assert_eq!(m.answers[1].name.to_string(), "www.gslb.example.");
    assert_eq!(m.answers[1].ttl, 30, "the service's TTL");
    assert_eq!(addrs(&m), ["192.0.2.10"]);
    let v6 = g
        .query("to-gslb.gslb.example.", RecordType::AAAA, None)
        .await;
    assert_eq!(addrs(&v6), ["2001:db8::10"]);
}

#[tokio::test]
async fn rfc1034_4_3_2_cname_chain_of_two_is_followed() {
    let g = start();
    let m = g.query("chain.gslb.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        types(&m.answers),
        [
            RecordType::CNAME,
            RecordType::CNAME,
            RecordType::A,
            RecordType::A
        ]
    );
    assert_eq!(cname_target(&m.answers[0]), "alias.gslb.example.");
    assert_eq!(cname_target(&m.answers[1]), "static.gslb.example.");
    assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
}

#[tokio::test]
async fn rfc1034_4_3_2_cname_out_of_our_zones_returns_just_the_cname() {
    let g = start();
    let m = g.query("out.gslb.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&m.answers), [RecordType::CNAME]);
    assert_eq!(cname_target(&m.answers[0]), "www.example.net.");
    assert!(m.authorities.is_empty(), "no SOA: the answer is the CNAME");
    assert!(m.metadata.authoritative);
}

#[tokio::test]
async fn rfc6604_2_1_dangling_in_zone_cname_is_nxdomain_with_the_cname() {
    let g = start();
    let m = g.query("dangling.gslb.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(types(&m.answers), [RecordType::CNAME]);
    assert_eq!(soa_ttl(&m), 60);
}

#[tokio::test]
async fn rfc1034_3_6_2_cname_loop_does_not_hang() {
    let g = start();
    let t0 = Instant::now();
    let m = g.query("loop1.gslb.example.", RecordType::A, None).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "answered promptly");
    assert!(
        matches!(
            m.metadata.response_code,
            ResponseCode::ServFail | ResponseCode::NoError
        ),
        "{:?}",
        m.metadata.response_code
    );
    assert!(
        !m.answers.is_empty() && m.answers.len() <= 16,
        "a bounded chain"
    );
    assert!(
        m.answers
            .iter()
            .all(|r| r.record_type() == RecordType::CNAME)
    );
    still_serving(&g).await;
}

// ---------------------------------------------------------------------------------------
// ANY

#[tokio::test]
async fn rfc8482_4_1_any_is_answered_with_one_rrset() {
    let g = start();
    // The apex has SOA, NS, TXT, MX and CAA: one RRset comes back.
    for name in ["gslb.example.", "static.gslb.example.", "www.gslb.example."] {
        let m = g.query(name, RecordType::ANY, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(!m.answers.is_empty(), "{name}: something is answered");
        let first = m.answers[0].record_type();
        assert!(
            m.answers
                .iter()
                .all(|r| r.record_type() == first && r.name == m.answers[0].name),
            "{name}: one RRset, got {:?}",
            types(&m.answers)
        );
    }
    let nx = g.query("nope.gslb.example.", RecordType::ANY, None).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}

// ---------------------------------------------------------------------------------------
// Every record type served from config

#[tokio::test]
async fn rfc1035_3_4_1_a_and_rfc3596_2_aaaa_records() {
    let g = start();
    let a = g.query("static.gslb.example.", RecordType::A, None).await;
    assert_eq!(addrs(&a), ["192.0.2.1", "192.0.2.2"]);
    assert!(a.answers.iter().all(|r| r.ttl == 300), "zone default TTL");
    let aaaa = g
        .query("static.gslb.example.", RecordType::AAAA, None)
        .await;
    assert_eq!(addrs(&aaaa), ["2001:db8::1"]);
    let sub = g.query("sub.gslb.example.", RecordType::A, None).await;
    assert_eq!(sub.answers[0].ttl, 42, "per-record TTL");
}

#[tokio::test]
async fn rfc1035_3_3_1_cname_record() {
    let g = start();
    let m = g
        .query("alias.gslb.example.", RecordType::CNAME, None)
        .await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(cname_target(&m.answers[0]), "static.gslb.example.");
    assert_eq!(m.answers[0].ttl, 300);
}

#[tokio::test]
async fn rfc1035_3_3_14_txt_records_with_several_and_split_strings() {
    let g = start();
    let m = g.query("gslb.example.", RecordType::TXT, None).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(txt_strings(&m.answers[0]), ["v=geode", "second string"]);
    let long = g.query("long.gslb.example.", RecordType::TXT, None).await;
    assert_eq!(long.answers.len(), 1);
    let strings = txt_strings(&long.answers[0]);
    assert_eq!(
        strings.iter().map(String::len).collect::<Vec<_>>(),
        [255, 45],
        "a long value is cut into 255-byte strings"
    );
    assert_eq!(strings.concat(), txt300());
}

#[tokio::test]
async fn rfc1035_3_3_9_mx_records() {
    let g = start();
    let m = g.query("gslb.example.", RecordType::MX, None).await;
    let mut mx: Vec<(u16, String)> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::MX(mx) => (mx.preference, mx.exchange.to_string()),
            o => panic!("not MX: {o:?}"),
        })
        .collect();
    mx.sort();
    assert_eq!(
        mx,
        [
            (10, "mail.gslb.example.".to_string()),
            (20, "mx.example.net.".to_string())
        ],
        "relative exchange resolved inside the zone"
    );
}

#[tokio::test]
async fn rfc2782_srv_record() {
    let g = start();
    let m = g
        .query("_sip._tcp.gslb.example.", RecordType::SRV, None)
        .await;
    assert_eq!(m.answers.len(), 1);
    match &m.answers[0].data {
        RData::SRV(s) => {
            assert_eq!(
                (s.priority, s.weight, s.port, s.target.to_string()),
                (10, 60, 5060, "sip.gslb.example.".to_string())
            );
        }
        o => panic!("not SRV: {o:?}"),
    }
}

#[tokio::test]
async fn rfc8659_4_caa_records() {
    let g = start();
    let m = g.query("gslb.example.", RecordType::CAA, None).await;
    let mut caa: Vec<(bool, String, String)> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::CAA(c) => (
                c.issuer_critical,
                c.tag.clone(),
                String::from_utf8_lossy(&c.value).into_owned(),
            ),
            o => panic!("not CAA: {o:?}"),
        })
        .collect();
    caa.sort();
    assert_eq!(
        caa,
        [
            (false, "issue".into(), "letsencrypt.org".into()),
            (true, "iodef".into(), "mailto:sec@gslb.example".into()),
        ]
    );
    let dig = g.dig(&["+short", "gslb.example", "CAA"]);
    assert!(
        dig.contains("0 issue \"letsencrypt.org\""),
        "dig shows the CAA: {dig}"
    );
}

#[tokio::test]
async fn rfc1035_3_3_11_ns_and_3_3_13_soa_records() {
    let g = start();
    let soa = g.query("gslb.example.", RecordType::SOA, None).await;
    assert_eq!(soa.answers.len(), 1);
    assert_eq!(
        soa.answers[0].ttl, 300,
        "SOA has the zone TTL when asked for"
    );
    match &soa.answers[0].data {
        RData::SOA(s) => {
            assert_eq!(s.mname.to_string(), "ns1.gslb.example.");
            assert_eq!(s.rname.to_string(), "hostmaster.gslb.example.");
            assert_eq!(
                (s.serial, s.refresh, s.retry, s.expire, s.minimum),
                (2026010101, 3600, 600, 1209600, 60)
            );
        }
        o => panic!("not SOA: {o:?}"),
    }
    // Defaults of refresh/retry/expire/minimum.
    let rev = g
        .query("2.0.192.in-addr.arpa.", RecordType::SOA, None)
        .await;
    match &rev.answers[0].data {
        RData::SOA(s) => assert_eq!(
            (s.serial, s.refresh, s.retry, s.expire, s.minimum),
            (1, 3600, 600, 1209600, 60)
        ),
        o => panic!("not SOA: {o:?}"),
    }
    let ns = g.query("gslb.example.", RecordType::NS, None).await;
    assert_eq!(ns.answers.len(), 3);
    assert!(ns.answers.iter().all(|r| r.ttl == 300));
    // NS below the apex is not a delegation point here: the name does not exist.
    let below = g.query("static.gslb.example.", RecordType::NS, None).await;
    assert!(below.answers.is_empty());
}

#[tokio::test]
async fn rfc1035_3_3_12_ptr_record() {
    let g = start();
    let m = g
        .query("53.2.0.192.in-addr.arpa.", RecordType::PTR, None)
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_string(), "ns1.gslb.example."),
        o => panic!("not PTR: {o:?}"),
    }
    assert_eq!(m.answers[0].ttl, 600);
    let nx = g
        .query("54.2.0.192.in-addr.arpa.", RecordType::PTR, None)
        .await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}

// ---------------------------------------------------------------------------------------
// TCP (RFC 7766)

#[tokio::test]
async fn rfc7766_6_2_1_1_pipelined_queries_on_one_connection() {
    let g = start();
    let names = [
        "static.gslb.example.",
        "www.gslb.example.",
        "nope.gslb.example.",
        "alias.gslb.example.",
        "gslb.example.",
        "a.b.gslb.example.",
        "mail.gslb.example.",
        "example.com.",
        "big.big.example.",
        "ns1.gslb.example.",
    ];
    let mut s = TcpStream::connect(g.tcp).await.unwrap();
    // All ten written back to back in one go, before reading anything.
    let mut burst = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let t = if i == 8 { T_TXT } else { T_A };
        let q = Packet::query(0x5000 + i as u16, name, t).bytes();
        burst.extend((q.len() as u16).to_be_bytes());
        burst.extend(q);
    }
    s.write_all(&burst).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..names.len() {
        let m = decode(&tcp_recv(&mut s).await);
        let i = usize::from(m.metadata.id - 0x5000);
        assert!(i < names.len(), "unknown ID {}", m.metadata.id);
        assert_eq!(
            m.queries[0].name().to_string(),
            names[i],
            "answer {i} is for its own question"
        );
        let want = match i {
            2 => ResponseCode::NXDomain,
            7 => ResponseCode::Refused,
            _ => ResponseCode::NoError,
        };
        assert_eq!(m.metadata.response_code, want, "{}", names[i]);
        if i == 8 {
            assert_eq!(m.answers.len(), 20, "no truncation over TCP");
        }
        seen.push(i);
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<_>>(),
        "every query answered once"
    );
    // The connection stays usable.
    tcp_send(
        &mut s,
        &Packet::query(0x6000, "static.gslb.example.", T_A).bytes(),
    )
    .await;
    let m = decode(&tcp_recv(&mut s).await);
    assert_eq!(m.metadata.id, 0x6000);
}

#[tokio::test]
async fn rfc7766_6_2_3_idle_connection_is_closed_by_the_server() {
    let g = Geode::start(&config("tcp_idle_timeout = \"1s\""));
    // One answered query, then silence.
    let mut s = TcpStream::connect(g.tcp).await.unwrap();
    tcp_send(
        &mut s,
        &Packet::query(1, "static.gslb.example.", T_A).bytes(),
    )
    .await;
    let _ = tcp_recv(&mut s).await;
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the server closes an idle connection within a few seconds");
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "EOF or reset on an idle connection, got {r:?}"
    );
    let idle = t0.elapsed();
    assert!(
        idle >= Duration::from_millis(800),
        "not closed before the idle timeout ({idle:?})"
    );
    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(g.tcp).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("silent connection closed");
    assert!(matches!(r, Ok(0) | Err(_)));
}

#[tokio::test]
async fn rfc7766_6_2_2_connection_cap_evicts_the_longest_idle() {
    let g = Geode::start(&config("tcp_max_connections = 4"));
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(g.tcp).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let m = tcp_exchange(
        g.tcp,
        &Packet::query(0x77, "static.gslb.example.", T_A).bytes(),
    )
    .await;
    assert_eq!(m.metadata.id, 0x77);
    assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
    assert!(t0.elapsed() < Duration::from_secs(2));
    // The oldest silent connections were closed to make room.
    let mut closed = 0;
    for s in silent.iter_mut() {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 16,
        "at most 4 connections kept, {closed} of 20 closed"
    );
    // UDP is unaffected.
    still_serving(&g).await;
}

#[tokio::test]
async fn rfc7766_6_2_3_a_client_that_sends_nothing_never_blocks_others() {
    let g = start();
    // Silent, half a length prefix, and a length prefix with half a message.
    let _silent = TcpStream::connect(g.tcp).await.unwrap();
    let mut half_len = TcpStream::connect(g.tcp).await.unwrap();
    half_len.write_all(&[0]).await.unwrap();
    let mut half_msg = TcpStream::connect(g.tcp).await.unwrap();
    let q = Packet::query(3, "static.gslb.example.", T_A).bytes();
    half_msg
        .write_all(&(q.len() as u16).to_be_bytes())
        .await
        .unwrap();
    half_msg.write_all(&q[..5]).await.unwrap();
    for i in 0..5u16 {
        let t0 = Instant::now();
        let m = tcp_exchange(
            g.tcp,
            &Packet::query(0x100 + i, "www.gslb.example.", T_A).bytes(),
        )
        .await;
        assert_eq!(m.metadata.id, 0x100 + i);
        assert_eq!(addrs(&m), ["192.0.2.10"]);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
    still_serving(&g).await;
    // The half-sent message completes and is answered.
    half_msg.write_all(&q[5..]).await.unwrap();
    let m = decode(&tcp_recv(&mut half_msg).await);
    assert_eq!(m.metadata.id, 3);
}

// ---------------------------------------------------------------------------------------
// dig end to end, shutdown

#[test]
fn dig_over_tcp_without_edns_and_nxdomain_status() {
    let g = start();
    let tcp = g.dig(&["+tcp", "big.big.example", "TXT"]);
    assert!(tcp.contains("status: NOERROR"), "{tcp}");
    assert!(tcp.contains("ANSWER: 20,"), "whole RRset over TCP: {tcp}");
    assert!(tcp.contains(" aa"), "AA flag: {tcp}");

    let noedns = g.dig(&["+noedns", "static.gslb.example", "A"]);
    assert!(noedns.contains("status: NOERROR"), "{noedns}");
    assert!(!noedns.contains("OPT PSEUDOSECTION"), "{noedns}");
    assert!(noedns.contains("192.0.2.1"), "{noedns}");
    let edns = g.dig(&["static.gslb.example", "A"]);
    assert!(edns.contains("OPT PSEUDOSECTION"), "{edns}");
    assert!(edns.contains("udp: 1232"), "{edns}");

    let nx = g.dig(&["nope.gslb.example", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains("flags: qr aa;"), "{nx}");
    assert!(
        nx.contains("gslb.example.\t\t60\tIN\tSOA\tns1.gslb.example. hostmaster.gslb.example."),
        "SOA with negative TTL in AUTHORITY: {nx}"
    );

    let truncated = g.dig(&["+noedns", "+ignore", "big.big.example", "TXT"]);
    assert!(truncated.contains(" tc"), "TC flag over UDP: {truncated}");

    let refused = g.dig(&["example.com", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
}

#[tokio::test]
async fn sigterm_exits_0() {
    let g = start();
    let m = exchange(&g, &plain_query("static.gslb.example.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Open TCP connections (one idle after a query, one silent) do not hold the exit up.
    let mut used = TcpStream::connect(g.tcp).await.unwrap();
    tcp_send(
        &mut used,
        &Packet::query(1, "static.gslb.example.", T_A).bytes(),
    )
    .await;
    let _ = tcp_recv(&mut used).await;
    let _silent = TcpStream::connect(g.tcp).await.unwrap();
    let t0 = Instant::now();
    let st = g.stop();
    assert!(t0.elapsed() < Duration::from_secs(5), "stopped promptly");
    assert!(st.success(), "SIGTERM exits 0: {st:?}");
}

#[test]
fn rfc6891_6_1_1_two_opt_records_are_formerr() {
    let g = start();
    let mut p = Packet::query(0x2222, "static.gslb.example.", T_A)
        .edns(1232, 0)
        .bytes();
    p[11] = 2;
    p.extend([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    let m = exchange(&g, &p);
    assert_eq!(m.metadata.id, 0x2222);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[tokio::test]
async fn rfc7766_6_2_3_a_client_that_never_reads_is_disconnected() {
    // Pipelined queries whose answers the client never reads: the server's writes block.
    // The connection must still be closed after the idle timeout, not held forever (one
    // such client per connection slot would otherwise lock TCP out for good).
    let g = Geode::start(&config("tcp_idle_timeout = \"1s\""));
    let mut s = TcpStream::connect(g.tcp).await.unwrap();
    let q = Packet::query(0x99, "big.big.example.", T_TXT).bytes();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend(&q);
    let burst: Vec<u8> = framed
        .iter()
        .copied()
        .cycle()
        .take(framed.len() * 200)
        .collect();
    let t0 = Instant::now();
    // Write until the server stops reading (its answers fill both socket buffers).
    loop {
        match tokio::time::timeout(Duration::from_millis(500), s.write_all(&burst)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => break,
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the server kept reading"
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // By now the server has given up and closed (a reset, as our queries sit unread on
    // its side). What we can still read is only what our kernel had buffered before; a
    // server still stuck in its write would resume and stream answers to every query.
    let buffered = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(6 << 20);
    let mut buf = vec![0u8; 65536];
    let mut total = 0usize;
    let t1 = Instant::now();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) => break "EOF".to_string(),
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => break e.to_string(),
            Err(_) => panic!("connection still open 4 s after the client stopped reading"),
        }
        assert!(
            total <= buffered + (64 << 10) && t1.elapsed() < Duration::from_secs(5),
            "the server is still answering a client that stopped reading ({total} bytes)"
        );
    };
    eprintln!("closed ({end}) after {total} buffered bytes");
    still_serving(&g).await;
}

// ---------------------------------------------------------------------------------------
// UDP bursts: the server takes queued queries in recvmmsg batches and answers each batch
// with one sendmmsg, so a burst exercises slots, per-slot reply buffers and addresses.

/// What one query of a burst must get back.
struct Expect {
    rcode: ResponseCode,
    /// The question echoed (None for FORMERR, whose question is unreadable).
    name: Option<&'static str>,
    addrs: &'static [&'static str],
}

/// Query `i` of a burst, with ID `id`: fast-path and ordinary-path answers, NXDOMAIN,
/// REFUSED and a cut question (FORMERR), half of them with EDNS.
fn burst_query(id: u16, i: usize) -> (Vec<u8>, Expect) {
    let edns = |p: Packet| if (i / 6) % 2 == 1 { p.edns(1232, 0) } else { p };
    let expect = |rcode, name, addrs| Expect { rcode, name, addrs };
    match i % 6 {
        0 => (
            edns(Packet::query(id, "static.gslb.example.", T_A)).bytes(),
            expect(
                ResponseCode::NoError,
                Some("static.gslb.example."),
                &["192.0.2.1", "192.0.2.2"],
            ),
        ),
        1 => (
            edns(Packet::query(id, "nothere.gslb.example.", T_A)).bytes(),
            expect(ResponseCode::NXDomain, Some("nothere.gslb.example."), &[]),
        ),
        2 => (
            edns(Packet::query(id, "www.gslb.example.", T_A)).bytes(),
            expect(
                ResponseCode::NoError,
                Some("www.gslb.example."),
                &["192.0.2.10"],
            ),
        ),
        3 => (
            edns(Packet::query(id, "example.com.", T_A)).bytes(),
            expect(ResponseCode::Refused, Some("example.com."), &[]),
        ),
        4 => (
            edns(Packet::query(id, "static.gslb.example.", 15)).bytes(),
            expect(ResponseCode::NoError, Some("static.gslb.example."), &[]),
        ),
        _ => {
            let mut cut = Packet::query(id, "static.gslb.example.", T_A).bytes();
            cut.truncate(cut.len() - 3);
            (cut, expect(ResponseCode::FormErr, None, &[]))
        }
    }
}

/// Datagrams that must get no reply: shorter than a header, and a response (QR set).
fn burst_dropped(id: u16) -> [Vec<u8>; 2] {
    let q = Packet::query(id, "static.gslb.example.", T_A);
    let short = q.bytes()[..5].to_vec();
    [short, q.qr().bytes()]
}

/// A client socket whose receive buffer holds a whole burst of replies.
fn burst_socket(addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    // Capped by net.core.rmem_max; the default (~200 KiB, ~250 small datagrams) already
    // holds a burst, and `burst_replies` reads while we send anyway.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into()).unwrap();
    s.into()
}

/// Reads replies on `sock` in a thread until `want` have come and then `SILENCE` passes
/// with no more (duplicates or strays would show up then), or `REPLY` passes with none.
fn burst_replies(
    sock: &UdpSocket,
    want: usize,
) -> std::thread::JoinHandle<Vec<(Vec<u8>, SocketAddr)>> {
    let sock = sock.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65535];
        loop {
            let wait = if got.len() >= want { SILENCE } else { REPLY };
            sock.set_read_timeout(Some(wait)).unwrap();
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => got.push((buf[..n].to_vec(), from)),
                Err(_) => return got,
            }
        }
    })
}

/// Every expected ID answered exactly once, from `server`, correctly; nothing else.
fn check_burst(
    who: &str,
    got: &[(Vec<u8>, SocketAddr)],
    server: SocketAddr,
    expect: &HashMap<u16, Expect>,
) {
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for (bytes, from) in got {
        assert_eq!(*from, server, "{who}: reply from the address it queried");
        let m = decode(bytes);
        let id = m.metadata.id;
        let e = expect.get(&id).unwrap_or_else(|| {
            panic!("{who}: reply to ID {id:#06x}, which is not this client's or must get none")
        });
        *seen.entry(id).or_default() += 1;
        assert_eq!(m.metadata.message_type, MessageType::Response, "{who}");
        assert_eq!(
            m.metadata.response_code, e.rcode,
            "{who}: ID {id:#06x}: {m:?}"
        );
        if let Some(name) = e.name {
            assert_eq!(m.queries.len(), 1, "{who}: ID {id:#06x}: {m:?}");
            assert_eq!(m.queries[0].name().to_string(), name, "{who}: ID {id:#06x}");
        }
        assert_eq!(addrs(&m), e.addrs, "{who}: ID {id:#06x}");
    }
    let mut missing: Vec<u16> = expect
        .keys()
        .filter(|id| !seen.contains_key(id))
        .copied()
        .collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "{who}: {} of {} queries unanswered: {missing:04x?}",
        missing.len(),
        expect.len()
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{who}: answered more than once: {twice:x?}"
    );
}

#[test]
fn udp_burst_sent_without_reading_gets_every_answer_exactly_once() {
    let g = start();
    let sock = burst_socket("127.0.0.1:0");
    let mut expect = HashMap::new();
    let mut burst = Vec::new();
    for i in 0..200 {
        let id = 0x1000 + i as u16;
        let (q, e) = burst_query(id, i);
        burst.push(q);
        expect.insert(id, e);
        if i % 25 == 24 {
            burst.extend(burst_dropped(0x8000 + i as u16));
        }
    }
    let reader = burst_replies(&sock, expect.len());
    for q in &burst {
        sock.send_to(q, g.udp).unwrap();
    }
    let got = reader.join().unwrap();
    check_burst("one client", &got, g.udp, &expect);
}

/// The `listening on udp ADDR` address whose text starts with `prefix`.
fn udp_listener(g: &Geode, prefix: &str) -> SocketAddr {
    g.logs()
        .lines()
        .filter_map(|l| l.split("listening on udp ").nth(1))
        .find(|a| a.starts_with(prefix))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no udp listener on {prefix}: {}", g.logs()))
}

#[test]
fn udp_interleaved_bursts_from_several_clients_each_get_their_own_replies() {
    // Two IPv4 clients at different addresses on one socket, and (when the host has IPv6
    // loopback) two IPv6 clients on a [::1] socket: a batch mixes sources, and each reply
    // must go back to the address its query came from.
    let v6 = UdpSocket::bind("[::1]:0").is_ok();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("geode.toml");
    std::fs::write(&path, config("")).unwrap();
    let extra: &[&str] = if v6 {
        &["--dns-listen", "[::1]:0"]
    } else {
        &[]
    };
    let g = Geode::start_at(dir, &path, extra);
    let mut clients = vec![
        ("127.0.0.1", burst_socket("127.0.0.1:0"), g.udp),
        ("127.0.0.2", burst_socket("127.0.0.2:0"), g.udp),
    ];
    if v6 {
        let server6 = udp_listener(&g, "[::1]:");
        clients.push(("[::1] first", burst_socket("[::1]:0"), server6));
        clients.push(("[::1] second", burst_socket("[::1]:0"), server6));
    } else {
        eprintln!("no IPv6 loopback: IPv4 clients only");
    }
    const PER_CLIENT: usize = 100;
    let mut expects: Vec<HashMap<u16, Expect>> = Vec::new();
    let mut bursts: Vec<Vec<Vec<u8>>> = Vec::new();
    for c in 0..clients.len() {
        let (mut expect, mut burst) = (HashMap::new(), Vec::new());
        for i in 0..PER_CLIENT {
            // IDs carry the client, so a reply sent to the wrong client is caught.
            let id = ((c as u16) << 12) | i as u16;
            let (q, e) = burst_query(id, i);
            burst.push(vec![q]);
            expect.insert(id, e);
            if i % 25 == 24 {
                burst[i].extend(burst_dropped(0x8000 | id));
            }
        }
        expects.push(expect);
        bursts.push(burst.into_iter().flatten().collect());
    }
    let readers: Vec<_> = clients
        .iter()
        .zip(&expects)
        .map(|((_, sock, _), e)| burst_replies(sock, e.len()))
        .collect();
    // Round robin, packet by packet, no reads in between.
    let longest = bursts.iter().map(Vec::len).max().unwrap();
    for k in 0..longest {
        for ((_, sock, server), burst) in clients.iter().zip(&bursts) {
            if let Some(q) = burst.get(k) {
                sock.send_to(q, server).unwrap();
            }
        }
    }
    for (((who, _, server), reader), expect) in clients.iter().zip(readers).zip(&expects) {
        let got = reader.join().unwrap();
        check_burst(who, &got, *server, expect);
    }
}

// ---------------------------------------------------------------------------------------
// Wire details: malformed EDNS, truncation, zone transfers, ANY at an alias, ECS source 0,
// name compression (each of these was once wrong; every case runs through the real binary).

/// Appends an option to the OPT record that ends `packet` (built with `Packet::edns`).
fn with_option(mut packet: Vec<u8>, code: u16, body: &[u8]) -> Vec<u8> {
    let n = packet.len();
    let rdlen = u16::from_be_bytes([packet[n - 2], packet[n - 1]]) + 4 + body.len() as u16;
    packet[n - 2..].copy_from_slice(&rdlen.to_be_bytes());
    packet.extend(code.to_be_bytes());
    packet.extend((body.len() as u16).to_be_bytes());
    packet.extend(body);
    packet
}

/// A query whose OPT carries one option claiming 7 bytes where only 3 follow: the option
/// runs past the OPT RDATA.
fn bad_option_query(id: u16) -> Vec<u8> {
    let mut p = Packet::query(id, "static.gslb.example.", T_A)
        .edns(1232, 0)
        .bytes();
    let n = p.len();
    p[n - 2..].copy_from_slice(&7u16.to_be_bytes());
    p.extend([0, 10, 0, 7, b'a', b'b', b'c']);
    p
}

/// Length of the question section of a query with one question.
fn question_len(query: &[u8]) -> usize {
    let mut at = 12;
    while query[at] != 0 {
        at += 1 + usize::from(query[at]);
    }
    at + 1 + 4 - 12
}

fn counts(raw: &[u8]) -> [u16; 4] {
    [4, 6, 8, 10].map(|i| u16::from_be_bytes([raw[i], raw[i + 1]]))
}

#[tokio::test]
async fn malformed_edns_options_are_counted_and_logged_at_a_bounded_rate() {
    let g = start();
    let logged_before = g.logs().lines().count();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(REPLY)).unwrap();
    // One at a time, each reply awaited: the kernel drops nothing, so every packet must
    // be counted exactly once.
    const N: usize = 2000;
    let mut rcodes = Vec::with_capacity(N);
    let mut buf = [0u8; 4096];
    for i in 0..N {
        let q = bad_option_query(i as u16);
        sock.send_to(&q, g.udp).unwrap();
        let n = sock
            .recv(&mut buf)
            .expect("a reply to each malformed query");
        assert!(n >= 12 && buf[..2] == q[..2], "reply to query {i}");
        rcodes.push(buf[3] & 0x0f);
    }
    // Replies come after the server is done with a packet, logging included; a scrape
    // more gives the log reader time to catch up with the pipe.
    let (_, text) = g.http_get("/metrics").await;
    let logged = g.logs().lines().count() - logged_before;
    assert!(
        logged < 20,
        "{logged} log lines for {N} malformed queries:\n{}",
        g.logs()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let counted: f64 = text
        .lines()
        .find(|l| l.starts_with("geode_dns_malformed_total{reason=\"edns_option\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no edns_option sample in /metrics:\n{text}"));
    assert_eq!(counted, N as f64);
    // RFC 6891 6.1.2 lets a responder reject a malformed OPT; the option cannot be read.
    assert!(rcodes.iter().all(|&r| r == 1), "FORMERR for each");
    // Over TCP too, and the server still answers.
    let m = tcp_exchange(g.tcp, &bad_option_query(7)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    still_serving(&g).await;
}

/// RFC 6891 7: a truncated reply is the header, the question and (when the query had
/// one) the OPT record; nothing of the records that did not fit.
fn assert_minimal_tc(what: &str, query: &[u8], raw: &[u8], opt: bool) {
    let qlen = question_len(query);
    assert!(raw[2] & 0x02 != 0, "{what}: TC set: {raw:02x?}");
    assert_eq!(counts(raw), [1, 0, 0, u16::from(opt)], "{what}: counts");
    assert_eq!(raw[12..12 + qlen], query[12..12 + qlen], "{what}: question");
    let rest = &raw[12 + qlen..];
    if opt {
        assert!(rest.len() >= 11 && rest[0] == 0, "{what}: OPT: {rest:02x?}");
        assert_eq!(
            u16::from_be_bytes([rest[1], rest[2]]),
            41,
            "{what}: OPT type"
        );
        let rdlen = usize::from(u16::from_be_bytes([rest[9], rest[10]]));
        assert_eq!(
            rest.len(),
            11 + rdlen,
            "{what}: nothing after the OPT record"
        );
        assert!(decode(raw).edns.is_some(), "{what}");
    } else {
        assert!(
            rest.is_empty(),
            "{what}: nothing after the question: {rest:02x?}"
        );
    }
}

#[tokio::test]
async fn rfc6891_7_truncated_udp_reply_is_header_question_and_opt() {
    let g = start();
    // The ordinary path: 4 KB of static TXT, without EDNS (512) and with 1232.
    for (what, q, opt) in [
        (
            "TXT, no EDNS",
            plain_query("big.big.example.", RecordType::TXT),
            false,
        ),
        (
            "TXT, EDNS 1232",
            edns_query("big.big.example.", RecordType::TXT, 1232, 0),
            true,
        ),
    ] {
        let raw = g.raw_udp(&q, REPLY).expect("reply");
        assert_minimal_tc(what, &q, &raw, opt);
    }
    // The fast path: 16 AAAA and an ECS option for a /128 are 518 bytes, over 512.
    let mut ecs = vec![0, 2, 128, 0];
    ecs.extend(
        "2001:db8::77"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    let q = with_option(
        Packet::query(0x5151, "many.gslb.example.", 28)
            .edns(512, 0)
            .bytes(),
        8,
        &ecs,
    );
    let raw = g.raw_udp(&q, REPLY).expect("reply");
    assert_minimal_tc("GSLB AAAA, EDNS 512 + ECS", &q, &raw, true);
    // Without the ECS option the same answer fits in 512, whole.
    let q = Packet::query(0x5152, "many.gslb.example.", 28)
        .edns(512, 0)
        .bytes();
    let m = exchange(&g, &q);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 16);
    // TCP carries both whole.
    let tcp = tcp_exchange(g.tcp, &plain_query("big.big.example.", RecordType::TXT)).await;
    assert_eq!(tcp.answers.len(), 20);
}

#[tokio::test]
async fn rfc5936_zone_transfers_are_refused_for_every_name_over_udp_and_tcp() {
    let g = start();
    for name in [
        "gslb.example.",
        "static.gslb.example.",
        "www.gslb.example.",
        "nope.gslb.example.",
        "x.www.gslb.example.",
    ] {
        for (t, tname) in [(252u16, "AXFR"), (251, "IXFR")] {
            for opt in [None, Some((1232, 0))] {
                let mut p = Packet::query(0x7777, name, t);
                p.opt = opt;
                let what = format!("{tname} {name} {opt:?}");
                let m = exchange(&g, &p.bytes());
                assert_eq!(
                    m.metadata.response_code,
                    ResponseCode::Refused,
                    "udp {what}"
                );
                assert!(m.answers.is_empty() && m.authorities.is_empty(), "{what}");
                let m = tcp_exchange(g.tcp, &p.bytes()).await;
                assert_eq!(
                    m.metadata.response_code,
                    ResponseCode::Refused,
                    "tcp {what}"
                );
            }
        }
    }
}

#[tokio::test]
async fn rfc1034_4_3_2_any_at_an_alias_is_answered_with_the_cname_alone() {
    let g = start();
    for (name, target) in [
        ("alias.gslb.example.", "static.gslb.example."),
        ("to-gslb.gslb.example.", "www.gslb.example."),
        ("chain.gslb.example.", "alias.gslb.example."),
    ] {
        for m in [
            g.query(name, RecordType::ANY, None).await,
            g.query_tcp(name, RecordType::ANY, None).await,
        ] {
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert_eq!(types(&m.answers), [RecordType::CNAME], "{name}: {m:?}");
            assert_eq!(m.answers[0].name.to_string(), name);
            assert_eq!(cname_target(&m.answers[0]), target);
        }
    }
}

#[tokio::test]
async fn rfc7871_7_1_2_source_prefix_zero_is_answered_with_scope_zero() {
    // With a GeoIP database the resolver's own address (127.0.0.1) falls in a network
    // with a prefix (a /8 without data), which must not leak into the scope of an
    // opted-out query for a name whose answer depends on the client.
    let db = crate::harness::maxmind_city();
    let g = Geode::start(&config(&format!("geoip_db = \"{}\"", db.display())));
    for ecs in ["0.0.0.0/0", "::/0"] {
        for (name, t) in [
            ("geo.gslb.example.", RecordType::A),
            ("geo.gslb.example.", RecordType::AAAA),
            ("static.gslb.example.", RecordType::A),
        ] {
            for (proto, m) in [
                ("udp", g.query(name, t, Some(ecs)).await),
                ("tcp", g.query_tcp(name, t, Some(ecs)).await),
            ] {
                assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                assert_eq!(
                    crate::harness::ecs_of(&m),
                    Some((0, 0)),
                    "{proto} {name} {t} ECS {ecs}"
                );
            }
        }
    }
}

/// Every answer owner in `raw` is a pointer to the question name (offset 12), and the
/// message is exactly header, question, answers and `tail` bytes (OPT, SOA).
fn assert_owners_are_pointers(what: &str, query: &[u8], raw: &[u8]) {
    let mut at = 12 + question_len(query);
    let [_, an, ..] = counts(raw);
    assert!(an > 0, "{what}: answers");
    for i in 0..an {
        assert_eq!(
            raw[at..at + 2],
            [0xC0, 0x0C],
            "{what}: answer {i} owner is a pointer to the question: {raw:02x?}"
        );
        let rdlen = usize::from(u16::from_be_bytes([raw[at + 10], raw[at + 11]]));
        at += 12 + rdlen;
    }
}

#[tokio::test]
async fn rfc1035_4_1_4_answer_owners_are_compressed_to_the_question() {
    let g = start();
    let mut ecs24 = vec![0, 1, 24, 0];
    ecs24.extend([81, 2, 69]);
    let cases = [
        // Fast path (GSLB), with ECS and in mixed case; ordinary path (static records).
        (
            "GSLB A + ECS",
            with_option(
                Packet::query(1, "www.gslb.example.", T_A)
                    .edns(1232, 0)
                    .bytes(),
                8,
                &ecs24,
            ),
        ),
        (
            "GSLB AAAA x16",
            Packet::query(2, "MaNy.GsLb.ExAmPlE.", 28)
                .edns(1232, 0)
                .bytes(),
        ),
        (
            "static A x2",
            Packet::query(3, "static.gslb.example.", T_A).bytes(),
        ),
        (
            "static TXT",
            Packet::query(4, "gslb.example.", T_TXT).bytes(),
        ),
    ];
    for (what, q) in &cases {
        let raw = g.raw_udp(q, REPLY).expect("reply");
        assert_owners_are_pointers(&format!("udp {what}"), q, &raw);
        let mut s = TcpStream::connect(g.tcp).await.unwrap();
        tcp_send(&mut s, q).await;
        let raw = tcp_recv(&mut s).await;
        assert_owners_are_pointers(&format!("tcp {what}"), q, &raw);
    }
    // One answer and an ECS option in 12 + 22 + 16 + 22 bytes, as gdnsd sends it.
    let raw = g.raw_udp(&cases[0].1, REPLY).expect("reply");
    assert_eq!(raw.len(), 12 + 22 + 16 + 22, "{raw:02x?}");
}
