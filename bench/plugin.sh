#!/usr/bin/env bash
# WebAssembly handler benchmark on loopback: the example SOCKS5 plugin
# (plugins/socks5, a `wasm` handler) against gost-rs's native `socks5`
# handler and against direct traffic, in ONE run with interleaved rounds,
# reported as medians with ratios to direct and to the native handler.
#
#   bench/plugin.sh            full run (3 rounds, 8 s windows)
#   bench/plugin.sh --quick    smoke run (2 rounds, 2 s windows)
#
# The proxy runs pinned to core 0, the load generator and the target
# servers to core 1. See bench/README.md ("Plugins").

set -uo pipefail

ALL_SYSTEMS="direct native wasm wasm-isolated"

usage() {
    usage_common plugin.sh
    cat <<'EOF2'
systems:
  native          gost -L socks5://...
  wasm            gost -L wasm://...?plugin=socks5.wasm (warm instances, the default)
  wasm-isolated   the same with isolation=per-connection (a fresh instance each)
(--no-build also uses the existing plugins)
EOF2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"

run_settings

bench_paths plugin
PLUGIN=$ROOT/plugins/target/wasm32-wasip2/release/socks5.wasm

build_binaries native wasm wasm-isolated
if [ "$BUILD" = 1 ]; then
    if ! rustc --print target-libdir --target wasm32-wasip2 >/dev/null 2>&1 ||
        [ ! -d "$(rustc --print target-libdir --target wasm32-wasip2)" ]; then
        rustup target add wasm32-wasip2 || exit 1
    fi
    cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml || exit 1
fi
for f in "$LG" "$GOST" "$PLUGIN"; do
    [ -e "$f" ] || { log "missing $f (build failed?)"; exit 1; }
done

setup_run plugin

start_targets

start_proxy() {
    local sys=$1 url
    PROXY_PID=""; PROXY_PORT=""
    [ "$sys" = direct ] && return 0
    PROXY_PORT=$("$LG" freeport) || return 1
    case "$sys" in
        native) url="socks5://127.0.0.1:$PROXY_PORT" ;;
        wasm) url="wasm://127.0.0.1:$PROXY_PORT?plugin=$PLUGIN" ;;
        wasm-isolated) url="wasm://127.0.0.1:$PROXY_PORT?plugin=$PLUGIN&isolation=per-connection" ;;
    esac
    taskset -c "$PROXY_CPU" "$GOST" -L "$url" >"$TMP/$sys.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if ! "$LG" waitport --target "127.0.0.1:$PROXY_PORT" --timeout 15; then
        log "$sys did not start; its log:"; tail -n 20 "$TMP/$sys.log" >&2
        stop_pid "$PROXY_PID"; return 1
    fi
    sleep 0.3
}

run_system() {
    local sys=$1 round=$2 via=() watch=()
    log "== round $round: $sys"
    start_proxy "$sys" || return 0
    [ -n "$PROXY_PID" ] && via=(--socks5 "127.0.0.1:$PROXY_PORT") && watch=(--watch-pid "$PROXY_PID")
    local common=(--label "$sys" --round "$round" "${via[@]}" "${watch[@]}")
    local http=(--target "127.0.0.1:$HTTP_PORT" "${common[@]}")
    client keepalive "${http[@]}" --conns "$KA_CONNS" --seconds "$WINDOW" \
        --warmup "$WARMUP" || log "  keepalive failed"
    client connrate "${http[@]}" --concurrency "$CR_WORKERS" --seconds "$WINDOW" \
        --warmup "$WARMUP" || log "  connrate failed"
    client bulk --target "127.0.0.1:$SINK_PORT" "${common[@]}" \
        --seconds "$BULK_S" || log "  bulk failed"
    [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
    PROXY_PID=""
}

{
    header_common "gost-rs wasm handler benchmark"
    echo "pinning: proxy on core $PROXY_CPU; load generator + target servers on core $LOAD_CPU"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "plugin: $(shown "$PLUGIN") ($(stat -c %s "$PLUGIN") bytes)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

REF=native
has native || REF=none
TABLE=$("$LG" report "$TMP/results.jsonl" --baseline direct --reference "$REF" 2>/dev/null || echo "(no results)")
write_report "$TABLE"
