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


def _online(relative: Path, explicit_dir, *args, **kwargs):
    """The same set through ``datasets`` (users online), or a one-line error saying where to put the file."""
    try:
        import datasets
    except ImportError:
        raise _missing(relative, data_dir(explicit_dir)) from None
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as e:  # no network, no cache
        raise EmbcompressError(f"{relative} not in the data dir and the download failed ({type(e).__name__}); "
                               "point --data-dir at a folder holding it") from None


def read_utf8(path: Path, fix: str) -> str:
    """A text file's contents, or a one-line error ending in ``fix`` when it is not UTF-8 text."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = "\x00"
    except OSError as e:
        raise EmbcompressError(f"{path} cannot be read ({e.strerror}); {fix}") from None
    if "\x00" in text:
        raise EmbcompressError(f"{path} is not UTF-8 text (a binary file?); {fix}")
    return text


def wikitext2_test(explicit_dir: str | Path | None = None) -> str:
    """The WikiText-2 raw test split as one string, identical to ``wiki.test.raw``."""
    path = data_file(WIKITEXT_TEST, explicit_dir)
    if path is not None:
        return read_utf8(path, "replace it with the WikiText-2 raw test split")
    ds = _online(WIKITEXT_TEST, explicit_dir, "wikitext", "wikitext-2-raw-v1", split="test")
    return "".join(ds["text"])  # each line keeps its newline: this is the raw file


SQUAD_DEV = Path("squad") / "dev-v1.1.json.zip"


def squad_dev_articles(explicit_dir: str | Path | None = None) -> list[dict]:
    """SQuAD v1.1 dev as its official JSON's ``data`` list (articles → paragraphs → qas), in file order."""
    import json
    import zipfile

    path = data_file(SQUAD_DEV, explicit_dir)
    if path is not None:
        try:
            with zipfile.ZipFile(path) as z:
                data = json.loads(z.read("dev-v1.1.json"))
            articles = data["data"]
            articles[0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"]
        except (zipfile.BadZipFile, KeyError, IndexError, TypeError, ValueError, OSError):  # JSON and UTF-8 errors too
            raise EmbcompressError(f"{path} is not the official SQuAD v1.1 dev zip (dev-v1.1.json with "
                                   "data[].paragraphs[].qas[].answers[]); replace it") from None
        return articles
    ds = _online(SQUAD_DEV, explicit_dir, "squad", split="validation")
    # rebuild the official nesting: same titles, paragraphs and questions in the same order
    articles: list[dict] = []
    for row in ds:
        if not articles or articles[-1]["title"] != row["title"]:
            articles.append({"title": row["title"], "paragraphs": []})
        paras = articles[-1]["paragraphs"]
        if not paras or paras[-1]["context"] != row["context"]:
            paras.append({"context": row["context"], "qas": []})
        answers = [{"text": t, "answer_start": s} for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])]
        paras[-1]["qas"].append({"id": row["id"], "question": row["question"], "answers": answers})
    return articles
