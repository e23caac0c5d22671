"""Importance-aware bit allocation across quantized tiers, under an exact byte budget.

Every row gets one tier (e.g. int4, int3, int2 per 32 values, shape-gain PQ with 4 values a byte, or
dropped) chosen by a Lagrangian rate–distortion allocation: row i takes the tier minimising
``importance_i · relative_error_i(tier) + λ · bytes(tier)``, with λ found by bisection so the total,
a 1-byte tier code per row included, fits the budget. Measured on SmolLM2, quantization noise is far
less harmful than low-rank or product-quantization error of the same size, and the damage sits on
frequent tokens: this spends the bytes there. Importance: ``token-id`` (data-free; BPE ids follow merge
order, so low ids are frequent) or ``calibration`` counts from a text that is not the evaluation text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import EmbcompressError
from . import int as int_, pq, svd
from .importance import calibration_counts, check_importance, token_id_weights
from .registry import register_method
from .base import CompressedEmbedding, Storage, residual, check_rank, check_ratio, check_weight, dtype_name, split_center

NAME = "tiered"


@dataclass
class TieredConfig:
    ratio: float = 8.0  # bytes of the fp16 matrix / bytes stored (everything counted)
    # bits:group_size (int-k), pqN (shape-gain PQ, N values a byte, its codebooks paid once) or 0 (drop)
    tiers: str = "4:32,3:32,2:32,2:64,0"
    importance: str = "token-id"
    # share of the data-free token-id prior mixed into calibration importance: a floor for the tokens
    # the calibration text never saw (it guards against a calibration text unlike the deployment's)
    prior: float = 0.0
    center: bool = False  # quantize W − column mean; a dropped row then decodes to the mean
    row_norms: bool = False  # every kept row also stores its fp16 norm (2 bytes) and is rescaled to it
    # a rank-r SVD part (fp16) kept for every row, tiers quantize the rest: each row's coefficient on
    # the dominant direction stays exact, which perplexity needs far more than Frobenius error says
    rank: int = 0
    method: str = NAME

    def __post_init__(self):
        check_ratio(self.ratio)
        check_importance(self.importance)
        if not 0.0 <= self.prior <= 1.0:
            raise EmbcompressError(f"prior is a share between 0 and 1 (got {self.prior})")
        parse_tiers(self.tiers)


def parse_tiers(text: str) -> list[tuple]:
    """'4:32,pq4,0' → [(4, 32), ("pq", 4), (0, 0)]."""
    tiers = []
    for item in text.split(","):
        item = item.strip()
        try:
            if item.startswith("pq"):
                tiers.append(("pq", int(item[2:])))
            else:
                bits, _, group = item.partition(":")
                tiers.append((int(bits), int(group or 0)))
        except ValueError:
            raise EmbcompressError(f"tier {item!r} must look like bits:group_size (e.g. 4:32), pq4 or 0") from None
    if not tiers or len(tiers) > 255:
        raise EmbcompressError("give between 1 and 255 tiers, e.g. --option tiers=4:32,2:32,0")
    return tiers


def is_pq(tier) -> bool:
    return tier[0] == "pq"


def tier_config(tier, row_norms: bool = False):
    """The config of the method that stores a tier's rows (None for the dropped tier)."""
    if is_pq(tier):
        return pq.PqConfig(sub_dim=tier[1], shape_gain=True)
    bits, group = tier
    return int_.IntConfig(bits=bits, group_size=group, row_norms=row_norms) if bits else None


def tier_class(tier):
    return pq.PqEmbedding if is_pq(tier) else int_.IntEmbedding


def tier_storage(tier, dim: int, row_norms: bool = False) -> Storage:
    config = tier_config(tier, row_norms)
    return Storage(0, 0) if config is None else tier_class(tier).storage(config, dim)


def tier_module(tier, rows: int, dim: int, row_norms: bool) -> nn.Module:
    config = tier_config(tier, row_norms)
    if config is None:
        return nn.Identity()
    if is_pq(tier):
        return pq.PqEmbedding(rows, dim, sub_dim=config.sub_dim, shape_gain=True)
    return int_.IntEmbedding(rows, dim, bits=config.bits, group_size=config.group_size, row_norms=row_norms)


