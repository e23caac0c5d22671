"""Scalar quantization: int-k (k = 1…8) per group of g values of a row, fp16 scales, bit-packed.

Symmetric by default (one fp16 scale a group, llama.cpp Q4_0 style: the value of largest magnitude
maps to the most negative level, so all 2^k levels are used); ``zero_point=True`` stores an fp16
offset too (min/max, asymmetric). ``search_scale`` tries a grid of scales per group and keeps the one
with the least squared error, which helps most at 2–3 bits. One bit is sign × the group's mean
absolute value (the least-squares scale for signs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import kernels
from ..errors import EmbcompressError
from .registry import register_method
from .base import CompressedEmbedding, Storage, check_weight, dtype_name, split_center
from .packing import pack_bits, unpack_float

NAME = "int"


@dataclass
class IntConfig:
    bits: int = 4
    group_size: int = 32
    zero_point: bool = False
    search_scale: bool = True
    center: bool = False  # quantize W − column mean (the mean kept in fp16); see base.split_center
    row_norms: bool = False  # rescale each decoded row to its stored fp16 norm (undoes the shrinkage)
    method: str = NAME

    def __post_init__(self):  # fail before any model is loaded
        if not (1 <= self.bits <= 8):
            raise EmbcompressError(f"bits must be between 1 and 8 (got {self.bits})")


def check_config(config: IntConfig, dim: int) -> None:
    if not (1 <= config.bits <= 8):
        raise EmbcompressError(f"bits must be between 1 and 8 (got {config.bits})")
    if config.group_size < 1 or dim % config.group_size:
        raise EmbcompressError(f"group size {config.group_size} must divide the row length {dim}; try 32 or 64")
    if (dim * config.bits) % 8:
        raise EmbcompressError(f"{dim} values of {config.bits} bits do not fill whole bytes; pick another bit width")
    bits_per_value = config.bits + 16 * (1 + config.zero_point) / config.group_size
    if bits_per_value >= 16:
        raise EmbcompressError(
            f"{config.bits} bits per group of {config.group_size} costs {bits_per_value:.1f} bits a value, "
            "no saving against fp16; use a larger group size"
        )


class IntEmbedding(CompressedEmbedding):
    method = NAME

    def __init__(self, num_embeddings, embedding_dim, bits=4, group_size=32, zero_point=False, row_norms=False, **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.bits, self.group_size, self.zero_point = bits, group_size, bool(zero_point)
        self.row_norms = bool(row_norms)
        if self.row_norms:
            self.register_buffer("norms", torch.empty(num_embeddings, dtype=torch.float16))
        groups = embedding_dim // group_size
        self.register_buffer("packed", torch.empty(num_embeddings, embedding_dim * bits // 8, dtype=torch.uint8))
        self.register_buffer("scales", torch.empty(num_embeddings, groups, dtype=torch.float16))
        if self.zero_point:
            self.register_buffer("offsets", torch.empty(num_embeddings, groups, dtype=torch.float16))

    @classmethod
    def storage(cls, config, dim):
        groups = dim // config.group_size
        return Storage(per_row=dim * config.bits // 8 + groups * 2 * (1 + config.zero_point) + 2 * config.row_norms,
                       shared=2 * dim * config.center)  # packed codes, fp16 scales (and offsets, norm); fp16 mean

    def method_spec(self):
        return {"bits": self.bits, "group_size": self.group_size, "zero_point": self.zero_point,
                "row_norms": self.row_norms}

    def _code_values(self) -> tuple[float, float]:
        """(mul, add): a code c stands for c·mul + add before its group's scale."""
        if self.bits == 1:  # signs: code 0 → −1, 1 → +1
            return 2.0, -1.0
        return 1.0, (0.0 if self.zero_point else -(2.0 ** (self.bits - 1)))

    def _offsets(self):
        return self.offsets if self.zero_point and self.bits > 1 else None

    def decode_into(self, out, rows, ids, add_to=False):
        if self.row_norms or kernels.gather_int(self.packed, self.scales, self._offsets(), ids, self.bits,
                                                self.group_size, *self._code_values(), out=out, rows=rows,
                                                add_to=add_to) is None:
            super().decode_into(out, rows, ids, add_to)

    def fused_logits(self, flat):
        if self.row_norms:
            return None
        return kernels.logits_int(self.packed, self.scales, self._offsets(), flat, self.bits, self.group_size,
                                  *self._code_values())

    def decode(self, ids):
        # in place on one float buffer: allocation and passes over memory dominate lookups
        mul, add = self._code_values()
        offsets = self._offsets()
        out = kernels.gather_int(self.packed, self.scales, offsets, ids, self.bits, self.group_size, mul, add)
        grad = self.tracks_grad(self.scales, offsets, getattr(self, "norms", None))
        if out is None:  # same floats through torch ops (GPU, no compiler, or gradients)
            out = unpack_float(self.packed[ids], self.bits, self.embedding_dim, mul, add)
            grouped = out.unflatten(-1, (-1, self.group_size))
            scale = self.scales[ids].float().unsqueeze(-1)
            grouped = grouped * scale if grad else grouped.mul_(scale)
            if offsets is not None:
                offset = offsets[ids].float().unsqueeze(-1)
                grouped = grouped + offset if grad else grouped.add_(offset)
            out = grouped.flatten(-2)
        if self.row_norms:  # measured on SmolLM2: int2 loses a fifth less perplexity with its norms kept
            factor = (self.norms[ids].float() / out.norm(dim=-1).clamp_min(1e-12)).unsqueeze(-1)
            out = out * factor if grad else out.mul_(factor)
        return out


