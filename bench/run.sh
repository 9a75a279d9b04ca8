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
#   --quiet-wait SECS    before each run, wait up to SECS for both cores to be
#                        idle (< 15% busy) when other processes are using the
#                        machine (default 300; 0 disables); CPU used by other
#                        processes during each run is recorded either way
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
QUIET_WAIT=300

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
        --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
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
BENCH_DB_URL="$DATABASE_URL" python3 - "$OUT/meta.json" <<EOF
import json, os, platform, re, subprocess, sys
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
  "database": re.sub(r"://([^:/@]*):.*@", r"://\1:***@", os.environ.get("BENCH_DB_URL", "")) or "sqlite (temp data dir)",
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

# cpu_snapshot: "cpu0_busy cpu0_total cpu1_busy cpu1_total server_ticks" (clock ticks)
cpu_snapshot() {
    local st=0
    [ -r "/proc/$SERVER_PID/stat" ] && st=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
    awk -v st="$st" '
        $1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= 9; i++) t += $i; b[$1] = t - $5 - $6; tot[$1] = t }
        END { print b["cpu0"], tot["cpu0"], b["cpu1"], tot["cpu1"], st }' /proc/stat
}

# quiet_wait: the machine is shared; wait (bounded) until neither core is
# busy with other work, so a run measures Keyport and not someone's build.
quiet_wait() {
    [ "$QUIET_WAIT" -gt 0 ] || return 0
    local deadline=$((SECONDS + QUIET_WAIT)) a b busy waited=0
    while :; do
        a=$(cpu_snapshot); sleep 2; b=$(cpu_snapshot)
        busy=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
            c0 = 100 * (y[1] - x[1]) / (y[2] - x[2] + 1e-9); c1 = 100 * (y[3] - x[3]) / (y[4] - x[4] + 1e-9);
            printf "%.0f %.0f", c0, c1 }')
        set -- $busy
        if [ "$1" -lt 15 ] && [ "$2" -lt 15 ]; then
            [ $waited = 1 ] && log "machine is quiet again (core 0 $1%, core 1 $2%)"
            return 0
        fi
        if [ $SECONDS -ge $deadline ]; then
            log "warning: machine still busy (core 0 $1%, core 1 $2%) after ${QUIET_WAIT}s; running anyway"
            return 0
        fi
        [ $waited = 0 ] && log "other processes are using the CPUs (core 0 $1%, core 1 $2%); waiting up to ${QUIET_WAIT}s"
        waited=1
    done
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
    quiet_wait
    local errs_before; errs_before=$(log_errors)
    local rss_before; rss_before=$(vm VmRSS)
    echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true  # reset VmHWM
    log "run: $name c=$conc for ${DURATION}s"
    local cpu_before; cpu_before=$(cpu_snapshot)
    local TIMEFORMAT='%3U %3S'
    { time taskset -c 1 wrk -t"$WRK_THREADS" -c"$conc" -d"${DURATION}s" --timeout 5s --latency \
        -s "$BENCH_DIR/lua/$script" "$BASE" -- "$@" >"$out" 2>&1 ; } 2>"$WORK/wrk-time.txt" || true
    local cpu_after; cpu_after=$(cpu_snapshot)
    local alive=true hwm rss
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        hwm=$(vm VmHWM); rss=$(vm VmRSS)
    else
        alive=false; hwm=0; rss=0
    fi
    local errs_after; errs_after=$(log_errors)
    local json; json=$(grep '^BENCH_JSON ' "$out" | sed 's/^BENCH_JSON //' || true)
    [ -n "$json" ] || { cat "$out" >&2; die "wrk printed no result for $name c$conc"; }
    python3 - "$RESULTS" "$name" "$conc" "$hwm" "$rss" "$alive" "$((errs_after - errs_before))" "$json" \
        "$cpu_before" "$cpu_after" "$(tail -1 "$WORK/wrk-time.txt")" "$(getconf CLK_TCK)" "$rss_before" <<'EOF'
import json, sys
path, name, conc, hwm, rss, alive, logerr, js, before, after, wrk_time, hz, rss0 = sys.argv[1:]
r = json.loads(js)
r.update(scenario=name, concurrency=int(conc), peak_rss_kb=int(hwm), rss_after_kb=int(rss),
         rss_before_kb=int(rss0),
         server_alive=alive == "true", server_error_log_lines=int(logerr))
# CPU accounting over the run: how busy each core was, how much of core 0
# the server used, how much of core 1 wrk used, and the rest ("foreign":
# other processes on this machine competing with the benchmark).
b, a = [int(x) for x in before.split()], [int(x) for x in after.split()]
hz = int(hz)
try:
    wrk_cpu_s = sum(float(x) for x in wrk_time.split())
except ValueError:
    wrk_cpu_s = 0.0
wall = max(a[1] - b[1], 1) / hz  # ticks of one core == wall seconds
cpu0, cpu1 = (a[0] - b[0]) / hz, (a[2] - b[2]) / hz
server = (a[4] - b[4]) / hz if a[4] else 0.0
r.update(cpu0_busy_pct=round(100 * cpu0 / wall, 1), cpu1_busy_pct=round(100 * cpu1 / wall, 1),
         server_cpu_pct=round(100 * server / wall, 1), wrk_cpu_pct=round(100 * wrk_cpu_s / wall, 1),
         foreign_cpu0_pct=round(100 * max(cpu0 - server, 0) / wall, 1),
         foreign_cpu1_pct=round(100 * max(cpu1 - wrk_cpu_s, 0) / wall, 1))
open(path, "a").write(json.dumps(r) + "\n")
c = r["counts"]
print("  %-14s c=%-3s %9.0f req/s  p50 %.2f ms  p99 %.2f ms  counts %s  peak RSS %.1f MiB\n"
      "  %-14s cpu: server %.0f%%, wrk %.0f%%, other processes %.0f%% on core 0 / %.0f%% on core 1"
      % (name, conc, r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
         json.dumps(c, sort_keys=True), int(hwm) / 1024, "", r["server_cpu_pct"], r["wrk_cpu_pct"],
         r["foreign_cpu0_pct"], r["foreign_cpu1_pct"]), file=sys.stderr)
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
    cat "$WORK"/seed.* > "$WORK/seed-all.txt"
    head -n "$want" "$WORK/seed-all.txt" > "$file"
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

# ---- memory kept after password sign-ins -------------------------------------
log "RSS after 8 sequential browser sign-ins (Argon2id each)"
taskset -c 1 python3 "$BENCH_DIR/signin_rss.py" --base "$BASE" --pid "$SERVER_PID" \
    --email demo@example.com --password "$PASSWORD" --count 8 --out "$OUT/signin_rss.json" \
    || log "warning: sign-in RSS measurement failed"

# ---- database size, then time-to-ready on the existing database --------------
du -sk "$DATA_DIR/data" 2>/dev/null | awk '{print $1}' > "$OUT/data_dir_kb.txt" || true
log "stopping the server (SIGTERM)"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || log "server exit status $?"
SERVER_PID=""

quiet_wait
log "time to ready on the existing database: $READY_RUNS restarts"
python3 "$BENCH_DIR/ready.py" --port "$PORT" --runs "$READY_RUNS" --log "$OUT/server-restarts.log" \
    --out "$OUT/ready.json" -- taskset -c 0 "$BIN" "${SERVE_ARGS[@]}"

python3 "$BENCH_DIR/report.py" "$OUT" | tee "$OUT/results.md"
gzip -f "$SERVER_LOG" 2>/dev/null || true   # one audit line per token grant: large
log "results in $OUT"
