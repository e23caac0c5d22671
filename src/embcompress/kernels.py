"""Fused CPU lookups for the quantized and product-quantized embeddings (kernels.cpp), with the torch
ops as the fallback.

The C++ is compiled on first use with ``torch.utils.cpp_extension`` (about 40 s, then cached in
``TORCH_EXTENSIONS_DIR``, by default ~/.cache/torch_extensions). Without a compiler, without ninja, on
a GPU, where gradients must flow, or with ``EMBCOMPRESS_KERNELS=0`` every function here returns None
and callers use torch ops, which give the same floats (shape-gain PQ: to the last bit of a rounding),
only slower on a CPU.

Each function decodes rows ``ids`` into a new ``ids.shape + (dim,)`` float32 tensor, or, given
``out`` and ``rows`` (distinct rows of a contiguous float32 ``out``), into ``out[rows]`` (or added to
them with ``add_to``): one write a row when several modules share one output.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("kernels.cpp")
_loaded: dict[str, object] = {}
_NONE = torch.empty(0)


def enabled() -> bool:
    return os.environ.get("EMBCOMPRESS_KERNELS", "1") != "0"


_NAME = "embcompress_kernels"
# -fopenmp: at::parallel_for is inline OpenMP, so without it the kernels run on one thread
# -march=native: the logits kernels' byte → float loops vectorize only with the wider ISA (SSE2 has no
# byte widening); the build folder is keyed by this CPU's flags, so a machine never loads another's build
_CFLAGS = ["-O3", "-ffp-contract=off", "-fopenmp", "-march=native"]


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def _build_root() -> Path:
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(_NAME, False)).parent


def _import(library: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(_NAME, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build() -> object:
    """Build in a folder of this process's own, then rename it into place.

    ``cpp_extension.load`` guards a shared build folder with a lock file that a killed builder never
    removes, after which every later run waits forever. Here no run ever waits on another: a finished
    build is a folder named by the hash of the source and flags; a dead builder's temp folder is removed.
    """
    import hashlib
    import shutil

    from torch.utils.cpp_extension import load

    from .serialization import pid_alive

    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join(_CFLAGS + [torch.__version__, _cpu_flags()]).encode()
                         ).hexdigest()[:16]
    root = _build_root()
    final = root / f"{_NAME}-{key}"
    library = final / f"{_NAME}.so"
    if library.is_file():
        return _import(library)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{_NAME}-*.tmp-*"):
        if not pid_alive(stale.name.rpartition(".tmp-")[2]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{_NAME}-{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        warnings.warn("embcompress: compiling the fused CPU lookups once (about 40 s; cached in "
                      f"{root})", stacklevel=4)
        module = load(_NAME, [str(_SOURCE)], build_directory=str(tmp), verbose=False, extra_cflags=_CFLAGS,
                      extra_ldflags=["-fopenmp"])
        try:
            tmp.rename(final)
        except OSError:  # another process finished first; ours is loaded already
            shutil.rmtree(tmp, ignore_errors=True)
        return module
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extension():
    if "ext" not in _loaded:
        try:
            _loaded["ext"] = _build()
        except Exception as exc:  # no compiler or ninja: lookups stay correct, only slower
            warnings.warn(f"embcompress: fused CPU lookups unavailable, using torch ops ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); set EMBCOMPRESS_KERNELS=0 to skip the build",
                          stacklevel=3)
            _loaded["ext"] = None
    return _loaded["ext"]


def _usable(*tensors: torch.Tensor | None, out: torch.Tensor | None = None):
    """The built extension when it can serve these tensors (None entries ignored), else None."""
    tensors = [t for t in (*tensors, out) if t is not None]
    if not enabled() or any(t.device.type != "cpu" for t in tensors):
        return None
    if out is not None and (out.dtype != torch.float32 or not out.is_contiguous()):
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):  # the kernels have no backward
        return None
    return _extension()


def _ids(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).long().contiguous()


def _run(kernel, ids, out, rows, add_to):
    """``kernel(flat ids, out, rows, add_to)``; a new output is shaped like ``ids``."""
    if out is None:
        flat = kernel(_ids(ids), _NONE, _NONE, False)
        return flat.reshape(*ids.shape, flat.shape[-1])
    return kernel(_ids(ids), out, _ids(rows), add_to)


def gather_int(packed, scales, offsets, ids, bits: int, group: int, mul: float, add: float, out=None, rows=None,
               add_to=False):
    """k-bit codes decoded as ``(code·mul + add)·scale (+ offset)`` per group; None: use torch ops."""
    if 8 % bits == 0 and group % (8 // bits):  # a group must hold whole bytes
        return None
    if scales.dtype != torch.float16 or (offsets is not None and offsets.dtype != torch.float16):
        return None  # fp32 while distillation tunes them: the torch ops serve
    ext = _usable(packed, scales, offsets, ids, out=out)
    if ext is None:
        return None
    offsets = _NONE.half() if offsets is None else offsets.contiguous()
    return _run(lambda i, o, r, a: ext.gather_int(packed.contiguous(), scales.contiguous(), offsets, i, bits, group,
                                               float(mul), float(add), o, r, a), ids, out, rows, add_to)


def gather_gguf(blocks, ids, qtype: str, out=None, rows=None, add_to=False):
    """llama.cpp Q4_0 / Q8_0 blocks decoded; None: use torch ops."""
    ext = _usable(blocks, ids, out=out) if qtype in ("Q4_0", "Q8_0") else None
    if ext is None:
        return None
    return _run(lambda i, o, r, a: ext.gather_gguf(blocks.contiguous(), i, qtype, o, r, a), ids, out, rows, add_to)


def gather_pq(codes, table, sq, norms, ids, out=None, rows=None, add_to=False):
    """Centroids from ``table`` (S·256, sub), rescaled to ``norms`` when given (``sq``: each table row's
    squared norm); None: use torch ops."""
    ext = _usable(codes, table, ids, out=out)
    if ext is None or (norms is not None and norms.dtype != torch.float16):
        return None
    sq = _NONE if sq is None else sq.contiguous()
    norms = _NONE.half() if norms is None else norms.contiguous()
    return _run(lambda i, o, r, a: ext.gather_pq(codes.contiguous(), table.contiguous(), sq, norms, i, o, r, a),
                ids, out, rows, add_to)


# -- the tied head: logits straight from the stored codes ---------------------------------------

# hidden vectors a fused logits call takes; beyond it, decoding chunks for a BLAS matmul is faster (the
# kernels decode each row once and reuse it for every vector, but their dot products are not a GEMM)
FUSED_LOGITS_MAX_TOKENS = 16


# (bits, bytes a group) the logits kernel is compiled for (kernels.cpp, EC_ROW)
_INT_LOGITS_SHAPES = {(1, 4), (1, 8), (1, 16), (2, 4), (2, 8), (2, 16), (2, 32), (4, 4), (4, 8), (4, 16), (4, 32),
                      (4, 64), (8, 8), (8, 16), (8, 32), (8, 64), (8, 128)}


def _hidden_ok(hidden: torch.Tensor) -> bool:
    return hidden.dim() == 2 and hidden.shape[0] <= FUSED_LOGITS_MAX_TOKENS


def logits_int(packed, scales, offsets, hidden, bits: int, group: int, mul: float, add: float):
    """(T, V) float32 = hidden · Wᵀ for k-bit codes; None: use the decoding path."""
    if not _hidden_ok(hidden):
        return None
    if 8 % bits == 0 and (group % (8 // bits) or (bits, group * bits // 8) not in _INT_LOGITS_SHAPES):
        return None
    if scales.dtype != torch.float16 or (offsets is not None and offsets.dtype != torch.float16):
        return None
    ext = _usable(packed, scales, offsets, hidden)
    if ext is None:
        return None
    offsets = _NONE.half() if offsets is None else offsets.contiguous()
    return ext.logits_int(packed.contiguous(), scales.contiguous(), offsets, hidden.float().contiguous(), bits, group,
                          float(mul), float(add))


def logits_gguf(blocks, hidden, qtype: str):
    """(T, V) float32 = hidden · Wᵀ for Q4_0 / Q8_0 blocks; None: use the decoding path."""
    ext = _usable(blocks, hidden) if qtype in ("Q4_0", "Q8_0") and _hidden_ok(hidden) else None
    if ext is None:
        return None
    return ext.logits_gguf(blocks.contiguous(), hidden.float().contiguous(), qtype)


def logits_pq(codes, lut, factor):
    """(T, V) float32: for each row the sum of the lookup-table entries (lut: (S·256, T)) its codes pick,
    × ``factor`` (V,) when given; None: use torch ops."""
    ext = _usable(codes, lut, factor) if lut.shape[1] <= FUSED_LOGITS_MAX_TOKENS else None
    if ext is None:
        return None
    factor = _NONE if factor is None else factor.float().contiguous()
    return ext.logits_pq(codes.contiguous(), lut.float().contiguous(), factor)
