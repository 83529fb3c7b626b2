#!/usr/bin/env python3
"""Sanity-checks a server's answers against a workload's text corpus before benchmarking.

For a deterministic sample of the corpus (the first --per-group lines of each group:
continent for GSLB queries, kind otherwise) it sends each query over UDP and checks:
  gslb (with ECS)  NOERROR, AA, answers of the asked family, all from one region, and
                   that region is the nearest by great-circle distance (or within 10%
                   of it: geode's tie set); the ECS scope is reported
  noedns, noecs    NOERROR with answers (no ECS: client = 127.0.0.1, no location)
  static           NOERROR, AA, at least one answer
and, for every query, that the question name is echoed with its case (0x20).
  nxdomain         NXDOMAIN, AA
Prints a summary and the first mismatches. Exit 0 always unless --strict (then 1 when
anything failed). --save FILE writes one line per query (key, rcode, region, scope)
so two servers can be compared with --compare A B.

  verify.py --port 15353 --corpus bench/data/geo.txt --per-group 100 --save bench/out/verify-geode.tsv
  verify.py --compare bench/out/verify-geode.tsv bench/out/verify-gdnsd.tsv
"""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections import Counter, defaultdict

import benchlib


def load_sample(path: str, per_group: int):
    groups = defaultdict(list)
    order = []
    with open(path) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            qname, qtype, ecs, kind, cont, country, plen, exp = (cols + [""] * 8)[:8]
            g = f"{kind}:{cont}" if kind == "gslb" else kind
            if len(groups[g]) < per_group:
                row = {"qname": qname, "qtype": qtype, "ecs": ecs, "kind": kind,
                       "continent": cont, "country": country, "geo_plen": plen,
                       "expected": exp.split(",") if exp else []}
                groups[g].append(row)
                order.append(row)
    return order


def check(row, resp, addr_region):
    """(ok, region, detail)"""
    if resp is None:
        return False, "", "timeout"
    kind = row["kind"]
    if resp["qname"] != row["qname"]:
        return False, "", f"question echoed as {resp['qname']}"
    regions = sorted({addr_region.get(str(ipaddress.ip_address(v)), "?")
                      for t, v in resp["answers"] if t in ("A", "AAAA")})
    region = ",".join(regions)
    if kind == "nxdomain":
        ok = resp["rcode"] == "NXDOMAIN" and resp["aa"]
        return ok, region, f"rcode {resp['rcode']} aa {resp['aa']}"
    if resp["rcode"] != "NOERROR" or not resp["answers"]:
        return False, region, f"rcode {resp['rcode']}, {len(resp['answers'])} answers"
    if kind == "static":
        return resp["aa"], region, "" if resp["aa"] else "AA not set"
    types = {t for t, _ in resp["answers"]}
    if types != {row["qtype"]}:
        return False, region, f"answer types {sorted(types)} for {row['qtype']}"
    if kind in ("noedns", "noecs"):
        return True, region, ""  # no client subnet: the client is loopback, no location
    if len(regions) != 1:
        return False, region, "answers from several regions"
    if row["expected"] and regions[0] not in row["expected"]:
        return False, region, f"expected {'/'.join(row['expected'])}"
    return True, region, ""


def run(a):
    regions = benchlib.load_regions(a.config)
    addr_region = benchlib.address_region(regions)
    rows = load_sample(a.corpus, a.per_group)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    per_group = defaultdict(Counter)
    scopes = Counter()
    bad = []
    saved = []
    for row in rows:
        ecs = None
        edns = row["ecs"] != "noedns"
        if row["ecs"] not in ("-", "noedns"):
            ecs = ipaddress.ip_network(row["ecs"])
        msg = benchlib.build_query(row["qname"], row["qtype"], ecs=ecs, edns=edns)
        resp = benchlib.udp_query(a.server, a.port, msg, timeout=a.timeout, sock=sock)
        ok, region, detail = check(row, resp, addr_region)
        g = f"{row['kind']}:{row['continent']}" if row["kind"] == "gslb" else row["kind"]
        per_group[g]["ok" if ok else "bad"] += 1
        if resp is not None and row["kind"] == "gslb" and ecs is not None:
            scopes[(ecs.version, resp["ecs_scope"])] += 1
        if not ok:
            bad.append((row, region, detail))
        key = f"{row['qname'].lower()}|{row['qtype']}|{row['ecs']}"
        saved.append(f"{key}\t{resp['rcode'] if resp else 'TIMEOUT'}\t{region}\t"
                     f"{resp['ecs_scope'] if resp else ''}\t{row['geo_plen']}")
    total_ok = sum(c["ok"] for c in per_group.values())
    total = sum(sum(c.values()) for c in per_group.values())
    print(f"verify {a.label} {a.server}:{a.port} ({a.corpus}): {total_ok}/{total} as expected")
    for g in sorted(per_group):
        c = per_group[g]
        print(f"  {g:14s} {c['ok']:4d} ok {c['bad']:4d} not")
    if scopes:
        v4 = sorted((s, n) for (v, s), n in scopes.items() if v == 4)
        v6 = sorted((s, n) for (v, s), n in scopes.items() if v == 6)
        fmt = lambda l: " ".join(f"/{s}:{n}" for s, n in l[:12]) + (" ..." if len(l) > 12 else "")
        print(f"  ECS scope (v4): {fmt(v4)}")
        if v6:
            print(f"  ECS scope (v6): {fmt(v6)}")
    for row, region, detail in bad[: a.show]:
        print(f"  NOT OK: {row['qname']} {row['qtype']} ecs={row['ecs']} "
              f"({row['continent']} {row['country']}) -> [{region}] {detail}")
    if a.save:
        with open(a.save, "w") as f:
            f.write("\n".join(saved) + "\n")
    return 1 if (a.strict and bad) else 0


def compare(a_path, b_path):
    def load(p):
        out = {}
        with open(p) as f:
            for line in f:
                k, rcode, region, scope, plen = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
                out[k] = (rcode, region)
        return out
    a, b = load(a_path), load(b_path)
    keys = [k for k in a if k in b]
    same = sum(1 for k in keys if a[k] == b[k])
    print(f"agreement {a_path} vs {b_path}: {same}/{len(keys)} same rcode and region")
    n = 0
    for k in keys:
        if a[k] != b[k] and n < 10:
            print(f"  differ: {k}: {a[k]} vs {b[k]}")
            n += 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--corpus")
    ap.add_argument("--per-group", type=int, default=20)
    ap.add_argument("--label", default="")
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--show", type=int, default=8, help="mismatches to print")
    ap.add_argument("--save")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--config", default=benchlib.BENCH_TOML)
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    a = ap.parse_args()
    if a.compare:
        sys.exit(compare(*a.compare))
    if not a.port or not a.corpus:
        ap.error("--port and --corpus are needed")
    if a.server not in ("127.0.0.1", "::1", "localhost"):
        ap.error("loopback targets only")
    sys.exit(run(a))


if __name__ == "__main__":
    main()
