"""Quick distillation check on SmolLM2-135M: does the held-out KL (last 4 windows of the calibration
text) fall within a few steps? Calibration/distillation text: the first 200,000 characters of SQuAD dev
articles 0-23 (squad-calib); 2 windows of 128 tokens a step. Validation text only, never WikiText-2.

Regenerate: .venv/bin/python benchmarks/distill_quick.py METHOD SCOPE LR STEPS   (one line; ~30 s a run)
METHOD is one of int (bits=2), svd (rank 64), tiered, tiered-pq (ratio 8), pq (sub_dim 8).
"""

import copy
import sys
import time

from embcompress import compress_model, make_config
from embcompress.calibration import calibration_text
from embcompress.distill import DistillConfig, distill
from embcompress.models import load_model

OPTIONS = {"int": {"bits": 2}, "svd": {"rank": 64}, "tiered-pq": {"ratio": 8}, "tiered": {"ratio": 8},
           "pq": {"sub_dim": 8}}


def main():
    method, scope, lr, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    teacher, tok = load_model("smollm2-135m", device="cpu")
    calib = calibration_text("squad-calib", evaluation_texts=("squad-val",))[:200000]
    student = copy.deepcopy(teacher)
    compress_model(student, make_config(method, **OPTIONS[method]), scope=scope)
    t0 = time.time()
    r = distill(student, teacher, tok, calib, DistillConfig(steps=steps, batch_size=2, seq_len=128, held_out=4,
                                                            eval_every=2, lr=lr,
                                                            progress=False))
    print(f"{method} {scope} lr {lr} steps {steps}: held-out KL {r['held_out_start']:.4f} -> {r['held_out_best']:.4f} "
          f"(best step {r['best_step']}), {r['values']:,} values in {r['tensors']} tensors, {time.time() - t0:.0f} s; "
          f"held-out by step {r['held_out']}")


if __name__ == "__main__":
    main()
