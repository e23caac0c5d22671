"""The fused CPU lookups give the torch path's floats exactly, and fail like a dense lookup on bad ids."""

import pytest
import torch

from embcompress import compress, kernels, make_config

needs_kernels = pytest.mark.skipif(kernels._extension() is None, reason="no C++ toolchain to build the fused lookups")


def _both_paths(module, ids, monkeypatch):
    fused = module(ids)
    monkeypatch.setenv("EMBCOMPRESS_KERNELS", "0")
    plain = module(ids)
    monkeypatch.delenv("EMBCOMPRESS_KERNELS")
    return fused, plain


@needs_kernels
@pytest.mark.parametrize("spec", [dict(bits=4), dict(bits=2, group_size=16), dict(bits=1), dict(bits=8),
                                  dict(bits=4, zero_point=True), dict(bits=2, zero_point=True, row_norms=True),
                                  dict(bits=4, center=True), dict(bits=3), dict(bits=5, zero_point=True),
                                  dict(bits=7, group_size=16), dict(bits=6)])
def test_int_lookup_matches_torch_ops(spec, monkeypatch):
    w = torch.randn(300, 64, generator=torch.Generator().manual_seed(0))
    module = compress(w, make_config("int", **spec))
    ids = torch.tensor([[0, 299, 5, 5], [17, 3, 299, 128]])
    fused, plain = _both_paths(module, ids, monkeypatch)
    assert fused.shape == (2, 4, 64)
    assert torch.equal(fused, plain)
    assert torch.equal(module(ids.int()), plain)  # int32 ids, as some tokenizers hand them over


@needs_kernels
@pytest.mark.parametrize("qtype", ["Q4_0", "Q8_0"])
def test_gguf_lookup_matches_torch_ops(qtype, monkeypatch):
    w = torch.randn(100, 96, generator=torch.Generator().manual_seed(1))
    module = compress(w, make_config("gguf", qtype=qtype))
    ids = torch.tensor([99, 0, 42, 42])
    fused, plain = _both_paths(module, ids, monkeypatch)
    assert torch.equal(fused, plain) and fused.abs().sum() > 0


@needs_kernels
@pytest.mark.parametrize("shape_gain", [True, False])
def test_pq_lookup_matches_torch_ops(shape_gain, monkeypatch):
    w = torch.randn(400, 64, generator=torch.Generator().manual_seed(3))
    module = compress(w, make_config("pq", sub_dim=4, shape_gain=shape_gain, iterations=5))
    ids = torch.tensor([[399, 0, 7], [7, 250, 1]])
    fused, plain = _both_paths(module, ids, monkeypatch)
    if shape_gain:  # the row norm is summed in another order than embedding_bag's: the last bit may differ
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=0)
    else:
        assert torch.equal(fused, plain)


@pytest.mark.parametrize("kernels_on", ["1", "0"])
@pytest.mark.parametrize("method,spec", [("int", dict(bits=4)), ("int", dict(bits=3)), ("gguf", dict(qtype="Q4_0")),
                                         ("pq", dict(sub_dim=4, iterations=3)), ("int", dict(bits=2, row_norms=True))])
def test_decode_into_writes_only_the_rows_asked(method, spec, kernels_on, monkeypatch):
    monkeypatch.setenv("EMBCOMPRESS_KERNELS", kernels_on)
    module = compress(torch.randn(300, 64, generator=torch.Generator().manual_seed(4)), make_config(method, **spec))
    ids, rows = torch.tensor([5, 299, 5, 0]), torch.tensor([6, 0, 2, 3])
    out = torch.full((7, 64), float("nan"))
    module.decode_into(out, rows, ids)
    assert torch.equal(out[rows], module.decode(ids))
    assert out[[1, 4, 5]].isnan().all()
    strided = torch.zeros(64, 7).T  # not contiguous: the torch ops take it
    module.decode_into(strided, rows, ids)
    assert torch.equal(strided[rows], module.decode(ids))
    if kernels_on == "1" and not spec.get("row_norms"):
        with pytest.raises(IndexError, match="out of (range|bounds)"):  # kernel or index_copy_
            module.decode_into(out, torch.tensor([0, 1, 2, 7]), ids)


@pytest.mark.parametrize("method,spec", [("int", dict(bits=2)), ("gguf", dict(qtype="Q8_0")),
                                         ("pq", dict(sub_dim=8, iterations=3))])
def test_decode_into_can_add_to_rows(method, spec):
    module = compress(torch.randn(300, 64, generator=torch.Generator().manual_seed(5)), make_config(method, **spec))
    ids, rows = torch.tensor([7, 8, 9]), torch.tensor([2, 0, 1])
    base = torch.randn(3, 64)
    out = base.clone()
    module.decode_into(out, rows, ids, add_to=True)
    assert torch.equal(out[rows], base[rows] + module.decode(ids))


@pytest.mark.parametrize("method,spec", [("hybrid", dict(rank=4, bits=2)), ("tiered-rank1", dict(ratio=8)),
                                         ("tiered", dict(ratio=4, tiers="4:32,pq4,0"))])
