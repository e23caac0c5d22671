"""Product quantization: each row is cut into sub-vectors of ``sub_dim`` values; each sub-vector is
replaced by the index (uint8) of its nearest centroid in a per-subspace codebook of 256 fp16 centroids
(k-means by faiss). ``shape_gain=True`` quantizes only each row's direction and stores its norm in
fp16 (the paper's "direction is what you need", applied to quantization). Row weights (token
importance) make k-means spend its centroids where the frequent tokens are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import kernels
from ..errors import EmbcompressError
from .registry import register_method
from .base import CompressedEmbedding, Storage, check_weight, dtype_name, split_center

NAME = "pq"
CENTROIDS = 256


@dataclass
class PqConfig:
    sub_dim: int = 4  # values per byte of code: 4 → 2 bits a value
    shape_gain: bool = True
    iterations: int = 25
    seed: int = 1
    center: bool = False  # quantize W − column mean (kept in fp16)
    method: str = NAME

    def __post_init__(self):
        if self.sub_dim < 1:
            raise EmbcompressError(f"sub_dim must be at least 1 (got {self.sub_dim})")


class PqEmbedding(CompressedEmbedding):
    method = NAME
    shared = ("codebooks",)

    def __init__(self, num_embeddings, embedding_dim, sub_dim=4, shape_gain=True, **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.sub_dim, self.shape_gain = sub_dim, bool(shape_gain)
        subspaces = embedding_dim // sub_dim
        self.register_buffer("codes", torch.empty(num_embeddings, subspaces, dtype=torch.uint8))
        self.register_buffer("codebooks", torch.empty(subspaces, CENTROIDS, sub_dim, dtype=torch.float16))
        if self.shape_gain:
            self.register_buffer("norms", torch.empty(num_embeddings, dtype=torch.float16))

    def method_spec(self):
        return {"sub_dim": self.sub_dim, "shape_gain": self.shape_gain}

    @classmethod
    def storage(cls, config, dim):
        subspaces = dim // config.sub_dim
        return Storage(per_row=subspaces + 2 * config.shape_gain,  # uint8 codes, fp16 norm
                       shared=subspaces * CENTROIDS * config.sub_dim * 2 + 2 * dim * config.center)

    def _table_offsets(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes → rows of the flattened (S·256)-row codebook table."""
        return codes.int() + CENTROIDS * torch.arange(codes.shape[-1], device=codes.device, dtype=torch.int32)

    def _tables(self):
        """(S·256, sub_dim) centroids; with shape-gain also each centroid's squared norm, from which a
        decoded row's norm is summed (one small gather, no pass over the output), and the stored norms."""
        table = self.codebooks.float().flatten(0, 1)
        if not self.shape_gain:
            return table, None, None
        return table, table.square().sum(-1), self.norms

    def decode_into(self, out, rows, ids, add_to=False):
        if kernels.gather_pq(self.codes, *self._tables(), ids, out=out, rows=rows, add_to=add_to) is None:
            super().decode_into(out, rows, ids, add_to)

    def decode(self, ids):
        table, sq, norms = self._tables()
        fused = kernels.gather_pq(self.codes, table, sq, norms, ids)
        if fused is not None:
            return fused
        offsets = self._table_offsets(self.codes[ids])  # (..., S)
        out = F.embedding(offsets, table).flatten(-2)  # (..., d)
        if self.shape_gain:
            recon_norm = F.embedding_bag(offsets.reshape(-1, offsets.shape[-1]), sq.unsqueeze(-1), mode="sum")
            if self.tracks_grad(self.codebooks, norms):  # distillation: out of place, same floats
                factor = norms[ids].float().reshape(-1, 1) / recon_norm.sqrt().clamp_min(1e-12)
                return out * factor.reshape(*ids.shape, 1)
            factor = norms[ids].float().reshape(-1, 1) / recon_norm.sqrt_().clamp_min_(1e-12)
            out.mul_(factor.reshape(*ids.shape, 1))
        return out

    def _gain_factor(self) -> torch.Tensor:
        """(V,) stored norm / decoded norm of every row: fixed while codebooks and norms are, so kept
        between calls (a decode step would otherwise pay a pass over all codes for it)."""
        key = (self.codebooks.data_ptr(), self.codebooks._version, self.norms.data_ptr(), self.norms._version,
               self.codebooks.requires_grad or self.norms.requires_grad)
        if getattr(self, "_factor_key", None) != key or key[-1]:
            _, sq, _ = self._tables()  # |centroid|² per table entry
            offsets = self._table_offsets(self.codes)
            recon_norm = F.embedding_bag(offsets, sq.unsqueeze(-1), mode="sum").squeeze(-1).sqrt()
            self._factor = self.norms.float() / recon_norm.clamp_min(1e-12)
            self._factor_key = key
        return self._factor

    def logits(self, hidden, chunk_rows: int = 0):
        """``hidden @ Wᵀ`` from per-subspace lookup tables, never building W: each token's logit is
        the sum over subspaces of (hidden's sub-vector · its code's centroid)."""
        subspaces = self.codes.shape[1]
        h = hidden.reshape(-1, subspaces, self.sub_dim).float()  # (N, S, sub_dim)
        lut = torch.einsum("nsd,scd->scn", h, self.codebooks.float())  # (S, 256, N)
        factor = self._gain_factor() if self.shape_gain else None  # decoded rows are rescaled to their norms
        out = kernels.logits_pq(self.codes, lut.reshape(subspaces * CENTROIDS, -1), factor)  # (N, V)
        if out is None:
            # embedding_bag sums, for every row, the S table entries its codes pick: (V, N)
            out = F.embedding_bag(self._table_offsets(self.codes), lut.reshape(subspaces * CENTROIDS, -1), mode="sum")
            if factor is not None:
                out = out * factor.unsqueeze(-1)
            out = out.T
        out = out.reshape(*hidden.shape[:-1], self.num_embeddings)
        if self.centered:
            out = out + (hidden.float() @ self.center.float()).unsqueeze(-1)
        return out.to(hidden.dtype)


