"""Product quantization, importance-aware mixed precision and calibration rules."""

import pytest
import torch

from embcompress import EmbcompressError, compress, compress_model, load_compressed, make_config, save_compressed
from embcompress.calibration import calibration_text, token_counts
from embcompress.methods import mixed


def clustered_matrix(rows=600, dim=16, sub_dim=4, distinct=10, seed=0):
    """Every sub-vector is one of ``distinct`` patterns: PQ with 256 centroids can be exact."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for _ in range(dim // sub_dim):
        patterns = torch.randn(distinct, sub_dim, generator=g)
        parts.append(patterns[torch.randint(0, distinct, (rows,), generator=g)])
    return torch.cat(parts, dim=1)


def test_pq_exact_on_clustered_rows_and_bytes_are_true():
    w = clustered_matrix()
    m = compress(w, make_config("pq", sub_dim=4, shape_gain=False))
    assert torch.allclose(m.reconstruct(), w, atol=2e-3)  # fp16 codebooks
    assert m.nbytes() == 600 * 4 + 4 * 256 * 4 * 2


def test_pq_shape_gain_keeps_row_norms():
    w = torch.randn(400, 16) * torch.linspace(0.1, 10, 400).unsqueeze(1)
    m = compress(w, make_config("pq", sub_dim=8, shape_gain=True))
    assert torch.allclose(m.reconstruct().norm(dim=-1), w.norm(dim=-1), rtol=2e-3)
    cos = torch.nn.functional.cosine_similarity(m.reconstruct(), w, dim=-1)
    assert cos.mean() > 0.5


def test_mixed_meets_byte_budget_and_keeps_hot_rows_precise():
    torch.manual_seed(0)
    w = torch.randn(6000, 32)
    for ratio in (4, 8):
        config = make_config("mixed", ratio=ratio)
        m = compress(w, config)
        budget = w.numel() * 2 / ratio
        assert budget - mixed.hot_row_bytes(32, config) < m.nbytes() <= budget
        assert m.num_hot > 0
        hot = m.hot_ids.long()
        assert torch.equal(hot, torch.arange(m.num_hot))  # token-id proxy: the lowest ids
        err = (m.reconstruct() - w).norm(dim=-1) / w.norm(dim=-1)
        assert err[hot].max() < 0.02 and err[m.num_hot :].mean() > 5 * err[hot].mean()
        ids = torch.tensor([[0, 5999, 5], [m.num_hot, 3, 1000]])
        assert torch.allclose(m(ids), m.reconstruct()[ids])


def test_mixed_calibration_puts_counted_tokens_in_the_hot_tier():
    w = torch.randn(1000, 32)
    counts = torch.zeros(1000)  # budget at ratio 3: 21,333 bytes, the cold tier takes 19,384
    counts[[900, 901, 950]] = torch.tensor([50.0, 40.0, 30.0])
    m = compress(w, make_config("mixed", ratio=3, importance="calibration"), row_weights=counts)
    assert {900, 901, 950} <= set(m.hot_ids.tolist())
    with pytest.raises(EmbcompressError, match="needs token counts"):
        compress(w, make_config("mixed", ratio=3, importance="calibration"))


def test_mixed_refuses_unreachable_budget():
    with pytest.raises(EmbcompressError, match="beyond what mixed can reach"):
        compress(torch.randn(1000, 32), make_config("mixed", ratio=200))
    with pytest.raises(EmbcompressError, match="importance must be"):
        make_config("mixed", importance="vibes")


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


def test_token_counts():
    from conftest import char_tokenizer

    tok = char_tokenizer()
    counts = token_counts(tok, "abca", 100)
    a, b = tok("a", add_special_tokens=False).input_ids[0], tok("b", add_special_tokens=False).input_ids[0]
    assert counts[a] == 2 and counts[b] == 1 and counts.sum() == 4


def test_tiered_budget_is_exact_and_important_rows_get_more_bits():
    torch.manual_seed(0)
    w = torch.randn(3000, 64)
    for ratio in (6, 8, 16):
        m = compress(w, make_config("tiered", ratio=ratio, tiers="4:32,3:32,2:32,2:64,0"))
        assert m.nbytes() <= w.numel() * 2 / ratio
        assert m.nbytes() > w.numel() * 2 / ratio - 64  # the budget is used up to one row's worth
        tiers = m.tier_of_row.long()
        # token-id importance: tier indices never get better (smaller) as ids grow, on average
        assert tiers[:300].float().mean() < tiers[-300:].float().mean()
        ids = torch.randint(0, 3000, (3, 7))
        assert torch.allclose(m(ids), m.reconstruct()[ids])
    m8 = compress(w, make_config("tiered", ratio=8, tiers="4:32,3:32,2:32,2:64,0"))
    err = (m8.reconstruct() - w).norm(dim=-1) / w.norm(dim=-1)
    assert err[:100].mean() < 0.2 and err[-100:].mean() > 0.5


def test_tiered_allocation_minimises_weighted_error():
    from embcompress.methods.tiered import allocate

    errors = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    weights = torch.tensor([1.0, 5.0, 2.0], dtype=torch.float64)
    row_bytes = torch.tensor([10.0, 0.0], dtype=torch.float64)
    # budget for one precise row: it must go to the most important one
    assert allocate(errors, weights, row_bytes, 10.0).tolist() == [1, 0, 1]
    assert allocate(errors, weights, row_bytes, 20.0).tolist() == [1, 0, 0]


def test_tiered_calibration_and_bad_tiers():
    w = torch.randn(2000, 32)
    counts = torch.zeros(2000)
    counts[1990:] = 1000.0
    m = compress(w, make_config("tiered", ratio=8, importance="calibration", tiers="4:32,2:32,0"), row_weights=counts)
    assert (m.tier_of_row[1990:] == 0).all()
    # the token-id prior lifts rows the calibration text never saw: low ids (frequent) are no longer dropped
    dropped = lambda mod: mod.tier_of_row[:100] == 2
    mixed = compress(w, make_config("tiered", ratio=8, importance="calibration", tiers="4:32,2:32,0", prior=0.5),
                     row_weights=counts)
    assert dropped(m).sum() > 10 and dropped(mixed).sum() == 0 and (mixed.tier_of_row[1990:] == 0).all()
    all_prior = compress(w, make_config("tiered", ratio=8, importance="calibration", tiers="4:32,2:32,0", prior=1.0),
                         row_weights=counts)
    data_free = compress(w, make_config("tiered", ratio=8, tiers="4:32,2:32,0"))
    assert torch.equal(all_prior.tier_of_row, data_free.tier_of_row)
    with pytest.raises(EmbcompressError, match="prior is a share"):
        make_config("tiered", prior=1.5)
    with pytest.raises(EmbcompressError, match="bits:group_size"):
        make_config("tiered", tiers="4:32,x")
    with pytest.raises(EmbcompressError, match="below what these tiers can reach"):
        compress(w, make_config("tiered", ratio=8, tiers="4:32,3:32"))


def _tied_llama(vocab: int):
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return tf.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("name,opts,vocab", [("mixed", {"ratio": 2}, 2048),
                                             ("tiered", {"ratio": 6, "tiers": "4:32,2:32,0"}, 300),
                                             ("pq", {"center": True}, 300),
                                             ("int", {"bits": 2, "center": True}, 100),
                                             ("tiered", {"ratio": 6, "tiers": "4:32,2:32,0", "center": True,
                                                         "row_norms": True}, 300),
                                             ("tiered", {"ratio": 3, "tiers": "4:32,pq4,0", "rank": 1}, 2048),
                                             ("gguf", {"qtype": "Q4_1"}, 100),
                                             ("hybrid", {"rank": 4}, 100),
                                             ("autoencoder-leaky", {"rank": 8, "epochs": 2, "progress": False}, 100)])
def test_tied_round_trip_in_a_model(tmp_path, name, opts, vocab):
    model = _tied_llama(vocab)
    compress_model(model, make_config(name, **opts), scope="tied")
    ids = torch.randint(0, vocab, (2, 9))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    loaded = load_compressed(save_compressed(model, tmp_path / name))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)
