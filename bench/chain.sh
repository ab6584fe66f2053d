#!/usr/bin/env bash
# Chain benchmark on loopback: a two-hop chain (client -> gost http ->
# gost socks5 -> target) against one gost hop and against the same traffic
# sent directly, measured in ONE run with interleaved rounds and reported as
# medians with ratios to direct and to the one-hop proxy. See bench/README.md.
#
#   bench/chain.sh            full run (3 rounds)
#   bench/chain.sh --quick    smoke run (2 rounds, 2 s per metric)
#
# Both gost processes run pinned to core 0, the load generator and the
# target servers to core 1.

set -uo pipefail

ALL_SYSTEMS="direct gost-1hop gost-2hop"

usage() { usage_common chain.sh; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"

run_settings

bench_paths chain
build_binaries gost-1hop gost-2hop

setup_run chain

start_targets

# start_gost LOGNAME ARGS...: one gost pinned to the proxy core; sets
# GOST_PID once its first -L port accepts.
start_gost() {
    local name=$1 port=$2; shift 2
    taskset -c "$PROXY_CPU" "$GOST" "$@" >"$TMP/$name.log" 2>&1 &
    GOST_PID=$!
    PIDS+=("$GOST_PID")
    if ! "$LG" waitport --target "127.0.0.1:$port" --timeout 15; then
        log "$name did not start; its log:"; tail -n 20 "$TMP/$name.log" >&2
        return 1
    fi
}

# start_system SYSTEM: sets FRONT_PORT (where the client connects),
# FRONT_PID and SYSTEM_PIDS.
start_system() {
    local sys=$1 back
    FRONT_PORT=""; FRONT_PID=""; SYSTEM_PIDS=()
    [ "$sys" = direct ] && return 0
    FRONT_PORT=$("$LG" freeport) || return 1
    case "$sys" in
        gost-1hop)
            start_gost front "$FRONT_PORT" -L "http://127.0.0.1:$FRONT_PORT" || return 1
            FRONT_PID=$GOST_PID; SYSTEM_PIDS=("$GOST_PID") ;;
        gost-2hop)
            back=$("$LG" freeport) || return 1
            start_gost back "$back" -L "socks5://127.0.0.1:$back" || return 1
            SYSTEM_PIDS=("$GOST_PID")
            start_gost front "$FRONT_PORT" -L "http://127.0.0.1:$FRONT_PORT" \
                -F "socks5://127.0.0.1:$back" || return 1
            FRONT_PID=$GOST_PID; SYSTEM_PIDS+=("$GOST_PID") ;;
    esac
    # Let the connections made by waitport finish before measuring.
    sleep 0.3
}

stop_system() {
    local p
    for p in "${SYSTEM_PIDS[@]}"; do stop_pid "$p"; done
    SYSTEM_PIDS=()
}

run_system() {
    local sys=$1 round=$2 via=() watch=()
    log "== round $round: $sys"
    start_system "$sys" || { stop_system; return 0; }
    [ -n "$FRONT_PORT" ] && via=(--http-proxy "127.0.0.1:$FRONT_PORT")
    [ -n "$FRONT_PID" ] && watch=(--watch-pid "$FRONT_PID")
    local common=(--label "$sys" --round "$round" "${via[@]}" "${watch[@]}")
    # New connection + CONNECT through every hop + one request each.
    client connrate --target "127.0.0.1:$HTTP_PORT" "${common[@]}" \
        --concurrency "$CR_WORKERS" --seconds "$WINDOW" --warmup "$WARMUP" ||
        log "  connrate failed"
    client bulk --target "127.0.0.1:$SINK_PORT" "${common[@]}" \
        --seconds "$BULK_S" || log "  bulk failed"
    stop_system
}

{
    header_common "gost-rs chain benchmark"
    echo "pinning: every gost on core $PROXY_CPU; load generator + target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "gost-1hop: client -> gost http -> target; gost-2hop: client -> gost http -F socks5 -> gost socks5 -> target"
    echo "bulk: CONNECT + 1 stream upload for ${BULK_S} s; new connections: $CR_WORKERS workers, ${WINDOW} s"
    echo "per proxy CPU-s rows count the front gost only (for gost-2hop the back hop's CPU is not included)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

REF=none
has gost-1hop && REF=gost-1hop
TABLE=$("$LG" report "$TMP/results.jsonl" --baseline direct --reference "$REF" 2>/dev/null ||
    echo "(no results)")
write_report "$TABLE"
