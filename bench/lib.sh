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
