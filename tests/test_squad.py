import json
import random
import zipfile
from types import SimpleNamespace

import pytest
import transformers as tf
from conftest import bert_encoder

from embcompress import EmbcompressError
from embcompress.evaluate.squad import (
    SquadSettings,
    exact_match,
    f1,
    normalize_answer,
    run_squad,
    squad_metrics,
    squad_split,
    train_features,
)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "is", "second", "?"] + WORDS


@pytest.fixture
def squad_dir(tmp_path):
    """48 one-question articles in the official layout; the answer is always the context's 2nd word."""
    rng = random.Random(0)
    articles = []
    for a in range(48):
        words = rng.sample(WORDS, 6)
        context = " ".join(words)
        start = len(words[0]) + 1
        qas = [{"id": f"q{a}", "question": "what is second ?",
                "answers": [{"text": words[1], "answer_start": start}, {"text": f"the {words[1]}", "answer_start": 0}]}]
        articles.append({"title": f"t{a}", "paragraphs": [{"context": context, "qas": qas}]})
    (tmp_path / "squad").mkdir()
    with zipfile.ZipFile(tmp_path / "squad" / "dev-v1.1.json.zip", "w") as z:
        z.writestr("dev-v1.1.json", json.dumps({"version": "1.1", "data": articles}))
    return tmp_path


@pytest.fixture
def tiny_encoder():
    return bert_encoder(VOCAB)


