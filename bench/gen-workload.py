#!/usr/bin/env python3
"""Writes dnsperf input in the binary TCP-stream format (`dnsperf -B`: each DNS message
prefixed by its 2-byte big-endian length) with per-query EDNS Client Subnet.

Workloads (deterministic for a given --seed and GeoIP database):

  geo   A queries for one GSLB name; the ECS /24 rotates through 3,000 distinct /24s,
        1,000 each in North America, Europe and Asia, drawn from real GeoLite2-City
        networks (each /24 lies inside one GeoIP network of prefix <= 24 that has a
        country and coordinates, so it geolocates on any server using that database).
  mix   the "real-world" mix:
          ~70% GSLB A/AAAA (about 65/35), ECS from NA/EU/AS/SA/OC/AF; 80% IPv4 /24,
               20% IPv6 /56 (also real GeoLite2 networks); 10% of these names in
               0x20 mixed case, as some resolvers send them;
          ~15% static names: NS, MX, TXT of the apex and A of ns1 (half with ECS);
          ~10% NXDOMAIN names (random labels in the zone, some two labels deep);
           ~5% GSLB A queries without EDNS (client = the source address, loopback).
  realistic  traffic where the answer cache misses (issue 21): a population of
        --population (default 1,000,000) distinct client subnets, 80% IPv4 /24 and 20%
        IPv6 /56, drawn at random from the address space and kept when they lie inside
        one GeoLite2-City network that has a country and coordinates (so the population
        follows the database's address space: North America and Europe weigh most).
        Each query picks a subnet by Zipf popularity (rank k has weight 1/k^s, --zipf,
        default s = 1; ranks are in random order, not by place), so a few subnets are
        hot and most are seen once or never. Per query:
          83% GSLB with ECS: www/api/cdn.gslb.example. (50/30/20), A 70% / AAAA 30%;
          10% GSLB with EDNS but no ECS (the client is the source address: loopback);
           2% GSLB without EDNS;
           5% NXDOMAIN (random labels, with ECS from the same population).
        Default 1,000,000 queries (--count).

Usage:
  gen-workload.py --db bench/data/GeoLite2-City.mmdb --workload geo --out bench/data/geo.bin
  gen-workload.py --db ... --workload mix --count 20000 --out bench/data/mix.bin --text bench/data/mix.txt
  gen-workload.py --db ... --workload geo --text -          # text corpus only, to stdout
  gen-workload.py --db ... --workload realistic --out bench/data/realistic.bin --text bench/data/realistic.txt

The text corpus has one tab-separated line per query:
  qname qtype ecs|-|noedns kind continent country geoip_prefix expected_regions
(`-` = EDNS without ECS; expected_regions = nearest region by great-circle distance
plus any within 10% of it, i.e. what a distance-ranking GSLB may answer).

Needs the `maxminddb` Python package (pip install maxminddb) to read the database.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import itertools
import random
import socket
import struct
import sys

import benchlib

ZONE = "gslb.example."
GSLB = "www.gslb.example."

# Private, shared, documentation and other special-purpose IPv4 space (never sampled).
V4_SPECIAL = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3")]
# IPv6 sampling space: the RIR /12s (the database decides the continent, not the RIR).
V6_BLOCKS = [ipaddress.ip_network(n) for n in (
    "2400::/12", "2600::/12", "2800::/12", "2a00::/12", "2c00::/12")]


def open_db(path: str):
    try:
        import maxminddb
    except ModuleNotFoundError:
        sys.exit("gen-workload: the Python package `maxminddb` is missing: python3 -m pip install maxminddb")
    return maxminddb.open_database(path)


def usable(rec) -> tuple | None:
    """(continent, country, lat, lon) when the record geolocates, else None."""
    if not rec:
        return None
    cont = (rec.get("continent") or {}).get("code")
    country = (rec.get("country") or {}).get("iso_code")
    loc = rec.get("location") or {}
    if not cont or not country or "latitude" not in loc or "longitude" not in loc:
        return None
    return cont, country, loc["latitude"], loc["longitude"]


def sample_nets(reader, rng: random.Random, quotas: dict, version: int, plen: int,
                max_tries: int = 5_000_000) -> list:
    """Distinct /plen client subnets, `quotas[continent]` of each, from random addresses
    whose GeoIP network (prefix <= plen) geolocates. Returns dicts, in draw order."""
    need = dict(quotas)
    seen = set()
    out = []
    tries = 0
    while any(v > 0 for v in need.values()):
        tries += 1
        if tries > max_tries:
            sys.exit(f"gen-workload: could not find enough IPv{version} networks: still need {need}")
        if version == 4:
            addr = ipaddress.IPv4Address(rng.getrandbits(32))
            net = ipaddress.IPv4Network((int(addr) >> (32 - plen) << (32 - plen), plen))
            if any(net.subnet_of(s) for s in V4_SPECIAL):
                continue
        else:
            block = V6_BLOCKS[rng.randrange(len(V6_BLOCKS))]
            host_bits = 128 - block.prefixlen
            addr = ipaddress.IPv6Address(int(block.network_address) | rng.getrandbits(host_bits))
            net = ipaddress.IPv6Network((int(addr) >> (128 - plen) << (128 - plen), plen))
        if net in seen:
            continue
        rec, geo_plen = reader.get_with_prefix_len(str(net.network_address))
        if geo_plen > plen:
            continue  # the subnet spans several GeoIP networks
        u = usable(rec)
        if u is None or need.get(u[0], 0) <= 0:
            continue
        seen.add(net)
        need[u[0]] -= 1
        out.append({"net": net, "continent": u[0], "country": u[1], "lat": u[2],
                    "lon": u[3], "geo_plen": geo_plen})
    return out


def sample_population(reader, rng: random.Random, size: int, v6_share: float = 0.20) -> list:
    """`size` distinct client subnets for the realistic workload: IPv4 /24s and IPv6 /56s
    (`v6_share` of them), each inside one GeoIP network (prefix <= the subnet's) that has a
    country and coordinates. Works on integers, and remembers every GeoIP network it has
    looked up (usable or not), so that most draws cost a few dict lookups instead of a
    database lookup: a million subnets take about a minute. Returns tuples
    (ecs text, ECS option bytes, continent, country, GeoIP prefix, lat, lon), shuffled."""
    special24 = [(int(n.network_address) >> 8, int(n.broadcast_address) >> 8) for n in V4_SPECIAL]
    v6_blocks = [(int(b.network_address), 128 - b.prefixlen) for b in V6_BLOCKS]

    def draw(version: int, want: int) -> list:
        bits, plen = (32, 24) if version == 4 else (128, 56)
        memo = {}        # (prefix, address >> (bits - prefix)) -> geo tuple, or None when unusable
        plens = []       # the prefixes present in memo, ascending
        seen = set()
        out = []
        tries = 0
        while len(out) < want:
            tries += 1
            if tries > 400 * want + 1_000_000:
                sys.exit(f"gen-workload: only {len(out)} of {want} IPv{version} subnets found")
            if version == 4:
                sub = rng.getrandbits(24)
                if any(lo <= sub <= hi for lo, hi in special24):
                    continue
                addr = sub << 8
            else:
                base, host_bits = v6_blocks[rng.randrange(len(v6_blocks))]
                addr = (base | rng.getrandbits(host_bits)) >> 72 << 72
                sub = addr >> 72
            if sub in seen:
                continue
            geo = False  # not known yet
            for p in plens:
                k = (p, addr >> (bits - p))
                if k in memo:
                    geo = memo[k]
                    break
            if geo is False:
                packed = addr.to_bytes(bits // 8, "big")
                text = socket.inet_ntoa(packed) if version == 4 else socket.inet_ntop(socket.AF_INET6, packed)
                rec, p = reader.get_with_prefix_len(text)
                u = usable(rec)
                if p > plen:
                    p, geo = plen, None  # the subnet spans several GeoIP networks
                else:
                    geo = None if u is None else u + (p,)
                k = (p, addr >> (bits - p))
                memo[k] = geo
                if p not in plens:
                    plens.append(p)
                    plens.sort()
            if geo is None:
                continue
            seen.add(sub)
            packed = addr.to_bytes(bits // 8, "big")
            nbytes = plen // 8
            if version == 4:
                ecs_text = f"{socket.inet_ntoa(packed)}/24"
                data = struct.pack("!HBB", 1, plen, 0) + packed[:nbytes]
            else:
                ecs_text = f"{socket.inet_ntop(socket.AF_INET6, packed)}/56"
                data = struct.pack("!HBB", 2, plen, 0) + packed[:nbytes]
            opt = struct.pack("!HH", 8, len(data)) + data
            cont, country, lat, lon, geo_plen = geo
            out.append((ecs_text, opt, cont, country, geo_plen, lat, lon))
        return out

    n6 = int(size * v6_share)
    pop = draw(4, size - n6) + draw(6, n6)
    rng.shuffle(pop)  # popularity rank is independent of place and family
    return pop


def gen_realistic(reader, rng, w: "Writer", count: int, population: int, zipf_s: float):
    pop = sample_population(reader, rng, population)
    cum = list(itertools.accumulate(1.0 / (k + 1) ** zipf_s for k in range(len(pop))))
    picks = rng.choices(range(len(pop)), cum_weights=cum, k=count)
    names = ["www.gslb.example.", "api.gslb.example.", "cdn.gslb.example."]
    wire = {n: benchlib.encode_name(n) for n in names}
    expected = {}
    # Built here rather than with benchlib.build_query (same bytes): a million messages
    # from precomputed names and ECS options take seconds instead of a minute.
    opt_hdr = lambda opts: b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(opts)) + opts
    tail = {t: struct.pack("!HH", benchlib.QTYPES[t], 1) for t in ("A", "AAAA")}
    header = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 1)
    header_noedns = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0)
    out = w.bin
    text = w.text
    for i in picks:
        r = rng.random()
        qtype = "A" if rng.random() < 0.70 else "AAAA"
        x = rng.random()
        name = names[0] if x < 0.5 else names[1] if x < 0.8 else names[2]
        if r < 0.05:
            label = f"nx-{rng.getrandbits(32):08x}"
            name = f"{label}.{ZONE}"
            kind, ecs = "nxdomain", pop[i]
            qwire = benchlib.encode_name(name)
        elif r < 0.07:
            kind, ecs = "noedns", None
        elif r < 0.17:
            kind, ecs = "noecs", None
        else:
            kind, ecs = "gslb", pop[i]
        qwire = wire[name] if kind != "nxdomain" else qwire
        if kind == "noedns":
            msg = header_noedns + qwire + tail[qtype]
        else:
            msg = header + qwire + tail[qtype] + opt_hdr(ecs[1] if ecs else b"")
        out += struct.pack("!H", len(msg)) + msg
        if ecs is None:
            text.append("\t".join((name, qtype, "noedns" if kind == "noedns" else "-", kind, "", "", "", "")))
        else:
            ecs_text, _, cont, country, geo_plen, lat, lon = ecs
            exp = expected.get((lat, lon))
            if exp is None:
                exp = expected[(lat, lon)] = ",".join(benchlib.expected_regions(w.regions, lat, lon))
            text.append("\t".join((name, qtype, ecs_text, kind, cont, country, str(geo_plen), exp)))


def mixed_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)


class Writer:
    def __init__(self, regions):
        self.regions = regions
        self.bin = bytearray()
        self.text = []

    def add(self, qname, qtype, kind, ecs=None, edns=True, info=None):
        msg = benchlib.build_query(qname, qtype, ecs=ecs, edns=edns)
        self.bin += struct.pack("!H", len(msg)) + msg
        ecs_s = str(ecs) if ecs is not None else ("-" if edns else "noedns")
        if info:
            exp = ",".join(benchlib.expected_regions(self.regions, info["lat"], info["lon"]))
            geo = (info["continent"], info["country"], str(info["geo_plen"]), exp)
        else:
            geo = ("", "", "", "")
        self.text.append("\t".join((qname, qtype, ecs_s, kind) + geo))


def gen_geo(reader, rng, w: Writer, count: int | None):
    nets = sample_nets(reader, rng, {"NA": 1000, "EU": 1000, "AS": 1000}, 4, 24)
    rng.shuffle(nets)  # interleave continents
    count = count or len(nets)
    for i in range(count):
        n = nets[i % len(nets)]
        w.add(GSLB, "A", "gslb", ecs=n["net"], info=n)


def gen_mix(reader, rng, w: Writer, count: int):
    weights = {"NA": 30, "EU": 30, "AS": 25, "SA": 6, "OC": 5, "AF": 4}
    v4 = sample_nets(reader, rng, {c: 20 * k for c, k in weights.items()}, 4, 24)
    v6 = sample_nets(reader, rng, {c: 5 * k for c, k in weights.items()}, 6, 56)
    statics = [("gslb.example.", "NS"), ("gslb.example.", "MX"),
               ("gslb.example.", "TXT"), ("ns1.gslb.example.", "A")]
    for _ in range(count):
        r = rng.random()
        if r < 0.70:
            n = rng.choice(v6) if rng.random() < 0.20 else rng.choice(v4)
            qtype = "A" if rng.random() < 0.65 else "AAAA"
            name = mixed_case(rng, GSLB) if rng.random() < 0.10 else GSLB
            w.add(name, qtype, "gslb", ecs=n["net"], info=n)
        elif r < 0.85:
            name, qtype = rng.choice(statics)
            if rng.random() < 0.5:
                n = rng.choice(v4)
                w.add(name, qtype, "static", ecs=n["net"], info=n)
            else:
                w.add(name, qtype, "static")
        elif r < 0.95:
            label = f"nx-{rng.getrandbits(32):08x}"
            name = f"{label}.{ZONE}" if rng.random() < 0.8 else f"{label}.api.{ZONE}"
            qtype = rng.choice(("A", "A", "AAAA", "TXT"))
            if rng.random() < 0.5:
                n = rng.choice(v4)
                w.add(name, qtype, "nxdomain", ecs=n["net"], info=n)
            else:
                w.add(name, qtype, "nxdomain")
        else:
            w.add(GSLB, "A", "noedns", edns=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="GeoLite2-City.mmdb")
    ap.add_argument("--workload", choices=("geo", "mix", "realistic"), required=True)
    ap.add_argument("--out", help="binary dnsperf -B file")
    ap.add_argument("--text", help="also (or only) write the text corpus here; - = stdout")
    ap.add_argument("--count", type=int,
                    help="queries (geo: default 3000, one per /24; mix: default 20000; realistic: default 1000000)")
    ap.add_argument("--population", type=int, default=1_000_000,
                    help="realistic: distinct client subnets (default 1000000)")
    ap.add_argument("--zipf", type=float, default=1.0, help="realistic: Zipf exponent s (default 1.0)")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--config", default=benchlib.BENCH_TOML, help="regions for expected answers")
    a = ap.parse_args()
    if not a.out and not a.text:
        ap.error("give --out and/or --text")

    reader = open_db(a.db)
    rng = random.Random(a.seed)
    w = Writer(benchlib.load_regions(a.config))
    if a.workload == "geo":
        gen_geo(reader, rng, w, a.count)
    elif a.workload == "mix":
        gen_mix(reader, rng, w, a.count or 20000)
    else:
        gen_realistic(reader, rng, w, a.count or 1_000_000, a.population, a.zipf)

    if a.out:
        with open(a.out, "wb") as f:
            f.write(w.bin)
        digest = hashlib.sha256(w.bin).hexdigest()[:16]
        print(f"wrote {a.out}: {len(w.text)} queries, {len(w.bin)} bytes, sha256 {digest}", file=sys.stderr)
    if a.text:
        body = "\n".join(w.text) + "\n"
        if a.text == "-":
            sys.stdout.write(body)
        else:
            with open(a.text, "w") as f:
                f.write(body)


if __name__ == "__main__":
    main()
