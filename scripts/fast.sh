#!/usr/bin/env bash
# The inner loop (at most 5 minutes on a 2-core machine): ruff, the core tests without
# those marked `slow`, and one short LeNet run through the CLI per installed framework,
# all in the Python environment you work in (PYTHON, default python3) with the harness and
# the core tests' extras installed: pip install -e '.[test,figures,dataframe,imagenet]'
# plus the frameworks you work on. CI runs the full matrix: bash scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
started=$(date +%s)
if ! "$py" -c "import harness, pytest, xdist" >/dev/null 2>&1; then
  echo "fast: $py lacks the harness or its test extras: run" \
    "$py -m pip install -e '.[test,figures,dataframe,imagenet]' (or set PYTHON)" >&2
  exit 2
fi
if "$py" -m ruff --version >/dev/null 2>&1; then
  "$py" -m ruff check . && "$py" -m ruff format --check .
else
  echo "fast: ruff is not installed here (pip install 'ruff==0.15.*'): lint skipped" >&2
fi
if command -v lint-imports >/dev/null 2>&1; then
  bash scripts/lint_imports.sh  # the layers (.importlinter)
else
  echo "fast: import-linter is not installed here (pip install import-linter): layers skipped" >&2
fi
"$py" -m pytest -q --numprocesses=auto --maxprocesses=4 \
  -m "not (slow or pytorch or tensorflow or jax or mxnet or onnxruntime or integration or slurm)" tests
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# one smoke run per installed tool; the tool list and the task come from the harness
"$py" - "$out" <<'PY'
import importlib.util
import subprocess
import sys

from harness.plugins import PluginManager

out = sys.argv[1]
failed = []
for name, info in sorted(PluginManager().backends.items()):
    missing = [m for m in info.requires if importlib.util.find_spec(m) is None]
    if missing:
        print(f"fast: {name}: not installed here (no {', '.join(missing)})")
        continue
    task = "train" if "train" in info.tasks else "inference"
    command = [
        sys.executable, "-m", "harness", "--tool", name, "--task", task, "--model", "lenet",
        "--dataset", "mnist", "--synthetic", "--batch-size", "8", "--warmup-steps", "1",
        "--steps", "2", "--repeats", "1", "--idle-baseline", "0", "--output-dir", out,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    print(f"fast: {name} {task}: {'ok' if done.returncode == 0 else 'FAILED'}")
    if done.returncode:
        failed.append(name)
        print(done.stderr[-2000:], file=sys.stderr)
sys.exit(1 if failed else 0)
PY
echo "fast: done in $(( $(date +%s) - started )) s"
