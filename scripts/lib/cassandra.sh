# shellcheck shell=bash
# Apache Cassandra for the local stack and the tests: installed once per
# machine from Maven Central, run by scripts/cassandra/run.sh. Sourced by
# scripts/lib/tools.sh, whose helpers (_tools_log, _tools_die,
# _tools_locked, RILL_TOOLS) it uses:
#
#   ensure_cassandra    installs what is missing, then exports:
#     RILL_CASSANDRA_HOME     the install: lib/ holds cassandra-all and
#                             every jar it needs at run time
#   cassandra_wait PORT [TIMEOUT_SECS] [PID]
#                       returns once a CQL server on 127.0.0.1:PORT answers
#                       a protocol handshake; fails after TIMEOUT_SECS
#                       (default 180) or as soon as PID (if given) exits
#
# Cassandra is a Java program: no tarball, no package. Maven resolves
# org.apache.cassandra:cassandra-all (scripts/cassandra/pom.xml) and copies
# it with its run-time dependencies into
# RILL_TOOLS/cassandra-VERSION/lib. The jar brings no configuration:
# run.sh writes it into each data directory. Needs a JDK 17 (java on PATH
# or in JAVA_HOME) and Maven (mvn) for the install only.
#
# Maven's own download cache goes to RILL_TOOLS/maven-repository, not
# ~/.m2: everything Rill fetches stays in RILL_TOOLS, where one `rm -rf`
# removes it, and the install does not depend on what other projects left
# in ~/.m2 (the cache is only read again when the version changes).

RILL_CASSANDRA_VERSION=5.0.6

_cassandra_ok() {
  local home="$1"
  [[ -f "$home/lib/cassandra-all-$RILL_CASSANDRA_VERSION.jar" && -f "$home/.rill-installed" ]]
}

_cassandra_install() {
  local home="$1" pom tmp
  _cassandra_ok "$home" && return 0 # installed meanwhile by another run
  pom="$(cd "$(dirname "${BASH_SOURCE[0]}")/../cassandra" && pwd)/pom.xml"
  _tools_log "fetching Apache Cassandra $RILL_CASSANDRA_VERSION from Maven Central into $home (once per machine)"
  # Into a temporary directory beside the install, moved into place only
  # when complete: an interrupted download is never taken for an install.
  tmp="$(mktemp -d "$RILL_TOOLS/.cassandra-$RILL_CASSANDRA_VERSION.XXXXXX")" || return 1
  if ! _tools_maven_copy "$pom" "$tmp/lib" -Dcassandra.version="$RILL_CASSANDRA_VERSION"; then
    rm -rf "$tmp"
    _tools_die "mvn could not fetch org.apache.cassandra:cassandra-all:$RILL_CASSANDRA_VERSION"
    return 1
  fi
  if [[ ! -f "$tmp/lib/cassandra-all-$RILL_CASSANDRA_VERSION.jar" ]]; then
    rm -rf "$tmp"
    _tools_die "mvn finished but cassandra-all-$RILL_CASSANDRA_VERSION.jar is not among the jars"
    return 1
  fi
  echo "$RILL_CASSANDRA_VERSION" >"$tmp/.rill-installed"
  chmod 755 "$tmp" # mktemp made it private
  rm -rf "$home" # a half-made install from before the stamp existed
  mv "$tmp" "$home"
}

ensure_cassandra() {
  local home="$RILL_TOOLS/cassandra-$RILL_CASSANDRA_VERSION"
  if ! _cassandra_ok "$home"; then
    _tools_locked _cassandra_install "$home" || return 1
  fi
  export RILL_CASSANDRA_HOME="$home"
}

# Whether a CQL server on 127.0.0.1:$1 answers: sends an OPTIONS request
# (native protocol v4 header: version 4, no flags, stream 0, opcode 5,
# empty body) and expects a SUPPORTED response (version 0x84, opcode 6).
# A listening port alone is not enough: the native transport opens its
# port when it is ready, but this also tells Cassandra from whatever else
# might hold the port.
_cassandra_answers() {
  local port="$1" reply
  # shellcheck disable=SC2016 # $1 is the inner shell's, on purpose
  reply="$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
    head -c 5 <&3 | od -An -tx1
  ' cql "$port" 2>/dev/null)" || return 1
  local -a bytes
  read -r -a bytes <<<"$reply"
  [[ "${bytes[0]:-}" == 84 && "${bytes[4]:-}" == 06 ]]
}

cassandra_wait() {
  local port="${1:?usage: cassandra_wait PORT [TIMEOUT_SECS] [PID]}" timeout="${2:-180}" pid="${3:-}"
  local deadline=$((SECONDS + timeout))
  until _cassandra_answers "$port"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      _tools_die "Cassandra (pid $pid) exited before CQL answered on 127.0.0.1:$port"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      _tools_die "no CQL answer on 127.0.0.1:$port within ${timeout}s"
      return 1
    fi
    sleep 0.2 # the interval between polls, not a wait for readiness
  done
}
