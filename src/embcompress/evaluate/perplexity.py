"""Causal-LM perplexity, the standard sliding-window way.

The whole text is tokenized once; windows of ``window`` tokens move by ``stride`` and only the tokens
not scored by an earlier window are scored, each with as much left context as the window allows.
If the tokenizer adds a BOS token by default, every window starts with it (never scored), as the
model saw in training; otherwise no BOS is added and the very first token is not scored.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..device import input_device
from ..errors import EmbcompressError
from ..models import text_config

DEFAULT_WINDOW_CAP = 1024


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens_scored: int
    window: int
    stride: int
    bos: bool
    seconds: float
    tokens_per_second: float
    # closeness to a reference model on the same tokens (llama.cpp's --kl-divergence numbers)
    kl_mean: float | None = None  # mean KL(reference || model) per scored token, nats
    kl_p99: float | None = None
    top1_agreement: float | None = None  # % of scored positions with the same argmax

    def as_dict(self):
        return {k: v for k, v in asdict(self).items() if v is not None}


def token_kl(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(reference || model) per position, in nats, from two (..., V) logit tensors."""
    ref = F.log_softmax(reference_logits.float(), dim=-1)
    return (ref.exp() * (ref - F.log_softmax(logits.float(), dim=-1))).sum(-1)


def adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def model_context(model) -> int | None:
    cfg = text_config(model.config)
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


def check_window(window: int | None, stride: int | None) -> None:
    """0 never means "default": a window under 2 tokens or a stride under 1 is refused."""
    if window is not None and window < 2 or stride is not None and stride < 1:
        raise EmbcompressError(f"--window must be at least 2 and --stride at least 1 (got window {window}, "
                               f"stride {stride}); leave them out for the defaults")


def _scored_logits(model, chunk: torch.Tensor, first: int, keep_arg: bool) -> torch.Tensor:
    """Logits predicting positions ``first:`` of ``chunk``; the head only for those positions when the
    model can (the head dominates large vocabularies)."""
    if keep_arg:
        return model(input_ids=chunk, logits_to_keep=chunk.shape[1] - first + 1).logits[0, :-1].float()
    return model(input_ids=chunk).logits[0, first - 1 : -1].float()


class CachedReference:
    """A reference model whose scored logits are kept (fp32, up to ``max_bytes``) per window, so the next
    model scored on the same text against it pays only its own forward passes (a sweep's cells)."""

    def __init__(self, model, max_bytes: int = 3 << 30):
        self.model, self.max_bytes, self.kept_bytes = model, max_bytes, 0
        self._kept: dict[tuple, torch.Tensor] = {}

    def scored_logits(self, chunk: torch.Tensor, first: int, keep_arg: bool) -> torch.Tensor:
        key = (first, chunk.shape[1], chunk.cpu().numpy().tobytes())
        if key in self._kept:
            return self._kept[key]
        out = _scored_logits(self.model, chunk, first, keep_arg)
        size = out.numel() * out.element_size()
        if self.kept_bytes + size <= self.max_bytes:
            self._kept[key] = out
            self.kept_bytes += size
        return out


def causal_perplexity(model, tokenizer, text: str, window: int | None = None, stride: int | None = None,
                      max_tokens: int | None = None, progress: bool = True, reference=None) -> PerplexityResult:
    """Sliding-window perplexity; with ``reference`` (e.g. the uncompressed model) also the mean and
    99th-percentile KL to it per token and the top-1 agreement, on the same scored positions."""
    if max_tokens is not None and max_tokens < 2:
        raise EmbcompressError(f"--max-tokens must be at least 2 (got {max_tokens})")
    context = model_context(model)
    check_window(window, stride)
    window = window if window is not None else min(context or DEFAULT_WINDOW_CAP, DEFAULT_WINDOW_CAP)
    if context is not None and window > context:
        raise EmbcompressError(f"window {window} is longer than the model's context {context}; use --window {context}")
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    span = window - len(bos)  # text tokens a window holds
    stride = stride if stride is not None else max(1, span // 2)
    # without BOS a window's first token has no context: windows must overlap by at least one token
    max_stride = span if bos else span - 1
    if span < 2:
        raise EmbcompressError(f"window {window} leaves {span} text token(s) a window"
                               f"{' after the BOS token' if bos else ''}; use --window {len(bos) + 2} or more")
    if not (1 <= stride <= max_stride):
        raise EmbcompressError(f"need 1 ≤ stride ≤ {max_stride} for window {window} "
                               f"({'with' if bos else 'no'} BOS token; got stride {stride})")
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if len(ids) < 2:
        raise EmbcompressError("the text has fewer than 2 tokens; give a longer text")

    device = input_device(model)
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    total_nll, scored, prev_end = 0.0, 0, 0
    kls, agree = [], 0
    starts = list(range(0, len(ids), stride))
    t0 = time.perf_counter()
    bar = tqdm(total=len(ids), desc="perplexity", unit="tok", disable=not progress, leave=False)
    with torch.inference_mode():
        for begin in starts:
            end = min(begin + span, len(ids))
            chunk = torch.tensor([bos + ids[begin:end]], device=device)
            # first text position to score: not yet scored, and with at least one token before it
            first = max(prev_end, begin if bos else max(begin, 1)) - begin + len(bos)
            logits = _scored_logits(model, chunk, first, keep_arg)
            if reference is not None:
                ref = (reference.scored_logits(chunk, first, keep_arg) if isinstance(reference, CachedReference)
                       else _scored_logits(reference, chunk, first, keep_arg))
                kls.append(token_kl(ref, logits).cpu())
                agree += int((ref.argmax(-1) == logits.argmax(-1)).sum())
            total_nll += F.cross_entropy(logits, chunk[0, first:], reduction="sum").item()
            scored += chunk.shape[1] - first
            bar.update(end - prev_end)
            prev_end = end
            if end == len(ids):
                break
    bar.close()
    seconds = time.perf_counter() - t0
    nll = total_nll / scored
    closeness = {}
    if reference is not None:
        kl = torch.cat(kls).double()
        closeness = dict(kl_mean=kl.mean().item(), kl_p99=torch.quantile(kl, 0.99).item(),
                         top1_agreement=100.0 * agree / scored)
    return PerplexityResult(math.exp(nll), nll, scored, window, stride, bool(bos), seconds, scored / seconds,
                            **closeness)
