"""Token importance shared by the importance-aware methods (tiered, mixed)."""

from __future__ import annotations

import torch

from ..errors import EmbcompressError

IMPORTANCE = ("token-id", "calibration")


def check_importance(name: str) -> None:
    if name not in IMPORTANCE:
        raise EmbcompressError(f"importance must be one of {', '.join(IMPORTANCE)} (got {name!r})")


def calibration_counts(importance: str, row_weights: torch.Tensor | None) -> torch.Tensor | None:
    """The calibration counts when ``importance`` asks for them (refused when missing), else None."""
    if importance != "calibration":
        return None
    if row_weights is None:
        raise EmbcompressError("importance=calibration needs token counts: pass --calibration FILE")
    return row_weights.float().cpu()


def token_id_weights(num_rows: int) -> torch.Tensor:
    """Data-free proxy: BPE ids follow merge order, so low ids are frequent; Zipf-like in the id."""
    return 1.0 / (torch.arange(num_rows, dtype=torch.float32) + 100.0)
