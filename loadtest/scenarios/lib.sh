#!/usr/bin/env bash
# Shared by the scenario scripts (sourced): starts what a scenario needs on
# free ports of 127.0.0.1 (Apache Kafka, Redis, the api, persist, N edges, and the
# Socket.IO peer's Node processes), runs rill-load, and stops everything
# when the script exits, whatever happens.
#
# Uses the release binaries in target/release (built first unless
# RILL_LOAD_SKIP_BUILD=1) and the tools of scripts/lib/tools.sh. The
# services log at LOG_FILTER (default `warn`; e.g. `info` to see sessions).
# Every edge and the generator run with `ulimit -n 20000`, the hard limit
# on these machines.
# Each run makes its own credentials: an api key (the api holds its
# SHA-256) for rill-load's setup, and an HS256 secret (the edges hold it)
# that rill-load signs its users' connection tokens with. rill-load gets
# them in its environment, not on its command line.
# shellcheck disable=SC2034  # variables used by the sourcing scripts
# shellcheck disable=SC2016  # $1 in `bash -c` scripts is meant literally

set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$repo/scripts/lib/tools.sh"
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
results="$repo/loadtest/results"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d "${TMPDIR:-/tmp}/rill-scenario.XXXXXX")"
mkdir -p "$results"
# The consumers' fetch.wait.max.ms, for the services and the broker probe
# alike (the services' default unless set).
FETCH_WAIT_MS="${FETCH_WAIT_MS:-100}"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# random_hex BYTES: BYTES random bytes as hex digits.
random_hex() { od -An -vtx1 -N"$1" /dev/urandom | tr -d ' \n'; }
LOAD_API_KEY="rk_$(random_hex 32)"
LOAD_TOKEN_SECRET="$(random_hex 32)"
LOAD_TOKEN_KID=load

_names=()
_pids=()

say() { echo "scenario: $*" >&2; }
die() {
  echo "scenario: error: $*" >&2
  exit 1
}

# start NAME COMMAND...: in the background, output to $work/NAME.log.
start() {
  local name="$1"
  shift
  # The command, for `restart` (a process's own /proc cmdline will not
  # do: Redis rewrites its title).
  printf '%s\0' "$@" >"$work/$name.cmd"
  setsid "$@" >"$work/$name.log" 2>&1 </dev/null &
  _names+=("$name")
  _pids+=("$!")
}

pid_of() {
  local i
  for i in "${!_names[@]}"; do
    [[ "${_names[$i]}" == "$1" ]] && echo "${_pids[$i]}" && return 0
  done
  return 1
}

