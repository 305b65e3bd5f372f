#!/usr/bin/env bash
# Waits until the Cassandra on 127.0.0.1:PORT answers CQL (a native
# protocol OPTIONS request gets its SUPPORTED reply):
#
#   scripts/cassandra/wait.sh PORT [TIMEOUT_SECS] [PID]
#
# Exits 0 as soon as it answers; 1 after TIMEOUT_SECS (default 180), or as
# soon as process PID (if given: the run.sh started in the background)
# has exited. The same as cassandra_wait in scripts/lib/cassandra.sh.
set -euo pipefail

[[ $# -ge 1 && $# -le 3 ]] || {
  echo "usage: $0 PORT [TIMEOUT_SECS] [PID]" >&2
  exit 2
}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$here/../lib/tools.sh"
if ! declare -F cassandra_wait >/dev/null; then
  # shellcheck source=scripts/lib/cassandra.sh
  source "$here/../lib/cassandra.sh"
fi
cassandra_wait "$@"
