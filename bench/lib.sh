# Helpers shared by bench/forward.sh and bench/proxy.sh (sourced, not run).
# They use the caller's globals: SYSTEMS, TMP, LG, LOAD_CPU, PIDS.
# shellcheck shell=bash

log() { printf '%s\n' "$*" >&2; }
has() { case " $SYSTEMS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
drop_system() { SYSTEMS=$(printf '%s\n' $SYSTEMS | grep -vx "$1" | tr '\n' ' '); }

# Stops one process we started (and, for socat, its per-connection children).
stop_pid() {
    local pid=$1 kids i
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null
    [ -n "$kids" ] && kill -TERM $kids 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    rm -rf "$TMP"
}

# Runs a load-generator client pinned to the load core, bounded by timeout;
# JSON result lines go to the results file, human text to the log.
client() {
    timeout 300 taskset -c "$LOAD_CPU" "$LG" "$@" 2>"$TMP/client.err" |
        grep '^{' >>"$TMP/results.jsonl"
    local rc=${PIPESTATUS[0]}
    sed 's/^/  /' "$TMP/client.err" | tee -a "$TMP/human.log" >&2
    return "$rc"
}

# await_proxy SYSTEM PID: records the proxy just started in the background
# and waits until it accepts on $PROXY_PORT (its log is $TMP/SYSTEM.log).
await_proxy() {
    local sys=$1
    PROXY_PID=$2
    PIDS+=("$PROXY_PID")
    if ! "$LG" waitport --target "127.0.0.1:$PROXY_PORT" --timeout 15; then
        log "$sys did not start; its log:"
        tail -n 20 "$TMP/$sys.log" >&2
        stop_pid "$PROXY_PID"
        return 1
    fi
    # Let the connection made by waitport finish before any baseline.
    sleep 0.3
    return 0
}

stop_proxy() {
    [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
    PROXY_PID=""
}

PINNING_SHOWN=""
show_pinning() {
    local sys=$1
    case " $PINNING_SHOWN " in *" $sys "*) return ;; esac
    PINNING_SHOWN="$PINNING_SHOWN $sys"
    [ -n "$PROXY_PID" ] && log "  pinning: $sys $(taskset -cp "$PROXY_PID" 2>&1 | sed 's/.*current //')"
}

# start_targets: the HTTP and sink target servers on the load core; sets
# HTTP_PORT and SINK_PORT once both accept.
start_targets() {
    read -r HTTP_PORT SINK_PORT < <("$LG" freeport --count 2 | tr '\n' ' ')
    taskset -c "$LOAD_CPU" "$LG" server --listen "127.0.0.1:$HTTP_PORT" --mode http \
        --max-seconds 3600 2>>"$TMP/servers.log" &
    PIDS+=($!)
    taskset -c "$LOAD_CPU" "$LG" server --listen "127.0.0.1:$SINK_PORT" --mode sink \
        --max-seconds 3600 2>>"$TMP/servers.log" &
    PIDS+=($!)
    local p
    for p in $HTTP_PORT $SINK_PORT; do
        "$LG" waitport --target "127.0.0.1:$p" || { cat "$TMP/servers.log" >&2; exit 1; }
    done
}
