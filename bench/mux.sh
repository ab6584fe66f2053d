#!/usr/bin/env bash
# Multiplexing benchmark on loopback: a gost-rs SOCKS5 server over
# multiplexed TLS (socks5+mtls://, one smux session carrying every
# connection), over HTTP/2 (socks5+h2://) and over gRPC (socks5+grpc://),
# each with one TLS connection carrying every proxied connection, against
# the same server over plain TLS (socks5+tls://, one TLS connection per
# proxied connection), measured in ONE run with interleaved rounds and
# reported as medians with ratios to plain TLS.
# See bench/README.md.
#
#   bench/mux.sh            full run (3 rounds, 5,000 idle streams, 500 idle sessions)
#   bench/mux.sh --quick    smoke run (2 rounds, 2 s per metric, 1,000 idle, 200 sessions)
#
# The load generator speaks plain SOCKS5 to a gost-rs client that holds
# the TLS or mtls side (-F socks5+tls:// or -F socks5+mtls://): the server
# under test runs pinned to core 0; the client gost, the load generator
# and the target servers to core 1. Memory is the server's.

set -uo pipefail

ALL_SYSTEMS="socks5-tls socks5-mtls socks5-h2 socks5-grpc"
OPTIONAL_SYSTEMS="mtls-sessions"

usage() {
    usage_common mux.sh "1,000 idle streams, 200 sessions"
    echo "  SESSIONS           idle sessions for the per-session memory metric (default 500)"
    echo "(mtls-sessions is the idle-session metric alone)"
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
IDLE_OPTION=1; IDLE_FULL=5000
parse_args "$@"
case " $SYSTEMS " in *" socks5-mtls "*) SYSTEMS="$SYSTEMS mtls-sessions" ;; esac

run_settings
if [ "$QUICK" = 1 ]; then SESSIONS=${SESSIONS:-200}; else SESSIONS=${SESSIONS:-500}; fi

bench_paths mux
build_binaries socks5-tls socks5-mtls socks5-h2 socks5-grpc mtls-sessions

raise_fd_limit
setup_run mux
chmod 755 "$TMP"
make_cert "$TMP"
start_targets

# start_pair SYSTEM: the server under test (core 0) and the gost client
# in front of it (core 1); sets PROXY_PID (the server, whose memory is
# measured), CLIENT_PID and CLIENT_PORT (where the load generator speaks
# SOCKS5). mtls-sessions gives the client one node per session (a hop of
# SESSIONS nodes, round robin), so each idle connection has its own.
start_pair() {
    local sys=$1 scheme spid
    PROXY_PID=""; CLIENT_PID=""
    PROXY_PORT=$("$LG" freeport) || return 1
    CLIENT_PORT=$("$LG" freeport) || return 1
    case "$sys" in mtls-sessions) scheme=socks5+mtls ;; *) scheme=socks5+${sys#socks5-} ;; esac
    taskset -c "$PROXY_CPU" "$GOST" -L "$scheme://127.0.0.1:$PROXY_PORT?certFile=$CERT&keyFile=$KEY" \
        >"$TMP/$sys.log" 2>&1 &
    await_proxy "$sys" $! || return 1
    spid=$PROXY_PID
    if [ "$sys" = mtls-sessions ]; then
        {
            echo "services:"
            echo "- {name: c, addr: 127.0.0.1:$CLIENT_PORT, handler: {type: socks5, chain: up}, listener: {type: tcp}}"
            echo "chains:"
            echo "- name: up"
            echo "  hops:"
            echo "  - name: h"
            echo "    selector: {strategy: round}"
            echo "    nodes:"
            for i in $(seq "$SESSIONS"); do
                echo "    - {name: n$i, addr: 127.0.0.1:$PROXY_PORT, connector: {type: socks5}, dialer: {type: mtls}}"
            done
        } >"$TMP/sessions.yaml"
        taskset -c "$LOAD_CPU" "$GOST" -C "$TMP/sessions.yaml" >"$TMP/$sys-client.log" 2>&1 &
    else
        taskset -c "$LOAD_CPU" "$GOST" -L "socks5://127.0.0.1:$CLIENT_PORT" \
            -F "$scheme://127.0.0.1:$PROXY_PORT" >"$TMP/$sys-client.log" 2>&1 &
    fi
    CLIENT_PID=$!
    PIDS+=("$CLIENT_PID")
    if ! wait_listening "$CLIENT_PID" "$CLIENT_PORT"; then
        note_skip "$sys" "client did not start: $(start_failure "$TMP/$sys-client.log")"
        stop_pid "$CLIENT_PID"; stop_pid "$spid"
        return 1
    fi
    PROXY_PID=$spid
    sleep 0.3
}

