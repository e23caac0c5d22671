"""Design probe for minilm-l6 at >= 16x, on a *validation* set: zero-shot STS-B on the first 2000 pairs
of the STS-B *training* split (the reported number is the dev split, never used here).

Regenerate: .venv/bin/python benchmarks/minilm_probe.py   (one line per config)
"""

import copy

from embcompress import compress_model, make_config
from embcompress.data import data_file
from embcompress.evaluate.sts import read_stsb, sts_zero_shot
from embcompress.models import load_any

CONFIGS = [
    ("pq", dict(sub_dim=8)),
    ("pq", dict(sub_dim=12)),
    ("mixed", dict(ratio=16)),
    # the finest PQ that fits 16x, the spare bytes on frequent (low-id) rows
    ("mixed", dict(ratio=16, cold_sub_dim=12)),
    ("mixed", dict(ratio=16, cold_sub_dim=12, hot_bits=4)),
]


def main():
    model, tok = load_any("minilm-l6", task="encoder")
    s1, s2, gold = (x[:2000] for x in read_stsb(data_file("glue/STS-B/train.tsv")))
    vocab, dim = model.get_input_embeddings().weight.shape
    print(f"uncompressed: {sts_zero_shot(model, tok, s1, s2, gold, progress=False).spearman:.2f}", flush=True)
    for name, opts in CONFIGS:
        m = copy.deepcopy(model)
        compress_model(m, make_config(name, **opts))
        emb = m.get_input_embeddings()
        r = sts_zero_shot(m, tok, s1, s2, gold, progress=False)
        print(f"{name} {opts}: {vocab * dim * 2 / emb.nbytes():.2f}x bytes vs fp16, spearman {r.spearman:.2f}", flush=True)


if __name__ == "__main__":
    main()
