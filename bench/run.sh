#!/usr/bin/env bash
# Keyport load benchmark: device starts, pending polls, refresh grants and
# userinfo (and, with --scenarios, client credentials grants and
# authorization code exchanges), at two concurrency levels, plus idle RSS
# and time-to-ready.
#
# One instance: the server runs pinned to CPU 0, wrk pinned to CPU 1.
# Two instances (--instances 2, PostgreSQL only): instance A on CPU 0,
# instance B on CPU 1, two wrk processes (one per instance, half the
# connections each) unpinned. Loopback only; every wrk run is bounded by
# --duration. See bench/README.md.
#
# Usage: bench/run.sh [options]
#   --database-url URL   pass to `keyport serve` (default: SQLite in a temp data dir)
#   --fresh-pg-db        drop and re-create the PostgreSQL database named in
#                        --database-url first (via the `postgres` database on
#                        the same server; needs psql)
#   --instances N        1 (default) or 2 `keyport serve` processes on the same
#                        database; 2 needs --database-url postgres://…
#   --duration SECS      length of each measured run (default 10)
#   --concurrency "A B"  connection counts, in total over the instances (default "16 64")
#   --poll-codes N       pending device codes per instance per poll run (default 200000: a code comes round again only after its 5 s interval at up to 40,000 polls/s)
#   --refresh-pool N     refresh-token chains per refresh run (default 256)
#   --ready-runs N       restarts for the time-to-ready measurement (default 5)
#   --port PORT          listen port of instance A; B listens on PORT+1 (default 18181)
#   --out DIR            results folder (default bench/results/<UTC timestamp>)
#   --scenarios LIST     which load scenarios to run, comma- or space-separated:
#                        device poll refresh userinfo cc code password apikey
#                        audit, or "all" (apikey: userinfo with a kp_pat_ API
#                        key made on the dashboard; audit: the workspace audit
#                        page and its CSV/JSON export over --audit-rows events)
#                        (password: the Argon2id limit of one core, password
#                        grants and an unknown-user spray, and pending polls
#                        while a password flood runs; one instance only)
#                        (default: device,poll,refresh,userinfo)
#   --audit-rows N       audit events added for the audit scenario (default 100000)
#   --code-pool N        codes minted per code-exchange run (default 0: sized
#                        from a pilot run, 1.5 x its rate x the run's length)
#   --bin PATH           the keyport binary to run (implies --no-build;
#                        default target/release/keyport)
#   --code-bench PATH    the code_bench example binary (default: examples/code_bench
#                        next to the keyport binary)
#   --server-cpus LIST   CPUs for the (single) server, taskset syntax (default 0;
#                        "0,1" lets it use both cores, as in production, while
#                        wrk stays on CPU 1)
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
CODE_BENCH=""
SCENARIOS="device poll refresh userinfo"
CODE_POOL=0
AUDIT_ROWS=100000

DATABASE_URL=""
FRESH_PG_DB=0
INSTANCES=1
DURATION=10
CONCURRENCY="16 64"
POLL_CODES=200000
REFRESH_POOL=256
READY_RUNS=5
PORT=18181
OUT=""
BUILD=1
KEEP=0
WRK_THREADS=1
QUIET_WAIT=300
SERVER_CPUS=0

while [ $# -gt 0 ]; do
    case "$1" in
        --database-url) DATABASE_URL=$2; shift 2 ;;
        --fresh-pg-db) FRESH_PG_DB=1; shift ;;
        --instances) INSTANCES=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --poll-codes) POLL_CODES=$2; shift 2 ;;
        --refresh-pool) REFRESH_POOL=$2; shift 2 ;;
        --ready-runs) READY_RUNS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --code-pool) CODE_POOL=$2; shift 2 ;;
        --audit-rows) AUDIT_ROWS=$2; shift 2 ;;
        --bin) BIN=$2; BUILD=0; shift 2 ;;
        --code-bench) CODE_BENCH=$2; shift 2 ;;
        --server-cpus) SERVER_CPUS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
        -h|--help) sed -n '2,48p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

SCENARIOS=${SCENARIOS//,/ }
[ "$SCENARIOS" = all ] && SCENARIOS="device poll refresh userinfo cc code password apikey audit"
for s in $SCENARIOS; do
    case "$s" in device|poll|refresh|userinfo|cc|code|password|apikey|audit) ;; *) die "unknown scenario $s (--scenarios)" ;; esac
done
want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }
# A code lives 60 s: minting plus the run must fit in it.
CODE_DURATION=$(( DURATION < 20 ? DURATION : 20 ))

