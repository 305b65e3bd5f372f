#!/usr/bin/env bash
# Runs the whole Rill stack on this machine, in the foreground:
#
#   scripts/dev.sh
#
# 1. installs the missing tools (Apache Kafka, Redis, Traefik; once per
#    machine, outside the checkout: scripts/lib/tools.sh),
# 2. builds the release binaries (cargo skips what is up to date),
# 3. starts, all on 127.0.0.1: Apache Kafka (one KRaft node,
#    scripts/kafka/run.sh), Redis, with RILL_DEV_STORE=cassandra Apache
#    Cassandra (one node, scripts/cassandra/run.sh; the store is SQLite
#    otherwise), creates the Kafka topics (and the Cassandra schema), two
#    edges, the api, the sequencer, persist, and Traefik in front of the edges and the api
#    (sticky cookie `rill_edge`),
# 4. prints the URL of the browser client and waits.
#
# Ctrl-C or SIGTERM stops everything: Traefik and the services first (SIGTERM,
# then SIGKILL after RILL_DEV_STOP_TIMEOUT seconds; a second Ctrl-C kills at
# once), then Kafka and Redis. A service (an edge, the api, the sequencer,
# persist) that dies on its own once the stack is up is started again, with
# a line `dev: edge-1 exited (status 137); restarting in 1 s`; the wait
# doubles, up to 30 s, while it keeps dying within a minute of its start.
# If Kafka, Redis, Cassandra or Traefik dies, or a service dies while the
# stack starts, the rest is stopped and the script exits non-zero.
#
# State lives in RILL_STATE (default .rill/ in the checkout): logs/<process>.log
# (truncated at each start), the session cookie key, the server API key
# (api-key) and the connection-token secret (token-secret), the SQLite store
# rill.db, kafka/ (the broker's data, kept across restarts; topics keep at
# most a day and 256 MiB per partition: scripts/kafka/server.properties) and
# cassandra/ (the node's data, when RILL_DEV_STORE=cassandra). Redis keeps
# nothing. Delete the folder to start from nothing.
#
# Environment (all optional):
#   RILL_STATE              state directory (default <repo>/.rill)
#   RILL_TOOLS              where tools are installed (default ~/.local/share/rill)
#   RILL_DEV_HTTP_PORT      Traefik, the URL to open (default 8080)
#   RILL_DEV_KAFKA_PORT     Kafka (default 9092; its controller listens on
#                           RILL_DEV_KAFKA_CONTROLLER_PORT, default 9093)
#   RILL_DEV_REDIS_PORT     Redis (default 6379)
#   RILL_DEV_STORE          sqlite (default) or cassandra: where users,
#                           profiles and history live
#   RILL_DEV_CASSANDRA_PORT Cassandra's CQL port (default 9042; its storage
#                           port is RILL_DEV_CASSANDRA_STORAGE_PORT, 7000)
#   RILL_DEV_EDGE1_PORT, RILL_DEV_EDGE2_PORT  the edges (default 8081, 8082)
#   RILL_DEV_API_PORT       the api (default 8090)
#   RILL_DEV_PERSIST_PORT   persist (its health and metrics; default 8091)
#   RILL_DEV_SEQUENCER_PORT the sequencer (its health and metrics; default 8092)
#   RILL_DEV_SKIP_BUILD=1   use the binaries already in target/release
#   RILL_DEV_STOP_TIMEOUT   seconds a service gets to stop (default 30)
#   RILL_TELEMETRY__LOG_FORMAT  service log format (default text here)
#   RILL_TRAEFIK_LOG_LEVEL  (default WARN), RILL_TRAEFIK_ACCESS_LOG=1
# The services inherit the environment: any other RILL_<SECTION>__<FIELD>
# variable sets one of their settings (services/runtime/src/settings.rs).
#
# shellcheck disable=SC2317  # functions called from traps and `until`
# shellcheck disable=SC2016  # '$1' in `bash -c` scripts is meant literally
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$repo/scripts/lib/tools.sh"

state="${RILL_STATE:-$repo/.rill}" # made absolute, with logs/ and pids/, below

