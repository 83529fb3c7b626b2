#!/usr/bin/env python3
"""Failover timing helper for bench/failover.sh. Two sub-commands:

  monitor  queries a DNS server on loopback every --every seconds (UDP, A, with ECS)
           and appends "UNIX_TIME ANSWER" to --out whenever the answer changes (and
           once at the start); stops after --max-seconds or on SIGTERM.
  wait     waits until the monitor log shows, at or after --since, an answer with none
           of --addr (--until absent) or all of them (--until present; --addr is a
           comma-separated list), and prints the seconds from --since to that answer.
           Exit 0 when seen, 3 after --timeout.

The times come from the monitor, which runs the whole time, so starting a process
after the event does not add to the measurement; the resolution is --every (20 ms)
plus one query's round trip.

  failwatch.py monitor --port 15363 --ecs 81.2.69.0/24 --out mon.log &
  t=$(date +%s.%N); kill -KILL $BACKEND
  failwatch.py wait --log mon.log --addr 192.0.2.30,192.0.2.31 --until absent --since $t
"""
import argparse
import ipaddress
import signal
import socket
import sys
import time

import benchlib


def monitor(a):
    if a.server not in ("127.0.0.1", "::1"):
        sys.exit("loopback targets only")
    msg = benchlib.build_query(a.name, "A", ecs=ipaddress.ip_network(a.ecs))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    start = time.time()
    last = None
    with open(a.out, "a", buffering=1) as f:
        while not stop and time.time() - start < a.max_seconds:
            r = benchlib.udp_query(a.server, a.port, msg, timeout=0.5, sock=sock)
            if r is None:
                ans = "TIMEOUT"
            else:
                ans = ",".join(sorted(v for t, v in r["answers"] if t == "A")) or r["rcode"]
            if ans != last:
                f.write(f"{time.time():.3f} {ans}\n")
                last = ans
            time.sleep(a.every)
    return 0


def wait(a):
    want = a.addr.split(",")
    deadline = time.time() + a.timeout
    while True:
        try:
            with open(a.log) as f:
                lines = [l.split() for l in f if l.strip()]
        except FileNotFoundError:
            lines = []
        for t, ans in ((float(x[0]), x[1]) for x in lines if len(x) == 2):
            if t < a.since:
                continue
            addrs = ans.split(",")
            ok = all(w in addrs for w in want) if a.until == "present" else not any(w in addrs for w in want)
            if ok:
                print(f"{t - a.since:.2f} s (answer then: {ans})")
                return 0
        if time.time() > deadline:
            last = lines[-1][1] if lines else "none"
            print(f"no change after {a.timeout:.0f} s (answer: {last})")
            return 3
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("monitor")
    m.add_argument("--server", default="127.0.0.1")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--name", default="www.gslb.example.")
    m.add_argument("--ecs", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--every", type=float, default=0.02)
    m.add_argument("--max-seconds", type=float, default=300)
    w = sub.add_parser("wait")
    w.add_argument("--log", required=True)
    w.add_argument("--addr", required=True)
    w.add_argument("--until", choices=("absent", "present"), required=True)
    w.add_argument("--since", type=float, required=True)
    w.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    return monitor(a) if a.cmd == "monitor" else wait(a)


if __name__ == "__main__":
    sys.exit(main())
