#!/usr/bin/env bash
# Failover time: how long after a backend dies does geode stop handing out its
# addresses, and how long after it comes back are they handed out again?
#
#   bench/failover.sh
#
# Setup (all on 127.0.0.1): a tiny HTTP backend (bench/backend.py, GET /health -> 200
# "ok"); geode with the GeoLite2-City database and three regions: eu-west (Dublin,
# 192.0.2.30 and .31, both probed at the backend: http /health, interval 500ms,
# timeout 300ms, fall 2, rise 2), eu-central and us-east (no checks: always up).
# The client is an ECS /24 from the "geo" corpus whose nearest region is eu-west.
# bench/failwatch.py (monitor) queries every 20 ms for the whole run and timestamps
# every change of the answer; the script prints the seconds from each event to the
# first answer that shows the change: "out" = neither eu-west address is in the answer
# any more (the client was moved to eu-central), "back" = both are in it again (the
# two endpoints are probed independently, so they flip a few ms apart). Scenarios:
#   crash  kill -KILL the backend (probes get "connection refused"), then restart it;
#   hang   kill -STOP the backend (probes time out after 300ms), then kill -CONT.
# Expected with these settings: down within about fall x interval (+ timeout for a
# hang) = 1.0-1.3 s, up within about rise x interval = 0.5-1.0 s.
# If geode's health checking is not active, the answers never change and the script
# says "no change after 30 s".
#
# Environment: GEODE_BIN (default: bench/out/bin/geode if present, else
# target/release/geode; run bench/run.sh geode or cargo build --release first),
# PORT=15363 HTTP_PORT=19163 BACKEND_PORT=18080 TIMEOUT=30
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
PORT="${PORT:-15363}"
HTTP_PORT="${HTTP_PORT:-19163}"
BACKEND_PORT="${BACKEND_PORT:-18080}"
TIMEOUT="${TIMEOUT:-30}"
if [[ -z "${GEODE_BIN:-}" ]]; then
  GEODE_BIN="$ROOT/target/release/geode"
  [[ -x "$BENCH/out/bin/geode" ]] && GEODE_BIN="$BENCH/out/bin/geode"
fi
[[ -x "$GEODE_BIN" ]] || { echo "no geode binary at $GEODE_BIN: cargo build --release first" >&2; exit 1; }

RUN="$BENCH/out/failover-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN"
log() { printf '[failover.sh] %s\n' "$*" >&2; }

BACKEND_PID=""
GEODE_PID=""
cleanup() {
  if [[ -n "$BACKEND_PID" ]]; then kill -CONT "$BACKEND_PID" 2>/dev/null || true; kill "$BACKEND_PID" 2>/dev/null || true; fi
  if [[ -n "$GEODE_PID" ]]; then kill "$GEODE_PID" 2>/dev/null || true; fi
  if [[ -n "${MON_PID:-}" ]]; then kill "$MON_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

DB="$("$BENCH/fetch-geolite2.sh")"
python3 -c 'import maxminddb' 2>/dev/null || python3 -m pip install --quiet maxminddb >&2
if [[ ! -s "$BENCH/data/geo.txt" ]]; then
  python3 "$BENCH/gen-workload.py" --db "$DB" --workload geo --out "$BENCH/data/geo.bin" --text "$BENCH/data/geo.txt"
fi
# A client /24 whose nearest region (no tie) is eu-west, preferably in Ireland.
ECS="$(awk -F'\t' '$8 == "eu-west" && $6 == "IE" {print $3; exit}' "$BENCH/data/geo.txt")"
[[ -n "$ECS" ]] || ECS="$(awk -F'\t' '$8 == "eu-west" {print $3; exit}' "$BENCH/data/geo.txt")"
[[ -n "$ECS" ]] || { echo "no eu-west client in bench/data/geo.txt" >&2; exit 1; }
ADDR=192.0.2.30,192.0.2.31   # both eu-west endpoints

cat > "$RUN/failover.toml" <<EOF
# written by bench/failover.sh
[server]
dns_listen  = ["127.0.0.1:$PORT"]
http_listen = "127.0.0.1:$HTTP_PORT"
geoip_db    = "$DB"
udp_sockets = 1

[zones."gslb.example."]
soa = { mname = "ns1.gslb.example.", rname = "hostmaster.gslb.example.", serial = 1 }
ns  = ["ns1.gslb.example."]
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]

[checks.web]
type = "http"
port = $BACKEND_PORT
path = "/health"
interval = "500ms"
timeout  = "300ms"
rise = 2
fall = 2

