#!/usr/bin/env bash
# Validates the Helm chart (helm/rill) and the Dockerfiles (helm/docker)
# offline: no cluster, no `helm` binary, no Docker engine. scripts/test.sh
# runs it; it can also run alone:
#
#   helm/tests/validate.sh
#
# The checks are in helm/tests/validate.py (its docstring lists them). They
# run in a virtualenv with the pinned packages of helm/tests/requirements.txt,
# made once per machine outside the checkout, like the other tools
# (scripts/lib/tools.sh): RILL_TOOLS/chart-check-<hash of requirements.txt>.
# A changed requirements.txt gets a fresh virtualenv. Needs Python >= 3.11
# (tomllib) with venv; installs python3-venv with apt-get when missing.
#
# Exit status 0 when every check passed; the last line says PASS or FAIL.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$repo/scripts/lib/tools.sh"
req="$repo/helm/tests/requirements.txt"

_chart_check_ok() {
  local venv="$1"
  [[ -x "$venv/bin/python" ]] && cmp -s "$venv/requirements.txt" "$req" &&
    "$venv/bin/python" -c 'import helm_python, kubernetes_validate, jsonschema, yaml, promql_parser' >/dev/null 2>&1
}

_chart_check_install() {
  local venv="$1"
  _chart_check_ok "$venv" && return 0 # installed meanwhile by another run
  command -v python3 >/dev/null 2>&1 || _tools_apt_install python3 python3-venv || return 1
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    _tools_die "python3 is older than 3.11 (tomllib): $(python3 --version)" || return 1
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    _tools_apt_install python3-venv || return 1
  fi
  _tools_log "installing the chart checks (helm-python-sdk, kubernetes-validate; ~100 MB) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || return 1
  "$venv/bin/pip" install --disable-pip-version-check -q --only-binary=:all: -r "$req" >&2 || return 1
  cp "$req" "$venv/requirements.txt" # marks the install complete
  _chart_check_ok "$venv" || _tools_die "$venv: the chart-check packages do not import"
}

ensure_chart_check() {
  local hash venv
  hash="$(sha256sum "$req" | cut -c1-12)"
  venv="$RILL_TOOLS/chart-check-$hash"
  if ! _chart_check_ok "$venv"; then
    _tools_locked _chart_check_install "$venv" || return 1
  fi
  RILL_CHART_CHECK_PYTHON="$venv/bin/python"
}

ensure_chart_check
# Helm's loader logs each symlinked template folder (helm/rill/templates/
# traefik -> traefik/kubernetes) at INFO on stderr: expected, filtered out.
PYTHONDONTWRITEBYTECODE=1 "$RILL_CHART_CHECK_PYTHON" "$repo/helm/tests/validate.py" 2>&1 |
  grep -v --line-buffered 'found symbolic link in path'
