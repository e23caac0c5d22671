"""Low-rank plus a quantized residual: ``E ≈ U·V (SVD or the paper's autoencoder, fp16 factors) +
Q(E − U·V)`` with ``Q`` the int-k group quantizer. The low-rank part takes the directions all rows
share; the quantizer then spends its levels on a residual with a smaller range than the rows had.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import EmbcompressError
from . import autoencoder, scalar, svd
from .base import CompressedEmbedding, check_rank, check_weight, dtype_name

NAME = "hybrid"
LOW_RANK = {"svd": svd, "autoencoder": autoencoder}


@dataclass
class Config:
    rank: int = 32
    low_rank: str = "svd"  # or "autoencoder" (the paper's loss, fast preset)
    bits: int = 2
    group_size: int = 32
    zero_point: bool = False
    method: str = NAME

    def __post_init__(self):  # fail before any model is loaded
        if self.low_rank not in LOW_RANK:
            raise EmbcompressError(f"unknown low-rank part {self.low_rank!r}; use one of {', '.join(LOW_RANK)}")
        scalar.Config(bits=self.bits)


class HybridEmbedding(CompressedEmbedding):
    method = NAME

    def __init__(self, num_embeddings, embedding_dim, low_rank_method="svd", low_rank_spec=None, residual_spec=None,
                 **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.low_rank_method = low_rank_method
        self.low_rank = LOW_RANK[low_rank_method].Module(**low_rank_spec)
        self.residual = scalar.Module(**residual_spec)

    def method_spec(self):
        return {"low_rank_method": self.low_rank_method, "low_rank_spec": self.low_rank.spec(),
                "residual_spec": self.residual.spec()}

    def decoder_parameter_names(self):
        return [f"low_rank.{n}" for n in self.low_rank.decoder_parameter_names()]

    def decode(self, ids):
        out = self.low_rank.decode(ids).contiguous()
        flat = out.view(-1, self.embedding_dim)  # the residual is added in place, through this view
        self.residual.decode_into(flat, torch.arange(len(flat), device=flat.device), ids.reshape(-1), add_to=True)
        return out


Module = HybridEmbedding


def fit(weight: torch.Tensor, config: Config) -> HybridEmbedding:
    check_weight(weight)
    num_rows, dim = weight.shape
    check_rank(config.rank, dim)
    scalar.check_config(scalar.Config(config.bits, config.group_size, config.zero_point), dim)
    part = LOW_RANK[config.low_rank]
    options = {"rank": config.rank, "dtype": "float16"}
    if config.low_rank == "autoencoder":
        options.update(autoencoder.FAST, progress=False)
    low = part.fit(weight, part.Config(**options))
    with torch.no_grad():
        rows = torch.arange(num_rows, device=weight.device)
        residual = torch.cat([weight[i : i + 16384].float() - low.decode(rows[i : i + 16384])
                              for i in range(0, num_rows, 16384)])
    res = scalar.fit(residual, scalar.Config(config.bits, config.group_size, config.zero_point))
    module = HybridEmbedding(num_rows, dim, config.low_rank, low.spec(), res.spec(), output_dtype=dtype_name(weight.dtype))
    module.low_rank.load_state_dict(low.state_dict())
    module.residual.load_state_dict(res.state_dict())
    return module.to(weight.device)
