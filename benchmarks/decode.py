"""Decode speed of a compressed tied head (issue 20): greedy generation tokens/s against the uncompressed
model, batch 1 (and 8), 32-token prompt, NEW new tokens, alternating the two models over ROUNDS rounds so
machine noise hits both sides; plus the head alone (logits for one hidden vector) against F.linear on the
dense matrix and against the memory floor (bytes read / this machine's measured copy bandwidth).

Regenerate: .venv/bin/python benchmarks/decode.py [--model smollm2-135m] [--rounds 3] [--new 128] [--batch 1,8]
[--cases 'LABEL;...']   (appends its table to benchmarks/decode.md; each table names its settings and machine).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from embcompress import compress_model, make_config
from embcompress.models import load_model
from embcompress.sweep import machine

CASES = [("int4 (3.56×)", "int", {"bits": 4}, "tied"), ("gguf Q4_0 (3.56×)", "gguf", {"qtype": "Q4_0"}, "tied"),
         ("tiered-pq 4×", "tiered-pq", {"ratio": 4.0}, "tied"), ("tiered-pq 8×", "tiered-pq", {"ratio": 8.0}, "tied"),
         ("pq 8× (sub_dim 4)", "pq", {"sub_dim": 4}, "tied"), ("tiered-pq 8×, input scope", "tiered-pq", {"ratio": 8.0}, "input"),
         # an untied head of its own (issue 19): input and head each int4, the head through the same kernels
         ("int4 input + int4 head (both scope)", "int", {"bits": 4}, "both")]


def tokens_per_second(model, prompt, new):
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                       min_new_tokens=new, do_sample=False, pad_token_id=0)
        return prompt.shape[0] * new / (time.perf_counter() - t0)


def copy_bandwidth() -> float:
    """Bytes a second this machine moves in a large copy (read + write counted)."""
    a = torch.empty(64 * 2**20, dtype=torch.uint8)
    b = torch.empty_like(a)
    b.copy_(a)
    best = min(_timed(lambda: b.copy_(a)) for _ in range(5))
    return 2 * a.numel() / best


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def head_microseconds(f, n=30) -> float:
    with torch.no_grad():
        f()
        return 1e6 * min(_timed(f) for _ in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--cases", default=None, help="';'-separated labels of CASES to run (default: all)")
    args = ap.parse_args()
    cases = [c for c in CASES if args.cases is None or c[0] in args.cases.split(";")]
    base, tok = load_model(args.model, device="cpu")
    emb = base.get_input_embeddings()
    dense_head = base.get_output_embeddings().weight.detach()
    gen = torch.Generator().manual_seed(0)
    bandwidth = copy_bandwidth()
    h = torch.randn(1, emb.embedding_dim, generator=gen)
    dense_us = head_microseconds(lambda: F.linear(h, dense_head))
    lines = [f"## {args.model}: batch {args.batch}, 32-token prompt, {args.new} new tokens, {args.rounds} rounds "
             f"({time.strftime('%Y-%m-%d')}, {machine()}, torch threads {torch.get_num_threads()})", "",
             f"Copy bandwidth {bandwidth / 1e9:.1f} GB/s. Dense fp32 head: {dense_head.numel() * 4 / 1e6:.0f} MB, "
             f"{dense_us:.0f} µs per hidden vector (floor {dense_head.numel() * 4 / bandwidth * 1e6:.0f} µs).", "",
             "| method | scope | head bytes | head µs (dense / floor) | " + " | ".join(
                 f"batch {b}: tok/s compressed / uncompressed (ratio)" for b in args.batch.split(",")) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in args.batch.split(",")) + " |"]
    for label, method, options, scope in cases:
        model = copy.deepcopy(base)
        compress_model(model, make_config(method, **options), scope=scope)
        compressed_head = scope in ("tied", "both")
        head_bytes = model.get_output_embeddings().embedding.nbytes() if compressed_head else dense_head.numel() * 4
        head_us = head_microseconds(lambda: model.get_output_embeddings()(h)) if compressed_head else dense_us
        cells = []
        for b in (int(x) for x in args.batch.split(",")):
            prompt = torch.randint(100, emb.num_embeddings, (b, 32), generator=gen)
            ours, theirs = [], []
            for _ in range(args.rounds):  # alternate, so drifts in machine speed hit both
                theirs.append(tokens_per_second(base, prompt, args.new))
                ours.append(tokens_per_second(model, prompt, args.new))
            o, t = statistics.median(ours), statistics.median(theirs)
            cells.append(f"{o:.1f} / {t:.1f} ({o / t:.2f}×)")
        floor = head_bytes / bandwidth * 1e6
        lines.append(f"| {label} | {scope} | {head_bytes / 1e6:.1f} MB | {head_us:.0f} ({head_us / dense_us:.2f}× dense, "
                     f"{head_us / floor:.1f}× floor {floor:.0f}) | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
        del model
    page = Path(__file__).with_name("decode.md")
    head = page.read_text() if page.exists() else ("# Decode speed of the compressed tied head (issue 20)\n\n"
                                                   "Regenerate: `.venv/bin/python benchmarks/decode.py [--model NAME]`.\n")
    page.write_text(head.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
