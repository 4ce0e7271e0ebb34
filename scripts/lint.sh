#!/usr/bin/env bash
# Static checks, as CI runs them (configuration in pyproject.toml): ruff's lint rules, ruff's formatter in
# check mode (it changes nothing; `ruff format <files>` applies it), and mypy --strict on the core (prefloop/),
# the tiers (backend/, worker/, cli/) and the layout scripts.
# Every check runs even when an earlier one fails; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
failed=()
echo ">> ruff check ."
"$bin/ruff" check . || failed+=("ruff check")
echo ">> ruff format --check ."
"$bin/ruff" format --check --output-format concise . || failed+=("ruff format --check")
echo ">> mypy (strict: prefloop/, backend/, worker/, cli/, scripts/import_graph.py, scripts/size_table.py)"
"$bin/mypy" || failed+=("mypy")
if [ ${#failed[@]} -gt 0 ]; then
  echo "lint failed: ${failed[*]}" >&2
  exit 1
fi
echo ">> lint clean"
