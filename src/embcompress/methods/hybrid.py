"""Low-rank plus a quantized residual: ``E ≈ U·V (SVD or the paper's autoencoder, fp16 factors) +
Q(E − U·V)`` with ``Q`` the int-k group quantizer. The low-rank part takes the directions all rows
share; the quantizer then spends its levels on a residual with a smaller range than the rows had.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import EmbcompressError
from . import autoencoder, int as int_, svd
from .registry import METHODS, register_method
from .base import CompressedEmbedding, residual, check_rank, check_weight, dtype_name

NAME = "hybrid"
LOW_RANK = (svd.NAME, autoencoder.NAME)  # the registered methods a hybrid can use as its rank-k part


@dataclass
class HybridConfig:
    rank: int = 32
    low_rank: str = "svd"  # or "autoencoder" (the paper's loss, fast preset)
    bits: int = 2
    group_size: int = 32
    zero_point: bool = False
    method: str = NAME

    def __post_init__(self):  # fail before any model is loaded
        if self.low_rank not in LOW_RANK:
            raise EmbcompressError(f"unknown low-rank part {self.low_rank!r}; use one of {', '.join(LOW_RANK)}")
        int_.IntConfig(bits=self.bits)


class HybridEmbedding(CompressedEmbedding):
    method = NAME

    def __init__(self, num_embeddings, embedding_dim, low_rank_method="svd", low_rank_spec=None, residual_spec=None,
                 **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.low_rank_method = low_rank_method
        self.low_rank = METHODS[low_rank_method].module(**low_rank_spec)
        self.residual = int_.IntEmbedding(**residual_spec)

    def method_spec(self):
        return {"low_rank_method": self.low_rank_method, "low_rank_spec": self.low_rank.spec(),
                "residual_spec": self.residual.spec()}

    def shared_names(self):
        return [f"low_rank.{n}" for n in self.low_rank.shared_names()]

    def fused_logits(self, flat):
        """The low-rank part's logits (factorized) plus the int residual's (from its codes)."""
        h = flat.float()
        return self.low_rank.logits(h).float() + self.residual.logits(h).float()

    def decode(self, ids):
        out = self.low_rank.decode(ids).contiguous()
        flat = out.view(-1, self.embedding_dim)  # the residual is added in place, through this view
        self.residual.decode_into(flat, torch.arange(len(flat), device=flat.device), ids.reshape(-1), add_to=True)
        return out


def residual_config(config: HybridConfig) -> int_.IntConfig:
    return int_.IntConfig(bits=config.bits, group_size=config.group_size, zero_point=config.zero_point)


def fit(weight: torch.Tensor, config: HybridConfig) -> HybridEmbedding:
    check_weight(weight)
    num_rows, dim = weight.shape
    check_rank(config.rank, dim)
    int_.check_config(residual_config(config), dim)
    part = METHODS[config.low_rank]
    options = {"rank": config.rank, "dtype": "float16"}
    if config.low_rank == "autoencoder":
        options.update(autoencoder.FAST, progress=False)
    low = part.fit(weight, part.config(**options))
    res = int_.fit(residual(weight, low), residual_config(config))
    module = HybridEmbedding(num_rows, dim, config.low_rank, low.spec(), res.spec(), output_dtype=dtype_name(weight.dtype))
    module.low_rank.load_state_dict(low.state_dict())
    module.residual.load_state_dict(res.state_dict())
    return module.to(weight.device)


register_method(NAME, config=HybridConfig, fit=fit, module=HybridEmbedding)
