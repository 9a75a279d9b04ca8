#!/usr/bin/env bash
# Keyport side by side with node's oidc-provider (the peer, bench/peer/) and
# a hand-written ceiling server (bench/ceiling/), in one run, with the same
# wrk scripts and the same pinning: each server on CPU 0, wrk on CPU 1.
#
# Scenarios (c16 unless --concurrency says otherwise): device-authorization
# starts, pending polls, refresh rotation, userinfo, client_credentials
# (JWT, EdDSA). Keyport runs through bench/run.sh (SQLite WAL with
# synchronous=FULL, or --database-url); the peer keeps everything in
# memory; the ceiling does only each scenario's unavoidable work (see
# bench/ceiling/src/main.rs). Prints each scenario's figures and the ratios
# Keyport/peer and Keyport/ceiling (also in OUT/compare.md).
#
# Usage: bench/compare.sh [options]
#   --duration SECS      each measured run (default 10)
#   --concurrency N      connections (default 16)
#   --database-url URL   Keyport on PostgreSQL instead of SQLite
#   --out DIR            results (default bench/results/compare-<UTC timestamp>)
#   --no-build           reuse target/release/keyport and the ceiling's build
#   --quiet-wait SECS    passed to run.sh: wait for idle cores first (default 60)
#   --keep-keyport       with --out naming an earlier run: keep its Keyport
#                        figures and measure only the peer and the ceiling
# Needs wrk (Debian's package), node and npm (the peer), and cargo.
# Loopback only; every run is bounded by --duration.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
DURATION=10
CONC=16
DATABASE_URL=""
OUT=""
BUILD=1
QUIET_WAIT=60
KEEP_KEYPORT=0
POLL_CODES=200000
REFRESH_POOL=256
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --database-url) DATABASE_URL=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
        --keep-keyport) KEEP_KEYPORT=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-"$BENCH_DIR/results/compare-$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$OUT"
CEILING_TARGET="$ROOT/target/ceiling"
CEILING_BIN="$CEILING_TARGET/release/ceiling"
PEER_PORT=18191
CEILING_PORT=18201

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in wrk taskset python3 curl node npm cargo; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

if [ "$BUILD" = 1 ]; then
    log "building keyport and the ceiling (release)"
    (cd "$ROOT" && cargo build --release -q -p keyport --bin keyport) || die "keyport build failed"
    CARGO_TARGET_DIR="$CEILING_TARGET" cargo build --release -q \
        --manifest-path "$BENCH_DIR/ceiling/Cargo.toml" || die "ceiling build failed"
