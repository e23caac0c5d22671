"""What every compressed embedding is: a drop-in for ``nn.Embedding`` that stores less.

A method module provides three things (see ``methods/__init__.py``):
``Config`` (a dataclass naming every knob), ``fit(weight, config) -> CompressedEmbedding``, and
the ``CompressedEmbedding`` subclass itself, which can be rebuilt empty from ``spec()`` and then
filled from a state dict (that is how loading works without materialising the dense matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .. import kernels
from ..errors import EmbcompressError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_from_name(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise EmbcompressError(f"unknown dtype {name!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class SizeConfig:
    """Size knobs shared by all methods: give exactly one of ``ratio`` or ``rank``."""

    ratio: float | None = None
    rank: int | None = None

    def __post_init__(self):  # fail before any model is loaded
        if self.ratio is not None:
            check_ratio(self.ratio)
        if self.rank is not None and self.rank < 1:
            raise EmbcompressError(f"rank must be at least 1 (got {self.rank})")


def check_weight(weight: torch.Tensor) -> None:
    if weight.ndim != 2:
        raise EmbcompressError(f"expected a 2-D embedding matrix, got shape {tuple(weight.shape)}")
    # by blocks of rows: isfinite on the whole matrix makes temporaries ~2x its size (1.9 GiB for a 1 GiB one),
    # which was most of the peak memory of a streamed compress
    step = max(1, (16 << 20) // max(1, weight.shape[1] * weight.element_size()))
    if not all(bool(torch.isfinite(weight[i:i + step]).all()) for i in range(0, weight.shape[0], step)):
        raise EmbcompressError("the embedding matrix holds NaN or Inf values; fix or reload the model weights first")


def split_center(weight: torch.Tensor, center: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W − mean, mean)`` with the fp16 mean a centred module will add back, or ``(W, None)``."""
    if not center:
        return weight, None
    mean = weight.detach().float().mean(0).half()
    return weight.detach().float() - mean.float(), mean


def check_ratio(ratio: float) -> None:
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 1):
        raise EmbcompressError(f"compression ratio must be > 1 (got {ratio}); pass e.g. --ratio 5")


def check_rank(rank: int, dim: int, what: str = "rank") -> None:
    if not (1 <= rank < dim):
        raise EmbcompressError(f"{what} must be between 1 and {dim - 1} for a {dim}-dim embedding (got {rank})")


def resolve_rank(cfg: SizeConfig, num_rows: int, dim: int, rank_for_ratio) -> int:
    """The latent size asked for, directly or through a target ratio (method-specific formula)."""
    if (cfg.ratio is None) == (cfg.rank is None):
        raise EmbcompressError("give exactly one of ratio or rank (e.g. --ratio 5 or --rank 64)")
    if cfg.ratio is not None:
        check_ratio(cfg.ratio)
        rank = rank_for_ratio(num_rows, dim, cfg.ratio)
        if rank < 1:
            raise EmbcompressError(f"ratio {cfg.ratio} is too high for a {num_rows}x{dim} matrix; use a smaller ratio")
    else:
        rank = int(cfg.rank)
    check_rank(rank, dim)
    return rank


@dataclass(frozen=True)
class Storage:
    """What a method stores for N rows: ``per_row · N + shared`` bytes."""

    per_row: int
    shared: int

    def bytes(self, rows: int) -> int:
        return self.per_row * rows + self.shared


def residual(weight: torch.Tensor, part: "CompressedEmbedding", chunk: int = 16384) -> torch.Tensor:
    """``weight − part.decode(all rows)`` in float32, a chunk of rows at a time (never two V×d temporaries)."""
    rows = torch.arange(weight.shape[0], device=weight.device)
    with torch.no_grad():
        return torch.cat([weight[i : i + chunk].float() - part.decode(rows[i : i + chunk])
                          for i in range(0, weight.shape[0], chunk)])


