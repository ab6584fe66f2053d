#!/usr/bin/env bash
# Chain benchmark on loopback: a two-hop chain (client -> gost http ->
# gost socks5 -> target) against one gost hop and against the same traffic
# sent directly, measured in ONE run with interleaved rounds and reported as
# medians with ratios to direct and to the one-hop proxy. See bench/README.md.
#
#   bench/chain.sh            full run (3 rounds)
#   bench/chain.sh --quick    smoke run (2 rounds, 2 s per metric)
#
# Both gost processes run pinned to core 0, the load generator and the
# target servers to core 1.

set -uo pipefail

ALL_SYSTEMS="direct gost-1hop gost-2hop"

usage() {
    cat <<EOF2
usage: bench/chain.sh [options]
  --quick            short smoke run (2 rounds, 2 s per metric)
  --rounds N         repetitions; every round runs every system in turn (default 3)
  --systems "LIST"   subset/order of: $ALL_SYSTEMS (default: all)
  --seconds S        measured window of the connection-rate test (default 8)
  --no-build         use the existing release binaries
  -h, --help         this text
environment:
  CARGO_TARGET_DIR   where the release binaries are (default: <repo>/target)
  GOST_BIN           gost binary to test (default: \$CARGO_TARGET_DIR/release/gost)
EOF2
}

QUICK=0
ROUNDS=""
SYSTEMS=$ALL_SYSTEMS
WINDOW=""
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --systems) SYSTEMS="$2"; shift ;;
        --seconds) WINDOW="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for sys in $SYSTEMS; do
    case " $ALL_SYSTEMS " in
        *" $sys "*) ;;
        *) echo "unknown system '$sys' in --systems ($ALL_SYSTEMS)" >&2; exit 2 ;;
    esac
done

if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-2}; WINDOW=${WINDOW:-2}; BULK_S=2; WARMUP=0.3
else
    ROUNDS=${ROUNDS:-3}; WINDOW=${WINDOW:-8}; BULK_S=5; WARMUP=0.5
fi
CR_WORKERS=32   # concurrent connect/CONNECT/request/close loops

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LG=$TARGET_DIR/release/loadgen
GOST=${GOST_BIN:-$TARGET_DIR/release/gost}
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
OUT=$RESULTS_DIR/chain-$STAMP.txt

# log, has, drop_system, stop_pid, cleanup, client
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

cd "$ROOT" || exit 1
if [ "$BUILD" = 1 ]; then
    cargo build --release -p gost-host -p gost-loadgen || exit 1
fi
[ -x "$LG" ] || { log "no load generator at $LG (build failed?)"; exit 1; }
[ -x "$GOST" ] || { log "no gost binary at $GOST"; exit 1; }

if [ "$(nproc)" -ge 2 ]; then
    PROXY_CPU=0; LOAD_CPU=1
else
    PROXY_CPU=0; LOAD_CPU=0
    log "WARNING: one core only: proxies and load generator share it"
fi

TMP=$(mktemp -d /tmp/gost-bench-chain.XXXXXX)
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

start_targets

# start_gost LOGNAME ARGS...: one gost pinned to the proxy core; sets
# GOST_PID once its first -L port accepts.
start_gost() {
    local name=$1 port=$2; shift 2
    taskset -c "$PROXY_CPU" "$GOST" "$@" >"$TMP/$name.log" 2>&1 &
    GOST_PID=$!
    PIDS+=("$GOST_PID")
    if ! "$LG" waitport --target "127.0.0.1:$port" --timeout 15; then
        log "$name did not start; its log:"; tail -n 20 "$TMP/$name.log" >&2
        return 1
    fi
}

# start_system SYSTEM: sets FRONT_PORT (where the client connects),
# FRONT_PID and SYSTEM_PIDS.
start_system() {
    local sys=$1 back
    FRONT_PORT=""; FRONT_PID=""; SYSTEM_PIDS=()
    [ "$sys" = direct ] && return 0
    FRONT_PORT=$("$LG" freeport) || return 1
    case "$sys" in
        gost-1hop)
            start_gost front "$FRONT_PORT" -L "http://127.0.0.1:$FRONT_PORT" || return 1
            FRONT_PID=$GOST_PID; SYSTEM_PIDS=("$GOST_PID") ;;
        gost-2hop)
            back=$("$LG" freeport) || return 1
            start_gost back "$back" -L "socks5://127.0.0.1:$back" || return 1
            SYSTEM_PIDS=("$GOST_PID")
            start_gost front "$FRONT_PORT" -L "http://127.0.0.1:$FRONT_PORT" \
                -F "socks5://127.0.0.1:$back" || return 1
            FRONT_PID=$GOST_PID; SYSTEM_PIDS+=("$GOST_PID") ;;
    esac
    # Let the connections made by waitport finish before measuring.
    sleep 0.3
}

stop_system() {
    local p
    for p in "${SYSTEM_PIDS[@]}"; do stop_pid "$p"; done
    SYSTEM_PIDS=()
}

run_system() {
    local sys=$1 round=$2 via=() watch=()
    log "== round $round: $sys"
    start_system "$sys" || { stop_system; return 0; }
    [ -n "$FRONT_PORT" ] && via=(--http-proxy "127.0.0.1:$FRONT_PORT")
    [ -n "$FRONT_PID" ] && watch=(--watch-pid "$FRONT_PID")
    local common=(--label "$sys" --round "$round" "${via[@]}" "${watch[@]}")
    # New connection + CONNECT through every hop + one request each.
    client connrate --target "127.0.0.1:$HTTP_PORT" "${common[@]}" \
        --concurrency "$CR_WORKERS" --seconds "$WINDOW" --warmup "$WARMUP" ||
        log "  connrate failed"
    client bulk --target "127.0.0.1:$SINK_PORT" "${common[@]}" \
        --seconds "$BULK_S" || log "  bulk failed"
    stop_system
}

mkdir -p "$RESULTS_DIR"
{
    echo "# gost-rs chain benchmark, $STAMP"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "kernel: $(uname -r); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); cores: $(nproc)"
    echo "pinning: every gost on core $PROXY_CPU; load generator + target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "gost-1hop: client -> gost http -> target; gost-2hop: client -> gost http -F socks5 -> gost socks5 -> target"
    echo "bulk: CONNECT + 1 stream upload for ${BULK_S} s; new connections: $CR_WORKERS workers, ${WINDOW} s"
    echo "per proxy CPU-s rows count the front gost only (for gost-2hop the back hop's CPU is not included)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

read -r -a ORDER <<<"$SYSTEMS"
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
    n=${#ORDER[@]}
    for i in $(seq 0 $((n - 1))); do
        run_system "${ORDER[$(( (i + round - 1) % n ))]}" "$round"
    done
done
END_NOTE="measured in $(( $(date +%s) - START )) s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
log "$END_NOTE"

REF=none
has gost-1hop && REF=gost-1hop
TABLE=$("$LG" report "$TMP/results.jsonl" --baseline direct --reference "$REF" 2>/dev/null ||
    echo "(no results)")
{
    cat "$TMP/header.txt"
    echo "$END_NOTE"
    echo
    echo "$TABLE"
    echo
    echo "## Per-run output"
    cat "$TMP/human.log"
    echo
    echo "## Result lines (JSON)"
    cat "$TMP/results.jsonl"
} >"$OUT"
echo
echo "$TABLE"
echo
echo "Full results: $OUT"
