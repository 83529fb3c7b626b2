#!/usr/bin/env python3
"""Latency percentiles from `dnsperf -v` output.

dnsperf 2.10 prints no percentiles (only Average/StdDev/min/max), but with -v it
prints one line per response: `> RCODE <query> SECONDS` (`> T ...` for a timeout).
This reads those lines and prints p50/p90/p99/p99.9/max in microseconds, and counts
timeouts separately (they are not in the percentiles; run.sh reports them as lost).

  dnsperf ... -v | latency.py            # or: latency.py FILE
  latency.py --json FILE                 # machine-readable
"""
import json
import math
import sys


def main():
    args = [a for a in sys.argv[1:] if a != "--json"]
    as_json = "--json" in sys.argv[1:]
    f = open(args[0]) if args else sys.stdin
    lat = []
    timeouts = 0
    rcodes = {}
    for line in f:
        if not line.startswith("> "):
            continue
        parts = line.split()
        if parts[1] in ("T", "I"):
            timeouts += 1
            continue
        rcodes[parts[1]] = rcodes.get(parts[1], 0) + 1
        try:
            lat.append(float(parts[-1]))
        except ValueError:
            pass
    lat.sort()
    n = len(lat)

    def pct(p):
        if not n:
            return float("nan")
        i = min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))  # nearest-rank
        return lat[i] * 1e6

    out = {"responses": n, "timeouts": timeouts, "rcodes": rcodes,
           "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99), "p999_us": pct(99.9),
           "max_us": lat[-1] * 1e6 if n else float("nan"),
           "mean_us": sum(lat) / n * 1e6 if n else float("nan")}
    if as_json:
        print(json.dumps(out))
    else:
        print("responses %d, timeouts %d; latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  mean %.0f"
              % (n, timeouts, out["p50_us"], out["p90_us"], out["p99_us"], out["p999_us"], out["max_us"], out["mean_us"]))


if __name__ == "__main__":
    main()
