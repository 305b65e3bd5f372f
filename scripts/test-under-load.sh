#!/usr/bin/env bash
# The flake check: runs scripts/test.sh RUNS times in a row (default 3)
# while CPU hogs keep every core busy, and stops at the first failure:
#
#   scripts/test-under-load.sh [extra args for scripts/test.sh]
#
# Environment: RUNS (default 3), HOGS (busy loops, default: one per core).
# A test that waits a fixed time instead of for its condition fails here
# first: the hogs make every step of the suite slower than on a quiet
# machine, as on a shared CI runner. Each run's time and result is printed,
# and the summary says how many passed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${RUNS:-3}"
hogs="${HOGS:-$(nproc)}"

hog_pids=()
stop_hogs() {
  ((${#hog_pids[@]})) && kill "${hog_pids[@]}" 2>/dev/null
  wait "${hog_pids[@]}" 2>/dev/null || true
}
trap stop_hogs EXIT

for ((i = 0; i < hogs; i++)); do
  # A busy loop of its own process (not a subshell of this one, which
  # `wait` would then wait for).
  bash -c 'while :; do :; done' &
  hog_pids+=("$!")
done
echo "test-under-load: $hogs CPU hogs running; $runs runs of scripts/test.sh" >&2

for ((run = 1; run <= runs; run++)); do
  started=$SECONDS
  if "$repo/scripts/test.sh" "$@"; then
    echo "test-under-load: run $run of $runs passed in $((SECONDS - started)) s" >&2
  else
    status=$?
    echo "test-under-load: run $run of $runs FAILED (status $status) after $((SECONDS - started)) s" >&2
    exit "$status"
  fi
done
echo "test-under-load: all $runs runs passed under $hogs CPU hogs" >&2
