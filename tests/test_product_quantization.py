"""Product quantization (plain and shape-gain) and its lookup-table logits."""

import pytest
import torch

from embcompress import compress, make_config


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
