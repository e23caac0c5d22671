#!/usr/bin/env bash
# Issue 5 report: every method across compression ratios 2-32 (bytes against fp16), one line per method,
# for minilm-l6 (zero-shot STS-B), smollm2-135m and gemma3-270m (WikiText-2 raw test prefix perplexity),
# input scope. Calibration counts (methods with importance=calibration, and PQ's k-means weights) come
# from SQuAD v1.1 dev contexts, never from the evaluation text.
# Regenerate: bash benchmarks/pareto.sh [MODEL ...]   (resumable; writes benchmarks/pareto.md)
set -euo pipefail
cd "$(dirname "$0")/.."
EC=.venv/bin/embcompress
R=benchmarks/results
RATIO_METHODS="svd;autoencoder-fast;autoencoder-leaky;tiered-rank1:importance=calibration;mixed"
FIXED_METHODS="int:bits=8;int:bits=4;int:bits=3;int:bits=2;int:bits=1;gguf:qtype=Q8_0;gguf:qtype=Q4_0"
FIXED_METHODS="$FIXED_METHODS;pq:sub_dim=2;pq:sub_dim=4;pq:sub_dim=8;pq:sub_dim=16;hybrid:rank=4,bits=2;hybrid:rank=1,bits=4"
MODELS=("${@:-minilm-l6 smollm2-135m gemma3-270m}")
for model in ${MODELS[@]}; do
  case $model in
    minilm-l6) extra=(--evals sts) ;;
    smollm2-135m) extra=(--max-tokens 8192) ;;
    *) extra=(--max-tokens 4096) ;;
  esac
  $EC sweep --models "$model" --methods "$RATIO_METHODS;$FIXED_METHODS" --ratios 2,4,8,16,32 "${extra[@]}" \
    --calibration squad-contexts --out "$R/pareto-$model.jsonl" --plot "$R/pareto-$model.png" > /dev/null
done
{
  echo "# Quality against bytes: every method, ratios 2-32"
  echo
  echo "Command: \`bash benchmarks/pareto.sh\`. Machine: $(.venv/bin/python -c 'from embcompress.sweep import machine; print(machine())')."
  echo "Input scope. minilm-l6: zero-shot STS-B dev Spearman x100; smollm2-135m: perplexity on the first 8192"
  echo "WikiText-2 raw test tokens; gemma3-270m: the first 4096. The x axis of the plots is bytes against fp16."
  for model in minilm-l6 smollm2-135m gemma3-270m; do
    [ -f "$R/pareto-$model.jsonl" ] || continue
    echo
    echo "## $model"
    echo
    $EC report "$R/pareto-$model.jsonl" --plot "$R/pareto-$model.png" | sed '/^plot:/d'
    echo
    echo "![$model](results/pareto-$model.png)"
  done
} > benchmarks/.pareto.md.tmp
mv benchmarks/.pareto.md.tmp benchmarks/pareto.md
