#!/usr/bin/env bash
# Reverse tunnel benchmark on loopback: GOST's tunnel (visitor gost port
# -> public gost `tunnel` handler -> smux session -> private gost `rtcp`
# client -> target) against a plain gost port forward and against the
# same traffic sent directly, in ONE run with interleaved rounds, reported
# as medians with ratios to direct and to the plain forward. Also the
# set-up latency of the first request after a client registers (start of
# the private client to the first answer through the entry point). See
# bench/README.md.
#
#   bench/tunnel.sh            full run (3 rounds)
#   bench/tunnel.sh --quick    smoke run (2 rounds, 2 s per metric)
#
# Every gost runs pinned to core 0, the load generator and the target
# servers to core 1.

set -uo pipefail

ALL_SYSTEMS="direct gost-forward gost-tunnel"
TID_HTTP=6be39003-f4fa-49e4-a6ef-1997684d160e
TID_SINK=3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01

usage() { usage_common tunnel.sh; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"

run_settings

bench_paths tunnel
build_binaries gost-forward gost-tunnel
setup_run tunnel
start_targets

# start_gost LOGNAME PORT ARGS...: one gost pinned to the proxy core;
# waits for PORT when it is not empty; sets GOST_PID.
start_gost() {
    local name=$1 port=$2; shift 2
    taskset -c "$PROXY_CPU" "$GOST" "$@" >"$TMP/$name.log" 2>&1 &
    GOST_PID=$!
    PIDS+=("$GOST_PID")
    SYSTEM_PIDS+=("$GOST_PID")
    [ -z "$port" ] && return 0
    if ! wait_listening "$GOST_PID" "$port"; then
        log "$name did not start; its log:"; tail -n 20 "$TMP/$name.log" >&2
        return 1
    fi
}

# wait_registered LOG N: until the public gost logged N registrations.
wait_registered() {
    local i
    for i in $(seq 150); do
        [ "$(grep -c 'tunnel: client registered' "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# start_system SYSTEM: sets HTTP_AT and SINK_AT (where the client
# connects), FRONT_PID (the gost whose CPU is counted) and SYSTEM_PIDS.
start_system() {
    local sys=$1 pub vh vs
    HTTP_AT=$HTTP_PORT; SINK_AT=$SINK_PORT; FRONT_PID=""; SYSTEM_PIDS=()
    [ "$sys" = direct ] && return 0
    case "$sys" in
        gost-forward)
            read -r vh vs < <("$LG" freeport --count 2 | tr '\n' ' ')
            start_gost front "$vh" -L "tcp://127.0.0.1:$vh/127.0.0.1:$HTTP_PORT" \
                -L "tcp://127.0.0.1:$vs/127.0.0.1:$SINK_PORT" || return 1
            FRONT_PID=$GOST_PID ;;
        gost-tunnel)
            read -r pub vh vs < <("$LG" freeport --count 3 | tr '\n' ' ')
            start_gost public "$pub" -L "tunnel://127.0.0.1:$pub?tunnel.direct=true" || return 1
            FRONT_PID=$GOST_PID
            start_gost private-http "" -L "rtcp://:0/127.0.0.1:$HTTP_PORT" \
                -F "tunnel://127.0.0.1:$pub?tunnel.id=$TID_HTTP" || return 1
            start_gost private-sink "" -L "rtcp://:0/127.0.0.1:$SINK_PORT" \
                -F "tunnel://127.0.0.1:$pub?tunnel.id=$TID_SINK" || return 1
            wait_registered "$TMP/public.log" 2 || { log "clients did not register"; return 1; }
            start_gost visitor "$vh" \
                -L "tcp://127.0.0.1:$vh/x:1" -F "tunnel://127.0.0.1:$pub?tunnel.id=$TID_HTTP" || return 1
            start_gost visitor-sink "$vs" \
                -L "tcp://127.0.0.1:$vs/x:1" -F "tunnel://127.0.0.1:$pub?tunnel.id=$TID_SINK" || return 1 ;;
    esac
    HTTP_AT=$vh; SINK_AT=$vs
    sleep 0.3
}

stop_system() {
    local p
    for p in "${SYSTEM_PIDS[@]}"; do stop_pid "$p"; done
    SYSTEM_PIDS=()
}

run_system() {
    local sys=$1 round=$2 watch=()
    log "== round $round: $sys"
    start_system "$sys" || { note_skip "$sys" "did not start"; stop_system; return 0; }
    [ -n "$FRONT_PID" ] && watch=(--watch-pid "$FRONT_PID")
    local common=(--label "$sys" --round "$round" "${watch[@]}")
    client connrate --target "127.0.0.1:$HTTP_AT" "${common[@]}" \
        --concurrency "$CR_WORKERS" --seconds "$WINDOW" --warmup "$WARMUP" ||
        log "  connrate failed"
    client keepalive --target "127.0.0.1:$HTTP_AT" "${common[@]}" --conns 50 \
        --seconds "$WINDOW" --warmup "$WARMUP" || log "  keepalive failed"
    client bulk --target "127.0.0.1:$SINK_AT" "${common[@]}" \
        --seconds "$BULK_S" || log "  bulk failed"
    stop_system
}

# first_request: ms from starting the private client to the first 200
# through the public entry point (registration + first stream), median of
# 5 tries on a fresh public gost each time.
first_request() {
    local pub entry t0 t1 i ms=()
    for i in 1 2 3 4 5; do
        SYSTEM_PIDS=()
        read -r pub entry < <("$LG" freeport --count 2 | tr '\n' ' ')
        start_gost public "$pub" -L "tunnel://127.0.0.1:$pub?entrypoint=127.0.0.1:$entry&tunnel=app.local:$TID_HTTP" || return 1
        t0=$(date +%s%N)
        start_gost private-http "" -L "rtcp://:0/127.0.0.1:$HTTP_PORT" \
            -F "tunnel://127.0.0.1:$pub?tunnel.id=$TID_HTTP"
        until curl -s -o /dev/null -f -H "Host: app.local" "http://127.0.0.1:$entry/"; do
            [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 10000 ] && break
        done
        t1=$(date +%s%N)
        ms+=($(( (t1 - t0) / 1000000 )))
        stop_system
    done
    printf '%s\n' "${ms[@]}" | sort -n | sed -n 3p
}

{
    header_common "gost-rs reverse tunnel benchmark"
    echo "pinning: every gost on core $PROXY_CPU; load generator + target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "gost-forward: client -> gost tcp forward -> target"
    echo "gost-tunnel: client -> visitor gost (tcp, tunnel connector) -> public gost (tunnel handler) -> smux -> private gost (rtcp) -> target"
    echo "per proxy CPU-s rows count the public gost only for gost-tunnel"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"
: >"$TMP/human.log"

run_rounds

FIRST=""
if has gost-tunnel; then
    FIRST=$(first_request)
fi

REF=none
has gost-forward && REF=gost-forward
TABLE=$("$LG" report "$TMP/results.jsonl" --baseline direct --reference "$REF" 2>/dev/null ||
    echo "(no results)")
[ -n "$FIRST" ] && TABLE="$TABLE

First request after a client registers (start of the private gost to the first 200 through the entry point, median of 5): ${FIRST} ms"
write_report "$TABLE"
