"""Streaming compress: the folder it writes from safetensors shards equals the in-memory path's, and bad
shards are refused in one line with nothing written."""

import json

import pytest
import torch
import transformers as tf

from embcompress import EmbcompressError, compress_model, load_compressed, make_config, save_compressed
from embcompress.serialization import read_safetensors, read_safetensors_header
from embcompress.streaming import stream_compress

VOCAB = 500


def _sharded(folder, tied: bool, dtype=torch.float32):
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, num_key_value_heads=2, tie_word_embeddings=tied,
                         max_position_embeddings=64)
    tf.LlamaForCausalLM(cfg).to(dtype).save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("tied,scope", [(True, "input"), (True, "tied"), (True, "both"), (False, "input"),
                                        (False, "head"), (False, "both")])
def test_streamed_folder_equals_the_in_memory_one(tmp_path, tied, scope):
    src = _sharded(tmp_path / "src", tied)
    config = make_config("int", bits=4, group_size=16)
    head_config = make_config("svd", rank=8) if scope == "both" else None
    info = stream_compress(src, tmp_path / "streamed", config, scope=scope, head_config=head_config)
    reference = tf.LlamaForCausalLM.from_pretrained(src).eval()
    expected_info = compress_model(reference, config, scope=scope, head_config=head_config)
    save_compressed(reference, tmp_path / "in-memory")
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    expected = _logits(reference, ids)
    assert torch.equal(_logits(load_compressed(tmp_path / "streamed"), ids), expected)
    assert torch.equal(_logits(tf.AutoModelForCausalLM.from_pretrained(tmp_path / "streamed"), ids), expected)
    assert info["before"] == expected_info["before"] and info["after"] == expected_info["after"]
    # same tensors, same bytes as the in-memory folder
    streamed, start_s = read_safetensors_header(tmp_path / "streamed" / "model.safetensors")
    in_memory, start_m = read_safetensors_header(tmp_path / "in-memory" / "model.safetensors")
    assert streamed.keys() == in_memory.keys()
    a = read_safetensors(tmp_path / "streamed" / "model.safetensors", streamed, start_s)
    b = read_safetensors(tmp_path / "in-memory" / "model.safetensors", in_memory, start_m)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_bf16_model_keeps_its_body_in_bf16(tmp_path):
    src = _sharded(tmp_path / "src", tied=True, dtype=torch.bfloat16)
    info = stream_compress(src, tmp_path / "out", make_config("int", bits=4, group_size=16))
    model = load_compressed(tmp_path / "out")
    assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    source = tf.LlamaForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    assert torch.equal(model.model.layers[1].mlp.up_proj.weight, source.model.layers[1].mlp.up_proj.weight)
    assert info["before"]["model_bytes"] == sum(p.stat().st_size for p in src.glob("*.safetensors")) - sum(
        8 + int.from_bytes(p.read_bytes()[:8], "little") for p in src.glob("*.safetensors"))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"


def _break_missing_shard(src):
    next(src.glob("model-00002-*.safetensors")).unlink()


def _break_index_names_missing_tensor(src):
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = next(iter(index["weight_map"].values()))
    (src / "model.safetensors.index.json").write_text(json.dumps(index))


def _break_mixed_dtype(src):
    from safetensors.torch import load_file, save_file

    shard = next(src.glob("model-00003-*.safetensors"))
    save_file({k: v.half() for k, v in load_file(shard).items()}, str(shard), metadata={"format": "pt"})


@pytest.mark.parametrize("damage,message", [
    (_break_missing_shard, "is missing"),
    (_break_index_names_missing_tensor, "which does not hold it"),
    (_break_mixed_dtype, "mix floating dtypes"),
])
def test_bad_shards_are_refused_and_nothing_is_written(tmp_path, damage, message):
    src = _sharded(tmp_path / "src", tied=True)
    damage(src)
    with pytest.raises(EmbcompressError, match=message):
        stream_compress(src, tmp_path / "out", make_config("int", bits=4, group_size=16))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_cli_stream_and_its_refusals(capsys, tmp_path):
    from conftest import char_tokenizer
    from test_cli import ok, run

    src = _sharded(tmp_path / "src", tied=True)
    char_tokenizer(bos=True).save_pretrained(src)
    out = ok(capsys, "compress", src, "--stream", "-m", "tiered-pq", "-o", "ratio=4", "-o", "tiers=8:16,4:16,0",
             "--out", tmp_path / "c")
    assert "input embedding: tiered-pq (tiered)" in out and "saved to" in out
    assert "checksums: all" in ok(capsys, "info", tmp_path / "c")
    calib = tmp_path / "calib.txt"
    calib.write_text("a calibration text about rivers and mountains. " * 30)
    code, _, err = run(capsys, "compress", src, "--stream", "-m", "int", "--calibration", calib, "--distill",
                       "--out", tmp_path / "d")
    assert code == 2 and "drop --stream" in err and not (tmp_path / "d").exists()
    (tmp_path / "plain").mkdir()
    code, _, err = run(capsys, "compress", tmp_path / "plain", "--stream", "-m", "int", "--out", tmp_path / "d")
    assert code == 2 and "--stream reads safetensors" in err


SPLIT = '{"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", ' \
        '"model.norm": "cpu", "lm_head": "cpu"}'


def test_device_map_auto_and_a_split_map_give_the_same_perplexity(capsys, tiny_lm_dir, data_dir, tmp_path):
    from test_cli import ok, run

    base = ["eval", "perplexity", "--data-dir", data_dir, "--json", "--no-reference"]
    plain = json.loads(ok(capsys, *base, tiny_lm_dir))["value"]
    assert json.loads(ok(capsys, *base, tiny_lm_dir, "--device-map", "auto"))["value"] == plain
    # layer 1 offloaded to disk: accelerate streams it in for each forward; same numbers
    assert json.loads(ok(capsys, *base, tiny_lm_dir, "--device-map", SPLIT))["value"] == pytest.approx(plain, rel=1e-6)
    ok(capsys, "compress", tiny_lm_dir, "-m", "int", "-o", "bits=4", "--scope", "tied", "--device-map", "auto",
       "--out", tmp_path / "c")
    compressed = json.loads(ok(capsys, *base, tmp_path / "c"))["value"]
    assert json.loads(ok(capsys, *base, tmp_path / "c", "--device-map", SPLIT))["value"] == pytest.approx(compressed, rel=1e-6)
    code, _, err = run(capsys, *base, tiny_lm_dir, "--device-map", "{bad")
    assert code == 2 and "is not auto, balanced" in err
    code, _, err = run(capsys, "compress", tiny_lm_dir, "-m", "int", "--device-map", SPLIT, "--out", tmp_path / "d")
    assert code == 2 and "use --stream" in err
