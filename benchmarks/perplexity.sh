#!/usr/bin/env bash
# Perplexity of SVD and the paper's autoencoder (fast preset) against uncompressed and int-k, input
# scope, on a prefix of WikiText-2 raw test (see benchmarks/perplexity.md for why not all of it).
# Regenerate: bash benchmarks/perplexity.sh   (resumes if interrupted)
set -euo pipefail
cd "$(dirname "$0")/.."
EC=.venv/bin/embcompress
$EC sweep --models smollm2-135m --methods "svd;autoencoder-fast;int:bits=4;int:bits=2" --ratios 2.5,5,10 \
  --max-tokens 32768 --out benchmarks/results/perplexity-smollm2.jsonl --plot benchmarks/results/perplexity-smollm2.png
$EC sweep --models gemma3-270m --methods "svd;autoencoder-fast;int:bits=4" --ratios 2.5,5,10 \
  --max-tokens 4096 --out benchmarks/results/perplexity-gemma3.jsonl --plot benchmarks/results/perplexity-gemma3.png
