"""Distillation: only continuous values move, the model gets closer to its teacher, nothing else changes."""

import copy
import dataclasses
import json

import pytest
import torch

from conftest import _tiny, char_tokenizer
from embcompress import compress_model, load_compressed, make_config, save_compressed
from embcompress.distill import DistillConfig, calibration_windows, distill, held_out_distance
from embcompress.errors import EmbcompressError

VOCAB = 4096
CASES = {  # one per method family
    "int": dict(bits=2),
    "svd": dict(rank=4),
    "autoencoder-fast": dict(rank=4, epochs=2, progress=False),
    "pq": dict(sub_dim=8, iterations=2),
    "tiered-pq": dict(ratio=4, tiers="8:32,4:32,pq8,0"),
    "mixed": dict(ratio=4),
    "hybrid": dict(rank=2, bits=2),
}
CONFIG = DistillConfig(steps=40, batch_size=4, seq_len=24, lr=0.003, progress=False, seed=3)


def _teacher():
    """A tiny random Llama whose embedding is scaled up: sharp next-token distributions, so that
    compression error shows in the KL (a plain random model is near uniform)."""
    model = _tiny("llama", vocab=VOCAB).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(20)
    return model


def _ids_text(seed, n):
    """Token ids drawn Zipf-like, as in real text: frequent tokens recur in many contexts (uniformly random
    ids give each row one noisy context, which no distillation can generalise from)."""
    ranks = torch.arange(1, VOCAB - 2, dtype=torch.float)
    return torch.multinomial(ranks ** -1.1, n, replacement=True, generator=torch.Generator().manual_seed(seed)) + 3


class IdTokenizer:
    """Text is a list of token ids written as numbers: lets tiny random models see their whole vocabulary."""

    bos_token_id = None

    def __call__(self, text, add_special_tokens=True, **kwargs):
        class Out:
            input_ids = [int(t) for t in text.split()]
        return Out()


def _text(seed, n=6000):
    return " ".join(str(int(t)) for t in _ids_text(seed, n))


def _integer_state(module):
    return {k: v.clone() for k, v in module.state_dict().items() if not v.is_floating_point()}


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("scope", ["input", "tied"])
def test_distillation_moves_only_values_and_gets_closer(tmp_path, method, scope):
    teacher = _teacher()
    student = copy.deepcopy(teacher)
    compress_model(student, make_config(method, **CASES[method]), scope=scope)
    emb = student.get_input_embeddings()
    codes, nbytes = _integer_state(emb), emb.nbytes()
    dtypes = {k: v.dtype for k, v in emb.state_dict().items()}
    tok = IdTokenizer()
    held = calibration_windows(tok, _text(99, 2000), CONFIG)  # text no step saw
    before = held_out_distance(student, teacher, held, causal=True)
    report = distill(student, teacher, tok, _text(1), CONFIG)
    after = held_out_distance(student, teacher, held, causal=True)
    assert report["values"] > 0
    if (method, scope) == ("mixed", "input"):  # measured: no step beats mixed's fitted values; they are kept
        assert after == pytest.approx(before, rel=1e-3)
    else:
        assert after < before
    emb = student.get_input_embeddings()
    assert emb.nbytes() == nbytes and {k: v.dtype for k, v in emb.state_dict().items()} == dtypes
    assert all(torch.equal(v, emb.state_dict()[k]) for k, v in codes.items())  # codes, tiers, ids unchanged
    assert all(not p.requires_grad for p in emb.parameters())
    ids = torch.randint(3, VOCAB, (2, 11))
    with torch.no_grad():
        expected = student(input_ids=ids).logits
        assert torch.equal(load_compressed(save_compressed(student, tmp_path / "c"))(input_ids=ids).logits, expected)


