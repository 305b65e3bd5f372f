#!/usr/bin/env bash
# Runs Traefik in the foreground as the ingress of the one-machine stack:
# one entryPoint `web`, routes from dynamic.yml (next to this script).
#
# Used by scripts/dev.sh and spawned by the Rust integration tests
# (`bash traefik/local/run.sh`). It ends with `exec`, so the process the
# caller started *is* Traefik: killing it kills Traefik.
#
# Environment:
#   RILL_TRAEFIK_BIN        Traefik binary (required; scripts/lib/tools.sh
#                           ensure_tools exports it)
#   RILL_EDGE_URLS          comma-separated edge base URLs (required)
#   RILL_API_URL            api base URL (optional; without it no /api route)
#   RILL_TRAEFIK_LISTEN     host:port of the entryPoint (default 127.0.0.1:8080)
#   RILL_TRAEFIK_LOG_LEVEL  TRACE|DEBUG|INFO|WARN|ERROR (default WARN)
#   RILL_TRAEFIK_GRACE_TIMEOUT  how long Traefik lets open requests and
#                           streams finish after SIGTERM (default 2s)
#   RILL_TRAEFIK_ACCESS_LOG set to 1 to log every request (to stdout)
#   RILL_TRAEFIK_IDLE_TIMEOUT  keep-alive idle timeout (default 180s; tests
#                           lower it to show that idle sessions survive it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "traefik/local/run.sh: $*" >&2
  exit 2
}

# dynamic.yml reads these with sprig's `env`: they must be in Traefik's
# environment, hence exported.
[[ -n "${RILL_EDGE_URLS:-}" && -n "${RILL_EDGE_URLS//[[:space:],]/}" ]] ||
  die "RILL_EDGE_URLS is not set or empty (comma-separated edge URLs, e.g. http://127.0.0.1:8081,http://127.0.0.1:8082)"
export RILL_EDGE_URLS
export RILL_API_URL="${RILL_API_URL:-}"

[[ -n "${RILL_TRAEFIK_BIN:-}" ]] ||
  die "RILL_TRAEFIK_BIN is not set (source scripts/lib/tools.sh and run ensure_tools)"
[[ -x "$RILL_TRAEFIK_BIN" ]] || die "RILL_TRAEFIK_BIN=$RILL_TRAEFIK_BIN is not an executable file"
[[ -r "$here/dynamic.yml" ]] || die "missing $here/dynamic.yml"

listen="${RILL_TRAEFIK_LISTEN:-127.0.0.1:8080}"

extra=()
if [[ "${RILL_TRAEFIK_ACCESS_LOG:-0}" == 1 ]]; then
  extra+=(--accessLog=true)
fi

# Static configuration, as flags. Notes on the less obvious ones:
#
# Entry point timeouts and long-lived streams (SSE, WebSocket) — measured
# with this Traefik (3.7.15) and dummy backends, streams of 70-100 s with
# gaps of 25-35 s between events:
# - writeTimeout is the one that cuts streams: it bounds the whole response,
#   and an SSE stream is one endless response (with writeTimeout=5s the
#   stream died at 5 s). It must stay 0 (the v3 default) for streams to live
#   for hours; set explicitly so that nobody "fixes" it.
# - readTimeout (v3 default 60s) bounds reading the request, headers and
#   body: a PUT whose body trickled in for 8 s got a 504 at readTimeout=4s.
#   It did NOT cut an SSE response or a WebSocket (upgraded connections have
#   their read deadline cleared), not even at 5s. Rill's requests are small,
#   so the default stays, as written here.
# - idleTimeout (default 180s) only closes a keep-alive connection idle
#   *between* requests; with 3s it cut neither an SSE stream nor a WebSocket
#   silent for 35 s. Default kept.
# Edges also send heartbeats, which keeps any proxy or NAT in between awake.
#
# Other flags:
# - lifeCycle.graceTimeOut: after SIGTERM Traefik waits this long for open
#   requests to end. Streams never end on their own, so the default 10s
#   would only delay every stop; the edges do their own draining.
# - Logs go to a file or the test's output: no ANSI colours. Note that a
#   dynamic.yml that fails to render or parse is only logged (ERR); Traefik
#   keeps running with no routes and answers 404 to everything.
# - aliasHeadersStrategy=delete and encodedCharacters.*=false: drop headers
#   whose names alias others (X_Forwarded_For for X-Forwarded-For) and
#   reject paths with encoded `/ \ # ? ; % NUL`; nothing in Rill needs them,
#   and it silences the two warnings Traefik prints at every start otherwise.
# - No --api* flag: even `--api.dashboard=false` would enable the API.
# - The network is closed: no version check, no anonymous usage report.
exec "$RILL_TRAEFIK_BIN" \
  --global.checkNewVersion=false \
  --global.sendAnonymousUsage=false \
  --entryPoints.web.address="$listen" \
  --entryPoints.web.transport.respondingTimeouts.readTimeout=60s \
  --entryPoints.web.transport.respondingTimeouts.writeTimeout=0 \
  --entryPoints.web.transport.respondingTimeouts.idleTimeout="${RILL_TRAEFIK_IDLE_TIMEOUT:-180s}" \
  --entryPoints.web.transport.lifeCycle.graceTimeOut="${RILL_TRAEFIK_GRACE_TIMEOUT:-2s}" \
  --entryPoints.web.http.aliasHeadersStrategy=delete \
  --entryPoints.web.http.encodedCharacters.allowEncodedSlash=false \
  --entryPoints.web.http.encodedCharacters.allowEncodedBackSlash=false \
  --entryPoints.web.http.encodedCharacters.allowEncodedNullCharacter=false \
  --entryPoints.web.http.encodedCharacters.allowEncodedSemicolon=false \
  --entryPoints.web.http.encodedCharacters.allowEncodedPercent=false \
  --entryPoints.web.http.encodedCharacters.allowEncodedQuestionMark=false \
  --entryPoints.web.http.encodedCharacters.allowEncodedHash=false \
  --providers.file.filename="$here/dynamic.yml" \
  --providers.file.watch=false \
  --log.level="${RILL_TRAEFIK_LOG_LEVEL:-WARN}" \
  --log.noColor=true \
  "${extra[@]}"
