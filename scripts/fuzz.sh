#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/: libFuzzer through cargo-fuzz), each for a
# bounded time, and fails if any finds a crash:
#
#   scripts/fuzz.sh [target...]      (default: every target of fuzz/)
#
# Settings (environment):
#   FUZZ_SECONDS       how long each target runs. Default 30.
#   FUZZ_INPUT_TIMEOUT_SECS  the longest one input may take before it
#                      counts as a hang (a crash). Default 10.
#   FUZZ_SANITIZER     cargo-fuzz's --sanitizer: none or address. Default
#                      none: the code fuzzed is safe Rust (unsafe_code is
#                      forbidden), so AddressSanitizer would find little
#                      and halve the executions; panics, overflows (debug
#                      assertions are on) and the frame decoder's heap
#                      budget are checked either way.
#
# 1. installs cargo-fuzz (pinned) and a nightly toolchain when missing
#    (ensure_cargo_fuzz in scripts/lib/tools.sh; once per machine, outside
#    the checkout);
# 2. builds every target into target/fuzz (the workspace's target folder,
#    not a second one in fuzz/);
# 3. runs each on its corpus, fuzz/corpus/<target> (kept between runs, not
#    in git), started from the seeds in fuzz/seeds/<target>. A crashing
#    input is written to fuzz/artifacts/<target>/; replay it with
#    `cargo +nightly fuzz run --target-dir target/fuzz -s none -a <target> <file>`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$repo/scripts/lib/tools.sh"
cd "$repo"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_INPUT_TIMEOUT_SECS="${FUZZ_INPUT_TIMEOUT_SECS:-10}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"

step() { echo "fuzz.sh: $*" >&2; }

step "tools"
ensure_build_tools
ensure_cargo_fuzz

fuzz=(cargo +nightly fuzz)
build_flags=(--target-dir "$repo/target/fuzz" --sanitizer "$FUZZ_SANITIZER" --debug-assertions)

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <("${fuzz[@]}" list)
fi

step "building ${targets[*]} (sanitizer $FUZZ_SANITIZER)"
started=$SECONDS
"${fuzz[@]}" build "${build_flags[@]}"
step "built in $((SECONDS - started)) s"

failed=()
for target in "${targets[@]}"; do
  corpus="$repo/fuzz/corpus/$target"
  mkdir -p "$corpus"
  step "$target: ${FUZZ_SECONDS} s"
  if ! "${fuzz[@]}" run "${build_flags[@]}" "$target" "$corpus" "$repo/fuzz/seeds/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_INPUT_TIMEOUT_SECS" -print_final_stats=1; then
    step "error: $target failed; its input is in fuzz/artifacts/$target/"
    failed+=("$target")
  fi
done

if ((${#failed[@]} > 0)); then
  step "error: crashes in ${failed[*]}"
  exit 1
fi
step "${#targets[@]} targets ran ${FUZZ_SECONDS} s each without a crash"
