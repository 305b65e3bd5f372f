#!/usr/bin/env bash
# Fan-out: one profile, many subscribers, a steady trickle of sends; then
# the Socket.IO peer. The chat scenario with other defaults.
#
#   loadtest/scenarios/fanout.sh
#
# Environment (all optional): USERS subscribers (default 2000), RATE
# messages/s (default 20), DURATION (default 20), EDGES (default 2),
# TRANSPORT (default ws), INTERVAL (the latency series, default DURATION / 10),
# PEER=0.
# Reports: loadtest/results/fanout-<stamp>-{rill,socketio}.json (+ .svg) and
# fanout-<stamp>.json.
export SCENARIO=fanout PROFILES=1
export USERS="${USERS:-2000}" RATE="${RATE:-20}" DURATION="${DURATION:-20}"
exec "$(dirname "${BASH_SOURCE[0]}")/chat.sh"
