#!/usr/bin/env bash
# Fuzzes gost-rs's parsers of untrusted bytes with libFuzzer (cargo-fuzz,
# nightly toolchain), each target for a bounded time.
#
#   fuzz/run.sh [SECONDS] [TARGET...]   default: 60 s each, every target
#   fuzz/run.sh --merge [TARGET...]     fold what fuzzing found into the
#                                       saved corpus, minimised
#
# The saved corpus (fuzz/corpus/TARGET) seeds each run; new inputs land in
# fuzz/libfuzzer/corpus/TARGET (ignored by git), crashes in
# fuzz/libfuzzer/artifacts/TARGET. A crash becomes a regression case: fix
# it, then copy the input into fuzz/corpus/TARGET, where
# `cargo test -p gost-fuzz` (and so CI) replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz/run.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if [ ! -x .tools/bin/cargo-fuzz ]; then
  cargo install --quiet --locked --root .tools cargo-fuzz@0.13.2
fi
export PATH=$root/.tools/bin:$PATH

merge=0
if [ "${1:-}" = --merge ]; then merge=1; shift; fi
secs=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz/libfuzzer/fuzz_targets | sed 's/\.rs$//')
fi

fz() { cargo +nightly fuzz "$1" --fuzz-dir fuzz/libfuzzer --sanitizer none "${@:2}"; }

for t in "${targets[@]}"; do
  found=fuzz/libfuzzer/corpus/$t
  mkdir -p "$found" "fuzz/corpus/$t"
  if [ $merge = 1 ]; then
    # Only inputs that add coverage to the saved corpus are kept.
    fz run "$t" "fuzz/corpus/$t" "$found" -- -merge=1 -timeout=20
    continue
  fi
  echo "== $t: ${secs}s"
  fz run "$t" "$found" "fuzz/corpus/$t" -- -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048
done
