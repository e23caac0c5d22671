"""What GLUE and SQuAD fine-tuning share: a task head around a (compressed) body, one embedding
training policy for every method, one AdamW loop with linear decay (as the paper's Hugging Face
scripts), and the protocol around it (``run_protocol``): the learning rate chosen on a held-out part of
the *training* set (never on the reported dev split), then ``seeds`` runs on the full training set
reported as mean ± std. Defaults are the paper's GLUE ones; SQuAD overrides a few (see squad.py).

Policies: ``frozen`` (default), ``decoder`` (only parts shared by all rows: decoder, basis,
codebooks), ``all`` (every embedding parameter), or ``paper`` (the authors' setting: autoencoder
decoder trainable, its codes and both SVD factors frozen, an uncompressed embedding trained).
"""

from __future__ import annotations

import copy
import random
import statistics
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import EmbcompressError
from ..methods import CompressedEmbedding
from ..surgery import find_input_embedding

POLICIES = ("frozen", "decoder", "all", "paper")


@dataclass
class FinetuneSettings:
    max_length: int = 128
    lr: float | None = None  # None: the best of lr_grid on a held-out part of the training set
    batch_size: int = 32
    epochs: float = 3
    seed: int = 22  # the first seed; run k uses seed + k
    seeds: int = 3  # runs on the full training set, reported as mean ± std (0: only choose the lr)
    lr_grid: tuple[float, ...] = (2e-5, 5e-5, 1e-4)
    lr_search_examples: int = 8000  # the choice trains on at most this many examples (CPU cost), 1 seed
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    embedding_policy: str = "frozen"
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.lr_grid, (int, float)):  # one value from --finetune-option lr_grid=…
            self.lr_grid = (float(self.lr_grid),)
        self.lr_grid = tuple(float(x) for x in self.lr_grid)
        if self.seeds < 0 or not self.lr_grid or self.epochs <= 0 or self.batch_size < 1:
            raise EmbcompressError("seeds must be ≥ 0 (0: only choose the learning rate), batch size ≥ 1, "
                                   "epochs > 0 and lr_grid non-empty")
        if self.seeds == 0 and self.lr is not None:
            raise EmbcompressError("seeds=0 only chooses the learning rate; leave lr unset")

    @classmethod
    def from_options(cls, options: dict) -> "FinetuneSettings":
        """Build from user options, ignoring ``None`` (= keep the default); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise EmbcompressError(f"unknown fine-tuning option(s) {', '.join(unknown)}; use: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in options.items() if v is not None})


def apply_embedding_policy(model: nn.Module, policy: str) -> None:
    if policy not in POLICIES:
        raise EmbcompressError(f"unknown embedding policy {policy!r}; use one of {', '.join(POLICIES)}")
    emb = find_input_embedding(model)
    emb.requires_grad_(False)
    compressed = isinstance(emb, CompressedEmbedding)
    if policy == "all" or (policy == "paper" and not compressed):
        trainable = [n for n, p in emb.named_parameters()]
    elif policy == "decoder" or (policy == "paper" and emb.paper_trains_decoder):
        trainable = emb.shared_names() if compressed else []  # only parameters among them can train
    else:
        trainable = []
    params = dict(emb.named_parameters())
    for name in trainable:
        if name in params:
            params[name].requires_grad_(True)


def with_head(base: nn.Module, tokenizer, auto_class: str, what: str, **config_updates) -> nn.Module:
    """A fresh task model (``AutoModelFor...``) whose body is ``base``'s, compressed embedding included."""
    import transformers

    config = base.config
    for key, value in config_updates.items():
        setattr(config, key, value)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    try:
        model = getattr(transformers, auto_class).from_config(config)
    except ValueError:
        raise EmbcompressError(f"{type(base).__name__} has no {what} head in transformers; "
                               "use an encoder such as minilm-l6") from None
    setattr(model, model.base_model_prefix, base.base_model)
    return model.to(next(base.parameters()).device)  # the fresh head joins the body (on a GPU if it is there)


def fine_tune(model: nn.Module, examples: list[int], make_batch: Callable[[list[int]], dict],
              settings: FinetuneSettings, desc: str) -> None:
    """Train ``model`` in place on ``examples`` (indices given to ``make_batch``, which returns the
    model's keyword arguments, labels included), shuffled with ``settings.seed`` every epoch."""
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    order = list(examples)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    apply_embedding_policy(model, settings.embedding_policy)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=0.0)
    steps_per_epoch = max(1, -(-len(order) // settings.batch_size))
    total_steps = max(1, int(steps_per_epoch * settings.epochs))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total_steps))
    device = next(model.parameters()).device
    step = 0
    with tqdm(total=total_steps, desc=desc, disable=not settings.progress, leave=False) as bar:
        while step < total_steps:
            for start in range(0, len(order), settings.batch_size):
                if step >= total_steps:
                    break
                batch = {k: v.to(device) for k, v in make_batch(order[start : start + settings.batch_size]).items()}
                loss = model(**batch).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            rng.shuffle(order)
    model.eval()


def run_protocol(base: nn.Module, settings: FinetuneSettings, train_items: list, held_out_split: Callable,
                 train_and_score: Callable[[nn.Module, list, Any, FinetuneSettings], dict[str, Any]]) -> dict[str, Any]:
    """The fine-tuning protocol every GLUE/SQuAD number goes through.

    ``train_and_score(model, train, evaluate_on, settings)`` fine-tunes a copy of the body on ``train``
    and scores ``evaluate_on`` (None: the reported dev split) → a dict with ``value``.
    ``held_out_split(train_items)`` → (fit, held_out): where the learning rate is chosen when
    ``settings.lr`` is None. Every run starts from a fresh copy of ``base``; ``base`` is never trained.
    """
    lr, search = settings.lr, None
    if lr is None:
        fit, held_out = held_out_split(train_items)
        fit = fit[: settings.lr_search_examples]
        search = {}
        for candidate in settings.lr_grid:
            s = replace(settings, lr=candidate, seeds=1, max_train_examples=None)
            search[candidate] = train_and_score(copy.deepcopy(base), fit, held_out, s)["value"]
        lr = max(search, key=search.get)
    chosen = {} if search is None else {"lr_search": {f"{k:g}": v for k, v in search.items()}}
    if settings.seeds == 0:  # the choice alone (a benchmark fixes one lr per task for every method)
        return {"value": search[lr], "lr": lr, **chosen, "per_seed": [], "seeds": []}
    runs = [train_and_score(copy.deepcopy(base), train_items, None, replace(settings, lr=lr, seed=settings.seed + k))
            for k in range(settings.seeds)]
    values = [r["value"] for r in runs]
    out = {k: statistics.fmean(r[k] for r in runs) for k, v in runs[0].items() if isinstance(v, float)}
    out |= {k: v for k, v in runs[0].items() if not isinstance(v, float)}
    out |= {"value": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values, "seeds": [settings.seed + k for k in range(settings.seeds)], "lr": lr, **chosen}
    return out


def seeded(seed: int) -> None:
    """A run's randomness (the fresh head's initialisation, dropout) from its seed alone."""
    random.seed(seed)
    torch.manual_seed(seed)
