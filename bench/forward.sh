#!/usr/bin/env bash
# TCP port-forwarding benchmark on loopback: direct (no proxy), gost-rs,
# haproxy and socat, measured in ONE run with interleaved rounds, reported
# as medians with ratios to direct and to haproxy. See bench/README.md.
#
#   bench/forward.sh            full run (3 rounds, 9,000 idle conns, ~6-8 min)
#   bench/forward.sh --quick    smoke run (2 rounds, 2 s per metric, 1,000 idle)
#
# The proxy runs pinned to core 0, the load generator and the target
# servers to core 1, so the proxy never competes with its own load.

set -uo pipefail

ALL_SYSTEMS="direct gost haproxy socat"
# Busy-polling variants (gost-rs with GOST_BUSY_POLL, haproxy with its
# busy-polling option), and gost-old (a second gost binary, GOST_OLD_BIN,
# for an old-against-new run), and gost-conns (gost-rs with the web API on,
# which turns on the registry of live connections; bench/connections.sh),
# run only when named in --systems.
OPTIONAL_SYSTEMS="gost-bp haproxy-bp gost-old gost-conns"

usage() {
    usage_common forward.sh "1,000 idle connections"
    cat <<'EOF'
  GOST_EXTRA_ARGS    extra arguments for gost, e.g. "-C bench.yaml" (default: none)
  SINK_RCVBUF        fixed SO_RCVBUF of the bulk sink in bytes (default: kernel autotuning)
  BUSY_POLL          GOST_BUSY_POLL window of gost-bp (default: 1ms)
  GOST_OLD_BIN       the gost binary of system gost-old (an earlier build)
systems: direct gost haproxy socat by default; gost-bp and haproxy-bp are
the busy-polling variants, gost-old runs GOST_OLD_BIN, gost-conns runs gost
with the web API on (so the registry of live connections)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
IDLE_OPTION=1
parse_args "$@"

run_settings

bench_paths forward
build_binaries gost gost-bp gost-conns

# ------------------------------------------------------------- peer tools ---
missing=""
for tool in haproxy socat; do
    if { has "$tool" || has "$tool-bp"; } && ! command -v "$tool" >/dev/null; then
        missing="$missing $tool"
    fi
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
    log "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1; }
fi
for tool in haproxy socat; do
    if ! command -v "$tool" >/dev/null; then
        for sys in "$tool" "$tool-bp"; do
            if has "$sys"; then
                log "WARNING: $tool not available; skipping $sys"
                drop_system "$sys"
            fi
        done
    fi
done

# --------------------------------------------------- limits and pinning ---
raise_fd_limit
HAPROXY_MAXCONN=$(( IDLE_N + 500 ))
[ "$HAPROXY_MAXCONN" -gt "$MAX_IDLE" ] && HAPROXY_MAXCONN=$MAX_IDLE

setup_run forward

# ------------------------------------------------------------ targets ---
start_targets

# -------------------------------------------------------------- proxies ---
# start_proxy SYSTEM TARGET_PORT: starts the proxy pinned to the proxy core
# on a fresh port; sets PROXY_PID and PROXY_PORT. direct: the target itself.
start_proxy() {
    local sys=$1 tport=$2
    PROXY_PID=""
    if [ "$sys" = direct ]; then
        PROXY_PORT=$tport
        return 0
    fi
    PROXY_PORT=$("$LG" freeport) || return 1
    case "$sys" in
        gost|gost-bp|gost-old|gost-conns)
            local bp="" bin=$GOST api=""
            [ "$sys" = gost-bp ] && bp=${BUSY_POLL:-1ms}
            [ "$sys" = gost-conns ] && api="-api 127.0.0.1:$("$LG" freeport)"
            [ "$sys" = gost-old ] && bin=${GOST_OLD_BIN:?GOST_OLD_BIN names the binary of gost-old}
            # shellcheck disable=SC2086
            GOST_BUSY_POLL=$bp taskset -c "$PROXY_CPU" "$bin" \
                -L "tcp://127.0.0.1:$PROXY_PORT/127.0.0.1:$tport" $api \
                ${GOST_EXTRA_ARGS:-} >"$TMP/gost.log" 2>&1 & ;;
        haproxy|haproxy-bp)
            local bp=""
            [ "$sys" = haproxy-bp ] && bp="    busy-polling"
            cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn $HAPROXY_MAXCONN
    nbthread 1
