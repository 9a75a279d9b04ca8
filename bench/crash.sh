#!/usr/bin/env bash
# The long crash test: `kill -9` at KILL_POINTS random moments (default 300)
# under refresh and device-start load, in a release build, then the checks
# of crates/keyport/tests/it/crash.rs after every restart (acknowledged
# refreshes still honoured, acknowledged device codes still pending, one
# live refresh token per session, SQLite's integrity check). CI runs the
# same test with 30 kill points. With KEYPORT_TEST_DATABASE_URL set it runs
# on PostgreSQL.
#
# Usage: bench/crash.sh [KILL_POINTS]
set -euo pipefail
cd "$(dirname "$0")/.."
KEYPORT_CRASH_KILL_POINTS=${1:-300} cargo test --release -q -p keyport --test it \
    crash::kill_9_under_refresh_and_device_start_load_loses_nothing_acknowledged -- --exact --nocapture 2>&1 \
    | grep -E '^crash:|test result|panicked|kill point'
