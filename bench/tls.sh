#!/usr/bin/env bash
# TLS-termination benchmark on loopback: gost-rs as a TLS-terminating TCP
# forwarder (tls://), as SOCKS5 over TLS (socks5+tls://) and as GOST relay
# over TLS (relay+tls://), against haproxy (mode tcp, bind ... ssl) and
# stunnel, and against plain traffic sent directly (no proxy), measured in
# ONE run with interleaved rounds and reported as medians with ratios to
# direct and to haproxy. See bench/README.md.
#
#   bench/tls.sh            full run (3 rounds, 9,000 idle conns)
#   bench/tls.sh --quick    smoke run (2 rounds, 2 s per metric, 1,000 idle)
#
# The proxy runs pinned to core 0, the load generator (which also does the
# client side of every TLS handshake) and the target servers to core 1.

set -uo pipefail

ALL_SYSTEMS="direct gost-tls haproxy-tls stunnel gost-socks5-tls gost-relay-tls"

usage() {
    usage_common tls.sh "1,000 idle connections"
    echo "  GOST_EXTRA_ARGS    extra arguments for gost, e.g. \"-C bench.yaml\" (default: none)"
    echo "  SINK_RCVBUF        fixed SO_RCVBUF of the bulk sink in bytes (default: kernel autotuning)"
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
IDLE_OPTION=1
parse_args "$@"

run_settings

bench_paths tls

# How the client reaches the target through a system: a TLS-terminating
# forwarder (TLS to it, then plain HTTP/bulk traffic), a proxy protocol
# inside TLS, or plain TCP straight to the target (direct).
family() {
    case "$1" in
        direct) echo direct ;;
        gost-tls|haproxy-tls|stunnel) echo forward ;;
        gost-socks5-tls) echo socks5 ;;
        gost-relay-tls) echo relay ;;
    esac
}

# ---------------------------------------------------------------- build ---
build_binaries gost-tls gost-socks5-tls gost-relay-tls

# ------------------------------------------------------------- peer tools ---
peer_cmd() { case "$1" in haproxy-tls) echo haproxy ;; stunnel) echo stunnel4 ;; esac; }
peer_pkg() { case "$1" in haproxy-tls) echo haproxy ;; stunnel) echo stunnel4 ;; esac; }
PEERS="haproxy-tls stunnel"
missing=""
for p in $PEERS; do
    if has "$p" && ! command -v "$(peer_cmd "$p")" >/dev/null; then missing="$missing $(peer_pkg "$p")"; fi
done
# shellcheck disable=SC2086
[ -n "$missing" ] && apt_install $missing
for p in $PEERS; do
    if has "$p" && ! command -v "$(peer_cmd "$p")" >/dev/null; then
        log "WARNING: $(peer_cmd "$p") (package $(peer_pkg "$p")) not available; skipping $p"
        drop_system "$p"
    fi
done
REF=none
for p in haproxy-tls stunnel gost-tls; do has "$p" && { REF=$p; break; }; done

# --------------------------------------------------- limits and pinning ---
raise_fd_limit
PEER_MAXCONN=$(( IDLE_N + 500 ))
[ "$PEER_MAXCONN" -gt "$MAX_IDLE" ] && PEER_MAXCONN=$MAX_IDLE

setup_run tls
chmod 755 "$TMP"
make_cert "$TMP"

# ------------------------------------------------------------ targets ---
start_targets

# -------------------------------------------------------------- proxies ---
# start_proxy SYSTEM TARGET_PORT: starts the proxy pinned to the proxy core
# on a fresh port (forwarders forward to TARGET_PORT; the proxy protocols
# are told the target by the client); sets PROXY_PID and PROXY_PORT.
# direct: nothing to start.
start_proxy() {
    local sys=$1 tport=$2 tlsq
    PROXY_PID=""; PROXY_PORT=""
    [ "$sys" = direct ] && return 0
    PROXY_PORT=$("$LG" freeport) || return 1
    tlsq="certFile=$CERT&keyFile=$KEY"
    case "$sys" in
        gost-tls|gost-socks5-tls|gost-relay-tls)
            local url
            case "$sys" in
                gost-tls) url="tls://127.0.0.1:$PROXY_PORT/127.0.0.1:$tport?$tlsq" ;;
                gost-socks5-tls) url="socks5+tls://127.0.0.1:$PROXY_PORT?$tlsq" ;;
                gost-relay-tls) url="relay+tls://127.0.0.1:$PROXY_PORT?$tlsq" ;;
            esac
            # shellcheck disable=SC2086
            taskset -c "$PROXY_CPU" "$GOST" -L "$url" ${GOST_EXTRA_ARGS:-} \
                >"$TMP/$sys.log" 2>&1 & ;;
        haproxy-tls)
            cat >"$TMP/haproxy.cfg" <<EOF2
global
    maxconn $PEER_MAXCONN
    nbthread 1
defaults
    mode tcp
    maxconn $PEER_MAXCONN
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fwd
    bind 127.0.0.1:$PROXY_PORT ssl crt $CERT_KEY backlog 4096
    default_backend target
backend target
    server t1 127.0.0.1:$tport