stop_pair() {
    [ -n "$CLIENT_PID" ] && stop_pid "$CLIENT_PID"
    CLIENT_PID=""
    stop_proxy
}

run_system() {
    local sys=$1 round=$2
    log "== round $round: $sys"
    if [ "$sys" = mtls-sessions ]; then
        # One connection per node: each rides a session of its own.
        if start_pair "$sys"; then
            client idle --socks5 "127.0.0.1:$CLIENT_PORT" --target "127.0.0.1:$HTTP_PORT" \
                --watch-pid "$PROXY_PID" --label "$sys" --round "$round" \
                --conns "$SESSIONS" --settle "$SETTLE" --hold "$HOLD" || log "  idle failed"
            stop_pair
        fi
        return
    fi
    if start_pair "$sys"; then
        show_pinning "$sys"
        local common=(--socks5 "127.0.0.1:$CLIENT_PORT" --target "127.0.0.1:$HTTP_PORT"
            --watch-pid "$PROXY_PID" --label "$sys" --round "$round")
        client idle "${common[@]}" --conns "$IDLE_N" --settle "$SETTLE" \
            --hold "$HOLD" || log "  idle failed"
        sleep 0.5
        client keepalive "${common[@]}" --conns "$KA_CONNS" --seconds "$WINDOW" \
            --warmup "$WARMUP" || log "  keepalive failed"
        client connrate "${common[@]}" --concurrency "$CR_WORKERS" --seconds "$WINDOW" \
            --warmup "$WARMUP" || log "  connrate failed"
        stop_pair
    fi
    if start_pair "$sys"; then
        client bulk --socks5 "127.0.0.1:$CLIENT_PORT" --target "127.0.0.1:$SINK_PORT" \
            --watch-pid "$PROXY_PID" --label "$sys" --round "$round" \
            --seconds "$BULK_S" || log "  bulk failed"
        stop_pair
    fi
}

{
    header_common "gost-rs multiplexing benchmark"
    echo "pinning: server under test on core $PROXY_CPU; gost client (-F), load generator and target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "bulk: 1 stream upload for ${BULK_S} s; keep-alive: $KA_CONNS conns, ${WINDOW} s; new connections: $CR_WORKERS workers, ${WINDOW} s; idle: $IDLE_N connections (mtls, h2, grpc: streams of one session); mtls-sessions: $SESSIONS sessions of one stream each"
    echo "certificate: ECDSA P-256, self-signed, made with openssl for this run; smux version 1, GOST's defaults"
    echo "gost: $(shown "$GOST")"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

TABLE=$(
    echo "Reference: socks5-tls. Each runs a gost-rs client in front of the server (on the load core); the server's cost is what differs: a TLS handshake per connection (tls) or a stream opened in a live session (mtls, h2, grpc)."
    echo "Idle memory is the server's per held connection; mtls-sessions holds one connection per session, so its figure less socks5-mtls's is the cost of a session."
    echo
    "$LG" report "$TMP/results.jsonl" --baseline socks5-tls --reference socks5-tls 2>/dev/null ||
        echo "(no results)"
    skipped_text
)
write_report "$TABLE"
