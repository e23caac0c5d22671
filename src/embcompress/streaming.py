"""Compress a model of any size in bounded memory: read only the embedding (and head) from its safetensors
shards, fit, and write the output folder tensor by tensor, copying every other tensor's bytes straight
from its shard. Peak memory is about the embedding in fp32 plus what the method's fit needs, whatever
the size of the rest of the model.

The folder is the one ``save_compressed`` writes (one ``model.safetensors``, ``embcompress.json`` with
checksums) and loads the same way; the copied tensors keep the dtype they are stored in (a bf16 model
stays bf16), the compressed modules are as in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import EmbcompressError
from .serialization import (
    DTYPES,
    WEIGHTS_FILE,
    WEIGHTS_METADATA,
    atomic_folder,
    load_config,
    open_folder,
    read_safetensors,
    read_safetensors_header,
    write_folder,
    _model_class,
)

INDEX_FILE = "model.safetensors.index.json"
COPY_CHUNK = 64 << 20
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class Shards:
    """The tensors of a safetensors model folder (one file, or shards named by an index), every header
    checked before anything is read; ``entry(name)`` says which file holds a tensor and where."""

    def __init__(self, folder: Path):
        self.folder = folder
        index = folder / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                raise EmbcompressError(f"{index} is not a JSON index; download the model again") from None
            if not (isinstance(weight_map, dict) and weight_map and all(
                    isinstance(k, str) and isinstance(v, str) and "/" not in v and v not in ("", ".", "..")
                    for k, v in weight_map.items())):
                raise EmbcompressError(f"{index} has no valid weight_map; download the model again")
        elif (folder / WEIGHTS_FILE).is_file():
            weight_map = None
        else:
            raise EmbcompressError(f"{folder} has no {WEIGHTS_FILE} or {INDEX_FILE}: --stream reads safetensors "
                                   "models; compress without --stream")
        files = sorted(set(weight_map.values())) if weight_map else [WEIGHTS_FILE]
        self.entries: dict[str, tuple[Path, dict[str, Any], int]] = {}
        for name in files:
            path = folder / name
            if not path.is_file():
                raise EmbcompressError(f"shard {name} named by {INDEX_FILE} is missing from {folder}; "
                                       "download the whole model")
            entries, start = read_safetensors_header(path)
            for tensor, entry in entries.items():
                self.entries[tensor] = (path, entry, start)
        for tensor, shard in (weight_map or {}).items():
            if tensor not in self.entries or self.entries[tensor][0].name != shard:
                raise EmbcompressError(f"{INDEX_FILE} puts tensor {tensor} in {shard}, which does not hold it; "
                                       "download the model again")
        floats = Counter(e["dtype"] for _, e, _ in self.entries.values() if e["dtype"].is_floating_point)
        if len(floats) > 1:
            usual = floats.most_common(1)[0][0]
            odd = next(f"{t} in {p.name}" for t, (p, e, _) in sorted(self.entries.items())
                       if e["dtype"].is_floating_point and e["dtype"] != usual)
            raise EmbcompressError(f"the shards mix floating dtypes ({', '.join(sorted(str(f) for f in floats))}; "
                                   f"e.g. {odd}); save the model in one dtype, or compress without --stream")
        self.dtype = next(iter(floats), torch.float32)

    def read(self, name: str) -> torch.Tensor:
        path, entry, start = self.entries[name]
        return read_safetensors(path, {name: entry}, start)[name]

    def nbytes(self) -> int:
        return sum(e["end"] - e["begin"] for _, e, _ in self.entries.values())


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def _meta_model(folder: Path):
    from accelerate import init_empty_weights

    config = load_config(folder)
    names = getattr(config, "architectures", None) or []
    if not names:
        raise EmbcompressError(f"{folder / 'config.json'} names no architecture; compress without --stream")
    cls = _model_class(names[0])
    with init_empty_weights(include_buffers=False):  # buffers (e.g. Gemma's embed_scale) are real, and small
        return cls(config)


def _load_dense(model: nn.Module, module: nn.Module, shards: Shards, what: str) -> torch.Tensor:
    name = f"{_module_name(model, module)}.weight"
    if name not in shards.entries:
        raise EmbcompressError(f"the {what} {name} is not in the shards under that name; compress without --stream")
    weight = shards.read(name).float()
    if tuple(weight.shape) != tuple(module.weight.shape):
        raise EmbcompressError(f"{name} is {list(weight.shape)} in the shards but the config makes it "
                               f"{list(module.weight.shape)}; download the model again")
    module.weight = nn.Parameter(weight, requires_grad=False)
    return weight


def _write_streamed(state: dict[str, torch.Tensor], path: Path, shards: Shards, dense: dict[int, str],
                    placeholders: set[str]) -> int:
    """One safetensors file written tensor by tensor: tensors the shards hold under the same name (and the
    dense matrices read for the fit, ``dense``: data_ptr → source name) are copied as bytes from their
    shard, in their stored dtype; the compressed modules' tensors and the ``placeholders`` (one-element
    tensors under the dense matrices' names) come from memory. Returns the bytes of tensor data written."""
    plan = []
    for name in sorted(state):
        t = state[name]
        if name in placeholders:
            source = None
        else:
            source = name if name in shards.entries else None if t.device.type == "meta" else dense.get(t.data_ptr())
        if source is None and t.device.type == "meta":
            raise EmbcompressError(f"the model's tensor {name} is not in the shards; compress without --stream")
        if source is not None:
            _, e, _ = shards.entries[source]
            if tuple(e["shape"]) != tuple(t.shape):
                raise EmbcompressError(f"{source} is {list(e['shape'])} in the shards but the model needs "
                                       f"{list(t.shape)}; download the model again")
            plan.append((name, e["dtype"], tuple(t.shape), e["end"] - e["begin"], source))
        else:
            t = t.contiguous()
            plan.append((name, t.dtype, tuple(t.shape), t.numel() * t.element_size(), t))
    header, offset = {"__metadata__": WEIGHTS_METADATA}, 0
    for name, dtype, shape, nbytes, _ in plan:
        header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # safetensors aligns the data start to 8 bytes
    with path.open("wb") as out:
        out.write(len(blob).to_bytes(8, "little"))
        out.write(blob)
        for name, _, _, nbytes, source in plan:
            if isinstance(source, str):
                shard, e, start = shards.entries[source]
                with shard.open("rb") as f:
                    f.seek(start + e["begin"])
                    left = nbytes
                    while left:
                        chunk = f.read(min(COPY_CHUNK, left))
                        if not chunk:
                            raise EmbcompressError(f"{shard} is truncated at tensor {source}; download the model again")
                        out.write(chunk)
                        left -= len(chunk)
            else:
                out.write(source.view(-1).view(torch.uint8).numpy().tobytes() if source.numel() else b"")
    return offset