def check_config(config: PqConfig, dim: int) -> None:
    if dim % config.sub_dim:
        raise EmbcompressError(f"sub_dim {config.sub_dim} must divide the row length {dim}; try 2, 4 or 8")


def fit(weight: torch.Tensor, config: PqConfig, row_weights: torch.Tensor | None = None) -> PqEmbedding:
    import faiss

    check_weight(weight)
    num_rows, dim = weight.shape
    check_config(config, dim)
    if num_rows < CENTROIDS:
        raise EmbcompressError(f"product quantization needs at least {CENTROIDS} rows (got {num_rows}); use int")
    w, mean = split_center(weight.detach().float().cpu(), config.center)
    module = PqEmbedding(num_rows, dim, config.sub_dim, config.shape_gain,
                                       output_dtype=dtype_name(weight.dtype), centered=config.center)
    module.set_center(mean)
    if config.shape_gain:
        norms = w.norm(dim=-1)
        module.norms.copy_(norms.half())
        w = w / norms.clamp_min(1e-12).unsqueeze(-1)
    weights = None if row_weights is None else row_weights.float().cpu().numpy().astype(np.float32)
    faiss.omp_set_num_threads(torch.get_num_threads())
    for s in range(dim // config.sub_dim):
        x = np.ascontiguousarray(w[:, s * config.sub_dim : (s + 1) * config.sub_dim].numpy())
        km = faiss.Kmeans(config.sub_dim, CENTROIDS, niter=config.iterations, seed=config.seed + s, verbose=False,
                          min_points_per_centroid=1)
        km.train(x, weights=weights)
        _, assign = km.index.search(x, 1)
        module.codes[:, s] = torch.from_numpy(assign[:, 0].astype(np.uint8))
        module.codebooks[s] = torch.from_numpy(km.centroids).half()
    return module.to(weight.device)


register_method(NAME, config=PqConfig, fit=fit, module=PqEmbedding)
