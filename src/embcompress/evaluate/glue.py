"""GLUE fine-tuning (CoLA, SST-2, MRPC, STS-B, RTE) from the GLUE TSVs in the data dir; dev-set scores.

Defaults are the paper's (max length 128, batch 32, 3 epochs, full training set) inside the protocol
of finetune.run_protocol: the learning rate chosen on a held-out 10 % of the *training* set, then 3
seeds, mean ± std on dev. Quick runs cap the training examples and epochs and fix --lr. How the
(compressed) embedding trains is one policy, applied identically to every method (see finetune.py).
"""

from __future__ import annotations

import csv
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from torch import nn

from ..data import data_dir
from ..errors import EmbcompressError
from .finetune import (FinetuneSettings, apply_embedding_policy, fine_tune, run_protocol, seeded,  # noqa: F401
                       with_head)
from ..device import input_device


@dataclass(frozen=True)
class GlueTask:
    name: str
    folder: str
    header: tuple[str, ...] | None  # expected header (None: the file has none)
    text_columns: tuple[int, ...]
    label_column: int
    num_labels: int  # 1 = regression
    metric: str  # the headline metric
    quoted: bool = False


GLUE_TASKS = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", None, (3,), 1, 2, "matthews"),
        GlueTask("sst2", "SST-2", ("sentence", "label"), (0,), 1, 2, "accuracy"),
        GlueTask("mrpc", "MRPC", ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"), (3, 4), 0, 2, "f1"),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2", "score"), (-3, -2), -1, 1, "spearman"),
        GlueTask("rte", "RTE", ("sentence1", "sentence2", "label", "idx"), (0, 1), 2, 2, "accuracy", quoted=True),
    )
}
RTE_LABELS = {"entailment": 0, "not_entailment": 1}


GlueSettings = FinetuneSettings  # the paper's GLUE defaults


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise EmbcompressError(f"unknown GLUE task {name!r}; choose one of: {', '.join(GLUE_TASKS)} "
                               "(QNLI has no training split here)")
    return GLUE_TASKS[key]


def read_split(task: GlueTask, split: str, explicit_dir: str | None = None):
    base = data_dir(explicit_dir)
    path = (base or Path("<data dir>")) / "glue" / task.folder / f"{split}.tsv"
    if not path.is_file():
        raise EmbcompressError(f"{path} not found; put the GLUE {task.folder} files there or point --data-dir at them")
    try:
        with path.open(encoding="utf-8-sig") as f:  # MRPC starts with a BOM
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL if task.quoted else csv.QUOTE_NONE)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error):
        raise EmbcompressError(f"{path} is not a UTF-8 tab-separated file; replace it with the GLUE {task.folder} file") from None
    if not rows:
        raise EmbcompressError(f"{path} is empty; replace it with the GLUE {task.folder} file")
    if task.header is not None:
        header, rows = tuple(rows[0]), rows[1:]
        got = header[-3:] if task.name == "stsb" else header
        if got != task.header:
            raise EmbcompressError(f"{path} has header {list(header)}; expected {list(task.header)}")
    texts, labels = [], []
    for row in rows:
        if len(row) <= max(abs(c) for c in task.text_columns + (task.label_column,)):
            continue
        texts.append(tuple(row[c] for c in task.text_columns))
        raw = row[task.label_column]
        labels.append(float(raw) if task.num_labels == 1 else RTE_LABELS.get(raw, None) if raw in RTE_LABELS else int(raw))
    return texts, labels


def glue_metrics(task: GlueTask, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if task.num_labels == 1:
        return {"pearson": 100 * pearsonr(preds, labels).statistic, "spearman": 100 * spearmanr(preds, labels).statistic}
    out = {"accuracy": 100 * accuracy_score(labels, preds)}
    if task.name == "cola":
        out["matthews"] = 100 * matthews_corrcoef(labels, preds)
    if task.name == "mrpc":
        out["f1"] = 100 * f1_score(labels, preds)
    return out


def classifier_from(base: nn.Module, tokenizer, num_labels: int) -> nn.Module:
    """A sequence-classification model around ``base``'s body (its compressed embedding included)."""
    return with_head(base, tokenizer, "AutoModelForSequenceClassification", "sequence-classification",
                     num_labels=num_labels, problem_type="regression" if num_labels == 1 else "single_label_classification")


def encode(tokenizer, texts, max_length):
    if len(texts[0]) == 2:
        a, b = zip(*texts)
        return tokenizer(list(a), list(b), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return tokenizer([t[0] for t in texts], truncation=True, max_length=max_length, padding=True, return_tensors="pt")


HELD_OUT_SHARE, HELD_OUT_MAX = 0.1, 2000  # the part of the training set the learning rate is chosen on


def run_glue(base: nn.Module, tokenizer, task_name: str, settings: GlueSettings, explicit_dir: str | None = None):
    task = get_task(task_name)
    train_x, train_y = read_split(task, "train", explicit_dir)
    dev_x, dev_y = read_split(task, "dev", explicit_dir)
    if len(train_x[0]) == 2 and tokenizer.sep_token is None:
        raise EmbcompressError(f"{task.name} needs sentence pairs but this tokenizer has no separator token; "
                               "use a model whose tokenizer encodes pairs (BERT-style)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    order = list(range(len(train_x)))
    random.Random(settings.seed).shuffle(order)
    if settings.max_train_examples:
        order = order[: settings.max_train_examples]
    if settings.max_eval_examples:
        dev_x, dev_y = dev_x[: settings.max_eval_examples], dev_y[: settings.max_eval_examples]
    label_dtype = torch.float32 if task.num_labels == 1 else torch.long

    def held_out_split(items):
        n = min(HELD_OUT_MAX, max(1, int(len(items) * HELD_OUT_SHARE)))
        return items[n:], items[:n]  # items are shuffled already

    def train_and_score(body, train, evaluate_on, s):
        seeded(s.seed)
        model = classifier_from(body, tokenizer, task.num_labels)

        def make_batch(idx):
            batch = encode(tokenizer, [train_x[i] for i in idx], s.max_length)
            return {**batch, "labels": torch.tensor([train_y[i] for i in idx], dtype=label_dtype)}

        fine_tune(model, train, make_batch, s, f"fine-tune {task.name} (lr {s.lr:g}, seed {s.seed})")
        xs, ys = (dev_x, dev_y) if evaluate_on is None else ([train_x[i] for i in evaluate_on],
                                                             [train_y[i] for i in evaluate_on])
        scores = glue_metrics(task, predict(model, tokenizer, xs, task, s.max_length), np.asarray(ys))
        return {"value": scores[task.metric], **scores}

    result = run_protocol(base, settings, order, held_out_split, train_and_score)
    return {"task": task.name, "metric": task.metric, **result, "train_examples": len(order),
            "dev_examples": len(dev_y), "settings": asdict(settings)}


def predict(model, tokenizer, texts, task: GlueTask, max_length: int) -> np.ndarray:
    device = input_device(model)
    preds = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            logits = model(**encode(tokenizer, texts[start : start + 64], max_length).to(device)).logits
            preds.append(logits.squeeze(-1) if task.num_labels == 1 else logits.argmax(-1))
    return torch.cat(preds).float().cpu().numpy()
