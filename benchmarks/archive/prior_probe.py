"""Design probe: how much of the data-free token-id prior to mix into calibration importance (tiered
``prior``), chosen on texts of a third kind — neither the calibration text (SQuAD v1.1 dev contexts,
as `targets.sh` uses) nor the reported WikiText-2 test: GLUE SST-2 training sentences (lower-cased
movie-review fragments, tokenized with spaces before punctuation) and MRPC training sentences (news).

Regenerate: .venv/bin/python benchmarks/prior_probe.py [MODEL [INDEX ...]]   (default smollm2-135m, every
config of CONFIGS; one line per config)
"""

import copy
import csv
import sys

from embcompress import compress_model, make_config
from embcompress.calibration import calibration_text, token_counts
from embcompress.data import data_file
from embcompress.evaluate.perplexity import causal_perplexity
from embcompress.models import load_model

CONFIGS = [("tiered-rank1", dict(ratio=8, importance="calibration", prior=p)) for p in (0.0, 0.25, 0.5)]
CONFIGS += [("tiered-rank1", dict(ratio=8)), ("tiered-rank1", dict(ratio=16, importance="calibration", prior=0.0)),
            ("tiered-rank1", dict(ratio=16, importance="calibration", prior=0.5)), ("tiered-rank1", dict(ratio=16))]
# with the prior fixed at 0.5: does a larger low-rank part pay for its bytes at 8x?
CONFIGS += [("tiered-rank1", dict(ratio=8, importance="calibration", prior=0.5, rank=r)) for r in (2, 4)]
# shape-gain PQ tiers (2 and 1 bits a value, codebooks paid once) in place of or beside the int2/int1 tiers
PQ_TIERS = ["8:32,4:32,3:32,3:64,pq4,pq8,0", "8:32,4:32,3:32,3:64,2:32,pq4,2:64,pq8,1:64,0", "8:32,4:32,pq4,pq8,0",
            "8:32,4:32,pq3,pq4,pq6,pq8,0", "4:32,pq2,pq4,pq8,0"]
CONFIGS += [("tiered-rank1", dict(ratio=r, importance="calibration", prior=0.5, tiers=t)) for r in (8, 16) for t in PQ_TIERS]


def glue_sentences(task: str, column: str) -> str:
    with open(data_file(f"glue/{task}/train.tsv"), newline="", encoding="utf-8") as f:
        return "\n".join(row[column].strip() for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m"
    picked = [CONFIGS[int(i)] for i in sys.argv[2:]] or CONFIGS
    model, tok = load_model(name)
    vocab = model.get_input_embeddings().num_embeddings
    counts = token_counts(tok, calibration_text("squad-contexts"), vocab)
    texts = {"sst2": glue_sentences("SST-2", "sentence"), "mrpc": glue_sentences("MRPC", "#1 String")}
    ppl = lambda m, t: causal_perplexity(m, tok, t, max_tokens=4096, progress=False).perplexity
    base = {k: ppl(model, t) for k, t in texts.items()}
    print(f"{name} uncompressed: " + ", ".join(f"{k} {v:.3f}" for k, v in base.items()), flush=True)
    for method, opts in picked:
        m = copy.deepcopy(model)
        compress_model(m, make_config(method, **opts), row_weights=counts)
        got = {k: ppl(m, t) for k, t in texts.items()}
        print(f"{method} {opts}: " + ", ".join(f"{k} {v:.3f} ({(v / base[k] - 1) * 100:+.1f} %)" for k, v in got.items()),
              flush=True)


if __name__ == "__main__":
    main()
