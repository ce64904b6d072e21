#!/usr/bin/env bash
# Set up everything pyqueue needs on a Debian machine: the PostgreSQL server
# programs (only when none are installed) and a virtual environment in .venv
# holding pyqueue with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "setup: installing the PostgreSQL server (apt)"
  apt_install postgresql
fi

# The dashboard's browser tests drive the system Chromium (a browser download fails here).
if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Chromium for the browser tests (apt)"
  apt_install chromium
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
    echo "setup: installing python3-venv (apt)"
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import pyqueue" # fails loudly if the install did not happen
echo "setup: ready (.venv)"
