"""Design probe for issue 5 on a *validation* text, never the reported WikiText-2 test:
SQuAD v1.1 dev articles 0-23 give the calibration token counts, articles 24-47 are the text whose
perplexity (first 4096 tokens, SmolLM2-135M, input scope) guides the design.

Regenerate: .venv/bin/python benchmarks/quality_per_byte_probe.py [RUN_INDEX ...]   (one line per config;
indices pick a subset of RUNS)
"""

import copy
import sys
import time

from embcompress import compress_model, make_config
from embcompress.calibration import token_counts
from embcompress.data import squad_dev_articles
from embcompress.evaluate.perplexity import causal_perplexity
from embcompress.models import load_model

TIERS_1BIT = "4:32,3:32,2:32,2:64,1:32,1:64,0"
TIERS_FINE = "4:32,3:32,3:64,2:32,2:64,2:192,1:32,1:64,1:192,0"
RUNS = [
    ("int", dict(bits=2)),
    ("tiered", dict(ratio=8, importance="calibration", tiers=TIERS_1BIT)),
    ("tiered", dict(ratio=8, tiers=TIERS_1BIT)),
    ("tiered", dict(ratio=8, importance="calibration")),
    ("mixed", dict(ratio=8)),
    ("tiered", dict(ratio=16, importance="calibration", tiers=TIERS_1BIT)),
    # centring: SmolLM2's column means hold 45 % of the embedding's energy
    ("int", dict(bits=2, center=True)),
    ("int", dict(bits=3, center=True)),
    ("tiered", dict(ratio=8, importance="calibration", center=True)),
    ("tiered", dict(ratio=8, importance="calibration", tiers=TIERS_1BIT, center=True)),
    ("tiered", dict(ratio=8, center=True)),
    ("hybrid", dict(rank=1, bits=2)),
    ("tiered", dict(ratio=8, importance="calibration", tiers=TIERS_FINE, center=True)),
    ("tiered", dict(ratio=16, importance="calibration", tiers=TIERS_FINE, center=True)),
    ("tiered", dict(ratio=8, importance="calibration", tiers="8:32," + TIERS_FINE, center=True)),
    ("int", dict(bits=2, row_norms=True)),
    ("tiered", dict(ratio=8, importance="calibration", tiers=TIERS_FINE, center=True, row_norms=True)),
    ("tiered", dict(ratio=16, importance="calibration", tiers=TIERS_FINE, center=True, row_norms=True)),
    # rank-1 SVD part kept for every row (hybrid rank=1 + int2 gave +8.1 % at 6.3x)
    ("tiered", dict(ratio=8, importance="calibration", tiers=TIERS_FINE, rank=1)),
    ("tiered", dict(ratio=16, importance="calibration", tiers=TIERS_FINE, rank=1)),
    ("hybrid", dict(rank=4, bits=2)),
    ("tiered", dict(ratio=8, importance="calibration", tiers=TIERS_FINE, rank=4)),
    # tied scope: the output head reads the same compressed matrix
    ("int", dict(bits=4), "tied"),
    ("hybrid", dict(rank=1, bits=4), "tied"),
    ("tiered", dict(ratio=4, importance="calibration", tiers="8:32," + TIERS_FINE, rank=1), "tied"),
    # the preset (group sizes that divide every model's rows here: 576, 640, 384)
    ("tiered-rank1", dict(ratio=8, importance="calibration")),
    ("tiered-rank1", dict(ratio=4, importance="calibration"), "tied"),
    ("tiered-rank1", dict(ratio=16, importance="calibration")),
]


def main():
    data = squad_dev_articles()
    calib = "\n".join(p["context"] for a in data[:24] for p in a["paragraphs"])
    valid = "\n".join(p["context"] for a in data[24:] for p in a["paragraphs"])
    model, tok = load_model("smollm2-135m")
    vocab = model.get_input_embeddings().num_embeddings
    counts = token_counts(tok, calib, vocab)
    base = causal_perplexity(model, tok, valid, max_tokens=4096, progress=False).perplexity
    print(f"uncompressed validation perplexity {base:.3f}", flush=True)
    picked = [int(a) for a in sys.argv[1:]] or range(len(RUNS))
    for name, opts, *scope in (RUNS[i] for i in picked):
        m = copy.deepcopy(model)
        t0 = time.perf_counter()
        compress_model(m, make_config(name, **opts), row_weights=counts, scope=(scope or ["input"])[0])
        emb = m.get_input_embeddings()
        ppl = causal_perplexity(m, tok, valid, max_tokens=4096, progress=False).perplexity
        print(f"{name} {opts} {(scope or [''])[0]}: {vocab * emb.embedding_dim * 2 / emb.nbytes():.2f}x bytes vs fp16, "
              f"tiers {getattr(emb, 'tier_rows', '-')}, perplexity {ppl:.3f} ({(ppl / base - 1) * 100:+.1f} %), "
              f"fit+eval {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