IS_PG=0
case "$DATABASE_URL" in postgres://*|postgresql://*) IS_PG=1 ;; esac
case "$INSTANCES" in
    1) ;;
    2) [ "$IS_PG" = 1 ] || die "--instances 2 needs --database-url postgres://… (two processes do not share a SQLite database; SQLite has one writer per file)" ;;
    *) die "--instances must be 1 or 2" ;;
esac
[ "$FRESH_PG_DB" = 0 ] || [ "$IS_PG" = 1 ] || die "--fresh-pg-db needs --database-url postgres://…"
if [ "$INSTANCES" = 2 ]; then
    for c in $CONCURRENCY; do
        [ $((c % 2)) = 0 ] || die "with --instances 2 every --concurrency value must be even (split over two wrk runs)"
    done
fi

for tool in wrk taskset python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (wrk: apt-get install -y wrk)"
done
[ "$FRESH_PG_DB" = 0 ] || command -v psql >/dev/null || die "--fresh-pg-db needs psql"
python3 -c 'import requests' 2>/dev/null || die "python3 needs the requests package"
if [ "$FRESH_PG_DB" = 1 ]; then
    # the maintenance URL (same server, database `postgres`) and the name to re-create
    read -r ADMIN_URL DB_NAME < <(python3 - "$DATABASE_URL" <<'EOF'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
name = u.unquote(p.path.lstrip("/"))
if not name or name in ("postgres", "template0", "template1") or not name.replace("_", "").isalnum():
    sys.exit("run.sh: --fresh-pg-db refuses database name %r (use a dedicated one, e.g. keyport_bench)" % name)
print(u.urlunsplit((p.scheme, p.netloc, "/postgres", p.query, "")), name)
EOF
    ) || die "bad --database-url for --fresh-pg-db"
fi
[ "$(nproc --all)" -ge 2 ] || die "needs at least 2 CPUs (see bench/README.md for the pinning)"

OUT=${OUT:-"$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
export BENCH_LUA_DIR="$BENCH_DIR/lua"

CODE_BENCH=${CODE_BENCH:-"$(dirname "$BIN")/examples/code_bench"}
if [ "$BUILD" = 1 ]; then
    targets=(--bin keyport); want code && targets+=(--example code_bench)
    want password && targets+=(--example argon2_rate)
    log "building: cargo build --release ${targets[*]}"
    (cd "$ROOT" && cargo build --release "${targets[@]}") >"$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log" >&2; die "build failed (see $OUT/build.log)"; }
fi
[ -x "$BIN" ] || die "$BIN not found (drop --no-build)"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ARGON2_RATE="$(dirname "$BIN")/examples/argon2_rate"
if want password; then
    [ "$INSTANCES" = 1 ] || die "--scenarios password runs on one instance"
    [ -x "$ARGON2_RATE" ] || die "$ARGON2_RATE not found (cargo build --release --example argon2_rate)"
fi
if want code; then
    [ -x "$CODE_BENCH" ] || die "$CODE_BENCH not found (cargo build --release --example code_bench, or --code-bench PATH)"
fi

# ---- instances ----------------------------------------------------------------
# Instance A: --demo, fixtures, the issuer. Instance B (with --instances 2):
# same database and issuer (as behind one load balancer; access tokens carry
# the issuer), its own port and data dir, and the same master key as A so
# it can open the signing keys A created in the database.
DATA_DIR=$(mktemp -d /tmp/keyport-bench.XXXXXX)
WORK="$DATA_DIR/work"
mkdir -p "$WORK"
PORT_A=$PORT
PORT_B=$((PORT + 1))
BASE="http://127.0.0.1:$PORT_A"          # instance A, and the issuer of both
BASE_B="http://127.0.0.1:$PORT_B"
serve_args() {  # serve_args PORT DATA_DIR -> prints nothing; sets SERVE
    SERVE=(serve --data-dir "$2")
    [ -n "$DATABASE_URL" ] && SERVE+=(--database-url "$DATABASE_URL")
    SERVE+=(--listen "127.0.0.1:$1" --issuer "$BASE" --no-rate-limits --log-format json)
}
serve_args "$PORT_A" "$DATA_DIR/data"; SERVE_A=("${SERVE[@]}")
serve_args "$PORT_B" "$DATA_DIR/data-b"; SERVE_B=("${SERVE[@]}")
SERVER_LOG="$OUT/server.log"             # instance A
SERVER_B_LOG="$OUT/server-b.log"
SERVER_PID=""                            # instance A
SERVER_B_PID=""
if [ "$INSTANCES" = 2 ]; then
    # One throwaway master key per bench run, shared by both instances (and
    # the restarts of A below), exported below for the servers to inherit.
    MASTER_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    CPU_A=0; CPU_B=1; WRK_PIN=()         # wrk (and PostgreSQL) unpinned
