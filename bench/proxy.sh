#!/usr/bin/env bash
# Proxy-protocol benchmark on loopback: SOCKS5 (gost-rs, microsocks, dante)
# and HTTP proxy (gost-rs, tinyproxy), against the same traffic sent directly
# (no proxy), measured in ONE run with interleaved rounds and reported as
# medians with ratios to direct and to a peer. See bench/README.md.
#
#   bench/proxy.sh            full run (3 rounds, 9,000 idle conns)
#   bench/proxy.sh --quick    smoke run (2 rounds, 2 s per metric, 1,000 idle)
#
# The proxy runs pinned to core 0, the load generator and the target
# servers to core 1, so the proxy never competes with its own load.

set -uo pipefail

ALL_SYSTEMS="direct gost-socks5 microsocks dante gost-http tinyproxy"
# gost-socks5-old and gost-http-old: a second gost binary (GOST_OLD_BIN),
# for an old-against-new run; gost-socks5-conns: gost-rs with the web API on,
# which turns on the registry of live connections (bench/connections.sh);
# only when named in --systems.
OPTIONAL_SYSTEMS="gost-socks5-old gost-http-old gost-socks5-conns"

usage() {
    usage_common proxy.sh "1,000 idle connections"
    echo "  GOST_EXTRA_ARGS    extra arguments for gost, e.g. \"-C bench.yaml\" (default: none)"
    echo "  GOST_OLD_BIN       the gost binary of gost-socks5-old and gost-http-old"
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
IDLE_OPTION=1
parse_args "$@"

run_settings

bench_paths proxy

# Protocol family of a system: which table it is in and how the client talks.
family() {
    case "$1" in
        direct) echo direct ;;
        gost-socks5|gost-socks5-old|gost-socks5-conns|microsocks|dante) echo socks5 ;;
        gost-http|gost-http-old|tinyproxy) echo http ;;
    esac
}
uses_gost() { has gost-socks5 || has gost-http || has gost-socks5-conns; }

# ---------------------------------------------------------------- build ---
build_binaries gost-socks5 gost-http gost-socks5-conns

# ------------------------------------------------------------- peer tools ---
# system -> command it needs -> Debian package
peer_cmd() { case "$1" in microsocks) echo microsocks ;; dante) echo danted ;; tinyproxy) echo tinyproxy ;; esac; }
peer_pkg() { case "$1" in microsocks) echo microsocks ;; dante) echo dante-server ;; tinyproxy) echo tinyproxy ;; esac; }
PEERS="microsocks dante tinyproxy"
missing=""
for p in $PEERS; do
    if has "$p" && ! command -v "$(peer_cmd "$p")" >/dev/null; then missing="$missing $(peer_pkg "$p")"; fi
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
    log "installing:$missing"
    # One at a time, so that one unavailable package does not block the others.
    for pkg in $missing; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1; } ||
            log "WARNING: apt-get install $pkg failed"
    done
fi
for p in $PEERS; do
    if has "$p" && ! command -v "$(peer_cmd "$p")" >/dev/null; then
        log "WARNING: $(peer_cmd "$p") (package $(peer_pkg "$p")) not available; skipping $p"
        drop_system "$p"
    fi
done
# Reference column of each table: the first peer present.
SOCKS_REF=none
for p in microsocks dante gost-socks5; do has "$p" && { SOCKS_REF=$p; break; }; done
HTTP_REF=none
for p in tinyproxy gost-http; do has "$p" && { HTTP_REF=$p; break; }; done

# --------------------------------------------------- limits and pinning ---
raise_fd_limit
PEER_MAXCONN=$(( IDLE_N + 500 ))

setup_run proxy
# Peers that drop privileges to nobody must be able to reach their log file.
chmod 755 "$TMP"

# ------------------------------------------------------------ targets ---
start_targets

# -------------------------------------------------------------- proxies ---
# start_proxy SYSTEM: starts the proxy pinned to the proxy core on a fresh
# port; sets PROXY_PID and PROXY_PORT. direct: nothing to start.
start_proxy() {
    local sys=$1
    PROXY_PID=""; PROXY_PORT=""
    [ "$sys" = direct ] && return 0
    PROXY_PORT=$("$LG" freeport) || return 1
    case "$sys" in
        gost-socks5|gost-http|gost-socks5-old|gost-http-old|gost-socks5-conns)
            local scheme=socks5 bin=$GOST api=""
            case "$sys" in gost-http*) scheme=http ;; esac
            case "$sys" in *-old) bin=${GOST_OLD_BIN:?GOST_OLD_BIN names the binary of $sys} ;; esac
            case "$sys" in *-conns) api="-api 127.0.0.1:$("$LG" freeport)" ;; esac
            # shellcheck disable=SC2086
            taskset -c "$PROXY_CPU" "$bin" -L "$scheme://127.0.0.1:$PROXY_PORT" $api \
                ${GOST_EXTRA_ARGS:-} >"$TMP/$sys.log" 2>&1 & ;;
        microsocks)
            taskset -c "$PROXY_CPU" microsocks -i 127.0.0.1 -p "$PROXY_PORT" \
                >"$TMP/$sys.log" 2>&1 & ;;
        dante)
            cat >"$TMP/danted.conf" <<EOF2
