#!/usr/bin/env bash
# Runs Floe's whole test suite: unit tests, property tests, doc-tests, end-to-end and crash
# tests, with every feature (the RocksDB state backend included).
# Installs what the suite needs first, or says exactly what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/deps.sh"

cargo test --workspace --all-features --locked "$@"
