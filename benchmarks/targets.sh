#!/usr/bin/env bash
# Issue 5 targets that are cheap to measure on this CPU: minilm-l6 zero-shot STS-B across methods,
# and the tied scope (input embedding and output head both compressed) on SmolLM2.
# Regenerate: bash benchmarks/targets.sh   (resumable; tables printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
EC=.venv/bin/embcompress
R=benchmarks/results
$EC sweep --models minilm-l6 --evals sts --methods "int:bits=4;int:bits=3;int:bits=2;tiered;mixed" --ratios 8,16 \
  --out $R/targets-minilm-sts.jsonl --plot $R/targets-minilm-sts.png
$EC sweep --models smollm2-135m --scope tied --methods "int:bits=4;int:bits=3" --max-tokens 8192 \
  --out $R/targets-smollm2-tied.jsonl --plot $R/targets-smollm2-tied.png
