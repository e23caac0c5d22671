"""How much of the reported text the calibration text never saw (explains the validation→test gap in
quality_per_byte.md). Reads both texts; tunes nothing.

Regenerate: .venv/bin/python benchmarks/calibration_coverage.py
"""

import torch
from transformers import AutoTokenizer

from embcompress.calibration import calibration_text, token_counts
from embcompress.data import wikitext2_test
from embcompress.models import builtin_folder


def main():
    tok = AutoTokenizer.from_pretrained(builtin_folder("smollm2-135m"))
    counts = token_counts(tok, calibration_text("squad-contexts"), len(tok))
    ids = torch.tensor(tok(wikitext2_test()[:200000])["input_ids"])
    seen = counts[ids]
    print(f"SQuAD contexts: {int(counts.sum())} tokens, {int((counts > 0).sum())} distinct of {len(tok)}")
    print(f"WikiText-2 test (first 200k characters): {100 * (seen == 0).float().mean():.2f} % of token occurrences "
          f"never in the calibration text, {100 * (seen < 3).float().mean():.2f} % fewer than 3 times")
    unseen, n = ids[seen == 0].unique(return_counts=True)
    print("most frequent unseen:", [(tok.decode([int(unseen[i])]), int(n[i])) for i in n.argsort(descending=True)[:8]])


if __name__ == "__main__":
    main()
