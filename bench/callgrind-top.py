#!/usr/bin/env python3
"""Where the instructions of one icount.sh phase go, per query.

  callgrind-top.py bench/out/icount-<UTC>/callgrind.geode.realistic-cache-off 100000

Runs callgrind_annotate on the dump and prints two lists, in instructions per query
(the dump's Ir divided by QUERIES, the phase's answered queries):
  self   exclusive cost per function. callgrind_annotate splits a function into one row
         per source file its inlined code came from (`zip.rs:Batch::recv`, ...); these
         rows are summed by function name.
  calls  inclusive cost of each call site seen in the dump ("=> callee (Nx)" lines of
         callgrind_annotate --auto=yes): what a callee costs with everything it calls,
         and how many calls that was.
"""
from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter

ROW = re.compile(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?):(.*?)(?: \[.*\])?$")
CALL = re.compile(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+=> (.*?):(.*?) \(([\d,]+)x\)")


def annotate(path: str, *args: str) -> str:
    return subprocess.run(["callgrind_annotate", *args, path], capture_output=True, text=True,
                          check=True).stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump")
    ap.add_argument("queries", type=int)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()

    total = None
    own = Counter()
    for line in annotate(a.dump, "--threshold=100", "--auto=no").splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        m = ROW.match(line)
        if m:
            own[m.group(3)] += int(m.group(1).replace(",", ""))
    calls = Counter()
    ncalls = Counter()
    for line in annotate(a.dump, "--threshold=100", "--auto=yes").splitlines():
        m = CALL.match(line)
        if m:
            calls[m.group(3)] += int(m.group(1).replace(",", ""))
            ncalls[m.group(3)] += int(m.group(4).replace(",", ""))
    q = a.queries
    print(f"{a.dump}: {total:,} Ir, {total / q:,.0f} per query over {q:,} queries")
    print("\nself (exclusive, per query)")
    for fn, ir in own.most_common(a.top):
        print(f"{ir / q:8,.0f}  {fn[:140]}")
    print("\ncalls (inclusive, per query; calls; per call)")
    for fn, ir in calls.most_common(a.top):
        print(f"{ir / q:8,.0f}  {ncalls[fn]:9,}x {ir / ncalls[fn]:8,.0f}  {fn[:120]}")


if __name__ == "__main__":
    main()