FIT_CHUNK_ROWS = 4096


def quantize_groups(x: torch.Tensor, bits: int, zero_point: bool, search_scale: bool):
    """x: (n, g) groups → (codes uint8 in [0, 2^bits), scale (n,), offset (n,) or None)."""
    levels = 2**bits
    if bits == 1:  # sign × mean |x|, whatever zero_point says: two levels need no offset to be optimal
        return (x >= 0).to(torch.uint8), x.abs().mean(-1).half().float(), None
    if zero_point:
        lo, hi = x.min(-1).values, x.max(-1).values
        candidates = [(lo, (hi - lo) / (levels - 1))]
        if search_scale:  # shrink the range symmetrically around its centre
            mid = (lo + hi) / 2
            candidates += [(mid - (mid - lo) * f, (hi - lo) * f / (levels - 1)) for f in torch.linspace(0.6, 0.98, 12).tolist()]
        candidates = [(scale.clamp_min(1e-12).half().float(), off.half().float()) for off, scale in candidates]
        scale, off = _least_error(x, candidates, 0, levels - 1)
        return ((x - off[:, None]) / scale[:, None]).round_().clamp_(0, levels - 1).to(torch.uint8), scale, off
    half = levels // 2
    idx = x.abs().argmax(-1, keepdim=True)
    signed_max = x.gather(-1, idx).squeeze(-1)
    factors = [1.0] + (torch.linspace(0.7, 1.15, 19).tolist() if search_scale else [])
    candidates = []
    for f in factors:
        scale = (-signed_max / half * f).half().float()
        candidates.append((torch.where(scale == 0, torch.full_like(scale, 1e-8), scale), torch.zeros_like(scale)))
    scale, _ = _least_error(x, candidates, -half, half - 1)
    return ((x / scale[:, None]).round_().clamp_(-half, half - 1) + half).to(torch.uint8), scale, None


def _least_error(x: torch.Tensor, candidates, lo: int, hi: int):
    """Per group, the (scale, offset) candidate whose rounding has the least squared error.

    Only the winning scale is kept while searching (not the codes), and every pass works in place:
    the search is most of the fit time of int, hybrid and tiered on a 262k-row matrix.
    """
    best_err = best_scale = best_off = None
    for scale, off in candidates:
        t = (x - off[:, None]).div_(scale[:, None]).round_().clamp_(lo, hi)
        err = t.mul_(scale[:, None]).add_(off[:, None]).sub_(x).square_().sum(-1)
        if best_err is None:
            best_err, best_scale, best_off = err, scale, off
        else:
            better = err < best_err  # strict: ties keep the earlier (unsearched) candidate
            best_err = torch.minimum(err, best_err)
            best_scale, best_off = torch.where(better, scale, best_scale), torch.where(better, off, best_off)
    return best_scale, best_off


def fit(weight: torch.Tensor, config: IntConfig) -> IntEmbedding:
    check_weight(weight)
    num_rows, dim = weight.shape
    check_config(config, dim)
    module = IntEmbedding(num_rows, dim, config.bits, config.group_size, config.zero_point, config.row_norms,
                                output_dtype=dtype_name(weight.dtype), centered=config.center)
    rows_in, mean = split_center(weight, config.center)
    groups = dim // config.group_size
    # chunks of a few MB: the scale search makes ~7 passes a candidate, and in cache they run 2-3x faster
    for start in range(0, num_rows, FIT_CHUNK_ROWS):
        x = rows_in[start : start + FIT_CHUNK_ROWS].detach().float()
        n = x.shape[0]
        q, scale, off = quantize_groups(x.reshape(n * groups, config.group_size), config.bits, config.zero_point,
                                        config.search_scale)
        module.packed[start : start + n] = pack_bits(q.reshape(n, dim), config.bits)
        module.scales[start : start + n] = scale.reshape(n, groups).half()
        if config.row_norms:
            module.norms[start : start + n] = x.norm(dim=-1).half()
        if config.zero_point and off is not None:
            module.offsets[start : start + n] = off.reshape(n, groups).half()
    return module.set_center(mean).to(weight.device)


register_method(NAME, config=IntConfig, fit=fit, module=IntEmbedding)
