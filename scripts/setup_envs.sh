#!/usr/bin/env bash
# Create one virtual environment per framework under .venvs/<tool>, each with the
# harness installed (editable) and the framework at the version CI tests. The harness
# finds these interpreters by itself, so one command can sweep over every tool.
#
#   bash scripts/setup_envs.sh                 # pytorch tensorflow jax mxnet
#   bash scripts/setup_envs.sh pytorch mxnet   # only these
#
# On a GPU machine set HARNESS_GPU=1 to get the CUDA builds (torch and jax[cuda12]).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(pytorch tensorflow jax mxnet)

framework_packages() {
  local gpu=${HARNESS_GPU:-0}
  case "$1" in
    pytorch) echo "torch==2.13.0" ;;
    tensorflow) if [ "$gpu" = 1 ]; then echo "tensorflow[and-cuda]==2.21.0"; else echo "tensorflow-cpu==2.21.0"; fi ;;
    jax) if [ "$gpu" = 1 ]; then echo "jax[cuda12]==0.10.2 flax==0.12.8 optax"; else echo "jax==0.10.2 flax==0.12.8 optax"; fi ;;
    mxnet) if [ "$gpu" = 1 ]; then echo "mxnet-cu112==1.9.1 numpy<1.24"; else echo "mxnet==1.9.1 numpy<1.24"; fi ;;
    *) echo "unknown tool '$1'; choose from: pytorch tensorflow jax mxnet" >&2; return 2 ;;
  esac
}

for tool in "${tools[@]}"; do
  packages=$(framework_packages "$tool")
  echo "== .venvs/$tool: $packages"
  "$PYTHON" -m venv ".venvs/$tool"
  # shellcheck disable=SC2086  # package list is meant to split
  ".venvs/$tool/bin/pip" install -q $packages pillow
  ".venvs/$tool/bin/pip" install -q -e .
  ".venvs/$tool/bin/python" -m harness list >/dev/null
done
echo "ready: ${tools[*]} (the harness finds .venvs/<tool>/bin/python automatically)"
