"""Compressed folders load with plain transformers (after ``import embcompress``) exactly as with
``load_compressed``, and never load wrong without it."""

import json
import subprocess
import sys

import pytest
import torch
import transformers as tf

import embcompress  # noqa: F401  (registers the quantizer)
from embcompress import compress_model, load_compressed, make_config, save_compressed

VOCAB = 4096  # PQ, mixed and tiered-pq pay 256-centroid codebooks: they need a few thousand rows
# one case per method family: (method, options)
METHOD_CASES = {
    "svd": dict(rank=8),
    "autoencoder-fast": dict(rank=8, epochs=1, progress=False),
    "int": dict(bits=4, group_size=16),
    "gguf": dict(qtype="Q8_0"),
    "pq": dict(sub_dim=4, iterations=2),
    "tiered-pq": dict(ratio=4, tiers="8:32,4:32,3:32,pq4,pq8,0"),  # the preset less 3:64 (rows of 32)
    "mixed": dict(ratio=3),
    "hybrid": dict(rank=4, bits=2),
}
AUTO = {"gpt2": tf.AutoModelForCausalLM, "llama": tf.AutoModelForCausalLM, "gemma3": tf.AutoModelForCausalLM,
        "bert": tf.AutoModelForMaskedLM}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("arch", sorted(AUTO))
@pytest.mark.parametrize("method", sorted(METHOD_CASES))
@pytest.mark.parametrize("scope", ["input", "tied"])
def test_from_pretrained_equals_load_compressed(tiny_model, tmp_path, arch, method, scope):
    model = tiny_model(arch, vocab=VOCAB)
    compress_model(model, make_config(method, **METHOD_CASES[method]), scope=scope)
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    expected = _logits(model, ids)
    out = save_compressed(model, tmp_path / "c")
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "embcompress" and config["scope"] == scope

    loaded = AUTO[arch].from_pretrained(out)
    assert type(loaded.get_input_embeddings()) is type(model.get_input_embeddings())
    # never a dense V×d tensor in the input embedding (int4 codes are V×d/2 bytes)
    assert all(t.numel() * t.element_size() < VOCAB * 32 * 4 for t in loaded.get_input_embeddings().state_dict().values())
    assert torch.equal(_logits(loaded, ids), expected)
    assert torch.equal(_logits(load_compressed(out), ids), expected)
    # a loaded model's own save_pretrained writes a folder that loads back identically
    loaded.save_pretrained(tmp_path / "again")
    assert torch.equal(_logits(AUTO[arch].from_pretrained(tmp_path / "again"), ids), expected)


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_untied_head_of_every_method_family_loads_right(tiny_model, tmp_path, method):
    model = tiny_model("llama", tied=False, vocab=VOCAB)
    # the method under test in the head; the input embedding in int4 beside it
    compress_model(model, make_config("int", bits=4, group_size=16), scope="both",
                   head_config=make_config(method, **METHOD_CASES[method]))
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    expected = _logits(model, ids)
    out = save_compressed(model, tmp_path / "c")
    loaded = tf.AutoModelForCausalLM.from_pretrained(out)
    assert type(loaded.get_output_embeddings().embedding) is type(model.get_output_embeddings().embedding)
    assert torch.equal(_logits(loaded, ids), expected)
    assert torch.equal(_logits(load_compressed(out), ids), expected)
    loaded.save_pretrained(tmp_path / "again")
    assert torch.equal(_logits(tf.AutoModelForCausalLM.from_pretrained(tmp_path / "again"), ids), expected)


def test_auto_model_and_requested_dtype(tiny_model, tmp_path):
    model = tiny_model("llama", vocab=VOCAB)
    compress_model(model, make_config("int", bits=4, group_size=16), scope="tied")
    out = save_compressed(model, tmp_path / "c")
    base = tf.AutoModel.from_pretrained(out)  # the bare decoder, no head
    assert type(base.get_input_embeddings()).__name__ == "IntEmbedding"
    half = tf.AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    emb = half.get_input_embeddings()
    assert half.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert emb.packed.dtype == torch.uint8 and emb.scales.dtype == torch.float16  # stored codes are kept exact


def test_compressed_model_saved_with_transformers_save_pretrained_loads_right(tiny_model, tmp_path):
    model = tiny_model("gemma3", vocab=VOCAB)
    compress_model(model, make_config("svd", rank=4), scope="tied")
    ids = torch.randint(3, VOCAB, (1, 6))
    model.save_pretrained(tmp_path / "hf")  # transformers' own verb, no embcompress.json
    assert torch.equal(_logits(tf.AutoModelForCausalLM.from_pretrained(tmp_path / "hf"), ids), _logits(model, ids))


