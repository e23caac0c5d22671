"""The on-disk format, all in one place: atomic folder writes, a bounded safetensors reader, checksums,
the metadata file and its checks, and ``save_compressed`` / ``load_compressed``.

A compressed folder is a transformers folder (``config.json`` with a ``quantization_config`` whose
``quant_method`` is ``embcompress``, tokenizer, ``model.safetensors``) plus ``embcompress.json``,
which records what was compressed and the sha256 of every other file. Everything read from a folder
is treated as hostile: sizes are checked against the file and the module spec before anything is
allocated, and the model is built on the meta device before a single weight is read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .errors import EmbcompressError

META_FILE = "embcompress.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: before config.json carried quantization_config and every file a checksum
QUANT_METHOD = "embcompress"
PARTIAL_MARKER = ".embcompress-partial"  # inside a folder being written: pid@host of the writer
# input: the input embedding; tied: one compressed matrix read by the embedding and the head; head: an
# untied output head alone; both: the input embedding and an untied head, each its own module
SCOPES = ("input", "tied", "head", "both")
MAX_HEADER_BYTES = 100 << 20
MAX_POSITIONS = 1 << 21  # models precompute per-position buffers at init; no real model here needs more
MAX_SPEC_ITEMS = 256
SIZE_KEYS = ("model_parameters", "model_bytes", "embedding_parameters", "embedding_bytes")


# -- small file helpers -------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def _fsync_tree(folder: Path) -> None:
    for p in sorted(folder.rglob("*"), reverse=True):
        if p.is_file():
            with p.open("rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pid_alive(owner: str) -> bool:
    pid, _, host = owner.strip().partition("@")
    if host and host != socket.gethostname():
        return True  # another machine's writer: never ours to judge
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def os_error(e: OSError, what: str) -> EmbcompressError:
    if e.errno == errno.ENOSPC:
        return EmbcompressError(f"no space left on the device while {what}; free some space or choose another folder")
    reason = e.strerror or type(e).__name__
    return EmbcompressError(f"cannot finish {what} ({reason}: {e.filename or ''}); choose a writable folder")


def _clean_leftovers(target: Path, owned: Callable[[Path], bool]) -> None:
    """Remove our dead writers' temp folders beside ``target``; put back a previous version that a crash
    between the two renames of an overwrite left aside."""
    parent = target.parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{target.name}.tmp-*"):
        marker = p / PARTIAL_MARKER
        if p.is_dir() and marker.is_file() and not pid_alive(marker.read_text(errors="replace")):
            shutil.rmtree(p, ignore_errors=True)
    for p in sorted(parent.glob(f".{target.name}.old-*")):
        if not (p.is_dir() and owned(p)):
            continue
        if not target.exists():
            p.rename(target)  # the new version never got in place: the old one comes back
        else:
            shutil.rmtree(p, ignore_errors=True)


def _ours(path: Path) -> bool:
    return (path / META_FILE).is_file()


def check_target(target: str | Path, overwrite: bool = False, owned: Callable[[Path], bool] = _ours,
                 what: str = "an embcompress output folder") -> Path:
    """``target`` may be written: absent, or (with ``overwrite``) a folder ``owned`` recognises as ours.
    Callers check before hours of work; ``atomic_folder`` checks again before writing."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise EmbcompressError(f"{target} exists and is not a folder; choose another output path")
        if not overwrite:
            raise EmbcompressError(f"{target} already exists; choose another output folder or pass --overwrite")
        if not owned(target):
            raise EmbcompressError(f"{target} is not {what} (no {META_FILE}); --overwrite only replaces "
                                   "embcompress outputs: choose another output folder")
    return target


