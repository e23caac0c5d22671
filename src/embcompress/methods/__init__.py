"""Registry of compression methods: one module per method, chosen by name.

Each method module has ``NAME``, a ``Config`` dataclass, ``fit(weight, config)`` and ``Module``.
Presets are named configurations of a method (e.g. the autoencoder with fast settings).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import torch

from ..errors import EmbcompressError
from . import autoencoder, ggml, hybrid, mixed, pq, scalar, svd, tiered
from .base import CompressedEmbedding

METHODS = {m.NAME: m for m in (svd, autoencoder, scalar, ggml, pq, mixed, tiered, hybrid)}

# preset name -> (method name, overrides of that method's defaults)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "svd": ("svd", {}),
    "autoencoder": ("autoencoder", {}),  # the authors' exact settings
    "autoencoder-fast": ("autoencoder", autoencoder.FAST),
    "autoencoder-elu": ("autoencoder", {**autoencoder.FAST, "activation": "elu"}),
    # the authors' follow-up: LeakyReLU encoder, Tanh decoder, each row rescaled to its stored norm
    "autoencoder-leaky": ("autoencoder", {**autoencoder.FAST, "activation": "leaky-tanh", "row_norms": True}),
    "int": ("int", {}),
    "pq": ("pq", {}),
    "mixed": ("mixed", {}),
    "tiered": ("tiered", {}),
    # what the validation text favoured (benchmarks/quality_per_byte.md): finer tiers over a rank-1 part
    "tiered-rank1": ("tiered", {"tiers": "8:32,4:32,3:32,3:64,2:32,2:64,1:32,1:64,0", "rank": 1}),
    # shape-gain PQ rows at 2 and 1 bits a value in place of the int2/int1 tiers: SST-2/MRPC text at 8x
    # +13.6 % / +11.7 % against +18.6 % / +17.4 % (benchmarks/prior_probe.py)
    "tiered-pq": ("tiered", {"tiers": "8:32,4:32,3:32,3:64,pq4,pq8,0", "rank": 1}),
    "gguf": ("gguf", {}),
    "hybrid": ("hybrid", {}),
}


def method_names() -> list[str]:
    return sorted(PRESETS)


# the generic floors and ranges; a method's own __post_init__ checks the rest (bits 1-8, prior, ...)
AT_LEAST_ONE = {"batch_size", "epochs", "iterations", "niter", "group_size", "sub_dim", "hot_group_size",
                "cold_sub_dim", "lr_step_epochs"}
UNIT_INTERVAL = {"cold_share", "alpha_final", "lr_gamma"}


def coerce_option(cls, name: str, value: Any, method: str) -> Any:
    """An option value checked against the config field's type and range (one-line error otherwise)."""
    hint = typing.get_type_hints(cls)[name]
    allowed = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    where = f"option {name} of method {method!r}"
    if value is None:
        if type(None) in allowed:
            return None
        raise EmbcompressError(f"{where} cannot be none; give a value")
    kind = next(iter(allowed - {type(None)}))
    if kind is bool:
        if not isinstance(value, bool):
            raise EmbcompressError(f"{where} must be true or false (got {value!r})")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EmbcompressError(f"{where} must be a whole number (got {value!r})")
        low = 1 if name in AT_LEAST_ONE else 0
        if value < low:
            raise EmbcompressError(f"{where} must be at least {low} (got {value})")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EmbcompressError(f"{where} must be a finite number (got {value!r})")
        value = float(value)
        if name in UNIT_INTERVAL and not 0 <= value <= 1:
            raise EmbcompressError(f"{where} must lie within [0, 1] (got {value})")
        if value < 0:  # lr=0 is allowed: an untrained baseline
            raise EmbcompressError(f"{where} must not be negative (got {value})")
    elif kind is str:
        value = str(value)
        if name == "device":
            check_device(value, where)
    return value


def check_device(text: str, where: str = "device") -> None:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise EmbcompressError(f"{where}: {text!r} is not a device; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmbcompressError(f"{where}: {text} asked for, but this machine has no CUDA GPU; use cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EmbcompressError(f"{where}: mps asked for, but it is not available here; use cpu")


def make_config(name: str, **options: Any):
    """The config dataclass of method/preset ``name`` with ``options`` overriding its defaults."""
    if name not in PRESETS:
        raise EmbcompressError(f"unknown method {name!r}; choose one of: {', '.join(method_names())}")
    method, preset = PRESETS[name]
    cls = METHODS[method].Config
    fields = {f.name for f in dataclasses.fields(cls)} - {"method"}
    unknown = set(options) - fields
    if unknown:
        raise EmbcompressError(
            f"method {name!r} has no option {', '.join(sorted(unknown))}; its options are: {', '.join(sorted(fields))}"
        )
    options = {k: coerce_option(cls, k, v, name) for k, v in options.items()}
    return cls(**{**preset, **options})


def compress(weight: torch.Tensor, config, row_weights: torch.Tensor | None = None) -> CompressedEmbedding:
    """Compress one embedding matrix (V×d) with the method ``config`` names.

    ``row_weights`` (V,) are token importances (e.g. calibration counts) for methods that use them.
    """
    module = METHODS[config.method]
    if row_weights is not None and "row_weights" in module.fit.__code__.co_varnames:
        return module.fit(weight, config, row_weights=row_weights)
    return module.fit(weight, config)


def uses_calibration(config) -> bool:
    """Whether ``compress`` hands this config's method the calibration counts (and it reads them)."""
    takes = "row_weights" in METHODS[config.method].fit.__code__.co_varnames
    return takes and getattr(config, "importance", "calibration") == "calibration"


def module_class(method: str) -> type[CompressedEmbedding]:
    if method not in METHODS:
        raise EmbcompressError(f"unknown compressed module type {method!r}; this version knows {', '.join(METHODS)}")
    return METHODS[method].Module


__all__ = ["METHODS", "PRESETS", "CompressedEmbedding", "compress", "make_config", "method_names", "module_class",
           "uses_calibration"]
