#!/usr/bin/env bash
# Retention bench: a simulated fleet refreshing for simulated months, with
# hourly housekeeping (crates/keyport/examples/retention.rs). Prints a
# markdown table per simulated week: row counts, database size, and the
# longest any housekeeping batch held the writer.
#
# Usage: bench/retention.sh [ROTATIONS] [CLIS] [INTERVAL_SECS] [AUDIT_DAYS] [DATABASE_URL]
#   defaults: 1000000 rotations, 2000 CLIs, one refresh each per 2 h
#   (about 42 simulated days), audit events kept 400 days, SQLite in a
#   temporary directory. Every refresh is audited, so with 400 days the
#   audit trail (and the file) grows for 400 days by design; give a shorter
#   AUDIT_DAYS to watch the whole database level off within the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p keyport --example retention
exec target/release/examples/retention "$@"
