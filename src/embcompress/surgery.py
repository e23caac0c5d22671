"""Model surgery, all in one place: find the input embedding, swap in a compressed module (input or
tied scope), report sizes, save and load.

Public surface: ``compress_model``, ``save_compressed``, ``load_compressed``, ``size_report``.
Loading rebuilds the model with empty (meta) parameters, puts empty compressed modules in place,
then assigns the saved state dict — the dense V×d input matrix is never built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import EmbcompressError
from .methods import CompressedEmbedding, compress, module_class

SCOPES = ("input", "tied")
META_FILE = "embcompress.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


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

    weight = emb.weight.detach()
    compressed = compress(weight, config, row_weights=row_weights)
    compressed.padding_idx = emb.padding_idx
    compressed.zero_padding_row = emb.padding_idx is not None and bool((weight[emb.padding_idx] == 0).all())
    compressed.scale = float(getattr(emb, "embed_scale", 1.0))  # Gemma's sqrt(hidden) stays inside the module
    compressed.requires_grad_(False)

    _set_untied(model)
    model.set_input_embeddings(compressed)
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
    return info


# -- saving and loading -------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses shared tensors: keep each storage once, remember the aliases."""
    kept, aliases, owner = {}, {}, {}
    for name, t in state.items():
        key = (t.data_ptr(), t.numel(), t.dtype, t.shape)
        if key in owner:
            aliases[name] = owner[key]
        else:
            owner[key] = name
            kept[name] = t.detach().cpu().contiguous()
    return kept, aliases


def save_compressed(model: nn.Module, out_dir: str | Path, tokenizer=None, overwrite: bool = False,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write config, weights (safetensors), tokenizer and ``embcompress.json``; atomically."""
    from safetensors.torch import save_file

    info = getattr(model, "embcompress_info", None)
    if info is None:
        raise EmbcompressError("this model has no compressed embedding; call compress_model first")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise EmbcompressError(f"{out} already exists; choose another output folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.config.save_pretrained(tmp)
        state, aliases = _dedupe(model.state_dict())
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        meta = {
            "format_version": FORMAT_VERSION,
            "model_class": type(model).__name__,
            **info,
            "aliases": aliases,
            "sha256": {WEIGHTS_FILE: _sha256(tmp / WEIGHTS_FILE)},
            **(extra or {}),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{tmp.name[-8:]}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def is_compressed_dir(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise EmbcompressError(f"{path} is not a folder; give the folder written by `embcompress compress`")
    if not is_compressed_dir(path):
        raise EmbcompressError(f"{path} has no {META_FILE}: not an embcompress folder; pass it as a model instead")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except json.JSONDecodeError as e:
        raise EmbcompressError(f"{path / META_FILE} is corrupt ({e.msg}); compress the model again") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise EmbcompressError(f"{path} was written by another embcompress format ({meta.get('format_version')}); compress again")
    return meta


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file tensor by tensor into fresh, aligned memory.

    Not ``safetensors.torch.load_file``: its tensors come from a memory map whose touched pages count
    in the process's peak alongside the copies we need anyway (aligned memory keeps BLAS on the same
    kernels, and roundings, as before saving); plain reads load the file once.
    """
    state = {}
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        header.pop("__metadata__", None)
        data_start = 8 + header_len
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            t = torch.empty(entry["shape"], dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
            if end - begin != t.numel() * t.element_size():
                raise ValueError(f"tensor {name} has {end - begin} bytes for shape {entry['shape']}")
            if t.numel():
                f.seek(data_start + begin)
                if f.readinto(memoryview(t.view(-1).view(torch.uint8).numpy())) != end - begin:
                    raise ValueError(f"tensor {name} is truncated")
            state[name] = t
    return state


def load_compressed(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild a model saved by ``save_compressed``; its logits equal those of the saved model."""
    import transformers
    from accelerate import init_empty_weights

    path = Path(path)
    meta = read_meta(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise EmbcompressError(f"{weights} is missing; the folder is incomplete, compress the model again")
    if _sha256(weights) != meta["sha256"][WEIGHTS_FILE]:
        raise EmbcompressError(f"{weights} does not match its recorded checksum (truncated or altered); compress again")
    cls = getattr(transformers, meta["model_class"], None)
    if cls is None:
        raise EmbcompressError(f"this transformers has no {meta['model_class']}; upgrade transformers")
    config = transformers.AutoConfig.from_pretrained(path)
    with init_empty_weights(include_buffers=False):
        model = cls(config)
    emb = module_class(meta["method"])(**meta["spec"])
    emb.requires_grad_(False)
    model.set_input_embeddings(emb)
    if meta["scope"] == "tied":
        bias = torch.empty(emb.num_embeddings) if meta["head_bias"] else None
        model.set_output_embeddings(CompressedHead(emb, bias))
    try:
        state = _read_tensors(weights)
    except (ValueError, KeyError, OSError) as e:
        raise EmbcompressError(f"{weights} cannot be read ({e}); compress the model again") from None
    for alias, source in meta["aliases"].items():
        state[alias] = state[source]
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise EmbcompressError(f"{weights} does not fit {meta['model_class']} ({first}); compress the model again") from None
    if meta["scope"] == "tied":  # assign=True replaced the Parameters; keep the head pointing at the live module
        object.__setattr__(model.get_output_embeddings(), "embedding", model.get_input_embeddings())
    model.embcompress_info = {k: meta[k] for k in ("scope", "method", "config", "spec", "head_bias", "was_tied", "before", "after")}
    model.eval()
    return model.to(device) if device is not None else model
