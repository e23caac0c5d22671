"""Token importance from a calibration text — never the text a result is reported on."""

from __future__ import annotations

import unicodedata
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


NGRAM = 8  # words; an 8-word run shared by two unrelated texts is rare
MAX_SHARED = 0.2  # refuse a calibration text more than this share of whose n-grams are in an evaluation text


def _words(text: str) -> list[str]:
    """Normalised words: Unicode NFKC, no BOM, case and whitespace ignored."""
    return unicodedata.normalize("NFKC", text.replace("\ufeff", "")).lower().split()


def _ngrams(words: list[str]) -> set[int]:
    return {hash(tuple(words[i:i + NGRAM])) for i in range(len(words) - NGRAM + 1)}


def shared_share(calibration: str, evaluation: str) -> float:
    """The share of the calibration text's word n-grams that also occur in the evaluation text."""
    calib = _ngrams(_words(calibration))
    return len(calib & _ngrams(_words(evaluation))) / len(calib) if calib else 0.0


def check_not_evaluation_text(text: str, source: str, explicit_data_dir: str | None = None) -> None:
    """Compare by content, not by bytes: a copy with one more space, a BOM or only a prefix is still
    the evaluation text."""
    base = data_dir(explicit_data_dir)
    for rel in EVAL_FILES:
        ev = base / rel if base else None
        if ev is None or not ev.is_file():
            continue
        share = shared_share(text, ev.read_text(encoding="utf-8", errors="replace"))
        if share > MAX_SHARED:
            raise EmbcompressError(f"calibration text {source} is the evaluation text {rel} or repeats it ({share:.0%} of its "
                                   f"{NGRAM}-word runs occur there); tune on other text (e.g. --calibration squad-contexts)")


def calibration_text(source: str, explicit_data_dir: str | None = None) -> str:
    """``squad-contexts`` or a path to a text file; refused when it is (largely) an evaluation text."""
    if source == "squad-contexts":
        text = "\n".join(p["context"] for a in squad_dev_articles(explicit_data_dir) for p in a["paragraphs"])
    else:
        path = Path(source)
        if not path.is_file():
            raise EmbcompressError(f"calibration text {source} not found; give a text file or one of: {', '.join(NAMED)}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise EmbcompressError(f"calibration text {source} is not UTF-8 text; give a plain text file") from None
        except OSError as e:
            raise EmbcompressError(f"calibration text {source} cannot be read ({e.strerror}); give a readable file") from None
        if "\x00" in text:
            raise EmbcompressError(f"calibration text {source} holds NUL bytes (a binary file?); give a plain text file")
        if not _words(text):
            raise EmbcompressError(f"calibration text {source} is empty; give a text with words to count tokens on")
    check_not_evaluation_text(text, source, explicit_data_dir)
    return text


def token_counts(tokenizer, text: str, vocab_size: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=vocab_size)[:vocab_size].float()
