#!/usr/bin/env bash
# Transport and connector plugins on loopback, in ONE run with interleaved
# rounds, reported as medians with ratios to the native system of the same
# shape. See bench/README.md.
#
#   socks5-plain:   load -> gost socks5 :A -F socks5://B        -> gost socks5 :B -> target
#   socks5-padding: load -> gost socks5 :A -F socks5+wasm://B   -> gost socks5+wasm :B -> target
#                   (the padding transport plugin at both ends)
#   relay-native:   load -> gost socks5 :A -F relay://B         -> gost relay :B -> target
#   tunnel-wasm:    load -> gost socks5 :A -F wasm://B (the token-tunnel-client
#                   connector plugin) -> gost wasm :B (the token-tunnel handler) -> target
#
#   bench/plugin_worlds.sh           full run (3 rounds)
#   bench/plugin_worlds.sh --quick   smoke run (2 rounds, 2 s per metric)
#
# Both gost processes of a system run pinned to core 0; the load generator
# and the target servers to core 1.

set -uo pipefail

ALL_SYSTEMS="socks5-plain socks5-padding relay-native tunnel-wasm"

usage() { usage_common plugin_worlds.sh; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"
run_settings

bench_paths plugin_worlds
WASM=$ROOT/plugins/target/wasm32-wasip2/release
build_binaries socks5-plain socks5-padding relay-native tunnel-wasm
if [ "$BUILD" = 1 ]; then
    if ! rustc --print target-libdir --target wasm32-wasip2 >/dev/null 2>&1 ||
        [ ! -d "$(rustc --print target-libdir --target wasm32-wasip2)" ]; then
        rustup target add wasm32-wasip2 || exit 1
    fi
    cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml || exit 1
fi
for f in "$LG" "$GOST" "$WASM/padding.wasm" "$WASM/token_tunnel.wasm" "$WASM/token_tunnel_client.wasm"; do
    [ -e "$f" ] || { log "missing $f (build failed?)"; exit 1; }
done

setup_run plugin_worlds
start_targets

start_gost() {
    local name=$1 port=$2; shift 2
    taskset -c "$PROXY_CPU" "$GOST" "$@" >"$TMP/$name.log" 2>&1 &
    GOST_PID=$!
    PIDS+=("$GOST_PID")
    SYSTEM_PIDS+=("$GOST_PID")
    if ! wait_listening "$GOST_PID" "$port"; then
        log "$name did not start; its log:"; tail -n 20 "$TMP/$name.log" >&2
        note_skip "$name" "did not start: $(start_failure "$TMP/$name.log")"
        return 1
    fi
}

# start_system SYSTEM: the server, then the client gost whose SOCKS5 port
# the load generator uses; sets CLIENT_PORT and PROXY_PID (the server).
start_system() {
    local sys=$1 server_port yaml
    SYSTEM_PIDS=()
    read -r CLIENT_PORT server_port < <("$LG" freeport --count 2 | tr '\n' ' ')
    case "$sys" in
        socks5-plain)
            start_gost "$sys-server" "$server_port" -L "socks5://127.0.0.1:$server_port" || return 1
            PROXY_PID=$GOST_PID
            start_gost "$sys" "$CLIENT_PORT" -L "socks5://127.0.0.1:$CLIENT_PORT" \
                -F "socks5://127.0.0.1:$server_port" ;;
        socks5-padding)
            start_gost "$sys-server" "$server_port" \
                -L "socks5+wasm://127.0.0.1:$server_port?transport=$WASM/padding.wasm" || return 1
            PROXY_PID=$GOST_PID
            start_gost "$sys" "$CLIENT_PORT" -L "socks5://127.0.0.1:$CLIENT_PORT" \
                -F "socks5+wasm://127.0.0.1:$server_port?transport=$WASM/padding.wasm" ;;
        relay-native)
            start_gost "$sys-server" "$server_port" -L "relay://127.0.0.1:$server_port" || return 1
            PROXY_PID=$GOST_PID
            start_gost "$sys" "$CLIENT_PORT" -L "socks5://127.0.0.1:$CLIENT_PORT" \
                -F "relay://127.0.0.1:$server_port" ;;
        tunnel-wasm)
            yaml=$TMP/tunnel-server.yaml
            cat >"$yaml" <<YAML
services:
- name: tunnel
  addr: 127.0.0.1:$server_port
  handler:
    type: wasm
    plugin: {type: wasm, path: $WASM/token_tunnel.wasm, config: {tokens: [s3cret]}}
YAML
            start_gost "$sys-server" "$server_port" -C "$yaml" || return 1
            PROXY_PID=$GOST_PID
            start_gost "$sys" "$CLIENT_PORT" -L "socks5://127.0.0.1:$CLIENT_PORT" \
                -F "wasm://t:s3cret@127.0.0.1:$server_port?plugin=$WASM/token_tunnel_client.wasm" ;;
    esac
}

stop_system() {
    local p
    for p in "${SYSTEM_PIDS[@]}"; do stop_pid "$p"; done
    SYSTEM_PIDS=(); PROXY_PID=""
}

run_system() {
    local sys=$1 round=$2
    log "== round $round: $sys"
    start_system "$sys" || { stop_system; return 0; }
    sleep 0.3
    local common=(--socks5 "127.0.0.1:$CLIENT_PORT" --watch-pid "$PROXY_PID"
        --label "$sys" --round "$round")
    client connrate --target "127.0.0.1:$HTTP_PORT" "${common[@]}" \
        --concurrency "$CR_WORKERS" --seconds "$WINDOW" --warmup "$WARMUP" ||
        log "  connrate failed"
    client bulk --target "127.0.0.1:$SINK_PORT" "${common[@]}" --seconds "$BULK_S" ||
        log "  bulk failed"
    client keepalive --target "127.0.0.1:$HTTP_PORT" "${common[@]}" --conns "$KA_CONNS" \
        --seconds "$WINDOW" --warmup "$WARMUP" || log "  keepalive failed"
    stop_system
}

{
    header_common "gost-rs transport and connector plugin benchmark"
    echo "pinning: client and server gost on core $PROXY_CPU; load generator and target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "bulk: SOCKS5 CONNECT + 1 stream upload for ${BULK_S} s; keep-alive: $KA_CONNS conns, ${WINDOW} s; new connections: $CR_WORKERS workers, ${WINDOW} s"
    echo "gost: $(shown "$GOST"); plugins: padding.wasm $(stat -c %s "$WASM/padding.wasm") bytes, token_tunnel_client.wasm $(stat -c %s "$WASM/token_tunnel_client.wasm") bytes"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

TABLE=$(
    echo "### Transport: socks5 over the padding plugin against plain socks5"
    grep -E '"label":"socks5-(plain|padding)"' "$TMP/results.jsonl" >"$TMP/results-t.jsonl"
    "$LG" report "$TMP/results-t.jsonl" --baseline socks5-plain --reference socks5-plain 2>/dev/null ||
        echo "(no results)"
    echo
    echo "### Connector: token-tunnel through the connector plugin against the native relay connector"
    grep -E '"label":"(relay-native|tunnel-wasm)"' "$TMP/results.jsonl" >"$TMP/results-c.jsonl"
    "$LG" report "$TMP/results-c.jsonl" --baseline relay-native --reference relay-native 2>/dev/null ||
        echo "(no results)"
    skipped_text
)
write_report "$TABLE"