@pytest.mark.parametrize("method", ["int", "tiered-pq", "svd"])
@pytest.mark.parametrize("scope", ["head", "both"])
def test_distillation_covers_an_untied_head(method, scope):
    teacher = _tiny("llama", tied=False, vocab=VOCAB).eval()
    with torch.no_grad():
        teacher.get_input_embeddings().weight.mul_(20)
        teacher.get_output_embeddings().weight.mul_(20)  # a sharp head: its error shows in the KL
    student = copy.deepcopy(teacher)
    compress_model(student, make_config(method, **CASES[method]), scope=scope)
    head = student.get_output_embeddings().embedding
    codes, nbytes = _integer_state(head), head.nbytes()
    held = calibration_windows(IdTokenizer(), _text(99, 2000), CONFIG)
    before = held_out_distance(student, teacher, held, causal=True)
    distill(student, teacher, IdTokenizer(), _text(1), CONFIG)
    assert held_out_distance(student, teacher, held, causal=True) < before
    head = student.get_output_embeddings().embedding
    assert head.nbytes() == nbytes and all(torch.equal(v, head.state_dict()[k]) for k, v in codes.items())


def test_same_seed_same_values_and_gguf_has_nothing_to_tune():
    teacher = _teacher()
    runs = []
    for _ in range(2):
        student = copy.deepcopy(teacher)
        compress_model(student, make_config("int", bits=3))
        distill(student, teacher, IdTokenizer(), _text(1), CONFIG)
        runs.append(student.get_input_embeddings().scales.clone())
    assert torch.equal(runs[0], runs[1])
    student = copy.deepcopy(teacher)
    compress_model(student, make_config("gguf", qtype="Q4_0"))
    assert distill(student, teacher, IdTokenizer(), _text(1), CONFIG)["steps"] == 0


def test_patience_stops_when_the_held_out_loss_stops_falling_and_keeps_the_best_values():
    teacher = _teacher()
    student = copy.deepcopy(teacher)
    compress_model(student, make_config("int", bits=3))
    fitted = student.get_input_embeddings().scales.clone()
    # a step size of 5x each tensor's magnitude only makes things worse: the first two checks fail
    wild = DistillConfig(steps=30, batch_size=2, seq_len=24, lr=5.0, eval_every=3, patience=2, progress=False)
    report = distill(student, teacher, IdTokenizer(), _text(1), wild)
    assert report["steps"] == 6 and report["stopped_early"] and report["best_step"] == 0
    assert torch.equal(student.get_input_embeddings().scales, fitted)
    never = dataclasses.replace(wild, patience=0)
    assert distill(copy.deepcopy(student), teacher, IdTokenizer(), _text(1), never)["steps"] == 30
    with pytest.raises(EmbcompressError, match="patience must be 0"):
        DistillConfig(patience=-1)


def test_encoder_distils_its_hidden_states():
    from conftest import bert_encoder

    teacher, _ = bert_encoder([f"t{i}" for i in range(600)])
    student = copy.deepcopy(teacher)
    compress_model(student, make_config("int", bits=2))
    tok = IdTokenizer()
    text = " ".join(str(int(t)) for t in torch.randint(5, 600, (4000,), generator=torch.Generator().manual_seed(0)))
    held = calibration_windows(tok, " ".join(str(int(t)) for t in torch.randint(5, 600, (800,))), CONFIG)
    before = held_out_distance(student, teacher, held, causal=False)
    report = distill(student, teacher, tok, text, CONFIG)
    assert report["loss"] == "hidden" and held_out_distance(student, teacher, held, causal=False) < before


def test_cli_distill_and_its_refusals(capsys, tiny_lm_dir, data_dir, tmp_path, monkeypatch):
    from test_cli import ok, run

    calib = tmp_path / "calib.txt"
    calib.write_text("some calibration text about cooking and gardening, nothing like the test. " * 60)
    base = ["compress", tiny_lm_dir, "-m", "int", "-o", "bits=2", "--data-dir", data_dir]
    code, _, err = run(capsys, *base, "--distill", "--out", tmp_path / "a")
    assert code == 2 and "needs a --calibration" in err
    code, _, err = run(capsys, *base, "--distill", "--calibration", calib, "--distill-option", "step=3",
                       "--out", tmp_path / "a")
    assert code == 2 and "unknown distill option(s) step" in err
    code, _, err = run(capsys, *base, "--distill", "--calibration", data_dir / "wikitext" / "wiki.test.raw",
                       "--out", tmp_path / "a")
    assert code == 2 and "is the evaluation text" in err
    out = ok(capsys, *base, "--distill", "--calibration", calib, "--distill-option", "steps=3",
             "--distill-option", "seq_len=16", "--out", tmp_path / "c")
    assert "distilled" in out and "over 3 steps" in out
    meta = json.loads((tmp_path / "c" / "embcompress.json").read_text())
    assert meta["distill"]["steps"] == 3 and meta["calibration"]["file"] == "calib.txt"
    assert "distilled:" in ok(capsys, "info", tmp_path / "c")

    import embcompress.distill

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(embcompress.distill, "distill", interrupted)
    code, _, _ = run(capsys, *base, "--distill", "--calibration", calib, "--out", tmp_path / "d")
    assert code == 130 and not (tmp_path / "d").exists() and not list(tmp_path.glob(".d.*"))


