# Helpers shared by the bench/ scripts (sourced, not run). A script sets
# ROOT and ALL_SYSTEMS (run by default; OPTIONAL_SYSTEMS only when named in
# --systems) and defines usage(), then calls parse_args,
# bench_paths, build_binaries, setup_run, ... run_rounds and write_report.
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

# wait_listening PID PORT: waits (up to 15 s) until something accepts on
# 127.0.0.1:PORT; gives up at once if process PID has exited (a proxy
# that rejected its configuration).
wait_listening() {
    local pid=$1 port=$2 i
    for i in $(seq 75); do
        kill -0 "$pid" 2>/dev/null || return 1
        "$LG" waitport --target "127.0.0.1:$port" --timeout 0.2 2>/dev/null && return 0
    done
    return 1
}

# note_skip SYSTEM REASON: remembers (once per system) why a system was
# skipped, for the report (skipped_text).
note_skip() {
    grep -qs "^- $1:" "$TMP/skipped.txt" || echo "- $1: $2" >>"$TMP/skipped.txt"
}
# start_failure LOG: the first error line of a proxy that did not start
# (else its last line), without timestamp or temp-dir paths, for the report.
start_failure() {
    { grep -m1 -iE 'error|alert|fatal|invalid' "$1" || grep -v '^[[:space:]]*$' "$1" | tail -n 1; } 2>/dev/null |
        sed -E -e 's/^[0-9]{4}-[0-9-]+T[0-9:.]+Z? +//' -e "s|$TMP|<tmp>|g" -e 's/^[[:space:]]+//' | cut -c1-160
}
skipped_text() {
    [ -s "$TMP/skipped.txt" ] || return 0
    echo
    echo "Skipped:"
    cat "$TMP/skipped.txt"
}

# await_proxy SYSTEM PID: records the proxy just started in the background
# and waits until it accepts on $PROXY_PORT (its log is $TMP/SYSTEM.log).
await_proxy() {
    local sys=$1
    PROXY_PID=$2
    PIDS+=("$PROXY_PID")
    if ! wait_listening "$PROXY_PID" "$PROXY_PORT"; then
        log "$sys did not start; its log:"
        tail -n 20 "$TMP/$sys.log" >&2
        note_skip "$sys" "did not start: $(start_failure "$TMP/$sys.log")"
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
# HTTP_PORT and SINK_PORT once both accept. SINK_RCVBUF (bytes) fixes the
# sink's receive buffer instead of letting the kernel autotune it.
start_targets() {
    local sink_opts=()
    [ -n "${SINK_RCVBUF:-}" ] && sink_opts=(--rcvbuf "$SINK_RCVBUF")
    read -r HTTP_PORT SINK_PORT < <("$LG" freeport --count 2 | tr '\n' ' ')
    taskset -c "$LOAD_CPU" "$LG" server --listen "127.0.0.1:$HTTP_PORT" --mode http \
        --max-seconds 3600 2>>"$TMP/servers.log" &
    PIDS+=($!)
    taskset -c "$LOAD_CPU" "$LG" server --listen "127.0.0.1:$SINK_PORT" --mode sink \
        "${sink_opts[@]}" --max-seconds 3600 2>>"$TMP/servers.log" &
    PIDS+=($!)
    local p
    for p in $HTTP_PORT $SINK_PORT; do
        "$LG" waitport --target "127.0.0.1:$p" || { cat "$TMP/servers.log" >&2; exit 1; }
    done
}

# parse_args ARGS...: the options every script takes. --idle-conns only
# where the script sets IDLE_OPTION=1 (it holds idle connections).
parse_args() {
    QUICK=0; ROUNDS=""; SYSTEMS=$ALL_SYSTEMS; IDLE_N=""; WINDOW=""; BUILD=1
    local sys
    while [ $# -gt 0 ]; do
        case "$1" in
            --rounds|--systems|--seconds|--idle-conns)
                [ $# -ge 2 ] || { echo "$1 needs a value" >&2; usage >&2; exit 2; } ;;
        esac
        case "$1" in
            --quick) QUICK=1 ;;
            --rounds) ROUNDS="$2"; shift ;;
            --systems) SYSTEMS="$2"; shift ;;
            --seconds) WINDOW="$2"; shift ;;
            --idle-conns)
                if [ "${IDLE_OPTION:-0}" != 1 ]; then
                    echo "unknown option: $1" >&2; usage >&2; exit 2
                fi
                IDLE_N="$2"; shift ;;
            --no-build) BUILD=0 ;;
            -h|--help) usage; exit 0 ;;
            *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        esac
        shift
    done
    for sys in $SYSTEMS; do
        case " $ALL_SYSTEMS ${OPTIONAL_SYSTEMS:-} " in
            *" $sys "*) ;;
            *) echo "unknown system '$sys' in --systems ($ALL_SYSTEMS ${OPTIONAL_SYSTEMS:-})" >&2; exit 2 ;;
        esac
    done
}