@pytest.mark.parametrize("scope", ["input", "head"])
def test_plain_transformers_refuses_without_the_import(tiny_model, tmp_path, scope):
    model = tiny_model("llama", tied=scope == "input", vocab=VOCAB)
    compress_model(model, make_config("svd", rank=4), scope=scope)
    out = save_compressed(model, tmp_path / "c")
    code = (f"import transformers\ntransformers.AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
            "print('LOADED')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "LOADED" not in run.stdout
    assert "embcompress" in run.stderr  # transformers names the unknown quant_method
    assert "size mismatch" in run.stderr.lower() or "ignore_mismatched_sizes" in run.stderr


def test_pipeline_generation_equals_load_compressed(tiny_lm_dir, tmp_path):
    from embcompress.models import load_model

    model, tok = load_model(str(tiny_lm_dir), device="cpu")
    compress_model(model, make_config("tiered-pq", ratio=4, tiers="4:32,2:32,0"), scope="tied")
    out = save_compressed(model, tmp_path / "c", tokenizer=tok)
    pipe = tf.pipeline("text-generation", model=str(out), device="cpu")
    text = pipe("hello world", max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
    ref = load_compressed(out)
    ids = tok("hello world", return_tensors="pt").input_ids
    gen = ref.generate(ids, max_new_tokens=12, do_sample=False)
    assert text == tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
    assert len(gen[0]) > ids.shape[1]


def test_tampered_quantization_config_is_refused(tiny_model, tmp_path):
    model = tiny_model("llama", vocab=VOCAB)
    compress_model(model, make_config("svd", rank=4))
    out = save_compressed(model, tmp_path / "c")
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"]["scope"] = "evil"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(embcompress.EmbcompressError, match="scope 'evil'"):
        tf.AutoModelForCausalLM.from_pretrained(out)
    with pytest.raises(embcompress.EmbcompressError, match="checksum"):
        load_compressed(out)


def test_from_pretrained_refuses_damaged_weights_of_an_embcompress_folder(tiny_model, tmp_path):
    model = tiny_model("llama", vocab=VOCAB)
    compress_model(model, make_config("int", bits=4, group_size=16))
    out = save_compressed(model, tmp_path / "c")
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x40  # one bit of a stored value: the file still parses, its logits would differ
    weights.write_bytes(bytes(data))
    with pytest.raises(embcompress.EmbcompressError, match="model.safetensors does not match its recorded checksum"):
        tf.AutoModelForCausalLM.from_pretrained(out)


def test_gguf_file_as_input_and_generate(capsys, tmp_path, monkeypatch):
    from conftest import write_tiny_gguf
    from test_cli import ok

    monkeypatch.setenv("EMBCOMPRESS_CACHE", str(tmp_path / "cache"))
    gguf_file = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_file)
    capsys.readouterr()
    from embcompress import cli

    cli.main(list(map(str, ["compress", gguf_file, "-m", "int", "-o", "bits=4", "-o", "group_size=16",
                            "--scope", "tied", "--out", tmp_path / "c"])))
    assert "converting it once" in capsys.readouterr().err
    ok(capsys, "compress", gguf_file, "-m", "svd", "--rank", "4", "--out", tmp_path / "d")
    assert "converting" not in capsys.readouterr().err  # converted once, then reused
    text = ok(capsys, "generate", tmp_path / "c", "abc ab", "--max-new-tokens", "6")
    model, tok = load_compressed(tmp_path / "c"), tf.AutoTokenizer.from_pretrained(tmp_path / "c")
    ids = tok("abc ab", return_tensors="pt").input_ids
    expected = tok.decode(model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1]:],
                          skip_special_tokens=True)
    assert text.strip() == ("abc ab" + expected).strip()
    both = ok(capsys, "generate", tmp_path / "c", "abc", "--compare", gguf_file, "--max-new-tokens", "4")
    assert both.count("== ") == 2
    sampled = [ok(capsys, "generate", gguf_file, "abc", "--sample", "--seed", "3") for _ in range(2)]
    assert sampled[0] == sampled[1]  # same seed, same text


def test_info_verifies_checksums(capsys, tiny_lm_dir, tmp_path):
    from test_cli import ok, run

    ok(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4", "--out", tmp_path / "c")
    assert "checksums: all" in ok(capsys, "info", tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = run(capsys, "info", tmp_path / "c")
    assert code == 2 and "does not match its recorded checksum" in err
    assert "not verified" in ok(capsys, "info", tmp_path / "c", "--no-verify")