def test_closeness_metrics_and_reference_refusal(capsys, tiny_lm_dir, data_dir, tmp_path, tiny_model):
    from test_cli import ok, run

    same = json.loads(ok(capsys, "eval", "perplexity", tiny_lm_dir, "--reference", tiny_lm_dir, "--data-dir", data_dir,
                         "--max-tokens", "200", "--json"))
    assert same["kl_mean"] == pytest.approx(0, abs=1e-6) and same["top1_agreement"] == 100.0
    ok(capsys, "compress", tiny_lm_dir, "-m", "int", "-o", "bits=2", "--out", tmp_path / "c")
    res = json.loads(ok(capsys, "eval", "perplexity", tmp_path / "c", "--data-dir", data_dir, "--max-tokens", "200",
                        "--json"))  # the folder's source model is the reference
    assert res["kl_mean"] > 0 and res["kl_p99"] >= res["kl_mean"] and 0 < res["top1_agreement"] <= 100
    assert res["reference"] == str(tiny_lm_dir)
    other = tmp_path / "other"
    tiny_model("llama", vocab=500).save_pretrained(other)
    char_tokenizer().save_pretrained(other)
    code, _, err = run(capsys, "eval", "perplexity", tmp_path / "c", "--reference", other, "--data-dir", data_dir)
    assert code == 2 and "vocabulary" in err


def test_sweep_distils_as_its_own_cell_and_carries_closeness(capsys, tiny_lm_dir, data_dir, tmp_path):
    from test_cli import ok, run

    from embcompress.sweep import read_results

    calib = tmp_path / "calib.txt"
    calib.write_text("some calibration text about cooking and gardening, nothing like the test. " * 60)
    results = tmp_path / "r.jsonl"
    base = ["sweep", "--models", tiny_lm_dir, "--methods", "int:bits=2", "--max-tokens", "200", "--data-dir", data_dir,
            "--out", results, "--calibration", calib]
    ok(capsys, *base)
    table = ok(capsys, *base, "--distill", "--distill-option", "steps=4", "--distill-option", "seq_len=16",
               "--distill-option", "eval_every=2")
    rows = read_results(results)
    assert [(r["method"], bool(r.get("distill"))) for r in rows] == [("none", False), ("int:bits=2", False),
                                                                       ("int:bits=2", True)]
    plain, distilled = rows[1], rows[2]
    assert distilled["distill"]["steps"] == 4 and distilled["distill_report"]["best_step"] in (0, 2, 4)
    assert distilled["calibration"] == str(calib) and "calibration" not in plain  # int reads no counts
    for r in (plain, distilled):  # compressed perplexity cells carry closeness to the uncompressed model
        assert r["details"]["kl_mean"] > 0 and 0 < r["details"]["top1_agreement"] <= 100
    assert "kl_mean" not in rows[0]["details"]
    assert distilled["embedding_bytes"] == plain["embedding_bytes"]  # only values move
    assert "| int:bits=2 +distil | input |" in table and "KL " in table
    ok(capsys, *base, "--distill", "--distill-option", "steps=4", "--distill-option", "seq_len=16",
       "--distill-option", "eval_every=2")
    assert len(read_results(results)) == 3  # resumed: nothing ran again
    code, _, err = run(capsys, *base[:-2], "--calibration", "none", "--distill")
    assert code == 2 and "needs a --calibration" in err
    ok(capsys, *base[:-4], "--out", tmp_path / "n.jsonl", "--no-reference")
    assert "kl_mean" not in read_results(tmp_path / "n.jsonl")[1]["details"]
