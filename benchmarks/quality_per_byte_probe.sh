#!/usr/bin/env bash
# Design probe on validation text, never the reported WikiText-2 test: counts from SQuAD v1.1 dev articles
# 0-23 (squad-calib), perplexity on the first 4096 tokens of articles 24-47 (squad-val), SmolLM2-135M.
# Regenerate: bash benchmarks/quality_per_byte_probe.sh   (resumable; benchmarks/results/qpb-probe-*.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
EC=.venv/bin/embcompress
R=benchmarks/results
ARGS=(--models smollm2-135m --text squad-val --max-tokens 4096 --calibration squad-calib)
FINE="4:32,3:32,3:64,2:32,2:64,2:192,1:32,1:64,1:192,0"
ONE="4:32,3:32,2:32,2:64,1:32,1:64,0"
$EC sweep "${ARGS[@]}" --ratios 8 --out $R/qpb-probe-input.jsonl > /dev/null --methods \
  "int:bits=2;int:bits=2,center=true;int:bits=3,center=true;int:bits=2,row_norms=true;hybrid:rank=1,bits=2;hybrid:rank=4,bits=2;mixed;tiered;tiered:center=true;tiered:importance=calibration;tiered:importance=calibration,center=true;tiered:importance=calibration,tiers=$ONE;tiered:tiers=$ONE;tiered:importance=calibration,tiers=$ONE,center=true;tiered:importance=calibration,tiers=$FINE,center=true;tiered:importance=calibration,tiers=8:32,$FINE,center=true;tiered:importance=calibration,tiers=$FINE,center=true,row_norms=true;tiered:importance=calibration,tiers=$FINE,rank=1;tiered:importance=calibration,tiers=$FINE,rank=4;tiered-rank1:importance=calibration"
$EC sweep "${ARGS[@]}" --ratios 16 --out $R/qpb-probe-input.jsonl > /dev/null --methods \
  "tiered:importance=calibration,tiers=$ONE;tiered:importance=calibration,tiers=$FINE,center=true;tiered:importance=calibration,tiers=$FINE,center=true,row_norms=true;tiered:importance=calibration,tiers=$FINE,rank=1;tiered-rank1:importance=calibration"
$EC sweep "${ARGS[@]}" --scope tied --ratios 4 --out $R/qpb-probe-tied.jsonl --methods \
  "int:bits=4;hybrid:rank=1,bits=4;tiered:importance=calibration,tiers=8:32,$FINE,rank=1;tiered-rank1:importance=calibration"
