"""Token importance from a calibration text — never the text a result is reported on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .data import WIKITEXT_TEST, data_dir, squad_dev_articles
from .errors import EmbcompressError

NAMED = {"squad-contexts": "the paragraphs of SQuAD v1.1 dev (Wikipedia, disjoint from WikiText-2 test)"}
EVAL_FILES = (WIKITEXT_TEST,)
REPORTED_ON = {"squad-contexts": ("squad",)}  # evaluations that report on a named calibration text


def check_disjoint(source: str | None, evals) -> None:
    """Refuse a sweep whose calibration text is the text one of its evaluations reports on."""
    clash = [e for e in evals if e in REPORTED_ON.get(source, ())]
    if clash:
        raise EmbcompressError(f"--calibration {source} is the text the {clash[0]} evaluation reports on; "
                               "calibrate on another text (a file of your own)")


def calibration_text(source: str, explicit_data_dir: str | None = None) -> str:
    """``squad-contexts`` or a path to a text file; refused when it is an evaluation text."""
    if source == "squad-contexts":
        return "\n".join(p["context"] for a in squad_dev_articles(explicit_data_dir) for p in a["paragraphs"])
    path = Path(source)
    if not path.is_file():
        raise EmbcompressError(f"calibration text {source} not found; give a text file or one of: {', '.join(NAMED)}")
    text = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).digest()
    base = data_dir(explicit_data_dir)
    for rel in EVAL_FILES:
        ev = base / rel if base else None
        if ev is not None and ev.is_file() and (ev.samefile(path) or hashlib.sha256(ev.read_bytes()).digest() == digest):
            raise EmbcompressError(f"calibration text {source} is the evaluation text {rel}; tune on other text "
                                   "(e.g. --calibration squad-contexts)")
    return text


def token_counts(tokenizer, text: str, vocab_size: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=vocab_size)[:vocab_size].float()
