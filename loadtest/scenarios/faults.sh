#!/usr/bin/env bash
# Faults: steady chat traffic through Traefik while faults are injected on
# a schedule; at the end every client's view is compared with everything
# acknowledged (rill-load faults: lost, duplicated, out of order, ghost
# presences, the stored history) and the run is drawn with the faults
# marked.
#
#   loadtest/scenarios/faults.sh
#
# The whole platform runs as processes on 127.0.0.1 (Kafka, Redis, the api,
# the sequencer, persist, three edges, Traefik); the run stops by itself
# (about 5 minutes with the defaults: setup, DURATION, SETTLE). The
# schedule, in seconds from the first send:
#   20  kill -9 edge-2          30  edge-2 started again (same port)
#   50  broker stopped (SIGTERM) 70 broker started again (same data)
#   100 kill -9 Redis           115 Redis started again (empty)
#   135 kill -9 persist         145 persist started again
#   160 kill -9 the sequencer   165 sequencer started again
#
# Environment (all optional): PROFILES (default 4), USERS per profile
# (default 8), RATE messages/s in all (default 20), DURATION seconds of
# sending (default 200, at least 180), SETTLE (default 25).
# Reports: loadtest/results/faults-<stamp>.json and .svg; the marks in
# faults-<stamp>.marks.tsv.
# shellcheck source=loadtest/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

profiles="${PROFILES:-4}"
users="${USERS:-8}"
rate="${RATE:-20}"
duration="${DURATION:-200}"
settle="${SETTLE:-25}"
((duration >= 180)) || die "DURATION must be at least 180 (the schedule's last fault is at 165 s)"
name="faults-$stamp"
marks="$results/$name.marks.tsv"
: >"$marks"

# mark LABEL: a fault mark now (Unix ms), for the report and the plot.
mark() {
  printf '%s\t%s\n' "$(date +%s%3N)" "$1" >>"$marks"
  say "mark: $1"
}

# relaunch NAME: starts NAME again with the command `start` gave it; the
# new pid takes the old one's place (so that the exit trap stops it).
relaunch() {
  local name="$1" pid i args
  mapfile -d '' args <"$work/$name.cmd"
  setsid "${args[@]}" >>"$work/$name.log" 2>&1 </dev/null &
  pid=$!
  for i in "${!_names[@]}"; do
    if [[ "${_names[i]}" == "$name" ]]; then _pids[i]=$pid; fi
  done
}

# kill9 NAME: kill -9, and wait until it is gone.
kill9() {
  local pid
  pid="$(pid_of "$1")"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

port_of() { echo "${1##*:}"; }

# at SECONDS: sleeps until SECONDS after the first send.
at() {
  local left
  left=$(($1 - ($(date +%s) - sending_since)))
  ((left > 0)) && sleep "$left"
  return 0
}

build
start_broker_and_redis
start_rill 3
traefik_port="$(free_port)"
start traefik env RILL_EDGE_URLS="$(
  IFS=,
  echo "${EDGE_URLS[*]}"
)" RILL_API_URL="$API_URL" RILL_TRAEFIK_LISTEN="127.0.0.1:$traefik_port" \
  bash "$repo/traefik/local/run.sh"
wait_port traefik "$traefik_port"
TRAEFIK_URL="http://127.0.0.1:$traefik_port"

say "rill-load faults through $TRAEFIK_URL: $profiles profiles x $users users, $rate msg/s for $duration s"
(cd "$repo" && RILL_LOAD_API_KEY="$LOAD_API_KEY" RILL_LOAD_TOKEN_SECRET="$LOAD_TOKEN_SECRET" \
  "$bin/rill-load" faults --url "$TRAEFIK_URL" --api "$API_URL" --token-kid "$LOAD_TOKEN_KID" \
  --profiles "$profiles" --users "$users" --rate "$rate" --duration "$duration" \
  --settle "$settle" --label "$name" --marks "$marks" \
  --out "$results/$name.json" --svg "$results/$name.svg") 2>"$work/rill-load.log" &
load_pid=$!
_names+=(rill-load)
_pids+=("$load_pid")
for ((n = 0; n < 600; n++)); do
  grep -q 'sending' "$work/rill-load.log" 2>/dev/null && break
  kill -0 "$load_pid" 2>/dev/null || die "rill-load exited: $(tail -n 5 "$work/rill-load.log")"
  sleep 0.2
done
sending_since="$(date +%s)"

at 20
mark "kill -9 edge-2"
kill9 edge-2
at 30
relaunch edge-2
wait_ready edge-2 "$(port_of "${EDGE_URLS[1]}")"
mark "edge-2 back"

at 50
mark "broker stopped"
stop kafka
at 70
mark "broker starting"
relaunch kafka
kafka_wait "$(port_of "$KAFKA")" 180 || die "Kafka did not start again"
mark "broker serving"

at 100
mark "kill -9 redis"
kill9 redis
at 115
relaunch redis
wait_port redis "$(port_of "$REDIS_URL")"
mark "redis back (empty)"

at 135
mark "kill -9 persist"
kill9 persist
at 145
relaunch persist
mark "persist started"

at 160
mark "kill -9 sequencer"
kill9 sequencer
at 165
relaunch sequencer
mark "sequencer started"

say "faults done; rill-load sends until $duration s, then settles $settle s"
wait "$load_pid" || die "rill-load failed: $(tail -n 20 "$work/rill-load.log")"
cat "$work/rill-load.log" >&2
say "done: $results/$name.json, $results/$name.svg"