EOF2
            taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/$sys.log" 2>&1 & ;;
        stunnel)
            cat >"$TMP/stunnel.conf" <<EOF2
foreground = yes
pid =
output = $TMP/stunnel-run.log
debug = 3
[fwd]
accept = 127.0.0.1:$PROXY_PORT
connect = 127.0.0.1:$tport
cert = $CERT
key = $KEY
EOF2
            taskset -c "$PROXY_CPU" stunnel4 "$TMP/stunnel.conf" >"$TMP/$sys.log" 2>&1 & ;;
        *) log "unknown system $sys"; return 1 ;;
    esac
    await_proxy "$sys" $!
}

# client_args SYSTEM TARGET_PORT: how the load generator reaches the
# target through the system just started (array ARGS).
client_args() {
    local sys=$1 tport=$2
    case "$(family "$sys")" in
        direct) ARGS=(--target "127.0.0.1:$tport") ;;
        forward) ARGS=(--tls --target "127.0.0.1:$PROXY_PORT") ;;
        socks5) ARGS=(--tls --socks5 "127.0.0.1:$PROXY_PORT" --target "127.0.0.1:$tport") ;;
        relay) ARGS=(--tls --relay "127.0.0.1:$PROXY_PORT" --target "127.0.0.1:$tport") ;;
    esac
    [ -n "$PROXY_PID" ] && ARGS+=(--watch-pid "$PROXY_PID")
}

# run_system SYSTEM ROUND: every metric for one system. The request tests
# run on a fresh proxy (idle memory first, so its baseline is the proxy
# right after start-up), bulk on another one towards the sink.
run_system() {
    local sys=$1 round=$2 ARGS
    log "== round $round: $sys"
    if start_proxy "$sys" "$HTTP_PORT"; then
        show_pinning "$sys"
        client_args "$sys" "$HTTP_PORT"
        local common=("${ARGS[@]}" --label "$sys" --round "$round")
        if [ -n "$PROXY_PID" ]; then
            client idle "${common[@]}" --conns "$IDLE_N" --settle "$SETTLE" \
                --hold "$HOLD" || log "  idle failed"
            sleep 0.5
        fi
        client keepalive "${common[@]}" --conns "$KA_CONNS" --seconds "$WINDOW" \
            --warmup "$WARMUP" || log "  keepalive failed"
        client connrate "${common[@]}" --concurrency "$CR_WORKERS" --seconds "$WINDOW" \
            --warmup "$WARMUP" || log "  connrate failed"
        stop_proxy
    fi
    if start_proxy "$sys" "$SINK_PORT"; then
        client_args "$sys" "$SINK_PORT"
        client bulk "${ARGS[@]}" --label "$sys" --round "$round" \
            --seconds "$BULK_S" || log "  bulk failed"
        stop_proxy
    fi
}

# -------------------------------------------------------------- header ---
{
    header_common "gost-rs TLS benchmark"
    echo "pinning: proxy on core $PROXY_CPU; load generator (client side of every TLS handshake) + target servers on core $LOAD_CPU (taskset)"
    echo "ulimit -n: $SOFT; net.ipv4.tcp_tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null); ephemeral ports: $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "bulk: 1 stream upload for ${BULK_S} s; keep-alive: $KA_CONNS conns, ${WINDOW} s; new connections (full TLS handshake each): $CR_WORKERS workers, ${WINDOW} s; idle: $IDLE_N TLS conns"
    echo "certificate: ECDSA P-256, self-signed, made with openssl for this run; client: rustls (ring), TLS 1.3/1.2 offered, X25519 key share, no session resumption, certificate not checked, handshake signature checked"
    ktls_note
    echo "openssl: $(openssl version 2>/dev/null)"
    has haproxy-tls && echo "haproxy: $(haproxy -v 2>/dev/null | head -n 1) (maxconn $PEER_MAXCONN, nbthread 1)"
    has stunnel && echo "stunnel: $(stunnel4 -version 2>&1 | grep -m1 '^stunnel')"
    has gost-tls || has gost-socks5-tls || has gost-relay-tls &&
        echo "gost: $(shown "$GOST") ${GOST_EXTRA_ARGS:-}"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

# --------------------------------------------------------------- rounds ---
run_rounds

# --------------------------------------------------------------- report ---
TABLE=$(
    echo "Reference: $REF. Direct is plain TCP with no proxy (the ceiling); every other system is TLS from the load generator to the proxy and plain TCP from the proxy to the target."
    echo "Keep-alive = requests on 50 TLS connections (handshakes before the clock); new connections = TCP connect + full TLS handshake (+ SOCKS5 or relay CONNECT) + 1 request + close; idle = TLS connections, each proven with one request."
    echo
    "$LG" report "$TMP/results.jsonl" --baseline direct --reference "$REF" 2>/dev/null ||
        echo "(no results)"
    # What each system negotiated (from the bulk result lines).
    neg=$(sed -n 's/.*"label":"\([^"]*\)".*"tls_negotiated":"\([^"]*\)".*/- \1: \2/p' \
        "$TMP/results.jsonl" | sort -u)
    if [ -n "$neg" ]; then echo; echo "Negotiated:"; echo "$neg"; fi
    skipped_text
)
write_report "$TABLE"
