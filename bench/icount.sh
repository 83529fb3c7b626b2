#!/usr/bin/env bash
# User-space instructions per answered query, geode vs gdnsd, counted by callgrind.
#
#   bench/icount.sh            # geode (answer cache on, then off) and gdnsd; geo + realistic
#   bench/icount.sh geode      # geode only
#   bench/icount.sh gdnsd      # gdnsd only
#
# Timing on a shared 2-core VM moves by +-40%; instruction counts do not depend on load.
# Each server runs once under `valgrind --tool=callgrind --instr-atstart=no`, so its
# start-up (geode compiles GeoLite2-City, gdnsd builds its tree) runs uninstrumented and
# is never counted. Then, for each phase:
#   callgrind_control -z          (zero)
#   callgrind_control -i on       (instrument)
#   dnsperf -Q QPS ...            (the measured queries, at a low fixed rate so that
#                                  nothing is dropped under valgrind)
#   callgrind_control -i off
#   callgrind_control -d PHASE    (dump: the phase's Ir, all threads)
# and instructions per answered query = the dump's total Ir / dnsperf's completed queries.
# Phases, in order:
#   geode: geo cache on, realistic cache on; then the config is replaced by a copy with
#          server.answer_cache_kib = 0 and geode gets SIGHUP. The reload keeps the
#          compiled GeoIP database (same file: state::load reuses it), so it takes seconds,
#          not the minutes of a start; the script checks the "config reloaded" log line
#          and how long it took. Then geo cache off, realistic cache off.
#   gdnsd: geo, realistic.
# geo = the 3,000 queries of bench/data/geo.bin twice (dnsperf -n 2: a cold, then a warm
# pass); realistic = the first QUERIES messages of bench/data/realistic.bin, once.
# geode's answer-cache hit rate per phase comes from geode_dns_answer_cache_total{result}
# on its /metrics, read before and after the phase (outside the instrumented window).
#
# Before that, both servers run natively (not under valgrind) and bench/verify.py sends
# them the same sample of the realistic corpus (VERIFY_PER_GROUP per continent and kind):
# the answers are checked against the expected regions. Then both get the first SAMPLE
# (200) distinct client subnets of its GSLB queries with ECS, and the two servers' regions
# are compared (verify.py --compare). AGREE=0 skips this.
#
# Knobs (defaults): QUERIES=50000 QPS=500 GEO_PASSES=2 VERIFY_PER_GROUP=40 AGREE=1
#   GEODE_PORT=15363 GEODE_HTTP_PORT=19163 GDNSD_PORT=15364 SKIP_BUILD= GEODE_BIN=
#   READY_TIMEOUT=3600 (seconds to wait for a server under valgrind to be ready)
# Output: bench/out/icount-<UTC>/: table.md, phases.tsv, the callgrind dumps
# (callgrind_annotate FILE shows where the instructions go), logs, dnsperf outputs.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WHICH="${1:-all}"
case "$WHICH" in all|geode|gdnsd) ;; *) echo "usage: $0 [all|geode|gdnsd]" >&2; exit 2 ;; esac

QUERIES="${QUERIES:-50000}"
QPS="${QPS:-500}"
GEO_PASSES="${GEO_PASSES:-2}"
VERIFY_PER_GROUP="${VERIFY_PER_GROUP:-40}"
AGREE="${AGREE:-1}"
GEODE_PORT="${GEODE_PORT:-15363}"
GEODE_HTTP_PORT="${GEODE_HTTP_PORT:-19163}"
GDNSD_PORT="${GDNSD_PORT:-15364}"
READY_TIMEOUT="${READY_TIMEOUT:-3600}"

DATA="$BENCH/data"
OUT="$BENCH/out"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RUN="$OUT/icount-$STAMP"
mkdir -p "$RUN"
PHASES="$RUN/phases.tsv"
printf 'server\tphase\tworkload\tsent\tcompleted\tlost\tIr\tIr_per_query\tcache_hit\tcache_miss\n' > "$PHASES"
PIDS=()

