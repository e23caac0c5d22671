#!/usr/bin/env bash
# Issue 5 targets on the reported texts (WikiText-2 raw test; STS-B dev), for the methods the
# validation text pointed to (benchmarks/quality_per_byte.md) and the earlier ones. Calibration counts
# come from SQuAD v1.1 dev contexts (--calibration squad-contexts), never from the evaluation text.
# Regenerate: bash benchmarks/targets.sh   (resumable; writes benchmarks/targets.md)
set -euo pipefail
cd "$(dirname "$0")/.."
EC=.venv/bin/embcompress
R=benchmarks/results
CAL="--calibration squad-contexts"
BEST="tiered-rank1:importance=calibration"
# half the data-free prior mixed into the counts (chosen on SST-2/MRPC text: benchmarks/prior_probe.sh)
ROBUST="tiered-rank1:importance=calibration,prior=0.5"
# shape-gain PQ tiers in place of int2/int1 (chosen on SST-2/MRPC text, prior_probe.sh)
PQT="tiered-pq:importance=calibration,prior=0.5"
# minilm-l6, zero-shot STS-B
$EC sweep --models minilm-l6 --evals sts --methods "int:bits=4;int:bits=3;int:bits=2;tiered;mixed" --ratios 8,16 \
  --out $R/targets-minilm-sts.jsonl --plot $R/targets-minilm-sts.png > /dev/null
$EC sweep --models minilm-l6 --evals sts --methods "$BEST;$ROBUST;tiered-rank1;hybrid:rank=4,bits=2;gguf:qtype=Q4_0;pq:sub_dim=8;pq:sub_dim=12;mixed:cold_sub_dim=12" \
  --ratios 8,16 $CAL --out $R/targets-minilm-sts.jsonl --plot $R/targets-minilm-sts.png > /dev/null
# smollm2-135m, input scope, first 8192 WikiText-2 test tokens
$EC sweep --models smollm2-135m --methods "$BEST;$ROBUST;tiered-rank1;hybrid:rank=4,bits=2;int:bits=2;gguf:qtype=Q4_0;gguf:qtype=Q8_0;$PQT" \
  --ratios 8,16 --max-tokens 8192 $CAL --out $R/targets-smollm2-input.jsonl --plot $R/targets-smollm2-input.png > /dev/null
# smollm2-135m, tied scope (input and output head compressed)
$EC sweep --models smollm2-135m --scope tied --methods "int:bits=4;int:bits=3;hybrid:rank=1,bits=4;$BEST;$ROBUST;$PQT" --ratios 4 \
  --max-tokens 8192 $CAL --out $R/targets-smollm2-tied.jsonl --plot $R/targets-smollm2-tied.png > /dev/null
# gemma3-270m, input scope, first 4096 WikiText-2 test tokens
$EC sweep --models gemma3-270m --methods "$BEST;$ROBUST;hybrid:rank=4,bits=2;int:bits=4;int:bits=2;$PQT" \
  --ratios 8,16 --max-tokens 4096 $CAL --out $R/targets-gemma3-input.jsonl --plot $R/targets-gemma3-input.png > /dev/null
# gemma3-270m, tied scope
$EC sweep --models gemma3-270m --scope tied --methods "int:bits=4;$BEST;$ROBUST;$PQT" --ratios 4 \
  --max-tokens 4096 $CAL --out $R/targets-gemma3-tied.jsonl --plot $R/targets-gemma3-tied.png > /dev/null
