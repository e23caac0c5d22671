"""Importance-aware bit allocation under an exact byte budget.

The rows that matter most (frequent tokens) are kept as int-k (default int8 per 32 values); every row
also has a cheap product-quantized copy (shape-gain PQ, 1 byte per ``cold_sub_dim`` values) that serves
the rest. The split follows a target ratio against fp16: the cold tier is sized first, the hot tier
takes what is left. Importance is either a data-free proxy (``token-id``: BPE ids are roughly in merge
order, so low ids are frequent tokens) or per-token counts from a calibration text (passed in as
``row_weights``); every result says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import EmbcompressError
from . import int as int_, pq
from .importance import calibration_counts, check_importance, token_id_weights
from .registry import register_method
from .base import CompressedEmbedding, check_ratio, check_weight, dtype_name

NAME = "mixed"


@dataclass
class MixedConfig:
    ratio: float = 8.0  # bytes of the fp16 matrix / bytes stored (everything counted)
    hot_bits: int = 8
    hot_group_size: int = 32
    cold_sub_dim: int | None = None  # None: the finest PQ whose tier fits in cold_share of the budget
    cold_share: float = 0.6
    importance: str = "token-id"
    seed: int = 1
    method: str = NAME

    def __post_init__(self):
        check_ratio(self.ratio)
        check_importance(self.importance)


class MixedEmbedding(CompressedEmbedding):
    method = NAME
    shared = ("cold.codebooks",)

    def __init__(self, num_embeddings, embedding_dim, num_hot=0, hot_bits=8, hot_group_size=32, cold_sub_dim=8, **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.num_hot = num_hot
        self.register_buffer("hot_ids", torch.empty(num_hot, dtype=torch.int32))  # sorted
        self.hot = int_.IntEmbedding(num_hot, embedding_dim, bits=hot_bits, group_size=hot_group_size)
        self.cold = pq.PqEmbedding(num_embeddings, embedding_dim, sub_dim=cold_sub_dim, shape_gain=True)

    def method_spec(self):
        return {"num_hot": self.num_hot, "hot_bits": self.hot.bits, "hot_group_size": self.hot.group_size,
                "cold_sub_dim": self.cold.sub_dim}

    def fused_logits(self, flat):
        """Every row's logit from its PQ codes (lookup tables), the hot rows' from their int codes instead."""
        h = flat.float()
        out = self.cold.logits(h)
        if self.num_hot:
            out[:, self.hot_ids.long()] = self.hot.logits(h)
        return out

    def decode(self, ids):
        out = self.cold.decode(ids)
        if self.num_hot:
            slot = torch.searchsorted(self.hot_ids, ids.to(torch.int32)).clamp_max(self.num_hot - 1)
            hot = (self.hot_ids[slot] == ids).reshape(-1).nonzero().squeeze(1)
            if len(hot):
                flat = out.view(-1, self.embedding_dim)
                self.hot.decode_into(flat, hot, slot.reshape(-1)[hot])
        return out


def cold_config(sub_dim: int, seed: int = 1) -> pq.PqConfig:
    return pq.PqConfig(sub_dim=sub_dim, shape_gain=True, seed=seed)


def hot_config(config: MixedConfig) -> int_.IntConfig:
    return int_.IntConfig(bits=config.hot_bits, group_size=config.hot_group_size)


def cold_bytes(num_rows: int, dim: int, sub_dim: int) -> int:
    return pq.PqEmbedding.storage(cold_config(sub_dim), dim).bytes(num_rows)


def hot_row_bytes(dim: int, config: MixedConfig) -> int:
    return int_.IntEmbedding.storage(hot_config(config), dim).per_row + 4  # and its int32 id


def plan(num_rows: int, dim: int, config: MixedConfig) -> tuple[int, int]:
    """(cold_sub_dim, num_hot) that fill the byte budget exactly or just under it."""
    budget = num_rows * dim * 2 / config.ratio
    if config.cold_sub_dim is not None:
        choices = [config.cold_sub_dim]
    else:
        choices = [s for s in (2, 4, 8, 16, 32, 64) if dim % s == 0]
    for sub in choices:
        if dim % sub:
            raise EmbcompressError(f"cold_sub_dim {sub} must divide the row length {dim}")
    fitting = [s for s in choices if cold_bytes(num_rows, dim, s) <= budget]
    if fitting:
        # the finest cold tier within its share of the budget; else the cheapest one that fits at all
        within = [s for s in fitting if cold_bytes(num_rows, dim, s) <= config.cold_share * budget]
        sub = within[0] if within else min(fitting, key=lambda s: cold_bytes(num_rows, dim, s))
        spare = budget - cold_bytes(num_rows, dim, sub)
        return sub, int(min(num_rows, spare // hot_row_bytes(dim, config)))
    smallest = min(cold_bytes(num_rows, dim, s) for s in choices)
    raise EmbcompressError(
        f"ratio {config.ratio} is beyond what mixed can reach for {num_rows}x{dim} "
        f"(at least {smallest:,} bytes, ratio {num_rows * dim * 2 / smallest:.1f}); ask for less"
    )


def fit(weight: torch.Tensor, config: MixedConfig, row_weights: torch.Tensor | None = None) -> MixedEmbedding:
    check_weight(weight)
    num_rows, dim = weight.shape
    int_.check_config(hot_config(config), dim)
    counts = calibration_counts(config.importance, row_weights)
    sub, num_hot = plan(num_rows, dim, config)
    if counts is not None:
        order = torch.argsort(-counts, stable=True)  # ties keep the token-id order
        weights = counts + 1.0
    else:
        order = torch.arange(num_rows)
        weights = token_id_weights(num_rows)
    hot_ids = torch.sort(order[:num_hot]).values
    cold_weights = weights.clone()
    cold_weights[hot_ids] = 0.0  # the cold codebooks serve the cold rows
    module = MixedEmbedding(num_rows, dim, num_hot, config.hot_bits, config.hot_group_size, sub,
                            output_dtype=dtype_name(weight.dtype))
    module.hot_ids.copy_(hot_ids.to(torch.int32))
    hot = int_.fit(weight[hot_ids.to(weight.device)], hot_config(config))
    module.hot.load_state_dict(hot.state_dict())
    cold = pq.fit(weight, cold_config(sub, config.seed), row_weights=cold_weights)
    module.cold.load_state_dict(cold.state_dict())
    return module.to(weight.device)


register_method(NAME, config=MixedConfig, fit=fit, module=MixedEmbedding)
