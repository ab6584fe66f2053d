#!/usr/bin/env bash
# The soak test, longer and larger: release build, SECONDS of traffic on
# CONNS connections held through forward, SOCKS5, HTTP CONNECT and a wasm
# handler (default 300 s, 9,000 connections), API changes and a plugin
# reload in the middle; prints the figures the docs record.
#
#   bench/soak.sh [SECONDS] [CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."
GOST_SOAK_SECS=${1:-300} GOST_SOAK_CONNS=${2:-9000} \
  cargo test --release -p gost-e2e --test soak -- --nocapture 2>&1 | grep -E '^soak:|test result|panicked'
