#!/usr/bin/env bash
# Retention bench: a simulated fleet refreshing for simulated months, with
# hourly housekeeping (crates/keyport/examples/retention.rs). Prints a
# markdown table per simulated week: row counts, database size, and the
# longest any housekeeping batch held the writer.
#
# Usage: bench/retention.sh [ROTATIONS] [CLIS] [INTERVAL_SECS] [DATABASE_URL]
#   defaults: 1000000 rotations, 2000 CLIs, one refresh each per 2 h
#   (about 42 simulated days), SQLite in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p keyport --example retention
exec target/release/examples/retention "$@"
