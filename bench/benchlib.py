"""Shared helpers for the bench/ scripts (stdlib only).

- REGIONS: read from bench/geode-bench.toml, the single source of truth for region
  names, coordinates and addresses (gdnsd's config is written to match it).
- DNS wire encoding of queries with an optional EDNS Client Subnet option (RFC 7871),
  and a minimal response parser (header, answers of type A/AAAA, ECS scope).
- great-circle distance, and the "expected region" used to sanity-check answers.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import struct

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_TOML = os.path.join(HERE, "geode-bench.toml")

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}
QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def load_regions(path: str = BENCH_TOML) -> dict:
    """{region: {"lat":..., "lon":..., "v4": [...], "v6": [...]}} from the geode bench config."""
    if tomllib is None:
        raise SystemExit("python3 >= 3.11 (tomllib) is needed to read " + path)
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    out = {}
    for name, r in cfg["regions"].items():
        v4 = [e["address"] for e in r["endpoints"] if ":" not in e["address"]]
        v6 = [e["address"] for e in r["endpoints"] if ":" in e["address"]]
        out[name] = {"lat": r["location"]["lat"], "lon": r["location"]["lon"], "v4": v4, "v6": v6}
    return out


def haversine_km(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, a)))


def rank_regions(regions: dict, lat: float, lon: float):
    """[(km, region)] nearest first."""
    return sorted((haversine_km(lat, lon, r["lat"], r["lon"]), n) for n, r in regions.items())


def expected_regions(regions: dict, lat: float, lon: float, tie: float = 0.10):
    """The regions a distance-ranking GSLB may answer with: the nearest, plus any within
    `tie` (10%, geode's tie set) of it. gdnsd always picks the strict nearest, which is
    always in this set."""
    ranked = rank_regions(regions, lat, lon)
    best = ranked[0][0]
    return [n for km, n in ranked if km <= best * (1 + tie) + 1e-9]


def address_region(regions: dict) -> dict:
    """{address: region} for every configured endpoint address."""
    out = {}
    for n, r in regions.items():
        for a in r["v4"] + r["v6"]:
            out[str(ipaddress.ip_address(a))] = n
    return out


# ---------------------------------------------------------------- wire encoding


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode("ascii")
            out.append(len(b))
            out += b
    out.append(0)
    return bytes(out)


def ecs_option(net: ipaddress._BaseNetwork) -> bytes:
    """EDNS Client Subnet option (code 8) for `net`: family, source prefix, scope 0,
    address truncated to the prefix's bytes (RFC 7871 6)."""
    fam = 1 if net.version == 4 else 2
    plen = net.prefixlen
    addr = net.network_address.packed[: (plen + 7) // 8]
    data = struct.pack("!HBB", fam, plen, 0) + addr
    return struct.pack("!HH", 8, len(data)) + data


def build_query(qname: str, qtype: str, ecs=None, edns: bool = True, qid: int = 0,
                rd: bool = False, payload: int = 1232) -> bytes:
    """One DNS query message. `ecs` is an ip_network or None; `edns=False` sends no OPT."""
    flags = 0x0100 if rd else 0
    arcount = 1 if edns else 0
    msg = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, arcount)
    msg += encode_name(qname) + struct.pack("!HH", QTYPES[qtype], 1)
    if edns:
        opts = ecs_option(ecs) if ecs is not None else b""
        # root name, TYPE OPT, CLASS = payload size, TTL = ext-rcode/version/flags = 0
        msg += b"\x00" + struct.pack("!HHIH", 41, payload, 0, len(opts)) + opts
    return msg


# ---------------------------------------------------------------- wire parsing


def _skip_name(buf: bytes, off: int) -> int:
    while True:
        n = buf[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def _read_name(buf: bytes, off: int) -> str:
    """The name at `off` (no compression: question names), labels as sent."""
    labels = []
    while buf[off] != 0 and buf[off] & 0xC0 == 0:
        labels.append(buf[off + 1:off + 1 + buf[off]].decode("ascii", "replace"))
        off += 1 + buf[off]
    return ".".join(labels) + "."


def parse_response(buf: bytes) -> dict:
    """{id, rcode, aa, tc, qname, answers: [(type, value)], ecs_scope, ecs_source}"""
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", buf[:12])
    off = 12
    qname = None
    for _ in range(qd):
        if qname is None:
            qname = _read_name(buf, off)
        off = _skip_name(buf, off) + 4
    answers = []
    ecs_scope = ecs_source = None
    ext_rcode = 0
    for section, count in (("an", an), ("ns", ns), ("ar", ar)):
        for _ in range(count):
            off = _skip_name(buf, off)
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
            off += 10
            rdata = buf[off:off + rdlen]
            off += rdlen
            if section == "an":
                if rtype == 1:
                    answers.append(("A", socket.inet_ntop(socket.AF_INET, rdata)))
                elif rtype == 28:
                    answers.append(("AAAA", socket.inet_ntop(socket.AF_INET6, rdata)))
                else:
                    answers.append((QTYPE_NAMES.get(rtype, str(rtype)), rdata.hex()))
            if rtype == 41:
                ext_rcode = ttl >> 24
                o = 0
                while o + 4 <= len(rdata):
                    code, olen = struct.unpack("!HH", rdata[o:o + 4])
                    if code == 8 and olen >= 4:
                        _fam, ecs_source, ecs_scope = struct.unpack("!HBB", rdata[o + 4:o + 8])
                    o += 4 + olen
    rcode = (ext_rcode << 4) | (flags & 0xF)
    return {"id": qid, "qname": qname, "rcode": RCODES.get(rcode, str(rcode)), "aa": bool(flags & 0x0400),
            "tc": bool(flags & 0x0200), "answers": answers, "ecs_scope": ecs_scope,
            "ecs_source": ecs_source}


def udp_query(server: str, port: int, msg: bytes, timeout: float = 1.0, sock=None) -> dict | None:
    """Sends `msg` over UDP and returns the parsed response, or None on timeout."""
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        qid = int.from_bytes(os.urandom(2), "big")
        msg = struct.pack("!H", qid) + msg[2:]
        sock.sendto(msg, (server, port))
        while True:
            data, _ = sock.recvfrom(65535)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                return parse_response(data)
    except socket.timeout:
        return None
    finally:
        if own:
            sock.close()
