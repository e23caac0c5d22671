#!/usr/bin/env bash
# Issue 5 targets that are cheap to measure on this CPU: minilm-l6 zero-shot STS-B across methods,
# and the tied scope (input embedding and output head both compressed) on SmolLM2.
# Regenerate: bash benchmarks/targets.sh   (resumable; writes benchmarks/targets.md)
set -euo pipefail
cd "$(dirname "$0")/.."
EC=.venv/bin/embcompress
R=benchmarks/results
$EC sweep --models minilm-l6 --evals sts --methods "int:bits=4;int:bits=3;int:bits=2;tiered;mixed" --ratios 8,16 \
  --out $R/targets-minilm-sts.jsonl --plot $R/targets-minilm-sts.png > /dev/null
$EC sweep --models smollm2-135m --scope tied --methods "int:bits=4;int:bits=3" --max-tokens 8192 \
  --out $R/targets-smollm2-tied.jsonl --plot $R/targets-smollm2-tied.png > /dev/null
{
  echo "# Issue 5 targets: sentence-encoder STS-B and the tied scope"
  echo
  echo "Command: \`bash benchmarks/targets.sh\`. Machine: $(.venv/bin/python -c 'from embcompress.sweep import machine; print(machine())')."
  echo "tiered and mixed use the data-free token-id importance here (no calibration text)."
  echo
  echo "## minilm-l6, zero-shot STS-B dev Spearman ×100 (targets: ≥ 86.2 at ≥ 8×, ≥ 85.5 at ≥ 16×)"
  echo
  $EC report $R/targets-minilm-sts.jsonl --plot $R/targets-minilm-sts.png | sed '/^plot:/d'
  echo
  echo "## smollm2-135m, tied scope (input and output head compressed), first 8192 WikiText-2 test tokens (target ≤ +5 % at ≥ 4×)"
  echo
  $EC report $R/targets-smollm2-tied.jsonl --plot $R/targets-smollm2-tied.png | sed '/^plot:/d'
} > benchmarks/.targets.md.tmp
mv benchmarks/.targets.md.tmp benchmarks/targets.md