http_port="${RILL_DEV_HTTP_PORT:-8080}"
kafka_port="${RILL_DEV_KAFKA_PORT:-9092}"
kafka_controller_port="${RILL_DEV_KAFKA_CONTROLLER_PORT:-9093}"
redis_port="${RILL_DEV_REDIS_PORT:-6379}"
store="${RILL_DEV_STORE:-sqlite}"
cassandra_port="${RILL_DEV_CASSANDRA_PORT:-9042}"
cassandra_storage_port="${RILL_DEV_CASSANDRA_STORAGE_PORT:-7000}"
edge1_port="${RILL_DEV_EDGE1_PORT:-8081}"
edge2_port="${RILL_DEV_EDGE2_PORT:-8082}"
api_port="${RILL_DEV_API_PORT:-8090}"
persist_port="${RILL_DEV_PERSIST_PORT:-8091}"
sequencer_port="${RILL_DEV_SEQUENCER_PORT:-8092}"
stop_timeout="${RILL_DEV_STOP_TIMEOUT:-30}"
start_timeout=120 # seconds for each process to become ready (JVMs on a busy machine)

say() { echo "dev: $*" >&2; }
die() {
  echo "dev: error: $*" >&2
  exit 1 # the EXIT trap stops whatever was started
}

# --- processes ----------------------------------------------------------------

# Everything started here, in start order: names[i] runs as pids[i].
names=()
pids=()
force_kill="" # set by a second Ctrl-C during the shutdown

# start NAME COMMAND...: runs COMMAND in the background, output to
# logs/NAME.log. `setsid` puts it in its own session, so that the terminal's
# Ctrl-C reaches only this script, which then stops the processes in order
# (otherwise the broker could die before the services that still use it).
# The child is not a process-group leader, so setsid does not fork: $! is the
# program's own pid. The lock fd is not inherited.
start() {
  local name="$1"
  shift
  say "starting $name (log: $logs/$name.log)"
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null {lock_fd}>&- &
  names+=("$name")
  pids+=("$!")
  echo "$!" >"$pid_dir/$name.pid"
}

# Services to start again when they die on their own: NAME -> the command,
# quoted (printf %q) to be run again as it was.
declare -A commands=()
declare -A started_at=() # NAME -> $SECONDS at its last start
declare -A backoff=()    # NAME -> seconds to wait before its next restart
backoff_pid=""           # the wait before a restart, killed at the exit

# supervise NAME COMMAND...: `start`, and NAME is started again whenever it
# dies on its own (see the wait at the end).
supervise() {
  local name="$1"
  shift
  commands["$name"]="$(printf '%q ' "$@")"
  started_at["$name"]=$SECONDS
  start "$name" "$@"
}

# restart NAME: runs NAME's command again, its output appended to its log.
restart() {
  local name="$1" i
  local -a command
  eval "command=(${commands[$name]})"
  echo "--- dev.sh: $name started again at $(date '+%F %T') ---" >>"$logs/$name.log"
  setsid "${command[@]}" >>"$logs/$name.log" 2>&1 </dev/null {lock_fd}>&- &
  for i in "${!names[@]}"; do
    [[ "${names[$i]}" == "$name" ]] && pids[i]="$!"
  done
  echo "$!" >"$pid_dir/$name.pid"
  started_at["$name"]=$SECONDS
  say "$name started again (pid $!, log: $logs/$name.log)"
}

pid_of() {
  local i
  for i in "${!names[@]}"; do
    [[ "${names[$i]}" == "$1" ]] && echo "${pids[$i]}" && return 0
  done
  return 1
}

alive() { kill -0 "$1" 2>/dev/null; }

show_log() {
  local name="$1"
  echo "dev: --- last lines of $logs/$name.log ---" >&2
  tail -n 30 "$logs/$name.log" >&2 || true
  echo "dev: ---" >&2
}

# Fails (with the process' log) if NAME is no longer running.
check_alive() {
  local name="$1" pid
  pid="$(pid_of "$name")"
  if ! alive "$pid"; then
    local status=0
    wait "$pid" || status=$?
    show_log "$name"
    die "$name exited during start-up (status $status)"
  fi
}

