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

Usage:
  gen-workload.py --db bench/data/GeoLite2-City.mmdb --workload geo --out bench/data/geo.bin
  gen-workload.py --db ... --workload mix --count 20000 --out bench/data/mix.bin --text bench/data/mix.txt
  gen-workload.py --db ... --workload geo --text -          # text corpus only, to stdout

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
import random
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
    ap.add_argument("--workload", choices=("geo", "mix"), required=True)
    ap.add_argument("--out", help="binary dnsperf -B file")
    ap.add_argument("--text", help="also (or only) write the text corpus here; - = stdout")
    ap.add_argument("--count", type=int, help="queries (geo: default 3000, one per /24; mix: default 20000)")
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
    else:
        gen_mix(reader, rng, w, a.count or 20000)

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
