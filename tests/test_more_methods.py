"""The GGUF anchor, low-rank + quantized residual, the follow-up autoencoder and the PQ lookup-table head."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embcompress import EmbcompressError, compress, make_config


def test_gguf_types_store_what_gguf_stores():
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    w = torch.randn(50, 64)
    for qtype, bytes_per_32 in (("Q8_0", 34), ("Q4_0", 18), ("Q5_1", 24)):
        m = compress(w, make_config("gguf", qtype=qtype))
        ref = dequantize(quantize(w.numpy(), GGMLQuantizationType[qtype]), GGMLQuantizationType[qtype])
        assert np.array_equal(m.reconstruct().numpy(), ref)
        assert m.nbytes() == 50 * 2 * bytes_per_32
        ids = torch.tensor([[3, 7], [49, 0]])
        assert torch.equal(m(ids), m.reconstruct()[ids])
    assert (compress(w, make_config("gguf", qtype="Q8_0")).reconstruct() - w).norm() / w.norm() < 0.01


def test_gguf_bad_types_and_rows():
    with pytest.raises(EmbcompressError, match="cannot be quantized by the gguf package"):
        make_config("gguf", qtype="Q4_K")
    with pytest.raises(EmbcompressError, match="do not divide the row length 48"):
        compress(torch.randn(10, 48), make_config("gguf", qtype="Q4_0"))


def test_hybrid_beats_plain_int2_on_low_rank_plus_noise():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(500, 8, generator=g) @ torch.randn(8, 64, generator=g) + 0.05 * torch.randn(500, 64, generator=g)
    hybrid = compress(w, make_config("hybrid", rank=8, bits=2))
    plain = compress(w, make_config("int", bits=2))
    err = lambda m: ((m.reconstruct() - w).norm() / w.norm()).item()
    assert err(hybrid) < 0.02 < err(plain)
    # fp16 factors (codes 500x8, basis 8x64) + 2-bit residual (16 bytes a row) + fp16 scales (2 a row)
    assert hybrid.nbytes() == 2 * (500 * 8 + 8 * 64) + 500 * 16 + 500 * 2 * 2


def test_hybrid_with_the_autoencoder_and_bad_options():
    w = torch.randn(300, 32)
    m = compress(w, make_config("hybrid", rank=4, low_rank="autoencoder", bits=4))
    assert ((m.reconstruct() - w).norm() / w.norm()).item() < 0.15
    with pytest.raises(EmbcompressError, match="unknown low-rank part"):
        make_config("hybrid", low_rank="pca")
    with pytest.raises(EmbcompressError, match="between 1 and 31"):
        compress(w, make_config("hybrid", rank=32))


def test_follow_up_autoencoder_keeps_every_row_norm():
    w = torch.randn(400, 24) * torch.linspace(0.2, 5, 400).unsqueeze(1)
    m = compress(w, make_config("autoencoder-leaky", rank=8, epochs=4, progress=False))
    assert torch.allclose(m.reconstruct().norm(dim=-1), w.norm(dim=-1), rtol=1e-4)
    assert F.cosine_similarity(m.reconstruct(), w, dim=-1).mean() > 0.4  # best rank 8 of 24: ~0.58, random: ~0
    with pytest.raises(EmbcompressError, match="unknown activation"):
        compress(w, make_config("autoencoder", rank=8, activation="relu"))


@pytest.mark.parametrize("shape_gain", [False, True])
def test_pq_lookup_table_logits_equal_dense(shape_gain):
    w = torch.randn(700, 32)
    m = compress(w, make_config("pq", sub_dim=4, shape_gain=shape_gain))
    hidden = torch.randn(2, 5, 32)
    assert torch.allclose(m.logits(hidden), hidden @ m.reconstruct().T, atol=1e-4, rtol=1e-4)


def test_centering_spends_the_levels_on_what_rows_do_not_share():
    g = torch.Generator().manual_seed(0)
    w = 0.6 * torch.randn(64, generator=g) + 0.1 * torch.randn(2000, 64, generator=g)  # a big common part
    plain = compress(w, make_config("int", bits=2))
    centred = compress(w, make_config("int", bits=2, center=True))
    err = lambda m: ((m.reconstruct() - w).norm() / w.norm()).item()
    assert err(centred) < 0.5 * err(plain)
    assert centred.nbytes() == plain.nbytes() + 64 * 2  # the fp16 mean
    assert torch.allclose(centred.center.float(), w.mean(0), atol=1e-3)


def test_centred_tiers_keep_the_budget_and_dropped_rows_decode_to_the_mean():
    w = 0.5 + torch.randn(400, 32)
    m = compress(w, make_config("tiered", ratio=6, tiers="4:32,2:32,0", center=True))
    assert m.nbytes() <= 400 * 32 * 2 / 6
    dropped = (m.tier_of_row == 2).nonzero().squeeze(1)
    assert len(dropped) > 0
    assert torch.allclose(m.reconstruct(dropped), m.center.float().expand(len(dropped), -1))


def test_row_norms_undo_the_quantizers_shrinkage():
    w = torch.randn(300, 64) * torch.linspace(0.5, 3, 300).unsqueeze(1)
    plain = compress(w, make_config("int", bits=2))
    kept = compress(w, make_config("int", bits=2, row_norms=True))
    assert (plain.reconstruct().norm(dim=-1) / w.norm(dim=-1)).mean() < 0.97  # least-squares scales shrink rows
    assert torch.allclose(kept.reconstruct().norm(dim=-1), w.norm(dim=-1), rtol=2e-3)
    assert kept.nbytes() == plain.nbytes() + 300 * 2
    tiered = compress(w, make_config("tiered", ratio=6, tiers="4:32,2:32,0", row_norms=True, center=True))
    assert tiered.nbytes() <= 300 * 64 * 2 / 6


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
