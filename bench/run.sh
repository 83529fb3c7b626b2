#!/usr/bin/env bash
# geode throughput / latency / memory benchmark, optionally against gdnsd.
#
#   bench/run.sh geode     # geode, "geo" workload (3,000 ECS /24s in NA/EU/AS)
#   bench/run.sh gdnsd     # gdnsd 3.x, same workload, same regions and GeoIP database
#   bench/run.sh compare   # both, then one table with the geode/gdnsd ratios
#   bench/run.sh mix       # geode, "mix" workload (GSLB A/AAAA, static, NXDOMAIN, no EDNS)
#
# For each server it measures, on loopback only (127.0.0.1):
#   1. max q/s with the server pinned to one core (SERVER_CPU, 1 UDP socket/thread) and
#      dnsperf pinned to the other (CLIENT_CPU): dnsperf -c 4 -T 1 -l DURATION;
#      the server's CPU time from /proc/PID/stat (utime+stime) before/after gives
#      queries per server CPU-second;
#   2. latency at a fixed RATE (default 20000 q/s, dnsperf -Q): p50/p99/p99.9 from
#      dnsperf -v per-response latencies (bench/latency.py; dnsperf 2.10 has no
#      percentile output), plus the server's CPU share at that rate;
#   3. VmRSS / VmHWM from /proc/PID/status, idle and after the load;
#   4. max q/s unpinned with 2 UDP sockets/threads (server and dnsperf share the two
#      cores), and the 2-core/1-core ratio (TWO_CORE=0 skips it).
#   compare mode then runs both servers at once, pinned to the same core, and measures
#   max q/s and queries per server CPU-second in ROUNDS alternating rounds (geode, gdnsd,
#   geode, ...), then p99 latency and server CPU per query at RATE in ROUNDS more: on a
#   shared VM whose speed drifts by 10% or more within minutes, the median of
#   interleaved rounds is the fairer ratio. The table reports both. With FLOOR=1 the
#   rounds also alternate with bench/floor.c, a reflector that runs the same
#   recvmmsg/sendmmsg loop and does no DNS work: its queries per CPU-second over
#   gdnsd's is the highest ratio any server with that loop can reach on this machine.
# Before measuring, bench/verify.py checks a sample of answers (region vs. the nearest
# by distance, rcodes); compare mode also reports geode/gdnsd answer agreement.
#
# Environment knobs (defaults): DURATION=10 RATE=20000 CLIENTS=4 WARMUP=2
#   SERVER_CPU=1 CLIENT_CPU=0 GEODE_PORT=15353 GEODE_HTTP_PORT=19153 GDNSD_PORT=15354
#   TWO_CORE=1 VERIFY_PER_GROUP=50 ROUNDS=3 (interleaved rounds in compare mode; 0 skips)
#   FLOOR=1 FLOOR_PORT=15355 (compare mode: add the reflector to the interleaved rounds;
#   it is built with cc)
#   SKIP_BUILD= (1: use target/release/geode as is)
#   GEODE_BIN= (a prebuilt binary; implies SKIP_BUILD)
#   DNSPERF_EXTRA= (added to the max-q/s dnsperf runs, e.g. "-q 500": dnsperf keeps at
#   most 100 queries outstanding by default, so max q/s <= 100 / latency)
#   WORKLOAD= (geo for geode|gdnsd|compare, mix for mix; "realistic" = 1M Zipf-popular
#   client subnets over www/api/cdn A/AAAA, where the answer cache misses: see
#   gen-workload.py; generated on first use, about a minute)
#   ANSWER_CACHE_KIB= (geode's server.answer_cache_kib; 0 computes every reply. The geo
#   workload repeats 3,000 distinct queries, so with the default cache nearly every
#   reply after the first round comes from it; the table shows the share.)
# Results: bench/out/run-<UTC time>-<mode>/ (logs, dnsperf output, results.tsv,
# table.md); the table is also printed at the end.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
MODE="${1:-geode}"
case "$MODE" in geode|gdnsd|compare|mix) ;; *) echo "usage: $0 geode|gdnsd|compare|mix" >&2; exit 2 ;; esac