log() { printf '[icount] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

for t in valgrind callgrind_control dnsperf python3; do
  command -v "$t" >/dev/null || die "$t missing (apt-get install valgrind dnsperf)"
done
[[ "$WHICH" == geode ]] || command -v gdnsd >/dev/null || die "gdnsd missing (apt-get install gdnsd)"

# ---------------------------------------------------------------- data

DB="$("$BENCH/fetch-geolite2.sh")"
[[ -s "$DB" ]] || die "no GeoLite2-City database"
for w in geo realistic; do
  if [[ ! -s "$DATA/$w.bin" || "$BENCH/gen-workload.py" -nt "$DATA/$w.bin" || "$BENCH/benchlib.py" -nt "$DATA/$w.bin" \
        || "$BENCH/geode-bench.toml" -nt "$DATA/$w.bin" || "$DB" -nt "$DATA/$w.bin" ]]; then
    python3 "$BENCH/gen-workload.py" --db "$DB" --workload "$w" --out "$DATA/$w.bin" --text "$DATA/$w.txt"
  fi
done
# The first QUERIES messages of the realistic workload (and their corpus lines).
python3 - "$DATA/realistic.bin" "$RUN/realistic-head.bin" "$QUERIES" <<'EOF'
import struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = open(src, "rb").read()
off = 0
for _ in range(n):
    if off >= len(b):
        sys.exit(f"{src} has fewer than {n} messages")
    off += 2 + struct.unpack_from("!H", b, off)[0]
open(dst, "wb").write(b[:off])
EOF
head -n "$QUERIES" "$DATA/realistic.txt" > "$RUN/realistic-head.txt"
# The agreement sample: the first SAMPLE distinct client subnets of GSLB queries with ECS.
awk -F'\t' -v n="${SAMPLE:-200}" '$4 == "gslb" && !seen[$3]++ { print; if (++k == n) exit }' \
  "$DATA/realistic.txt" > "$RUN/agree-sample.txt"
GEO_BIN="$DATA/geo.bin"
REAL_BIN="$RUN/realistic-head.bin"

# ---------------------------------------------------------------- servers

if [[ "$WHICH" != gdnsd ]]; then
  if [[ -z "${GEODE_BIN:-}" ]]; then
    if [[ -z "${SKIP_BUILD:-}" ]]; then
      log "cargo build --release --locked"
      (cd "$ROOT" && cargo build --release --locked 2>&1 | tail -2) >&2
    fi
    [[ -x "$ROOT/target/release/geode" ]] || die "target/release/geode missing"
    cp "$ROOT/target/release/geode" "$RUN/geode"   # a concurrent build cannot swap it
    GEODE_BIN="$RUN/geode"
  fi
  GEODE_REV="$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
  # One UDP socket, the database by absolute path; the cache-off copy differs in one line.
  sed -e "s/^udp_sockets = .*/udp_sockets = 1/" -e "s|^geoip_db *=.*|geoip_db    = \"$DB\"|" \
    "$BENCH/geode-bench.toml" > "$RUN/geode-cache-on.toml"
  sed "s/^udp_sockets = .*/&\nanswer_cache_kib = 0/" "$RUN/geode-cache-on.toml" > "$RUN/geode-cache-off.toml"
fi

wait_log() {  # LOGFILE PATTERN PID SECONDS [COUNT]
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    (( $(grep -c "$2" "$1" 2>/dev/null || true) >= ${5:-1} )) && return 0
    kill -0 "$3" 2>/dev/null || { tail -20 "$1" >&2; die "server exited (log: $1)"; }
    sleep 0.1
  done
  tail -20 "$1" >&2
  die "'$2' not in $1 after $4 s"
}

# start_geode NAME PREFIX... -> GEODE_PID; the config is $RUN/NAME.toml (a copy, replaced
# in place for the cache-off phases)
start_geode() {
  local name="$1"; shift
  cp "$RUN/geode-cache-on.toml" "$RUN/$name.toml"
  "$@" "$GEODE_BIN" serve --config "$RUN/$name.toml" --dns-listen "127.0.0.1:$GEODE_PORT" \
    --http-listen "127.0.0.1:$GEODE_HTTP_PORT" > "$RUN/$name.log" 2>&1 &
  GEODE_PID=$!
  PIDS+=("$GEODE_PID")
}

start_gdnsd() {  # NAME PREFIX... -> GDNSD_PID
  local name="$1" dir="$RUN/$1"; shift
  mkdir -p "$dir/zones"
  sed -e "s|@PORT@|$GDNSD_PORT|" -e "s|@UDP_THREADS@|1|" -e "s|@RUN_DIR@|$dir|g" \
      -e "s|@GEOIP_DB@|$DB|" "$BENCH/gdnsd/config" > "$dir/config"
  cp "$BENCH/gdnsd/zones/"* "$dir/zones/"
  "$@" gdnsd -c "$dir" start > "$RUN/$name.log" 2>&1 &
  GDNSD_PID=$!
  PIDS+=("$GDNSD_PID")
}

stop() {  # PID
  local i
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

metric() {  # RESULT: geode_dns_answer_cache_total{result=RESULT}
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://127.0.0.1:$GEODE_HTTP_PORT/metrics" |
    awk -v r="$1" '$1 == "geode_dns_answer_cache_total{result=\"" r "\"}" { v = $2 } END { print v + 0 }'
}

dp() { awk -v k="$2" '(i = index($0, k)) { split(substr($0, i + length(k)), a, " "); print a[1]; exit }' "$1"; }

# ---------------------------------------------------------------- agreement (native)

if [[ "$AGREE" == 1 && "$WHICH" == all ]]; then
  log "agreement: both servers natively, verify.py on the realistic corpus ($VERIFY_PER_GROUP per group)"
  start_geode geode-native
  start_gdnsd gdnsd-native
  wait_log "$RUN/geode-native.log" "ready" "$GEODE_PID" 600
  wait_log "$RUN/gdnsd-native.log" "DNS listeners started" "$GDNSD_PID" 600
  python3 "$BENCH/verify.py" --port "$GEODE_PORT" --corpus "$DATA/realistic.txt" \
    --per-group "$VERIFY_PER_GROUP" --label geode --save "$RUN/verify-geode.tsv" | tee "$RUN/verify-geode.txt" >&2
  python3 "$BENCH/verify.py" --port "$GDNSD_PORT" --corpus "$DATA/realistic.txt" \
    --per-group "$VERIFY_PER_GROUP" --label gdnsd --save "$RUN/verify-gdnsd.tsv" | tee "$RUN/verify-gdnsd.txt" >&2
  for s in geode gdnsd; do
    port="$GEODE_PORT"; [[ "$s" == gdnsd ]] && port="$GDNSD_PORT"
    python3 "$BENCH/verify.py" --port "$port" --corpus "$RUN/agree-sample.txt" --per-group 1000000 \
      --label "$s-sample" --save "$RUN/sample-$s.tsv" > "$RUN/sample-$s.txt"
  done
  python3 "$BENCH/verify.py" --compare "$RUN/sample-geode.tsv" "$RUN/sample-gdnsd.tsv" | tee "$RUN/agreement.txt" >&2
  stop "$GEODE_PID"
  stop "$GDNSD_PID"
fi

# ---------------------------------------------------------------- callgrind phases

VG=(valgrind --tool=callgrind --instr-atstart=no)

# phase SERVER PID PORT PHASE WORKLOAD FILE PASSES
phase() {
  local server="$1" pid="$2" port="$3" name="$4" workload="$5" file="$6" passes="$7"
  local h0=0 m0=0 h1=0 m1=0 f="$RUN/dnsperf-$server-$name.txt"
  if [[ "$server" == geode ]]; then h0="$(metric hit)"; m0="$(metric miss)"; fi
  log "$server $name: dnsperf -Q $QPS -n $passes $(basename "$file")"
  callgrind_control -z "$pid" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  dnsperf -s 127.0.0.1 -p "$port" -B -d "$file" -c 1 -T 1 -Q "$QPS" -n "$passes" -t 10 > "$f" 2>&1 || true
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$name" "$pid" >/dev/null
  if [[ "$server" == geode ]]; then h1="$(metric hit)"; m1="$(metric miss)"; fi
  # The newest dump of this process holds the phase.
  local dump ir
  sleep 1
  dump="$(ls -t "$RUN/callgrind.$server".* 2>/dev/null | head -1)"
  ir="$(awk '/^totals:/ { print $2; exit }' "$dump")"
  mv "$dump" "$RUN/callgrind.$server.$name"
  local sent done_q lost
  sent="$(dp "$f" "Queries sent:")"; done_q="$(dp "$f" "Queries completed:")"; lost="$(dp "$f" "Queries lost:")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$name" "$workload" "$sent" "$done_q" "$lost" "$ir" \
    "$(awk -v i="$ir" -v q="$done_q" 'BEGIN { if (q > 0) printf "%.0f", i / q }')" \
    "$((h1 - h0))" "$((m1 - m0))" >> "$PHASES"
  log "$server $name: $done_q of $sent answered, $lost lost, Ir $ir"
}

GDNSD_VER="$( (gdnsd -h 2>&1 || true) | grep -m1 -o 'gdnsd version [^ ]*' || echo gdnsd)"
if [[ "$WHICH" != geode ]]; then
  log "gdnsd under callgrind"
  start_gdnsd gdnsd "${VG[@]}" --callgrind-out-file="$RUN/callgrind.gdnsd.%p"
  GD_PID="$GDNSD_PID"
fi
if [[ "$WHICH" != gdnsd ]]; then
  log "geode under callgrind (GeoIP compile uninstrumented)"
  start_geode geode "${VG[@]}" --callgrind-out-file="$RUN/callgrind.geode.%p"
  GE_PID="$GEODE_PID"
fi
if [[ "$WHICH" != geode ]]; then
  wait_log "$RUN/gdnsd.log" "DNS listeners started" "$GD_PID" "$READY_TIMEOUT"
  phase gdnsd "$GD_PID" "$GDNSD_PORT" geo geo "$GEO_BIN" "$GEO_PASSES"
  phase gdnsd "$GD_PID" "$GDNSD_PORT" realistic realistic "$REAL_BIN" 1
  stop "$GD_PID"
fi
if [[ "$WHICH" != gdnsd ]]; then
  t0="$(date +%s)"
  wait_log "$RUN/geode.log" "ready" "$GE_PID" "$READY_TIMEOUT"
  log "geode ready after $(( $(date +%s) - t0 )) s more"
  phase geode "$GE_PID" "$GEODE_PORT" geo-cache-on geo "$GEO_BIN" "$GEO_PASSES"
  phase geode "$GE_PID" "$GEODE_PORT" realistic-cache-on realistic "$REAL_BIN" 1
  # Cache off by reload: same database file, so the compiled GeoIP table is reused.
  n="$(grep -c "config reloaded" "$RUN/geode.log" || true)"
  cp "$RUN/geode-cache-off.toml" "$RUN/geode.toml"
  t0="$(date +%s)"
  kill -HUP "$GE_PID"
  wait_log "$RUN/geode.log" "config reloaded" "$GE_PID" 1800 $((n + 1))
  RELOAD_S=$(( $(date +%s) - t0 ))
  log "geode reloaded with answer_cache_kib = 0 in $RELOAD_S s"
  phase geode "$GE_PID" "$GEODE_PORT" geo-cache-off geo "$GEO_BIN" "$GEO_PASSES"
  phase geode "$GE_PID" "$GEODE_PORT" realistic-cache-off realistic "$REAL_BIN" 1
  stop "$GE_PID"
fi

# ---------------------------------------------------------------- table

{
  echo "## instructions per answered query ($STAMP)"
  echo
  echo "valgrind $(valgrind --version | sed 's/valgrind-//') callgrind, user space, all threads;" \
       "geode ${GEODE_REV:-n/a} (1 UDP socket), $GDNSD_VER (udp_threads 1); dnsperf -c 1 -Q $QPS;" \
       "geo = $(( 3000 * GEO_PASSES )) queries (3,000 x $GEO_PASSES), realistic = first $QUERIES of realistic.bin"
  echo
  python3 - "$PHASES" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
get = {(r["server"], r["phase"]): r for r in rows}
def cell(server, phase):
    r = get.get((server, phase))
    if not r or not r["Ir_per_query"]:
        return "n/a"
    return f"{int(r['Ir_per_query']):,}"
def hit(phase):
    r = get.get(("geode", phase))
    if not r:
        return "n/a"
    h, m = int(r["cache_hit"]), int(r["cache_miss"])
    return f"{100 * h / (h + m):.1f}%" if h + m else "0 lookups"
print("| workload | geode, cache on | geode cache hit rate | geode, cache off | gdnsd | geode cache on / gdnsd | geode cache off / gdnsd |")
print("|---|---|---|---|---|---|---|")
for w in ("geo", "realistic"):
    on, off, gd = (get.get(k) for k in (("geode", f"{w}-cache-on"), ("geode", f"{w}-cache-off"), ("gdnsd", w)))
    ratio = lambda a, b: f"{int(a['Ir_per_query']) / int(b['Ir_per_query']):.2f}" if a and b and a["Ir_per_query"] and b["Ir_per_query"] else "n/a"
    print(f"| {w} | {cell('geode', w + '-cache-on')} | {hit(w + '-cache-on')} | {cell('geode', w + '-cache-off')} "
          f"| {cell('gdnsd', w)} | {ratio(on, gd)} | {ratio(off, gd)} |")
print()
for r in rows:
    print(f"- {r['server']} {r['phase']}: {r['completed']} of {r['sent']} answered, {r['lost']} lost, "
          f"{int(r['Ir']):,} Ir" + (f", cache {r['cache_hit']} hits / {r['cache_miss']} misses" if r["server"] == "geode" else ""))
EOF
  [[ -n "${RELOAD_S:-}" ]] && echo "- geode: reload to answer_cache_kib = 0 took $RELOAD_S s under valgrind (GeoIP table reused)"
  if [[ -s "$RUN/agreement.txt" ]]; then
    echo "- $(head -1 "$RUN/verify-geode.txt")"
    echo "- $(head -1 "$RUN/verify-gdnsd.txt")"
    echo "- $(head -1 "$RUN/sample-geode.txt"); $(head -1 "$RUN/sample-gdnsd.txt" | sed 's/.*: //')"
    echo "- $(head -1 "$RUN/agreement.txt")"
  fi
  true
} | tee "$RUN/table.md"
log "results in $RUN"
