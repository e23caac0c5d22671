"""Calibration text and token counts."""

import pytest

from embcompress import EmbcompressError
from embcompress.calibration import calibration_text, token_counts


def test_token_counts():
    from conftest import char_tokenizer

    tok = char_tokenizer()
    counts = token_counts(tok, "abca", 100)
    a, b = tok("a", add_special_tokens=False).input_ids[0], tok("b", add_special_tokens=False).input_ids[0]
    assert counts[a] == 2 and counts[b] == 1 and counts.sum() == 4


def test_calibration_text_must_not_be_the_eval_text(data_dir, tmp_path):
    with pytest.raises(EmbcompressError, match="is the evaluation text"):
        calibration_text(str(data_dir / "wikitext" / "wiki.test.raw"), str(data_dir))
    copy = tmp_path / "copy.txt"
    copy.write_text((data_dir / "wikitext" / "wiki.test.raw").read_text())
    with pytest.raises(EmbcompressError, match="is the evaluation text"):
        calibration_text(str(copy), str(data_dir))
    other = tmp_path / "other.txt"
    other.write_text("some other text")
    assert calibration_text(str(other), str(data_dir)) == "some other text"


def test_named_mixes_and_second_reported_texts():
    from embcompress import EmbcompressError
    from embcompress.calibration import check_disjoint
    from embcompress.data import data_file
    from embcompress.texts import read_text

    if data_file("glue/QNLI/dev.tsv") is None or data_file("squad/dev-v1.1.json.zip") is None:
        pytest.skip("needs ../shared/data")
    glue = read_text("glue")  # the alias of glue-train
    assert glue == read_text("glue-train") and "parental units" in glue  # SST-2's first training sentence
    assert "Our friends won't buy this analysis" in glue  # CoLA's (a file without a header)
    mix = read_text("squad+glue")
    assert mix.startswith(read_text("squad-contexts")) and mix.endswith(glue)
    assert read_text("qnli-dev").startswith("What came into force") and "PCCW" in read_text("mrpc-test")
    with pytest.raises(EmbcompressError, match="the squad evaluation reports on"):
        check_disjoint("squad+glue", ["perplexity", "squad"])


def test_predicted_mass_is_an_expected_count_per_token(tiny_lm_dir):
    import transformers as tf

    from embcompress.calibration import predicted_mass

    model = tf.AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    tok = tf.AutoTokenizer.from_pretrained(tiny_lm_dir)
    text = "the river runs past the mill and on to the sea. " * 20
    n = len(tok(text, add_special_tokens=False).input_ids)
    mass = predicted_mass(model, tok, text, seq_len=64)
    # every scored position spreads one unit of probability over the vocabulary
    assert mass.shape == (100,) and (mass > 0).all() and float(mass.sum()) == pytest.approx(n, rel=1e-4)
    assert float(predicted_mass(model, tok, text, max_tokens=100, seq_len=64).sum()) == pytest.approx(100, rel=1e-4)
