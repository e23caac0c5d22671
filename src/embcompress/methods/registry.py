"""Where methods live: ``register_method`` adds one, and nothing else needs editing.

A method is a typed config dataclass, a ``fit(weight, config[, row_weights])`` and the
``CompressedEmbedding`` subclass it returns. Its name is the default preset; ``presets`` adds named
variants (config overrides). A method defined outside the package registers itself the same way
(import its file, or name it in ``$EMBCOMPRESS_METHODS`` / an ``embcompress.methods`` entry point so
the command line and ``load_compressed`` find it).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import EmbcompressError


@dataclass(frozen=True)
class Method:
    name: str
    config: type
    fit: Callable
    module: type
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def takes_row_weights(self) -> bool:
        """Whether ``fit`` reads token importances (read from its signature)."""
        return "row_weights" in inspect.signature(self.fit).parameters


METHODS: dict[str, Method] = {}
# preset name -> (method name, overrides of that method's defaults); each method's own name included
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {}


def register_method(name: str, *, config: type, fit: Callable, module: type,
                    presets: dict[str, dict[str, Any]] | None = None) -> Method:
    """Register a method under ``name`` (also its default preset) with optional named ``presets``."""
    from .base import CompressedEmbedding

    if not (dataclasses.is_dataclass(config) and isinstance(config, type)):
        raise EmbcompressError(f"method {name!r}: config must be a dataclass")
    if not (isinstance(module, type) and issubclass(module, CompressedEmbedding)):
        raise EmbcompressError(f"method {name!r}: module must subclass CompressedEmbedding")
    fields = {f.name: f for f in dataclasses.fields(config)}
    if "method" not in fields or fields["method"].default != name:
        raise EmbcompressError(f"method {name!r}: its config needs a field method: str = {name!r}")
    names = [name, *(presets or {})]
    taken = [n for n in names if n in PRESETS]
    if taken:
        raise EmbcompressError(f"method or preset name {taken[0]!r} is already registered; choose another name")
    for preset, overrides in (presets or {}).items():
        unknown = set(overrides) - set(fields)
        if unknown:
            raise EmbcompressError(f"preset {preset!r} sets unknown option(s) {', '.join(sorted(unknown))}")
    module.method = name
    method = Method(name, config, fit, module, dict(presets or {}))
    METHODS[name] = method
    PRESETS[name] = (name, {})
    for preset, overrides in (presets or {}).items():
        PRESETS[preset] = (name, dict(overrides))
    return method
