"""Where is the knee for the output head? (issue 19) ``--scope both`` on the built-in models: the input
embedding at 8× (the project's best recipe) and the output head, untied, at int8 / int6 / int4 (llama.cpp's
practice keeps `output.weight` at Q8_0 or Q6_K) and `tiered-pq` 2× / 4× / 8×, against the dense head
(input scope) and one shared matrix (tied scope), with whole-model bytes.

Text roles: SQuAD v1.1 dev articles 0-23 (squad-calib) give the input's token counts and the head's
predicted-probability mass; articles 24-47 (squad-val) choose between the head's two importances (SmolLM2);
WikiText-2 raw test (first 8192 tokens) and GLUE MRPC test (first 4096) are only reported.

Regenerate: .venv/bin/python benchmarks/untied_head.py [--model smollm2-135m|gemma3-270m ...]
(resumable: rows are kept in benchmarks/results/untied-head-MODEL.jsonl; writes benchmarks/untied_head.md)
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from embcompress import compress_model, load_compressed, make_config, save_compressed
from embcompress.calibration import calibration_text, predicted_mass, token_counts
from embcompress.evaluate.perplexity import CachedReference, causal_perplexity
from embcompress.methods import from_embedding
from embcompress.models import load_model
from embcompress.surgery import CompressedHead, _set_untied, put_input_embedding, size_report
from embcompress.sweep import append_result, machine, read_results
from embcompress.texts import read_text

HERE = Path(__file__).parent
CALIBRATION = "squad-calib"
REPORTED = {"wikitext2-test": 8192, "mrpc-test": 4096}
VALIDATION = {"squad-val": 4096}
BEST = {"importance": "calibration", "prior": 0.5}
INPUT = ("tiered-pq", {**BEST, "ratio": 8.0})
HEADS = [  # (label, method, options, head importance)
    ("int8 (g32)", "int", {"bits": 8}, None),
    ("int6 (g32)", "int", {"bits": 6}, None),
    ("int4 (g32)", "int", {"bits": 4}, None),
    ("tiered-pq 2×", "tiered-pq", {**BEST, "ratio": 2.0}, "predicted"),
    ("tiered-pq 4×", "tiered-pq", {**BEST, "ratio": 4.0}, "predicted"),
    ("tiered-pq 8×", "tiered-pq", {**BEST, "ratio": 8.0}, "predicted"),
]
ABLATION = ("tiered-pq 4×, counts", "tiered-pq", {**BEST, "ratio": 4.0}, "counts")  # SmolLM2 only
# SmolLM2's squad-val cells chose calibration counts over the predicted mass for the head (22.76 vs 22.86 at
# 4×); the other models' head rows use the choice
CHOSEN_HEAD_IMPORTANCE = "counts"


def assemble(base, input_module, head_module):
    """The base model with a fitted input module and (None: dense) an untied compressed head."""
    model = copy.deepcopy(base)
    _set_untied(model)
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    put_input_embedding(model, copy.deepcopy(input_module))
    if head_module is not None:
        model.set_output_embeddings(CompressedHead(head_module, shared=False))
    return model


def evaluate(model, tok, texts, references) -> dict:
    out = {}
    for name, (text, tokens) in texts.items():
        r = causal_perplexity(model, tok, text, max_tokens=tokens, progress=False, reference=references.get(name))
        out[name] = {"perplexity": r.perplexity, "kl_mean": r.kl_mean, "top1_agreement": r.top1_agreement}
    return out


def public_path_check(base, tok, counts, head_weights) -> dict:
    """The user's path end to end on the real model: compress_model(scope both), save, load with
    load_compressed and with transformers; the logits must be identical."""
    import transformers

    model = copy.deepcopy(base)
    compress_model(model, make_config(INPUT[0], **INPUT[1]), scope="both", row_weights=counts,
                   head_config=make_config("int", bits=8), head_row_weights=head_weights)
    ids = torch.tensor([tok("The river flows past the old mill and into the sea.").input_ids])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        with tempfile.TemporaryDirectory() as tmp:
            save_compressed(model, Path(tmp) / "c", tokenizer=tok)
            same = torch.equal(load_compressed(Path(tmp) / "c")(input_ids=ids).logits, expected)
            hf = transformers.AutoModelForCausalLM.from_pretrained(Path(tmp) / "c")
            same_hf = torch.equal(hf(input_ids=ids).logits, expected)
    return {"load_compressed_identical": same, "from_pretrained_identical": same_hf,
            "input_module": model.get_input_embeddings()}


def run_model(name: str, out: Path) -> None:
    done = {r["label"] for r in read_results(out)}
    base, tok = load_model(name, device="cpu")
    base.eval()
    # the choice between head importances is made on SmolLM2's validation cells; Gemma reports only
    texts = {t: (read_text(t), n) for t, n in {**REPORTED, **(VALIDATION if name == "smollm2-135m" else {})}.items()}
    calib = calibration_text(CALIBRATION, evaluation_texts=tuple(texts))
    vocab = base.get_input_embeddings().num_embeddings
    counts = token_counts(tok, calib, vocab)
    t0 = time.perf_counter()
    mass = predicted_mass(base, tok, calib)
    mass_seconds = time.perf_counter() - t0
    references = {t: CachedReference(base, max_bytes=(3 << 30) // len(texts)) for t in texts}  # ≤ 3 GB in all
    before = size_report(base)
    dense_fp16 = vocab * base.get_input_embeddings().embedding_dim * 2

    def record(label, model, extra=None, seconds=0.0):
        sizes = size_report(model)
        row = {"label": label, "model": name, "sizes": sizes, "before": before, "dense_fp16": dense_fp16,
               "eval": evaluate(model, tok, texts, references), "seconds": round(seconds, 1),
               "machine": machine(), **(extra or {})}
        append_result(out, row)
        print(json.dumps({"label": label, **{t: round(e["perplexity"], 3) for t, e in row["eval"].items()}}), flush=True)

    if "uncompressed" not in done:
        record("uncompressed", base)
    t0 = time.perf_counter()
    check = public_path_check(base, tok, counts, mass)
    input_module = check.pop("input_module")
    fit_seconds = time.perf_counter() - t0
    if "head dense (input scope)" not in done:
        record("head dense (input scope)", assemble(base, input_module, None), {"check": check,
               "input_fit_seconds": round(fit_seconds, 1), "mass_seconds": round(mass_seconds, 1)})
    heads = HEADS + ([ABLATION] if name == "smollm2-135m" else [])
    dense_head = base.get_output_embeddings()
    for label, method, options, importance in heads:
        label = f"head {label}"
        if label in done:
            continue
        t0 = time.perf_counter()
        if name != "smollm2-135m" and importance is not None:
            importance = CHOSEN_HEAD_IMPORTANCE
        weights = {"predicted": mass, "counts": counts, None: None}[importance]
        head_module = from_embedding(dense_head, make_config(method, **options), row_weights=weights)
        record(label, assemble(base, input_module, head_module), {"head_importance": importance},
               seconds=time.perf_counter() - t0)
    if "tied scope 8×" not in done:
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        compress_model(model, make_config(INPUT[0], **INPUT[1]), scope="tied", row_weights=counts)
        record("tied scope 8×", model, seconds=time.perf_counter() - t0)


def _cell(e, b) -> list[str]:
    delta = "" if e is b else f"{(e['perplexity'] / b['perplexity'] - 1) * 100:+.1f} %"
    kl = "" if e["kl_mean"] is None else f"{e['kl_mean']:.4f}"
    top1 = "" if e["top1_agreement"] is None else f"{e['top1_agreement']:.1f} %"
    return [f"{e['perplexity']:.3f}", delta, kl, top1]


def page(models: list[str]) -> str:
    lines = ["# Untied output heads: where is the knee? (issue 19)", "",
             "Regenerate: `.venv/bin/python benchmarks/untied_head.py --model smollm2-135m --model gemma3-270m` "
             "(resumable; rows in `benchmarks/results/untied-head-MODEL.jsonl`).", "",
             "`--scope both`: the input embedding at 8× (`tiered-pq`, SQuAD-calibration counts, prior 0.5) and the "
             "output head untied and compressed on its own. Head rows: int-k per group of 32 with searched scales "
             "(llama.cpp keeps `output.weight` at Q8_0/Q6_K, i.e. ~8.5 / 6.6 bits a value) and `tiered-pq` with a "
             "row importance for the head: on SmolLM2 the probability mass the uncompressed model puts on each "
             "token over the calibration text (`predicted_mass`), and, as an ablation at 4×, the calibration "
             "token counts; squad-val chose the counts (22.76 vs 22.86), so Gemma-3's head rows and the CLI use "
             "them. Bytes against fp16; whole-model bytes as embcompress saves "
             "them (the transformer body in fp32, as the built-in models load) and with the body in bf16.", "",
             "Text roles: SQuAD dev articles 0-23 calibrate (counts and predicted mass); articles 24-47 (squad-val) "
             "choose between the two head importances; WikiText-2 raw test (first 8192 tokens) and GLUE MRPC test "
             "(first 4096) are only reported. KL in nats per token and top-1 agreement against the uncompressed "
             "model on the same tokens.", ""]
    for name in models:
        rows = [r for r in read_results(HERE / "results" / f"untied-head-{name}.jsonl")]
        if not rows:
            continue
        base = next(r for r in rows if r["label"] == "uncompressed")
        check = next((r["check"] for r in rows if "check" in r), None)
        lines += [f"## {name}", "", f"Machine: {rows[-1]['machine']}.", ""]
        if check:
            first = next(r for r in rows if "check" in r)
            lines += [f"Public path on the real model (`compress_model(scope='both')`, save, load): logits identical "
                      f"with `load_compressed`: {check['load_compressed_identical']}, with transformers' "
                      f"`from_pretrained`: {check['from_pretrained_identical']}. Input fit {first['input_fit_seconds']} s; "
                      f"the head's predicted mass over the calibration text {first['mass_seconds']} s.", ""]
        texts = list(REPORTED) + [t for t in VALIDATION if t in base["eval"]]
        head = "| row | embedding bytes (vs fp16) | head bytes (vs fp16) | model bytes (fp32 body) | bf16 body |"
        sep = "| --- | --- | --- | --- | --- |"
        for t in texts:
            head += f" {t} ppl | Δ | KL | top-1 |"
            sep += " --- | --- | --- | --- |"
        lines += [head, sep]
        for r in rows:
            s, fp16 = r["sizes"], r["dense_fp16"]
            body = s["model_bytes"] - s["embedding_bytes"] - s["head_bytes"]
            bf16 = body // 2 + s["embedding_bytes"] + s["head_bytes"]
            head_bytes = "tied (0)" if s["head_bytes"] == 0 else f"{s['head_bytes']:,} ({fp16 / s['head_bytes']:.2f}×)"
            cells = [r["label"], f"{s['embedding_bytes']:,} ({fp16 / s['embedding_bytes']:.2f}×)", head_bytes,
                     f"{s['model_bytes']:,}", f"{bf16:,}"]
            for t in texts:
                cells += _cell(r["eval"][t], base["eval"][t]) if r is not base else \
                    [f"{r['eval'][t]['perplexity']:.3f}", "", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Reading it", "",
              "- The knee of the head is at about 4× against fp16. int8 and `tiered-pq` 2× cost nothing measurable "
              "over the dense head on either model (≤ 0.2 points of perplexity change), and int6 costs 0.4-1 point. "
              "At 4× `tiered-pq` costs 1.9 points (Gemma-3) to 5 points (SmolLM2), while int4 costs 5-12 points "
              "at 3.56×, with more bytes. At 8× the head costs 13.7 points on Gemma-3 and breaks SmolLM2 "
              "(+55.5 %).",
              "- llama.cpp's practice of keeping `output.weight` at Q8_0 or Q6_K sits on the safe side of that "
              "knee; `tiered-pq` 2× matches Q8_0's quality in fewer bytes.",
              "- Whole model: a tied model has one V×d matrix, so `both` is only worth it when the head is "
              "kept finer than the input. Tied scope at 8× (one matrix) is about as bad as an 8× head. On Gemma-3 "
              "the two are the same fit: the same matrix, config and counts give the same module, so the "
              "numbers are identical.",
              "- The bytes a head saves are what an untied model gains. Gemma-3's whole model (bf16 body) "
              "falls from 872 MB to 410 MB with the input at 8× and the head at 2×, losing 5.2 % of perplexity, "
              "almost all of it from the input's 8×.",
              "- Head row importance: SmolLM2's squad-val cells chose calibration counts over the model's "
              "predicted probability mass (22.76 vs 22.86 at 4×). On the reported texts, the counts were also "
              "better on WikiText-2 (+13.5 % vs +14.9 %) and about even on MRPC test (+9.5 % vs +9.3 %)."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--page-only", action="store_true", help="rewrite the page from the results kept")
    args = ap.parse_args()
    models = args.model or ["smollm2-135m", "gemma3-270m"]
    if not args.page_only:
        for name in models:
            run_model(name, HERE / "results" / f"untied-head-{name}.jsonl")
    all_models = [m for m in ("smollm2-135m", "gemma3-270m") if (HERE / "results" / f"untied-head-{m}.jsonl").exists()]
    (HERE / "untied_head.md").write_text(page(all_models))
    print(page(all_models))


if __name__ == "__main__":
    main()
