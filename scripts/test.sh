#!/usr/bin/env bash
# Runs every check of the repository, as CI does (.ci/run calls this):
#
#   scripts/test.sh [extra args for the test runner]
#   e.g. scripts/test.sh sticky  (a test-name filter)
#
# 1. installs the missing tools (Apache Kafka, Redis, Traefik, cargo-nextest;
#    once per machine, outside the checkout: scripts/lib/tools.sh) and
#    exports their paths for the integration tests, which start their own
#    Redis and Traefik (through traefik/local/run.sh) on free ports; and for
#    the browser tests Chromium and Node.js (Debian packages) and
#    playwright-core (`npm ci` in services/edge/tests/browser):
#    RILL_CHROMIUM_BIN, RILL_NODE_BIN, RILL_BROWSER_TESTS_DIR;
# 2. starts one Apache Kafka and one Apache Cassandra for the whole run
#    (scripts/kafka/run.sh, scripts/cassandra/run.sh, in a temporary folder,
#    on free ports) and names them in RILL_TEST_KAFKA and
#    RILL_TEST_CASSANDRA: each test makes topics, or a keyspace, of its own
#    on them; they are stopped and removed at the end, whatever happens;
# 3. cargo fmt --all --check
# 4. cargo clippy --workspace --all-targets -- -D warnings
# 5. helm/tests/validate.sh: the Helm chart and the Dockerfiles, offline
#    (its Python packages in a virtualenv outside the checkout, like the tools)
# 6. scripts/fuzz.sh: a short run of every fuzz target (FUZZ_SECONDS, here
#    20 s each unless set, 0 for none; cargo-fuzz and a nightly toolchain
#    installed once per machine), while the backends start
# 7. cargo nextest run --workspace "$@"
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
ensure_tools # exports RILL_KAFKA_HOME, RILL_CASSANDRA_HOME, RILL_TRAEFIK_BIN, RILL_REDIS_BIN
ensure_nextest
export RILL_TOOLS # services/testkit/src/tools.rs falls back on it
step "RILL_KAFKA_HOME=$RILL_KAFKA_HOME"
step "RILL_TRAEFIK_BIN=$RILL_TRAEFIK_BIN"
step "RILL_REDIS_BIN=$RILL_REDIS_BIN"
ensure_browser # exports RILL_CHROMIUM_BIN, RILL_NODE_BIN, RILL_BROWSER_TESTS_DIR
step "RILL_CHROMIUM_BIN=$RILL_CHROMIUM_BIN"
step "RILL_BROWSER_TESTS_DIR=$RILL_BROWSER_TESTS_DIR"

# The backends start now and warm up while the checks below run.
backends="$(mktemp -d -t rill-test-backends.XXXXXX)"
kafka_pid=""
cassandra_pid=""
stop_backends() {
  local rc=$? pid
  for pid in $kafka_pid $cassandra_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $kafka_pid $cassandra_pid; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$backends"
  exit "$rc"
}
trap stop_backends EXIT
read -r kafka_port kafka_controller_port < <(free_ports 2)
step "Apache Kafka for the tests on 127.0.0.1:$kafka_port (log: $backends/kafka/server.log)"
"$repo/scripts/kafka/run.sh" "$backends/kafka" "$kafka_port" "$kafka_controller_port" \
  >"$backends/kafka.out" 2>&1 </dev/null &
kafka_pid=$!
export RILL_TEST_KAFKA="127.0.0.1:$kafka_port"
read -r cassandra_port cassandra_storage_port < <(free_ports 2)
step "Apache Cassandra for the tests on 127.0.0.1:$cassandra_port (log: $backends/cassandra/logs/system.log)"
# Ephemeral: schema changes are not flushed at once (keyspaces are made
# twice as fast; a SIGKILLed node would forget them: this one is thrown
# away). Not exported: the tests' own nodes must not inherit it.
RILL_CASSANDRA_EPHEMERAL=1 "$repo/scripts/cassandra/run.sh" "$backends/cassandra" \
  "$cassandra_port" "$cassandra_storage_port" >"$backends/cassandra.out" 2>&1 </dev/null &
cassandra_pid=$!
export RILL_TEST_CASSANDRA="127.0.0.1:$cassandra_port"

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

# About 2 minutes on a warm machine (4 to 5 after a change to the crates the
# targets build on); the first build of the targets takes 10 or more.
# FUZZ_SECONDS=0 leaves the step out.
fuzz_seconds="${FUZZ_SECONDS:-20}"
if ((fuzz_seconds > 0)); then
  step "scripts/fuzz.sh (every fuzz target, $fuzz_seconds s each)"
  FUZZ_SECONDS="$fuzz_seconds" "$repo/scripts/fuzz.sh"
fi

step "waiting for Apache Kafka on $RILL_TEST_KAFKA"
if ! kafka_wait "$kafka_port" 180; then
  tail -n 40 "$backends/kafka.out" "$backends/kafka/server.log" >&2 || true
  step "error: Kafka did not start"
  exit 1
fi

step "waiting for Apache Cassandra on $RILL_TEST_CASSANDRA"
if ! cassandra_wait "$cassandra_port" 240 "$cassandra_pid"; then
  tail -n 40 "$backends/cassandra.out" "$backends/cassandra/logs/system.log" >&2 || true
  step "error: Cassandra did not start"
  exit 1
fi

# cargo-nextest runs each test in its own process and ends with a summary
# line that counts every test.
step "cargo nextest run --workspace $*"
cargo nextest run --workspace --no-fail-fast "$@"

step "all checks passed"
