#!/usr/bin/env bash
# minilm-l6 at >= 16x on validation pairs: zero-shot STS-B on the first 2000 pairs of the STS-B *training*
# split (stsb-train); the reported number is the dev split, never used here.
# Regenerate: bash benchmarks/minilm_probe.sh   (resumable; benchmarks/results/minilm-probe.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/embcompress sweep --models minilm-l6 --evals sts --text stsb-train --ratios 16 \
  --methods "pq:sub_dim=8;pq:sub_dim=12;mixed;mixed:cold_sub_dim=12;mixed:cold_sub_dim=12,hot_bits=4" \
  --out benchmarks/results/minilm-probe.jsonl
