#!/usr/bin/env bash
# The resource-server helper and the seed profiles under load.
#
# 1. keyport-client's helper (in examples/todo's `todo-api`, GET /me):
#    verifications per second of a JWT (JWKS, no network) and of an opaque
#    token through cached introspection (one call to Keyport per 30 s).
# 2. The anysola profile against Keyport's own endpoints, in the same run:
#    userinfo (GET /api/oauth/userinfo vs /oauth/userinfo, one token) and
#    device starts (POST /api/oauth/device vs /oauth/device_authorization,
#    the same JSON body; native before and after the profile).
#
# Keyport and the API run pinned to CPU 0, wrk (one thread) to CPU 1, on
# loopback, SQLite in a temp dir, rate limits off. Each run lasts
# --duration seconds at c16 (or --concurrency). See bench/README.md.
#
# Usage: bench/embedding.sh [--no-build] [--duration SECS] [--concurrency N] [--out DIR]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD=1
DURATION=10
CONC=16
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "embedding.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in wrk taskset python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (wrk: apt-get install -y wrk)"
done

BIN="$ROOT/target/release"
if [ "$BUILD" = 1 ]; then
    log "building keyport and the todo example (release)"
    (cd "$ROOT" && cargo build --release -p keyport -p todo) >&2
fi
[ -x "$BIN/keyport" ] && [ -x "$BIN/todo-api" ] || die "no release keyport / todo-api in $BIN"

OUT=${OUT:-"$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)-embedding"}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/keyport-embedding.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export BENCH_LUA_DIR="$BENCH_DIR/lua"

ISSUER=http://127.0.0.1:18181
API=http://127.0.0.1:18190          # the API's audience, also where instance J listens
API_I=http://127.0.0.1:18191        # instance I: introspection on
cat > "$WORK/keyport.toml" <<TOML
[[profiles]]
kind = "anysola"
client = "kp"
TOML
STORE=(--data-dir "$WORK/data")
taskset -c 0 "$BIN/keyport" "${STORE[@]}" serve --config "$WORK/keyport.toml" \
    --listen 127.0.0.1:18181 --issuer "$ISSUER" --no-rate-limits --log-format json --demo \
    > "$OUT/keyport.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fs "$ISSUER/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
PASSWORD=$(grep -o 'with password [^ ]*' "$OUT/keyport.log" | head -1 | awk '{print $3}')
[ -n "$PASSWORD" ] || die "no demo password in $OUT/keyport.log"

client() {  # client ID [extra flags…]: a confidential client for the API; prints its secret
    local id=$1; shift
    "$BIN/keyport" "${STORE[@]}" --json client add --id "$id" --name "$id" --confidential \
        --grant client_credentials --audience "$API" "$@" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])'
}
token() {  # token ID SECRET: a client-credentials access token for the API
    curl -fs -u "$1:$2" -d grant_type=client_credentials --data-urlencode "resource=$API" \
        "$ISSUER/oauth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
RS_SECRET=$(client bench-rs)
JWT_SECRET=$(client bench-jwt)
OPAQUE_SECRET=$(client bench-opaque --access-token-format opaque)
token bench-jwt "$JWT_SECRET" > "$WORK/jwt.txt"
token bench-opaque "$OPAQUE_SECRET" > "$WORK/opaque.txt"
python3 "$BENCH_DIR/approve.py" --base "$ISSUER" --email demo@example.com --password="$PASSWORD" \
    --count 1 --threads 1 --refresh-out "$WORK/refresh.txt" --access-out "$WORK/user.txt" >&2

api() {  # api PORT [introspection]: a todo-api instance on CPU 0
    local port=$1 extra=()
    [ "${2:-}" = introspection ] && extra=(TODO_CLIENT_ID=bench-rs "TODO_CLIENT_SECRET=$RS_SECRET")
    env TODO_ISSUER="$ISSUER" TODO_AUDIENCE="$API" TODO_LISTEN="127.0.0.1:$port" "${extra[@]}" \
        taskset -c 0 "$BIN/todo-api" > "$OUT/todo-api-$port.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/me" && return 0
        sleep 0.1
    done
    die "todo-api on $port did not start"
}
api 18190
api 18191 introspection

: > "$OUT/results.jsonl"
run() {  # run NAME BASE METHOD PATH TOKENFILE [BODY]
    local name=$1 base=$2; shift 2
    log "run: $name c$CONC for ${DURATION}s"
    taskset -c 1 wrk -t1 -c"$CONC" -d"${DURATION}s" --timeout 5s --latency \
        -s "$BENCH_DIR/lua/request.lua" "$base" -- "$@" > "$OUT/$name.txt" 2>&1 || true
    local line
    line=$(grep -o '^BENCH_JSON.*' "$OUT/$name.txt" | cut -d' ' -f2-)
    [ -n "$line" ] || die "no result from $name (see $OUT/$name.txt)"
    printf '{"scenario":"%s",%s\n' "$name" "${line#\{}" >> "$OUT/results.jsonl"
}
run helper_jwt "$API" GET /me "$WORK/jwt.txt"
run helper_introspection "$API_I" GET /me "$WORK/opaque.txt"
run userinfo_native "$ISSUER" GET /oauth/userinfo "$WORK/user.txt"
run userinfo_anysola "$ISSUER" GET /api/oauth/userinfo "$WORK/user.txt"
# The same body both ways; native runs before and after the profile, as
# every start adds a row and later runs meet a larger table.
START='{"client_id":"kp","scope":"openid offline_access","cli_label":"prod-server-01"}'
run device_start_native "$ISSUER" POST /oauth/device_authorization - "$START"
run device_start_anysola "$ISSUER" POST /api/oauth/device - "$START"
run device_start_native_after "$ISSUER" POST /oauth/device_authorization - "$START"

python3 - "$OUT" "$CONC" "$DURATION" <<'PY' | tee "$OUT/results.md"
import json, sys
out, conc, duration = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(out + "/results.jsonl")]
by = {r["scenario"]: r for r in rows}
def rps(r): return r["rps"]
print("| scenario | req/s (c%s, %s s) | p50 ms | p99 ms | responses |" % (conc, duration))
print("|---|---:|---:|---:|---|")
for r in rows:
    counts = ", ".join("%s×%d" % (k, v) for k, v in sorted(r.get("counts", {}).items()))
    print("| %s | %s | %.2f | %.2f | %s |" % (r["scenario"], format(int(rps(r)), ","),
          r["p50_us"] / 1000, r["p99_us"] / 1000, counts))
print()
for natives, profile in ((["userinfo_native"], "userinfo_anysola"),
                         (["device_start_native", "device_start_native_after"], "device_start_anysola")):
    if profile in by and all(n in by for n in natives):
        native = sum(rps(by[n]) for n in natives) / len(natives)
        print("- %s against %s: %.2f" % (profile, " and ".join(natives), rps(by[profile]) / native))
PY
log "results in $OUT"
