"""The budget-driven composites: tiered (importance-aware tiers) and mixed (hot int8 rows over PQ)."""

import pytest
import torch

from conftest import _tiny
from embcompress import EmbcompressError, compress, compress_model, load_compressed, make_config, save_compressed
from embcompress.methods import mixed


def test_centred_tiers_keep_the_budget_and_dropped_rows_decode_to_the_mean():
    w = 0.5 + torch.randn(400, 32)
    m = compress(w, make_config("tiered", ratio=6, tiers="4:32,2:32,0", center=True))
    assert m.nbytes() <= 400 * 32 * 2 / 6
    dropped = (m.tier_of_row == 2).nonzero().squeeze(1)
    assert len(dropped) > 0
    assert torch.allclose(m.reconstruct(dropped), m.center.float().expand(len(dropped), -1))


def test_tiers_over_a_rank_one_part_keep_every_rows_dominant_coefficient():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(400, 1, generator=g) * 3 * torch.randn(1, 32, generator=g) + 0.1 * torch.randn(400, 32, generator=g)
    m = compress(w, make_config("tiered", ratio=6, tiers="4:32,2:32,0", rank=1))
    assert m.nbytes() <= 400 * 32 * 2 / 6
    dropped = (m.tier_of_row == 2).nonzero().squeeze(1)
    assert len(dropped) > 0  # a dropped row is its rank-1 part, not zeros
    assert (m.reconstruct(dropped) - w[dropped]).norm() / w[dropped].norm() < 0.1
    with pytest.raises(EmbcompressError, match="between 1 and 31"):
        compress(w, make_config("tiered", ratio=6, rank=32))


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


def test_mixed_refuses_unreachable_budget():
    with pytest.raises(EmbcompressError, match="beyond what mixed can reach"):
        compress(torch.randn(1000, 32), make_config("mixed", ratio=200))
    with pytest.raises(EmbcompressError, match="importance must be"):
        make_config("mixed", importance="vibes")


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
    model = _tiny("llama", vocab=vocab).eval()
    compress_model(model, make_config(name, **opts), scope="tied")
    ids = torch.randint(0, vocab, (2, 9))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    loaded = load_compressed(save_compressed(model, tmp_path / name))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)


def test_mixed_calibration_puts_counted_tokens_in_the_hot_tier():
    w = torch.randn(1000, 32)
    counts = torch.zeros(1000)  # budget at ratio 3: 21,333 bytes, the cold tier takes 19,384
    counts[[900, 901, 950]] = torch.tensor([50.0, 40.0, 30.0])
    m = compress(w, make_config("mixed", ratio=3, importance="calibration"), row_weights=counts)
    assert {900, 901, 950} <= set(m.hot_ids.tolist())
    with pytest.raises(EmbcompressError, match="needs token counts"):
        compress(w, make_config("mixed", ratio=3, importance="calibration"))


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


def test_pq_tiers_pay_their_codebooks_and_win_where_rows_cluster():
    g = torch.Generator().manual_seed(0)
    # rows that are one of 64 directions at varied norms: PQ codes them almost exactly, int2 cannot
    centres = torch.randn(64, 32, generator=g)
    w = centres[torch.randint(0, 64, (20000,), generator=g)] * torch.rand(20000, 1, generator=g).add(0.5)
    w += 0.01 * torch.randn(20000, 32, generator=g)
    with_pq = compress(w, make_config("tiered", ratio=6, tiers="4:32,pq4,0"))
    int_only = compress(w, make_config("tiered", ratio=6, tiers="4:32,2:32,0"))
    assert with_pq.nbytes() <= 20000 * 32 * 2 / 6  # codebooks counted
    assert with_pq.parts[1].codebooks.shape == (8, 256, 4)
    assert (with_pq.tier_of_row == 1).sum() > 15000
    err = lambda m: ((m.reconstruct() - w).norm(dim=-1) / w.norm(dim=-1)).mean()
    assert err(with_pq) < 0.5 * err(int_only)
    assert torch.equal(with_pq.reconstruct(torch.tensor([5, 7])), with_pq.reconstruct()[[5, 7]])
    with pytest.raises(EmbcompressError, match="sub_dim 5 must divide"):
        compress(w, make_config("tiered", ratio=6, tiers="4:32,pq5,0"))
    with pytest.raises(EmbcompressError, match="shared parts .* exceed the budget"):
        compress(w[:300], make_config("tiered", ratio=6, tiers="4:32,pq4,0"))
    with pytest.raises(EmbcompressError, match="pq4 or 0"):
        make_config("tiered", tiers="4:32,pqx")
