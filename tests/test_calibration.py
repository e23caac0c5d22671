"""Calibration text and token counts."""



from embcompress.calibration import token_counts


def test_token_counts():
    from conftest import char_tokenizer

    tok = char_tokenizer()
    counts = token_counts(tok, "abca", 100)
    a, b = tok("a", add_special_tokens=False).input_ids[0], tok("b", add_special_tokens=False).input_ids[0]
    assert counts[a] == 2 and counts[b] == 1 and counts.sum() == 4
