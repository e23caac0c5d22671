import json

import pytest
import torch
from torch import nn

from embcompress import (
    CompressedEmbedding,
    CompressedHead,
    EmbcompressError,
    compress_model,
    load_compressed,
    make_config,
    save_compressed,
)

ARCHS = ["gpt2", "llama", "gemma3", "bert"]
CONFIGS = {
    "svd": dict(rank=8),
    "autoencoder": dict(rank=8, epochs=2, batch_size=16, progress=False),
    "int": dict(bits=4, group_size=16),
}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("scope", ["input", "tied"])
def test_compress_save_load_round_trip(tiny_model, tmp_path, arch, method, scope):
    model = tiny_model(arch)
    ids = torch.randint(1, 97, (2, 7))
    original_head = model.get_output_embeddings().weight.detach().clone()
    info = compress_model(model, make_config(method, **CONFIGS[method]), scope=scope)
    emb = model.get_input_embeddings()
    assert isinstance(emb, CompressedEmbedding)
    assert info["after"]["embedding_bytes"] < info["before"]["embedding_bytes"]
    if scope == "input":
        # the paper's scope: the head keeps the exact original matrix, no longer tied
        assert torch.equal(model.get_output_embeddings().weight, original_head)
        # tied: the head's matrix was counted once before and is still there; the codes come on top
        dense_dropped = 0 if info["was_tied"] else 97 * 32
        assert info["after"]["model_parameters"] == info["before"]["model_parameters"] - dense_dropped + emb.num_parameters()
    else:
        assert isinstance(model.get_output_embeddings(), CompressedHead)
        assert info["after"]["model_bytes"] < info["before"]["model_bytes"]
    expected = _logits(model, ids)
    assert torch.isfinite(expected).all()

    out = save_compressed(model, tmp_path / "c")
    meta = json.loads((out / "embcompress.json").read_text())
    assert meta["method"] == method and meta["scope"] == scope
    loaded = load_compressed(out)
    assert torch.equal(_logits(loaded, ids), expected)
    # nothing dense of size V×d in the input embedding after load
    assert all(t.numel() < 97 * 32 for t in loaded.get_input_embeddings().state_dict().values()) or method == "int"


def test_input_scope_keeps_embedding_forward_close(tiny_model):
    model = tiny_model("llama")
    dense = model.get_input_embeddings().weight.detach().clone()
    compress_model(model, make_config("int", bits=8, group_size=16))
    ids = torch.arange(97)
    got = model.get_input_embeddings()(ids)
    assert (got - dense).abs().max() < 0.01 * dense.abs().max()


def test_gemma_embed_scale_is_kept(tiny_model):
    model = tiny_model("gemma3")
    emb = model.get_input_embeddings()
    ids = torch.tensor([[3, 5, 7]])
    with torch.no_grad():
        dense_out = emb(ids)
    compress_model(model, make_config("int", bits=8, group_size=16))  # near-exact
    new = model.get_input_embeddings()
    assert new.scale == pytest.approx(32**0.5)
    assert torch.allclose(new(ids), new.reconstruct(ids) * 32**0.5)
    assert torch.allclose(new(ids), dense_out, atol=0.01 * dense_out.abs().max().item())


def test_tied_scope_logits_use_compressed_matrix(tiny_model):
    model = tiny_model("llama")
    compress_model(model, make_config("svd", rank=4), scope="tied")
    emb = model.get_input_embeddings()
    h = torch.randn(1, 3, 32)
    assert torch.allclose(model.get_output_embeddings()(h), h @ emb.reconstruct().T, atol=1e-5)


def test_padding_row_that_was_zero_stays_zero(tiny_model):
    model = tiny_model("bert")
    with torch.no_grad():
        model.get_input_embeddings().weight[0].zero_()
    compress_model(model, make_config("svd", rank=4))
    out = model.get_input_embeddings()(torch.tensor([[0, 1, 0]]))
    assert torch.equal(out[0, 0], torch.zeros(32)) and out[0, 1].abs().sum() > 0


def test_tied_scope_refused_for_untied_model(tiny_model):
    model = tiny_model("llama", tied=False)
    with pytest.raises(EmbcompressError, match="use --scope input"):
        compress_model(model, make_config("svd", rank=4), scope="tied")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("scope", ["head", "both"])
