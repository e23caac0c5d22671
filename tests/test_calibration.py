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
