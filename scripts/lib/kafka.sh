# shellcheck shell=bash
# Apache Kafka for the local stack, the tests and the load scenarios:
# installed once per machine from Maven Central, outside the checkout.
#
#   source scripts/lib/kafka.sh
#   ensure_kafka     installs what is missing; exports RILL_KAFKA_HOME
#   kafka_home       prints where the jars are (RILL_KAFKA_HOME/lib)
#   kafka_wait PORT [SECONDS]
#                    waits until the broker on 127.0.0.1:PORT answers a
#                    metadata request (not only accepts TCP)
#
# scripts/kafka/run.sh runs a node. The jars are the broker's
# (org.apache.kafka:kafka_2.13) and their runtime dependencies, listed by
# scripts/kafka/pom.xml and copied by Maven into
# RILL_TOOLS/kafka-RILL_KAFKA_VERSION/lib; a `.complete` stamp marks a whole
# install, so a half-finished one is done again.

RILL_TOOLS="${RILL_TOOLS:-$HOME/.local/share/rill}"
RILL_KAFKA_VERSION=4.1.1

kafka_home() {
  echo "${RILL_KAFKA_HOME:-$RILL_TOOLS/kafka-$RILL_KAFKA_VERSION}"
}

_kafka_ok() {
  local lib="$1/lib"
  [[ -f "$lib/.complete" && -f "$lib/kafka_2.13-$RILL_KAFKA_VERSION.jar" ]]
}

_kafka_install() {
  local home="$1" pom tmp
  _kafka_ok "$home" && return 0 # installed meanwhile by another run
  pom="$(cd "$(dirname "${BASH_SOURCE[0]}")/../kafka" && pwd)/pom.xml"
  grep -q "<kafka.version>$RILL_KAFKA_VERSION</kafka.version>" "$pom" ||
    _tools_die "$pom does not pin Kafka $RILL_KAFKA_VERSION (RILL_KAFKA_VERSION)" || return 1
  _tools_log "installing Apache Kafka $RILL_KAFKA_VERSION from Maven Central into $home (about 45 MB)"
  tmp="$home.tmp"
  rm -rf "$tmp"
  _tools_maven_copy "$pom" "$tmp/lib" || return 1
  touch "$tmp/lib/.complete"
  rm -rf "$home"
  mv "$tmp" "$home"
  _kafka_ok "$home" || _tools_die "Kafka was copied but $home/lib has no kafka_2.13-$RILL_KAFKA_VERSION.jar"
}

ensure_kafka() {
  local home
  home="$(kafka_home)"
  if ! _kafka_ok "$home"; then
    _tools_locked _kafka_install "$home" || return 1
  fi
  export RILL_KAFKA_HOME="$home"
}

# A broker that accepts TCP may still be electing its controller; a metadata
# request that lists the broker answers only once it serves clients.
# Python's standard library speaks enough of the protocol for that:
# ApiVersions is the first request every client sends, and the broker
# answers it with error 0 only when it is ready to serve.
kafka_wait() {
  local port="$1" seconds="${2:-60}"
  python3 - "$port" "$seconds" <<'PY'
import socket, struct, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + seconds
# ApiVersions v0: api_key 18, version 0, correlation id 1, client id "rill".
request = struct.pack(">hhih", 18, 0, 1, 4) + b"rill"
last = "no answer"
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(struct.pack(">i", len(request)) + request)
            head = s.recv(4)
            if len(head) == 4:
                body = s.recv(struct.unpack(">i", head)[0])
                error = struct.unpack(">h", body[4:6])[0]
                if error == 0:
                    sys.exit(0)
                last = f"error code {error}"
    except OSError as e:
        last = str(e)
    time.sleep(0.1)
print(f"kafka on 127.0.0.1:{port} not ready within {seconds:.0f} s: {last}", file=sys.stderr)
sys.exit(1)
PY
}
