"""transformers integration: ``import embcompress`` registers a quantizer for ``quant_method: "embcompress"``,
so ``AutoModelForCausalLM.from_pretrained(folder)`` (and ``AutoModel``, ``AutoModelForMaskedLM``,
``pipeline(...)``) returns the compressed model — the way optimum-quanto and torchao plug in.

Before the weights are read, the quantizer swaps the meta-device dense embedding for the empty
compressed modules that ``quantization_config`` describes (input embedding and/or head); the saved
tensors then load into it by name. The dense V×d matrix is never built. Without the import,
transformers warns "Unknown quantization type, got embcompress" and the one-element tensor saved
under the dense matrix's name makes it refuse with a size mismatch, instead of loading a random
embedding.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from torch import nn
from transformers.quantizers import HfQuantizer, register_quantization_config, register_quantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

from .errors import EmbcompressError
from .serialization import (FORMAT_VERSION, QUANT_METHOD, SCOPES, SENTINEL, empty_module, module_parts,
                            quantization_config, sentinel_names)


@register_quantization_config(QUANT_METHOD)
class EmbcompressConfig(QuantizationConfigMixin):
    """The ``quantization_config`` of a compressed folder: which modules replace the input embedding and/or
    the output head (``head``: the head's method and spec in scope ``both``)."""

    def __init__(self, method: str, spec: dict[str, Any], scope: str = "input", head_bias: bool = False,
                 format_version: int = FORMAT_VERSION, head: dict[str, Any] | None = None, **kwargs):
        self.quant_method = QUANT_METHOD
        self.method, self.spec, self.scope, self.head_bias = method, spec, scope, head_bias
        self.head = head
        self.format_version = format_version
        self.post_init()

    def post_init(self):
        if self.format_version != FORMAT_VERSION or isinstance(self.format_version, bool):
            raise EmbcompressError(f"quantization_config format_version {self.format_version!r} is not "
                                   f"{FORMAT_VERSION}; compress the model again with this embcompress")
        if self.scope not in SCOPES:
            raise EmbcompressError(f"quantization_config scope {self.scope!r} is not one of {', '.join(SCOPES)}")
        if not isinstance(self.head_bias, bool):
            raise EmbcompressError("quantization_config head_bias must be true or false; compress the model again")
        if self.scope == "both" and not (isinstance(self.head, dict) and {"method", "spec"} <= set(self.head)):
            raise EmbcompressError("quantization_config has scope 'both' but no head part; compress the model again")
        self.empty_parts()  # checks the specs build

    def empty_parts(self) -> dict[str, nn.Module]:
        meta = {"scope": self.scope, "method": self.method, "spec": self.spec, "head": self.head}
        return {role: empty_module(method, spec, f"quantization_config {role}")
                for role, (method, spec) in module_parts(meta).items()}

    def to_dict(self) -> dict[str, Any]:
        out = {"quant_method": QUANT_METHOD, "format_version": self.format_version, "scope": self.scope,
               "method": self.method, "spec": self.spec, "head_bias": self.head_bias}
        if self.head is not None:
            out["head"] = self.head
        return out


def attach(model, info: dict[str, Any]) -> None:
    """Mark a model compressed in memory the way ``from_pretrained`` marks a loaded one."""
    # exactly what config.json will hold (tuples become lists)
    config = EmbcompressConfig(**json.loads(json.dumps(quantization_config(info))))
    model.config.quantization_config = config
    model.hf_quantizer = EmbcompressQuantizer(config)
    model.is_quantized = True
    model.quantization_method = QUANT_METHOD


@register_quantizer(QUANT_METHOD)
class EmbcompressQuantizer(HfQuantizer):
    """Loads (never creates) embcompress folders; compressing is ``embcompress compress``."""

    requires_calibration = True  # the folder must already hold compressed weights

    def validate_environment(self, *args, **kwargs):
        if not self.pre_quantized:
            raise EmbcompressError("an EmbcompressConfig cannot compress while loading; run "
                                   "`embcompress compress MODEL -m METHOD --out FOLDER`, then load FOLDER")

    def _process_model_before_weight_loading(self, model, checkpoint_files=None, **kwargs):
        from .serialization import is_compressed_dir, read_meta, verify_files
        from .surgery import CompressedHead, _set_untied, install_empty, tied_head_bias

        # a folder written by embcompress records every file's sha256: a damaged or edited one is refused
        # here as load_compressed refuses it (folders from save_pretrained carry no checksums to check)
        for folder in {Path(f).parent for f in checkpoint_files or ()}:
            if is_compressed_dir(folder):
                verify_files(folder, read_meta(folder))
        cfg = self.quantization_config
        sentinels = sentinel_names(model, cfg.scope)
        _set_untied(model)
        install_empty(model, cfg.empty_parts(), cfg.scope, cfg.head_bias)
        if isinstance(model.get_output_embeddings(), CompressedHead):
            if (pair := tied_head_bias(model)) is not None:  # re-tied after loading, not read twice
                model._keys_to_ignore_on_load_missing = set(model._keys_to_ignore_on_load_missing or ()) | {
                    re.escape(pair[0]) + "$"}
        # the one-element tensors under the dense matrices' names exist only to stop plain transformers
        ignore = set(model._keys_to_ignore_on_load_unexpected or ())
        model._keys_to_ignore_on_load_unexpected = ignore | {re.escape(s.split(".", 1)[-1]) + "$" for s in sentinels}
        return model

    def _process_model_after_weight_loading(self, model, **kwargs):
        from .surgery import CompressedHead, relink_head, tied_head_bias

        # fresh, allocator-aligned copies of the loaded (memory-mapped) tensors: BLAS then runs the same
        # kernels, with the same roundings, as on the model that was saved
        head = model.get_output_embeddings()
        compressed = [model.get_input_embeddings()] + ([head.embedding] if isinstance(head, CompressedHead) else [])
        for module in (m for top in compressed for m in top.modules()):
            for store in (module._parameters, module._buffers):
                for name, t in store.items():
                    if t is not None:
                        store[name] = nn.Parameter(t.detach().clone(), requires_grad=False) \
                            if isinstance(t, nn.Parameter) else t.clone()
        relink_head(model)
        if isinstance(head, CompressedHead) and head.bias is not None and (pair := tied_head_bias(model)) is not None:
            head.bias = model.get_parameter(pair[1])
        cfg = self.quantization_config
        model.embcompress_info = {"scope": cfg.scope, "method": cfg.method, "spec": cfg.spec,
                                  "head_bias": cfg.head_bias, **({"head": cfg.head} if cfg.head else {})}
        return model

    def param_needs_quantization(self, model, param_name: str, **kwargs) -> bool:
        return False

    def get_state_dict_and_metadata(self, model):
        state = dict(model.state_dict())
        for name in sentinel_names(model, self.quantization_config.scope):
            state[name] = SENTINEL.clone()
        return state, {"embcompress": str(FORMAT_VERSION)}

    def is_serializable(self):
        return True

    @property
    def is_trainable(self) -> bool:
        return False
