#!/usr/bin/env bash
# Idle connections: the most sessions one edge holds and its memory per
# session, then past 100,000 sessions over several edges, then the
# Socket.IO peer with the same sessions per process.
#
#   loadtest/scenarios/idle.sh
#
# Environment (all optional):
#   SESSIONS_PER_EDGE   one edge's sessions (default 19000: under the
#                       20,000 open files a process may hold here)
#   WIDE_EDGES          edges of the wide run (default 7; 0 skips it)
#   WIDE_PER_EDGE       sessions per edge of the wide run (default 15000)
#   WIDE_RAMP           sessions per second of the wide run (default 400:
#                       faster, Redis lock writes time out on 2 cores)
#   RAMP                sessions per second of the one-edge run (default
#                       2000)
#   HOLD                seconds the sessions stay idle (default 20: past a
#                       15 s heartbeat)
#   PROFILE_SIZE        sessions per profile (default 10)
#   PEER=0              skip the Socket.IO peer
#   ONE_EDGE=0          skip the one-edge run (and the peer)
# Reports: loadtest/results/idle-<stamp>-{rill,rill-wide,socketio}.json
# (+ .svg) and idle-<stamp>.json (side by side, with ratios).
# shellcheck source=loadtest/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

per_edge="${SESSIONS_PER_EDGE:-19000}"
wide_edges="${WIDE_EDGES:-7}"
wide_per_edge="${WIDE_PER_EDGE:-15000}"
hold="${HOLD:-20}"
ramp="${RAMP:-2000}"
# Small profiles: presence (a join to every session of the profile) stays
# cheap, so the run measures holding sessions, not presence storms.
per_profile="${PROFILE_SIZE:-10}"

build
start_broker_and_redis
edges=1
((wide_edges > edges)) && edges="$wide_edges"
start_rill "$edges"

# 1. One edge.
if [[ "${ONE_EDGE:-1}" != 0 ]]; then
  mapfile -t urls < <(url_args "${EDGE_URLS[0]}")
  mapfile -t pids < <(pid_args "${EDGE_PIDS[0]}")
  load "idle-$stamp-rill" "${urls[@]}" "${pids[@]}" --api "$API_URL" \
    --profiles $((per_edge / per_profile)) --users "$per_profile" --rate 0 --duration "$hold" \
    --ramp "$ramp" --settle 5 --drain 0 --testdata-max-users 20000 --testdata-max-profiles 2000
fi

# 2. Several edges, addressed directly (one Traefik caps near 10,000).
if ((wide_edges > 0)); then
  # The first run's sessions are closed: let the edge free them.
  sleep 5
  mapfile -t urls < <(url_args "${EDGE_URLS[@]:0:$wide_edges}")
  mapfile -t pids < <(pid_args "${EDGE_PIDS[@]:0:$wide_edges}")
  load "idle-$stamp-rill-wide" "${urls[@]}" "${pids[@]}" --api "$API_URL" \
    --profiles $((wide_edges * wide_per_edge / per_profile)) --users "$per_profile" --rate 0 \
    --duration "$hold" --ramp "${WIDE_RAMP:-400}" --settle 5 --drain 0 --testdata-max-users 20000 --testdata-max-profiles 2000 --timeout 900
fi
stop_rill

# 3. The Socket.IO peer: two Node processes, the one-edge run's sessions.
if [[ "${PEER:-1}" != 0 && "${ONE_EDGE:-1}" != 0 ]]; then
  start_peer 2
  mapfile -t urls < <(url_args "${PEER_URLS[@]}")
  mapfile -t pids < <(pid_args "${PEER_PIDS[@]}")
  load "idle-$stamp-socketio" "${urls[@]}" "${pids[@]}" --transport socketio \
    --profiles $((per_edge / per_profile)) --users "$per_profile" --rate 0 --duration "$hold" \
    --ramp 2000 --settle 5 --drain 0
  stop_peer
  compare "$results/idle-$stamp.json" "$results/idle-$stamp-rill.json" "$results/idle-$stamp-socketio.json"
fi
say "done: $results/idle-$stamp*.json"
