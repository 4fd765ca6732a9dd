#!/usr/bin/env bash
# Run the whole test matrix as CI does: lint, core, mxnet, frameworks, coverage (tox.ini).
# Installs tox into .venv-tox and, when missing and possible, Debian's chromium (the
# HTML report is checked in a real browser). Extra arguments go to tox, e.g. `-e core`.
# At the end it prints each tox environment's wall time and the total; run without
# arguments (the full matrix, as CI does) it fails when the total is over the budget
# in .ci/budget.toml (the README states the same figures).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv-tox
.venv-tox/bin/pip install -q 'tox>=4.11,<5'
mkdir -p .tox
result=.tox/ci-result.json
rm -f "$result"
enforce=()
if [ $# -eq 0 ]; then
  enforce=(--enforce)
  rm -rf .coverage-data  # the coverage env combines what this run measures, nothing older
fi
status=0
.venv-tox/bin/tox run --result-json "$result" "$@" || status=$?
.venv-tox/bin/python scripts/ci_times.py "$result" --started "$started" "${enforce[@]}" \
  || { [ "$status" -ne 0 ] || status=1; }
exit "$status"