[regions.eu-west]
location = { lat = 53.35, lon = -6.26 }      # Dublin
endpoints = [
  { address = "192.0.2.30", check = "web", probe = "127.0.0.1:$BACKEND_PORT" },
  { address = "192.0.2.31", check = "web", probe = "127.0.0.1:$BACKEND_PORT" },
]

[regions.eu-central]
location = { lat = 50.11, lon = 8.68 }       # Frankfurt
endpoints = [{ address = "192.0.2.40" }, { address = "192.0.2.41" }]

[regions.us-east]
location = { lat = 39.04, lon = -77.49 }     # Ashburn
endpoints = [{ address = "192.0.2.10" }, { address = "192.0.2.11" }]

[services."www.gslb.example."]
regions = ["eu-west", "eu-central", "us-east"]
ttl = 5
EOF

start_backend() {
  python3 "$BENCH/backend.py" --port "$BACKEND_PORT" >> "$RUN/backend.log" 2>&1 &
  BACKEND_PID=$!
  local i
  for ((i = 0; i < 250; i++)); do
    [[ "$(grep -cs 'backend listening' "$RUN/backend.log")" -ge "$1" ]] && return 0
    sleep 0.02
  done
  echo "backend did not start (port $BACKEND_PORT busy?)" >&2; exit 1
}

MON_PID=""
watch() {  # until since
  python3 "$BENCH/failwatch.py" wait --log "$RUN/monitor.log" --addr "$ADDR" --until "$1" \
    --since "$2" --timeout "$TIMEOUT" || true
}
now() { date +%s.%N; }
listened_at() { grep 'backend listening' "$RUN/backend.log" | tail -1 | awk '{print $NF}'; }

log "backend on 127.0.0.1:$BACKEND_PORT"
start_backend 1
log "geode ($GEODE_BIN) on 127.0.0.1:$PORT; client $ECS; watching $ADDR (eu-west)"
"$GEODE_BIN" serve --config "$RUN/failover.toml" > "$RUN/geode.log" 2>&1 &
GEODE_PID=$!
for ((i = 0; i < 600; i++)); do
  grep -qs "ready" "$RUN/geode.log" && break
  kill -0 "$GEODE_PID" 2>/dev/null || { cat "$RUN/geode.log" >&2; exit 1; }
  sleep 0.1
done
grep -qs "ready" "$RUN/geode.log" || { echo "geode not ready" >&2; cat "$RUN/geode.log" >&2; exit 1; }

# One monitor for the whole run: it timestamps every change of the answer.
python3 "$BENCH/failwatch.py" monitor --port "$PORT" --ecs "$ECS" --out "$RUN/monitor.log" \
  --max-seconds $((6 * TIMEOUT + 30)) &
MON_PID=$!
base="$(watch present "$(now)")"
log "baseline: $ADDR in answer: $base"

log "crash: kill -KILL backend"
t="$(now)"; kill -KILL "$BACKEND_PID"; wait "$BACKEND_PID" 2>/dev/null || true
crash_down="$(watch absent "$t")"
log "  out of answers: $crash_down"
sleep 1
start_backend 2
crash_up="$(watch present "$(listened_at)")"   # from the moment the backend listens again
log "  back in answers after restart: $crash_up"

sleep 2
log "hang: kill -STOP backend"
t="$(now)"; kill -STOP "$BACKEND_PID"
hang_down="$(watch absent "$t")"
log "  out of answers: $hang_down"
sleep 1
t="$(now)"; kill -CONT "$BACKEND_PID"
hang_up="$(watch present "$t")"
log "  back in answers after SIGCONT: $hang_up"
kill "$MON_PID" 2>/dev/null || true

{
  echo "## geode failover ($(date -u +%FT%TZ)), $("$GEODE_BIN" --version 2>/dev/null || echo geode)"
  echo
  echo "probe: http /health, interval 500ms, timeout 300ms, fall 2, rise 2; client $ECS -> eu-west ($ADDR), else eu-central"
  echo
  echo "| scenario | out of answers after | back in answers after |"
  echo "|---|---|---|"
  echo "| crash (kill -KILL; restart, timed from when it listens) | $crash_down | $crash_up |"
  echo "| hang (kill -STOP, kill -CONT) | $hang_down | $hang_up |"
  echo
  echo "geode health log lines:"
  grep -iE "health|probe| up| down" "$RUN/geode.log" | grep -v "listening" | head -20 | sed 's/^/    /'
  echo
  echo "answers seen by the monitor (unix time, A records):"
  sed 's/^/    /' "$RUN/monitor.log"
} | tee "$RUN/result.md"
log "logs in $RUN"
