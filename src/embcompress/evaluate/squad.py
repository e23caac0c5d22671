"""SQuAD v1.1 extractive QA: fine-tune a span head on part of the dev set, score the rest.

No SQuAD training split is available here, so the dev set is split *by article* (file order) into
a fixed training part and a held-out evaluation part; no article is in both. Every result names
this split. Features follow the Hugging Face ``run_qa`` recipe (max length 384, doc stride 128,
answer spans outside a window point at [CLS]); answers are the best start/end pair (n-best 20,
at most 30 tokens); exact match and F1 use the official normalisation, best over the references.
"""

from __future__ import annotations

import collections
import random
import re
import string
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import squad_dev_articles
from ..errors import EmbcompressError
from .finetune import FinetuneSettings, fine_tune, run_protocol, seeded, with_head
from ..device import input_device

TRAIN_ARTICLES = range(0, 36)  # 8123 questions
EVAL_ARTICLES = range(36, 48)  # 2447 questions
SPLIT = "SQuAD v1.1 dev split by article: train on articles 0-35 (8123 questions), evaluate on 36-47 (2447)"


@dataclass
class SquadSettings(FinetuneSettings):
    """The paper's SQuAD settings: windows over long contexts, its own learning rate and batch (its 16
    was 2 × 8 with accumulation), and how answers are extracted."""

    max_length: int = 384
    doc_stride: int = 128
    # where SQuAD's values differ from GLUE's (FinetuneSettings): the paper's 3e-5 is the grid's first
    lr_grid: tuple[float, ...] = field(default=(3e-5, 5e-5, 1e-4))
    lr_search_examples: int = field(default=2000)  # questions; a SQuAD step costs ~10 GLUE steps
    batch_size: int = field(default=16)
    epochs: float = field(default=2)
    n_best: int = 20  # the best start/end pairs considered
    max_answer_length: int = 30


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_start: int  # of the first reference answer (training target)
    article: int = 0  # its article's index in the dev file (the splits never cut an article)


def squad_split(part: str, explicit_dir: str | None = None) -> list[Question]:
    """``train`` or ``eval`` questions of the fixed article split."""
    articles = squad_dev_articles(explicit_dir)
    if part not in ("train", "eval"):
        raise EmbcompressError(f"unknown SQuAD part {part!r}; use train or eval")
    indices = TRAIN_ARTICLES if part == "train" else EVAL_ARTICLES
    if len(articles) < EVAL_ARTICLES.stop:
        raise EmbcompressError(f"the SQuAD file has {len(articles)} articles; the split needs the full v1.1 dev set (48)")
    out = []
    for i in indices:
        for para in articles[i]["paragraphs"]:
            for qa in para["qas"]:
                answers = qa["answers"]
                out.append(Question(qa["id"], qa["question"], para["context"], tuple(a["text"] for a in answers),
                                    answers[0]["answer_start"], i))
    return out


# -- the official SQuAD v1.1 evaluation (evaluate-v1.1.py), re-stated ------------------------------

def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the and extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references) -> float:
    return max(float(normalize_answer(prediction) == normalize_answer(r)) for r in references)


