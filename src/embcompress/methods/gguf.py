"""llama.cpp's block quantization types, through the ``gguf`` package: the external anchor users know.

Each row is cut into the type's blocks (32 values) and stored exactly as a GGUF file stores it;
lookups dequantize only the rows asked for. The package can quantize Q8_0, Q5_1, Q5_0, Q4_1, Q4_0
and MXFP4. The k-quants (Q2_K … Q6_K) it can only dequantize, and their 256-value super-blocks do
not divide the rows of the models here (576, 640, 384), which is why llama.cpp itself falls back to
the types above for such embeddings (SmolLM2's GGUF ships its embedding as Q8_0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import kernels
from ..errors import EmbcompressError
from .registry import register_method
from .base import CompressedEmbedding, Storage, check_weight, dtype_name

NAME = "gguf"
QUANTIZABLE = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "MXFP4")


def _qtype(name: str):
    from gguf import GGMLQuantizationType

    if name not in QUANTIZABLE:
        raise EmbcompressError(f"GGUF type {name!r} cannot be quantized by the gguf package; use one of "
                               f"{', '.join(QUANTIZABLE)} (k-quants need rows divisible by 256 and llama.cpp)")
    return GGMLQuantizationType[name]


@dataclass
class GgufConfig:
    qtype: str = "Q4_0"
    method: str = NAME

    def __post_init__(self):  # fail before any model is loaded
        _qtype(self.qtype)


def row_bytes(qtype: str, dim: int) -> int:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[_qtype(qtype)]
    if dim % block:
        raise EmbcompressError(f"{qtype} works on blocks of {block} values, which do not divide the row length {dim}")
    return dim // block * size


class GgufEmbedding(CompressedEmbedding):
    method = NAME

    def __init__(self, num_embeddings, embedding_dim, qtype="Q4_0", **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.qtype = qtype
        self.register_buffer("blocks", torch.empty(num_embeddings, row_bytes(qtype, embedding_dim), dtype=torch.uint8))

    def method_spec(self):
        return {"qtype": self.qtype}

    @classmethod
    def storage(cls, config, dim):
        return Storage(per_row=row_bytes(config.qtype, dim), shared=0)  # llama.cpp blocks, as a GGUF stores them

    def decode_into(self, out, rows, ids, add_to=False):
        if kernels.gather_gguf(self.blocks, ids, self.qtype, out=out, rows=rows, add_to=add_to) is None:
            super().decode_into(out, rows, ids, add_to)

    def fused_logits(self, flat):
        return kernels.logits_gguf(self.blocks, flat, self.qtype)

    def decode(self, ids):
        fused = kernels.gather_gguf(self.blocks, ids, self.qtype)
        if fused is not None:
            return fused
        if self.qtype in TORCH_DECODERS:  # the common types in torch: no numpy round trip, runs on a GPU too
            blocks = self.blocks[ids.reshape(-1)]
            return TORCH_DECODERS[self.qtype](blocks.reshape(len(blocks), -1, blocks.shape[-1] * 32 // self.embedding_dim)
                                              ).reshape(*ids.shape, self.embedding_dim)
        from gguf.quants import dequantize

        rows = self.blocks[ids.reshape(-1)].cpu().numpy()
        out = torch.from_numpy(dequantize(rows, _qtype(self.qtype)).astype(np.float32, copy=False))
        return out.reshape(*ids.shape, self.embedding_dim).to(ids.device)


def _block_scales(blocks: torch.Tensor) -> torch.Tensor:
    """The fp16 scale that opens every block: (N, B, bytes) → (N, B, 1) float32."""
    return blocks[..., :2].contiguous().view(torch.float16).float()


def _decode_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    """Q8_0: fp16 scale, then 32 int8 values."""
    return blocks[..., 2:].contiguous().view(torch.int8).float().mul_(_block_scales(blocks))


def _decode_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    """Q4_0: fp16 scale, then 16 bytes; low nibbles are values 0–15, high nibbles 16–31, each minus 8."""
    q = blocks[..., 2:]
    return torch.cat([q & 15, q >> 4], dim=-1).float().sub_(8).mul_(_block_scales(blocks))


TORCH_DECODERS = {"Q8_0": _decode_q8_0, "Q4_0": _decode_q4_0}


def fit(weight: torch.Tensor, config: GgufConfig) -> GgufEmbedding:
    from gguf.quants import quantize

    check_weight(weight)
    num_rows, dim = weight.shape
    module = GgufEmbedding(num_rows, dim, config.qtype, output_dtype=dtype_name(weight.dtype))
    w = weight.detach().float().cpu().numpy()
    for start in range(0, num_rows, 16384):
        module.blocks[start : start + 16384] = torch.from_numpy(quantize(w[start : start + 16384], _qtype(config.qtype)))
    return module.to(weight.device)


register_method(NAME, config=GgufConfig, fit=fit, module=GgufEmbedding)
