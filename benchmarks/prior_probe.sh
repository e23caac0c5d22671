#!/usr/bin/env bash
# How much of the data-free token-id prior to mix into calibration counts (tiered `prior`), and which PQ
# tiers, chosen on validation text of a third kind: GLUE SST-2 and MRPC training sentences (first 4096
# tokens each), counts from SQuAD dev contexts. Never the reported WikiText-2 test.
# Regenerate: bash benchmarks/prior_probe.sh [MODEL]   (resumable; results in benchmarks/results/prior-probe-*.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-smollm2-135m}
EC=.venv/bin/embcompress
PQ_TIERS=("8:32,4:32,3:32,3:64,pq4,pq8,0" "8:32,4:32,3:32,3:64,2:32,pq4,2:64,pq8,1:64,0" "8:32,4:32,pq4,pq8,0"
          "8:32,4:32,pq3,pq4,pq6,pq8,0" "4:32,pq2,pq4,pq8,0")
METHODS="tiered-rank1:importance=calibration,prior=0;tiered-rank1:importance=calibration,prior=0.5;tiered-rank1"
for t in "${PQ_TIERS[@]}"; do METHODS+=";tiered-rank1:importance=calibration,prior=0.5,tiers=$t"; done
for text in sst2-train mrpc-train; do
  out=benchmarks/results/prior-probe-$MODEL-$text.jsonl
  $EC sweep --models "$MODEL" --methods "$METHODS;tiered-rank1:importance=calibration,prior=0.25" --ratios 8 \
    --text $text --max-tokens 4096 --calibration squad-contexts --out "$out" > /dev/null
  $EC sweep --models "$MODEL" --methods "$METHODS" --ratios 16 \
    --text $text --max-tokens 4096 --calibration squad-contexts --out "$out"
done