def test_official_normalisation_and_scores_by_hand():
    assert normalize_answer("The  Cat's, hat!") == "cats hat"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("the Eiffel tower", ["Eiffel Tower.", "Paris"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    # pred {cat, sat}, ref {cat, sat, down}: precision 1, recall 2/3 -> F1 0.8; best over references
    assert f1("the cat sat", ["a cat sat down", "dog"]) == pytest.approx(0.8)
    assert f1("dog", ["cat"]) == 0.0
    q = squad_split.__globals__["Question"]
    qs = [q("a", "?", "c", ("Paris",), 0), q("b", "?", "c", ("red car", "car"), 0)]
    m = squad_metrics({"a": "paris", "b": "a red bus"}, qs)
    # a: EM 1, F1 1; b: EM 0, F1 max(2·.5·.5, 0)=0.5 vs "car" 0 -> 0.5
    assert m["exact_match"] == pytest.approx(50.0) and m["f1"] == pytest.approx(75.0)


def test_article_split_is_disjoint_and_fixed(squad_dir):
    train, held_out = squad_split("train", str(squad_dir)), squad_split("eval", str(squad_dir))
    assert [q.id for q in train] == [f"q{a}" for a in range(36)]
    assert [q.id for q in held_out] == [f"q{a}" for a in range(36, 48)]


def test_training_targets_point_at_the_answer_tokens(squad_dir, tiny_encoder):
    _, tok = tiny_encoder
    qs = squad_split("train", str(squad_dir))[:5]
    feats = train_features(tok, qs, SquadSettings())
    for q, f in zip(qs, feats):
        span = f["input_ids"][f["start_positions"] : f["end_positions"] + 1]
        assert tok.decode(span) == q.answers[0]
    # a window too short to hold the answer points at [CLS]
    short = train_features(tok, qs[:1], SquadSettings(max_length=10, doc_stride=1))
    assert any(f["start_positions"] == f["end_positions"] == 0 for f in short)
    assert any(f["start_positions"] > 0 for f in short)
    with pytest.raises(EmbcompressError, match="stride"):
        train_features(tok, qs[:1], SquadSettings(max_length=8, doc_stride=2))


def test_fine_tuning_learns_the_span_and_predictions_are_scored(squad_dir, tiny_encoder):
    model, tok = tiny_encoder
    res = run_squad(model, tok, SquadSettings(lr=3e-3, seeds=1, batch_size=8, epochs=60, progress=False), str(squad_dir))
    assert res["train_examples"] == 36 and res["eval_examples"] == 12
    assert res["exact_match"] == 100.0 and res["f1"] == 100.0 and res["value"] == res["f1"]
    assert "article" in res["split"]


def test_the_learning_rate_is_chosen_on_whole_training_articles(squad_dir, tiny_encoder, monkeypatch):
    from embcompress.evaluate import squad

    seen = {}

    def protocol(base, settings, train, held_out_split, train_and_score):
        fit, held_out = held_out_split(train)
        seen.update(train={q.article for q in train}, fit={q.article for q in fit}, held={q.article for q in held_out})
        return {"value": 0.0}

    monkeypatch.setattr(squad, "run_protocol", protocol)
    model, tok = tiny_encoder
    run_squad(model, tok, SquadSettings(progress=False), str(squad_dir))
    assert seen["train"] == set(range(36)) and seen["held"] == set(squad.LR_ARTICLES)
    assert seen["fit"] == set(range(36)) - set(squad.LR_ARTICLES)  # no article on both sides, none from 36-47


def test_bad_inputs(squad_dir, tiny_encoder, tmp_path):
    model, tok = tiny_encoder
    with pytest.raises(EmbcompressError, match="fast tokenizer"):
        run_squad(model, SimpleNamespace(is_fast=False), SquadSettings(), str(squad_dir))  # e.g. a sentencepiece-only one
    bad = tmp_path / "bad"
    (bad / "squad").mkdir(parents=True)
    with zipfile.ZipFile(bad / "squad" / "dev-v1.1.json.zip", "w") as z:
        z.writestr("dev-v1.1.json", json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "c"}]}]}))
    with pytest.raises(EmbcompressError, match="not the official SQuAD"):
        squad_split("train", str(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmbcompressError, match="dev-v1.1.json.zip not found"):
        squad_split("train", str(empty))


def test_a_model_without_a_span_head_is_refused(squad_dir, tiny_model):
    gemma = tiny_model("gemma3")
    tok = tf.BertTokenizerFast(vocab={t: i for i, t in enumerate(VOCAB)})
    with pytest.raises(EmbcompressError, match="no question-answering head"):
        run_squad(gemma.model, tok, SquadSettings(progress=False), str(squad_dir))


def test_sweep_gives_each_fine_tuning_cell_a_fresh_body(squad_dir, tiny_encoder, tmp_path):
    import copy

    from embcompress import compress_model, make_config
    from embcompress.evaluate.registry import EvalSettings
    from embcompress.sweep import MethodSpec, run_sweep

    model, tok = tiny_encoder
    folder = tmp_path / "enc"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    short = dict(lr=1e-3, seeds=1, batch_size=8, epochs=2)
    settings = EvalSettings(data_dir=str(squad_dir), progress=False, extra={"finetune": short})
    rows = run_sweep([str(folder)], [MethodSpec.parse("int:bits=4,group_size=8")], [], ["squad"],
                     tmp_path / "r.jsonl", settings=settings, log=lambda s: None)
    assert [r["method"] for r in rows] == ["none", "int:bits=4,group_size=8"]
    assert all(r["eval_options"] == {"finetune": short} for r in rows)
    # the compressed cell must start from the pretrained body, not the one the first cell fine-tuned
    fresh = copy.deepcopy(model)
    compress_model(fresh, make_config("int", bits=4, group_size=8))
    direct = run_squad(fresh, tok, SquadSettings(**short, progress=False), str(squad_dir))
    assert rows[1]["value"] == pytest.approx(direct["f1"], abs=1e-6)


def test_online_users_get_the_same_nesting_through_datasets(monkeypatch, tmp_path):
    """Without the zip, the `datasets` copy (flat rows) is regrouped into the official layout."""
    rows = [
        {"id": "a", "title": "T1", "context": "c1", "question": "q1", "answers": {"text": ["x"], "answer_start": [0]}},
        {"id": "b", "title": "T1", "context": "c1", "question": "q2", "answers": {"text": ["y", "y"], "answer_start": [1, 1]}},
        {"id": "c", "title": "T1", "context": "c2", "question": "q3", "answers": {"text": ["z"], "answer_start": [0]}},
        {"id": "d", "title": "T2", "context": "c3", "question": "q4", "answers": {"text": ["w"], "answer_start": [0]}},
    ]
    fake = SimpleNamespace(load_dataset=lambda *a, **k: rows if a == ("squad",) and k == {"split": "validation"} else None)
    monkeypatch.setitem(__import__("sys").modules, "datasets", fake)
    from embcompress.data import squad_dev_articles

    articles = squad_dev_articles(str(tmp_path))
    assert [a["title"] for a in articles] == ["T1", "T2"]
    assert [len(p["qas"]) for p in articles[0]["paragraphs"]] == [2, 1]
    assert articles[0]["paragraphs"][0]["qas"][1]["answers"] == [{"text": "y", "answer_start": 1}] * 2