section() {  # title, results name
  echo
  echo "## $1"
  echo
  $EC report $R/targets-$2.jsonl --plot $R/targets-$2.png | sed '/^plot:/d'
}
{
  echo "# Issue 5 targets on the reported texts"
  echo
  echo "Command: \`bash benchmarks/targets.sh\`. Machine: $(.venv/bin/python -c 'from embcompress.sweep import machine; print(machine())')."
  echo "Methods with \`importance=calibration\` count tokens in SQuAD v1.1 dev contexts (never the evaluation"
  echo "text); the others use no data. \`tiered-rank1\` = tiers 8:32,4:32,3:32,3:64,2:32,2:64,1:32,1:64,0 over a"
  echo "rank-1 SVD part, chosen on the validation text ([quality_per_byte.md](quality_per_byte.md)), plus an 8-bit"
  echo "tier the allocation uses when the output head reads the matrix (tied scope). \`tiered-pq\` = tiers"
  echo "8:32,4:32,3:32,3:64,pq4,pq8,0 over the same rank-1 part (shape-gain PQ rows at 2 and 1 bits a value),"
  echo "chosen on SmolLM2 with SST-2/MRPC text ([quality_per_byte.md](quality_per_byte.md)) and used unchanged on Gemma-3."
  echo
  cat <<'STATUS'
## Status

| target | best on the reported text | met |
| --- | --- | --- |
| smollm2-135m ≥ 8×, ≤ +3 % | `tiered-pq` calibrated, prior 0.5, 8×: +8.5 % (`tiered-rank1`: +11.9 %) | no |
| smollm2-135m ≥ 16×, ≤ +10 % | `tiered-pq` calibrated, prior 0.5, 16×: +86.0 % | no |
| gemma3-270m ≥ 8×, ≤ +5 % | `tiered-pq` calibrated, prior 0.5, 8×: +4.9 % (+5.0 % in pareto.md, run on two threads instead of one; `tiered-rank1` +4.96 %; narrow passes on 4096 tokens) | yes |
| gemma3-270m ≥ 16×, ≤ +15 % | `tiered-pq` calibrated, prior 0.5, 16×: +13.9 % (`tiered-rank1`: +24.9 %) | yes |
| minilm-l6 ≥ 8×, ≥ 86.2 | `mixed` 8×: 86.51 (shape-gain `pq` 8 values a byte, 13.6×: 86.36) | yes |
| minilm-l6 ≥ 16×, ≥ 85.5 | `mixed:cold_sub_dim=12` 16×: 85.74 (chosen on STS-B train, [minilm_probe.sh](minilm_probe.sh)) | yes |
| smollm2-135m tied ≥ 4×, ≤ +5 % | `tiered-rank1` calibrated, prior 0.5, 4×: +4.3 % (`tiered-pq` +4.9 %) | yes |
| gemma3-270m tied ≥ 4×, ≤ +5 % | `tiered-pq` calibrated, prior 0.5, 4×: +2.1 % (`tiered-rank1` +2.8 %) | yes |

Calibration counts alone (prior 0) did worse on every LM row here than on the validation text
(SmolLM2 8×: +15.6 % against +6.3 %): WikiText-2's own tokens (" @", " \n", " )") are missing from
SQuAD contexts. `prior=0.5` was chosen on SST-2/MRPC text ([prior_probe.sh](prior_probe.sh)), not here.
STATUS
  section "minilm-l6, zero-shot STS-B dev Spearman ×100 (targets: ≥ 86.2 at ≥ 8×, ≥ 85.5 at ≥ 16×)" minilm-sts
  section "smollm2-135m, input scope, first 8192 WikiText-2 test tokens (targets: ≤ +3 % at ≥ 8×, ≤ +10 % at ≥ 16×)" smollm2-input
  section "smollm2-135m, tied scope (input and output head compressed), first 8192 WikiText-2 test tokens (target ≤ +5 % at ≥ 4×)" smollm2-tied
  section "gemma3-270m, input scope, first 4096 WikiText-2 test tokens (targets: ≤ +5 % at ≥ 8×, ≤ +15 % at ≥ 16×)" gemma3-input
  section "gemma3-270m, tied scope, first 4096 WikiText-2 test tokens (target ≤ +5 % at ≥ 4×)" gemma3-tied
} > benchmarks/.targets.md.tmp
mv benchmarks/.targets.md.tmp benchmarks/targets.md
