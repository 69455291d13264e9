#!/usr/bin/env bash
# Runs Floe's whole test suite: unit tests, property tests, doc-tests and end-to-end tests.
# Installs what the suite needs first, or says exactly what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "missing: $1 — $2" >&2; exit 1; }
}
need cargo "install Rust (stable) with rustup: https://rustup.rs"
need cc "install a C compiler (Debian: apt-get install build-essential)"

cargo test --workspace --locked "$@"
