"""Round trip on a tiny random Llama: compress with every method, save, load, compare logits, sizes.

Run: .venv/bin/python scripts/roundtrip_demo.py
"""

import tempfile

import torch
import transformers as tf

from embcompress import compress_model, load_compressed, make_config, save_compressed

CONFIGS = {
    "svd": dict(ratio=5),
    "autoencoder-fast": dict(ratio=5, progress=False),
    "int": dict(bits=4),
    "pq": dict(sub_dim=4),
    "tiered": dict(ratio=8),
    "mixed": dict(ratio=4),
}


def tiny_llama():
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return tf.LlamaForCausalLM(cfg).eval()


def main():
    ids = torch.randint(0, 4096, (2, 16))
    print(f"{'method':17s} {'scope':6s} {'embedding bytes before → after':>34s} {'model bytes before → after':>30s}  logits equal after load")
    for name, opts in CONFIGS.items():
        for scope in ("input", "tied"):
            model = tiny_llama()
            info = compress_model(model, make_config(name, **opts), scope=scope)
            with torch.no_grad():
                expected = model(input_ids=ids).logits
            with tempfile.TemporaryDirectory() as tmp:
                loaded = load_compressed(save_compressed(model, f"{tmp}/out"))
                with torch.no_grad():
                    same = torch.equal(loaded(input_ids=ids).logits, expected)
            b, a = info["before"], info["after"]
            print(f"{name:17s} {scope:6s} {b['embedding_bytes']:>14,} → {a['embedding_bytes']:>9,} ({b['embedding_bytes'] / a['embedding_bytes']:4.1f}×) "
                  f"{b['model_bytes']:>12,} → {a['model_bytes']:>12,}  {same}")


if __name__ == "__main__":
    main()
