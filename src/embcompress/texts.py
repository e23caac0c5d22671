"""Named texts, defined once: what results are reported on, what calibrates, and what designs are
chosen on. Every probe and sweep names a text here instead of rebuilding a split.

- reported on: ``wikitext2-test`` (perplexity), ``stsb-dev`` (STS-B pairs)
- calibration: ``squad-contexts`` (all SQuAD v1.1 dev paragraphs), ``squad-calib`` (articles 0-23)
- validation (choosing designs and defaults): ``squad-val`` (SQuAD dev articles 24-47),
  ``sst2-train`` and ``mrpc-train`` (GLUE training sentences), ``stsb-train`` (first 2000 STS-B train pairs)

Any UTF-8 file works where a text is asked for.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .data import data_file, read_utf8, squad_dev_articles, wikitext2_test
from .errors import EmbcompressError


@dataclass(frozen=True)
class NamedText:
    role: str  # "reported", "calibration" or "validation"
    description: str
    read: Callable[[str | None], str]


def _squad(articles: slice):
    return lambda data_dir: "\n".join(p["context"] for a in squad_dev_articles(data_dir)[articles] for p in a["paragraphs"])


def _glue_sentences(task: str, *columns: str | int, split: str = "train"):
    """Sentences of GLUE ``task``'s ``split``: named columns of a headed file, or column numbers (CoLA)."""
    def read(data_dir):
        relative = f"glue/{task}/{split}.tsv"
        path = data_file(relative, data_dir)
        if path is None:
            raise EmbcompressError(f"{relative} not found in the data dir; point --data-dir at the GLUE data")
        with open(path, newline="", encoding="utf-8-sig") as f:
            if isinstance(columns[0], int):
                rows = [dict(enumerate(r)) for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
            else:
                rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        return "\n".join(row[c].strip() for row in rows for c in columns if row.get(c))

    return read


def _joined(*readers):
    return lambda data_dir: "\n".join(read(data_dir) for read in readers)


TEXTS: dict[str, NamedText] = {
    "wikitext2-test": NamedText("reported", "WikiText-2 raw test", wikitext2_test),
    "squad-contexts": NamedText("calibration", "the paragraphs of SQuAD v1.1 dev (Wikipedia, disjoint from WikiText-2 "
                                "test)", _squad(slice(None))),
    "squad-calib": NamedText("calibration", "SQuAD v1.1 dev articles 0-23", _squad(slice(0, 24))),
    "squad-val": NamedText("validation", "SQuAD v1.1 dev articles 24-47", _squad(slice(24, None))),
    "sst2-train": NamedText("validation", "GLUE SST-2 training sentences (movie-review fragments)",
                            _glue_sentences("SST-2", "sentence")),
    "mrpc-train": NamedText("validation", "GLUE MRPC training sentences (news)", _glue_sentences("MRPC", "#1 String")),
    "glue-train": NamedText("calibration", "GLUE training sentences: SST-2, CoLA, MRPC, RTE and STS-B", _joined(
        _glue_sentences("SST-2", "sentence"), _glue_sentences("CoLA", 3), _glue_sentences("MRPC", "#1 String", "#2 String"),
        _glue_sentences("RTE", "sentence1", "sentence2"), _glue_sentences("STS-B", "sentence1", "sentence2"))),
    # a second reported text of another style that no step sees, beside WikiText-2
    "qnli-dev": NamedText("reported", "GLUE QNLI dev questions and sentences (Wikipedia Q&A; "
                          "built from SQuAD, so SQuAD calibration is refused against it)",
                          _glue_sentences("QNLI", "question", "sentence", split="dev")),
    "mrpc-test": NamedText("reported", "GLUE MRPC test sentences (news)",
                           _glue_sentences("MRPC", "#1 String", "#2 String", split="test")),
}
ALIASES = {"squad": "squad-contexts", "glue": "glue-train"}  # for mixes such as squad+glue
DEFAULT_PERPLEXITY_TEXT = "wikitext2-test"
PAIR_SETS = {"stsb-dev": ("reported", "glue/STS-B/dev.tsv", None),
             "stsb-train": ("validation", "glue/STS-B/train.tsv", 2000)}
DEFAULT_PAIRS = "stsb-dev"


def read_text(name_or_path: str, data_dir: str | None = None) -> str:
    """A named text or a UTF-8 file, refused in one line when missing, binary or empty."""
    if name_or_path in TEXTS:
        return TEXTS[name_or_path].read(data_dir)
    parts = [ALIASES.get(p, p) for p in name_or_path.split("+")]
    if len(parts) > 1 and all(p in TEXTS for p in parts):  # a named mix, e.g. squad+glue
        return "\n".join(TEXTS[p].read(data_dir) for p in parts)
    if name_or_path in ALIASES:
        return TEXTS[ALIASES[name_or_path]].read(data_dir)
    path = Path(name_or_path)
    if not path.is_file():
        raise EmbcompressError(f"text {name_or_path} not found; give a UTF-8 file or one of: {', '.join(TEXTS)}")
    text = read_utf8(path, "give a plain text file")
    if not text.split():
        raise EmbcompressError(f"text {name_or_path} is empty; give a text with words in it")
    return text


def read_pairs(name: str, data_dir: str | None = None):
    """(sentences 1, sentences 2, gold scores) of a named STS-B pair set."""
    from .evaluate.sts import read_stsb

    if name not in PAIR_SETS:
        raise EmbcompressError(f"unknown sentence-pair set {name!r}; use one of: {', '.join(PAIR_SETS)}")
    _, relative, limit = PAIR_SETS[name]
    path = data_file(relative, data_dir)
    if path is None:
        raise EmbcompressError(f"{relative} not found in the data dir; pass --data-dir or set EMBCOMPRESS_DATA")
    s1, s2, gold = read_stsb(path)
    return (s1[:limit], s2[:limit], gold[:limit]) if limit else (s1, s2, gold)
