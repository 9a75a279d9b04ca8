#!/usr/bin/env bash
# Keyport load benchmark: device starts, pending polls, refresh grants and
# userinfo, at two concurrency levels, plus idle RSS and time-to-ready.
#
# The server runs pinned to CPU 0, wrk pinned to CPU 1, on 127.0.0.1 only;
# every wrk run is bounded by --duration. See bench/README.md.
#
# Usage: bench/run.sh [options]
#   --database-url URL   pass to `keyport serve` (default: SQLite in a temp data dir)
#   --duration SECS      length of each measured run (default 10)
#   --concurrency "A B"  connection counts (default "16 64")
#   --poll-codes N       pending device codes created per poll run (default 75000)
#   --refresh-pool N     refresh-token chains per refresh run (default 256)
#   --ready-runs N       restarts for the time-to-ready measurement (default 5)
#   --port PORT          listen port (default 18181)
#   --out DIR            results folder (default bench/results/<UTC timestamp>)
#   --no-build           reuse target/release/keyport as it is
#   --keep               keep the temp data dir
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BIN="$ROOT/target/release/keyport"

DATABASE_URL=""
DURATION=10
CONCURRENCY="16 64"
POLL_CODES=75000
REFRESH_POOL=256
READY_RUNS=5
PORT=18181
OUT=""
BUILD=1
KEEP=0
WRK_THREADS=1

while [ $# -gt 0 ]; do
    case "$1" in
        --database-url) DATABASE_URL=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --poll-codes) POLL_CODES=$2; shift 2 ;;
        --refresh-pool) REFRESH_POOL=$2; shift 2 ;;
        --ready-runs) READY_RUNS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in wrk taskset python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (wrk: apt-get install -y wrk)"
done
python3 -c 'import requests' 2>/dev/null || die "python3 needs the requests package"
[ "$(nproc --all)" -ge 2 ] || die "needs at least 2 CPUs (server on CPU 0, wrk on CPU 1)"

OUT=${OUT:-"$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
export BENCH_LUA_DIR="$BENCH_DIR/lua"

if [ "$BUILD" = 1 ]; then
    log "building: cargo build --release --bin keyport"
    (cd "$ROOT" && cargo build --release --bin keyport) >"$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log" >&2; die "build failed (see $OUT/build.log)"; }
fi
[ -x "$BIN" ] || die "$BIN not found (drop --no-build)"

DATA_DIR=$(mktemp -d /tmp/keyport-bench.XXXXXX)
WORK="$DATA_DIR/work"
mkdir -p "$WORK"
BASE="http://127.0.0.1:$PORT"
STORE_ARGS=(--data-dir "$DATA_DIR/data")
[ -n "$DATABASE_URL" ] && STORE_ARGS+=(--database-url "$DATABASE_URL")
SERVE_ARGS=(serve "${STORE_ARGS[@]}" --listen "127.0.0.1:$PORT" --issuer "$BASE"
    --no-rate-limits --log-format json)
SERVER_LOG="$OUT/server.log"
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then log "data dir kept: $DATA_DIR"; else rm -rf "$DATA_DIR"; fi
}
trap cleanup EXIT

if curl -s -o /dev/null "$BASE/healthz"; then die "port $PORT is already in use"; fi

# ---- metadata -------------------------------------------------------------
python3 - "$OUT/meta.json" <<EOF
import json, os, platform, subprocess, sys
def sh(*c):
    try: return subprocess.run(c, capture_output=True, text=True, cwd="$ROOT").stdout.strip()
    except Exception: return ""
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
json.dump({
  "date_utc": sh("date", "-u", "+%Y-%m-%d %H:%M:%S"),
  "git_commit": sh("git", "rev-parse", "--short", "HEAD"),
  "git_dirty_files": len([l for l in sh("git", "status", "--porcelain").splitlines() if l.strip()]),
  "cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
  "wrk": sh("sh", "-c", "wrk -v 2>&1 | head -1"),
  "duration_s": $DURATION, "concurrency": "$CONCURRENCY", "wrk_threads": $WRK_THREADS,
  "database": "${DATABASE_URL:+postgres/other (--database-url)}" or "sqlite (temp data dir)",
  "poll_codes_per_run": $POLL_CODES, "refresh_pool_per_run": $REFRESH_POOL,
}, open(sys.argv[1], "w"), indent=2)
EOF

# ---- helpers ----------------------------------------------------------------
wait_ready() {  # wait_ready TIMEOUT_S
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200 ]; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during start (see $SERVER_LOG)"
        sleep 0.05
    done
    die "server not ready after $1 s"
}

vm() {  # vm FIELD -> kB
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$SERVER_PID/status"
}

log_errors() {  # server log lines at ERROR level or panics
    grep -c -E '"level":"ERROR"|panicked' "$SERVER_LOG" || true
}

