"""Can distillation fit the batch it sees? Three normalised gradient steps (each tensor moves by lr x its
norm along its gradient) on the same two 128-token windows of squad-calib, SmolLM2-135M, input scope.
Validation text only. Regenerate: .venv/bin/python benchmarks/distill_overfit.py METHOD LR   (METHOD: tiered-pq or int)
"""

import copy, sys, torch
from embcompress import compress_model, make_config
from embcompress.calibration import calibration_text
from embcompress.distill import DistillConfig, continuous_parameters, compressed_modules, calibration_windows, _outputs, distance
from embcompress.models import load_model
teacher, tok = load_model("smollm2-135m", device="cpu")
calib = calibration_text("squad-calib", evaluation_texts=("squad-val",))[:200000]
student = copy.deepcopy(teacher)
for p in student.parameters(): p.requires_grad_(False)
compress_model(student, make_config(sys.argv[1], **({"ratio": 8} if "tiered" in sys.argv[1] else {"bits": 2})), scope="input")
cfg = DistillConfig(seq_len=128)
w = calibration_windows(tok, calib, cfg)
batch = w[:2]
with torch.no_grad(): tgt = _outputs(teacher, batch)
with continuous_parameters(compressed_modules(student)) as tuned:
    params = [p for p, _ in tuned]
    for step in range(3):
        loss = distance(tgt, _outputs(student, batch), True).mean()
        for p in params: p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(float(sys.argv[2]) * p.grad / (p.grad.norm() + 1e-20) * p.norm())
        with torch.no_grad():
            after = distance(tgt, _outputs(student, batch), True).mean().item()
        print(sys.argv[1], step, f"same batch {loss.item():.6f} -> {after:.6f}")
