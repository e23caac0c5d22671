"""SVD, the paper's autoencoder and the hybrid (rank-k part plus an int residual)."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import low_rank_matrix
from embcompress import EmbcompressError, compress, make_config
from embcompress.methods import autoencoder, svd


def test_svd_recovers_exact_low_rank_matrix():
    w = low_rank_matrix(rank=5)
    m = compress(w, make_config("svd", rank=5))
    assert torch.allclose(m.reconstruct(), w, atol=1e-4)
    worse = compress(w, make_config("svd", rank=4))
    assert (worse.reconstruct() - w).norm() > 0.01 * w.norm()


def test_randomized_svd_is_seeded_and_close_to_exact():
    w = low_rank_matrix(rank=5) + 0.01 * torch.randn(200, 24, generator=torch.Generator().manual_seed(1))
    a = compress(w, make_config("svd", rank=5, randomized=True, seed=3)).reconstruct()
    b = compress(w, make_config("svd", rank=5, randomized=True, seed=3)).reconstruct()
    exact = compress(w, make_config("svd", rank=5)).reconstruct()
    assert torch.equal(a, b)
    assert (a - exact).norm() < 1e-3 * w.norm()


def test_forward_matches_reconstruct_for_any_batch_shape():
    w = torch.randn(50, 16)
    m = compress(w, make_config("svd", rank=4))
    ids = torch.randint(0, 50, (3, 2, 5))
    out = m(ids)
    assert out.shape == (3, 2, 5, 16)
    assert torch.allclose(out, m.reconstruct()[ids], atol=1e-6)


@pytest.mark.parametrize("V,d,ratio,k_ae,k_svd", [(30522, 768, 10, 75, 74), (30522, 768, 5, 150, 149), (30522, 768, 2.5, 300, 299)])
def test_ratio_to_rank_matches_the_paper(V, d, ratio, k_ae, k_svd):
    # The paper: k = 300, 150, 75 for BERT-base give CR ≈ 2.5, 5, 10.
    assert autoencoder.rank_for_ratio(V, d, ratio) == k_ae
    assert svd.rank_for_ratio(V, d, ratio) == k_svd
    assert autoencoder.compression_ratio(V, d, k_ae) == pytest.approx(ratio, rel=0.01)


def test_ratio_round_trip_counts_parameters():
    w = torch.randn(1000, 64)
    for ratio in (2.5, 5, 10):
        m = compress(w, make_config("svd", ratio=ratio))
        achieved = w.numel() / m.num_parameters()
        assert achieved >= ratio * 0.99 and achieved < ratio * 1.2
        assert m.nbytes() == m.num_parameters() * 4


def test_autoencoder_loss_falls_and_direction_is_learned():
    torch.manual_seed(0)
    w = low_rank_matrix(rows=512, dim=32, rank=6) + 0.05 * torch.randn(512, 32)
    cfg = make_config("autoencoder", rank=6, epochs=20, lr=1e-2, batch_size=32, progress=False)
    m = compress(w, cfg)
    cos = torch.nn.functional.cosine_similarity(m.reconstruct(), w, dim=-1)
    assert cos.mean() > 0.97
    # Loss falls against the untrained state (one epoch with lr 0 keeps the random init).
    untrained = compress(w, make_config("autoencoder", rank=6, epochs=1, lr=0.0, batch_size=64, progress=False))
    cos0 = torch.nn.functional.cosine_similarity(untrained.reconstruct(), w, dim=-1)
    assert cos.mean() > cos0.mean() + 0.3
    # only codes and decoder are kept: V·k + k·d + d parameters
    assert m.num_parameters() == 512 * 6 + 6 * 32 + 32


def test_autoencoder_svd_init_starts_at_svd():
    w = low_rank_matrix(rows=300, dim=20, rank=4)
    m = compress(w, make_config("autoencoder", rank=4, epochs=1, lr=0.0, svd_init=True, progress=False))
    assert torch.allclose(m.reconstruct(), w, atol=1e-3)


def test_alpha_schedule_and_loss_terms():
    cfg = make_config("autoencoder", rank=2)
    assert cfg.w_cos == pytest.approx(0.1995) and cfg.w_l1 == 0.0025 and cfg.w_l2 == 0
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.seed, cfg.lr_step_epochs, cfg.lr_gamma) == (1e-3, 32, 30, 1, 4, 0.5)
    assert autoencoder.alpha(0, cfg) == 1.0
    assert autoencoder.alpha(10, cfg) == pytest.approx(0.55)
    assert autoencoder.alpha(25, cfg) == pytest.approx(0.1)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    x_hat = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # same directions, errors of magnitude 1
    cos_only = make_config("autoencoder", rank=1, w_cos=1.0, w_l1=0.0)
    assert autoencoder.direction_loss(x_hat, x, cos_only, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    l1_only = make_config("autoencoder", rank=1, w_cos=0.0, w_l1=1.0)
    assert autoencoder.direction_loss(x_hat, x, l1_only, 1.0).item() == pytest.approx(0.5, abs=1e-6)
    rmse_only = make_config("autoencoder", rank=1, w_cos=0.0, w_l1=0.0, w_l2=1.0)
    assert autoencoder.direction_loss(x_hat, x, rmse_only, 1.0).item() == pytest.approx(math.sqrt(0.5), abs=1e-6)


def test_linear_autoencoder_logits_match_dense():
    w = torch.randn(40, 12)
    m = compress(w, make_config("autoencoder", rank=3, epochs=1, batch_size=8, progress=False))
    h = torch.randn(2, 5, 12)
    assert torch.allclose(m.logits(h), h @ m.reconstruct().T, atol=1e-5)


@pytest.mark.parametrize("preset", ["autoencoder-elu", "autoencoder-leaky"])
def test_nonlinear_autoencoder_lookup_in_place_matches_the_autograd_path(preset):
    w = torch.randn(40, 12)
    m = compress(w, make_config(preset, rank=3, epochs=1, batch_size=8, progress=False))
    ids = torch.tensor([[0, 5, 39], [7, 7, 1]])
    with_grad = m(ids)  # codes are trainable: the out-of-place path autograd needs
    with torch.inference_mode():
        in_place = m(ids)
    assert torch.allclose(in_place, with_grad.detach(), atol=1e-6)
    with_grad.sum().backward()
    assert m.codes.grad is not None and m.codes.grad.abs().sum() > 0
    if m.row_norms:  # leaky-tanh keeps each row's original length
        assert torch.allclose(in_place.norm(dim=-1), w[ids].norm(dim=-1), rtol=1e-5)


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
