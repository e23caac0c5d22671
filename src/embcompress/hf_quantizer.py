"""transformers integration: ``import embcompress`` registers a quantizer for ``quant_method: "embcompress"``,
so ``AutoModelForCausalLM.from_pretrained(folder)`` (and ``AutoModel``, ``AutoModelForMaskedLM``,
``pipeline(...)``) returns the compressed model — the way optimum-quanto and torchao plug in.

Before the weights are read, the quantizer swaps the meta-device dense embedding for the empty
compressed module that ``quantization_config`` describes (and the head, in tied scope); the saved
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
from .serialization import FORMAT_VERSION, QUANT_METHOD, SCOPES, SENTINEL, empty_module, sentinel_name


@register_quantization_config(QUANT_METHOD)
class EmbcompressConfig(QuantizationConfigMixin):
    """The ``quantization_config`` of a compressed folder: which module replaces the input embedding."""

    def __init__(self, method: str, spec: dict[str, Any], scope: str = "input", head_bias: bool = False,
                 format_version: int = FORMAT_VERSION, **kwargs):
        self.quant_method = QUANT_METHOD
        self.method, self.spec, self.scope, self.head_bias = method, spec, scope, head_bias
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
        empty_module(self.method, self.spec, "quantization_config")  # checks the spec builds

    def to_dict(self) -> dict[str, Any]:
        return {"quant_method": QUANT_METHOD, "format_version": self.format_version, "scope": self.scope,
                "method": self.method, "spec": self.spec, "head_bias": self.head_bias}


def attach(model, info: dict[str, Any]) -> None:
    """Mark a model compressed in memory the way ``from_pretrained`` marks a loaded one."""
    spec = json.loads(json.dumps(info["spec"]))  # as config.json will hold it (tuples become lists)
    config = EmbcompressConfig(method=info["method"], spec=spec, scope=info["scope"],
                               head_bias=bool(info["head_bias"]))
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
        sentinel = sentinel_name(model)
        _set_untied(model)
        install_empty(model, empty_module(cfg.method, cfg.spec, "quantization_config"), cfg.scope, cfg.head_bias)
        if isinstance(model.get_output_embeddings(), CompressedHead):
            if (pair := tied_head_bias(model)) is not None:  # re-tied after loading, not read twice
                model._keys_to_ignore_on_load_missing = set(model._keys_to_ignore_on_load_missing or ()) | {
                    re.escape(pair[0]) + "$"}
        # the one-element tensor under the dense matrix's name exists only to stop plain transformers
        ignore = set(model._keys_to_ignore_on_load_unexpected or ())
        model._keys_to_ignore_on_load_unexpected = ignore | {re.escape(sentinel.split(".", 1)[-1]) + "$"}
        return model

    def _process_model_after_weight_loading(self, model, **kwargs):
        from .surgery import CompressedHead, relink_head, tied_head_bias

        # fresh, allocator-aligned copies of the loaded (memory-mapped) tensors: BLAS then runs the same
        # kernels, with the same roundings, as on the model that was saved
        emb = model.get_input_embeddings()
        for module in emb.modules():
            for store in (module._parameters, module._buffers):
                for name, t in store.items():
                    if t is not None:
                        store[name] = nn.Parameter(t.detach().clone(), requires_grad=False) \
                            if isinstance(t, nn.Parameter) else t.clone()
        relink_head(model)
        head = model.get_output_embeddings()
        if isinstance(head, CompressedHead) and head.bias is not None and (pair := tied_head_bias(model)) is not None:
            head.bias = model.get_parameter(pair[1])
        cfg = self.quantization_config
        model.embcompress_info = {"scope": cfg.scope, "method": cfg.method, "spec": cfg.spec,
                                  "head_bias": cfg.head_bias}
        return model

    def param_needs_quantization(self, model, param_name: str, **kwargs) -> bool:
        return False

    def get_state_dict_and_metadata(self, model):
        state = dict(model.state_dict())
        state[sentinel_name(model)] = SENTINEL.clone()
        return state, {"embcompress": str(FORMAT_VERSION)}

    def is_serializable(self):
        return True

    @property
    def is_trainable(self) -> bool:
        return False
