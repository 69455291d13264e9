#!/usr/bin/env bash
# Runs the flagship demo job end to end on embedded defaults, installing what the build
# needs first (or saying exactly what is missing). Extra arguments go to the job.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/deps.sh"

if [ "$#" -eq 0 ]; then
  set -- --parallelism 2
fi
exec cargo run --release -p floe-jobs --bin fails-per-minute -- "$@"
