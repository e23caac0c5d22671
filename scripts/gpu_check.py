"""GPU paths in one short run (CI has no GPU): fit on the GPU, save, then load with ``load_compressed``
and with transformers' ``from_pretrained(device_map="cuda")``; logits must agree with the model in memory.

    PYTHONPATH=src python3 scripts/gpu_check.py
"""

import sys
import tempfile
import time

import torch
import transformers as tf

from embcompress import compress_model, load_compressed, make_config, save_compressed  # registers the quantizer too

CASES = [("svd", dict(rank=16), "tied"), ("autoencoder-fast", dict(rank=16, progress=False), "input"),
         ("int", dict(bits=4, group_size=32), "tied"), ("tiered", dict(ratio=6, tiers="4:32,2:32,0"), "tied"),
         ("hybrid", dict(rank=8, bits=2), "input"), ("gguf", dict(qtype="Q4_0"), "input")]


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU here")
        return 1
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, transformers {tf.__version__}")
    failures = 0
    for method, options, scope in CASES:
        torch.manual_seed(0)
        config = tf.LlamaConfig(vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                tie_word_embeddings=True)
        model = tf.LlamaForCausalLM(config).eval().cuda()
        ids = torch.randint(3, 4096, (2, 32), device="cuda")
        t0 = time.perf_counter()
        try:
            compress_model(model, make_config(method, **options), scope=scope)
        except Exception as e:  # e.g. a method that needs a package the image lacks
            print(f"{method:18s} {scope:5s} fit FAILED: {type(e).__name__}: {e}")
            failures += 1
            continue
        fit = time.perf_counter() - t0
        device = {t.device.type for t in model.get_input_embeddings().state_dict().values()}
        with torch.no_grad():
            expected = model(input_ids=ids).logits
        with tempfile.TemporaryDirectory() as tmp:
            save_compressed(model, f"{tmp}/c")
            with torch.no_grad():
                ours = load_compressed(f"{tmp}/c", device="cuda")(input_ids=ids).logits
                hf = tf.AutoModelForCausalLM.from_pretrained(f"{tmp}/c", device_map="cuda")(input_ids=ids).logits
        d1, d2 = (ours - expected).abs().max().item(), (hf - expected).abs().max().item()
        ok = d1 == 0 and d2 <= 1e-5
        failures += not ok
        print(f"{method:18s} {scope:5s} fit {fit:6.2f} s on {device}  load_compressed max|Δ| {d1:.2e}  "
              f"from_pretrained(cuda) max|Δ| {d2:.2e}  {'ok' if ok else 'MISMATCH'}")
    failures += not check_distill()
    print(f"{len(CASES) + 1 - failures} passed, {failures} failed")
    return 1 if failures else 0


def check_distill(device: str = "cuda") -> bool:
    """Distillation on the GPU (an encoder: final hidden states matched): minilm-l6 with int2 (groups of 32; no
    faiss needed, which the GPU image lacks), 40 steps on SQuAD dev contexts; the held-out distance must not rise
    and every tuned tensor must stay on the GPU."""
    import copy

    from embcompress.calibration import calibration_text
    from embcompress.distill import DistillConfig, distill
    from embcompress.models import load_model

    try:
        teacher, tok = load_model("minilm-l6", device=device)
        text = calibration_text("squad-contexts")
    except Exception as e:  # the weights package or the data folder is not on this machine
        print(f"distill            input not run: {e}")
        return True
    student = copy.deepcopy(teacher)
    compress_model(student, make_config("int", bits=2, group_size=32))
    t0 = time.perf_counter()
    report = distill(student, teacher, tok, text, DistillConfig(steps=40, tokens=65536, progress=False))
    devices = {t.device.type for t in student.get_input_embeddings().state_dict().values()}
    ok = report["steps"] > 0 and report["held_out_best"] <= report["held_out_start"] and devices == {device}
    print(f"distill            input {time.perf_counter() - t0:6.2f} s on {devices}  held-out "
          f"{report['held_out_start']:.4f} -> {report['held_out_best']:.4f}  {'ok' if ok else 'FAILED'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
