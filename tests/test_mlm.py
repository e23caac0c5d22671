import math
import random

import pytest
import torch
import transformers as tf

from embcompress import EmbcompressError, compress_model, make_config
from embcompress.evaluate.mlm import eval_lines, masked_batch, mlm_perplexity, whole_word_mask

WORDS = "the a of and to in is was it he she they city river game play ##s ##ed ##ing un ##believ ##able".split()


@pytest.fixture
def wordpiece(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [".", ","]
    return tf.BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)


@pytest.fixture
def tiny_bert(wordpiece):
    torch.manual_seed(0)
    cfg = tf.BertConfig(vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    return tf.BertForMaskedLM(cfg).eval()


TEXT = "\n".join([
    " = Some Heading = ",
    "",
    " the city was unbelievable and the river play ##s , " * 3,
    " he played .",  # too short: dropped
    " they played the game in the city and it was unbelievable . " * 2,
])


def test_lines_headings_and_short_lines_dropped(wordpiece):
    lines = eval_lines(TEXT, wordpiece)
    assert len(lines) == 2
    assert all(len(ids) - 2 >= 20 for ids in lines)
    assert all(ids[0] == wordpiece.cls_token_id and ids[-1] == wordpiece.sep_token_id for ids in lines)


def test_whole_word_masking_masks_whole_words():
    tokens = ["[CLS]", "un", "##believ", "##able", "city", "river", "play", "##s", "[SEP]"]
    for seed in range(20):
        chosen = set(whole_word_mask(tokens, {0, 8}, 0.34, random.Random(seed)))
        assert chosen <= set(range(1, 8))
        for word in ({1, 2, 3}, {6, 7}):
            assert not chosen & word or word <= chosen  # a word is masked whole or not at all
        assert 1 <= len(chosen) <= round(9 * 0.34)


def test_masks_are_the_same_for_every_method_and_rate_is_fifteen_percent(wordpiece):
    lines = eval_lines(TEXT, wordpiece)
    a = masked_batch(lines, wordpiece, 0.15, random.Random(42))
    b = masked_batch(lines, wordpiece, 0.15, random.Random(42))
    assert a == b
    labels = [x for row in a[1] for x in row]
    masked = sum(x != -100 for x in labels)
    assert abs(masked - 0.15 * len(labels)) <= 2 * len(lines)


def test_perplexity_matches_manual_loss_and_changes_with_compression(wordpiece, tiny_bert):
    res = mlm_perplexity(tiny_bert, wordpiece, TEXT, progress=False)
    lines = eval_lines(TEXT, wordpiece)
    inputs, labels = masked_batch(lines, wordpiece, 0.15, random.Random(42))
    total, count = 0.0, 0
    for inp, lab in zip(inputs, labels):
        with torch.no_grad():
            loss = tiny_bert(input_ids=torch.tensor([inp]), labels=torch.tensor([lab])).loss.item()
        n = sum(x != -100 for x in lab)
        total, count = total + loss * n, count + n
    assert res.masked_tokens == count and res.lines == 2
    assert res.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)
    compress_model(tiny_bert, make_config("svd", rank=2))
    assert mlm_perplexity(tiny_bert, wordpiece, TEXT, progress=False).perplexity != pytest.approx(res.perplexity)


def test_model_without_mlm_head_is_refused(wordpiece, tiny_bert):
    encoder = tiny_bert.bert
    with pytest.raises(EmbcompressError, match="no masked-LM head"):
        mlm_perplexity(encoder, wordpiece, TEXT, progress=False)
