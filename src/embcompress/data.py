"""Evaluation data: read from a data directory (default ``../shared/data`` when it exists, or
``$EMBCOMPRESS_DATA``), or, for users online, fetched through the ``datasets`` library."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EmbcompressError

WIKITEXT_TEST = Path("wikitext") / "wiki.test.raw"


def data_dir(explicit: str | Path | None = None) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_dir():
            raise EmbcompressError(f"data directory {path} does not exist; pass an existing folder to --data-dir")
        return path
    if os.environ.get("EMBCOMPRESS_DATA"):
        return data_dir(os.environ["EMBCOMPRESS_DATA"])
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd() / ".." / "shared" / "data", repo_root / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def data_file(relative: str | Path, explicit_dir: str | Path | None = None) -> Path | None:
    base = data_dir(explicit_dir)
    if base is not None and (base / relative).is_file():
        return base / relative
    return None


def _missing(relative: Path, base: Path | None) -> EmbcompressError:
    where = f"{base / relative}" if base else f"<data dir>/{relative}"
    return EmbcompressError(
        f"{relative} not found (looked for {where}); put the file there, point --data-dir or "
        "EMBCOMPRESS_DATA at a folder holding it, or pip install datasets to fetch it online"
    )


def wikitext2_test(explicit_dir: str | Path | None = None) -> str:
    """The WikiText-2 raw test split as one string, identical to ``wiki.test.raw``."""
    path = data_file(WIKITEXT_TEST, explicit_dir)
    if path is not None:
        return path.read_text(encoding="utf-8")
    try:
        import datasets
    except ImportError:
        raise _missing(WIKITEXT_TEST, data_dir(explicit_dir)) from None
    try:
        ds = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="test")
    except Exception as e:  # no network, no cache
        raise EmbcompressError(f"{WIKITEXT_TEST} not in the data dir and the download failed ({type(e).__name__}); "
                               "point --data-dir at a folder holding it") from None
    return "".join(ds["text"])  # each line keeps its newline: this is the raw file