@contextlib.contextmanager
def atomic_folder(target: str | Path, overwrite: bool = False, owned: Callable[[Path], bool] = _ours,
                  what: str = "an embcompress output folder") -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; on success it replaces ``target`` in one rename.

    Only a folder that ``owned`` recognises as ours is ever replaced (``--overwrite`` never deletes
    a user's folder or file). On any failure nothing is left behind and an overwritten folder is kept.
    """
    target = check_target(target, overwrite, owned, what)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(target, owned)
        tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o777 & ~_umask())
        (tmp / PARTIAL_MARKER).write_text(f"{os.getpid()}@{socket.gethostname()}")
    except OSError as e:
        raise os_error(e, f"creating {target}") from None
    try:
        yield tmp
        (tmp / PARTIAL_MARKER).unlink()
        for p in tmp.rglob("*"):  # some writers (safetensors) create 0600 files: the user's umask decides
            p.chmod((0o777 if p.is_dir() else 0o666) & ~_umask())
        _fsync_tree(tmp)
        if target.exists():
            old = target.parent / f".{target.name}.old-{tmp.name[-8:]}"
            target.rename(old)
            try:
                tmp.rename(target)
            except BaseException:
                old.rename(target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
        _fsync_dir(target.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise os_error(e, f"writing {target}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- tensors ------------------------------------------------------------------------------------

def dedupe_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses shared tensors: keep each one once (same storage, offset, shape and dtype),
    remember the other names as aliases of the kept one."""
    kept, aliases, owner = {}, {}, {}
    for name, t in state.items():
        key = (t.device.type, t.data_ptr(), t.numel(), t.dtype, tuple(t.shape)) if t.device.type != "meta" else id(t)
        if key in owner:
            aliases[name] = owner[key]
        else:
            owner[key] = name
            kept[name] = t.detach() if t.device.type == "meta" else t.detach().cpu().contiguous()
    return kept, aliases


DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors_header(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The tensors' entries ``{name: {dtype, shape, begin, end}}`` and where data starts, every field
    checked against the file's length before anything is allocated."""
    size = path.stat().st_size

    def bad(why: str) -> EmbcompressError:
        return EmbcompressError(f"{path} is not a valid safetensors file ({why}); compress the model again")

    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad("shorter than its 8-byte header length")
        header_len = int.from_bytes(head, "little")
        if not 2 <= header_len <= min(size - 8, MAX_HEADER_BYTES):
            raise bad(f"header length {header_len} does not fit a {size}-byte file")
        try:
            header = json.loads(f.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad("header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    data_len = size - 8 - header_len
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict):
                raise bad("__metadata__ is not an object")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str) or entry["dtype"] not in DTYPES:
            raise bad(f"tensor {name!r} has no known dtype")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(type(s) is int and 0 <= s < 1 << 40 for s in shape)):
            raise bad(f"tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise bad(f"tensor {name!r} has data offsets {offsets!r} outside the file")
        nbytes = math.prod(shape) * DTYPES[entry["dtype"]].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise bad(f"tensor {name!r} has {offsets[1] - offsets[0]} bytes for shape {shape}")
        entries[name] = {"dtype": DTYPES[entry["dtype"]], "shape": tuple(shape), "begin": offsets[0], "end": offsets[1]}
    return entries, 8 + header_len


def read_safetensors(path: Path, entries: dict[str, dict[str, Any]], data_start: int) -> dict[str, torch.Tensor]:
    """Read each (already checked) tensor into fresh, aligned memory.

    Not ``safetensors.torch.load_file``: its tensors come from a memory map whose touched pages count
    in the process's peak alongside the copies we need anyway (aligned memory keeps BLAS on the same
    kernels, and roundings, as before saving); plain reads load the file once.
    """
    state = {}
    with path.open("rb") as f:
        for name, e in entries.items():
            t = torch.empty(e["shape"], dtype=e["dtype"])
            if t.numel():
                f.seek(data_start + e["begin"])
                if f.readinto(memoryview(t.view(-1).view(torch.uint8).numpy())) != e["end"] - e["begin"]:
                    raise EmbcompressError(f"{path}: tensor {name} is truncated; compress the model again")
            state[name] = t
    return state


# -- the metadata -------------------------------------------------------------------------------

def _meta_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def is_compressed_dir(path: str | Path) -> bool:
    return _ours(Path(path))


def _check_json_values(value: Any, where: str, depth: int = 0) -> None:
    """Spec values are plain, finite and small: nothing a constructor could be steered with."""
    if depth > 4:
        raise EmbcompressError(f"{where} is nested too deeply; compress the model again")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > 1 << 40:
            raise EmbcompressError(f"{where} holds the value {value!r}; compress the model again")
        return
    if isinstance(value, (list, dict)):
        if len(value) > MAX_SPEC_ITEMS:
            raise EmbcompressError(f"{where} holds {len(value)} items; compress the model again")
        for k, v in (value.items() if isinstance(value, dict) else enumerate(value)):
            _check_json_values(v, f"{where}.{k}", depth + 1)
        return
    raise EmbcompressError(f"{where} holds a {type(value).__name__}; compress the model again")


def check_module_spec(method: Any, spec: Any, where: str) -> None:
    from .methods import METHODS, load_external_methods

    if isinstance(method, str) and method not in METHODS:
        load_external_methods()  # a method of the user's own, named in $EMBCOMPRESS_METHODS
    if not isinstance(method, str) or method not in METHODS:
        raise EmbcompressError(f"{where} names the compressed module type {method!r}; this version knows "
                               f"{', '.join(METHODS)}: compress the model again, upgrade embcompress, or name the "
                               "file of your own method in $EMBCOMPRESS_METHODS")
    if not isinstance(spec, dict):
        raise EmbcompressError(f"{where} has no module spec; compress the model again")
    _check_json_values(spec, f"{where} spec")
    for key in ("num_embeddings", "embedding_dim"):
        if type(spec.get(key)) is not int or spec[key] < 1:
            raise EmbcompressError(f"{where} spec has {key}={spec.get(key)!r}; compress the model again")
    scale = spec.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0:
        raise EmbcompressError(f"{where} spec has scale={scale!r}; compress the model again")


def empty_module(method: str, spec: dict[str, Any], where: str = META_FILE) -> nn.Module:
    """The compressed module ``spec`` describes, on the meta device (nothing allocated), after checks."""
    from .methods import module_class

    check_module_spec(method, spec, where)
    default = torch.get_default_dtype()
    try:  # fp32 parts stay fp32 even while transformers builds a model in the dtype a user asked for
        torch.set_default_dtype(torch.float32)
        with torch.device("meta"):
            emb = module_class(method)(**spec)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise EmbcompressError(f"{where} spec does not build a {method} module ({type(e).__name__}); "
                               "compress the model again") from None
    finally:
        torch.set_default_dtype(default)
    emb.requires_grad_(False)
    return emb


def check_meta(meta: Any, where: str) -> dict[str, Any]:
    """Every field the loader uses, with its type and range; a one-line error otherwise."""
    if not isinstance(meta, dict):
        raise EmbcompressError(f"{where} is not a JSON object; compress the model again")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise EmbcompressError(f"{where} was written by another embcompress format ({version!r}); "
                               f"this version reads {READABLE_VERSIONS}: compress the model again")
    # version 1 had no self-checksum; one that carries it is a version-2 file edited to look older
    if (version >= 2 or "meta_sha256" in meta) and meta.get("meta_sha256") != _meta_digest(meta):
        raise EmbcompressError(f"{where} does not match its own checksum (edited or damaged); compress the model again")
    if meta.get("scope") not in SCOPES:
        raise EmbcompressError(f"{where} has scope {meta.get('scope')!r}, not one of {', '.join(SCOPES)}; compress again")
    cls = meta.get("model_class")
    if not (isinstance(cls, str) and re.fullmatch(r"[A-Z][A-Za-z0-9_]{0,99}", cls)):
        raise EmbcompressError(f"{where} has model_class {cls!r}; compress the model again")
    _model_class(cls)
    check_module_spec(meta.get("method"), meta.get("spec"), where)
    if meta["scope"] == "both":
        head = meta.get("head")
        if not (isinstance(head, dict) and isinstance(head.get("config", {}), dict)):
            raise EmbcompressError(f"{where} has scope 'both' but no head part; compress the model again")
        check_module_spec(head.get("method"), head.get("spec"), f"{where} head")
        if head["spec"]["num_embeddings"] != meta["spec"]["num_embeddings"]:
            raise EmbcompressError(f"{where} has a head of {head['spec']['num_embeddings']} rows for an embedding of "
                                   f"{meta['spec']['num_embeddings']}; compress the model again")
    sums = meta.get("sha256")
    if not (isinstance(sums, dict) and WEIGHTS_FILE in sums and all(
            isinstance(k, str) and "/" not in k and k not in ("", ".", "..") and isinstance(v, str)
            and re.fullmatch(r"[0-9a-f]{64}", v) for k, v in sums.items())):
        raise EmbcompressError(f"{where} has no valid sha256 list; compress the model again")
    aliases = meta.get("aliases", {})
    if not (isinstance(aliases, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items())):
        raise EmbcompressError(f"{where} has invalid aliases; compress the model again")
    sentinels = meta.get("sentinels", [meta.get("sentinel", "")])
    if not (isinstance(sentinels, list) and len(sentinels) <= 2 and all(isinstance(n, str) for n in sentinels)):
        raise EmbcompressError(f"{where} has an invalid sentinel name; compress the model again")
    if not isinstance(meta.get("head_bias", False), bool):
        raise EmbcompressError(f"{where} has invalid head_bias; compress the model again")
    for part in ("before", "after"):
        sizes = meta.get(part)
        if not (isinstance(sizes, dict) and all(type(sizes.get(k)) is int and sizes[k] > 0 for k in SIZE_KEYS)):
            raise EmbcompressError(f"{where} has no valid '{part}' sizes; compress the model again")
    if not isinstance(meta.get("config", {}), dict):
        raise EmbcompressError(f"{where} has an invalid config; compress the model again")
    return meta


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        old = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
        hint = f" (an interrupted overwrite left its previous version in {old[0]})" if old else ""
        raise EmbcompressError(f"{path} is not a folder{hint}; give the folder written by `embcompress compress`")
    if not is_compressed_dir(path):
        raise EmbcompressError(f"{path} has no {META_FILE}: not an embcompress folder; pass it as a model instead")
    try:
        raw = (path / META_FILE).read_bytes()
        if len(raw) > 16 << 20:
            raise EmbcompressError(f"{path / META_FILE} is {len(raw)} bytes, not metadata; compress the model again")
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise EmbcompressError(f"{path / META_FILE} is corrupt (not UTF-8 JSON); compress the model again") from None
    except OSError as e:
        raise os_error(e, f"reading {path / META_FILE}") from None
    return check_meta(meta, str(path / META_FILE))


def verify_files(path: Path, meta: dict[str, Any]) -> list[str]:
    """Check every file's recorded sha256; return the names checked."""
    sums = meta["sha256"]
    checked = []
    for name in sorted(sums):
        f = path / name
        if not f.is_file():
            raise EmbcompressError(f"{f} is missing; the folder is incomplete, compress the model again")
        if sha256_file(f) != sums[name]:
            raise EmbcompressError(f"{f} does not match its recorded checksum (truncated or altered); compress again")
        checked.append(name)
    return checked


# -- saving -------------------------------------------------------------------------------------

def quantization_config(info: dict[str, Any]) -> dict[str, Any]:
    """What ``config.json`` carries so that transformers' ``from_pretrained`` rebuilds the compressed model."""
    config = {"quant_method": QUANT_METHOD, "format_version": FORMAT_VERSION, "scope": info["scope"],
              "method": info["method"], "spec": info["spec"], "head_bias": bool(info["head_bias"])}
    if info.get("head") is not None:
        config["head"] = {"method": info["head"]["method"], "spec": info["head"]["spec"]}
    return config


def module_parts(meta: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Which compressed module each role holds, ``{"input"|"head": (method, spec)}``: the top-level method
    and spec describe the first compressed module (the head's, in scope ``head``), ``head`` the second."""
    first = (meta["method"], meta["spec"])
    if meta["scope"] == "head":
        return {"head": first}
    if meta["scope"] == "both":
        return {"input": first, "head": (meta["head"]["method"], meta["head"]["spec"])}
    return {"input": first}


def sentinel_names(model: nn.Module, scope: str) -> list[str]:
    """The dense matrices' own names (input embedding, and an untied head that was compressed). A tiny
    tensor under each makes plain transformers (without the embcompress quantizer) refuse the folder
    with a size mismatch instead of loading a random embedding or head."""
    wanted = ([model.get_input_embeddings()] if scope != "head" else []) + \
             ([model.get_output_embeddings()] if scope in ("head", "both") else [])
    names = {id(module): f"{name}.weight" for name, module in model.named_modules()}
    if any(m is None or id(m) not in names for m in wanted):
        raise EmbcompressError("the compressed embedding is not part of the model; compress it again")
    return [names[id(m)] for m in wanted]


def folder_sentinels(meta: dict[str, Any]) -> set[str]:
    return set(meta.get("sentinels", [meta.get("sentinel")])) - {None, ""}


SENTINEL = torch.zeros(1, dtype=torch.uint8)


WEIGHTS_METADATA = {"format": "pt", "embcompress": str(FORMAT_VERSION)}


def _save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(state, str(path), metadata=WEIGHTS_METADATA)


def write_folder(model: nn.Module, tmp: Path, tokenizer, info: dict[str, Any], extra: dict[str, Any] | None,
                 save_state: Callable[[dict[str, torch.Tensor], Path], None] = _save_state,
                 dtype: torch.dtype | None = None) -> None:
    """The folder's files. ``save_state`` writes the (deduplicated) state dict to the weights file: by
    default all in memory; streaming compress copies the meta-device tensors from the source shards."""
    model.config.save_pretrained(tmp)
    config = json.loads((tmp / CONFIG_FILE).read_text())
    config["quantization_config"] = quantization_config(info)
    # as transformers' save_pretrained does: without it, dtype "auto" would follow the first float tensor
    # of the file, which can be an fp16 factor of the compressed embedding
    config["dtype"] = str(dtype or getattr(model, "dtype", torch.float32)).removeprefix("torch.")
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state, aliases = dedupe_shared(model.state_dict())
    sentinels = sentinel_names(model, info["scope"])
    for name in sentinels:
        state[name] = SENTINEL.clone()
    save_state(state, tmp / WEIGHTS_FILE)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    files = sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name not in (META_FILE, PARTIAL_MARKER))
    meta = {
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        **info,
        "aliases": aliases,
        "sentinel": sentinels[0],
        "sentinels": sentinels,
        **(extra or {}),
        "sha256": {name: sha256_file(tmp / name) for name in files},
    }
    meta["meta_sha256"] = _meta_digest(meta)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))


def save_compressed(model: nn.Module, out_dir: str | Path, tokenizer=None, overwrite: bool = False,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write config, weights (safetensors), tokenizer and ``embcompress.json``, atomically."""
    info = getattr(model, "embcompress_info", None)
    if info is None:
        raise EmbcompressError("this model has no compressed embedding; call compress_model first")
    with atomic_folder(out_dir, overwrite=overwrite) as tmp:
        write_folder(model, tmp, tokenizer, info, extra)
    return Path(out_dir)


# -- loading ------------------------------------------------------------------------------------

def _model_class(name: str):
    import transformers

    try:
        cls = getattr(transformers, name)
    except (AttributeError, ImportError, RuntimeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise EmbcompressError(f"model_class {name!r} is not a transformers model class in this transformers; "
                               "upgrade transformers or compress the model again")
    return cls


_LAYER_INDEX = re.compile(r"\.(?:layers|layer|h|blocks|block)\.(\d+)\.")


def check_config_against_weights(config, entries: dict[str, dict[str, Any]], spec: dict[str, Any], where: str) -> None:
    """A config may only describe what the weights hold: refuse sizes that would build a huge model."""
    from .models import text_config

    text = text_config(config)
    layers = {int(m.group(1)) for name in entries for m in [_LAYER_INDEX.search(name)] if m}
    declared = getattr(text, "num_hidden_layers", None)
    if isinstance(declared, int) and declared > (max(layers) + 1 if layers else 0):
        raise EmbcompressError(f"{where} declares {declared} layers but the weights hold "
                               f"{max(layers) + 1 if layers else 0}; compress the model again")
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(text, attr, None)
        if isinstance(value, int) and not 0 < value <= MAX_POSITIONS:
            raise EmbcompressError(f"{where} declares {attr}={value}; compress the model again")
    if getattr(text, "vocab_size", spec["num_embeddings"]) != spec["num_embeddings"]:
        raise EmbcompressError(f"{where} has vocab_size {text.vocab_size} but the compressed embedding has "
                               f"{spec['num_embeddings']} rows; compress the model again")


def load_config(path: Path):
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(path, trust_remote_code=False)
    except Exception as e:  # hostile content: transformers' strict config fields raise their own error types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EmbcompressError(f"{path / CONFIG_FILE} cannot be read ({first}); compress the model again") from None


def build_empty(path: Path, meta: dict[str, Any], entries: dict[str, dict[str, Any]]) -> nn.Module:
    """The model of a compressed folder on the meta device, its compressed modules in place; the
    tensors the file holds are checked against its state dict before any is read."""
    from accelerate import init_empty_weights

    from .surgery import install_empty

    config = load_config(path)
    check_config_against_weights(config, entries, meta["spec"], str(path / CONFIG_FILE))
    parts = {role: empty_module(method, spec, f"{path / META_FILE} {role}")
             for role, (method, spec) in module_parts(meta).items()}
    cls = _model_class(meta["model_class"])
    if not isinstance(config, cls.config_class):
        raise EmbcompressError(f"{path / CONFIG_FILE} is a {type(config).__name__}, not a config of "
                               f"{meta['model_class']}; compress the model again")
    try:
        with init_empty_weights(include_buffers=False):
            model = cls(config)
    except Exception as e:  # a config transformers itself rejects
        raise EmbcompressError(f"{path / CONFIG_FILE} does not build {meta['model_class']} "
                               f"({type(e).__name__}); compress the model again") from None
    install_empty(model, parts, meta["scope"], meta["head_bias"])
    expected = model.state_dict()
    stored = set(entries) - folder_sentinels(meta)
    wanted = set(expected) - set(meta["aliases"])
    if stored != wanted or not set(meta["aliases"].values()) <= stored:
        diff = sorted(stored ^ wanted)[:3]
        raise EmbcompressError(f"{path / WEIGHTS_FILE} does not fit {meta['model_class']} (tensors differ: "
                               f"{', '.join(diff)}); compress the model again")
    for name in stored:
        if tuple(expected[name].shape) != entries[name]["shape"]:
            raise EmbcompressError(f"{path / WEIGHTS_FILE}: tensor {name} has shape {list(entries[name]['shape'])}, "
                                   f"the model needs {list(expected[name].shape)}; compress the model again")
    return model


def open_folder(path: Path, verify: bool = True):
    """(metadata, files checked, safetensors entries, data start, empty model): every check loading
    makes, before a single weight is read."""
    meta = read_meta(path)
    checked = verify_files(path, meta) if verify else []  # the tokenizer's files too: load_any reads them next
    if not (path / WEIGHTS_FILE).is_file():
        raise EmbcompressError(f"{path / WEIGHTS_FILE} is missing; the folder is incomplete, compress the model again")
    entries, start = read_safetensors_header(path / WEIGHTS_FILE)
    return meta, checked, entries, start, build_empty(path, meta, entries)


def verify_folder(path: str | Path) -> list[str]:
    """Every recorded checksum, then every structural check of loading, without reading a weight."""
    return open_folder(Path(path))[1]


def load_compressed(path: str | Path, device: str | torch.device | None = None, verify: bool = True) -> nn.Module:
    """Rebuild a model saved by ``save_compressed``; its logits equal those of the saved model.

    The dense V×d input matrix is never built: the model is made on the meta device, the compressed
    module is put in place, and the saved tensors are assigned.
    """
    from .surgery import relink_head

    path = Path(path)
    meta, _, entries, start, model = open_folder(path, verify)
    weights = path / WEIGHTS_FILE
    sentinels = folder_sentinels(meta)
    state = read_safetensors(weights, {k: v for k, v in entries.items() if k not in sentinels}, start)
    for alias, source in meta["aliases"].items():
        state[alias] = state[source]
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise EmbcompressError(f"{weights} does not fit {meta['model_class']} ({first}); compress the model again") from None
    relink_head(model)  # assign=True replaced the Parameters
    model.embcompress_info = {k: meta[k] for k in ("scope", "method", "config", "spec", "head", "head_bias",
                                                   "was_tied", "before", "after") if k in meta}
    model.eval()
    return model.to(device) if device is not None else model
