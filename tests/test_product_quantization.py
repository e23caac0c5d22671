"""Product quantization (plain and shape-gain) and its lookup-table logits."""

import pytest
import torch

from embcompress import EmbcompressError, compress, make_config


def clustered_matrix(rows=600, dim=16, sub_dim=4, distinct=10, seed=0):
    """Every sub-vector is one of ``distinct`` patterns: PQ with 256 centroids can be exact."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for _ in range(dim // sub_dim):
        patterns = torch.randn(distinct, sub_dim, generator=g)
        parts.append(patterns[torch.randint(0, distinct, (rows,), generator=g)])
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("shape_gain", [False, True])
def test_pq_lookup_table_logits_equal_dense(shape_gain):
    w = torch.randn(700, 32)
    m = compress(w, make_config("pq", sub_dim=4, shape_gain=shape_gain))
    hidden = torch.randn(2, 5, 32)
    assert torch.allclose(m.logits(hidden), hidden @ m.reconstruct().T, atol=1e-4, rtol=1e-4)


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


def test_pq_exact_on_clustered_rows_and_bytes_are_true():
    w = clustered_matrix()
    m = compress(w, make_config("pq", sub_dim=4, shape_gain=False))
    assert torch.allclose(m.reconstruct(), w, atol=2e-3)  # fp16 codebooks
    assert m.nbytes() == 600 * 4 + 4 * 256 * 4 * 2
