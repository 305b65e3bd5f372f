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
#
# A node with other listeners (TLS, SASL: the tests' secured broker):
# RILL_KAFKA_EXTRA_PROPERTIES names a file appended to server.properties
# (the same @...@ fields are filled in; a property set again there wins,
# as the last one does in a properties file), and RILL_KAFKA_SCRAM_USERS
# holds SCRAM credentials that the storage is formatted with, separated by
# spaces, each as kafka-storage's --add-scram takes it:
# 'SCRAM-SHA-512=[name=NAME,password=PASSWORD]'. KRaft keeps SCRAM users
# in its metadata, so a broker that authenticates to itself over SASL
# needs its user there before its first start.
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
if [[ -n "${RILL_KAFKA_EXTRA_PROPERTIES:-}" ]]; then
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
    -e "s|@DATA_DIR@|$data|g" "$RILL_KAFKA_EXTRA_PROPERTIES" >>"$data/server.properties"
fi

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
  scram=()
  for user in ${RILL_KAFKA_SCRAM_USERS:-}; do
    scram+=(--add-scram "$user")
  done
  java "${java_opts[@]}" -cp "$lib/*" kafka.tools.StorageTool format \
    --cluster-id "$cluster_id" --config "$data/server.properties" --ignore-formatted \
    "${scram[@]}"
fi

exec java "${java_opts[@]}" -cp "$lib/*" kafka.Kafka "$data/server.properties"
