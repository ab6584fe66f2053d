#!/usr/bin/env bash
# WebSocket transport benchmark on loopback: a two-gost chain whose hop
# between the two gost processes is plain TCP (socks5), WebSocket
# (socks5+ws) or WebSocket over TLS (socks5+wss), against the same traffic
# sent directly, in ONE run with interleaved rounds, reported as medians
# with ratios to direct and to the plain chain. See bench/README.md.
#
#   load -> gost -L socks5://:A -F SCHEME://:B -> gost -L SCHEME://:B -> target
#
#   bench/ws.sh            full run (3 rounds)
#   bench/ws.sh --quick    smoke run (2 rounds, 2 s per metric)
#
# Both gost processes run pinned to core 0, the load generator and the
# target servers to core 1.

set -uo pipefail

ALL_SYSTEMS="direct socks5 socks5+ws socks5+wss"

usage() {
    usage_common ws.sh
    echo "  GOST_EXTRA_ARGS    extra arguments for both gost processes (default: none)"
    echo "  SINK_RCVBUF        fixed SO_RCVBUF of the bulk sink in bytes (default: kernel autotuning)"
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"

run_settings

bench_paths ws
build_binaries socks5 socks5+ws socks5+wss

setup_run ws
make_cert "$TMP"

start_targets

# start_gost NAME PORT ARGS...: one gost pinned to the proxy core; sets
# GOST_PID once PORT accepts, or notes why NAME's system is skipped.
start_gost() {
    local name=$1 port=$2; shift 2
    # shellcheck disable=SC2086
    taskset -c "$PROXY_CPU" "$GOST" "$@" ${GOST_EXTRA_ARGS:-} >"$TMP/$name.log" 2>&1 &
    GOST_PID=$!
    PIDS+=("$GOST_PID")
    SYSTEM_PIDS+=("$GOST_PID")
    if ! wait_listening "$GOST_PID" "$port"; then
        log "$CURRENT: $name gost did not start; its log:"; tail -n 20 "$TMP/$name.log" >&2
        note_skip "$CURRENT" "$name gost did not start: $(start_failure "$TMP/$name.log")"
        return 1
    fi
}

# start_system SYSTEM: the back gost (-L SCHEME://:B), then the front one
# (-L socks5://:A -F SCHEME://:B); sets FRONT_PORT and SYSTEM_PIDS.
start_system() {
    local sys=$1 back listen
    FRONT_PORT=""; SYSTEM_PIDS=(); CURRENT=$sys
    [ "$sys" = direct ] && return 0
    read -r FRONT_PORT back < <("$LG" freeport --count 2 | tr '\n' ' ')
    listen="$sys://127.0.0.1:$back"
    [ "$sys" = socks5+wss ] && listen="$listen?certFile=$CERT&keyFile=$KEY"
    start_gost back "$back" -L "$listen" || return 1
    # The wss client does not check the certificate (GOST's default
    # without secure=true), so the throwaway one is accepted.
    start_gost front "$FRONT_PORT" -L "socks5://127.0.0.1:$FRONT_PORT" \
        -F "$sys://127.0.0.1:$back" || return 1
    # Let the connections made by waitport finish before measuring.
    sleep 0.3
}

stop_system() {
    local p
    for p in "${SYSTEM_PIDS[@]}"; do stop_pid "$p"; done
    SYSTEM_PIDS=()
}

run_system() {
    local sys=$1 round=$2 via=() watch=() p
    log "== round $round: $sys"
    start_system "$sys" || { stop_system; return 0; }
    show_pinning_all "$sys"
    [ -n "$FRONT_PORT" ] && via=(--socks5 "127.0.0.1:$FRONT_PORT")
    for p in "${SYSTEM_PIDS[@]}"; do watch+=(--watch-pid "$p"); done
    local common=(--label "$sys" --round "$round" "${via[@]}" "${watch[@]}")
    # New connection + SOCKS5 to the front gost, which opens a new hop to
    # the back one (TCP, WebSocket upgrade, or TLS + upgrade) + 1 request.
    client connrate --target "127.0.0.1:$HTTP_PORT" "${common[@]}" \
        --concurrency "$CR_WORKERS" --seconds "$WINDOW" --warmup "$WARMUP" ||
        log "  connrate failed"
    client bulk --target "127.0.0.1:$SINK_PORT" "${common[@]}" \
        --seconds "$BULK_S" || log "  bulk failed"
    stop_system
}

# show_pinning_all SYSTEM: the affinity of every process of the chain,
# once per system.
show_pinning_all() {
    local p
    case " $PINNING_SHOWN " in *" $1 "*) return ;; esac
    PINNING_SHOWN="$PINNING_SHOWN $1"
    for p in "${SYSTEM_PIDS[@]}"; do
        log "  pinning: $1 pid $p $(taskset -cp "$p" 2>&1 | sed 's/.*current //')"
    done
}

{
    header_common "gost-rs WebSocket transport benchmark"
    echo "pinning: both gost processes on core $PROXY_CPU; load generator + target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "chain: load -> gost -L socks5://:A -F SCHEME://:B -> gost -L SCHEME://:B -> target, SCHEME = socks5 | socks5+ws | socks5+wss"
    echo "wss: ECDSA P-256 certificate made with openssl for this run; the front gost does not verify it (GOST's default)"
    echo "bulk: SOCKS5 CONNECT + 1 stream upload for ${BULK_S} s; new connections: $CR_WORKERS workers, ${WINDOW} s"
    echo "per proxy CPU-s rows count both gost processes (summed)"
    echo "gost: $(shown "$GOST") ${GOST_EXTRA_ARGS:-}"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

REF=none
has socks5 && REF=socks5
TABLE=$(
    "$LG" report "$TMP/results.jsonl" --baseline direct --reference "$REF" 2>/dev/null ||
        echo "(no results)"
    skipped_text
)
write_report "$TABLE"