$bp
defaults
    mode tcp
    maxconn $HAPROXY_MAXCONN
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fwd
    bind 127.0.0.1:$PROXY_PORT backlog 4096
    default_backend target
backend target
    server t1 127.0.0.1:$tport
EOF
            taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 & ;;
        socat)
            taskset -c "$PROXY_CPU" socat \
                "TCP-LISTEN:$PROXY_PORT,bind=127.0.0.1,reuseaddr,fork,backlog=4096" \
                "TCP:127.0.0.1:$tport" >"$TMP/socat.log" 2>&1 & ;;
        *) log "unknown system $sys"; return 1 ;;
    esac
    await_proxy "$sys" $!
}

# run_system SYSTEM ROUND: every metric for one system.
run_system() {
    local sys=$1 round=$2 watch=() label
    label=$sys
    case "$sys" in gost) label=gost-rs ;; gost-bp) label=gost-rs-bp ;; gost-old) label=gost-rs-old ;; gost-conns) label=gost-rs-conns ;; esac
    log "== round $round: $label"

    # Request tests against the HTTP target, on a fresh proxy so that the
    # idle-memory baseline is the proxy's footprint right after start-up.
    if start_proxy "$sys" "$HTTP_PORT"; then
        show_pinning "$label"
        [ -n "$PROXY_PID" ] && watch=(--watch-pid "$PROXY_PID")
        local common=(--target "127.0.0.1:$PROXY_PORT" --label "$label" --round "$round" "${watch[@]}")
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

    # Bulk upload against the sink target.
    if start_proxy "$sys" "$SINK_PORT"; then
        watch=()
        [ -n "$PROXY_PID" ] && watch=(--watch-pid "$PROXY_PID")
        client bulk --target "127.0.0.1:$PROXY_PORT" --label "$label" --round "$round" \
            "${watch[@]}" --seconds "$BULK_S" || log "  bulk failed"
        stop_proxy
    fi
}

# -------------------------------------------------------------- header ---
{
    header_common "gost-rs forwarding benchmark"
    echo "pinning: proxy on core $PROXY_CPU; load generator + target servers on core $LOAD_CPU (taskset)"
    echo "ulimit -n: $SOFT; net.ipv4.tcp_tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null); ephemeral ports: $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "bulk: 1 stream upload for ${BULK_S} s; keep-alive: $KA_CONNS conns, ${WINDOW} s; new connections: $CR_WORKERS workers, ${WINDOW} s; idle: $IDLE_N conns"
    has haproxy && echo "haproxy: $(haproxy -v 2>/dev/null | head -n 1)"
    has socat && echo "socat: $(socat -V 2>/dev/null | grep -m1 'socat version')"
    has gost && echo "gost: $(shown "$GOST") ${GOST_EXTRA_ARGS:-}"
    has gost-bp && echo "gost-rs-bp: GOST_BUSY_POLL=${BUSY_POLL:-1ms}"
    has gost-old && echo "gost-rs-old: $(shown "${GOST_OLD_BIN:-}")"
    has gost-conns && echo "gost-rs-conns: gost-rs with -api (registry of live connections on)"
    has haproxy-bp && echo "haproxy-bp: haproxy with busy-polling"
    # Other work on the machine (e.g. compiles) is the main source of noise.
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

# --------------------------------------------------------------- rounds ---
run_rounds

# --------------------------------------------------------------- report ---
TABLE=$("$LG" report "$TMP/results.jsonl" --baseline direct --reference haproxy) || TABLE="(no results)"
write_report "$TABLE"
