#!/usr/bin/env bash
# Runs one single-node Apache Cassandra in the foreground, for the local
# stack and the tests:
#
#   scripts/cassandra/run.sh DATA_DIR CQL_PORT [STORAGE_PORT]
#
# - Everything the node keeps is under DATA_DIR (created if missing):
#   cassandra.yaml and logback.xml (written at every start, from
#   cassandra.yaml.template and logback.xml beside this script), data/,
#   commitlog/, hints/, saved_caches/, cdc_raw/, and logs/system.log.
#   Starting again on the same DATA_DIR finds the same data.
# - Listens on 127.0.0.1 only: CQL on CQL_PORT, gossip (the storage port,
#   which a single node opens all the same) on STORAGE_PORT. Without
#   STORAGE_PORT, the one this DATA_DIR used last time (kept in
#   DATA_DIR/storage_port), else a free port the kernel picks. No other
#   port is opened, so several nodes run side by side when each has its
#   own DATA_DIR and ports.
# - The process becomes the JVM (exec): its pid is Cassandra's. SIGTERM
#   drains (flushes memtables) and stops it, in about a second; SIGKILL
#   loses nothing acknowledged either (a write is acknowledged once it is
#   in the commit log, which the next start replays; see
#   cassandra.yaml.template), unless RILL_CASSANDRA_EPHEMERAL is set.
# - Answers CQL about 6 to 7 s after start on 2 busy cores (fresh
#   DATA_DIR or not), with about 330 MB resident.
#
# Environment (all optional):
#   RILL_CASSANDRA_HEAP       the most heap (default 1G); it starts at 64M
#                             and grows only as needed
#   RILL_CASSANDRA_EPHEMERAL  1: for a node thrown away after one run (the
#                             tests'): schema changes are not flushed at
#                             once, which halves the time to create a
#                             keyspace; see below for the price
#   RILL_CASSANDRA_JMX_PORT   opens JMX on 127.0.0.1 at that port, for
#                             nodetool: java -cp "$RILL_CASSANDRA_HOME/lib/*"
#                             org.apache.cassandra.tools.NodeTool -p PORT status
#   RILL_CASSANDRA_JVM_OPTS   more JVM options, after ours (so they win)
#   RILL_CASSANDRA_EXTRA_YAML a file appended to cassandra.yaml: settings
#                             the template leaves out (say, the tests'
#                             client_encryption_options and authenticator)
#   RILL_TOOLS, JAVA_HOME     where Cassandra is installed, which JDK
#
# CQL answers a few seconds after start (scripts/cassandra/wait.sh PORT
# waits for it). Warnings and errors go to stdout, everything from INFO up
# to DATA_DIR/logs/system.log. Installs Cassandra first if it is missing
# (scripts/lib/cassandra.sh; needs Maven then) and needs a JDK 17.
set -euo pipefail