# usage_common NAME [QUICK_DETAIL]: the options and environment every
# script takes, the start of its usage(); with IDLE_OPTION=1 also
# --idle-conns, whose full-run default is IDLE_FULL (9000).
usage_common() {
    cat <<EOF
usage: bench/$1 [options]
  --quick            short smoke run (2 rounds, 2 s per metric${2:+, $2})
  --rounds N         repetitions; every round runs every system in turn (default 3)
  --systems "LIST"   subset/order of: $ALL_SYSTEMS${OPTIONAL_SYSTEMS:+ $OPTIONAL_SYSTEMS} (default: all)
EOF
    if [ "${IDLE_OPTION:-0}" = 1 ]; then
        echo "  --idle-conns N     idle connections held for the memory metric (default ${IDLE_FULL:-9000})"
    fi
    cat <<'EOF'
  --seconds S        measured window of the timed tests (default 8)
  --no-build         use the existing binaries
  -h, --help         this text
environment:
  CARGO_TARGET_DIR   where the release binaries are (default: <repo>/target)
  GOST_BIN           gost binary to test, not built (default: $CARGO_TARGET_DIR/release/gost)
  LOADGEN_BIN        load generator binary, not built (default: $CARGO_TARGET_DIR/release/loadgen)
EOF
}

# run_settings: the rounds, windows and loads of a quick or a full run;
# what the command line gave (--rounds, --seconds, --idle-conns) wins.
# Idle connections default to IDLE_QUICK (1000) and IDLE_FULL (9000).
run_settings() {
    if [ "$QUICK" = 1 ]; then
        ROUNDS=${ROUNDS:-2}; IDLE_N=${IDLE_N:-${IDLE_QUICK:-1000}}; WINDOW=${WINDOW:-2}
        BULK_S=2; WARMUP=0.3; SETTLE=0.5; HOLD=1.0
    else
        ROUNDS=${ROUNDS:-3}; IDLE_N=${IDLE_N:-${IDLE_FULL:-9000}}; WINDOW=${WINDOW:-8}
        BULK_S=5; WARMUP=0.5; SETTLE=1.0; HOLD=1.5
    fi
    KA_CONNS=50     # keep-alive connections, one request outstanding each
    CR_WORKERS=32   # concurrent connect/handshake/request/close loops
}

# bench_paths NAME: binaries, and the results file of this run of NAME.
# GOST_BIN and LOADGEN_BIN name prebuilt binaries (not built then).
bench_paths() {
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    LG=${LOADGEN_BIN:-$TARGET_DIR/release/loadgen}
    GOST=${GOST_BIN:-$TARGET_DIR/release/gost}
    STAMP=$(date +%Y%m%d-%H%M%S)
    RESULTS_DIR=$ROOT/bench/results
    OUT=$RESULTS_DIR/$1-$STAMP.txt
}