class CompressedEmbedding(nn.Module):
    """Base class. Subclasses implement ``decode(ids)``: the reconstructed rows, in weight space.

    The storage contract, which composite methods (tiered, mixed, hybrid) use instead of knowing
    another method's layout: ``storage(config, dim)`` says how many bytes N rows cost, ``shared_names()``
    which parameters serve every row, and ``take_rows(rows)`` gives the module for a subset of rows.
    """

    method: ClassVar[str]
    # the paper's fine-tuning policy trains this module's shared part (the autoencoder's decoder)
    paper_trains_decoder: ClassVar[bool] = False
    shared: ClassVar[tuple[str, ...]] = ()  # names of the tensors that serve every row

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        scale: float = 1.0,
        zero_padding_row: bool = False,
        output_dtype: str = "float32",
        centered: bool = False,
    ):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        # Some models multiply inside their embedding module (Gemma: sqrt(hidden)); we keep that.
        self.scale = float(scale)
        # A padding row that was exactly zero stays exactly zero.
        self.zero_padding_row = bool(zero_padding_row)
        self.output_dtype = output_dtype
        # Rows share a large common part (SmolLM2: see quality_per_byte.md); a method
        # that compresses ``W − mean`` spends its levels on what differs. The mean is stored in fp16.
        self.centered = bool(centered)
        if self.centered:
            self.register_buffer("center", torch.zeros(embedding_dim, dtype=torch.float16))

    @staticmethod
    def tracks_grad(*tensors: torch.Tensor | None) -> bool:
        """Whether autograd must see these tensors (distillation, fine-tuning): decode paths then use
        out-of-place ops, which give the same floats as the in-place ones used for plain lookups."""
        return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)

    # -- what subclasses provide -------------------------------------------------------------
    def decode(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode_into(self, out: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor, add_to: bool = False) -> None:
        """``out[rows] = decode(ids)`` (``+=`` with ``add_to``) for 1-D ``rows``/``ids``, distinct rows;
        modules with a fused kernel write in place."""
        (out.index_add_ if add_to else out.index_copy_)(0, rows, self.decode(ids))

    def method_spec(self) -> dict[str, Any]:
        """Constructor arguments beyond the shared ones (JSON-able)."""
        return {}

    def shared_names(self) -> list[str]:
        """Parameters and buffers that serve every row (decoder, basis, codebooks), not one row each."""
        return list(self.shared)

    @classmethod
    def storage(cls, config, dim: int) -> Storage:
        """Bytes for N rows of ``dim`` values with ``config`` (sizes given explicitly, e.g. a rank)."""
        raise NotImplementedError(f"{cls.__name__} does not state a per-row storage (its bytes follow a budget)")

    def take_rows(self, rows: torch.Tensor) -> "CompressedEmbedding":
        """The same method holding only ``rows`` (per-row tensors indexed, shared ones kept)."""
        shared = set(self.shared_names()) | {"center"}
        spec = {**self.spec(), "num_embeddings": len(rows), "padding_idx": None, "zero_padding_row": False}
        part = type(self)(**spec)
        part.load_state_dict({k: v if k in shared else v[rows] for k, v in self.state_dict().items()})
        return part

    # -- shared behaviour --------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "scale": self.scale,
            "zero_padding_row": self.zero_padding_row,
            "output_dtype": self.output_dtype,
            "centered": self.centered,
            **self.method_spec(),
        }

    @property
    def weight_dtype(self) -> torch.dtype:
        return dtype_from_name(self.output_dtype)

    def _decode_rows(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.decode(ids)
        return out + self.center.float() if self.centered else out

    def set_center(self, mean: torch.Tensor | None) -> "CompressedEmbedding":
        if mean is not None:
            self.center.copy_(mean.half())
        return self

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self._decode_rows(input_ids)
        if self.zero_padding_row and self.padding_idx is not None:
            out = out.masked_fill((input_ids == self.padding_idx).unsqueeze(-1), 0.0)
        if self.scale != 1.0:
            out = out * self.scale
        return out.to(self.weight_dtype)

    def reconstruct(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Dense rows (all rows when ``rows`` is None), as the original matrix had them (no scale)."""
        device = self._device()
        ids = torch.arange(self.num_embeddings, device=device) if rows is None else torch.as_tensor(rows, device=device)
        out = self._decode_rows(ids)
        if self.zero_padding_row and self.padding_idx is not None:
            out = out.masked_fill((ids == self.padding_idx).unsqueeze(-1), 0.0)
        return out.to(self.weight_dtype)

    def fused_logits(self, flat: torch.Tensor) -> torch.Tensor | None:
        """(T, V) float32 ``flat @ Wᵀ`` from the stored form without decoding rows (no centre, no padding
        row), or None where this method or this device has no such path. ``logits`` calls it only for
        T ≤ kernels.FUSED_LOGITS_MAX_TOKENS."""
        return None

    def logits(self, hidden: torch.Tensor, chunk_rows: int = 16384) -> torch.Tensor:
        """``hidden @ W.T`` for the tied head: from the codes where the method can (``fused_logits``),
        else by decoding the matrix chunk by chunk, never whole."""
        flat = hidden.reshape(-1, self.embedding_dim)
        # many vectors (a prompt, a perplexity window): decoding chunks for one BLAS matmul is faster
        fused = self.fused_logits(flat) if flat.shape[0] <= kernels.FUSED_LOGITS_MAX_TOKENS else None
        if fused is not None:
            if self.centered:
                fused += (flat.float() @ self.center.float()).unsqueeze(-1)
            if self.zero_padding_row and self.padding_idx is not None:
                fused[:, self.padding_idx] = 0.0
            return fused.reshape(*hidden.shape[:-1], self.num_embeddings).to(hidden.dtype)
        parts = []
        for start in range(0, self.num_embeddings, chunk_rows):
            rows = torch.arange(start, min(start + chunk_rows, self.num_embeddings), device=hidden.device)
            parts.append(hidden @ self.reconstruct(rows).to(hidden.dtype).T)
        return torch.cat(parts, dim=-1)

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.state_dict().values())

    def nbytes(self) -> int:
        """Real storage bytes of everything kept (what ``save_compressed`` writes for this module)."""
        return sum(t.numel() * t.element_size() for t in self.state_dict().values())

    def _device(self) -> torch.device:
        for t in self.state_dict().values():
            return t.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, method={self.method}, nbytes={self.nbytes():,}"