# stop_group TIMEOUT NAME...: SIGTERM to each running NAME, then waits for
# all of them; SIGKILL to those still alive after TIMEOUT seconds (or at a
# second Ctrl-C). Returns 1 if anything had to be killed.
stop_group() {
  local timeout="$1" name pid rc=0
  shift
  local -a live_names=() live_pids=()
  for name in "$@"; do
    pid="$(pid_of "$name")" || continue
    alive "$pid" || continue
    live_names+=("$name")
    live_pids+=("$pid")
    kill -TERM "$pid" 2>/dev/null || true
  done
  ((${#live_pids[@]})) || return 0
  say "stopping ${live_names[*]}"
  # Poll every 0.2 s; `limit` in polls. A second Ctrl-C cuts what is left
  # of the wait to 1 s.
  local polls=0 limit=$((timeout * 5)) any i
  while :; do
    any=""
    for pid in "${live_pids[@]}"; do
      alive "$pid" && any=1
    done
    [[ -z "$any" ]] && break
    if [[ -n "$force_kill" ]] && ((limit > polls + 5)); then
      limit=$((polls + 5))
    fi
    if ((polls >= limit)); then
      for i in "${!live_pids[@]}"; do
        if alive "${live_pids[$i]}"; then
          say "${live_names[$i]} still running after $((polls / 5)) s: SIGKILL"
          kill -KILL "${live_pids[$i]}" 2>/dev/null || true
          rc=1
        fi
      done
      break
    fi
    sleep 0.2
    polls=$((polls + 1))
  done
  for pid in "${live_pids[@]}"; do
    wait "$pid" 2>/dev/null || true # reap; exit statuses of a stop don't matter
  done
  return "$rc"
}

cleanup() {
  local rc=$?
  trap - EXIT
  # A signal during the shutdown only hurries it. (A plain assignment: a
  # function with `return` as a trap nested in this EXIT trap corrupts
  # bash's variable scopes, 5.2 "pop_var_context" errors.)
  trap 'force_kill=1' INT TERM HUP
  [[ -n "$backoff_pid" ]] && kill "$backoff_pid" 2>/dev/null
  if ((${#pids[@]})); then
    # Ingress and services first, while the broker and Redis still serve
    # their shutdown (edges release Redis locks, producers flush).
    stop_group "$stop_timeout" traefik edge-1 edge-2 api sequencer persist || ((rc)) || rc=1
    stop_group 30 kafka redis cassandra || ((rc)) || rc=1
    rm -f "$pid_dir"/*.pid
    say "stopped"
  fi
  exit "$rc"
}

on_signal() {
  say "caught SIG$1, stopping (Ctrl-C again to kill at once)"
  exit 0 # -> cleanup, which keeps 0 if everything stopped cleanly
}

trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

# --- probes (bash only: no curl or redis-cli needed) ----------------------------

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# Prints the HTTP status code of GET http://127.0.0.1:PORT/PATH.
http_status() {
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
    IFS=" " read -r _ code _ <&3 && printf "%s" "$code"
    cat <&3 >/dev/null # read to the end: hanging up early makes servers log errors
  ' _ "$1" "$2" 2>/dev/null
}

redis_pong() {
  local reply
  reply="$(timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "PING\r\n" >&3
    IFS= read -r line <&3 && printf "%s" "$line"
  ' _ "$1" 2>/dev/null)" || return 1
  [[ "$reply" == +PONG* ]]
}

# wait_for NAME WHAT COMMAND...: retries COMMAND until it succeeds, for up to
# start_timeout seconds; fails with NAME's log if NAME dies or time is up.
wait_for() {
  local name="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + start_timeout))
  until "$@"; do
    check_alive "$name"
    if ((SECONDS >= deadline)); then
      show_log "$name"
      die "$name: $what not ready after ${start_timeout}s"
    fi
    sleep 0.2
  done
}

http_ready() { [[ "$(http_status "$1" "$2")" == 200 ]]; }

# --- before starting anything ---------------------------------------------------

mkdir -p "$state"
state="$(cd "$state" && pwd)" # absolute: Redis gets it as its dir
logs="$state/logs"
pid_dir="$state/pids"
mkdir -p "$logs" "$pid_dir"

# One stack per state directory.
exec {lock_fd}>"$state/dev.lock"
flock -n "$lock_fd" || die "another scripts/dev.sh is already running with the state directory $state"

case "$store" in
  sqlite | cassandra) ;;
  *) die "RILL_DEV_STORE=$store: say sqlite or cassandra" ;;
esac
store_ports=()
if [[ "$store" == cassandra ]]; then
  store_ports=("Cassandra (RILL_DEV_CASSANDRA_PORT):$cassandra_port"
    "Cassandra's storage port (RILL_DEV_CASSANDRA_STORAGE_PORT):$cassandra_storage_port")
fi

# Every port must be free; name the culprit if it is not.
for entry in "${store_ports[@]}" "Traefik (RILL_DEV_HTTP_PORT):$http_port" "Kafka (RILL_DEV_KAFKA_PORT):$kafka_port" \
  "Kafka's controller (RILL_DEV_KAFKA_CONTROLLER_PORT):$kafka_controller_port" \
  "Redis (RILL_DEV_REDIS_PORT):$redis_port" "edge-1 (RILL_DEV_EDGE1_PORT):$edge1_port" \
  "edge-2 (RILL_DEV_EDGE2_PORT):$edge2_port" "api (RILL_DEV_API_PORT):$api_port" \
  "persist (RILL_DEV_PERSIST_PORT):$persist_port" "sequencer (RILL_DEV_SEQUENCER_PORT):$sequencer_port"; do
  port="${entry##*:}"
  if port_open "$port"; then
    owner=""
    if command -v ss >/dev/null 2>&1; then
      owner="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(.*)' | head -n 1 || true)"
    fi
    die "port $port, needed for ${entry%:*}, is already in use${owner:+ by $owner}." \
      "Stop that process or choose another port with the variable named." \
      "(Processes left by an earlier dev.sh that was killed hard have their pids in $pid_dir.)"
  fi
done

ensure_tools

if [[ "${RILL_DEV_SKIP_BUILD:-0}" != 1 ]]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
  say "cargo build --release --bins"
  (cd "$repo" && cargo build --release --bins) >&2 || die "cargo build failed"
fi
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" == /* ]] || target_dir="$repo/$target_dir"
bin="$target_dir/release"
for b in rill-admin edge api sequencer persist; do
  [[ -x "$bin/$b" ]] || die "$bin/$b not found: build it with cargo build --release --bins (in $repo)"
done

# Session cookie key: 64 random bytes as 128 hex characters, made once and
# kept, so that a restart keeps the browser's session valid.
key_file="$state/cookie-key"
if [[ ! -s "$key_file" ]]; then
  say "new session cookie key in $key_file"
  (
    umask 077
    od -An -vtx1 -N64 /dev/urandom | tr -d ' \n' >"$key_file.tmp"
  )
  mv "$key_file.tmp" "$key_file"
fi
chmod 600 "$key_file"
cookie_key="$(<"$key_file")"
[[ "$cookie_key" =~ ^[0-9a-f]{128}$ ]] ||
  die "$key_file does not hold 128 hex characters; delete it to get a new key (sessions will need a new login)"

# The local stack's server API key and connection-token secret, made once
# and kept like the cookie key. The api keeps only the key's digest.
secret_in() { # FILE BYTES: BYTES random bytes as hex, made once and kept in FILE
  if [[ ! -s "$1" ]]; then
    (
      umask 077
      od -An -vtx1 -N"$2" /dev/urandom | tr -d ' \n' >"$1.tmp"
    )
    mv "$1.tmp" "$1"
  fi
  chmod 600 "$1"
  cat "$1"
}
api_key="$(secret_in "$state/api-key" 32)"
if [[ "$api_key" != rk_* ]]; then # the key's form (rill_auth::api_key::generate)
  api_key="rk_$api_key"
  printf %s "$api_key" >"$state/api-key"
fi
api_key_digest="$(printf %s "$api_key" | sha256sum | cut -d' ' -f1)"
token_secret="$(secret_in "$state/token-secret" 32)"

# --- start -----------------------------------------------------------------------

cd "$repo"

# 1. Apache Kafka, its data in $state/kafka (formatted on the first start).
start kafka "$repo/scripts/kafka/run.sh" "$state/kafka" "$kafka_port" "$kafka_controller_port"
kafka_ready() { kafka_wait "$1" 2 2>/dev/null; }
wait_for kafka "a broker answering on port $kafka_port" kafka_ready "$kafka_port"

# 2. Redis, in memory only.
start redis "$RILL_REDIS_BIN" --port "$redis_port" --bind 127.0.0.1 \
  --save '' --appendonly no --dir "$state" --daemonize no --logfile ''
wait_for redis "PING on port $redis_port" redis_pong "$redis_port"

# 3. The store: a SQLite file, or a Cassandra node with its data in
#    $state/cassandra.
if [[ "$store" == cassandra ]]; then
  start cassandra "$repo/scripts/cassandra/run.sh" "$state/cassandra" "$cassandra_port" "$cassandra_storage_port"
  cassandra_ready() { cassandra_wait "$1" 2 2>/dev/null; }
  wait_for cassandra "CQL on port $cassandra_port" cassandra_ready "$cassandra_port"
  store_env=("RILL_STORE__CASSANDRA__CONTACT_POINTS=[127.0.0.1:$cassandra_port]")
else
  store_env=("RILL_STORE__SQLITE_PATH=$state/rill.db")
fi

# Settings shared by every service (RILL_<SECTION>__<FIELD>).
common_env=(
  "RILL_KAFKA__BROKERS=127.0.0.1:$kafka_port"
  "RILL_REDIS__URLS=redis://127.0.0.1:$redis_port"
  "${store_env[@]}"
  "RILL_TELEMETRY__LOG_FORMAT=${RILL_TELEMETRY__LOG_FORMAT:-text}"
  "RILL_SESSION__COOKIE_KEY=$cookie_key"
)

# 4. Topics and the schema (what exists from an earlier start is left
#    alone).
say "creating topics (log: $logs/rill-admin.log)"
if ! env "${common_env[@]}" timeout 60 "$bin/rill-admin" create-topics >"$logs/rill-admin.log" 2>&1 </dev/null; then
  show_log rill-admin
  die "rill-admin create-topics failed"
fi
if [[ "$store" == cassandra ]]; then
  say "applying the Cassandra schema (log: $logs/rill-admin.log)"
  if ! env "${common_env[@]}" timeout 120 "$bin/rill-admin" apply-schema >>"$logs/rill-admin.log" 2>&1 </dev/null; then
    show_log rill-admin
    die "rill-admin apply-schema failed"
  fi
fi

# 5. Services.
# A short drain: Ctrl-C should not take the production default (20 s).
edge_env=("RILL_DRAIN__WINDOW_SECS=${RILL_DRAIN__WINDOW_SECS:-5}")
edge_env+=("RILL_TOKENS__HS256_KEYS=[{kid=\"dev\",secret=\"$token_secret\"}]")
# The api: the dev key, test data on, and a lobby every new account joins.
api_env=("RILL_API_KEYS__KEYS=[{name=\"dev\",sha256=\"$api_key_digest\"}]"
  "RILL_TEST_DATA=true" "RILL_SIGNUP_LOBBY=${RILL_SIGNUP_LOBBY:-Lobby}")
# What the operations page (/ops on the api) watches.
api_env+=("RILL_OPS__EDGES=[\"http://127.0.0.1:$edge1_port\",\"http://127.0.0.1:$edge2_port\"]"
  "RILL_OPS__PERSIST=http://127.0.0.1:$persist_port")
supervise edge-1 env "${common_env[@]}" "${edge_env[@]}" RILL_LISTEN="127.0.0.1:$edge1_port" RILL_NODE_ID=edge-1 "$bin/edge"
supervise edge-2 env "${common_env[@]}" "${edge_env[@]}" RILL_LISTEN="127.0.0.1:$edge2_port" RILL_NODE_ID=edge-2 "$bin/edge"
supervise api env "${common_env[@]}" "${api_env[@]}" RILL_LISTEN="127.0.0.1:$api_port" "$bin/api"
# The sequencer keeps one transactional id across restarts: a restart
# aborts what a crashed run left open at once.
supervise sequencer env "${common_env[@]}" RILL_LISTEN="127.0.0.1:$sequencer_port" \
  RILL_TRANSACTIONAL_ID=rill-sequencer-dev "$bin/sequencer"
supervise persist env "${common_env[@]}" RILL_LISTEN="127.0.0.1:$persist_port" "$bin/persist"
wait_for edge-1 "/readyz on port $edge1_port" http_ready "$edge1_port" /readyz
wait_for edge-2 "/readyz on port $edge2_port" http_ready "$edge2_port" /readyz
wait_for api "/readyz on port $api_port" http_ready "$api_port" /readyz
wait_for sequencer "/readyz on port $sequencer_port" http_ready "$sequencer_port" /readyz
wait_for persist "/readyz on port $persist_port" http_ready "$persist_port" /readyz

# 6. Traefik in front (RILL_TRAEFIK_BIN comes from ensure_tools).
start traefik env RILL_TRAEFIK_LISTEN="127.0.0.1:$http_port" \
  RILL_EDGE_URLS="http://127.0.0.1:$edge1_port,http://127.0.0.1:$edge2_port" \
  RILL_API_URL="http://127.0.0.1:$api_port" \
  bash "$repo/traefik/local/run.sh"
wait_for traefik "port $http_port" port_open "$http_port"
# Through Traefik to an edge: proves that the routes loaded.
wait_for traefik "routing to the edges (GET /readyz through port $http_port)" http_ready "$http_port" /readyz

cat <<EOF

  Rill is running: http://127.0.0.1:$http_port/
  (create an account there: it joins the profile "${RILL_SIGNUP_LOBBY:-Lobby}")

  server API key:  $api_key   (X-Api-Key; kept in $state/api-key)
  operations page: http://127.0.0.1:$http_port/api/ops   (asks for the server API key)
  test data:       curl -H "X-Api-Key: $api_key" -H 'content-type: application/json' \\
                     -d '{"users":20,"profiles":4}' http://127.0.0.1:$http_port/api/testdata
  token secret:    $state/token-secret (HS256, kid "dev": connection tokens for /login/token)

  store: $store$([[ "$store" == cassandra ]] && echo " (CQL on 127.0.0.1:$cassandra_port)")
  logs:  $logs/{kafka,redis,rill-admin,edge-1,edge-2,api,sequencer,persist,traefik}.log
  stop:  Ctrl-C

EOF

# --- wait, and start again what dies -------------------------------------------

# Returns when a child exits (or a trapped signal interrupts the wait, and
# the trap has already exited through cleanup). A supervised service is
# started again after its back-off; anything else stops the stack.
while :; do
  died="" status=0
  wait -n -p died "${pids[@]}" || status=$?
  name=""
  for i in "${!pids[@]}"; do
    [[ "${pids[$i]}" == "$died" ]] && name="${names[$i]}"
  done
  [[ -n "$name" ]] || continue
  if [[ -z "${commands[$name]:-}" ]]; then
    say "$name exited on its own (status $status); stopping the rest"
    show_log "$name"
    exit 1
  fi
  # A service that ran for a minute gets a fresh back-off.
  if ((SECONDS - started_at[$name] >= 60)); then
    backoff["$name"]=1
  fi
  delay="${backoff[$name]:-1}"
  say "$name exited (status $status); restarting in $delay s"
  backoff["$name"]=$((delay * 2 > 30 ? 30 : delay * 2))
  # In the background, so that Ctrl-C or SIGTERM is not held up by it.
  sleep "$delay" &
  backoff_pid=$!
  wait "$backoff_pid" || true
  backoff_pid=""
  restart "$name"
done
