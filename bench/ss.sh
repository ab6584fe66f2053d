#!/usr/bin/env bash
# Shadowsocks server benchmark on loopback: gost-rs's ss handler against
# shadowsocks-rust's ssserver and shadowsocks-libev's ss-server, for
# aes-256-gcm and chacha20-ietf-poly1305, in ONE run with interleaved
# rounds, reported as medians with ratios to ssserver of the same cipher.
# See bench/README.md.
#
#   load -> sslocal (SOCKS5 on :A) -> SERVER :B -> target
#
#   bench/ss.sh            full run (3 rounds)
#   bench/ss.sh --quick    smoke run (2 rounds, 2 s per metric)
#
# The server runs pinned to core 0; the client (shadowsocks-rust's
# sslocal for every server, so the client side is the same), the load
# generator and the target servers share core 1. sslocal and ssserver come
# from SS_RUST_BIN or <repo>/.tools/bin, where the ss tests build them;
# ss-server from Debian's shadowsocks-libev.

set -uo pipefail

ALL_SYSTEMS="gost-aes ssrust-aes libev-aes gost-chacha ssrust-chacha libev-chacha"

usage() {
    usage_common ss.sh
    echo "  SS_RUST_BIN        directory with sslocal and ssserver (default: <repo>/.tools/bin)"
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"
run_settings

bench_paths ss
build_binaries gost-aes gost-chacha

SS_RUST=${SS_RUST_BIN:-$ROOT/.tools/bin}
[ -x "$SS_RUST/sslocal" ] || {
    log "no sslocal in $SS_RUST: run the ss tests once (cargo test -p gost-e2e --test ss) or set SS_RUST_BIN"
    exit 1
}
[ -x /usr/bin/ss-server ] || apt_install shadowsocks-libev
if [ ! -x /usr/bin/ss-server ]; then
    for s in libev-aes libev-chacha; do
        has "$s" && note_skip "$s" "ss-server (shadowsocks-libev) is not installed"
        drop_system "$s"
    done
fi

setup_run ss
start_targets
PASSWORD=bench-password-0123456789

# cipher SYSTEM: the method a system's name stands for.
cipher() {
    case "$1" in
        *-aes) echo aes-256-gcm ;;
        *-chacha) echo chacha20-ietf-poly1305 ;;
    esac
}

# start_system SYSTEM: the server on the proxy core, then sslocal on the
# load core; sets CLIENT_PORT, PROXY_PID and SYSTEM_PIDS.
start_system() {
    local sys=$1 method server_port
    method=$(cipher "$sys")
    SYSTEM_PIDS=()
    read -r CLIENT_PORT server_port < <("$LG" freeport --count 2 | tr '\n' ' ')
    PROXY_PORT=$server_port
    case "$sys" in
        gost-*)
            taskset -c "$PROXY_CPU" "$GOST" -L "ss://$method:$PASSWORD@127.0.0.1:$server_port" \
                >"$TMP/$sys.log" 2>&1 & ;;
        ssrust-*)
            taskset -c "$PROXY_CPU" "$SS_RUST/ssserver" -s "127.0.0.1:$server_port" \
                -m "$method" -k "$PASSWORD" >"$TMP/$sys.log" 2>&1 & ;;
        libev-*)
            taskset -c "$PROXY_CPU" /usr/bin/ss-server -s 127.0.0.1 -p "$server_port" \
                -m "$method" -k "$PASSWORD" >"$TMP/$sys.log" 2>&1 & ;;
    esac
    await_proxy "$sys" $! || return 1
    SYSTEM_PIDS+=("$PROXY_PID")
    taskset -c "$LOAD_CPU" "$SS_RUST/sslocal" -b "127.0.0.1:$CLIENT_PORT" \
        -s "127.0.0.1:$server_port" -m "$method" -k "$PASSWORD" >"$TMP/sslocal.log" 2>&1 &
    SYSTEM_PIDS+=($!)
    PIDS+=($!)
    if ! wait_listening "$!" "$CLIENT_PORT"; then
        note_skip "$sys" "sslocal did not start: $(start_failure "$TMP/sslocal.log")"
        return 1
    fi
    sleep 0.3
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
    show_pinning "$sys"
    local common=(--socks5 "127.0.0.1:$CLIENT_PORT" --watch-pid "$PROXY_PID"
        --label "$sys" --round "$round")
    client keepalive --target "127.0.0.1:$HTTP_PORT" "${common[@]}" --conns "$KA_CONNS" \
        --seconds "$WINDOW" --warmup "$WARMUP" || log "  keepalive failed"
    client connrate --target "127.0.0.1:$HTTP_PORT" "${common[@]}" \
        --concurrency "$CR_WORKERS" --seconds "$WINDOW" --warmup "$WARMUP" ||
        log "  connrate failed"
    client bulk --target "127.0.0.1:$SINK_PORT" "${common[@]}" --seconds "$BULK_S" ||
        log "  bulk failed"
    stop_system
}

{
    header_common "gost-rs Shadowsocks server benchmark"
    echo "pinning: server under test on core $PROXY_CPU; sslocal, load generator and target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "client: $("$SS_RUST/sslocal" --version 2>&1 | head -n 1) for every server; libev: $(dpkg-query -W -f='${Version}' shadowsocks-libev 2>/dev/null || echo none)"
    echo "bulk: SOCKS5 CONNECT + 1 stream upload for ${BULK_S} s; keep-alive: $KA_CONNS conns, ${WINDOW} s; new connections: $CR_WORKERS workers, ${WINDOW} s"
    echo "gost: $(shown "$GOST")"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

TABLE=$(
    for c in aes chacha; do
        echo "### $(cipher "x-$c")"
        grep "\"label\":\"[a-z]*-$c\"" "$TMP/results.jsonl" >"$TMP/results-$c.jsonl"
        "$LG" report "$TMP/results-$c.jsonl" --baseline "ssrust-$c" --reference "libev-$c" 2>/dev/null ||
            echo "(no results)"
        echo
    done
    skipped_text
)
write_report "$TABLE"
