#!/usr/bin/env bash
# Runs every check of the repository, as CI does (.ci/run calls this):
#
#   scripts/test.sh [extra args for the test runner]
#   e.g. scripts/test.sh sticky  (a test-name filter)
#
# 1. installs the missing tools (tansu, Redis, Traefik; once per machine,
#    outside the checkout: scripts/lib/tools.sh) and exports their paths,
#    RILL_TANSU_BIN, RILL_TRAEFIK_BIN, RILL_REDIS_BIN, for the integration
#    tests, which start their own broker, Redis and Traefik (through
#    traefik/local/run.sh) on free ports; and for the browser tests
#    Chromium and Node.js (Debian packages) and playwright-core (`npm ci`
#    in services/edge/tests/browser): RILL_CHROMIUM_BIN, RILL_NODE_BIN,
#    RILL_BROWSER_TESTS_DIR;
# 2. cargo fmt --all --check
# 3. cargo clippy --workspace --all-targets -- -D warnings
# 4. helm/tests/validate.sh: the Helm chart and the Dockerfiles, offline
#    (its Python packages in a virtualenv outside the checkout, like the tools)
# 5. cargo nextest run --workspace "$@" (cargo test when nextest is missing)
# Stops at the first failure, with its exit status.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$repo/scripts/lib/tools.sh"
cd "$repo"

step() { echo "test.sh: $*" >&2; }

command -v cargo >/dev/null 2>&1 || {
  echo "test.sh: error: cargo not found: install the Rust toolchain (https://rustup.rs)" >&2
  exit 1
}

step "tools"
ensure_tools # exports RILL_TANSU_BIN, RILL_TRAEFIK_BIN, RILL_REDIS_BIN
export RILL_TOOLS # services/testkit/src/tools.rs falls back on it
step "RILL_TANSU_BIN=$RILL_TANSU_BIN"
step "RILL_TRAEFIK_BIN=$RILL_TRAEFIK_BIN"
step "RILL_REDIS_BIN=$RILL_REDIS_BIN"
ensure_browser # exports RILL_CHROMIUM_BIN, RILL_NODE_BIN, RILL_BROWSER_TESTS_DIR
step "RILL_CHROMIUM_BIN=$RILL_CHROMIUM_BIN"
step "RILL_BROWSER_TESTS_DIR=$RILL_BROWSER_TESTS_DIR"

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Before the tests, so that the test runner's summary stays the last line.
step "helm/tests/validate.sh (Helm chart and Dockerfiles, offline)"
if ! bash "$repo/helm/tests/validate.sh"; then
  step "error: the Helm chart checks failed (see FAIL lines above)"
  exit 1
fi

# cargo-nextest runs each test in its own process and ends with a summary
# line that counts every test; plain `cargo test` is the fallback.
if cargo nextest --version >/dev/null 2>&1; then
  step "cargo nextest run --workspace $*"
  ignored=()
  if [[ -n "${RILL_TEST_CASSANDRA:-}" ]]; then
    # The Cassandra store contract tests are marked ignored; run them too.
    step "RILL_TEST_CASSANDRA=$RILL_TEST_CASSANDRA: running the Cassandra contract tests"
    ignored=(--run-ignored all)
  fi
  cargo nextest run --workspace --no-fail-fast "${ignored[@]}" "$@"
else
  step "cargo test --workspace $* (cargo-nextest not installed)"
  cargo test --workspace "$@"
fi

step "all checks passed"