# run_wrk NAME CONC SCRIPT [SCRIPT ARGS…]: one measured run, one line in results.jsonl
run_wrk() {
    local name=$1 conc=$2 script=$3; shift 3
    local out="$OUT/$name-c$conc.txt"
    kill -0 "$SERVER_PID" 2>/dev/null || die "server is not running before $name c$conc"
    local errs_before; errs_before=$(log_errors)
    echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true  # reset VmHWM
    log "run: $name c=$conc for ${DURATION}s"
    taskset -c 1 wrk -t"$WRK_THREADS" -c"$conc" -d"${DURATION}s" --timeout 5s --latency \
        -s "$BENCH_DIR/lua/$script" "$BASE" -- "$@" >"$out" 2>&1 || true
    local alive=true hwm rss
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        hwm=$(vm VmHWM); rss=$(vm VmRSS)
    else
        alive=false; hwm=0; rss=0
    fi
    local errs_after; errs_after=$(log_errors)
    local json; json=$(grep '^BENCH_JSON ' "$out" | sed 's/^BENCH_JSON //' || true)
    [ -n "$json" ] || { cat "$out" >&2; die "wrk printed no result for $name c$conc"; }
    python3 - "$RESULTS" "$name" "$conc" "$hwm" "$rss" "$alive" "$((errs_after - errs_before))" "$json" <<'EOF'
import json, sys
path, name, conc, hwm, rss, alive, logerr, js = sys.argv[1:]
r = json.loads(js)
r.update(scenario=name, concurrency=int(conc), peak_rss_kb=int(hwm), rss_after_kb=int(rss),
         server_alive=alive == "true", server_error_log_lines=int(logerr))
open(path, "a").write(json.dumps(r) + "\n")
c = r["counts"]
print("  %-14s c=%-3s %9.0f req/s  p50 %.2f ms  p99 %.2f ms  counts %s  peak RSS %.1f MiB"
      % (name, conc, r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
         json.dumps(c, sort_keys=True), int(hwm) / 1024), file=sys.stderr)
EOF
    [ "$alive" = true ] || die "server died during $name c$conc (see $SERVER_LOG)"
    sleep 1
}

# seed_codes N FILE: create at least N pending device codes (not measured)
seed_codes() {
    local want=$1 file=$2 have=0 tries=0
    rm -f "$WORK"/seed.*
    while [ "$have" -lt "$want" ] && [ $tries -lt 24 ]; do
        taskset -c 1 wrk -t1 -c16 -d5s --timeout 5s -s "$BENCH_DIR/lua/device_start.lua" \
            "$BASE" -- "$WORK/seed" >/dev/null 2>&1 || true
        have=$(cat "$WORK"/seed.* 2>/dev/null | wc -l)
        tries=$((tries + 1))
    done
    [ "$have" -ge "$want" ] || die "could create only $have of $want device codes"
    cat "$WORK"/seed.* | head -n "$want" > "$file"
    log "seeded $want pending device codes"
}

# ---- start ------------------------------------------------------------------
log "starting keyport on $BASE (CPU 0), data dir $DATA_DIR"
START_NS=$(date +%s%N)
taskset -c 0 "$BIN" "${SERVE_ARGS[@]}" --demo >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
wait_ready 60
FIRST_READY_MS=$(( ($(date +%s%N) - START_NS) / 1000000 ))
PASSWORD=$(grep -o 'with password [^ ]*' "$SERVER_LOG" | head -1 | awk '{print $3}')
[ -n "$PASSWORD" ] || die "no demo password in $SERVER_LOG"
sleep 2
IDLE_FRESH_KB=$(vm VmRSS)
log "ready after ${FIRST_READY_MS} ms (first start, with --demo seeding); idle RSS $((IDLE_FRESH_KB / 1024)) MiB"
printf '{"first_start_ready_ms": %d, "idle_rss_fresh_kb": %d}\n' "$FIRST_READY_MS" "$IDLE_FRESH_KB" \
    > "$OUT/start.json"

# ---- 1. device-authorization starts ---------------------------------------
for c in $CONCURRENCY; do
    run_wrk device_start "$c" device_start.lua
done

# ---- 2. pending polls -------------------------------------------------------
for c in $CONCURRENCY; do
    seed_codes "$POLL_CODES" "$WORK/codes-c$c.txt"
    run_wrk poll_pending "$c" poll.lua "$WORK/codes-c$c.txt" "$WRK_THREADS"
done

# ---- tokens for 3 and 4: real device logins through the hosted page --------
NCONC=$(wc -w <<<"$CONCURRENCY")
log "approving $((REFRESH_POOL * NCONC)) device logins through /device (one sign-in)"
if ! taskset -c 1 python3 "$BENCH_DIR/approve.py" --base "$BASE" --email demo@example.com \
    --password "$PASSWORD" --count $((REFRESH_POOL * NCONC)) \
    --refresh-out "$WORK/refresh-all.txt" --access-out "$WORK/access.txt" 2>&1 \
    | tee "$OUT/approve.log" >&2; then
    die "device logins failed (see $OUT/approve.log)"
fi

# ---- 3. refresh grants -------------------------------------------------------
i=0
for c in $CONCURRENCY; do
    sed -n "$((i * REFRESH_POOL + 1)),$(((i + 1) * REFRESH_POOL))p" "$WORK/refresh-all.txt" \
        > "$WORK/refresh-c$c.txt"
    run_wrk refresh "$c" refresh.lua "$WORK/refresh-c$c.txt" "$WRK_THREADS"
    i=$((i + 1))
done

# ---- 4. userinfo --------------------------------------------------------------
for c in $CONCURRENCY; do
    run_wrk userinfo "$c" userinfo.lua "$WORK/access.txt"
done

# ---- database size, then time-to-ready on the existing database --------------
du -sk "$DATA_DIR/data" 2>/dev/null | awk '{print $1}' > "$OUT/data_dir_kb.txt" || true
log "stopping the server (SIGTERM)"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || log "server exit status $?"
SERVER_PID=""

log "time to ready on the existing database: $READY_RUNS restarts"
python3 "$BENCH_DIR/ready.py" --port "$PORT" --runs "$READY_RUNS" --log "$OUT/server-restarts.log" \
    --out "$OUT/ready.json" -- taskset -c 0 "$BIN" "${SERVE_ARGS[@]}"

python3 "$BENCH_DIR/report.py" "$OUT" | tee "$OUT/results.md"
log "results in $OUT"
