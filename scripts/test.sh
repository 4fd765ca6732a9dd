#!/usr/bin/env bash
# Run the whole test matrix: lint, the core, one tox env per framework, integration.
# Installs tox into .venv-tox and, when missing and possible, Debian's chromium (the
# HTML report is checked in a real browser). Extra arguments go to tox, e.g. `-e core`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv-tox
.venv-tox/bin/pip install -q 'tox>=4.11,<5'
exec .venv-tox/bin/tox run "$@"
