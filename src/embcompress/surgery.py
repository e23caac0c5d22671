"""Model surgery, all in one place: find the input embedding, swap in a compressed module (input or
tied scope), report sizes, save and load.

Public surface: ``compress_model``, ``size_report``, ``find_input_embedding``, ``CompressedHead``.
Saving and loading live in ``serialization.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .errors import EmbcompressError
from .methods import CompressedEmbedding, from_embedding
from .serialization import SCOPES


class CompressedHead(nn.Module):
    """Output head that computes logits from the (shared) compressed input embedding.

    The embedding is held as a plain attribute, not a submodule: it is already registered as the
    input embedding, and registering it twice would store its tensors twice.
    """

    def __init__(self, embedding: CompressedEmbedding, bias: torch.Tensor | None = None):
        super().__init__()
        object.__setattr__(self, "embedding", embedding)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=bias.requires_grad)
        self.out_features = embedding.num_embeddings
        self.in_features = embedding.embedding_dim

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.embedding.logits(hidden)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"tied to compressed input embedding ({self.embedding.method}), bias={self.bias is not None}"


# -- finding ------------------------------------------------------------------------------------

def find_input_embedding(model: nn.Module) -> nn.Module:
    getter = getattr(model, "get_input_embeddings", None)
    emb = None
    if getter is not None:
        try:
            emb = getter()
        except NotImplementedError:
            emb = None
    if emb is None or not (isinstance(emb, (nn.Embedding, CompressedEmbedding))):
        raise EmbcompressError(
            f"{type(model).__name__} has no token-embedding module (get_input_embeddings() gave "
            f"{type(emb).__name__}); pass a transformers language model or encoder"
        )
    return emb


def _output_head(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if getter is not None else None


def is_tied(model: nn.Module) -> bool:
    emb, head = find_input_embedding(model), _output_head(model)
    if isinstance(head, CompressedHead):
        return head.embedding is emb
    w = getattr(head, "weight", None)
    return w is not None and isinstance(emb, nn.Embedding) and w.data_ptr() == emb.weight.data_ptr()


def _set_untied(model: nn.Module) -> None:
    # Stops transformers from re-tying (which would look for a .weight on our module).
    configs = {id(model.config): model.config}
    if hasattr(model.config, "get_text_config"):
        text = model.config.get_text_config()
        configs[id(text)] = text
    for cfg in configs.values():
        cfg.tie_word_embeddings = False


def put_input_embedding(model: nn.Module, emb: nn.Module) -> None:
    """``set_input_embeddings``, then move the module last among its siblings: transformers takes a
    model's dtype from its *first* floating parameter (and writes it to config.json on save), which
    must stay the dense weights' dtype, not an fp16 factor of the compressed embedding."""
    model.set_input_embeddings(emb)
    for module in model.modules():
        for name, child in list(module._modules.items()):
            if child is emb:
                del module._modules[name]
                module._modules[name] = emb
                return


def install_empty(model: nn.Module, emb: CompressedEmbedding, scope: str, head_bias: bool) -> None:
    """Put an empty (meta) compressed module in place of a model's embedding, and in tied scope a head
    reading it, before saved weights are loaded into them (``load_compressed`` and transformers)."""
    put_input_embedding(model, emb)
    if scope == "tied" and model.get_output_embeddings() is not None:
        with torch.device("meta"):
            bias = torch.empty(emb.num_embeddings) if head_bias else None
        model.set_output_embeddings(CompressedHead(emb, bias))


def relink_head(model: nn.Module) -> None:
    """After loading assigned new tensors, point a compressed head at the live input embedding."""
    head = model.get_output_embeddings()
    if isinstance(head, CompressedHead):
        object.__setattr__(head, "embedding", model.get_input_embeddings())


def tied_head_bias(model: nn.Module) -> tuple[str, str] | None:
    """(head bias name, the parameter it is tied to), e.g. BERT's decoder bias and ``cls.predictions.bias``:
    transformers ties these only while the config ties the embeddings, which a compressed model does not."""
    head = _output_head(model)
    tied = getattr(type(model), "_tied_weights_keys", None)
    if head is None or not isinstance(tied, dict):
        return None
    name = next((n for n, m in model.named_modules() if m is head), None)
    source = tied.get(f"{name}.bias")
    return (f"{name}.bias", source) if isinstance(source, str) else None


# -- sizes --------------------------------------------------------------------------------------

def _unique_tensors(model: nn.Module):
    seen = set()
    for t in model.state_dict().values():
        key = (t.data_ptr(), t.numel(), t.dtype) if t.device.type != "meta" else id(t)
        if key not in seen:
            seen.add(key)
            yield t


def size_report(model: nn.Module) -> dict[str, int]:
    """Parameters and bytes of the whole model and of its input embedding (shared tensors counted once)."""
    emb = find_input_embedding(model)
    tensors = list(_unique_tensors(model))
    emb_tensors = list(emb.state_dict().values())
    return {
        "model_parameters": sum(t.numel() for t in tensors),
        "model_bytes": sum(t.numel() * t.element_size() for t in tensors),
        "embedding_parameters": sum(t.numel() for t in emb_tensors),
        "embedding_bytes": sum(t.numel() * t.element_size() for t in emb_tensors),
    }


# -- replacing ----------------------------------------------------------------------------------

def compress_model(model: nn.Module, config, scope: str = "input", row_weights: torch.Tensor | None = None,
                   ) -> dict[str, Any]:
    """Replace the model's input embedding (and with ``scope="tied"`` its output head) in place.

    ``input`` (the paper's): the output head keeps the original matrix, untied if it was tied.
    ``tied``: the output head computes logits from the compressed embedding too.
    ``row_weights`` are token importances for methods that use them (e.g. calibration counts).
    Returns a summary with sizes before and after.
    """
    if scope not in SCOPES:
        raise EmbcompressError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    emb = find_input_embedding(model)
    if isinstance(emb, CompressedEmbedding):
        raise EmbcompressError("the model's embedding is already compressed; load the original model to compress again")
    head = _output_head(model)
    tied = is_tied(model)
    if scope == "tied" and not tied:
        raise EmbcompressError("scope 'tied' needs a model whose output head shares the input embedding; use --scope input")
    before = size_report(model)

    compressed = from_embedding(emb, config, row_weights=row_weights)

    _set_untied(model)
    put_input_embedding(model, compressed)
    if scope == "tied":
        bias = getattr(head, "bias", None)
        model.set_output_embeddings(CompressedHead(compressed, None if bias is None else bias.detach()))
    # With scope "input" a tied head simply keeps the original Parameter, now its own.

    info = {
        "scope": scope,
        "method": compressed.method,
        "config": dataclasses.asdict(config),
        "spec": compressed.spec(),
        "head_bias": scope == "tied" and getattr(head, "bias", None) is not None,
        "was_tied": tied,
        "before": before,
    }
    info["after"] = size_report(model)
    model.embcompress_info = info
    from .hf_quantizer import attach

    attach(model, info)  # so that transformers' own save_pretrained writes a folder from_pretrained loads right
    return info
