#!/usr/bin/env bash
# The import contracts of .importlinter (the layers, no cycles in datasets/, no framework
# in the core), checked with import-linter. setup.cfg installs models/, datasets/ and
# backends/ as harness.models, harness.datasets and harness.backends, which grimp cannot
# follow through an install, so the check runs on a tree of symbolic links that puts
# them where their names say.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
cp -rs "$root/harness" "$tree/harness"
for d in models datasets backends; do ln -s "$root/$d" "$tree/harness/$d"; done
cd "$tree"
PYTHONPATH="$tree" lint-imports --no-cache --no-logo "$root/.importlinter" "$@"
