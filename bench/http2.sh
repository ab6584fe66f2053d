#!/usr/bin/env bash
# HTTP/2 proxy and plain HTTP tunnel benchmark on loopback: GOST's
# HTTP/2 proxy (-L http2://, every proxied connection a CONNECT stream of
# one HTTP/2 connection) and relay over GOST's plain HTTP tunnel (-L
# relay+pht://, every proxied connection a tunnel of base64 push and pull
# requests) against a SOCKS5 server over plain TLS (socks5+tls://, one
# TLS connection per proxied connection), measured in ONE run with
# interleaved rounds and reported as medians with ratios to plain TLS.
# See bench/README.md.
#
#   bench/http2.sh            full run (3 rounds, 2,000 idle connections)
#   bench/http2.sh --quick    smoke run (2 rounds, 2 s per metric, 500 idle)
#
# The load generator speaks plain SOCKS5 to a gost-rs client that holds
# the node (-F socks5+tls://, -F http2://, -F relay+pht://): the server
# under test runs pinned to core 0; the client gost, the load generator
# and the target servers to core 1. Memory is the server's.

set -uo pipefail

ALL_SYSTEMS="socks5-tls http2 relay-pht"

usage() { usage_common http2.sh "500 idle connections"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
IDLE_OPTION=1; IDLE_QUICK=500; IDLE_FULL=2000
parse_args "$@"

run_settings

bench_paths http2
build_binaries socks5-tls http2 relay-pht

raise_fd_limit
setup_run http2
chmod 755 "$TMP"
make_cert "$TMP"
start_targets

# start_pair SYSTEM: the server under test (core 0) and the gost client
# in front of it (core 1); sets PROXY_PID (the server, whose memory is
# measured), CLIENT_PID and CLIENT_PORT (where the load generator speaks
# SOCKS5).
start_pair() {
    local sys=$1 server node spid
    PROXY_PID=""; CLIENT_PID=""
    PROXY_PORT=$("$LG" freeport) || return 1
    CLIENT_PORT=$("$LG" freeport) || return 1
    case "$sys" in
        socks5-tls)
            server="socks5+tls://127.0.0.1:$PROXY_PORT?certFile=$CERT&keyFile=$KEY"
            node="socks5+tls://127.0.0.1:$PROXY_PORT" ;;
        http2)
            server="http2://127.0.0.1:$PROXY_PORT?certFile=$CERT&keyFile=$KEY"
            node="http2://127.0.0.1:$PROXY_PORT" ;;
        *)
            server="relay+pht://127.0.0.1:$PROXY_PORT"
            node="relay+pht://127.0.0.1:$PROXY_PORT" ;;
    esac
    taskset -c "$PROXY_CPU" "$GOST" -L "$server" >"$TMP/$sys.log" 2>&1 &
    await_proxy "$sys" $! || return 1
    spid=$PROXY_PID
    taskset -c "$LOAD_CPU" "$GOST" -L "socks5://127.0.0.1:$CLIENT_PORT" \
        -F "$node" >"$TMP/$sys-client.log" 2>&1 &
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
    header_common "gost-rs HTTP/2 proxy and plain HTTP tunnel benchmark"
    echo "pinning: server under test on core $PROXY_CPU; gost client (-F), load generator and target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "bulk: 1 stream upload for ${BULK_S} s; keep-alive: $KA_CONNS conns, ${WINDOW} s; new connections: $CR_WORKERS workers, ${WINDOW} s; idle: $IDLE_N connections"
    echo "certificate: ECDSA P-256, self-signed, made with openssl for this run"
    echo "gost: $(shown "$GOST")"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

TABLE=$(
    echo "Reference: socks5-tls. Each runs a gost-rs client in front of the server (on the load core); the server's cost is what differs: a TLS handshake per connection (tls), a CONNECT stream in a live HTTP/2 connection (http2), base64 push and pull requests over HTTP/1.1 (relay-pht)."
    echo "Idle memory is the server's per held connection."
    echo
    "$LG" report "$TMP/results.jsonl" --baseline socks5-tls --reference socks5-tls 2>/dev/null ||
        echo "(no results)"
    skipped_text
)
write_report "$TABLE"
