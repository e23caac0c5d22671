import pytest
import torch
import transformers as tf

from conftest import char_tokenizer
from embcompress import EmbcompressError
from embcompress.evaluate.sts import read_stsb, sts_zero_shot


def write_stsb(path, rows, header=None):
    header = header or "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    lines = [header] + [f"{i}\tg\tf\ty\to\ts1\ts2\t{a}\t{b}\t{s}" for i, (a, b, s) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def test_read_stsb_takes_the_last_three_columns_and_bare_quotes(tmp_path):
    p = tmp_path / "dev.tsv"
    write_stsb(p, [('He said "hi', "ok", "4.5"), ("a", "b", "0.000")])
    s1, s2, gold = read_stsb(p)
    assert s1 == ['He said "hi', "a"] and s2 == ["ok", "b"] and gold == [4.5, 0.0]


def test_wrong_header_and_missing_file_are_named(tmp_path):
    p = tmp_path / "dev.tsv"
    write_stsb(p, [("a", "b", "1")], header="x\ty\tz")
    with pytest.raises(EmbcompressError, match="expected the last columns to be sentence1, sentence2, score"):
        read_stsb(p)
    with pytest.raises(EmbcompressError, match="not found"):
        read_stsb(tmp_path / "nope.tsv")


def test_spearman_of_identical_pairs_and_hand_checked_ranking():
    torch.manual_seed(0)
    cfg = tf.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    model = tf.BertModel(cfg).eval()
    tok = char_tokenizer()
    tok.pad_token = "<unk>"
    # identical sentences have cosine 1: they must rank highest, so Spearman with these gold scores is 100
    s1 = ["abc", "abc", "xyz", "hello"]
    s2 = ["abc", "abd", "q", "hello"]
    res = sts_zero_shot(model, tok, s1, s2, [5.0, 3.0, 0.0, 5.0], progress=False)
    assert res.pairs == 4
    from embcompress.evaluate.sts import encode

    e1, e2 = encode(model, tok, s1, progress=False), encode(model, tok, s2, progress=False)
    cos = (e1 * e2).sum(-1)
    from scipy.stats import spearmanr

    assert res.spearman == pytest.approx(100 * spearmanr(cos.numpy(), [5.0, 3.0, 0.0, 5.0]).statistic)
    assert cos[0] == pytest.approx(1.0, abs=1e-5) and cos[3] == pytest.approx(1.0, abs=1e-5)


def test_causal_lm_without_hidden_states_is_refused(tiny_model):
    tok = char_tokenizer()
    tok.pad_token = "<unk>"
    with pytest.raises(EmbcompressError, match="load an encoder"):
        sts_zero_shot(tiny_model("llama"), tok, ["a"], ["b"], [1.0], progress=False)
