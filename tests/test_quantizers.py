"""int-k (bit packing, scales, zero points, centring, row norms) and llama.cpp's GGUF block types."""

import numpy as np
import pytest
import torch

from embcompress import EmbcompressError, compress, make_config
from embcompress.methods.packing import pack_bits, unpack_bits, unpack_float


@pytest.mark.parametrize("bits", range(2, 9))
def test_bit_packing_round_trip(bits):
    v = torch.randint(0, 2**bits, (7, 64), dtype=torch.uint8)
    packed = pack_bits(v, bits)
    assert packed.shape == (7, 64 * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, 64), v)


@pytest.mark.parametrize("bits", range(1, 9))
def test_unpacking_to_floats_through_the_pair_table_matches_plain_unpacking(bits):
    v = torch.randint(0, 2**bits, (3, 5, 64), dtype=torch.uint8)
    packed = pack_bits(v, bits)
    assert torch.equal(unpack_float(packed, bits, 64, 2.0, -1.0), v.float() * 2 - 1)
    short = pack_bits(v[..., :8], bits)  # one byte at 1 bit: the plain path
    assert torch.equal(unpack_float(short, bits, 8, 1.0, -3.0), v[..., :8].float() - 3)


@pytest.mark.parametrize("bits,max_rel_err", [(8, 0.01), (4, 0.12), (2, 0.6), (1, 0.8)])
def test_int_quantization_error_and_bytes(bits, max_rel_err):
    w = torch.randn(100, 64)
    m = compress(w, make_config("int", bits=bits, group_size=32))
    rel = ((m.reconstruct() - w).norm(dim=-1) / w.norm(dim=-1)).mean()
    assert rel < max_rel_err
    assert m.nbytes() == 100 * 64 * bits // 8 + 100 * 2 * 2  # packed codes + one fp16 scale per group
    assert m.reconstruct().shape == w.shape


def test_int_quantization_exact_on_grid_values():
    # values already on a symmetric 4-bit grid are reproduced exactly
    w = (torch.randint(-8, 8, (10, 32)).float()) * 0.25
    w[:, 0] = -2.0  # the largest magnitude is -8 · 0.25
    m = compress(w, make_config("int", bits=4, group_size=32, search_scale=False))
    assert torch.allclose(m.reconstruct(), w)


def test_zero_point_quantization_beats_symmetric_on_shifted_rows():
    w = torch.rand(64, 32) + 3.0
    sym = compress(w, make_config("int", bits=3, group_size=32)).reconstruct()
    asym = compress(w, make_config("int", bits=3, group_size=32, zero_point=True)).reconstruct()
    assert (asym - w).norm() < 0.5 * (sym - w).norm()


def test_one_bit_is_sign_times_mean_abs():
    w = torch.tensor([[1.0, -3.0, 2.0, -2.0] * 8])
    m = compress(w, make_config("int", bits=1, group_size=32))
    assert torch.allclose(m.reconstruct(), torch.sign(w) * 2.0)
    assert m.nbytes() == 32 // 8 + 2


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


def test_centering_spends_the_levels_on_what_rows_do_not_share():
    g = torch.Generator().manual_seed(0)
    w = 0.6 * torch.randn(64, generator=g) + 0.1 * torch.randn(2000, 64, generator=g)  # a big common part
    plain = compress(w, make_config("int", bits=2))
    centred = compress(w, make_config("int", bits=2, center=True))
    err = lambda m: ((m.reconstruct() - w).norm() / w.norm()).item()
    assert err(centred) < 0.5 * err(plain)
    assert centred.nbytes() == plain.nbytes() + 64 * 2  # the fp16 mean
    assert torch.allclose(centred.center.float(), w.mean(0), atol=1e-3)


def test_row_norms_undo_the_quantizers_shrinkage():
    w = torch.randn(300, 64) * torch.linspace(0.5, 3, 300).unsqueeze(1)
    plain = compress(w, make_config("int", bits=2))
    kept = compress(w, make_config("int", bits=2, row_norms=True))
    assert (plain.reconstruct().norm(dim=-1) / w.norm(dim=-1)).mean() < 0.97  # least-squares scales shrink rows
    assert torch.allclose(kept.reconstruct().norm(dim=-1), w.norm(dim=-1), rtol=2e-3)
    assert kept.nbytes() == plain.nbytes() + 300 * 2
    tiered = compress(w, make_config("tiered", ratio=6, tiers="4:32,2:32,0", row_norms=True, center=True))
    assert tiered.nbytes() <= 300 * 64 * 2 / 6
