"""embcompress: shrink the token-embedding matrix of pretrained Transformers without re-training.

    from embcompress import make_config, compress_model, save_compressed, load_compressed
    compress_model(model, make_config("svd", ratio=5))          # in place, input scope
    save_compressed(model, "out/", tokenizer)
    model = load_compressed("out/")
"""

from .errors import EmbcompressError
from .methods import (
    METHODS,
    PRESETS,
    CompressedEmbedding,
    compress,
    from_embedding,
    make_config,
    method_names,
    register_method,
)
from .methods.autoencoder import AutoencoderConfig
from .methods.gguf import GgufConfig
from .methods.hybrid import HybridConfig
from .methods.int import IntConfig
from .methods.mixed import MixedConfig
from .methods.pq import PqConfig
from .methods.svd import SvdConfig
from .methods.tiered import TieredConfig
from . import hf_quantizer  # registers quant_method "embcompress" with transformers' from_pretrained
from .serialization import load_compressed, save_compressed
from .surgery import CompressedHead, compress_model, find_input_embedding, size_report

__version__ = "0.1.0"

__all__ = [
    "AutoencoderConfig",
    "GgufConfig",
    "HybridConfig",
    "IntConfig",
    "MixedConfig",
    "PqConfig",
    "SvdConfig",
    "TieredConfig",
    "from_embedding",
    "register_method",
    "CompressedEmbedding",
    "CompressedHead",
    "EmbcompressError",
    "METHODS",
    "PRESETS",
    "compress",
    "compress_model",
    "find_input_embedding",
    "load_compressed",
    "make_config",
    "method_names",
    "save_compressed",
    "size_report",
]
