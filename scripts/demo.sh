#!/usr/bin/env bash
# Runs the flagship fraud demo end to end on embedded defaults (an in-process Kafka broker), installing what the build
# needs first (or saying exactly what is missing). Extra arguments go to the job.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/deps.sh"

exec cargo run --release -p floe-jobs --bin fraud-demo -- "$@"
