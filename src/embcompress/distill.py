"""Distillation: tune a compressed embedding's continuous values against its own uncompressed model.

The discrete parts a method chose (int levels, PQ code indices, tier assignment, GGUF blocks) stay
fixed; every floating-point tensor of the compressed modules (int group scales and zero points, PQ
centroids and row norms, rank-k factors, the centre, autoencoder decoder and codes) becomes trainable
in fp32, everything else in the model is frozen, and the loss is KL(teacher || student) over the
next-token distributions on calibration text (for an encoder: the relative error of the final hidden
states). Afterwards each tensor is stored again in its own dtype: format, byte count and fused
lookups are unchanged, only values move. In tied scope the head reads the same module, so every row
of the vocabulary gets a gradient.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import EmbcompressError
from .evaluate.perplexity import adds_bos, token_kl
from .methods import CompressedEmbedding


@dataclass
class DistillConfig:
    """No default was chosen on WikiText-2 or STS-B dev. ``lr``: 0.02 made a tiny model's KL rise, 0.003
    lowers it in the tests, and on SmolLM2 0.001 lowered the held-out KL of int2 and tiered on windows of
    SQuAD dev articles 0-23 (benchmarks/distill.md). Steps, batch, window length, tokens and ``shared_lr``
    are starting values sized for a CPU, not tuned."""

    steps: int = 120
    batch_size: int = 4
    seq_len: int = 256
    tokens: int = 262144  # calibration tokens drawn from (the windows each step samples from)
    lr: float = 0.003  # Adam, relative: each tensor's step size is lr × its mean absolute value
    # tensors that serve every row (PQ codebooks, low-rank bases, decoders) move this much slower: Adam
    # steps every element of them each step, whichever few rows the batch's gradient came from
    shared_lr: float = 0.1
    # windows of the calibration text held out of training: every eval_every steps the values with the
    # lowest loss on them are kept (the starting values included, so distillation never ends worse there)
    held_out: int = 8
    eval_every: int = 20
    # stop after this many held-out checks in a row without a new best (0: run every step). In input scope
    # the held-out KL of SQuAD windows rose from the first check on (benchmarks/distill.md), so the full
    # run only cost time; every run that improved did so at every check, which 2 leaves untouched
    patience: int = 2
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "seq_len", "tokens", "held_out", "eval_every"):
            if getattr(self, name) < 1:
                raise EmbcompressError(f"distill option {name} must be at least 1 (got {getattr(self, name)})")
        if self.patience < 0:
            raise EmbcompressError(f"distill option patience must be 0 (never stop early) or more (got {self.patience})")
        if self.seq_len < 2:
            raise EmbcompressError("distill option seq_len must be at least 2")
        if not self.lr > 0:
            raise EmbcompressError(f"distill option lr must be positive (got {self.lr})")
        if not 0 <= self.shared_lr:
            raise EmbcompressError(f"distill option shared_lr must not be negative (got {self.shared_lr})")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "DistillConfig":
        from .methods import coerce_option

        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise EmbcompressError(f"unknown distill option(s) {', '.join(unknown)}; use: {', '.join(sorted(known))}")
        return cls(**{k: coerce_option(cls, k, v, "distill") for k, v in options.items()})


def compressed_modules(model: nn.Module) -> list[CompressedEmbedding]:
    found = [m for m in model.modules() if isinstance(m, CompressedEmbedding)]
    # parts of a composite are inside it: tune through the outermost module only
    inner = {id(p) for m in found for p in m.modules() if p is not m}
    return [m for m in found if id(m) not in inner]


@contextlib.contextmanager
def continuous_parameters(modules: list[nn.Module]) -> Iterator[list[tuple[nn.Parameter, bool]]]:
    """Every floating-point tensor of ``modules`` as a trainable fp32 Parameter, with whether it serves
    every row (the module's ``shared`` names), for the duration; then each goes back to its own dtype
    and kind (buffer or frozen parameter)."""
    changed: list[tuple[nn.Module, str, bool, torch.dtype, nn.Parameter, bool]] = []
    seen: set[int] = set()
    shared_ids = {id(t) for top in modules for m in top.modules() if isinstance(m, CompressedEmbedding)
                  for name, t in m.state_dict(keep_vars=True).items() if name in set(m.shared_names()) | {"center"}}
    for top in modules:
        for module in top.modules():
            tensors = [(name, t, True) for name, t in module._buffers.items()]
            tensors += [(name, t, False) for name, t in module._parameters.items()]
            for name, t, is_buffer in tensors:  # listed before any is moved
                if t is None or not t.is_floating_point() or t.numel() == 0 or id(t) in seen:
                    continue
                seen.add(id(t))
                p = nn.Parameter(t.detach().float().clone(), requires_grad=True)
                if is_buffer:
                    del module._buffers[name]
                module._parameters[name] = p
                changed.append((module, name, is_buffer, t.dtype, p, id(t) in shared_ids))
    try:
        yield [(c[4], c[5]) for c in changed]
    finally:
        for module, name, is_buffer, dtype, p, _ in changed:
            value = p.detach().to(dtype)
            del module._parameters[name]
            if is_buffer:
                module.register_buffer(name, value)
            else:
                module._parameters[name] = nn.Parameter(value, requires_grad=False)


def calibration_windows(tokenizer, text: str, config: DistillConfig) -> torch.Tensor:
    """(N, seq_len) token windows cut from the first ``config.tokens`` tokens of ``text`` (with BOS
    first when the tokenizer adds one, as the model saw in training)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids[: config.tokens]
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    span = config.seq_len - len(bos)
    windows = [bos + ids[i : i + span] for i in range(0, len(ids) - span + 1, span)]
    if not windows:
        raise EmbcompressError(f"the calibration text has {len(ids)} tokens, fewer than one window of "
                               f"{config.seq_len}; give more text or a smaller seq_len")
    return torch.tensor(windows)


def _outputs(model, ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def distance(teacher_out: torch.Tensor, student_out: torch.Tensor, causal: bool) -> torch.Tensor:
    """Per-position loss: KL(teacher || student) for a language model, relative squared error of the
    hidden states for an encoder."""
    if causal:
        return token_kl(teacher_out, student_out)
    err = (student_out.float() - teacher_out.float()).square().sum(-1)
    return err / teacher_out.float().square().sum(-1).clamp_min(1e-12)


@torch.no_grad()
def held_out_distance(student, teacher, windows: torch.Tensor, causal: bool, batch_size: int = 4) -> float:
    """Mean per-position distance between the two models on ``windows``."""
    device = next(student.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i : i + batch_size].to(device)
        d = distance(_outputs(teacher, batch), _outputs(student, batch), causal)
        total += float(d.sum())
        count += d.numel()
    return total / count


def distill(student: nn.Module, teacher: nn.Module, tokenizer, text: str, config: DistillConfig | None = None,
            log=None) -> dict[str, Any]:
    """Tune ``student``'s compressed embedding (in place) toward ``teacher`` on ``text``.

    Returns what was done: steps, tensors and values tuned, the loss at start and end, seconds.
    """
    config = config or DistillConfig()
    modules = compressed_modules(student)
    if not modules:
        raise EmbcompressError("the model has no compressed embedding to distil; compress it first")
    if student.get_input_embeddings().num_embeddings != teacher.get_input_embeddings().num_embeddings:
        raise EmbcompressError("the teacher's vocabulary differs from the student's; distil against the model it "
                               "was compressed from")
    causal = student.get_output_embeddings() is not None
    device = next(student.parameters()).device
    teacher.to(device).eval()
    windows = calibration_windows(tokenizer, text, config)
    if len(windows) < config.held_out + 1:
        raise EmbcompressError(f"the calibration text gives {len(windows)} windows of {config.seq_len} tokens; "
                               f"distillation needs more than held_out={config.held_out}: give more text")
    held, windows = windows[-config.held_out:], windows[: -config.held_out]  # the text's end is held out
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    frozen = [p for p in student.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    was_training = student.training
    student.eval()  # no dropout: the student must match the teacher's deterministic outputs
    history: list[float] = []
    t0 = time.perf_counter()
    try:
        with continuous_parameters(modules) as tuned:
            if not tuned:
                return {"steps": 0, "tensors": 0, "values": 0, "note": "nothing continuous to tune (e.g. gguf blocks)"}
            params = [p for p, _ in tuned]
            groups = [{"params": [p], "lr": config.lr * (config.shared_lr if shared else 1.0)
                       * float(p.detach().abs().mean().clamp_min(1e-8))} for p, shared in tuned]
            optimizer = torch.optim.Adam(groups)
            best = (held_out_distance(student, teacher, held, causal), 0, [p.detach().clone() for p in params])
            start_held = best[0]
            held_history = [(0, round(best[0], 6))]
            bar = tqdm(range(1, config.steps + 1), desc="distil", disable=not config.progress, leave=False)
            checks_without_gain = 0
            for step in bar:
                pick = torch.randint(len(windows), (config.batch_size,), generator=generator)
                batch = windows[pick].to(device)
                with torch.no_grad():
                    target = _outputs(teacher, batch)
                loss = distance(target, _outputs(student, batch), causal).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append(loss.item())
                if step % config.eval_every == 0 or step == config.steps:
                    now = held_out_distance(student, teacher, held, causal)
                    held_history.append((step, round(now, 6)))
                    if now < best[0]:
                        best = (now, step, [p.detach().clone() for p in params])
                        checks_without_gain = 0
                    else:
                        checks_without_gain += 1
                bar.set_postfix({"kl" if causal else "err": f"{sum(history[-10:]) / len(history[-10:]):.4f}",
                                 "held-out": f"{best[0]:.4f}"})
                if config.patience and checks_without_gain >= config.patience:
                    break
            with torch.no_grad():  # the values that did best on the held-out windows
                for p, value in zip(params, best[2]):
                    p.copy_(value)
            n_values = sum(p.numel() for p in params)
            n_tensors = len(params)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        student.train(was_training)
    window = max(1, min(10, len(history) // 4))  # history holds one loss per step run
    return {"steps": len(history), "stopped_early": len(history) < config.steps, "tensors": n_tensors, "values": n_values,
            "loss": "kl" if causal else "hidden",
            "loss_first": sum(history[:window]) / window, "loss_last": sum(history[-window:]) / window,
            "held_out_start": start_held, "held_out_best": best[0], "best_step": best[1], "held_out": held_history,
            "seconds": round(time.perf_counter() - t0, 1), "config": dataclasses.asdict(config)}
