"""Masked-LM pseudo-perplexity with the paper's protocol.

WikiText raw test, line by line (block 512), ``= Heading =`` lines and lines under 20 tokens dropped,
whole-word masking with p = 0.15 (80 % [MASK], 10 % random token, 10 % kept, as transformers'
whole-word-mask collator does), a fixed seed set before every evaluation so every method sees the same
masks; PPL = exp(mean loss over masked tokens).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..device import input_device
from ..errors import EmbcompressError

BLOCK = 512
MIN_TOKENS = 20


@dataclass
class MlmResult:
    perplexity: float
    masked_tokens: int
    lines: int

    def as_dict(self):
        return asdict(self)


def eval_lines(text: str, tokenizer, max_lines: int | None = None) -> list[list[int]]:
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("=") and stripped.endswith("=")):
            continue  # blank lines and " = Title = " headings
        ids = tokenizer(stripped, add_special_tokens=True, truncation=True, max_length=BLOCK).input_ids
        if len(ids) - 2 >= MIN_TOKENS:
            lines.append(ids)
        if max_lines and len(lines) >= max_lines:
            break
    return lines


def whole_word_mask(tokens: list[str], special: set[int], p: float, rng: random.Random) -> list[int]:
    """Positions to predict: whole words (a word is a token plus its '##' continuations)."""
    words: list[list[int]] = []
    for i, tok in enumerate(tokens):
        if i in special:
            continue
        if tok.startswith("##") and words:
            words[-1].append(i)
        else:
            words.append([i])
    rng.shuffle(words)
    budget = max(1, round(len(tokens) * p))
    chosen: list[int] = []
    for word in words:
        if len(chosen) >= budget:
            break
        if len(chosen) + len(word) > budget:
            continue
        chosen.extend(word)
    return sorted(chosen)


def masked_batch(lines, tokenizer, p: float, rng: random.Random):
    inputs, labels = [], []
    for ids in lines:
        tokens = tokenizer.convert_ids_to_tokens(ids)
        special = {i for i, t in enumerate(ids) if t in tokenizer.all_special_ids}
        positions = whole_word_mask(tokens, special, p, rng)
        inp, lab = list(ids), [-100] * len(ids)
        for pos in positions:
            lab[pos] = ids[pos]
            roll = rng.random()
            if roll < 0.8:
                inp[pos] = tokenizer.mask_token_id
            elif roll < 0.9:
                inp[pos] = rng.randrange(len(tokenizer))
        inputs.append(inp)
        labels.append(lab)
    return inputs, labels


def mlm_perplexity(model, tokenizer, text: str, p: float = 0.15, seed: int = 42, batch_size: int = 16,
                   max_lines: int | None = None, progress: bool = True) -> MlmResult:
    if tokenizer.mask_token_id is None:
        raise EmbcompressError("the tokenizer has no [MASK] token; masked-LM perplexity needs a masked-LM tokenizer")
    lines = eval_lines(text, tokenizer, max_lines)
    if not lines:
        raise EmbcompressError(f"no line of the text has {MIN_TOKENS} tokens or more; give a longer text")
    rng = random.Random(seed)  # the same masks for every method
    device = input_device(model)
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in tqdm(range(0, len(lines), batch_size), desc="mlm", disable=not progress, leave=False):
            inputs, labels = masked_batch(lines[start : start + batch_size], tokenizer, p, rng)
            width = max(map(len, inputs))
            pad = tokenizer.pad_token_id or 0
            ids = torch.tensor([x + [pad] * (width - len(x)) for x in inputs], device=device)
            lab = torch.tensor([y + [-100] * (width - len(y)) for y in labels], device=device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in inputs], device=device)
            out = model(input_ids=ids, attention_mask=mask)
            logits = getattr(out, "logits", None)
            if logits is None or logits.shape[-1] < len(tokenizer) - 1:
                raise EmbcompressError(f"{type(model).__name__} has no masked-LM head; load it with task masked-lm")
            total += F.cross_entropy(logits.float().flatten(0, 1), lab.flatten(), reduction="sum").item()
            count += int((lab != -100).sum())
    return MlmResult(math.exp(total / count), count, len(lines))