usage="usage: $0 DATA_DIR CQL_PORT [STORAGE_PORT]"
[[ $# -ge 2 && $# -le 3 ]] || {
  echo "$usage" >&2
  exit 2
}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$here/../lib/tools.sh"
if ! declare -F ensure_cassandra >/dev/null; then
  # shellcheck source=scripts/lib/cassandra.sh
  source "$here/../lib/cassandra.sh"
fi

die() {
  echo "cassandra/run.sh: error: $*" >&2
  exit 1
}

port_ok() {
  [[ "$1" =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536))
}

cql_port="$2"
port_ok "$cql_port" || die "CQL_PORT must be a port number, not '$cql_port'"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
[[ "$dir" != *[\'$'\n']* ]] || die "DATA_DIR must not contain a quote or a newline: $dir"

if [[ $# -eq 3 ]]; then
  storage_port="$3"
elif [[ -f "$dir/storage_port" ]]; then
  storage_port="$(<"$dir/storage_port")"
else
  storage_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" ||
    die "no STORAGE_PORT given and python3 could not find a free one"
fi
port_ok "$storage_port" || die "STORAGE_PORT must be a port number, not '$storage_port'"
[[ "$storage_port" != "$cql_port" ]] || die "CQL_PORT and STORAGE_PORT must differ"
echo "$storage_port" >"$dir/storage_port"

ensure_cassandra
lib="$RILL_CASSANDRA_HOME/lib"

java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
version="$("$java" -version 2>&1 | head -n 1)" || die "java not found: install a JDK 17 (Debian: openjdk-17-jdk-headless)"
[[ "$version" =~ \"17[.\"] ]] ||
  die "Cassandra $RILL_CASSANDRA_VERSION is run here on Java 17 only; $java is: $version"

mkdir -p "$dir/logs" "$dir/triggers"
template="$(<"$here/cassandra.yaml.template")"
template="${template//@DIR@/"$dir"}"
template="${template//@CQL_PORT@/"$cql_port"}"
template="${template//@STORAGE_PORT@/"$storage_port"}"
printf '%s\n' "$template" >"$dir/cassandra.yaml"
if [[ -n "${RILL_CASSANDRA_EXTRA_YAML:-}" ]]; then
  cat "$RILL_CASSANDRA_EXTRA_YAML" >>"$dir/cassandra.yaml" ||
    die "cannot read RILL_CASSANDRA_EXTRA_YAML $RILL_CASSANDRA_EXTRA_YAML"
fi
cp "$here/logback.xml" "$dir/logback.xml"

jamm=("$lib"/jamm-*.jar)
[[ -f "${jamm[0]}" ]] || die "no jamm jar in $lib: reinstall (remove $RILL_CASSANDRA_HOME)"

jvm=(
  # Memory: a small heap that grows on demand (Cassandra sizes its
  # memtables and caches from the maximum); 256k thread stacks as
  # Cassandra's own scripts set.
  -Xms64M "-Xmx${RILL_CASSANDRA_HEAP:-1G}" -Xss256k
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
  -XX:+PerfDisableSharedMem
  # An OutOfMemoryError leaves a node in an unknown state: stop it.
  -XX:+ExitOnOutOfMemoryError
  # Only the quick compiler: starts in two thirds of the time and leaves
  # the CPU to the tests; the optimizing compiler pays off only under a
  # long, heavy load (RILL_CASSANDRA_JVM_OPTS=-XX:TieredStopAtLevel=4
  # brings it back).
  -XX:TieredStopAtLevel=1
  # Cassandra checks its own invariants with assertions (but not those of
  # the Chronicle libraries, which are costly).
  -ea -da:net.openhft...
  # jamm measures object sizes for memtable accounting.
  "-javaagent:${jamm[0]}"
  -Djava.net.preferIPv4Stack=true
  # What Cassandra reaches into inside the JDK, on Java 17.
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  # Netty: direct buffers through Unsafe, and the allocator as Cassandra
  # tunes it.
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
  # Where things are; keep stdout open (foreground).
  -Dcassandra-foreground=yes
  "-Dcassandra.config=file://$dir/cassandra.yaml"
  "-Dcassandra.storagedir=$dir"
  "-Dcassandra.logdir=$dir/logs"
  "-Dcassandra.triggers_dir=$dir/triggers"
  "-Dlogback.configurationFile=$dir/logback.xml"
  # A single node has no one to gossip with: do not wait for gossip to
  # settle, nor for the ring.
  -Dcassandra.skip_wait_for_gossip_to_settle=0
  -Dcassandra.ring_delay_ms=100
  # Nor, when stopping, tell the others it leaves (two seconds), nor wait
  # for messages between nodes to settle (two more): SIGTERM takes two
  # seconds instead of six.
  -Dcassandra.shutdown_announce_in_ms=0
  -Dcassandra.test.messagingService.nonGracefulShutdown=true
  # Cassandra measures a memtable row's overhead at every start, by
  # building rows (two seconds on a small machine); this is what it finds
  # (memtables use it only to account for their size).
  -Dcassandra.memtable.row_overhead_size=180
  # No fsync: writes reach the page cache and stay there when the process
  # is killed, so only a crash of the machine itself could lose them, a
  # fair price for a local node. No flush (a schema change flushes a
  # dozen tables) and no acknowledged write (commitlog_sync: batch) waits
  # for the disk.
  -Dcassandra.skip_sync=true
)
if [[ "${RILL_CASSANDRA_EPHEMERAL:-}" == 1 ]]; then
  # Not even the schema tables are flushed at each schema change: keyspace
  # and table creation take half the time. The price: a node killed with
  # SIGKILL forgets, when restarted, the tables created since its last
  # flush, and skips their data. SIGTERM (which flushes) is safe. For
  # nodes that are thrown away after one run, like the tests'.
  jvm+=(-Dcassandra.test.flush_local_schema_changes=false)
fi
if [[ -n "${RILL_CASSANDRA_JVM_OPTS:-}" ]]; then
  read -r -a extra <<<"$RILL_CASSANDRA_JVM_OPTS"
  jvm+=("${extra[@]}")
fi
if [[ -n "${RILL_CASSANDRA_JMX_PORT:-}" ]]; then
  port_ok "$RILL_CASSANDRA_JMX_PORT" || die "RILL_CASSANDRA_JMX_PORT must be a port number"
  jvm+=("-Dcassandra.jmx.local.port=$RILL_CASSANDRA_JMX_PORT")
fi

# Cassandra locks every page it has mapped at start (mlockall) when it is
# allowed to: a third of a gigabyte that then stays resident, used or not
# (RSS 570 MB at start instead of 340). On a machine it shares, the node
# should hold only what it uses: a memlock limit of 64 KiB, and for root
# no CAP_IPC_LOCK (which overrides the limit), make the lock fail, which
# Cassandra reports with a warning and carries on. The lock only keeps
# the JVM from being swapped out, which a local node can live with.
ulimit -l 64 2>/dev/null || true
no_lock=()
if [[ $EUID -eq 0 ]] && command -v setpriv >/dev/null 2>&1 &&
  setpriv --bounding-set -ipc_lock true 2>/dev/null; then
  no_lock=(setpriv --bounding-set -ipc_lock --)
fi

echo "cassandra/run.sh: Cassandra $RILL_CASSANDRA_VERSION on 127.0.0.1, CQL $cql_port, storage $storage_port, data and logs in $dir" >&2
cd "$dir"
exec "${no_lock[@]}" "$java" "${jvm[@]}" -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon
