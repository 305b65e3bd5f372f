#!/usr/bin/env bash
# Chat: many small profiles, steady sends through the broker; the broker
# probe runs beside it at the same rate; then the Socket.IO peer.
#
#   loadtest/scenarios/chat.sh
#
# Environment (all optional):
#   PROFILES (default 1000), USERS per profile (default 10),
#   RATE messages/s (default 1000), DURATION seconds (default 30),
#   EDGES (default 2, addressed directly), TRANSPORT ws|sse|mix (default ws),
#   INTERVAL seconds per point of the latency series (rill-load
#   --interval-secs; default DURATION / 10, at least 1: 60 for a 600 s run),
#   PEER=0 skips the Socket.IO peer.
# Reports: loadtest/results/chat-<stamp>-{rill,socketio}.json (+ .svg) and
# chat-<stamp>.json (side by side, with ratios).
# shellcheck source=loadtest/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario="${SCENARIO:-chat}"
profiles="${PROFILES:-1000}"
users="${USERS:-10}"
rate="${RATE:-1000}"
duration="${DURATION:-30}"
edges="${EDGES:-2}"
transport="${TRANSPORT:-ws}"
interval="${INTERVAL:-$(awk -v d="$duration" 'BEGIN { i = d / 10; print (i < 1 ? 1 : i) }')}"

build
start_broker_and_redis
start_rill "$edges"
mapfile -t urls < <(url_args "${EDGE_URLS[@]}")
mapfile -t pids < <(pid_args "${EDGE_PIDS[@]}")
load "$scenario-$stamp-rill" "${urls[@]}" "${pids[@]}" --api "$API_URL" --transport "$transport" \
  --profiles "$profiles" --users "$users" --rate "$rate" --duration "$duration" \
  --ramp 2000 --settle 3 --drain 3 --broker "$KAFKA" --testdata-max-users 20000 \
  --interval-secs "$interval"
stop_rill

if [[ "${PEER:-1}" != 0 ]]; then
  start_peer "$edges"
  mapfile -t urls < <(url_args "${PEER_URLS[@]}")
  mapfile -t pids < <(pid_args "${PEER_PIDS[@]}")
  load "$scenario-$stamp-socketio" "${urls[@]}" "${pids[@]}" --transport socketio \
    --profiles "$profiles" --users "$users" --rate "$rate" --duration "$duration" \
    --ramp 2000 --settle 3 --drain 3 --interval-secs "$interval"
  stop_peer
  compare "$results/$scenario-$stamp.json" "$results/$scenario-$stamp-rill.json" \
    "$results/$scenario-$stamp-socketio.json"
fi
say "done: $results/$scenario-$stamp*.json"
