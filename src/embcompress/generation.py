"""Text generation with any model the tool loads, so a user can see a compressed model talk."""

from __future__ import annotations

import time

import torch

from .errors import EmbcompressError


def generate_text(name_or_path: str, prompt: str, max_new_tokens: int = 40, sample: bool = False, seed: int = 0,
                  device=None) -> dict:
    """Greedy (or seeded sampled) continuation of ``prompt``: the text, the token count and tokens/s."""
    from .models import load_any

    if not prompt:
        raise EmbcompressError("the prompt is empty; give some text to continue")
    model, tokenizer = load_any(name_or_path, task="causal-lm", device=device)
    if not hasattr(model, "generate") or model.get_output_embeddings() is None:
        raise EmbcompressError(f"{name_or_path} has no language-model head to generate with; give a causal LM")
    inputs = tokenizer(prompt, return_tensors="pt").to(next(model.parameters()).device)
    if sample:
        torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=sample, pad_token_id=pad,
                             **({"top_k": 0, "top_p": 1.0, "temperature": 1.0} if sample else {}))
    seconds = time.perf_counter() - start
    new = out[0, inputs["input_ids"].shape[1]:]
    return {"text": tokenizer.decode(new, skip_special_tokens=True), "new_tokens": int(new.numel()),
            "seconds": seconds, "tokens_per_second": new.numel() / seconds if seconds > 0 else float("inf")}