else
    MASTER_KEY=""
    CPU_A=$SERVER_CPUS; WRK_PIN=(taskset -c 1)
fi
# The servers (and the restarts of A) inherit it; nothing else reads it.
[ -n "$MASTER_KEY" ] && export KEYPORT_MASTER_KEY="$MASTER_KEY"

stop_server() {  # stop_server PID
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    stop_server "$SERVER_B_PID"
    stop_server "$SERVER_PID"
    if [ "$KEEP" = 1 ]; then log "data dir kept: $DATA_DIR"; else rm -rf "$DATA_DIR"; fi
}
trap cleanup EXIT

for b in "$BASE" $([ "$INSTANCES" = 2 ] && echo "$BASE_B"); do
    if curl -s -o /dev/null "$b/healthz"; then die "port of $b is already in use"; fi
done

# ---- a fresh PostgreSQL database ----------------------------------------------
if [ "$FRESH_PG_DB" = 1 ]; then
    log "re-creating PostgreSQL database $DB_NAME"
    psql -q -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" \
        -c "CREATE DATABASE \"$DB_NAME\"" >&2 || die "could not re-create database $DB_NAME"
fi

# ---- metadata -------------------------------------------------------------
BENCH_DB_URL="$DATABASE_URL" python3 - "$OUT/meta.json" <<EOF
import json, os, platform, re, subprocess, sys
def sh(*c):
    try: return subprocess.run(c, capture_output=True, text=True, cwd="$ROOT").stdout.strip()
    except Exception: return ""
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
pg = sh("sh", "-c", 'psql "\$BENCH_DB_URL" -Atc "select version()" 2>/dev/null') if $IS_PG else ""
json.dump({
  "date_utc": sh("date", "-u", "+%Y-%m-%d %H:%M:%S"),
  "git_commit": sh("git", "rev-parse", "--short", "HEAD"),
  "git_dirty_files": len([l for l in sh("git", "status", "--porcelain").splitlines() if l.strip()]),
  "cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
  "wrk": sh("sh", "-c", "wrk -v 2>&1 | head -1"),
  "duration_s": $DURATION, "concurrency": "$CONCURRENCY", "wrk_threads": $WRK_THREADS,
  "instances": $INSTANCES, "fresh_pg_db": bool($FRESH_PG_DB),
  "pinning": ("instance A on CPU 0, instance B on CPU 1; two wrk processes (one per instance, "
              "half the connections each) and PostgreSQL unpinned") if $INSTANCES == 2 else
             "server on CPU(s) $SERVER_CPUS, wrk (1 thread) on CPU 1" + ("; PostgreSQL unpinned" if $IS_PG else ""),
  "database": re.sub(r"://([^:/@]*):.*@", r"://\1:***@", os.environ.get("BENCH_DB_URL", "")) or "sqlite (temp data dir)",
  "postgres": pg.split(" on ")[0] if pg else None,
  "poll_codes_per_run": $POLL_CODES, "refresh_pool_per_run": $REFRESH_POOL,
  "scenarios": "$SCENARIOS", "code_duration_s": $CODE_DURATION,
  "bin": "$BIN", "bin_version": sh("$BIN", "--version"),
  "bin_sha256": sh("sha256sum", "$BIN").split(" ")[0],
  "bin_mtime_utc": sh("date", "-u", "-r", "$BIN", "+%Y-%m-%d %H:%M:%S"),
}, open(sys.argv[1], "w"), indent=2)
EOF

# ---- helpers ----------------------------------------------------------------
wait_ready() {  # wait_ready BASE PID LOG TIMEOUT_S
    local deadline=$((SECONDS + $4))
    while [ $SECONDS -lt $deadline ]; do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ]; then return 0; fi
        kill -0 "$2" 2>/dev/null || { tail -5 "$3" >&2; die "server $1 exited during start (see $3)"; }
        sleep 0.05
    done
    die "server $1 not ready after $4 s"
}

# core_busy: "cpu0_busy cpu0_total cpu1_busy cpu1_total" (clock ticks)
core_busy() {
    awk '$1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= 9; i++) t += $i; b[$1] = t - $5 - $6; tot[$1] = t }
        END { print b["cpu0"], tot["cpu0"], b["cpu1"], tot["cpu1"] }' /proc/stat
}

