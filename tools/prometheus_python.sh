#!/usr/bin/env bash
# Print the path of a Python that has prometheus_client (the parser the
# metrics tests read pouwd's /metrics with, tools/parse_metrics.py),
# installing the pinned version into the repository's .venv first when it
# is not there (idempotent: a second run only prints the path).
# Needs python3 with venv and pip; the wheel comes from PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version=0.26.0
venv="$root/.venv"
python="$venv/bin/python"
installed() {
  [ -x "$python" ] &&
    [ "$("$python" -c 'from importlib.metadata import version; print(version("prometheus-client"))' 2>/dev/null || true)" = "$version" ]
}
if ! installed; then
  echo "installing prometheus-client==$version into $venv" >&2
  if [ ! -x "$python" ]; then
    python3 -m venv "$venv" >&2
  fi
  "$python" -m pip install --quiet --disable-pip-version-check "prometheus-client==$version" >&2
  if ! installed; then
    echo "error: prometheus-client==$version did not install into $venv" >&2
    exit 1
  fi
fi
echo "$python"
