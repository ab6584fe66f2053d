#!/usr/bin/env bash
# The cost of the registry of live connections (on whenever the web API
# runs): gost-rs without and with `-api`, interleaved in the same run, on
# the forwarding benchmark (new connections/s, keep-alive requests/s,
# bulk throughput, memory per idle connection) and on the SOCKS5 one.
#
#   bench/connections.sh            both benchmarks, full runs
#   bench/connections.sh --quick    smoke runs
#
# Options after the first are passed to both scripts (see their --help).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/bench/forward.sh" --systems "gost gost-conns" "$@"
"$ROOT/bench/proxy.sh" --systems "gost-socks5 gost-socks5-conns" "$@"