# quiet_wait: the machine is shared; wait (bounded) until neither core is
# busy with other work, so a run measures Keyport and not someone's build.
quiet_wait() {
    [ "$QUIET_WAIT" -gt 0 ] || return 0
    local deadline=$((SECONDS + QUIET_WAIT)) a b busy waited=0
    while :; do
        a=$(core_busy); sleep 2; b=$(core_busy)
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

vm() {  # vm PID FIELD -> kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

log_errors() {  # log_errors LOG: server log lines at ERROR level or panics
    [ -f "$1" ] || { echo 0; return; }
    grep -c -E '"level":"ERROR"|panicked' "$1" || true
}
log_warns() {  # log_warns LOG: server log lines at WARN level (e.g. PostgreSQL notices)
    [ -f "$1" ] || { echo 0; return; }
    grep -c '"level":"WARN"' "$1" || true
}

# The instances as parallel arrays: label, pid, base URL, log.
instances() {
    I_LABEL=(a); I_PID=("$SERVER_PID"); I_BASE=("$BASE"); I_LOG=("$SERVER_LOG")
    if [ "$INSTANCES" = 2 ]; then
        I_LABEL+=(b); I_PID+=("$SERVER_B_PID"); I_BASE+=("$BASE_B"); I_LOG+=("$SERVER_B_LOG")
    fi
}

cpusnap() {  # cpusnap FILE
    local pg=(); [ "$IS_PG" = 1 ] && pg=(--pg)
    python3 "$BENCH_DIR/cpusnap.py" "${pg[@]}" "${I_PID[@]}" > "$1"
}

# run_wrk NAME CONC SCRIPT [SCRIPT ARGS…]: one measured run, one line in
# results.jsonl. With two instances, one wrk per instance at the same time,
# CONC/2 connections each; "@I@" in a script argument becomes the
# instance's label (a or b), so each wrk gets its own fixture file.
run_wrk() {
    local name=$1 conc=$2 script=$3; shift 3
    instances
    local n=${#I_PID[@]} i
    for i in $(seq 0 $((n - 1))); do
        kill -0 "${I_PID[$i]}" 2>/dev/null || die "server ${I_LABEL[$i]} is not running before $name c$conc"
    done
    [ "$SKIP_QUIET" = 1 ] || quiet_wait
    local errs_before=() warns_before=() rss_before=()
    for i in $(seq 0 $((n - 1))); do
        errs_before[$i]=$(log_errors "${I_LOG[$i]}")
        warns_before[$i]=$(log_warns "${I_LOG[$i]}")
        rss_before[$i]=$(vm "${I_PID[$i]}" VmRSS)
        echo 5 > "/proc/${I_PID[$i]}/clear_refs" 2>/dev/null || true  # reset VmHWM
    done
    local per=$((conc / n))
    if [ "$n" = 1 ]; then log "run: $name c=$conc for ${DURATION}s"
    else log "run: $name c=$conc ($n instances × c$per, two wrk processes) for ${DURATION}s"; fi
    cpusnap "$WORK/cpu-before.json"
    local pids=() outs=() times=()
    for i in $(seq 0 $((n - 1))); do
        local label=${I_LABEL[$i]} args=() arg
        for arg in "$@"; do args+=("${arg//@I@/$label}"); done
        if [ "$n" = 1 ]; then outs[$i]="$OUT/$name-c$conc.txt"; else outs[$i]="$OUT/$name-c$conc-$label.txt"; fi
        times[$i]="$WORK/wrk-time-$label.txt"
        ( TIMEFORMAT='%3U %3S'
          time "${WRK_PIN[@]}" wrk -t"$WRK_THREADS" -c"$per" -d"${DURATION}s" --timeout 5s --latency \
              -s "$BENCH_DIR/lua/$script" "${I_BASE[$i]}" -- "${args[@]}" >"${outs[$i]}" 2>&1 || true
        ) 2>"${times[$i]}" &
        pids[$i]=$!
    done
    for i in $(seq 0 $((n - 1))); do wait "${pids[$i]}" || true; done
    cpusnap "$WORK/cpu-after.json"
    local specs=() alive hwm rss dead=""
    for i in $(seq 0 $((n - 1))); do
        if kill -0 "${I_PID[$i]}" 2>/dev/null; then
            alive=true; hwm=$(vm "${I_PID[$i]}" VmHWM); rss=$(vm "${I_PID[$i]}" VmRSS)
        else
            alive=false; hwm=0; rss=0; dead="$dead ${I_LABEL[$i]}"
        fi
        specs+=(--instance "${I_LABEL[$i]},${I_PID[$i]},${outs[$i]},${times[$i]},$hwm,$rss,${rss_before[$i]},$alive,$(( $(log_errors "${I_LOG[$i]}") - ${errs_before[$i]} )),$(( $(log_warns "${I_LOG[$i]}") - ${warns_before[$i]} ))")
    done
    python3 "$BENCH_DIR/record.py" --results "$RESULTS" --name "$name" --conc "$conc" \
        --hz "$(getconf CLK_TCK)" --before "$WORK/cpu-before.json" --after "$WORK/cpu-after.json" \
        "${specs[@]}" || die "no result for $name c$conc"
    [ -z "$dead" ] || die "server(s)$dead died during $name c$conc (see $OUT/server*.log)"
    sleep 1
}

# seed_codes N FILE…: create N pending device codes per FILE through
# instance A (not measured) and write N of them to each FILE.
seed_codes() {
    local want=$1; shift
    local total=$((want * $#)) have=0 deadline=$((SECONDS + 300))
    rm -f "$WORK"/seed.*
    while [ "$have" -lt "$total" ] && [ $SECONDS -lt $deadline ]; do
        taskset -c 1 wrk -t1 -c16 -d5s --timeout 5s -s "$BENCH_DIR/lua/device_start.lua" \
            "$BASE" -- "$WORK/seed" >/dev/null 2>&1 || true
        have=$(cat "$WORK"/seed.* 2>/dev/null | wc -l)
    done
    [ "$have" -ge "$total" ] || die "could create only $have of $total device codes in 300 s"
    cat "$WORK"/seed.* > "$WORK/seed-all.txt"
    local k=0 f
    for f in "$@"; do
        sed -n "$((k * want + 1)),$(((k + 1) * want))p" "$WORK/seed-all.txt" > "$f"
        k=$((k + 1))
    done
    log "seeded $total pending device codes ($want per wrk run)"
}

LABELS="a"; [ "$INSTANCES" = 2 ] && LABELS="a b"
SKIP_QUIET=0

STORE_ARGS=(--data-dir "$DATA_DIR/data")   # instance A's data dir and database, for admin commands
[ -n "$DATABASE_URL" ] && STORE_ARGS+=(--database-url "$DATABASE_URL")

# mint_codes CLIENT_ID FORMAT N FILE: N authorization codes for CLIENT_ID
# (created with FORMAT access tokens if missing) minted in process on A's
# database by code_bench, written as "code verifier" lines; prints
# code_bench's JSON line (count, seconds, codes/s).
mint_codes() {
    local opaque=(); [ "$2" = opaque ] && opaque=(--opaque)
    taskset -c 1 "$CODE_BENCH" "${STORE_ARGS[@]}" --issuer "$BASE" --client "$1" "${opaque[@]}" \
        --count "$3" --out "$4" 2>>"$OUT/code_bench.log" || die "minting codes failed (see $OUT/code_bench.log)"
}

# ---- start ------------------------------------------------------------------
log "starting keyport A on $BASE (CPU $CPU_A), data dir $DATA_DIR"
START_NS=$(date +%s%N)
taskset -c "$CPU_A" "$BIN" "${SERVE_A[@]}" --demo >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
wait_ready "$BASE" "$SERVER_PID" "$SERVER_LOG" 60
FIRST_READY_MS=$(( ($(date +%s%N) - START_NS) / 1000000 ))
PASSWORD=$(grep -o 'with password [^ ]*' "$SERVER_LOG" | head -1 | awk '{print $3}')
[ -n "$PASSWORD" ] || die "no demo password in $SERVER_LOG"
B_READY_MS=null
if [ "$INSTANCES" = 2 ]; then
    # B starts once A has migrated the database, created the signing keys and
    # seeded the demo data (A is ready only after that).
    log "starting keyport B on $BASE_B (CPU $CPU_B), same database and master key"
    START_NS=$(date +%s%N)
    taskset -c "$CPU_B" "$BIN" "${SERVE_B[@]}" >"$SERVER_B_LOG" 2>&1 &
    SERVER_B_PID=$!
    wait_ready "$BASE_B" "$SERVER_B_PID" "$SERVER_B_LOG" 60
    B_READY_MS=$(( ($(date +%s%N) - START_NS) / 1000000 ))
fi
sleep 2
IDLE_FRESH_KB=$(vm "$SERVER_PID" VmRSS)
IDLE_FRESH_B_KB=null
[ "$INSTANCES" = 2 ] && IDLE_FRESH_B_KB=$(vm "$SERVER_B_PID" VmRSS)
log "A ready after ${FIRST_READY_MS} ms (first start, with --demo seeding); idle RSS $((IDLE_FRESH_KB / 1024)) MiB"
[ "$INSTANCES" = 2 ] && log "B ready after ${B_READY_MS} ms (existing database); idle RSS $((IDLE_FRESH_B_KB / 1024)) MiB"
printf '{"first_start_ready_ms": %d, "idle_rss_fresh_kb": %d, "b_start_ready_ms": %s, "b_idle_rss_fresh_kb": %s}\n' \
    "$FIRST_READY_MS" "$IDLE_FRESH_KB" "$B_READY_MS" "$IDLE_FRESH_B_KB" > "$OUT/start.json"

# ---- 1. device-authorization starts ---------------------------------------
want device && for c in $CONCURRENCY; do
    run_wrk device_start "$c" device_start.lua
done

# ---- 2. pending polls -------------------------------------------------------
want poll && for c in $CONCURRENCY; do
    files=(); for l in $LABELS; do files+=("$WORK/codes-c$c-$l.txt"); done
    seed_codes "$POLL_CODES" "${files[@]}"
    run_wrk poll_pending "$c" poll.lua "$WORK/codes-c$c-@I@.txt" "$WRK_THREADS"
done

# ---- tokens for 3 and 4: real device logins through A's hosted page --------
NCONC=$(wc -w <<<"$CONCURRENCY")
if want refresh || want userinfo; then
log "approving $((REFRESH_POOL * NCONC)) device logins through /device (one sign-in)"
if ! taskset -c 1 python3 "$BENCH_DIR/approve.py" --base "$BASE" --email demo@example.com \
    --password="$PASSWORD" --count $((REFRESH_POOL * NCONC)) \
    --refresh-out "$WORK/refresh-all.txt" --access-out "$WORK/access.txt" 2>&1 \
    | tee "$OUT/approve.log" >&2; then
    die "device logins failed (see $OUT/approve.log)"
fi
fi

# ---- 3. refresh grants -------------------------------------------------------
# REFRESH_POOL fresh chains per run, split between the instances: no
# refresh token is ever sent to both.
NI=$INSTANCES
i=0
want refresh && for c in $CONCURRENCY; do
    k=0
    for l in $LABELS; do
        first=$((i * REFRESH_POOL + k * REFRESH_POOL / NI + 1))
        last=$((i * REFRESH_POOL + (k + 1) * REFRESH_POOL / NI))
        sed -n "${first},${last}p" "$WORK/refresh-all.txt" > "$WORK/refresh-c$c-$l.txt"
        k=$((k + 1))
    done
    run_wrk refresh "$c" refresh.lua "$WORK/refresh-c$c-@I@.txt" "$WRK_THREADS"
    i=$((i + 1))
done

# ---- 4. userinfo --------------------------------------------------------------
want userinfo && for c in $CONCURRENCY; do
    run_wrk userinfo "$c" userinfo.lua "$WORK/access.txt"
done

# ---- 5. client credentials grants ------------------------------------------
# Two confidential clients made with `keyport client add` on A's database
# while the servers run (their ids were never asked for, so no instance has
# them cached as missing): one with JWT (EdDSA) access tokens, one with
# opaque ones. Basic auth; no scope parameter (the client's scopes).
if want cc; then
    for fmt in jwt opaque; do
        fmt_args=(); [ "$fmt" = opaque ] && fmt_args=(--access-token-format opaque)
        taskset -c 1 "$BIN" "${STORE_ARGS[@]}" --json client add --id "bench-cc-$fmt" \
            --name "Bench service ($fmt)" --confidential --grant client_credentials \
            --scope bench:read "${fmt_args[@]}" > "$WORK/cc-$fmt.json" 2>>"$OUT/admin.log" \
            || die "keyport client add failed (see $OUT/admin.log)"
        python3 - "$WORK/cc-$fmt.json" > "$WORK/cc-$fmt.auth" <<'EOF'
import base64, json, sys
c = json.load(open(sys.argv[1]))
print("Basic " + base64.b64encode(("%s:%s" % (c["client_id"], c["client_secret"])).encode()).decode())
EOF
        for c in $CONCURRENCY; do
            run_wrk "cc_$fmt" "$c" client_credentials.lua "$WORK/cc-$fmt.auth"
        done
    done
fi

# ---- 6. authorization code exchanges ------------------------------------------
# Codes live 60 s and are good for one exchange, so each run gets a fresh
# set minted in process (code_bench) right before it, after the quiet wait:
# minting + the run (at most 20 s) must stay well inside the 60 s. The
# number per run comes from a pilot: a 3 s unmeasured run on 20,000 codes
# at the highest concurrency; pool = 1.5 x its rate x the run's length.
if want code; then
    cmax=$(tr ' ' '\n' <<<"$CONCURRENCY" | sort -n | tail -1)
    for fmt in jwt opaque; do
        client="bench-code-$fmt"
        pool=$CODE_POOL
        if [ "$pool" = 0 ]; then
            quiet_wait
            mint=$(mint_codes "$client" "$fmt" 20000 "$WORK/pilot-$fmt.txt")
            log "pilot ($fmt): minted $mint"
            taskset -c 1 wrk -t1 -c"$cmax" -d3s --timeout 5s -s "$BENCH_DIR/lua/code_exchange.lua" \
                "$BASE" -- "$WORK/pilot-$fmt.txt" "$client" "http://127.0.0.1/callback" 1 \
                > "$OUT/code_$fmt-pilot.txt" 2>&1 || true
            pilot=$(python3 - "$OUT/code_$fmt-pilot.txt" <<'EOF'
import json, re, sys
m = re.search(r"^BENCH_JSON (.*)$", open(sys.argv[1]).read(), re.M)
r = json.loads(m.group(1)) if m else {}
print(round(r.get("rps", 0)), r.get("counts", {}).get("s200", 0), r.get("counts", {}).get("starved", 0))
EOF
            )
            read -r pilot_rps pilot_ok pilot_starved <<<"$pilot"
            [ "${pilot_ok:-0}" -gt 0 ] || die "the pilot code exchanges failed (see $OUT/code_$fmt-pilot.txt)"
            [ "${pilot_starved:-0}" = 0 ] || log "warning: the pilot ran out of codes; its rate is a lower bound"
            pool=$(( pilot_rps * CODE_DURATION * 3 / 2 + 2000 ))
            log "pilot ($fmt): $pilot_rps exchanges/s at c$cmax; minting $pool codes per run"
            sleep 1
        fi
        for c in $CONCURRENCY; do
            quiet_wait
            files=(); for l in $LABELS; do files+=("$WORK/code-$fmt-c$c-$l.txt"); done
            nl=$(wc -w <<<"$LABELS")
            mint=$(mint_codes "$client" "$fmt" $((pool * nl)) "$WORK/code-$fmt-c$c-all.txt")
            log "minted $mint"
            secs=$(python3 -c 'import json, sys; print(int(json.loads(sys.argv[1])["mint_secs"] + 0.999))' "$mint")
            [ $((secs + CODE_DURATION)) -le 50 ] \
                || die "minting $((pool * nl)) codes took ${secs}s: with a ${CODE_DURATION}s run they would expire (60 s); use a shorter --duration or --code-pool"
            k=0
            for f in "${files[@]}"; do
                sed -n "$((k * pool + 1)),$(((k + 1) * pool))p" "$WORK/code-$fmt-c$c-all.txt" > "$f"
                k=$((k + 1))
            done
            saved=$DURATION; DURATION=$CODE_DURATION; SKIP_QUIET=1
            run_wrk "code_$fmt" "$c" code_exchange.lua "$WORK/code-$fmt-c$c-@I@.txt" "$client" \
                "http://127.0.0.1/callback" "$WRK_THREADS"
            DURATION=$saved; SKIP_QUIET=0
        done
    done
fi

# ---- 7. password grants, and polls during a password flood -------------------
# The limit first: Argon2id checks per second on the server's core, one at a
# time (Keyport's parameters, in process). Then password grants for the demo
# user (right password: a session each), then a spray of unknown users
# (each a dummy Argon2id check and a lockout count), then pending polls while
# a password-grant flood (c8, from CPU 1 too) keeps the hashing busy.
if want password; then
    quiet_wait
    taskset -c "$CPU_A" "$ARGON2_RATE" --secs 5 > "$OUT/argon2_rate.json" \
        || die "the Argon2id rate measurement failed"
    log "Argon2id limit on CPU $CPU_A: $(cat "$OUT/argon2_rate.json")"
    taskset -c 1 "$BIN" "${STORE_ARGS[@]}" --json client add --id bench-password \
        --name "Bench password app" --public --grant password --grant refresh_token \
        --scope openid --scope offline_access > /dev/null 2>>"$OUT/admin.log" \
        || die "keyport client add failed (see $OUT/admin.log)"
    # 64 users, taken in turn: no account has more sign-ins in flight than
    # the lockout allows (each attempt is counted before its check).
    : > "$WORK/password-users.txt"
    for i in $(seq 1 64); do
        echo "bench password" | taskset -c 1 "$BIN" "${STORE_ARGS[@]}" user add \
            --email "bench-$i@example.com" --password-stdin >/dev/null 2>>"$OUT/admin.log" \
            || die "keyport user add failed (see $OUT/admin.log)"
        echo "bench-$i@example.com" >> "$WORK/password-users.txt"
    done
    for c in $CONCURRENCY; do
        run_wrk password_grant "$c" password.lua bench-password "@$WORK/password-users.txt" "bench password"
    done
    for c in $CONCURRENCY; do
        run_wrk password_spray "$c" password.lua bench-password unused "a wrong password" spray
    done
    c=$(tr ' ' '\n' <<<"$CONCURRENCY" | sort -n | head -1)
    seed_codes "$POLL_CODES" "$WORK/codes-flood-a.txt"
    quiet_wait
    taskset -c 1 wrk -t1 -c8 -d"$((DURATION + 4))s" --timeout 5s --latency \
        -s "$BENCH_DIR/lua/password.lua" "$BASE" -- bench-password "@$WORK/password-users.txt" "bench password" \
        > "$OUT/password_flood-c8.txt" 2>&1 &
    FLOOD_PID=$!
    sleep 2
    SKIP_QUIET=1
    run_wrk poll_pending_password_flood "$c" poll.lua "$WORK/codes-flood-@I@.txt" "$WRK_THREADS"
    SKIP_QUIET=0
    wait "$FLOOD_PID" || true
    log "the flood beside it: $(grep -o '^BENCH_JSON.*' "$OUT/password_flood-c8.txt" | cut -c1-160)"
fi

# ---- 8. userinfo with an API key ---------------------------------------------
# A kp_pat_ key created on instance A's dashboard (signed in, the form's
# every scope, workspace demo); each request looks its hash up and re-checks
# the owner's current role.
if want apikey; then
    if ! taskset -c 1 python3 "$BENCH_DIR/dashboard.py" api-key --base "$BASE" \
        --email demo@example.com --password="$PASSWORD" --out "$WORK/api-key.txt" 2>&1 \
        | tee -a "$OUT/dashboard.log" >&2; then
        die "API key creation failed (see $OUT/dashboard.log)"
    fi
    for c in $CONCURRENCY; do
        run_wrk userinfo_api_key "$c" userinfo.lua "$WORK/api-key.txt"
    done
fi

# ---- 9. the audit trail over many events ------------------------------------
# --audit-rows events added to workspace demo in the database, then instance
# A's audit page (first, filtered, tenth by cursor) and both exports, signed
# in as the owner: time to first byte, total time, peak RSS (audit.json).
if want audit; then
    audit_store=(--sqlite "$DATA_DIR/data/keyport.db")
    [ "$IS_PG" = 1 ] && audit_store=(--database-url "$DATABASE_URL")
    quiet_wait
    if ! taskset -c 1 python3 "$BENCH_DIR/dashboard.py" audit --base "$BASE" --pid "$SERVER_PID" \
        --email demo@example.com --password="$PASSWORD" "${audit_store[@]}" \
        --rows "$AUDIT_ROWS" --out "$OUT/audit.json" 2>&1 | tee -a "$OUT/dashboard.log" >&2; then
        die "audit measurement failed (see $OUT/dashboard.log)"
    fi
fi

# ---- memory kept after password sign-ins (instance A) ------------------------
log "RSS after 8 sequential browser sign-ins (Argon2id each), instance A"
taskset -c 1 python3 "$BENCH_DIR/signin_rss.py" --base "$BASE" --pid "$SERVER_PID" \
    --email demo@example.com --password="$PASSWORD" --count 8 --out "$OUT/signin_rss.json" \
    || log "warning: sign-in RSS measurement failed"

# ---- database size, then time-to-ready on the existing database --------------
if [ "$IS_PG" = 1 ]; then
    psql "$DATABASE_URL" -Atc "select pg_database_size(current_database()) / 1024" \
        > "$OUT/db_size_kb.txt" 2>/dev/null || rm -f "$OUT/db_size_kb.txt"
else
    du -sk "$DATA_DIR/data" 2>/dev/null | awk '{print $1}' > "$OUT/data_dir_kb.txt" || true
fi
log "stopping the server(s) (SIGTERM)"
if [ -n "$SERVER_B_PID" ]; then
    kill -TERM "$SERVER_B_PID"
    wait "$SERVER_B_PID" || log "server B exit status $?"
    SERVER_B_PID=""
fi
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || log "server exit status $?"
SERVER_PID=""

quiet_wait
log "time to ready on the existing database: $READY_RUNS restarts of instance A (CPU $CPU_A)"
python3 "$BENCH_DIR/ready.py" --port "$PORT_A" --runs "$READY_RUNS" \
    --log "$OUT/server-restarts.log" --out "$OUT/ready.json" -- taskset -c "$CPU_A" "$BIN" "${SERVE_A[@]}"

python3 "$BENCH_DIR/report.py" "$OUT" | tee "$OUT/results.md"
gzip -f "$SERVER_LOG" 2>/dev/null || true   # one audit line per token grant: large
[ -f "$SERVER_B_LOG" ] && { gzip -f "$SERVER_B_LOG" 2>/dev/null || true; }
log "results in $OUT"
