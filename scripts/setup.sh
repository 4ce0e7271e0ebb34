#!/usr/bin/env bash
# Sets up everything prefloop needs on a fresh Debian/Ubuntu machine (root or sudo for apt):
#   redis-server (Debian package), the project virtualenv at .venv with every package at the version
#   of the lock (constraints.txt; refresh it with scripts/lock.sh), and, with --test, what the test
#   suite needs: Chromium for the browser test, docker-compose (v1, to validate docker-compose.yml
#   statically), Label Studio 1.23.2 in its own virtualenv (.venv-ls: in the project's env it would
#   downgrade redis and rq), and for scripts/test-compose.sh Debian's Docker engine, debootstrap and
#   a Docker Compose v2 CLI (scripts/docker/install-tools.sh).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}   # an exact pin: a loose range makes pip fetch a multi-GB CUDA build

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo ">> apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

command -v redis-server >/dev/null || apt_install redis-server

if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.prefloop-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo ">> installing $TORCH_SPEC and prefloop into .venv (versions from constraints.txt)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt "$TORCH_SPEC"
  .venv/bin/pip install -q -c constraints.txt -e ".[test]"
  touch "$stamp"
fi

if [ "$WITH_TEST" = 1 ]; then
  apt_install chromium docker-compose   # docker-compose: validates docker-compose.yml (no engine needed)
  PYTHON="$PYTHON" bash scripts/install-label-studio.sh .venv-ls
  PYTHON="$PYTHON" bash scripts/docker/install-tools.sh
fi
echo ">> setup complete"
