"""Zero-shot sentence similarity (STS-B dev): Spearman ×100 between the gold scores and the cosine of
mean-pooled, L2-normalised sentence embeddings (how sentence-transformers scores its encoders)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from tqdm.auto import tqdm

from ..device import input_device
from ..errors import EmbcompressError

STSB_COLUMNS = ("sentence1", "sentence2", "score")


@dataclass
class StsResult:
    spearman: float
    pearson: float
    pairs: int


def read_stsb(path: Path) -> tuple[list[str], list[str], list[float]]:
    if not path.is_file():
        raise EmbcompressError(f"{path} not found; put STS-B dev.tsv there or point --data-dir at the GLUE data")
    try:
        with path.open(encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (UnicodeDecodeError, csv.Error):
        raise EmbcompressError(f"{path} is not a UTF-8 tab-separated file; replace it with STS-B dev.tsv") from None
    if not rows:
        raise EmbcompressError(f"{path} is empty; replace it with STS-B dev.tsv")
    header = rows[0]
    if tuple(header[-3:]) != STSB_COLUMNS:
        raise EmbcompressError(f"{path} has header {header[-3:]}; expected the last columns to be {', '.join(STSB_COLUMNS)}")
    body = [r for r in rows[1:] if len(r) == len(header)]
    return [r[-3] for r in body], [r[-2] for r in body], [float(r[-1]) for r in body]


@torch.inference_mode()
def encode(model, tokenizer, sentences: list[str], batch_size: int = 64, max_length: int = 256, progress=True):
    device = input_device(model)
    out = []
    for i in tqdm(range(0, len(sentences), batch_size), desc="encode", disable=not progress, leave=False):
        batch = tokenizer(sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(device)
        hidden = getattr(model(**batch), "last_hidden_state", None)
        if hidden is None:
            raise EmbcompressError(f"{type(model).__name__} gives no per-token hidden states; load an encoder (task encoder)")
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        out.append(F.normalize(pooled, dim=-1))
    return torch.cat(out)


def sts_zero_shot(model, tokenizer, s1, s2, gold, progress=True) -> StsResult:
    a, b = encode(model, tokenizer, s1, progress=progress), encode(model, tokenizer, s2, progress=progress)
    cos = (a * b).sum(-1).cpu().numpy()
    return StsResult(100 * spearmanr(cos, gold).statistic, 100 * pearsonr(cos, gold).statistic, len(gold))
