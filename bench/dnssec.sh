#!/usr/bin/env bash
# DNSSEC cost: geode's queries per CPU-second with DO (signed answers) against the same
# queries without DO, on one signed zone, with dnsperf on loopback.
#
#   bench/dnssec.sh            # needs target/release/geode (cargo build --release) and dnsperf
#
# The workload (written to bench/out/dnssec-<time>/queries.txt) is 50% GSLB A/AAAA,
# 20% static names (A, TXT, NS, SOA, DNSKEY) and 30% NXDOMAIN over 3,000 random labels
# (a random-subdomain pattern), every query with the same ECS /24 (London in the demo
# database). Each mode runs twice: with the answer cache (the default) and without it
# (`answer_cache_kib = 0`: every query answered afresh; DO answers then come from the
# fast path for GSLB A/AAAA and from the ordinary path for the rest, both with the
# signature cache). geode's CPU time comes from /proc/PID/stat, so the
# figure is queries per second of geode CPU, not of the machine. It also reads the
# signature cache hit rate and the signatures made from /metrics.
#
# WORKLOAD=gslb makes every query a GSLB A/AAAA one (the answers the UDP fast path signs
# from the signature cache), to see that part alone.
#
# Env: DURATION (s, default 10), CLIENTS (default 4), PORT (default 25353), HTTP (19253),
# WORKLOAD (mix, the default, or gslb).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GEODE="$ROOT/target/release/geode"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-4}"
PORT="${PORT:-25353}"
HTTP="${HTTP:-19253}"
WORKLOAD="${WORKLOAD:-mix}"
[[ "$WORKLOAD" == mix || "$WORKLOAD" == gslb ]] || { echo "WORKLOAD is mix or gslb" >&2; exit 1; }
command -v dnsperf >/dev/null || { echo "dnsperf is missing: apt-get install dnsperf" >&2; exit 1; }
[[ -x "$GEODE" ]] || { echo "build first: cargo build --release" >&2; exit 1; }

RUN="$ROOT/bench/out/dnssec-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$RUN"
cp "$ROOT"/tests/data/dnssec/Kgslb.example.+013+43822.{key,private} "$RUN/"
python3 - "$RUN/queries.txt" "$WORKLOAD" <<'EOF'
import random, sys
r = random.Random(20261205)
lines = []
gslb_share = 1.0 if sys.argv[2] == "gslb" else 0.5
for i in range(10000):
    x = r.random()
    if x < gslb_share:
        lines.append("www.gslb.example " + ("A" if r.random() < 0.65 else "AAAA"))
    elif x < 0.7:
        lines.append(r.choice(["static.gslb.example A", "gslb.example TXT", "gslb.example NS",
                               "gslb.example SOA", "gslb.example DNSKEY", "ns1.gslb.example A"]))
    else:
        lines.append("r%04d.gslb.example A" % r.randrange(3000))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
EOF

config() { # $1 = extra [server] lines
  cat > "$RUN/geode.toml" <<EOF
[server]
dns_listen = ["127.0.0.1:$PORT"]
http_listen = "127.0.0.1:$HTTP"
geoip_db = "$ROOT/geoip/demo-city.mmdb"
$1

[zones."gslb.example."]
ttl = 300
soa = { mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }
ns = ["ns1.gslb.example."]
records = [
  { name = "ns1", type = "A", value = "192.0.2.53" },
  { name = "static", type = "A", value = "192.0.2.7" },
  { name = "@", type = "TXT", value = "v=geode" },
]

[zones."gslb.example.".dnssec]
key_files = ["Kgslb.example.+013+43822.private"]

[regions.us-east]
location = { lat = 39.04, lon = -77.49 }
endpoints = [{ address = "192.0.2.10" }, { address = "192.0.2.11" }, { address = "2001:db8::10" }]
[regions.eu-west]
location = { lat = 53.35, lon = -6.26 }
endpoints = [{ address = "192.0.2.20" }, { address = "192.0.2.21" }, { address = "2001:db8::20" }]
[regions.ap-south]
location = { lat = 19.08, lon = 72.88 }
endpoints = [{ address = "192.0.2.40" }, { address = "2001:db8::40" }]

[services."www.gslb.example."]
regions = ["us-east", "eu-west", "ap-south"]
EOF
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $NF}'; }

# run LABEL DNSPERF-ARGS... -> prints "label qps_per_cpu_second queries cpu_s"
run() {
  local label=$1; shift
  "$GEODE" serve --config "$RUN/geode.toml" 2> "$RUN/$label.log" &
  local pid=$!
  for _ in $(seq 100); do grep -q " ready" "$RUN/$label.log" 2>/dev/null && break; sleep 0.1; done
  # Warm-up (fills the answer and signature caches), then the measured run.
  dnsperf -s 127.0.0.1 -p "$PORT" -d "$RUN/queries.txt" -c "$CLIENTS" -l 2 "$@" > /dev/null
  local s0 h0 m0 t0
  s0=$(metric 'geode_dnssec_signatures_total '); h0=$(metric 'geode_dnssec_signature_cache_total{result="hit"}')
  m0=$(metric 'geode_dnssec_signature_cache_total{result="miss"}'); t0=$(cpu_ticks $pid)
  dnsperf -s 127.0.0.1 -p "$PORT" -d "$RUN/queries.txt" -c "$CLIENTS" -l "$DURATION" "$@" > "$RUN/$label.dnsperf"
  local t1 s1 h1 m1
  t1=$(cpu_ticks $pid); s1=$(metric 'geode_dnssec_signatures_total ')
  h1=$(metric 'geode_dnssec_signature_cache_total{result="hit"}'); m1=$(metric 'geode_dnssec_signature_cache_total{result="miss"}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local q tick cpu
  q=$(awk '/Queries completed:/ {print $3}' "$RUN/$label.dnsperf")
  tick=$(getconf CLK_TCK)
  cpu=$(echo "($t1 - $t0) / $tick" | bc -l)
  printf '%-22s %10.0f q/CPU-s  %9d queries  %6.2f CPU-s  sig-cache hits %s misses %s  signatures %s (%.1f/s)\n' \
    "$label" "$(echo "$q / $cpu" | bc -l)" "$q" "$cpu" "$((${h1%.*} - ${h0%.*}))" "$((${m1%.*} - ${m0%.*}))" \
    "$((${s1%.*} - ${s0%.*}))" "$(echo "(${s1%.*} - ${s0%.*}) / $DURATION" | bc -l)" | tee -a "$RUN/results.txt"
}

ECS="-E 8:00011800510245"   # ECS 81.2.69.0/24
echo "workload: $WORKLOAD; load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$RUN/results.txt"
config ""
run cache-nodo $ECS
run cache-do $ECS -D
config "answer_cache_kib = 0"
run nocache-nodo $ECS
run nocache-do $ECS -D
awk '/ q\/CPU-s/ {q[$1] = $2} END {
  printf "DO / non-DO, answer cache on:  %.2f\n", q["cache-do"] / q["cache-nodo"];
  printf "DO / non-DO, answer cache off: %.2f\n", q["nocache-do"] / q["nocache-nodo"] }' \
  "$RUN/results.txt" | tee -a "$RUN/results.txt"
echo "results: $RUN/results.txt"
