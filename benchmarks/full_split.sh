#!/usr/bin/env bash
# Issue 3: the paper's central comparison on the FULL WikiText-2 raw test split — uncompressed, SVD and
# the paper's autoencoder (fast preset) at CR 2.5, 5, 10, input scope — for SmolLM2-135M and Gemma-3-270M.
# Windows of 2048 tokens with stride 2047 (each token scored once, with up to 2047 tokens of context).
# About 15 min a cell for SmolLM2 (310-350 tokens/s) and 35-50 min for Gemma-3 (130-145 tokens/s) on this
# 2-core CPU: about 6.5 h in all. It resumes
# where it stopped (finished cells are kept in the JSONL), so it can be run in pieces.
# Regenerate: bash benchmarks/full_split.sh [MODEL ...]   (writes benchmarks/full_split.md)
# REPORT_ONLY=1 bash benchmarks/full_split.sh   writes the markdown from the cells finished so far.
set -euo pipefail
cd "$(dirname "$0")/.."
EC=.venv/bin/embcompress
R=benchmarks/results
[ -n "${REPORT_ONLY:-}" ] && set -- none
for model in ${@:-smollm2-135m gemma3-270m}; do
  [ "$model" = none ] && continue
  $EC sweep --models "$model" --methods "svd;autoencoder-fast" --ratios 2.5,5,10 --max-tokens 0 \
    --window 2048 --stride 2047 --out "$R/full-$model.jsonl" --plot "$R/full-$model.png" > /dev/null
  # issue 14: the project's best 8x recipe (distillation does not help in input scope: distill_targets.md),
  # calibrated on SQuAD dev contexts, with KL and top-1 agreement to the uncompressed model (twice the time)
  $EC sweep --models "$model" --methods "tiered-pq:importance=calibration,prior=0.5" --ratios 8 --max-tokens 0 \
    --calibration squad-contexts --window 2048 --stride 2047 --out "$R/full-$model.jsonl" \
    --plot "$R/full-$model.png" > /dev/null
done
{
  echo "# Perplexity on the full WikiText-2 raw test split"
  echo
  echo "Command: \`bash benchmarks/full_split.sh\` (resumable). Machine: $(.venv/bin/python -c 'from embcompress.sweep import machine; print(machine())')."
  echo "Window 2048, stride 2047, BOS per tokenizer, input scope (the output head keeps the original matrix)."
  echo "Prefix numbers for more methods: [perplexity.md](perplexity.md), [pareto.md](pareto.md)."
  echo
  cat <<'FINDINGS'
**Findings** (the paper's 14 cells complete: about 2 h of this CPU for SmolLM2 and 4.5 h for Gemma-3).
- The paper's claim holds in relative terms on SmolLM2: its autoencoder (fast preset) beats SVD at every
  ratio on the whole split, by 35 % lower perplexity at CR 2.5 (3047 against 4720), 15 % at CR 5 (6705
  against 7845) and 9 % at CR 10 (10,706 against 11,775). The advantage shrinks as the ratio grows.
- On Gemma-3 it does not hold at the lowest ratio: at CR 2.5 the autoencoder is 16 % *worse* than SVD
  (2592 against 2242); it wins narrowly at CR 5 (6142 against 6319, 3 %) and at CR 10 (8361 against
  9223, 9 %). Autoencoder over SVD: 1.16 / 0.97 / 0.91 on Gemma-3, 0.65 / 0.85 / 0.91 on SmolLM2.
- In absolute terms both destroy both models: perplexity rises from 21.8 (SmolLM2) and 17.4 (Gemma-3)
  to 130–540 times that. Any rank-k reconstruction of these embeddings does (see [pareto.md](pareto.md)
  for the methods that do not).
- The SmolLM2 prefix of [perplexity.md](perplexity.md) (32,768 tokens, 1024-token windows) ranks the
  methods as the full split does (autoencoder over SVD 0.68 / 0.87 / 0.91 there). The Gemma-3 prefix
  (4,096 tokens) does not: it gave 0.84 / 0.84 / 0.75 and so reversed the CR 2.5 ranking. A few
  thousand tokens are too few to rank two methods whose perplexities are both in the thousands.
- The project's best 8x recipe (issue 14: `tiered-pq`, calibrated on SQuAD dev contexts, input scope) on the
  whole split: SmolLM2 21.82 -> 24.15 (+10.7 %, mean KL 0.110, top-1 agreement 87.4 %; the 8192-token prefix
  of distill_targets.md said +8.4 %), at 8x fewer embedding bytes, where SVD and the autoencoder at 1.25-5x
  fewer bytes multiply perplexity by 140-540. Gemma-3: 17.39 -> 18.25 (+4.9 %, mean KL 0.052, top-1 agreement
  91.0 %, 74 min here; the 8192-token prefix said +4.3 %). On both models the whole split costs more than the
  prefix showed (+10.7 against +8.4, +4.9 against +4.3): the prefix flattered this recipe by about a fifth.
FINDINGS
  for model in smollm2-135m gemma3-270m; do
    echo
    echo "## $model"
    echo
    if [ -f "$R/full-$model.jsonl" ]; then
      echo "$(wc -l < "$R/full-$model.jsonl") of 8 cells measured."
      echo
      $EC report "$R/full-$model.jsonl" --plot "$R/full-$model.png" | sed '/^plot:/d'
      echo
      echo "![$model](results/full-$model.png)"
      echo
      .venv/bin/python - "$R/full-$model.jsonl" <<'PY'
import json, sys
cells = [json.loads(line) for line in open(sys.argv[1])]
label = lambda c: c["method"] + (f" CR {c['ratio_target']:g}" if c["ratio_target"] else "")
print("Tokens scored and time a cell: " + "; ".join(
    f"{label(c)} {c['details']['tokens_scored']:,} in {c['details']['seconds']:.0f} s" for c in cells) + ".")
PY
    else
      echo "Not measured yet: \`bash benchmarks/full_split.sh $model\`."
    fi
  done
} > benchmarks/.full_split.md.tmp
mv benchmarks/.full_split.md.tmp benchmarks/full_split.md