# stop NAME...: SIGTERM, then SIGKILL after 10 s.
stop() {
  local name pid n
  for name in "$@"; do
    pid="$(pid_of "$name")" || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "$@"; do
    pid="$(pid_of "$name")" || continue
    for ((n = 0; n < 50; n++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local i
  for ((i = ${#_names[@]} - 1; i >= 0; i--)); do
    kill -TERM "${_pids[$i]}" 2>/dev/null || true
  done
  sleep 1
  for i in "${!_pids[@]}"; do
    kill -KILL "${_pids[$i]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if ((rc)); then
    say "failed; logs in $work"
  else
    say "logs in $work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

free_port() {
  local port
  while :; do
    # Below the ephemeral range (32768-60999 here), where the generator's
    # client sockets take their ports.
    port=$((10000 + RANDOM % 20000))
    port_open "$port" || {
      echo "$port"
      return
    }
  done
}

wait_port() {
  local name="$1" port="$2" n
  for ((n = 0; n < 300; n++)); do
    port_open "$port" && return 0
    kill -0 "$(pid_of "$name")" 2>/dev/null || {
      tail -n 20 "$work/$name.log" >&2
      die "$name exited"
    }
    sleep 0.1
  done
  die "$name: port $port not open after 30 s"
}

wait_ready() {
  local name="$1" port="$2" n
  for ((n = 0; n < 300; n++)); do
    if [[ "$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"; printf "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >&3; read -r _ code _ <&3; echo "$code"' _ "$port" 2>/dev/null)" == 200 ]]; then
      return 0
    fi
    kill -0 "$(pid_of "$name")" 2>/dev/null || {
      tail -n 20 "$work/$name.log" >&2
      die "$name exited"
    }
    sleep 0.1
  done
  die "$name: not ready after 30 s"
}

build() {
  if [[ "${RILL_LOAD_SKIP_BUILD:-0}" != 1 ]]; then
    say "cargo build --release (edge, api, sequencer, persist, rill-admin, rill-load)"
    (cd "$repo" && cargo build --release -p rill-edge -p rill-api -p rill-sequencer -p rill-persist \
      -p rill-admin -p rill-loadtest) >&2
  fi
}

# Apache Kafka (a fresh node in $work/kafka) and Redis; topics created.
# Sets KAFKA, REDIS_URL.
start_broker_and_redis() {
  ensure_tools
  local kafka_port kafka_controller_port redis_port
  read -r kafka_port kafka_controller_port < <(free_ports 2)
  redis_port="$(free_port)"
  start kafka "$repo/scripts/kafka/run.sh" "$work/kafka" "$kafka_port" "$kafka_controller_port"
  kafka_wait "$kafka_port" 180 || die "Kafka did not start: $(tail -n 5 "$work/kafka.log")"
  start redis "$RILL_REDIS_BIN" --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$work" --daemonize no --logfile ''
  wait_port redis "$redis_port"
  KAFKA="127.0.0.1:$kafka_port"
  REDIS_URL="redis://127.0.0.1:$redis_port"
  common_env=(
    "RILL_KAFKA__BROKERS=$KAFKA"
    "RILL_REDIS__URLS=$REDIS_URL"
    "RILL_STORE__SQLITE_PATH=$work/rill.db"
    "RILL_TELEMETRY__LOG_FORMAT=text"
    "RILL_TELEMETRY__LOG_FILTER=${LOG_FILTER:-warn}"
    "RILL_SESSION__COOKIE_KEY=$(random_hex 64)"
    "RILL_KAFKA__FETCH_WAIT_MAX_MS=$FETCH_WAIT_MS"
  )
  env "${common_env[@]}" timeout 60 "$bin/rill-admin" create-topics >"$work/rill-admin.log" 2>&1 ||
    die "create-topics failed: $(tail -n 5 "$work/rill-admin.log")"
}

# start_rill EDGES: the api (test data on, the run's api key), the sequencer, persist and
# EDGES edges (the run's token secret), each edge allowed 19,500 sessions
# and never "not ready" from its session count or lag. The edges' rate and
# open limits are lifted (the generator opens thousands of sessions from a
# few addresses); a scenario that wants its own settings puts them in the
# array EDGE_ENV (NAME=VALUE ...), which comes after these and wins.
# Sets API_URL, EDGE_URLS (array), EDGE_PIDS (array), EDGE_NAMES.
start_rill() {
  local edges="$1" port n digest
  digest="$(printf %s "$LOAD_API_KEY" | sha256sum | cut -d' ' -f1)"
  port="$(free_port)"
  start api env "${common_env[@]}" RILL_LISTEN="127.0.0.1:$port" \
    RILL_API_KEYS__KEYS="[{name=\"load\",sha256=\"$digest\"}]" RILL_TEST_DATA=true \
    RILL_LIMITS__MAX_TEST_USERS=20000 RILL_LIMITS__MAX_TEST_PROFILES=2000 "$bin/api"
  API_URL="http://127.0.0.1:$port"
  wait_ready api "$port"
  port="$(free_port)"
  start sequencer env "${common_env[@]}" RILL_LISTEN="127.0.0.1:$port" "$bin/sequencer"
  wait_ready sequencer "$port"
  port="$(free_port)"
  start persist env "${common_env[@]}" RILL_LISTEN="127.0.0.1:$port" "$bin/persist"
  wait_ready persist "$port"
  EDGE_URLS=()
  EDGE_PIDS=()
  EDGE_NAMES=()
  for ((n = 1; n <= edges; n++)); do
    port="$(free_port)"
    start "edge-$n" env "${common_env[@]}" RILL_LISTEN="127.0.0.1:$port" RILL_NODE_ID="edge-$n" \
      RILL_TOKENS__HS256_KEYS="[{kid=\"$LOAD_TOKEN_KID\",secret=\"$LOAD_TOKEN_SECRET\"}]" \
      RILL_LIMITS__MAX_CONNECTIONS=19500 \
      RILL_LIMITS__SENDS_PER_SESSION='{per_second=100000.0,burst=100000}' \
      RILL_LIMITS__SENDS_PER_USER='{per_second=100000.0,burst=100000}' \
      RILL_LIMITS__OPENS_PER_USER='{per_second=100000.0,burst=100000}' \
      RILL_LIMITS__OPENS_PER_ADDRESS='{per_second=100000.0,burst=100000}' \
      RILL_LIMITS__MAX_SESSIONS_PER_ADDRESS=19500 \
      RILL_AVAILABILITY__WARNING_PERCENT=99 RILL_AVAILABILITY__CRITICAL_PERCENT=100 \
      RILL_AVAILABILITY__LAG_WARNING_MS=5000 RILL_AVAILABILITY__LAG_CRITICAL_MS=10000 \
      ${EDGE_ENV[@]+"${EDGE_ENV[@]}"} ${RILL_EDGE_WRAPPER:-} "$bin/edge"
    wait_ready "edge-$n" "$port"
    EDGE_URLS+=("http://127.0.0.1:$port")
    EDGE_PIDS+=("$(pid_of "edge-$n")")
    EDGE_NAMES+=("edge-$n")
  done
}

stop_rill() { stop "${EDGE_NAMES[@]}" api sequencer persist; }

# start_peer N: N Node processes of the Socket.IO peer sharing Redis.
# Sets PEER_URLS, PEER_PIDS, PEER_NAMES.
start_peer() {
  local count="$1" port n dir="$repo/loadtest/peer/socketio"
  if [[ ! -d "$dir/node_modules/socket.io" ]]; then
    say "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund) >&2
  fi
  PEER_URLS=()
  PEER_PIDS=()
  PEER_NAMES=()
  for ((n = 1; n <= count; n++)); do
    port="$(free_port)"
    start "socketio-$n" node "$dir/server.js" "$port" "$REDIS_URL"
    wait_port "socketio-$n" "$port"
    PEER_URLS+=("http://127.0.0.1:$port")
    PEER_PIDS+=("$(pid_of "socketio-$n")")
    PEER_NAMES+=("socketio-$n")
  done
}

stop_peer() { stop "${PEER_NAMES[@]}"; }

# url_args URL...: --url URL ... ; pid_args PID...: --edge-pid PID ...
url_args() { for u in "$@"; do printf -- '--url\n%s\n' "$u"; done; }
pid_args() { for p in "$@"; do printf -- '--edge-pid\n%s\n' "$p"; done; }

# cpu_pid_args: --cpu-pid NAME=PID for every process started here and still
# running: rill-load reports their CPU over the sending phase alone
# (cpu_secs_sending_by_process).
cpu_pid_args() {
  local i
  for i in "${!_names[@]}"; do
    [[ -r "/proc/${_pids[$i]}/stat" ]] || continue
    printf -- '--cpu-pid\n%s=%s\n' "${_names[$i]}" "${_pids[$i]}"
  done
}

# load NAME ARGS...: runs rill-load, report in $results/NAME.json (+ .svg),
# with every started process's CPU (add_cpu). The run's api key and token
# secret go in rill-load's environment (the Socket.IO peer ignores them).
load() {
  local name="$1" before after children_before cpu_pids
  shift
  mapfile -t cpu_pids < <(cpu_pid_args)
  say "load $name: uptime: $(uptime)"
  before="$(cpu_ticks)"
  # `times`, second line: CPU of this shell's waited-for children so far
  # (not in a pipeline: a subshell has no children).
  times >"$work/times"
  children_before="$(tail -n 1 "$work/times")"
  (cd "$repo" && RILL_LOAD_API_KEY="$LOAD_API_KEY" RILL_LOAD_TOKEN_SECRET="$LOAD_TOKEN_SECRET" \
    "$bin/rill-load" run --label "$name" --out "$results/$name.json" \
    --svg "$results/$name.svg" --probe-fetch-wait-ms "$FETCH_WAIT_MS" \
    --token-kid "$LOAD_TOKEN_KID" "${cpu_pids[@]}" "$@")
  after="$(cpu_ticks)"
  times >"$work/times"
  add_cpu "$results/$name.json" "$before" "$after" "$children_before" "$(tail -n 1 "$work/times")"
}

# cpu_ticks: "NAME TICKS" per line for every process started here
# (utime + stime from /proc/PID/stat).
cpu_ticks() {
  local i
  for i in "${!_names[@]}"; do
    [[ -r "/proc/${_pids[$i]}/stat" ]] || continue
    echo "${_names[$i]} $(sed 's/.*) //' "/proc/${_pids[$i]}/stat" | awk '{print $12 + $13}')"
  done
}

# add_cpu REPORT BEFORE AFTER TIMES_BEFORE TIMES_AFTER: every process's CPU
# seconds over the whole `load` call (setup, broker probe, ramp, sends,
# drain) into the report as cpu_secs_by_process, the generator's own (with
# its workers) as "rill-load": who took the cores. Then the platform's CPU
# per delivery, over that whole call and over the sending phase alone (from
# rill-load's cpu_secs_sending_by_process: no setup, probe or ramp):
#   platform_cpu_secs[_sending], platform_cpu_us_per_delivery[_sending]:
#     every server process of the run, not the generator. Rill: everything
#     started here but rill-load and the peer (kafka, redis, api, persist,
#     edge-N). Socket.IO (config.transport socketio): its Node processes
#     socketio-N and redis; the Kafka left running beside it is not its
#     platform (its idle CPU stays in cpu_secs_by_process).
#   kafka_cpu_secs[_sending], kafka_cpu_us_per_delivery[_sending]: the
#     broker alone (Rill only). Over the whole call it also carries the
#     broker probe's traffic (--broker: the same rate for the same time,
#     before the sessions send); the _sending figures do not.
#   edges_cpu_secs[_sending], edges_cpu_us_per_delivery[_sending]: the
#     processes holding the sessions: edge-N, or socketio-N.
#   platform_processes: the names counted.
# Per delivery is CPU seconds / deliveries.unique * 1e6 (µs).
# Redis is one process shared by the Rill run and the peer run (started
# once by start_broker_and_redis). Every figure here is a before/after
# delta over one `load` call (or its sending phase), so each run counts
# only its own share of Redis: keep it a delta.
add_cpu() {
  python3 - "$@" "$(getconf CLK_TCK)" <<'PY'
import json, sys
import re
path, before, after, times_before, times_after, hz = sys.argv[1:7]
parse = lambda text: {n: int(t) for n, t in (l.split() for l in text.splitlines() if l.strip())}
b, a = parse(before), parse(after)
cpu = {n: round((a[n] - b.get(n, 0)) / int(hz), 2) for n in a}
# "1m2.500s 0m0.250s": user and system time of the shell's children.
secs = lambda t: sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", t))
cpu["rill-load"] = round(secs(times_after) - secs(times_before), 2)
report = json.load(open(path))
report["cpu_secs_by_process"] = cpu

peer = (report.get("config") or {}).get("transport") == "socketio"
def in_platform(name):
    if peer:
        return name.startswith("socketio-") or name == "redis"
    return name != "rill-load" and not name.startswith("socketio-")
is_edge = lambda name: name.startswith("socketio-" if peer else "edge-")
deliveries = (report.get("deliveries") or {}).get("unique") or 0
per_delivery = lambda s: round(s / deliveries * 1e6, 3) if s is not None and deliveries else None
def platform(by_process, suffix):
    if not by_process:  # a report without the sending phase's samples
        for key in ("platform", "kafka", "edges"):
            report[f"{key}_cpu_secs{suffix}"] = report[f"{key}_cpu_us_per_delivery{suffix}"] = None
        return []
    names = [n for n in by_process if in_platform(n)]
    total = round(sum(by_process[n] for n in names), 2)
    edges = round(sum(by_process[n] for n in names if is_edge(n)), 2)
    kafka = None if peer else by_process.get("kafka")
    if not peer and kafka is None:
        print(f"scenario: warning: no CPU of kafka{suffix} in {path}", file=sys.stderr)
    for key, value in (("platform", total), ("kafka", kafka), ("edges", edges)):
        report[f"{key}_cpu_secs{suffix}"] = value
        report[f"{key}_cpu_us_per_delivery{suffix}"] = per_delivery(value)
    return names
report["platform_processes"] = platform(cpu, "")
platform(report.get("cpu_secs_sending_by_process") or {}, "_sending")
json.dump(report, open(path, "w"), indent=2)
print("scenario: CPU seconds over the run:", ", ".join(f"{n} {s}" for n, s in cpu.items()), file=sys.stderr)
for suffix, what in (("", "whole run"), ("_sending", "sending phase")):
    print(f"scenario: platform CPU ({what}): {report['platform_cpu_secs' + suffix]} s, "
          f"{report['platform_cpu_us_per_delivery' + suffix]} µs per delivery "
          f"(kafka {report['kafka_cpu_us_per_delivery' + suffix]}, "
          f"edges {report['edges_cpu_us_per_delivery' + suffix]})", file=sys.stderr)
PY
}

# compare OUT RILL.json PEER.json: both reports side by side, with ratios.
compare() {
  python3 - "$@" <<'PY'
import json, sys
out, rill_path, peer_path = sys.argv[1:4]
rill, peer = (json.load(open(p)) for p in (rill_path, peer_path))
def get(r, *path):
    for k in path:
        r = (r or {}).get(k)
    return r
def ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None
rows = {
    "bytes_per_session": ("edges", "bytes_per_session"),
    "bytes_per_session_held": ("edges", "bytes_per_session_held"),
    "deliveries_per_cpu_sec": ("edges", "deliveries_per_cpu_sec"),
    "edge_cpu_secs": ("edges", "cpu_secs_sending"),
    "edge_system_cpu_secs": ("edges", "system_cpu_secs_sending"),
    "p50_ms": ("latency", "p50_ms"),
    "p99_ms": ("latency", "p99_ms"),
    "p999_ms": ("latency", "p999_ms"),
    "lost": ("deliveries", "lost"),
    "connected": ("connect", "connected"),
    "unique_deliveries": ("deliveries", "unique"),
    # Whole `load` call (Rill's kafka includes the broker probe), then the
    # sending phase alone: see add_cpu.
    "platform_cpu_secs": ("platform_cpu_secs",),
    "platform_cpu_us_per_delivery": ("platform_cpu_us_per_delivery",),
    "kafka_cpu_us_per_delivery": ("kafka_cpu_us_per_delivery",),
    "edges_cpu_us_per_delivery": ("edges_cpu_us_per_delivery",),
    "platform_cpu_secs_sending": ("platform_cpu_secs_sending",),
    "platform_cpu_us_per_delivery_sending": ("platform_cpu_us_per_delivery_sending",),
    "kafka_cpu_us_per_delivery_sending": ("kafka_cpu_us_per_delivery_sending",),
    "edges_cpu_us_per_delivery_sending": ("edges_cpu_us_per_delivery_sending",),
}
summary = {k: {"rill": get(rill, *p), "socketio": get(peer, *p),
               "rill_over_socketio": ratio(get(rill, *p), get(peer, *p))}
           for k, p in rows.items()}
json.dump({"rill_report": rill_path.split("/")[-1], "socketio_report": peer_path.split("/")[-1],
           "commit": rill.get("commit"), "machine": rill.get("machine"), "comparison": summary},
          open(out, "w"), indent=2)
for k, v in summary.items():
    print(f"  {k:36} rill {v['rill']!s:>14}  socket.io {v['socketio']!s:>14}  ratio {v['rill_over_socketio']}")
PY
}
