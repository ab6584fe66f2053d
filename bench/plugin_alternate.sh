#!/usr/bin/env bash
# The wasm SOCKS5 plugin against the native `socks5` handler with both
# proxies running at once and short measuring windows alternating between
# them, so that each wasm window has a native neighbour a few seconds away.
#
#   bench/plugin_alternate.sh [--procs N] [--pairs N] [--seconds S] [--metric connrate|keepalive]
#
# `bench/plugin.sh` starts a fresh proxy per system and round and measures
# each for about 20 s in a row; on a VM whose speed drifts over tens of
# seconds, and where one process can run slower than the next for its
# whole life, a 5-round median moves by about 0.05 between runs. Here the
# ratio is taken per adjacent pair of windows and the median is over all
# pairs of `--procs` pairs of processes. Release binaries and the plugin
# must be built (bench/plugin.sh builds them). Proxy on core 0, load and
# target on core 1.

set -uo pipefail

PROCS=3; PAIRS=8; WINDOW=2; METRIC=connrate
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --procs|--pairs|--seconds|--metric)
            [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; } ;;
    esac
    case "$1" in
        --procs) PROCS=$2; shift ;;
        --pairs) PAIRS=$2; shift ;;
        --seconds) WINDOW=$2; shift ;;
        --metric) METRIC=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$METRIC" in
    connrate) LOAD=(--concurrency 32); FIELDS="cps conns_per_cpu_s" ;;
    keepalive) LOAD=(--conns 50); FIELDS="rps requests_per_cpu_s" ;;
    *) echo "--metric is connrate or keepalive" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_paths plugin-alternate
PLUGIN=$ROOT/plugins/target/wasm32-wasip2/release/socks5.wasm
for f in "$LG" "$GOST" "$PLUGIN"; do
    [ -e "$f" ] || { log "missing $f: run bench/plugin.sh once to build"; exit 1; }
done
setup_run plugin-alternate
start_targets

for proc in $(seq "$PROCS"); do
    read -r PN PW < <("$LG" freeport --count 2 | tr '\n' ' ')
    taskset -c "$PROXY_CPU" "$GOST" -L "socks5://127.0.0.1:$PN" >"$TMP/native.log" 2>&1 &
    GN=$!; PIDS+=("$GN")
    taskset -c "$PROXY_CPU" "$GOST" -L "wasm://127.0.0.1:$PW?plugin=$PLUGIN" >"$TMP/wasm.log" 2>&1 &
    GW=$!; PIDS+=("$GW")
    for p in $PN $PW; do
        "$LG" waitport --target "127.0.0.1:$p" --timeout 15 || { log "a proxy did not start"; exit 1; }
    done
    for i in $(seq "$PAIRS"); do
        # Which one goes first alternates, so a drift within a pair favours neither.
        if [ $((i % 2)) = 0 ]; then order="native wasm"; else order="wasm native"; fi
        for sys in $order; do
            if [ "$sys" = native ]; then port=$PN; pid=$GN; else port=$PW; pid=$GW; fi
            client "$METRIC" --target "127.0.0.1:$HTTP_PORT" --socks5 "127.0.0.1:$port" \
                "${LOAD[@]}" --seconds "$WINDOW" --warmup 0.3 --watch-pid "$pid" \
                --label "$sys" --round $((proc * 1000 + i)) || log "  $sys window failed"
        done
    done
    stop_pid "$GN"; stop_pid "$GW"
done

python3 - "$TMP/results.jsonl" $FIELDS <<'EOF' | tee "$OUT"
import collections, json, statistics, sys
path, rate, per_cpu = sys.argv[1:4]
pairs = collections.defaultdict(dict)
for line in open(path):
    d = json.loads(line)
    pairs[d["round"]][d["label"]] = (d[rate], d[per_cpu])
ratios = [(p["wasm"][0] / p["native"][0], p["wasm"][1] / p["native"][1])
          for p in pairs.values() if "wasm" in p and "native" in p and p["native"][0] > 0]
if not ratios:
    sys.exit("no complete pair of windows")
print(f"{len(ratios)} pairs of windows, wasm / native:")
print(f"  {rate}: median {statistics.median(r for r, _ in ratios):.3f}")
print(f"  {per_cpu}: median {statistics.median(c for _, c in ratios):.3f}")
EOF
