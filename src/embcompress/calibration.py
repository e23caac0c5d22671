"""Token importance from a calibration text — never the text a result is reported on."""

from __future__ import annotations

import unicodedata

import torch

from .device import input_device
from .errors import EmbcompressError
from .texts import ALIASES, DEFAULT_PERPLEXITY_TEXT, TEXTS, read_text

# evaluations that report on SQuAD dev: no text cut from it may calibrate them
REPORTED_ON = {name: ("squad",) for name in TEXTS if name.startswith("squad-")}
NGRAM = 8  # words; an 8-word run shared by two unrelated texts is rare
MAX_SHARED = 0.2  # refuse a calibration text more than this share of whose n-grams are in an evaluation text


def check_disjoint(source: str | None, evals) -> None:
    """Refuse a sweep whose calibration text is the text one of its evaluations reports on."""
    parts = [] if source is None else [ALIASES.get(p, p) for p in source.split("+")]
    clash = [e for e in evals for p in parts if e in REPORTED_ON.get(p, ())]
    if clash:
        raise EmbcompressError(f"--calibration {source} is the text the {clash[0]} evaluation reports on; "
                               "calibrate on another text (a file of your own)")


def _words(text: str) -> list[str]:
    """Normalised words: Unicode NFKC, no BOM, case and whitespace ignored."""
    return unicodedata.normalize("NFKC", text.replace("\ufeff", "")).lower().split()


def _ngrams(words: list[str]) -> set[int]:
    return {hash(tuple(words[i:i + NGRAM])) for i in range(len(words) - NGRAM + 1)}


def shared_share(calibration: str, evaluation: str) -> float:
    """The share of the calibration text's word n-grams that also occur in the evaluation text."""
    calib = _ngrams(_words(calibration))
    return len(calib & _ngrams(_words(evaluation))) / len(calib) if calib else 0.0


def check_not_evaluation_text(text: str, source: str, explicit_data_dir: str | None = None,
                              evaluation_texts=(DEFAULT_PERPLEXITY_TEXT,)) -> None:
    """Compare by content, not by bytes: a copy with one more space, a BOM or only a prefix is still
    the evaluation text."""
    for name in evaluation_texts:
        if name == source:
            raise EmbcompressError(f"calibration text {source} is the evaluation text; tune on other text")
        try:
            evaluation = read_text(name, explicit_data_dir)
        except EmbcompressError:
            continue  # an evaluation text that is not there cannot be copied either
        share = shared_share(text, evaluation)
        if share > MAX_SHARED:
            label = TEXTS[name].description if name in TEXTS else name
            raise EmbcompressError(f"calibration text {source} is the evaluation text {label} or repeats it ({share:.0%} "
                                   f"of its {NGRAM}-word runs occur there); tune on other text (e.g. --calibration "
                                   f"{'glue-train' if 'squad' in source else 'squad-contexts'})")


def calibration_text(source: str, explicit_data_dir: str | None = None,
                     evaluation_texts=(DEFAULT_PERPLEXITY_TEXT,)) -> str:
    """A named text (``embcompress.texts``) or a UTF-8 file; refused when it is (largely) an evaluation text."""
    text = read_text(source, explicit_data_dir)
    check_not_evaluation_text(text, source, explicit_data_dir, evaluation_texts)
    return text


def token_counts(tokenizer, text: str, vocab_size: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=vocab_size)[:vocab_size].float()


def predicted_mass(model, tokenizer, text: str, max_tokens: int = 16384, seq_len: int = 512) -> torch.Tensor:
    """Importance of each output-head row: the probability the model puts on that token, summed over the
    calibration positions (an expected count, on the scale of ``token_counts``).

    A head row's error moves its logit at every position, and the KL to the original model grows with
    that token's probability there (the softmax Fisher is diag(p) − ppᵀ), so the mean predicted
    probability is the weight that matters; it also reaches tokens the text never contains.
    """
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0][:max_tokens]
    if ids.numel() < 2:
        raise EmbcompressError("the calibration text has fewer than 2 tokens; give a longer text")
    device = input_device(model)
    vocab = model.get_output_embeddings().out_features
    mass = torch.zeros(vocab, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, ids.numel(), seq_len):
            window = ids[start:start + seq_len].unsqueeze(0).to(device)
            logits = model(input_ids=window).logits[0].float()
            mass += torch.softmax(logits, dim=-1).sum(0).double().cpu()[:vocab]
    return mass.float()