class TieredEmbedding(CompressedEmbedding):
    method = NAME

    def __init__(self, num_embeddings, embedding_dim, tiers=(), tier_rows=(), row_norms=False, rank=0, **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.tiers = [tuple(t) for t in tiers]
        self.tier_rows = list(tier_rows)
        self.row_norms = bool(row_norms)
        self.rank = int(rank)
        if self.rank:
            self.low_rank = svd.SvdEmbedding(num_embeddings, embedding_dim, self.rank, factor_dtype="float16")
        self.register_buffer("tier_of_row", torch.empty(num_embeddings, dtype=torch.uint8))
        self.parts = nn.ModuleList(tier_module(t, n, embedding_dim, row_norms) for t, n in zip(self.tiers, self.tier_rows))
        self._slots = None  # row → index inside its tier; derived from tier_of_row, so not stored
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_slots", None))

    def method_spec(self):
        return {"tiers": self.tiers, "tier_rows": self.tier_rows, "row_norms": self.row_norms, "rank": self.rank}

    def slots(self) -> torch.Tensor:
        if self._slots is None or self._slots.device != self.tier_of_row.device:
            t = self.tier_of_row.long()
            onehot = torch.nn.functional.one_hot(t, len(self.tiers))
            self._slots = ((onehot.cumsum(0) - 1) * onehot).sum(-1)
        return self._slots

    def fused_logits(self, flat):
        """Each tier's logits from its own stored form, written to its rows' columns, plus the rank part
        as (h·Vᵀ)·(UΣ)ᵀ; dropped rows get the rank part only."""
        h = flat.float()
        # every tier's logits side by side (tier by tier, rows ascending within a tier: a part's row order),
        # a dropped tier as zeros, then one gather puts each row's logit in its column
        pieces = [torch.zeros(len(h), n, device=h.device) if isinstance(part, nn.Identity) or not n
                  else part.logits(h).float() for part, n in zip(self.parts, self.tier_rows)]
        out = torch.cat(pieces, dim=1).index_select(1, self.tier_order())
        if self.rank:
            out += self.low_rank.logits(h)
        return out

    def tier_order(self) -> torch.Tensor:
        """For each row, its column in the tier-by-tier concatenation of the parts' logits."""
        slots = self.slots()
        if getattr(self, "_order_of", None) is not slots:
            starts = torch.tensor([0] + self.tier_rows[:-1], device=slots.device).cumsum(0)
            self._order = starts[self.tier_of_row.long()] + slots
            self._order_of = slots
        return self._order

    def decode(self, ids):
        flat_ids = ids.reshape(-1)
        tier, slot = self.tier_of_row[flat_ids], self.slots()[flat_ids]
        if self.rank:
            out = self.low_rank.decode(flat_ids)
        else:  # every row is written below (dropped rows as zeros), so no zero-fill pass
            out = torch.empty(len(flat_ids), self.embedding_dim, device=ids.device)
        for k, part in enumerate(self.parts):
            where = (tier == k).nonzero().squeeze(1)
            if not len(where):
                continue
            if isinstance(part, nn.Identity):  # a dropped row: zero, plus the rank part if any
                if not self.rank:
                    out.index_fill_(0, where, 0.0)
            else:  # each row written once, added to its rank part if any
                part.decode_into(out, where, slot[where], add_to=bool(self.rank))
        return out.reshape(*ids.shape, self.embedding_dim)


def importance_weights(num_rows: int, config: TieredConfig, row_weights: torch.Tensor | None) -> torch.Tensor:
    counts = calibration_counts(config.importance, row_weights)
    prior = token_id_weights(num_rows)
    if counts is None:
        return prior
    return (1 - config.prior) * (counts + 0.5) / (counts.sum() + 0.5 * num_rows) + config.prior * prior / prior.sum()


def allocate(errors: torch.Tensor, weights: torch.Tensor, row_bytes: torch.Tensor, budget: float) -> torch.Tensor:
    """Tier per row minimising Σ w·err subject to Σ bytes ≤ budget (Lagrangian bisection on λ)."""
    def choose(lam):
        return torch.argmin(weights[:, None] * errors + lam * row_bytes[None, :], dim=1)

    if row_bytes[choose(0.0)].sum() <= budget:
        return choose(0.0)
    lo, hi = 0.0, 1.0
    while row_bytes[choose(hi)].sum() > budget:
        hi *= 4
        if hi > 1e30:
            raise EmbcompressError("the byte budget is below what the cheapest tier needs; ask for a smaller ratio")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if row_bytes[choose(mid)].sum() <= budget else (mid, hi)
    return choose(hi)


def rank_config(config: TieredConfig) -> svd.SvdConfig:
    return svd.SvdConfig(rank=config.rank, dtype="float16")


def fit(weight: torch.Tensor, config: TieredConfig, row_weights: torch.Tensor | None = None) -> TieredEmbedding:
    check_weight(weight)
    num_rows, dim = weight.shape
    tiers = parse_tiers(config.tiers)
    if config.rank:
        check_rank(config.rank, dim)
    for tier in tiers:
        if tier_config(tier) is not None:
            (pq if is_pq(tier) else int_).check_config(tier_config(tier), dim)
    # the 1-byte tier codes (and the fp16 mean, low-rank factors and PQ codebooks) are paid first,
    # each at the cost its own method states
    storages = [tier_storage(t, dim, config.row_norms) for t in tiers]
    low_rank_bytes = svd.SvdEmbedding.storage(rank_config(config), dim).bytes(num_rows) if config.rank else 0
    budget = (num_rows * dim * 2 / config.ratio - num_rows - 2 * dim * config.center - low_rank_bytes
              - sum(s.shared for s in storages))
    row_bytes = torch.tensor([s.per_row for s in storages], dtype=torch.float64)
    if budget < 0:
        raise EmbcompressError(f"at ratio {config.ratio} the shared parts (tier codes, low-rank factors, PQ codebooks) "
                               "alone exceed the budget; lower the ratio or drop the pq tiers / rank")
    if row_bytes.min() * num_rows > budget:
        raise EmbcompressError(f"ratio {config.ratio} is below what these tiers can reach; add a cheaper tier (e.g. 0) or lower the ratio")
    norms = weight.detach().float().norm(dim=-1).clamp_min(1e-12)
    w, mean = split_center(weight.detach().float(), config.center)
    low = None
    if config.rank:
        low = svd.fit(w, rank_config(config))
        w = residual(w, low)
    importance = importance_weights(num_rows, config, row_weights).double()
    errors, recon = [], []  # squared error relative to the original row's norm
    for tier in tiers:
        if tier[0] == 0:
            errors.append((w.norm(dim=-1) / norms).pow(2).cpu())
            recon.append(None)
            continue
        if is_pq(tier):  # codebooks follow the importance, as the allocation does
            q = pq.fit(w, tier_config(tier), row_weights=importance)
        else:
            q = int_.fit(w, tier_config(tier, config.row_norms))
        r = q.reconstruct()
        errors.append(((r - w).norm(dim=-1) / norms).pow(2).cpu())
        recon.append(q)
    errors = torch.stack(errors, dim=1).double()
    choice = allocate(errors, importance, row_bytes, budget)
    counts = [int((choice == k).sum()) for k in range(len(tiers))]
    module = TieredEmbedding(num_rows, dim, tiers, counts, config.row_norms, config.rank,
                             output_dtype=dtype_name(weight.dtype), centered=config.center)
    if low is not None:
        module.low_rank.load_state_dict(low.state_dict())
    module.set_center(mean)
    module.tier_of_row.copy_(choice.to(torch.uint8))
    for k, q in enumerate(recon):
        if q is not None and counts[k]:
            rows = (choice == k).nonzero().squeeze(1).to(w.device)
            module.parts[k].load_state_dict(q.take_rows(rows).state_dict())
    return module.to(weight.device)


register_method(NAME, config=TieredConfig, fit=fit, module=TieredEmbedding, presets={
    # finer tiers over a rank-1 part (chosen on validation text: benchmarks/quality_per_byte.md)
    "tiered-rank1": {"tiers": "8:32,4:32,3:32,3:64,2:32,2:64,1:32,1:64,0", "rank": 1},
    # shape-gain PQ rows at 2 and 1 bits a value in place of the int2/int1 tiers (benchmarks/prior_probe.sh)
    "tiered-pq": {"tiers": "8:32,4:32,3:32,3:64,pq4,pq8,0", "rank": 1},
})
