#!/usr/bin/env bash
# DNS proxy benchmark on loopback: gost-rs's dns handler against dnsmasq
# as a caching forwarder, both in front of the same upstream, queried
# with a warm cache, in ONE run with interleaved rounds, reported as
# medians with ratios to dnsmasq. See bench/README.md.
#
#   dnsperf -> SYSTEM (UDP :A, cache) -> upstream dnsmasq (UDP :U)
#
#   bench/dns.sh            full run (3 rounds, 8 s windows)
#   bench/dns.sh --quick    smoke run (2 rounds, 2 s)
#
# The system under test runs pinned to core 0; dnsperf and the upstream
# share core 1. The upstream answers NAMES names of bench.test with a
# one-hour TTL, so after the warm-up pass every query is a cache hit: what
# is measured is the proxy's per-query cost (parse, cache lookup, answer).
# dnsperf and dnsmasq come from Debian (installed when missing, as root).

set -uo pipefail

ALL_SYSTEMS="gost dnsmasq"

usage() {
    usage_common dns.sh
    echo "  NAMES              distinct names queried (default 1000)"
    echo "  OUTSTANDING        queries in flight (dnsperf -q, default 100)"
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"
run_settings
NAMES=${NAMES:-1000}
OUTSTANDING=${OUTSTANDING:-100}

bench_paths dns
build_binaries gost

command -v dnsperf >/dev/null || apt_install dnsperf
command -v dnsmasq >/dev/null || apt_install dnsmasq-base
command -v dnsperf >/dev/null || { log "dnsperf is needed (Debian package dnsperf)"; exit 1; }
command -v dnsmasq >/dev/null || { log "dnsmasq is needed (Debian package dnsmasq-base)"; exit 1; }

setup_run dns

# dnsmasq_args PORT: one dnsmasq on 127.0.0.1:PORT in the foreground that
# reads no system files.
dnsmasq_args() {
    echo -k --port="$1" --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
        --no-hosts --conf-file=/dev/null --pid-file= --user="$(id -un)"
}

QUERIES=$TMP/queries.txt
for i in $(seq "$NAMES"); do echo "n$i.bench.test A"; done >"$QUERIES"
UP_PORT=$("$LG" freeport)
# shellcheck disable=SC2046
taskset -c "$LOAD_CPU" dnsmasq $(dnsmasq_args "$UP_PORT") --address=/bench.test/10.9.8.7 \
    --local-ttl=3600 >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
sleep 0.5
kill -0 "$!" 2>/dev/null || { log "the upstream dnsmasq did not start:"; cat "$TMP/upstream.log" >&2; exit 1; }

# wait_dns PORT: until a query to 127.0.0.1:PORT is answered (5 s).
wait_dns() {
    local i
    for i in $(seq 25); do
        echo "n1.bench.test A" | timeout 2 dnsperf -s 127.0.0.1 -p "$1" -n 1 -t 0.5 2>/dev/null |
            grep -q 'Queries completed: *[1-9]' && return 0
        sleep 0.2
    done
    return 1
}

start_system() {
    local sys=$1
    PROXY_PORT=$("$LG" freeport)
    case "$sys" in
        gost)
            taskset -c "$PROXY_CPU" "$GOST" \
                -L "dns://127.0.0.1:$PROXY_PORT?dns=udp://127.0.0.1:$UP_PORT" \
                >"$TMP/$sys.log" 2>&1 & ;;
        dnsmasq)
            # shellcheck disable=SC2046
            taskset -c "$PROXY_CPU" dnsmasq $(dnsmasq_args "$PROXY_PORT") \
                --server="127.0.0.1#$UP_PORT" --cache-size=10000 >"$TMP/$sys.log" 2>&1 & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if ! wait_dns "$PROXY_PORT"; then
        log "$sys did not answer; its log:"; tail -n 20 "$TMP/$sys.log" >&2
        note_skip "$sys" "did not answer: $(start_failure "$TMP/$sys.log")"
        stop_proxy
        return 1
    fi
}

# parse.py LABEL ROUND OUTSTANDING CPU_BEFORE CPU_AFTER: dnsperf's
# report on stdin as one result line.
cat >"$TMP/parse.py" <<'EOF'
import json, re, sys
label, rnd, outstanding, before, after = sys.argv[1:6]
text = sys.stdin.read()
qps = re.search(r"Queries per second:\s+([0-9.]+)", text)
lost = re.search(r"Queries lost:\s+([0-9]+)", text)
done = re.search(r"Queries completed:\s+([0-9]+)", text)
if qps:
    cpu = float(after) - float(before)
    q = float(qps.group(1))
    print(json.dumps({
        "test": "dns", "label": label, "round": int(rnd), "qps": q,
        "outstanding": int(outstanding), "proxy_cpu_s": round(cpu, 3),
        "queries_per_cpu_s": int(done.group(1)) / cpu if cpu > 0 and done else None,
        "lost": int(lost.group(1)) if lost else None,
    }))
EOF

cpu_of() { "$LG" procstat --pid "$1" | sed -E 's/.*"cpu_s":([0-9.e+-]+).*/\1/'; }

run_system() {
    local sys=$1 round=$2 out before after
    log "== round $round: $sys"
    start_system "$sys" || return 0
    show_pinning "$sys"
    # Warm-up: every name once, so the measured window hits the cache.
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PROXY_PORT" -d "$QUERIES" -n 1 \
        -q "$OUTSTANDING" >/dev/null 2>&1
    before=$(cpu_of "$PROXY_PID")
    out=$(taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PROXY_PORT" -d "$QUERIES" \
        -l "$WINDOW" -q "$OUTSTANDING" 2>&1)
    after=$(cpu_of "$PROXY_PID")
    printf '%s\n' "$out" | grep -E 'Queries (sent|completed|lost)|Queries per second|Average Latency' |
        sed 's/^ */  /' | tee -a "$TMP/human.log" >&2
    printf '%s\n' "$out" |
        python3 "$TMP/parse.py" "$sys" "$round" "$OUTSTANDING" "$before" "$after" >>"$TMP/results.jsonl"
    stop_proxy
}

{
    header_common "gost-rs DNS proxy benchmark"
    echo "pinning: system under test on core $PROXY_CPU; dnsperf and the upstream dnsmasq on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "queries: $NAMES names of bench.test (A), warm cache, $OUTSTANDING outstanding, ${WINDOW} s; $(dnsperf -h 2>&1 | grep -m1 -i 'version' || echo dnsperf); $(dnsmasq --version | head -n 1)"
    echo "gost: $(shown "$GOST")"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"
: >"$TMP/human.log"

run_rounds

TABLE=$(
    "$LG" report "$TMP/results.jsonl" --baseline dnsmasq --reference dnsmasq 2>/dev/null ||
        echo "(no results)"
    skipped_text
)
write_report "$TABLE"