def f1(prediction: str, references) -> float:
    def one(pred: str, ref: str) -> float:
        p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
        common = sum((collections.Counter(p) & collections.Counter(r)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(p), common / len(r)
        return 2 * precision * recall / (precision + recall)

    return max(one(prediction, r) for r in references)


def squad_metrics(predictions: dict[str, str], questions: list[Question]) -> dict[str, float]:
    em = [exact_match(predictions.get(q.id, ""), q.answers) for q in questions]
    f = [f1(predictions.get(q.id, ""), q.answers) for q in questions]
    return {"exact_match": 100 * float(np.mean(em)), "f1": 100 * float(np.mean(f))}


# -- features -------------------------------------------------------------------------------------

def _windows(tokenizer, questions: list[Question], s: SquadSettings):
    pad_right = tokenizer.padding_side == "right"
    q = [x.question.lstrip() for x in questions]
    c = [x.context for x in questions]
    room = s.max_length - max(len(ids) for ids in tokenizer(q).input_ids) - 1  # context tokens per window
    if s.doc_stride >= room:  # the tokenizer would panic
        raise EmbcompressError(f"doc stride {s.doc_stride} leaves no new context per window of {s.max_length} tokens; "
                               f"use a stride below {room} or a longer max length")
    return tokenizer(q if pad_right else c, c if pad_right else q, truncation="only_second" if pad_right else "only_first",
                     max_length=s.max_length, stride=s.doc_stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True)


def train_features(tokenizer, questions: list[Question], s: SquadSettings) -> list[dict]:
    """One dict per window: model inputs plus start/end token positions (both 0 = [CLS] when the
    answer is not inside the window)."""
    enc = _windows(tokenizer, questions, s)
    ctx = 1 if tokenizer.padding_side == "right" else 0
    feats = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        q = questions[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        start_char = q.answer_start
        end_char = start_char + len(q.answers[0])
        first = seq.index(ctx)
        last = len(seq) - 1 - seq[::-1].index(ctx)
        start = end = 0
        if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
            start, end = first, last
            while start <= last and offsets[start][0] <= start_char:
                start += 1
            while end >= first and offsets[end][1] >= end_char:
                end -= 1
            start, end = start - 1, end + 1
        feats.append({k: enc[k][i] for k in tokenizer.model_input_names if k in enc} | {
            "start_positions": start, "end_positions": end})
    return feats


def predict(model: nn.Module, tokenizer, questions: list[Question], s: SquadSettings) -> dict[str, str]:
    """The best-scoring span of each question over all its windows (the run_qa post-processing)."""
    enc = _windows(tokenizer, questions, s)
    ctx = 1 if tokenizer.padding_side == "right" else 0
    device = input_device(model)
    best: dict[int, tuple[float, str]] = {}
    names = [k for k in tokenizer.model_input_names if k in enc]
    with torch.inference_mode():
        for b in tqdm(range(0, len(enc["input_ids"]), 64), desc="squad eval", disable=not s.progress, leave=False):
            rows = range(b, min(b + 64, len(enc["input_ids"])))
            batch = tokenizer.pad([{k: enc[k][i] for k in names} for i in rows], return_tensors="pt").to(device)
            out = model(**batch)
            for j, i in enumerate(rows):
                qi = enc["overflow_to_sample_mapping"][i]
                seq, offsets = enc.sequence_ids(i), enc["offset_mapping"][i]
                start_logits = out.start_logits[j, : len(seq)].float().cpu().numpy()
                end_logits = out.end_logits[j, : len(seq)].float().cpu().numpy()
                for a in np.argsort(start_logits)[::-1][: s.n_best]:
                    for e in np.argsort(end_logits)[::-1][: s.n_best]:
                        if seq[a] != ctx or seq[e] != ctx or e < a or e - a + 1 > s.max_answer_length:
                            continue
                        score = float(start_logits[a] + end_logits[e])
                        if qi not in best or score > best[qi][0]:
                            best[qi] = (score, questions[qi].context[offsets[a][0] : offsets[e][1]])
    return {q.id: best.get(i, (0.0, ""))[1] for i, q in enumerate(questions)}


LR_ARTICLES = range(32, 36)  # of the training articles, where the learning rate is chosen
HELD_OUT_MAX = 2000


def run_squad(base: nn.Module, tokenizer, settings: SquadSettings, explicit_dir: str | None = None) -> dict:
    train_q, eval_q = squad_split("train", explicit_dir), squad_split("eval", explicit_dir)
    if not getattr(tokenizer, "is_fast", False):
        raise EmbcompressError("SQuAD needs a fast tokenizer (character offsets); load the model's tokenizer.json")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    random.Random(settings.seed).shuffle(train_q)
    if settings.max_train_examples:
        train_q = train_q[: settings.max_train_examples]
    if settings.max_eval_examples:
        eval_q = eval_q[: settings.max_eval_examples]
    features = {}

    def held_out_split(questions):  # by article, as the reported split: no context on both sides
        return ([q for q in questions if q.article not in LR_ARTICLES],
                [q for q in questions if q.article in LR_ARTICLES][: HELD_OUT_MAX])

    def train_and_score(body, train, evaluate_on, s):
        seeded(s.seed)
        model = with_head(body, tokenizer, "AutoModelForQuestionAnswering", "question-answering")
        if id(train) not in features:  # the seeds share one list of training questions: windows cut once
            features[id(train)] = train_features(tokenizer, train, s)
        feats = features[id(train)]

        def make_batch(idx):
            batch = tokenizer.pad([{k: v for k, v in feats[i].items() if not k.endswith("_positions")} for i in idx],
                                  return_tensors="pt")
            return {**batch, **{k: torch.tensor([feats[i][k] for i in idx]) for k in ("start_positions", "end_positions")}}

        fine_tune(model, list(range(len(feats))), make_batch, s, f"fine-tune squad (lr {s.lr:g}, seed {s.seed})")
        questions = eval_q if evaluate_on is None else evaluate_on
        scores = squad_metrics(predict(model, tokenizer, questions, s), questions)
        return {"value": scores["f1"], **scores}

    result = run_protocol(base, settings, train_q, held_out_split, train_and_score)
    return {"task": "squad", "metric": "f1", **result, "split": SPLIT, "train_examples": len(train_q),
            "train_features": len(features.get(id(train_q), ())), "eval_examples": len(eval_q), "settings": asdict(settings)}

