#!/usr/bin/env bash
# Checks (and where it can, installs) what building Floe with every feature needs.
set -euo pipefail

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "missing: $1 — $2" >&2; exit 1; }
}
need cargo "install Rust (stable) with rustup: https://rustup.rs"
need cc "install a C and C++ compiler (Debian: apt-get install build-essential)"
need c++ "install a C++ compiler (Debian: apt-get install g++)"

# RocksDB's bindings are generated with bindgen, which needs libclang.
has_libclang() {
  # libclang itself, not libclang-cpp (which bindgen cannot use).
  ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so' ||
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
    compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null
}
if ! has_libclang; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing libclang-dev (needed to build RocksDB's bindings)" >&2
    apt-get install -y -qq libclang-dev >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libclang-dev >/dev/null; }
  else
    echo "missing: libclang — install it (Debian: sudo apt-get install libclang-dev) and run again" >&2
    exit 1
  fi
fi

# librdkafka is built with TLS (and SASL/SCRAM) against the system's OpenSSL.
if ! pkg-config --exists openssl 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing libssl-dev and pkg-config (librdkafka's TLS)" >&2
    apt-get install -y -qq libssl-dev pkg-config >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config >/dev/null; }
  else
    echo "missing: OpenSSL headers — install them (Debian: sudo apt-get install libssl-dev pkg-config) and run again" >&2
    exit 1
  fi
fi
# The TLS test puts a TLS proxy (python3's ssl module) with a certificate made by openssl in
# front of the test broker.
need python3 "install Python 3 (Debian: apt-get install python3)"
need openssl "install the openssl command (Debian: apt-get install openssl)"

# The web page's tests (runtime/cluster/tests/web.rs) drive a headless Chromium: installed
# for the tests only (`deps.sh --tests`), not for the demo.
has_chromium() {
  [ -n "${FLOE_CHROMIUM:-}" ] && [ -x "$FLOE_CHROMIUM" ] ||
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
    command -v google-chrome >/dev/null 2>&1
}
if [ "${1:-}" = "--tests" ] && ! has_chromium; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (the web page's tests run it headless)" >&2
    apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }
  else
    echo "missing: chromium — install it (Debian: sudo apt-get install chromium) or set FLOE_CHROMIUM, and run again" >&2
    exit 1
  fi
fi

# The Kafka-protocol broker the integration tests start on 127.0.0.1 (tansu).
"$(dirname "$0")/tansu.sh" >/dev/null
