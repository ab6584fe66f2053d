#!/usr/bin/env bash
# Memory per configured service: anonymous RSS of gost with 10 and with N
# forward services (ports picked by the kernel), per extra service; with
# --breakdown, also where the heap goes (valgrind massif, grouped by the
# innermost gost function of each allocation). Several binaries are
# measured in interleaved rounds:
#   bench/service_memory.sh [-n 1000] [--rounds 3] [--breakdown] BIN...
set -euo pipefail
n=1000 rounds=3 breakdown=0 bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --breakdown) breakdown=1; shift ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || bins=("${CARGO_TARGET_DIR:-target}/release/gost")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
config() {
  echo "log: {level: warn}"
  echo "services:"
  for ((i = 0; i < $1; i++)); do
    printf -- '- name: s%d\n  addr: 127.0.0.1:0\n  handler: {type: tcp}\n  listener: {type: tcp}\n  forwarder: {nodes: [{name: t, addr: "127.0.0.1:9"}]}\n' "$i"
  done
}
config 10 > "$dir/small.yaml"
config "$n" > "$dir/large.yaml"

# Anonymous RSS in KiB once all services listen.
rss() {
  "$1" -C "$2" & local pid=$!
  local want=$3 t=0
  until [ "$(ls /proc/$pid/fd 2>/dev/null | wc -l)" -ge "$want" ] || [ $t -ge 300 ]; do
    sleep 0.1; t=$((t + 1))
  done
  sleep 1
  awk '/RssAnon/ {print $2}' /proc/$pid/status
  kill $pid; wait $pid 2>/dev/null || true
}

for ((r = 1; r <= rounds; r++)); do
  for b in "${bins[@]}"; do
    small=$(rss "$b" "$dir/small.yaml" 10)
    large=$(rss "$b" "$dir/large.yaml" "$n")
    awk -v b="$b" -v r="$r" -v s="$small" -v l="$large" -v n="$n" \
      'BEGIN { printf "round %d  %-40s  %6.2f KiB per service (%d -> %d KiB)\n", r, b, (l - s) / (n - 10), s, l }'
  done
done

if [ $breakdown = 1 ]; then
  command -v valgrind >/dev/null || { echo "valgrind missing (apt install valgrind)"; exit 1; }
  for b in "${bins[@]}"; do
    echo "== heap by innermost gost function, $n services: $b"
    timeout -s TERM 90 valgrind --tool=massif --massif-out-file="$dir/massif.out" \
      --detailed-freq=1 --max-snapshots=60 --depth=25 "$b" -C "$dir/large.yaml" >/dev/null 2>&1 || true
    python3 - "$dir/massif.out" "$n" <<'PY'
import collections, re, sys
snaps, cur = [], None
for l in open(sys.argv[1]):
    if l.startswith("snapshot="):
        cur = {"heap": 0, "tree": []}; snaps.append(cur)
    elif l.startswith("mem_heap_B="):
        cur["heap"] = int(l.split("=")[1])
    elif cur is not None and re.match(r"^\s*n\d+:", l):
        cur["tree"].append(l.rstrip("\n"))
s = max(snaps, key=lambda x: x["heap"])
n = int(sys.argv[2])
stack, by = [], collections.Counter()
for l in s["tree"]:
    ind = len(l) - len(l.lstrip(" "))
    m = re.match(r"\s*n(\d+): (\d+) (.*)", l)
    kids, size, desc = int(m.group(1)), int(m.group(2)), m.group(3)
    while stack and stack[-1][0] >= ind:
        stack.pop()
    stack.append((ind, desc))
    if kids == 0:
        names = [re.sub(r"^0x[0-9A-F]+: ", "", d).split(" (")[0] for _, d in stack]
        ours = [x for x in names if re.search(r"gost(_\w+)?::", x)]
        by[(ours[0] if ours else "(elsewhere)")[:110]] += size
print(f"peak heap {s['heap'] / n:.0f} B per service")
for k, v in by.most_common(15):
    print(f"{v / n:8.0f} B  {k}")
PY
  done
fi
