"""Distillation on SmolLM2-135M, chosen on validation text only: calibration and distillation text
SQuAD v1.1 dev articles 0-23 (squad-calib), perplexity and closeness on the first 4096 tokens of
articles 24-47 (squad-val). Never WikiText-2.

Regenerate: .venv/bin/python benchmarks/distill_probe.py METHOD RATIO [key=value ...]   (one line per run;
d_KEY=VALUE sets a distillation option, e.g. d_steps=40 d_lr=0.0005)
"""

import copy
import sys
import time

from embcompress import compress_model, make_config
from embcompress.calibration import calibration_text, token_counts
from embcompress.distill import DistillConfig, distill
from embcompress.evaluate.perplexity import causal_perplexity
from embcompress.methods import parse_option
from embcompress.models import load_model
from embcompress.texts import read_text


def main():
    method, ratio, *opts = sys.argv[1:]
    options = dict(parse_option(o) for o in opts)
    distill_options = {k[2:]: v for k, v in options.items() if k.startswith("d_")}
    method_options = {k: v for k, v in options.items() if not k.startswith("d_")}
    teacher, tok = load_model("smollm2-135m", device="cpu")
    calib = calibration_text("squad-calib", evaluation_texts=("squad-val", "wikitext2-test"))
    valid = read_text("squad-val")
    counts = token_counts(tok, calib, teacher.get_input_embeddings().num_embeddings)
    student = copy.deepcopy(teacher)
    config = make_config(method, ratio=float(ratio), **method_options)
    compress_model(student, config, scope="input", row_weights=counts)
    ev = lambda: causal_perplexity(student, tok, valid, max_tokens=4096, progress=False, reference=teacher)
    before = ev()
    t0 = time.perf_counter()
    report = distill(student, teacher, tok, calib, DistillConfig(progress=False, **distill_options))
    after = ev()
    base = causal_perplexity(teacher, tok, valid, max_tokens=4096, progress=False).perplexity
    print(f"{method} ratio {ratio} {method_options} distill {distill_options}: squad-val perplexity {before.perplexity:.3f} "
          f"({(before.perplexity / base - 1) * 100:+.2f} %) -> {after.perplexity:.3f} ({(after.perplexity / base - 1) * 100:+.2f} %); "
          f"KL {before.kl_mean:.4f} -> {after.kl_mean:.4f}; top-1 {before.top1_agreement:.2f} -> {after.top1_agreement:.2f}; "
          f"held-out calib {report.get('held_out_start', 0):.4f} -> {report.get('held_out_best', 0):.4f} "
          f"(best step {report.get('best_step')}); {time.perf_counter() - t0:.0f} s; held-out by step {report.get('held_out')}", flush=True)


if __name__ == "__main__":
    main()
