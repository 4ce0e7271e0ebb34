#!/usr/bin/env bash
# Installs Label Studio 1.23.2 into its own virtualenv (default .venv-ls; in the project's
# environment it would downgrade redis and rq). Used by `scripts/setup.sh --test` and by
# `prefloop up` when Label Studio is missing. Idempotent; about 90 s and 1 GB the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-ls}
PYTHON=${PYTHON:-python3}
LS_SPEC=${LS_SPEC:-label-studio==1.23.2}
if [ ! -x "$VENV/bin/label-studio" ]; then
  echo ">> installing $LS_SPEC into $VENV (about 90 s)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$LS_SPEC"
fi
