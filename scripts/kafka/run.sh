#!/usr/bin/env bash
# Runs one Apache Kafka node (KRaft: controller and broker in one process)
# on 127.0.0.1 in the foreground, until it is stopped (SIGTERM: a clean
# shutdown; SIGKILL: a crash).
#
#   scripts/kafka/run.sh DATA_DIR PORT [CONTROLLER_PORT]
#
# DATA_DIR holds everything of this node: server.properties (written from
# scripts/kafka/server.properties at every start), data/ (the logs, formatted
# with a new cluster id when missing), server.log. Run it again with the
# same DATA_DIR and ports to restart the node with its data. CONTROLLER_PORT
# defaults to PORT + 1.
#
# The jars come from ensure_kafka (scripts/lib/kafka.sh): RILL_KAFKA_HOME,
# or the default install under RILL_TOOLS. RILL_KAFKA_HEAP sets the heap
# (default 512m).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/kafka.sh
source "$here/../lib/kafka.sh"

if (($# < 2)); then
  echo "usage: $0 DATA_DIR PORT [CONTROLLER_PORT]" >&2
  exit 2
fi
data="$1"
port="$2"
controller_port="${3:-$((port + 1))}"
heap="${RILL_KAFKA_HEAP:-512m}"
lib="$(kafka_home)/lib"
[[ -f "$lib/.complete" ]] || {
  echo "kafka/run.sh: error: Apache Kafka is not installed in $lib: run ensure_kafka (scripts/lib/kafka.sh) first" >&2
  exit 1
}

mkdir -p "$data"
data="$(cd "$data" && pwd)"
sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
  -e "s|@DATA_DIR@|$data|g" "$here/server.properties" >"$data/server.properties"

java_opts=(
  "-Xms$heap" "-Xmx$heap"
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$here/log4j2.xml"
  "-Dkafka.logs.dir=$data"
)

# A new node's storage is formatted once, with a cluster id of its own:
# 16 random bytes in URL-safe base64 without padding, as Kafka writes
# them; one that starts with '-' would read as an option, so draw again.
if [[ ! -f "$data/data/meta.properties" ]]; then
  cluster_id="-"
  while [[ "$cluster_id" == -* ]]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  done
  java "${java_opts[@]}" -cp "$lib/*" kafka.tools.StorageTool format \
    --cluster-id "$cluster_id" --config "$data/server.properties" --ignore-formatted
fi

exec java "${java_opts[@]}" -cp "$lib/*" kafka.Kafka "$data/server.properties"