DURATION="${DURATION:-10}"
RATE="${RATE:-20000}"
CLIENTS="${CLIENTS:-4}"
WARMUP="${WARMUP:-2}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
GEODE_PORT="${GEODE_PORT:-15353}"
GEODE_HTTP_PORT="${GEODE_HTTP_PORT:-19153}"
GDNSD_PORT="${GDNSD_PORT:-15354}"
TWO_CORE="${TWO_CORE:-1}"
VERIFY_PER_GROUP="${VERIFY_PER_GROUP:-50}"
DNSPERF_EXTRA="${DNSPERF_EXTRA:-}"   # extra dnsperf args for the max-q/s runs, e.g. "-q 500"
ANSWER_CACHE_KIB="${ANSWER_CACHE_KIB:-}"
ROUNDS="${ROUNDS:-3}"
FLOOR="${FLOOR:-1}"
FLOOR_PORT="${FLOOR_PORT:-15355}"
[[ "$MODE" == mix ]] && TWO_CORE="${MIX_TWO_CORE:-0}"

DATA="$BENCH/data"
OUT="$BENCH/out"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RUN="$OUT/run-$STAMP-$MODE"
mkdir -p "$DATA" "$OUT" "$RUN"
RESULTS="$RUN/results.tsv"
: > "$RESULTS"
PIDS=()

log() { printf '[run.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }   # server metric value
get() { awk -F'\t' -v s="$1" -v m="$2" '$1==s && $2==m {v=$3} END {print v}' "$RESULTS"; }

cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

# ---------------------------------------------------------------- prerequisites

install_apt() {
  local sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  log "installing: $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

prereqs() {
  local need=()
  command -v dnsperf >/dev/null || need+=(dnsperf)
  command -v dig >/dev/null || need+=(bind9-dnsutils)
  command -v taskset >/dev/null || need+=(util-linux)
  if [[ "$MODE" == gdnsd || "$MODE" == compare ]]; then
    command -v gdnsd >/dev/null || need+=(gdnsd)
  fi
  if [[ "$MODE" == compare && "$FLOOR" == 1 ]]; then
    command -v cc >/dev/null || need+=(gcc libc6-dev)
  fi
  ((${#need[@]} == 0)) || install_apt "${need[@]}"
  python3 -c 'import maxminddb' 2>/dev/null || python3 -m pip install --quiet maxminddb >&2 \
    || die "python3 package maxminddb missing (python3 -m pip install maxminddb)"
  python3 -c 'import tomllib' 2>/dev/null || die "python3 >= 3.11 needed (tomllib)"
}

port_free() { ! ss -Hlun "sport = :$1" 2>/dev/null | grep -q . && ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

prepare_data() {
  DB="$("$BENCH/fetch-geolite2.sh")"
  [[ -s "$DB" ]] || die "no GeoLite2-City database"
  local w ws=(geo mix)
  [[ "$WORKLOAD_NAME" == realistic ]] && ws+=(realistic)
  for w in "${ws[@]}"; do
    local bin="$DATA/$w.bin"
    if [[ ! -s "$bin" || "$BENCH/gen-workload.py" -nt "$bin" || "$BENCH/benchlib.py" -nt "$bin" \
          || "$BENCH/geode-bench.toml" -nt "$bin" || "$DB" -nt "$bin" ]]; then
      python3 "$BENCH/gen-workload.py" --db "$DB" --workload "$w" --out "$bin" --text "$DATA/$w.txt"
    fi
  done
}

build_geode() {
  if [[ -n "${GEODE_BIN:-}" ]]; then
    [[ -x "$GEODE_BIN" ]] || die "GEODE_BIN=$GEODE_BIN is not executable"
  else
    if [[ -z "${SKIP_BUILD:-}" ]]; then
      log "cargo build --release"
      (cd "$ROOT" && cargo build --release --locked 2>&1 | tail -3) >&2
    fi
    [[ -x "$ROOT/target/release/geode" ]] || die "target/release/geode missing"
    # Run a private copy: other builds may replace target/release/geode mid-run.
    mkdir -p "$OUT/bin"
    cp "$ROOT/target/release/geode" "$OUT/bin/geode.tmp" && mv "$OUT/bin/geode.tmp" "$OUT/bin/geode"
    GEODE_BIN="$OUT/bin/geode"
  fi
  GEODE_REV="$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
}

# ---------------------------------------------------------------- servers

# wait_for LOGFILE PATTERN PID SECONDS
wait_for() {
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { tail -20 "$1" >&2; die "server exited during startup (log: $1)"; }
    sleep 0.1
  done
  tail -20 "$1" >&2
  die "server not ready after $4 s (log: $1)"
}

pin() { [[ -n "$1" ]] && echo "taskset -c $1"; true; }

# start_geode SOCKETS CPU -> SERVER_PID, SERVER_PORT
start_geode() {
  local sockets="$1" cpu="$2" cfg="$BENCH/geode-bench.toml"
  if [[ "$sockets" != 1 || -n "$ANSWER_CACHE_KIB" ]]; then
    cfg="$RUN/geode-bench-$sockets.toml"
    sed -e "s/^udp_sockets = .*/udp_sockets = $sockets/" \
        -e "s|^geoip_db *=.*|geoip_db    = \"$DB\"|" "$BENCH/geode-bench.toml" > "$cfg"
    if [[ -n "$ANSWER_CACHE_KIB" ]]; then
      sed -i "s/^udp_sockets = .*/&\nanswer_cache_kib = $ANSWER_CACHE_KIB/" "$cfg"
    fi
  fi
  port_free "$GEODE_PORT" || die "port $GEODE_PORT is in use (set GEODE_PORT)"
  local logf="$RUN/geode-$sockets.log"
  # shellcheck disable=SC2046
  $(pin "$cpu") "$GEODE_BIN" serve --config "$cfg" --dns-listen "127.0.0.1:$GEODE_PORT" \
    --http-listen "127.0.0.1:$GEODE_HTTP_PORT" > "$logf" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_PORT="$GEODE_PORT"
  wait_for "$logf" "ready" "$SERVER_PID" 120
}

# start_gdnsd THREADS CPU -> SERVER_PID, SERVER_PORT
start_gdnsd() {
  local threads="$1" cpu="$2" dir="$RUN/gdnsd-$1"
  mkdir -p "$dir/zones"
  sed -e "s|@PORT@|$GDNSD_PORT|" -e "s|@UDP_THREADS@|$threads|" -e "s|@RUN_DIR@|$dir|g" \
      -e "s|@GEOIP_DB@|$DB|" "$BENCH/gdnsd/config" > "$dir/config"
  cp "$BENCH/gdnsd/zones/"* "$dir/zones/"
  port_free "$GDNSD_PORT" || die "port $GDNSD_PORT is in use (set GDNSD_PORT)"
  local logf="$dir/gdnsd.log"
  # shellcheck disable=SC2046
  $(pin "$cpu") gdnsd -c "$dir" start > "$logf" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_PORT="$GDNSD_PORT"
  wait_for "$logf" "DNS listeners started" "$SERVER_PID" 120
}

# start_floor CPU -> SERVER_PID, SERVER_PORT
start_floor() {
  mkdir -p "$OUT/bin"
  if [[ ! -x "$OUT/bin/floor" || "$BENCH/floor.c" -nt "$OUT/bin/floor" ]]; then
    cc -O2 -Wall -o "$OUT/bin/floor" "$BENCH/floor.c" || die "cc bench/floor.c failed"
  fi
  port_free "$FLOOR_PORT" || die "port $FLOOR_PORT is in use (set FLOOR_PORT)"
  local logf="$RUN/floor.log"
  # shellcheck disable=SC2046
  $(pin "$1") "$OUT/bin/floor" 127.0.0.1 "$FLOOR_PORT" > "$logf" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_PORT="$FLOOR_PORT"
  wait_for "$logf" "ready" "$SERVER_PID" 10
}

stop_server() {
  local i
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# utime+stime of every thread, in clock ticks
cpu_ticks() {
  local s rest
  s="$(cat "/proc/$1/stat")"
  rest="${s##*) }"
  # shellcheck disable=SC2086
  set -- $rest
  echo $(( ${12} + ${13} ))
}
mem_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- measurements

# dnsperf_run OUTFILE CPU FILE ARGS... ; also writes OUTFILE.times (dnsperf's own CPU)
dnsperf_run() {
  local out="$1" cpu="$2" file="$3"
  shift 3
  # shellcheck disable=SC2046
  ( $(pin "$cpu") dnsperf -s 127.0.0.1 -p "$SERVER_PORT" -B -d "$file" -c "$CLIENTS" "$@" ; times > "$out.times" ) \
    > "$out" 2>&1 || true
}
dp() { awk -v k="$2" '(i = index($0, k)) { split(substr($0, i + length(k)), a, " "); print a[1]; exit }' "$1"; }
# dnsperf's CPU seconds (children's user+sys from `times`)
dp_cpu() {
  tail -1 "$1.times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] } printf "%.2f", s }'
}

# measure NAME WORKLOAD_BIN WORKLOAD_TXT STARTFN
measure() {
  local name="$1" bin="$2" txt="$3" start="$4"
  local tck; tck="$(getconf CLK_TCK)"

  log "$name: start, 1 core (cpu $SERVER_CPU), 1 UDP socket/thread"
  "$start" 1 "$SERVER_CPU"
  rec "$name" rss_idle_kb "$(mem_kb "$SERVER_PID" VmRSS)"
  python3 "$BENCH/verify.py" --port "$SERVER_PORT" --corpus "$txt" --per-group "$VERIFY_PER_GROUP" \
    --label "$name" --save "$RUN/verify-$name.tsv" | tee "$RUN/verify-$name.txt" >&2
  rec "$name" verify "$(head -1 "$RUN/verify-$name.txt" | sed 's/.*: //')"

  if ((WARMUP > 0)); then
    dnsperf_run "$RUN/$name-warmup.txt" "$CLIENT_CPU" "$bin" -T 1 -l "$WARMUP"
  fi

  log "$name: max q/s for ${DURATION}s"
  local t0 t1
  t0="$(cpu_ticks "$SERVER_PID")"
  # shellcheck disable=SC2086
  dnsperf_run "$RUN/$name-max.txt" "$CLIENT_CPU" "$bin" -T 1 -l "$DURATION" $DNSPERF_EXTRA
  t1="$(cpu_ticks "$SERVER_PID")"
  local f="$RUN/$name-max.txt"
  local done_q runtime cpu_s
  done_q="$(dp "$f" "Queries completed:")"
  runtime="$(dp "$f" "Run time (s):")"
  cpu_s="$(awk -v a="$t0" -v b="$t1" -v t="$tck" 'BEGIN { printf "%.2f", (b - a) / t }')"
  rec "$name" max_qps "$(dp "$f" "Queries per second:" | awk '{printf "%.0f", $1}')"
  rec "$name" max_lost "$(dp "$f" "Queries lost:")"
  rec "$name" max_sent "$(dp "$f" "Queries sent:")"
  rec "$name" max_avg_lat_us "$(dp "$f" "Average Latency (s):" | awk '{printf "%.0f", $1 * 1e6}')"
  rec "$name" max_server_cpu_s "$cpu_s"
  rec "$name" max_server_cpu_pct "$(awk -v c="$cpu_s" -v r="$runtime" 'BEGIN { printf "%.0f", 100 * c / r }')"
  rec "$name" q_per_cpu_s "$(awk -v q="$done_q" -v c="$cpu_s" 'BEGIN { if (c > 0) printf "%.0f", q / c; else print "n/a" }')"
  rec "$name" max_client_cpu_pct "$(awk -v c="$(dp_cpu "$f")" -v r="$runtime" 'BEGIN { printf "%.0f", 100 * c / r }')"
  rec "$name" max_rcodes "$(grep -m1 'Response codes:' "$f" | sed 's/.*Response codes: *//')"
  if [[ "$name" == geode ]]; then
    # Share of all UDP queries so far (verify, warm-up, max run) answered from the cache.
    rec "$name" cache_hit_pct "$(python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
      "http://127.0.0.1:$GEODE_HTTP_PORT/metrics" | awk '
      /^geode_dns_answer_cache_total\{result="hit"\}/ { h = $2 }
      /^geode_dns_answer_cache_total\{result="miss"\}/ { m = $2 }
      END { if (h + m > 0) printf "%.1f", 100 * h / (h + m); else print "0" }')"
  fi

  log "$name: fixed rate $RATE q/s for ${DURATION}s (latency)"
  t0="$(cpu_ticks "$SERVER_PID")"
  dnsperf_run "$RUN/$name-rate.txt" "$CLIENT_CPU" "$bin" -T 1 -l "$DURATION" -Q "$RATE" -v
  t1="$(cpu_ticks "$SERVER_PID")"
  f="$RUN/$name-rate.txt"
  runtime="$(dp "$f" "Run time (s):")"
  python3 "$BENCH/latency.py" --json "$f" > "$RUN/$name-rate.json"
  python3 "$BENCH/latency.py" "$f" > "$RUN/$name-rate.summary"
  local j="$RUN/$name-rate.json"
  for k in p50_us p99_us p999_us max_us; do
    rec "$name" "rate_$k" "$(python3 -c "import json,sys; print('%.0f' % json.load(open(sys.argv[1]))[sys.argv[2]])" "$j" "$k")"
  done
  rec "$name" rate_qps "$(dp "$f" "Queries per second:" | awk '{printf "%.0f", $1}')"
  rec "$name" rate_lost "$(dp "$f" "Queries lost:")"
  gzip -f "$f"   # the per-response lines are only needed for the percentiles
  rec "$name" rate_server_cpu_pct "$(awk -v a="$t0" -v b="$t1" -v t="$tck" -v r="$runtime" 'BEGIN { printf "%.0f", 100 * (b - a) / t / r }')"
  rec "$name" rss_load_kb "$(mem_kb "$SERVER_PID" VmRSS)"
  rec "$name" hwm_kb "$(mem_kb "$SERVER_PID" VmHWM)"
  rec "$name" rss_anon_kb "$(mem_kb "$SERVER_PID" RssAnon)"
  rec "$name" rss_file_kb "$(mem_kb "$SERVER_PID" RssFile)"
  stop_server

  if [[ "$TWO_CORE" == 1 ]]; then
    log "$name: 2 cores unpinned, 2 UDP sockets/threads, max q/s for ${DURATION}s"
    "$start" 2 ""
    dnsperf_run "$RUN/$name-2core-warmup.txt" "" "$bin" -T 1 -l "$WARMUP"
    t0="$(cpu_ticks "$SERVER_PID")"
    # shellcheck disable=SC2086
    dnsperf_run "$RUN/$name-2core.txt" "" "$bin" -T 1 -l "$DURATION" $DNSPERF_EXTRA
    t1="$(cpu_ticks "$SERVER_PID")"
    f="$RUN/$name-2core.txt"
    done_q="$(dp "$f" "Queries completed:")"
    cpu_s="$(awk -v a="$t0" -v b="$t1" -v t="$tck" 'BEGIN { printf "%.2f", (b - a) / t }')"
    rec "$name" two_core_qps "$(dp "$f" "Queries per second:" | awk '{printf "%.0f", $1}')"
    rec "$name" two_core_lost "$(dp "$f" "Queries lost:")"
    rec "$name" two_core_server_cpu_s "$cpu_s"
    rec "$name" two_core_q_per_cpu_s "$(awk -v q="$done_q" -v c="$cpu_s" 'BEGIN { if (c > 0) printf "%.0f", q / c; else print "n/a" }')"
    rec "$name" two_core_ratio "$(awk -v a="$(get "$name" two_core_qps)" -v b="$(get "$name" max_qps)" 'BEGIN { if (b > 0) printf "%.2f", a / b }')"
    stop_server
  fi
}

# interleave WORKLOAD_BIN: both servers up on SERVER_CPU, ROUNDS alternating max-q/s runs
interleave() {
  local bin="$1" r s t0 t1 f cpu_s tck
  tck="$(getconf CLK_TCK)"
  log "interleaved: $ROUNDS rounds of ${DURATION}s per server, alternating, both pinned to cpu $SERVER_CPU"
  start_geode 1 "$SERVER_CPU"
  local -A pid port
  pid[geode]="$SERVER_PID"; port[geode]="$SERVER_PORT"
  start_gdnsd 1 "$SERVER_CPU"
  pid[gdnsd]="$SERVER_PID"; port[gdnsd]="$SERVER_PORT"
  local servers=(geode gdnsd)
  if [[ "$FLOOR" == 1 ]]; then
    start_floor "$SERVER_CPU"
    pid[floor]="$SERVER_PID"; port[floor]="$SERVER_PORT"
    servers+=(floor)
  fi
  for s in "${servers[@]}"; do
    SERVER_PORT="${port[$s]}"
    dnsperf_run "$RUN/$s-inter-warmup.txt" "$CLIENT_CPU" "$bin" -T 1 -l "$WARMUP"
  done
  for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${servers[@]}"; do
      SERVER_PORT="${port[$s]}"
      f="$RUN/$s-inter-$r.txt"
      t0="$(cpu_ticks "${pid[$s]}")"
      # shellcheck disable=SC2086
      dnsperf_run "$f" "$CLIENT_CPU" "$bin" -T 1 -l "$DURATION" $DNSPERF_EXTRA
      t1="$(cpu_ticks "${pid[$s]}")"
      cpu_s="$(awk -v a="$t0" -v b="$t1" -v t="$tck" 'BEGIN { printf "%.2f", (b - a) / t }')"
      printf '%s\t%s\t%s\t%s\n' "$s" "$r" "$(dp "$f" "Queries per second:" | awk '{printf "%.0f", $1}')" \
        "$(awk -v q="$(dp "$f" "Queries completed:")" -v c="$cpu_s" 'BEGIN { if (c > 0) printf "%.0f", q / c; else print 0 }')" \
        >> "$RUN/interleaved.tsv"
    done
  done
  # The same alternation at the fixed RATE: p99 and server CPU per query. Single
  # fixed-rate runs minutes apart mostly measured the host's mood at the time.
  log "interleaved: $ROUNDS rounds of ${DURATION}s at $RATE q/s per server, alternating"
  for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${servers[@]}"; do
      SERVER_PORT="${port[$s]}"
      f="$RUN/$s-inter-rate-$r.txt"
      t0="$(cpu_ticks "${pid[$s]}")"
      dnsperf_run "$f" "$CLIENT_CPU" "$bin" -T 1 -l "$DURATION" -Q "$RATE" -v
      t1="$(cpu_ticks "${pid[$s]}")"
      printf '%s\t%s\t%s\t%s\n' "$s" "$r" \
        "$(python3 "$BENCH/latency.py" --json "$f" | python3 -c 'import json, sys; print("%.0f" % json.load(sys.stdin)["p99_us"])')" \
        "$(awk -v q="$(dp "$f" "Queries completed:")" -v a="$t0" -v b="$t1" -v t="$tck" 'BEGIN { if (q > 0) printf "%.2f", (b - a) / t * 1e6 / q; else print 0 }')" \
        >> "$RUN/interleaved-rate.tsv"
      gzip -f "$f"
    done
  done
  for s in "${servers[@]}"; do SERVER_PID="${pid[$s]}"; stop_server; done
  median() {  # SERVER COLUMN [FILE]
    awk -F'\t' -v s="$1" -v c="$2" '$1 == s { print $c }' "${3:-$RUN/interleaved.tsv}" | sort -n |
      awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
  }
  for s in "${servers[@]}"; do
    rec "$s" inter_qps "$(median "$s" 3)"
    rec "$s" inter_q_per_cpu_s "$(median "$s" 4)"
    rec "$s" inter_rate_p99_us "$(median "$s" 3 "$RUN/interleaved-rate.tsv")"
    rec "$s" inter_rate_cpu_us "$(median "$s" 4 "$RUN/interleaved-rate.tsv")"
  done
  # Each round's geode/gdnsd ratio of queries per CPU-second, for the spread.
  per_round() {  # SERVER: its queries per CPU-second over gdnsd's, round by round
    awk -F'\t' -v s="$1" '$1 == s { g[$2] = $4 } $1 == "gdnsd" { d[$2] = $4 }
      END { for (r = 1; r in g; r++) printf "%s%.2f", (r > 1 ? " " : ""), (d[r] > 0 ? g[r] / d[r] : 0) }' "$RUN/interleaved.tsv"
  }
  rec geode inter_rounds "$(per_round geode)"
  [[ "$FLOOR" == 1 ]] && rec floor inter_rounds "$(per_round floor)"
  true
}

# ---------------------------------------------------------------- report

table() {
  local servers=("$@") s
  local ratio=0
  [[ ${#servers[@]} == 2 ]] && ratio=1
  {
    echo "## geode bench: $MODE ($STAMP)"
    echo
    local versions
    versions="dnsperf $( (dnsperf -h 2>&1 || true) | awk '/^Version/ {print $2; exit}')"
    [[ " ${servers[*]} " == *" geode "* ]] && versions+="; geode $GEODE_REV ($GEODE_BIN)"
    [[ " ${servers[*]} " == *" gdnsd "* ]] && versions+="; $( (gdnsd -h 2>&1 || true) | grep -m1 'gdnsd version' || true)"
    echo "$versions; $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
    echo "workload: $WORKLOAD_NAME ($(wc -c < "$WORKLOAD_BIN") bytes); dnsperf -B -c $CLIENTS -T 1 -l $DURATION $DNSPERF_EXTRA; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    [[ -n "$ANSWER_CACHE_KIB" ]] && echo "geode: server.answer_cache_kib = $ANSWER_CACHE_KIB"
    echo
    printf '| %-46s |' "metric"; for s in "${servers[@]}"; do printf ' %-14s |' "$s"; done
    ((ratio)) && printf ' %-12s |' "${servers[0]}/${servers[1]}"
    echo
    printf '|%s|' "------------------------------------------------"; for s in "${servers[@]}"; do printf '%s|' "----------------"; done
    ((ratio)) && printf '%s|' "--------------"
    echo
    row() {  # label metric [scale] [ratio: 1 = higher is better shown as a/b]
      local label="$1" m="$2" scale="${3:-}" v vals=()
      printf '| %-46s |' "$label"
      for s in "${servers[@]}"; do
        v="$(get "$s" "$m")"
        [[ -n "$scale" && -n "$v" ]] && v="$(awk -v x="$v" "BEGIN { printf \"%.1f\", x $scale }")"
        vals+=("$v")
        printf ' %-14s |' "${v:-n/a}"
      done
      if ((ratio)); then
        printf ' %-12s |' "$(awk -v a="${vals[0]:-0}" -v b="${vals[1]:-0}" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "" }')"
      fi
      echo
    }
    row "max q/s, 1 core pinned (1 socket/thread)" max_qps
    row "  queries lost" max_lost
    row "  server CPU % of its core" max_server_cpu_pct
    row "  dnsperf CPU % of its core" max_client_cpu_pct
    row "queries per server CPU-second" q_per_cpu_s
    row "  replies from geode's answer cache (%)" cache_hit_pct
    row "avg latency at max load (us)" max_avg_lat_us
    row "p50 latency at $RATE q/s (us)" rate_p50_us
    row "p99 latency at $RATE q/s (us)" rate_p99_us
    row "p99.9 latency at $RATE q/s (us)" rate_p999_us
    row "  achieved q/s" rate_qps
    row "  server CPU % at $RATE q/s" rate_server_cpu_pct
    row "RSS idle (MiB)" rss_idle_kb "/ 1024"
    row "RSS after load (MiB)" rss_load_kb "/ 1024"
    row "  of which anonymous, RssAnon (MiB)" rss_anon_kb "/ 1024"
    row "  of which file-backed (binary, libs), RssFile (MiB)" rss_file_kb "/ 1024"
    row "peak RSS, VmHWM (MiB)" hwm_kb "/ 1024"
    if [[ "$TWO_CORE" == 1 ]]; then
      row "max q/s, 2 cores unpinned (2 sockets/threads)" two_core_qps
      row "  queries per server CPU-second" two_core_q_per_cpu_s
      row "  2-core / 1-core" two_core_ratio
    fi
    if [[ -s "$RUN/interleaved.tsv" ]]; then
      row "max q/s, 1 core, median of $ROUNDS interleaved rounds" inter_qps
      row "queries per server CPU-second, same rounds" inter_q_per_cpu_s
      row "p99 latency at $RATE q/s (us), median of $ROUNDS rounds" inter_rate_p99_us
      row "server CPU per query at $RATE q/s (us), same rounds" inter_rate_cpu_us
    fi
    echo
    for s in "${servers[@]}"; do
      echo "- $s: answers check: $(get "$s" verify); rcodes at max: $(get "$s" max_rcodes); lost at $RATE q/s: $(get "$s" rate_lost)"
    done
    if [[ -s "$RUN/agreement.txt" ]]; then echo "- $(head -1 "$RUN/agreement.txt")"; fi
    if [[ -s "$RUN/interleaved.tsv" ]]; then
      echo "- interleaved rounds, geode/gdnsd queries per CPU-second per round: $(get geode inter_rounds)"
    fi
    if [[ -n "$(get floor inter_q_per_cpu_s)" ]]; then
      awk -v f="$(get floor inter_q_per_cpu_s)" -v g="$(get geode inter_q_per_cpu_s)" -v d="$(get gdnsd inter_q_per_cpu_s)" \
          -v fq="$(get floor inter_qps)" -v fp="$(get floor inter_rate_p99_us)" -v fc="$(get floor inter_rate_cpu_us)" \
          -v rounds="$(get floor inter_rounds)" 'BEGIN {
        printf "- kernel floor (bench/floor.c: the same recvmmsg/sendmmsg loop, no DNS work), same rounds: %d queries per CPU-second, max %d q/s, p99 %d us and %.2f us CPU per query at the fixed rate.\n", f, fq, fp, fc
        printf "  floor/gdnsd = %.2f (rounds: %s): the highest geode/gdnsd ratio of queries per CPU-second there is to reach here.", f / d, rounds
        # A share of the way is only meaningful when the floor stands clear of gdnsd.
        if (f > 1.05 * d) printf " geode has %.0f%% of the way from gdnsd to the floor.", 100 * (g - d) / (f - d)
        else printf " The floor is within 5%% of gdnsd: this run cannot tell the servers apart."
        printf "\n"
      }'
    fi
    awk -v l="$LOAD_BEFORE" 'BEGIN { split(l, a, " "); if (a[1] > 0.5) print "- WARNING: the machine was busy (load average " a[1] " before the run): these numbers are provisional." }'
  } | tee "$RUN/table.md"
}

# ---------------------------------------------------------------- main

WORKLOAD_NAME="${WORKLOAD:-geo}"
[[ "$MODE" == mix ]] && WORKLOAD_NAME="${WORKLOAD:-mix}"
case "$WORKLOAD_NAME" in geo|mix|realistic) ;; *) die "WORKLOAD=$WORKLOAD_NAME: geo, mix or realistic" ;; esac
prereqs
prepare_data
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
WORKLOAD_BIN="$DATA/$WORKLOAD_NAME.bin"
WORKLOAD_TXT="$DATA/$WORKLOAD_NAME.txt"
GEODE_REV="n/a"
case "$MODE" in
  geode|mix)
    build_geode
    measure geode "$WORKLOAD_BIN" "$WORKLOAD_TXT" start_geode
    table geode ;;
  gdnsd)
    measure gdnsd "$WORKLOAD_BIN" "$WORKLOAD_TXT" start_gdnsd
    table gdnsd ;;
  compare)
    build_geode
    measure geode "$WORKLOAD_BIN" "$WORKLOAD_TXT" start_geode
    measure gdnsd "$WORKLOAD_BIN" "$WORKLOAD_TXT" start_gdnsd
    python3 "$BENCH/verify.py" --compare "$RUN/verify-geode.tsv" "$RUN/verify-gdnsd.tsv" > "$RUN/agreement.txt" || true
    cat "$RUN/agreement.txt" >&2
    ((ROUNDS > 0)) && interleave "$WORKLOAD_BIN"
    table geode gdnsd ;;
esac
log "results in $RUN"