# build_binaries GOST_SYSTEMS...: builds the load generator and, when one
# of the given systems runs, gost; those systems are dropped (with a
# warning) when gost does not build or is missing. A binary given with
# GOST_BIN or LOADGEN_BIN is not built.
build_binaries() {
    local uses=0 s pkgs=()
    for s in "$@"; do has "$s" && uses=1; done
    cd "$ROOT" || exit 1
    if [ "$BUILD" = 1 ]; then
        [ -z "${LOADGEN_BIN:-}" ] && pkgs+=(-p gost-loadgen)
        if [ "$uses" = 1 ] && [ -z "${GOST_BIN:-}" ]; then
            if ! cargo build --release -p gost-host "${pkgs[@]}"; then
                log "WARNING: gost-host does not build; running without: $*"
                for s in "$@"; do drop_system "$s"; done
                uses=0
                if [ ${#pkgs[@]} -gt 0 ]; then cargo build --release "${pkgs[@]}" || exit 1; fi
            fi
        elif [ ${#pkgs[@]} -gt 0 ]; then
            cargo build --release "${pkgs[@]}" || exit 1
        fi
    fi
    [ -x "$LG" ] || { log "no load generator at $LG (build failed?)"; exit 1; }
    if [ "$uses" = 1 ] && [ ! -x "$GOST" ]; then
        log "WARNING: no gost binary at $GOST; running without: $*"
        for s in "$@"; do drop_system "$s"; done
    fi
}

# raise_fd_limit: the hard limit, and IDLE_N cut to what it allows (a
# proxied connection holds two sockets in the proxy); sets SOFT, MAX_IDLE.
raise_fd_limit() {
    local hard
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    ulimit -n "$hard" || log "WARNING: could not raise ulimit -n to $hard"
    SOFT=$(ulimit -n)
    MAX_IDLE=$(( (SOFT - 300) / 2 ))
    if [ "$IDLE_N" -gt "$MAX_IDLE" ]; then
        log "WARNING: ulimit -n $SOFT allows only $MAX_IDLE idle connections through a proxy"
        IDLE_N=$MAX_IDLE
    fi
}

# setup_run NAME: the proxy and load cores, a temp dir, and clean-up of
# every process started (PIDS) on exit.
setup_run() {
    if [ "$(nproc)" -ge 2 ]; then
        PROXY_CPU=0; LOAD_CPU=1
    else
        PROXY_CPU=0; LOAD_CPU=0
        log "WARNING: one core only: proxy and load generator share it"
    fi
    TMP=$(mktemp -d "/tmp/gost-bench-$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# header_common TITLE: the first lines of every report header.
header_common() {
    echo "# $1, $STAMP"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "kernel: $(uname -r); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); cores: $(nproc)"
}

# run_rounds: every system once per round, calling run_system SYSTEM
# ROUND; the order rotates each round so no system always runs first or
# right after the noisiest one. Sets END_NOTE.
run_rounds() {
    local order n i round start
    read -r -a order <<<"$SYSTEMS"
    start=$(date +%s)
    for round in $(seq "$ROUNDS"); do
        n=${#order[@]}
        for i in $(seq 0 $((n - 1))); do
            run_system "${order[$(( (i + round - 1) % n ))]}" "$round"
        done
    done
    END_NOTE="measured in $(( $(date +%s) - start )) s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    log "$END_NOTE"
}

# write_report TABLES: the results file (header, tables, per-run output,
# JSON lines), and the tables on stdout.
write_report() {
    mkdir -p "$RESULTS_DIR"
    {
        cat "$TMP/header.txt"
        echo "$END_NOTE"
        echo
        echo "$1"
        echo
        echo "## Per-run output"
        cat "$TMP/human.log"
        echo
        echo "## Result lines (JSON)"
        cat "$TMP/results.jsonl"
    } >"$OUT"
    echo
    echo "$1"
    echo
    echo "Full results: $OUT"
}

# shown PATH: PATH as a report may print it: relative to the repository,
# or only its file name when it lies elsewhere (reports are quoted in
# README and shared, and must not carry this machine's paths).
shown() {
    case $1 in
        "$ROOT"/*) echo "${1#"$ROOT"/}" ;;
        *) echo "(outside the repository)/$(basename "$1")" ;;
    esac
}

# make_cert DIR: a throwaway ECDSA P-256 certificate for localhost and
# 127.0.0.1 (self-signed, valid 2 days) generated with openssl into DIR;
# sets CERT, KEY and CERT_KEY (certificate and key in one file, haproxy's
# form). Never committed: DIR is the run's temp dir.
make_cert() {
    command -v openssl >/dev/null || { log "openssl is needed to make the test certificate"; exit 1; }
    CERT=$1/bench-cert.pem; KEY=$1/bench-key.pem; CERT_KEY=$1/bench-cert-key.pem
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$KEY" -out "$CERT" -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 ||
        { log "openssl could not make the test certificate"; exit 1; }
    cat "$CERT" "$KEY" >"$CERT_KEY"
    chmod 644 "$CERT" "$KEY" "$CERT_KEY"
}

# ktls_note: one header line on kernel TLS. Nothing is loaded or changed;
# no system in the scripts enables kTLS.
ktls_note() {
    local ulp mod
    ulp=$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null)
    case " $ulp " in
        *" tls "*)
            echo "kTLS: offered by this kernel (tcp_available_ulp: $ulp); not used by any system here"
            return ;;
    esac
    mod=$(find "/lib/modules/$(uname -r)" -name 'tls.ko*' 2>/dev/null | head -n 1)
    if [ -n "$mod" ]; then
        echo "kTLS: tls module present but not loaded (modprobe tls would offer it; tcp_available_ulp: ${ulp:-none}); not used"
    else
        echo "kTLS: not offered by this kernel (tcp_available_ulp: ${ulp:-none}, no tls module); not used"
    fi
}

# apt_install PACKAGE...: installs what is missing, one package at a time
# (so one unavailable package does not block the others), when root.
apt_install() {
    local pkg
    [ "$(id -u)" = 0 ] || return 0
    log "installing: $*"
    for pkg in "$@"; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1; } ||
            log "WARNING: apt-get install $pkg failed"
    done
}
