#!/usr/bin/env bash
# `make bench`: the benchmarks under bench/, one after the other (they share the 2 cores they measure
# on, so never in parallel). Each prints ratios against a baseline it measures in the same run; the
# figures go to docs/performance.md by hand. Not tests: nothing here fails on a slow number.
#   make bench                     every benchmark (about 30 minutes on 2 cores)
#   make bench BENCH="convert web"  only these (names after bench_, without .py)
#   make bench BENCH=list           the names
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
available=$(find bench -maxdepth 1 -name 'bench_*.py' -printf '%f\n' | sed -e 's/^bench_//' -e 's/\.py$//' | sort)
if [ "${BENCH:-}" = list ]; then
  echo "$available"
  exit 0
fi
wanted=${BENCH:-$available}
for name in $wanted; do
  if ! grep -qx "$name" <<<"$available"; then
    echo "bench: no benchmark named '$name'; choose from: $(echo $available)" >&2
    exit 2
  fi
done
scripts/setup.sh
failed=()
for name in $wanted; do
  echo "== bench $name ($(date -u +%H:%M:%S))"
  .venv/bin/python "bench/bench_$name.py" || failed+=("$name")
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "bench: these benchmarks stopped with an error: ${failed[*]}" >&2
  exit 1
fi
