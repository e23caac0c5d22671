"""The methods: one module each, registered with ``register_method`` (see ``registry.py``).

Every module in this package is imported once so that it registers itself; methods from outside the
package come from ``$EMBCOMPRESS_METHODS`` (comma-separated module names or .py files) and from
``embcompress.methods`` entry points.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import importlib.util
import math
import os
import pkgutil
import re
import types
import typing
from pathlib import Path
from typing import Any

import torch

from ..errors import EmbcompressError
from .base import CompressedEmbedding
from .registry import METHODS, PRESETS, Method, register_method


def _import_builtin_methods() -> None:
    # note: this binds the submodule ``int`` as an attribute of the package, so code here says builtins.int
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "registry", "packing", "importance"):
            importlib.import_module(f"{__name__}.{info.name}")


def load_external_methods() -> None:
    """Methods from outside the package: ``$EMBCOMPRESS_METHODS`` and ``embcompress.methods`` entry points."""
    from importlib.metadata import entry_points

    for item in filter(None, (p.strip() for p in os.environ.get("EMBCOMPRESS_METHODS", "").split(","))):
        try:
            if item.endswith(".py"):
                path = Path(item)
                spec = importlib.util.spec_from_file_location(f"embcompress_user_{path.stem}", path)
                if spec is None or not path.is_file():
                    raise FileNotFoundError(item)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except EmbcompressError:
            raise
        except Exception as e:
            raise EmbcompressError(f"EMBCOMPRESS_METHODS names {item!r}, which cannot be imported "
                                   f"({type(e).__name__}: {e}); fix or remove it") from None
    for ep in entry_points(group="embcompress.methods"):
        ep.load()


# -- the one option grammar of the CLI (-o key=value) and of sweeps (NAME:key=value,key=value) --------

_NEXT_OPTION = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")  # a comma starts a new option only before "key="


def parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (builtins.int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_option(item: str) -> tuple[str, Any]:
    """``key=value`` → (key, typed value); values may hold commas and colons (tiers=4:32,2:32,0)."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise EmbcompressError(f"option {item!r} must look like key=value (e.g. randomized=true)")
    return key.strip(), parse_value(value.strip())


def parse_method(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:key=value,key=value`` → (name, options)."""
    name, _, rest = text.partition(":")
    items = [p.strip() for p in _NEXT_OPTION.split(rest)] if rest.strip() else []
    return name.strip(), dict(parse_option(item) for item in items if item)


def is_known(name: str) -> bool:
    if name not in PRESETS:
        load_external_methods()
    return name in PRESETS


def method_names() -> list[str]:
    return sorted(PRESETS)


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
    elif kind is builtins.int:
        if isinstance(value, bool) or not isinstance(value, builtins.int):
            raise EmbcompressError(f"{where} must be a whole number (got {value!r})")
        low = 1 if name in AT_LEAST_ONE else 0
        if value < low:
            raise EmbcompressError(f"{where} must be at least {low} (got {value})")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (builtins.int, float)) or not math.isfinite(value):
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
    if not is_known(name):
        raise EmbcompressError(f"unknown method {name!r}; choose one of: {', '.join(method_names())}")
    method, preset = PRESETS[name]
    cls = METHODS[method].config
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
    method = _method(config.method)
    if row_weights is not None and method.takes_row_weights:
        return method.fit(weight, config, row_weights=row_weights)
    return method.fit(weight, config)


def from_embedding(source: torch.nn.Module, config, row_weights: torch.Tensor | None = None) -> CompressedEmbedding:
    """The compressed module for a model's embedding layer, built in one place: the fitted rows plus
    what the layer itself carries (padding row, Gemma's ``embed_scale``), frozen."""
    weight = source.weight.detach()
    module = compress(weight, config, row_weights=row_weights)
    padding_idx = getattr(source, "padding_idx", None)  # an output head (nn.Linear) has none
    module.padding_idx = padding_idx
    module.zero_padding_row = padding_idx is not None and bool((weight[padding_idx] == 0).all())
    module.scale = float(getattr(source, "embed_scale", 1.0))  # Gemma's sqrt(hidden) stays inside the module
    return module.requires_grad_(False)


def uses_calibration(config) -> bool:
    """Whether ``compress`` hands this config's method the calibration counts (and it reads them)."""
    return _method(config.method).takes_row_weights and getattr(config, "importance", "calibration") == "calibration"


def _method(name: str) -> Method:
    if name not in METHODS:
        load_external_methods()
    if name not in METHODS:
        raise EmbcompressError(f"unknown compressed module type {name!r}; this version knows {', '.join(METHODS)} "
                               "(a method of your own: name its file in $EMBCOMPRESS_METHODS)")
    return METHODS[name]


def module_class(method: str) -> type[CompressedEmbedding]:
    return _method(method).module


_import_builtin_methods()

__all__ = ["METHODS", "PRESETS", "CompressedEmbedding", "Method", "compress", "from_embedding", "is_known",
           "load_external_methods", "make_config", "method_names", "module_class", "parse_method", "parse_option",
           "parse_value", "register_method", "uses_calibration"]
