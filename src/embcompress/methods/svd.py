"""Truncated SVD baseline: ``E ≈ (U Σ) · Vᵀ``, uncentred, as in the paper."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_method
from ..errors import EmbcompressError
from .base import CompressedEmbedding, Storage, SizeConfig, check_weight, dtype_from_name, dtype_name, resolve_rank

NAME = "svd"


@dataclass
class SvdConfig(SizeConfig):
    """``randomized=False`` is the exact LAPACK SVD (deterministic); ``True`` uses
    ``torch.svd_lowrank`` (Halko et al.) seeded with ``seed`` and ``niter`` power iterations."""

    randomized: bool = False
    niter: int = 4
    seed: int = 0
    dtype: str | None = None  # storage dtype of the factors; None keeps the weight's dtype
    method: str = NAME


def rank_for_ratio(num_rows: int, dim: int, ratio: float) -> int:
    """The paper's matching rule: k_svd = int(V·d / (CR·(V + d)))."""
    return int(num_rows * dim / (ratio * (num_rows + dim)))


class SvdEmbedding(CompressedEmbedding):
    method = NAME
    shared = ("basis",)

    def __init__(self, num_embeddings: int, embedding_dim: int, rank: int, factor_dtype: str = "float32", **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.rank = rank
        self.factor_dtype = factor_dtype
        dtype = dtype_from_name(factor_dtype)
        self.codes = nn.Parameter(torch.empty(num_embeddings, rank, dtype=dtype))  # U Σ
        self.basis = nn.Parameter(torch.empty(rank, embedding_dim, dtype=dtype))  # Vᵀ

    def method_spec(self):
        return {"rank": self.rank, "factor_dtype": self.factor_dtype}

    @classmethod
    def storage(cls, config, dim):
        if config.rank is None:
            raise EmbcompressError("the storage of an SVD part needs its rank")
        size = dtype_from_name(config.dtype or "float32").itemsize
        return Storage(per_row=config.rank * size, shared=config.rank * dim * size)

    def decode(self, ids):
        return F.embedding(ids, self.codes).float() @ self.basis.float()

    def logits(self, hidden, chunk_rows: int = 0):
        # (h · V) · (UΣ)ᵀ: never builds the V×d matrix.
        return (hidden @ self.basis.to(hidden.dtype).T) @ self.codes.to(hidden.dtype).T


def fit(weight: torch.Tensor, config: SvdConfig) -> SvdEmbedding:
    check_weight(weight)
    num_rows, dim = weight.shape
    rank = resolve_rank(config, num_rows, dim, rank_for_ratio)
    w = weight.detach().float()
    if config.randomized:
        with torch.random.fork_rng(devices=[w.device] if w.device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            u, s, v = torch.svd_lowrank(w, q=rank, niter=config.niter)
        vt = v.T
    else:
        u, s, vt = torch.linalg.svd(w, full_matrices=False)
        u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    storage = config.dtype or dtype_name(weight.dtype)
    module = SvdEmbedding(num_rows, dim, rank, factor_dtype=storage, output_dtype=dtype_name(weight.dtype))
    with torch.no_grad():
        module.codes.copy_(u * s)
        module.basis.copy_(vt)
    return module.to(weight.device)


register_method(NAME, config=SvdConfig, fit=fit, module=SvdEmbedding)