def test_composite_modules_give_the_torch_floats(method, spec, monkeypatch):
    w = torch.randn(3000, 64, generator=torch.Generator().manual_seed(6))
    module = compress(w, make_config(method, **spec))
    ids = torch.randint(0, 3000, (3, 50), generator=torch.Generator().manual_seed(7))
    fused, plain = _both_paths(module, ids, monkeypatch)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=0)  # bitwise but for shape-gain PQ rows
    if method != "tiered":
        assert torch.equal(fused, plain)


@needs_kernels
def test_no_kernel_where_gradients_must_flow():
    module = compress(torch.randn(300, 32), make_config("pq", sub_dim=4, iterations=2))
    table = module.codebooks.float().flatten(0, 1).requires_grad_()
    assert kernels.gather_pq(module.codes, table, None, None, torch.tensor([1])) is None
    with torch.no_grad():
        assert kernels.gather_pq(module.codes, table, None, None, torch.tensor([1])) is not None


@needs_kernels
def test_fused_lookup_rejects_out_of_range_ids():
    module = compress(torch.randn(10, 32), make_config("int", bits=4))
    for bad in (torch.tensor([10]), torch.tensor([-1])):
        with pytest.raises(IndexError, match="out of range"):
            module(bad)
    assert module(torch.tensor([], dtype=torch.long)).shape == (0, 32)


@needs_kernels
def test_the_kernel_is_what_runs():
    module = compress(torch.randn(10, 32), make_config("int", bits=4))
    assert kernels.gather_int(module.packed, module.scales, None, torch.tensor([1]), 4, 32, 1.0, -8.0) is not None
    assert kernels.gather_int(module.packed, module.scales, None, torch.tensor([1]), 1, 4, 2.0, -1.0) is None


def test_without_a_toolchain_lookups_fall_back_to_torch_ops(monkeypatch, tmp_path):
    import torch.utils.cpp_extension

    monkeypatch.setattr(kernels, "_build_root", lambda: tmp_path)  # no build cached from an earlier run

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    monkeypatch.setattr(kernels, "_loaded", {})
    module = compress(torch.randn(10, 32, generator=torch.Generator().manual_seed(2)), make_config("int", bits=4))
    with pytest.warns(UserWarning, match="fused CPU lookups unavailable.*Ninja is required"):
        got = module(torch.tensor([3, 4]))
    assert torch.equal(got, module.reconstruct()[[3, 4]])
    assert kernels.gather_int(module.packed, module.scales, None, torch.tensor([1]), 4, 32, 1.0, -8.0) is None


# the tied head from the codes: one table of methods, each checked against the decoded matrix's product
HEAD_CASES = {
    "int4": ("int", dict(bits=4)), "int4-group64": ("int", dict(bits=4, group_size=64)),
    "int2-zero-point": ("int", dict(bits=2, zero_point=True)), "int1": ("int", dict(bits=1)),
    "int8-centred": ("int", dict(bits=8, center=True)), "int3": ("int", dict(bits=3)),
    "int2-row-norms (decoding path)": ("int", dict(bits=2, row_norms=True)),
    "gguf-Q4_0": ("gguf", dict(qtype="Q4_0")), "gguf-Q8_0": ("gguf", dict(qtype="Q8_0")),
    "pq": ("pq", dict(sub_dim=8)), "tiered": ("tiered", dict(ratio=6)), "tiered-pq": ("tiered-pq", dict(ratio=8)),
    "tiered-rank1": ("tiered-rank1", dict(ratio=8)), "mixed": ("mixed", dict(ratio=6)),
    "hybrid": ("hybrid", dict(rank=4, bits=2)),
}


@pytest.mark.parametrize("case", sorted(HEAD_CASES))
@pytest.mark.parametrize("tokens", [1, 5, kernels.FUSED_LOGITS_MAX_TOKENS + 7])
def test_head_logits_from_codes_equal_the_decoded_product(case, tokens, monkeypatch):
    method, spec = HEAD_CASES[case]
    w = torch.randn(8000, 128, generator=torch.Generator().manual_seed(2))
    module = compress(w, make_config(method, **spec))
    h = torch.randn(2, tokens, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = h @ module.reconstruct().float().T
        got = module.logits(h)
        monkeypatch.setenv("EMBCOMPRESS_KERNELS", "0")  # the torch fallback (a GPU, no compiler) agrees too
        plain = module.logits(h)
    assert got.shape == plain.shape == (2, tokens, 8000)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 2e-6 * scale and (plain - expected).abs().max() <= 2e-6 * scale


@needs_kernels
@pytest.mark.parametrize("case", ["int4", "gguf-Q4_0", "gguf-Q8_0", "tiered-pq", "mixed", "hybrid"])
def test_a_decode_step_never_decodes_the_matrix(case, monkeypatch):
    """At one hidden vector the head reads the codes only: decoding rows would be the slow path."""
    method, spec = HEAD_CASES[case]
    module = compress(torch.randn(8000, 128, generator=torch.Generator().manual_seed(2)), make_config(method, **spec))
    from embcompress.methods import base

    def refuse(*a, **k):
        raise AssertionError("decoded rows for a decode step")

    monkeypatch.setattr(base.CompressedEmbedding, "reconstruct", refuse)
    with torch.no_grad():
        assert module.logits(torch.randn(1, 1, 128)).shape == (1, 1, 8000)
