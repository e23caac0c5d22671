"""Does a low-noise distillation direction generalise? The KL gradient of tiered-pq 8x (calibrated, prior
0.5) is accumulated over WINDOWS windows of 256 tokens of squad-calib (SQuAD dev articles 0-23), then each
tensor is moved by alpha x its norm along its normalised gradient, and the KL to the uncompressed model is
measured on the first 4096 tokens of squad-val (articles 24-47), validation text only. Never WikiText-2.
Regenerate: .venv/bin/python benchmarks/distill_direction.py WINDOWS [METHOD [RATIO [SCOPE]]]
"""

import copy, sys, time, torch
from embcompress import compress_model, make_config
from embcompress.calibration import calibration_text, token_counts
from embcompress.distill import DistillConfig, continuous_parameters, compressed_modules, calibration_windows, _outputs, distance
from embcompress.evaluate.perplexity import causal_perplexity
from embcompress.models import load_model
from embcompress.texts import read_text

n_windows = int(sys.argv[1])
method = sys.argv[2] if len(sys.argv) > 2 else "tiered-pq"
ratio = float(sys.argv[3]) if len(sys.argv) > 3 else 8.0
scope = sys.argv[4] if len(sys.argv) > 4 else "input"
teacher, tok = load_model("smollm2-135m", device="cpu")
calib = calibration_text("squad-calib", evaluation_texts=("squad-val", "wikitext2-test"))
valid = read_text("squad-val")
counts = token_counts(tok, calib, teacher.get_input_embeddings().num_embeddings)
student = copy.deepcopy(teacher)
for p in student.parameters():
    p.requires_grad_(False)
opts = {"importance": "calibration", "prior": 0.5} if method.startswith("tiered") else {}
compress_model(student, make_config(method, ratio=ratio, **opts), scope=scope, row_weights=counts)
w = calibration_windows(tok, calib, DistillConfig(seq_len=256))
pick = torch.randperm(len(w), generator=torch.Generator().manual_seed(0))[:n_windows]
t0 = time.perf_counter()
with continuous_parameters(compressed_modules(student)) as tuned:
    params = [p for p, _ in tuned]
    for i in range(0, n_windows, 4):
        batch = w[pick[i:i + 4]]
        with torch.no_grad():
            tgt = _outputs(teacher, batch)
        loss = distance(tgt, _outputs(student, batch), True).mean() * len(batch) / n_windows
        loss.backward()
    print(f"{n_windows} windows of gradient in {time.perf_counter() - t0:.0f} s", flush=True)
    start = [p.detach().clone() for p in params]
    for alpha in (0.0, 0.0003, 0.001, 0.003, 0.01):
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
                if p.grad is not None:
                    p.sub_(alpha * p.grad / (p.grad.norm() + 1e-20) * s.norm())
        r = causal_perplexity(student, tok, valid, max_tokens=4096, progress=False, reference=teacher)
        print(f"{method} {ratio}x {scope} alpha {alpha}: squad-val ppl {r.perplexity:.3f} KL {r.kl_mean:.5f} top-1 {r.top1_agreement:.2f}", flush=True)