fi
[ -x "$CEILING_BIN" ] || die "no ceiling build at $CEILING_BIN (run without --no-build)"
log "installing the pinned oidc-provider (bench/peer/package-lock.json)"
(cd "$BENCH_DIR/peer" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed"

# ---- Keyport, through run.sh ------------------------------------------------
db=(); [ -n "$DATABASE_URL" ] && db=(--database-url "$DATABASE_URL" --fresh-pg-db)
if [ "$KEEP_KEYPORT" = 1 ] && [ -f "$OUT/keyport/results.jsonl" ]; then
    log "keyport: keeping the figures in $OUT/keyport"
else
    log "keyport: bench/run.sh"
    "$BENCH_DIR/run.sh" --no-build --scenarios device,poll,refresh,userinfo,cc --concurrency "$CONC" \
        --duration "$DURATION" --poll-codes "$POLL_CODES" --refresh-pool "$REFRESH_POOL" \
        --ready-runs 3 --quiet-wait "$QUIET_WAIT" --out "$OUT/keyport" "${db[@]}" \
        || die "keyport's run failed (see $OUT/keyport)"
fi
export BENCH_LUA_DIR="$BENCH_DIR/lua"

# ---- the peer and the ceiling -----------------------------------------------
SERVER_PID=""
stop() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop EXIT
vm() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# other NAME PORT COMMAND…: start the server on CPU 0, measure ready time and
# idle RSS, then run each scenario as run.sh does and record it alike.
other() {
    local name=$1 port=$2; shift 2
    local base="http://127.0.0.1:$port" dir="$OUT/$name" work
    work=$(mktemp -d "/tmp/keyport-compare-$name.XXXXXX")
    mkdir -p "$dir"
    curl -s -o /dev/null "$base/readyz" && die "port $port is already in use"
    log "$name: starting on $base (CPU 0)"
    taskset -c 0 "$@" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; do
        kill -0 "$SERVER_PID" 2>/dev/null || die "$name exited during start (see $dir/server.log)"
        sleep 0.01
    done
    sleep 1

    run() {  # run SCENARIO SCRIPT ARGS…
        local scenario=$1 script=$2; shift 2
        local out="$dir/$scenario-c$CONC.txt" rss0
        rss0=$(vm "$SERVER_PID" VmRSS)
        echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true
        log "$name: $scenario c=$CONC for ${DURATION}s"
        python3 "$BENCH_DIR/cpusnap.py" "$SERVER_PID" > "$work/before.json"
        ( TIMEFORMAT='%3U %3S'
          time taskset -c 1 wrk -t1 -c"$CONC" -d"${DURATION}s" --timeout 5s --latency \
              -s "$BENCH_DIR/lua/$script" "$base" -- "$@" >"$out" 2>&1 || true
        ) 2>"$work/time.txt"
        python3 "$BENCH_DIR/cpusnap.py" "$SERVER_PID" > "$work/after.json"
        kill -0 "$SERVER_PID" 2>/dev/null || die "$name died during $scenario"
        python3 "$BENCH_DIR/record.py" --results "$dir/results.jsonl" --name "$scenario" --conc "$CONC" \
            --hz "$(getconf CLK_TCK)" --before "$work/before.json" --after "$work/after.json" \
            --instance "a,$SERVER_PID,$out,$work/time.txt,$(vm "$SERVER_PID" VmHWM),$(vm "$SERVER_PID" VmRSS),$rss0,true,0,0" \
            || die "no result for $name $scenario"
        sleep 1
    }

    run device_start device_start.lua
    log "$name: seeding $POLL_CODES pending device codes"
    local have=0 deadline=$((SECONDS + 300))
    while [ "$have" -lt "$POLL_CODES" ] && [ $SECONDS -lt $deadline ]; do
        taskset -c 1 wrk -t1 -c16 -d5s --timeout 5s -s "$BENCH_DIR/lua/device_start.lua" \
            "$base" -- "$work/seed" >/dev/null 2>&1 || true
        have=$(cat "$work"/seed.* 2>/dev/null | wc -l)
    done
    [ "$have" -ge "$POLL_CODES" ] || die "$name: only $have device codes in 300 s"
    cat "$work"/seed.* | awk -v n="$POLL_CODES" 'NR <= n' > "$work/codes.txt"
    run poll_pending poll.lua "$work/codes.txt" 1
    curl -sf "$base/bench/fixtures?refresh=$REFRESH_POOL" > "$work/fixtures.json" || die "$name: no fixtures"
    python3 - "$work" <<'EOF'
import json, sys
w = sys.argv[1]
f = json.load(open(w + "/fixtures.json"))
open(w + "/refresh.txt", "w").write("\n".join(f["refresh"]) + "\n")
open(w + "/access.txt", "w").write(f["access"] + "\n")
open(w + "/cc.auth", "w").write(f["cc_authorization"] + "\n")
EOF
    run refresh refresh.lua "$work/refresh.txt" 1
    run userinfo userinfo.lua "$work/access.txt"
    run cc_jwt client_credentials.lua "$work/cc.auth"
    stop
    # Time to ready and idle RSS measured as run.sh measures Keyport's.
    python3 "$BENCH_DIR/ready.py" --port "$port" --runs 3 --out "$dir/ready.json" \
        --log "$dir/restarts.log" -- taskset -c 0 "$@" || log "warning: $name's ready measurement failed"
    rm -rf "$work"
}

other peer "$PEER_PORT" node "$BENCH_DIR/peer/server.js" "$PEER_PORT"
ceiling_data=$(mktemp -d /tmp/keyport-compare-ceiling-data.XXXXXX)
other ceiling "$CEILING_PORT" "$CEILING_BIN" "$CEILING_PORT" "$ceiling_data"
rm -rf "$ceiling_data"

python3 "$BENCH_DIR/compare.py" "$OUT" | tee "$OUT/compare.md"
log "results in $OUT"
