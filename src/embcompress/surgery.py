"""Model surgery, all in one place: find the input embedding and output head, swap in compressed modules
(scopes input, tied, head, both), report sizes.

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
    """Output head that computes logits from a compressed matrix, never building the V×d one.

    ``shared=True`` (tied scope): the matrix is the compressed input embedding, held as a plain
    attribute, not a submodule: it is already registered as the input embedding, and registering it
    twice would store its tensors twice. ``shared=False`` (head and both scopes): the head's own
    compressed module, a submodule saved under the head's name.
    """

    def __init__(self, embedding: CompressedEmbedding, bias: torch.Tensor | None = None, shared: bool = True):
        super().__init__()
        self.shared = shared
        if shared:
            object.__setattr__(self, "embedding", embedding)
        else:
            self.embedding = embedding
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=bias.requires_grad)
        self.out_features = embedding.num_embeddings
        self.in_features = embedding.embedding_dim

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.embedding.logits(hidden)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        what = "tied to compressed input embedding" if self.shared else "compressed head"
        return f"{what} ({self.embedding.method}), bias={self.bias is not None}"


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


def find_output_head(model: nn.Module) -> nn.Module | None:
    """The output head when it is a dense V×d projection (or already a compressed one); else None."""
    head = _output_head(model)
    return head if isinstance(head, (nn.Linear, CompressedHead)) else None


def is_tied(model: nn.Module) -> bool:
    emb, head = find_input_embedding(model), _output_head(model)
    if isinstance(head, CompressedHead):
        return head.embedding is emb
    w = getattr(head, "weight", None)
    return w is not None and isinstance(emb, nn.Embedding) and w.data_ptr() == emb.weight.data_ptr()


def _set_untied(model: nn.Module) -> None:
    # Stops transformers from re-tying (which would look for a .weight on our module).
    from .models import text_config

    text = text_config(model.config)
    for cfg in {id(model.config): model.config, id(text): text}.values():
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


def install_empty(model: nn.Module, parts: dict[str, CompressedEmbedding], scope: str, head_bias: bool) -> None:
    """Put empty (meta) compressed modules in place of a model's embedding and/or head (``parts``: role
    ``input``/``head`` → module), before saved weights are loaded into them (``load_compressed`` and
    transformers). In tied scope the head reads the input module."""
    if "input" in parts:
        put_input_embedding(model, parts["input"])
    head = parts.get("head", parts["input"] if scope == "tied" else None)
    if head is not None and model.get_output_embeddings() is not None:
        with torch.device("meta"):
            bias = torch.empty(head.num_embeddings) if head_bias else None
        model.set_output_embeddings(CompressedHead(head, bias, shared=scope == "tied"))


def relink_head(model: nn.Module) -> None:
    """After loading assigned new tensors, point a tied compressed head at the live input embedding."""
    head = model.get_output_embeddings()
    if isinstance(head, CompressedHead) and head.shared:
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
    """Parameters and bytes of the whole model, of its input embedding and of an untied output head
    (shared tensors counted once: a tied head adds nothing to the embedding's)."""
    emb = find_input_embedding(model)
    tensors = list(_unique_tensors(model))
    emb_tensors = list(emb.state_dict().values())
    head = find_output_head(model)
    head_tensors = [] if head is None or is_tied(model) else [t for n, t in head.state_dict().items() if n != "bias"]
    return {
        "model_parameters": sum(t.numel() for t in tensors),
        "model_bytes": sum(t.numel() * t.element_size() for t in tensors),
        "embedding_parameters": sum(t.numel() for t in emb_tensors),
        "embedding_bytes": sum(t.numel() * t.element_size() for t in emb_tensors),
        "head_parameters": sum(t.numel() for t in head_tensors),
        "head_bytes": sum(t.numel() * t.element_size() for t in head_tensors),
    }


# -- replacing ----------------------------------------------------------------------------------

def compress_model(model: nn.Module, config, scope: str = "input", row_weights: torch.Tensor | None = None,
                   head_config=None, head_row_weights: torch.Tensor | None = None, preset: str | None = None,
                   head_preset: str | None = None) -> dict[str, Any]:
    """Replace the model's input embedding and/or output head with compressed modules, in place.

    ``input`` (the paper's): the output head keeps the original matrix, untied if it was tied.
    ``tied``: the output head computes logits from the compressed embedding too.
    ``head``: only the output head is compressed (with ``config``); the input embedding stays dense.
    ``both``: the input embedding with ``config`` and the head with ``head_config`` (default: the same),
    separately — a tied model is untied first.
    ``row_weights`` are token importances for methods that use them (e.g. calibration counts);
    ``head_row_weights`` the head's (e.g. the probability mass the model puts on each token).
    ``preset``/``head_preset``: the names the user gave (e.g. ``tiered-pq``), recorded for ``info``.
    Returns a summary with sizes before and after.
    """
    if scope not in SCOPES:
        raise EmbcompressError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    if head_config is not None and scope != "both":
        raise EmbcompressError(f"a separate head method needs scope 'both' (got {scope!r}); pass --scope both")
    emb = find_input_embedding(model)
    if isinstance(emb, CompressedEmbedding) or isinstance(_output_head(model), CompressedHead):
        raise EmbcompressError("the model's embedding is already compressed; load the original model to compress again")
    head = _output_head(model)
    tied = is_tied(model)
    if scope == "tied" and not tied:
        raise EmbcompressError("scope 'tied' needs a model whose output head shares the input embedding; use --scope input")
    if scope in ("head", "both") and not isinstance(head, nn.Linear):
        raise EmbcompressError(f"scope {scope!r} needs a model with an output head (a {type(model).__name__} has "
                               "none); use --scope input")
    if scope == "head" and tied:
        raise EmbcompressError("this model's output head is tied to its input embedding, so there is no separate head "
                               "to compress; use --scope tied (one compressed matrix for both) or --scope both")
    before = size_report(model)
    bias = getattr(head, "bias", None)
    bias = None if bias is None else bias.detach()

    parts = {}
    if scope != "head":
        parts["input"] = from_embedding(emb, config, row_weights=row_weights)
    if scope in ("head", "both"):
        which = config if scope == "head" or head_config is None else head_config
        weights = row_weights if scope == "head" or head_row_weights is None else head_row_weights
        parts["head"] = from_embedding(head, which, row_weights=weights)

    _set_untied(model)
    if "input" in parts:
        put_input_embedding(model, parts["input"])
    if scope == "tied":
        model.set_output_embeddings(CompressedHead(parts["input"], bias))
    elif "head" in parts:
        model.set_output_embeddings(CompressedHead(parts["head"], bias, shared=False))
    # With scope "input" a tied head simply keeps the original Parameter, now its own.

    first = parts.get("input", parts.get("head"))
    info = {
        "scope": scope,
        "method": first.method,
        "config": dataclasses.asdict(config),
        "spec": first.spec(),
        "head_bias": scope != "input" and bias is not None,
        "was_tied": tied,
        "before": before,
    }
    if preset is not None:
        info["preset"] = preset
    if scope == "both":
        info["head"] = {"method": parts["head"].method, "spec": parts["head"].spec(),
                        "config": dataclasses.asdict(head_config if head_config is not None else config)}
        if head_preset or preset:
            info["head"]["preset"] = head_preset or preset
    info["after"] = size_report(model)
    model.embcompress_info = info
    from .hf_quantizer import attach

    attach(model, info)  # so that transformers' own save_pretrained writes a folder from_pretrained loads right
    return info