logoutput: $TMP/dante-run.log
internal: 127.0.0.1 port = $PROXY_PORT
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
    from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
    from: 127.0.0.0/8 to: 0.0.0.0/0
    command: connect
}
EOF2
            : >"$TMP/dante-run.log"; chmod 666 "$TMP/dante-run.log"
            # Foreground (no -D), one mother process.
            taskset -c "$PROXY_CPU" danted -f "$TMP/danted.conf" -N 1 \
                >"$TMP/$sys.log" 2>&1 & ;;
        tinyproxy)
            : >"$TMP/tinyproxy-run.log"; chmod 666 "$TMP/tinyproxy-run.log"
            cat >"$TMP/tinyproxy.conf" <<EOF2
User nobody
Group nogroup
Port $PROXY_PORT
Listen 127.0.0.1
Timeout 600
MaxClients $PEER_MAXCONN
Allow 127.0.0.1
LogFile "$TMP/tinyproxy-run.log"
LogLevel Critical
DisableViaHeader Yes
EOF2
            # -d: foreground. No ConnectPort line: CONNECT to any port.
            taskset -c "$PROXY_CPU" tinyproxy -d -c "$TMP/tinyproxy.conf" \
                >"$TMP/$sys.log" 2>&1 & ;;
        *) log "unknown system $sys"; return 1 ;;
    esac
    await_proxy "$sys" $!
}

# run_system SYSTEM ROUND: every metric for one system, on one fresh proxy
# (so that the idle-memory baseline is its footprint right after start-up).
run_system() {
    local sys=$1 round=$2 via=() watch=()
    log "== round $round: $sys"
    start_proxy "$sys" || return 0
    show_pinning "$sys"
    case "$(family "$sys")" in
        socks5) via=(--socks5 "127.0.0.1:$PROXY_PORT") ;;
        http) via=(--http-proxy "127.0.0.1:$PROXY_PORT") ;;
    esac
    [ -n "$PROXY_PID" ] && watch=(--watch-pid "$PROXY_PID")
    local common=(--label "$sys" --round "$round" "${via[@]}" "${watch[@]}")
    local http=(--target "127.0.0.1:$HTTP_PORT" "${common[@]}")
    if [ -n "$PROXY_PID" ]; then
        client idle "${http[@]}" --conns "$IDLE_N" --settle "$SETTLE" \
            --hold "$HOLD" || log "  idle failed"
        sleep 0.5
    fi
    # HTTP proxies: absolute-URI requests on kept-alive client connections.
    client keepalive "${http[@]}" --conns "$KA_CONNS" --seconds "$WINDOW" \
        --warmup "$WARMUP" || log "  keepalive failed"
    # New connection + handshake (SOCKS5 or CONNECT) + one request each.
    client connrate "${http[@]}" --concurrency "$CR_WORKERS" --seconds "$WINDOW" \
        --warmup "$WARMUP" || log "  connrate failed"
    client bulk --target "127.0.0.1:$SINK_PORT" "${common[@]}" \
        --seconds "$BULK_S" || log "  bulk failed"
    stop_proxy
}

pkg_version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo '?'; }

# -------------------------------------------------------------- header ---
{
    header_common "gost-rs proxy-protocol benchmark"
    echo "pinning: proxy on core $PROXY_CPU; load generator + target servers on core $LOAD_CPU (taskset)"
    echo "ulimit -n: $SOFT; net.ipv4.tcp_tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null); ephemeral ports: $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "bulk: CONNECT + 1 stream upload for ${BULK_S} s; keep-alive: $KA_CONNS conns, ${WINDOW} s; new connections: $CR_WORKERS workers, ${WINDOW} s; idle: $IDLE_N conns"
    has microsocks && echo "microsocks: $(pkg_version microsocks)"
    has dante && echo "dante: $(pkg_version dante-server) (danted -N 1)"
    has tinyproxy && echo "tinyproxy: $(pkg_version tinyproxy-bin) (MaxClients $PEER_MAXCONN)"
    uses_gost && echo "gost: $(shown "$GOST") ${GOST_EXTRA_ARGS:-}"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

# --------------------------------------------------------------- rounds ---
run_rounds

# --------------------------------------------------------------- report ---
# table FAMILY REFERENCE: direct's lines plus the family's systems.
table() {
    local fam=$1 ref=$2 labels="direct" s
    for s in $SYSTEMS; do [ "$(family "$s")" = "$fam" ] && labels="$labels|$s"; done
    grep -E "\"label\":\"($labels)\"" "$TMP/results.jsonl" >"$TMP/$fam.jsonl"
    "$LG" report "$TMP/$fam.jsonl" --baseline direct --reference "$ref" 2>/dev/null ||
        echo "(no results)"
}
TABLES=$(
    echo "### SOCKS5 (reference: $SOCKS_REF)"
    echo
    echo "Keep-alive = requests in a SOCKS5 tunnel; new connections = connect + SOCKS5 handshake + 1 request; idle = SOCKS5 tunnels."
    echo
    table socks5 "$SOCKS_REF"
    echo
    echo "### HTTP proxy (reference: $HTTP_REF)"
    echo
    echo "Keep-alive = absolute-URI GETs to the proxy; new connections = connect + CONNECT + 1 request; bulk and idle = CONNECT tunnels."
    echo
    table http "$HTTP_REF"
)
write_report "$TABLES"
