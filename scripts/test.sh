#!/usr/bin/env bash
# Sets up (idempotently) and runs the whole test suite: unit tests, real Redis and worker processes,
# the end-to-end tests against a real Label Studio server and the browser test.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k webhook`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PREFLOOP_TEST_OUTPUT="${PREFLOOP_TEST_OUTPUT:-$PWD/test-output}"
exec .venv/bin/python -m pytest "$@"
