import math

import pytest
import torch

from embcompress import EmbcompressError
from embcompress.evaluate.perplexity import causal_perplexity


class CharTokenizer:
    """Tiny tokenizer: one id per character, optional BOS — enough to test windowing."""

    def __init__(self, bos=None):
        self.bos_token_id = bos

    def __call__(self, text, add_special_tokens=True):
        ids = [3 + (ord(c) % 90) for c in text]
        if add_special_tokens and self.bos_token_id is not None:
            ids = [self.bos_token_id] + ids
        return type("Enc", (), {"input_ids": ids})()


TEXT = "the quick brown fox jumps over the lazy dog. " * 6


def test_single_window_equals_plain_labels_loss(tiny_model):
    model = tiny_model("llama")
    tok = CharTokenizer()
    ids = torch.tensor([tok(TEXT).input_ids[:60]])
    with torch.no_grad():
        plain = model(input_ids=ids, labels=ids).loss.item()
    res = causal_perplexity(model, tok, TEXT, window=64, max_tokens=60, progress=False)
    assert res.tokens_scored == 59
    assert res.perplexity == pytest.approx(math.exp(plain), rel=1e-5)


def test_sliding_windows_equal_hf_masked_labels(tiny_model):
    model = tiny_model("gpt2")
    tok = CharTokenizer()
    ids = tok(TEXT).input_ids[:150]
    window, stride = 40, 16
    # the reference loop from the transformers perplexity guide
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        trg_len = end - prev_end
        inp = torch.tensor([ids[begin:end]])
        target = inp.clone()
        target[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids=inp, labels=target).loss
        valid = (target[:, 1:] != -100).sum().item()
        nll_sum += loss.item() * valid
        n_tokens += valid
        prev_end = end
        if end == len(ids):
            break
    res = causal_perplexity(model, tok, TEXT, window=window, stride=stride, max_tokens=150, progress=False)
    assert res.tokens_scored == n_tokens == 149
    assert res.perplexity == pytest.approx(math.exp(nll_sum / n_tokens), rel=1e-5)


def test_bos_starts_every_window_and_all_tokens_scored(tiny_model):
    model = tiny_model("llama")
    tok = CharTokenizer(bos=1)
    res = causal_perplexity(model, tok, TEXT, window=33, stride=32, max_tokens=64, progress=False)
    assert res.bos and res.tokens_scored == 64
    ids = tok(TEXT, add_special_tokens=False).input_ids[:64]
    total = 0.0
    for part in (ids[:32], ids[32:64]):
        inp = torch.tensor([[1] + part])
        with torch.no_grad():
            total += model(input_ids=inp, labels=inp).loss.item() * 32
    assert res.nll == pytest.approx(total / 64, rel=1e-5)


def test_bad_arguments(tiny_model):
    model = tiny_model("llama")
    with pytest.raises(EmbcompressError, match="at least 2"):
        causal_perplexity(model, CharTokenizer(), TEXT, max_tokens=1, progress=False)
    with pytest.raises(EmbcompressError, match="longer than the model's context"):
        causal_perplexity(model, CharTokenizer(), TEXT, window=65, progress=False)
    with pytest.raises(EmbcompressError, match="stride"):
        causal_perplexity(model, CharTokenizer(), TEXT, window=16, stride=17, progress=False)
    with pytest.raises(EmbcompressError, match="stride ≤ 15"):  # no BOS: a window's first token needs context
        causal_perplexity(model, CharTokenizer(), TEXT, window=16, stride=16, progress=False)
    res = causal_perplexity(model, CharTokenizer(), TEXT, window=16, stride=15, max_tokens=61, progress=False)
    assert res.tokens_scored == 60


def test_any_text_can_be_scored_and_bad_texts_are_refused(capsys, tiny_lm_dir, data_dir, tmp_path):
    import json

    from test_cli import ok, run

    text = tmp_path / "mine.txt"
    text.write_text("a few words of my own , scored instead of WikiText .\n" * 20)
    mine = json.loads(ok(capsys, "eval", "perplexity", tiny_lm_dir, "--text", text, "--max-tokens", "200", "--json"))
    wiki = json.loads(ok(capsys, "eval", "perplexity", tiny_lm_dir, "--data-dir", data_dir, "--max-tokens", "200",
                         "--json"))
    assert mine["data"] == f"file {text}" and wiki["data"] == "wikitext-2-raw test" and mine["value"] != wiki["value"]
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 50)
    for bad, message in ((empty, "is empty"), (binary, "not UTF-8"), (tmp_path / "nope.txt", "not found")):
        code, _, err = run(capsys, "eval", "perplexity", tiny_lm_dir, "--text", bad)
        assert code == 2 and message in err and err.count("error:") == 1


def test_sweep_on_a_validation_text_refuses_it_as_calibration(capsys, tiny_lm_dir, data_dir, tmp_path):
    from test_cli import ok, run

    from embcompress.sweep import read_results

    text = tmp_path / "val.txt"
    text.write_text(" ".join(f"w{i % 97}" for i in range(3000)))
    args = ["sweep", "--models", tiny_lm_dir, "--methods", "tiered:importance=calibration", "--ratios", "4",
            "--max-tokens", "100", "--data-dir", data_dir, "--text", text, "--out", tmp_path / "r.jsonl"]
    code, _, err = run(capsys, *args, "--calibration", text)
    assert code == 2 and "is the evaluation text" in err
    ok(capsys, *args[:-2], "--out", tmp_path / "r.jsonl", "--calibration", "none")
    rows = read_results(tmp_path / "r.jsonl")
    assert rows and all(r["eval_options"]["text"] == str(text) and r["details"]["data"] == f"file {text}" for r in rows)


def test_a_cached_reference_gives_the_same_closeness_and_is_scored_once(tiny_lm_dir):
    import copy

    from embcompress import compress_model, make_config
    from embcompress.evaluate.perplexity import CachedReference, causal_perplexity
    from embcompress.models import load_model

    base, tok = load_model(str(tiny_lm_dir), device="cpu")
    student = copy.deepcopy(base)
    compress_model(student, make_config("int", bits=2))
    text = " ".join(f"w{i % 53}" for i in range(600))
    plain = causal_perplexity(student, tok, text, window=32, progress=False, reference=base)
    cached = CachedReference(base)
    first = causal_perplexity(student, tok, text, window=32, progress=False, reference=cached)
    kept = cached.kept_bytes
    calls = []
    cached.model = lambda **k: calls.append(1)  # a second model on the same text must not run the reference
    second = causal_perplexity(student, tok, text, window=32, progress=False, reference=cached)
    assert kept > 0 and not calls
    for r in (first, second):
        assert (r.kl_mean, r.kl_p99, r.top1_agreement) == (plain.kl_mean, plain.kl_p99, plain.top1_agreement)
    tight = CachedReference(base, max_bytes=0)  # over its budget it keeps nothing and still measures
    assert causal_perplexity(student, tok, text, window=32, progress=False, reference=tight).kl_mean == plain.kl_mean
    assert tight.kept_bytes == 0