def stream_compress(folder: str | Path, out: str | Path, config, scope: str = "input", tokenizer=None,
                    overwrite: bool = False, extra: dict[str, Any] | None = None, **options) -> dict[str, Any]:
    """``compress_model`` + ``save_compressed`` for a safetensors model folder without loading the model:
    only the matrices being compressed are read. ``options`` are ``compress_model``'s (row weights,
    head config, presets). Returns the same summary as ``compress_model``."""
    from .serialization import SENTINEL, sentinel_names
    from .surgery import compress_model, find_input_embedding, find_output_head

    folder = Path(folder)
    shards = Shards(folder)
    model = _meta_model(folder)
    emb, head = find_input_embedding(model), find_output_head(model)
    tied = head is not None and is_tied_meta(model, emb, head)
    names = {"input": f"{_module_name(model, emb)}.weight",
             "head": None if head is None else f"{_module_name(model, head)}.weight"}
    dense: dict[int, str] = {}
    if scope != "head" or tied:
        weight = _load_dense(model, emb, shards, "input embedding")
        dense[weight.data_ptr()] = names["input"]
        if tied:
            head.weight = emb.weight  # transformers tied them on the meta device; tie the real one again
    if scope in ("head", "both") and head is not None and not tied:
        weight = _load_dense(model, head, shards, "output head")
        dense[weight.data_ptr()] = names["head"]
    info = compress_model(model, config, scope=scope, **options)
    _stored_sizes(info, shards, names, tied)

    placeholders = set(sentinel_names(model, scope))

    def save_state(state, path):
        written = _write_streamed(state, path, shards, dense, placeholders)
        # bytes as stored (the body keeps its dtype), before write_folder records them in embcompress.json
        info["after"]["model_bytes"] = written - len(placeholders) * SENTINEL.numel()

    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_folder(model, tmp, tokenizer, info, extra, dtype=shards.dtype, save_state=save_state)
        open_folder(tmp)  # every check loading makes, before the folder is put in place
    return info


def is_tied_meta(model: nn.Module, emb: nn.Module, head: nn.Module) -> bool:
    """Whether loading would tie the head to the embedding: the config says so (transformers ties them
    in from_pretrained, not on a model built empty)."""
    from .models import text_config

    return head.weight is emb.weight or bool(getattr(text_config(model.config), "tie_word_embeddings", False))


def _stored_sizes(info, shards: Shards, names: dict[str, str | None], tied: bool) -> None:
    """``compress_model`` counted the meta model as fp32; count dense parts as the shards store them."""
    def stored(name):
        _, e, _ = shards.entries[name]
        return e["end"] - e["begin"]

    before, after, scope = info["before"], info["after"], info["scope"]
    before["model_bytes"] = shards.nbytes()
    before["embedding_bytes"] = stored(names["input"])
    before["head_bytes"] = 0 if names["head"] is None or tied else stored(names["head"])
    if scope == "head":
        after["embedding_bytes"] = before["embedding_bytes"]
    if scope == "input" and names["head"] is not None:
        after["head_bytes"] = before["head_bytes"] or before["embedding_bytes"]
