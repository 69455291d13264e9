#!/usr/bin/env bash
# Runs Floe's whole test suite: unit tests, property tests, doc-tests, end-to-end and crash
# tests, with every feature (the RocksDB state backend included).
# Installs what the suite needs first, or says exactly what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/deps.sh" --tests

# Build first, then run under a watchdog: a test that hangs fails the suite within
# FLOE_TEST_TIMEOUT seconds (default 25 minutes; the suite runs in about 6) instead of
# eating a CI runner's whole budget. cargo names the test that has been running too long.
cargo test --workspace --all-features --locked --no-run "$@"
limit="${FLOE_TEST_TIMEOUT:-1500}"
status=0
timeout --kill-after=30 "$limit" cargo test --workspace --all-features --locked "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "test.sh: the tests did not finish within ${limit}s (FLOE_TEST_TIMEOUT); see the test named above as running for too long" >&2
fi
exit "$status"