def test_untied_head_scopes_round_trip(tiny_model, tmp_path, arch, method, scope):
    import transformers as tf

    model = tiny_model(arch, tied=False)
    dense_input = model.get_input_embeddings().weight.detach().clone()
    head_config = make_config("int", bits=3, group_size=16) if scope == "both" else None
    info = compress_model(model, make_config(method, **CONFIGS[method]), scope=scope, head_config=head_config)
    head = model.get_output_embeddings()
    assert isinstance(head, CompressedHead) and not head.shared
    assert head.embedding.method == ("int" if scope == "both" else make_config(method).method)
    # the head's logits are h @ Ŵᵀ of its own compressed matrix, at decode and at prefill sizes
    for h in (torch.randn(1, 1, 32), torch.randn(2, 20, 32)):
        assert torch.allclose(head(h), h @ head.embedding.reconstruct().T, atol=1e-5)
    emb = model.get_input_embeddings()
    if scope == "head":
        assert isinstance(emb, nn.Embedding) and torch.equal(emb.weight, dense_input)
    else:
        assert isinstance(emb, CompressedEmbedding) and emb is not head.embedding
    assert 0 < info["after"]["head_bytes"] < info["before"]["head_bytes"] == 97 * 32 * 4
    ids = torch.randint(1, 97, (2, 7))
    expected = _logits(model, ids)
    out = save_compressed(model, tmp_path / "c")
    meta = json.loads((out / "embcompress.json").read_text())
    assert meta["scope"] == scope and len(meta["sentinels"]) == (2 if scope == "both" else 1)
    assert torch.equal(_logits(load_compressed(out), ids), expected)
    assert torch.equal(_logits(tf.AutoModelForCausalLM.from_pretrained(out), ids), expected)


def test_both_scope_unties_a_tied_model(tiny_model, tmp_path):
    model = tiny_model("llama", tied=True)
    info = compress_model(model, make_config("svd", rank=8), scope="both",
                          head_config=make_config("int", bits=4, group_size=16))
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert emb.method == "svd" and head.embedding.method == "int" and not model.config.tie_word_embeddings
    assert info["was_tied"] and info["before"]["head_bytes"] == 0 and info["head"]["method"] == "int"
    ids = torch.randint(1, 97, (2, 7))
    assert torch.equal(_logits(load_compressed(save_compressed(model, tmp_path / "c")), ids), _logits(model, ids))


def test_head_scopes_refused_where_there_is_no_separate_head(tiny_model):
    from conftest import bert_encoder

    with pytest.raises(EmbcompressError, match="use --scope tied"):
        compress_model(tiny_model("llama", tied=True), make_config("svd", rank=4), scope="head")
    encoder, _ = bert_encoder([f"t{i}" for i in range(50)])
    for scope in ("head", "both"):
        with pytest.raises(EmbcompressError, match="needs a model with an output head"):
            compress_model(encoder, make_config("svd", rank=4), scope=scope)
    with pytest.raises(EmbcompressError, match="needs scope 'both'"):
        compress_model(tiny_model("llama", tied=False), make_config("svd", rank=4), scope="head",
                       head_config=make_config("int"))


def test_model_without_input_embedding_is_refused():
    with pytest.raises(EmbcompressError, match="no token-embedding module"):
        compress_model(nn.Linear(3, 3), make_config("svd", rank=2))


def test_unknown_scope_and_double_compression_refused(tiny_model):
    model = tiny_model("gpt2")
    with pytest.raises(EmbcompressError, match="unknown scope"):
        compress_model(model, make_config("svd", rank=2), scope="all")
    compress_model(model, make_config("svd", rank=2))
    with pytest.raises(EmbcompressError, match="already compressed"):
        compress_model(model, make_config("svd", rank=2))


def test_existing_output_folder_refused_unless_overwrite(tiny_model, tmp_path):
    model = tiny_model("gpt2")
    compress_model(model, make_config("svd", rank=4))
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(EmbcompressError, match="--overwrite"):
        save_compressed(model, out)
    # --overwrite replaces only a previous embcompress output, never a user's folder
    with pytest.raises(EmbcompressError, match="only replaces embcompress outputs"):
        save_compressed(model, out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    save_compressed(model, tmp_path / "d")
    (tmp_path / "d" / "stale.txt").write_text("old output")
    save_compressed(model, tmp_path / "d", overwrite=True)
    assert (tmp_path / "d" / "embcompress.json").exists() and not (tmp_path / "d" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]  # no temporary folders left


def test_failed_save_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    model = tiny_model("gpt2")
    compress_model(model, make_config("svd", rank=4))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(EmbcompressError, match="disk full|cannot finish"):
        save_compressed(model, tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_corrupt_save_is_refused(tiny_model, tmp_path, damage):
    model = tiny_model("gpt2")
    compress_model(model, make_config("svd", rank=4))
    out = save_compressed(model, tmp_path / "c")
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        weights.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    else:
        (out / "embcompress.json").write_text("{not json")
    with pytest.raises(EmbcompressError, match="checksum|corrupt"):
        load_compressed(out)


def test_loading_a_plain_folder_is_refused(tmp_path):
    with pytest.raises(EmbcompressError, match="not an embcompress folder"):
        load_compressed(tmp_path)


def test_folder_of_the_previous_format_still_loads():
    """tests/data/v1-int4-tied-llama was written by embcompress 61c8871 (format 1: no quantization_config,
    checksum of the weights only); its logits were saved beside it."""
    from pathlib import Path

    data = Path(__file__).parent / "data"
    model = load_compressed(data / "v1-int4-tied-llama")
    expected = torch.load(data / "v1-int4-tied-llama.logits.pt")
    with torch.no_grad():
        got = model(input_ids=torch.arange(3, 13).unsqueeze(0)).logits
    # the tied head now computes logits from the codes (fused), summing in another order than the decoded
    # matrix product the logits were saved with: equal to float rounding, the codes themselves unchanged
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
