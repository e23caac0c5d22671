import pytest
import torch
import transformers as tf


def _tiny(kind: str, tied: bool = True):
    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    if kind == "gpt2":
        cfg = tf.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=64, tie_word_embeddings=tied,
                             bos_token_id=1, eos_token_id=2)
        return tf.GPT2LMHeadModel(cfg)
    if kind == "llama":
        cfg = tf.LlamaConfig(**common, intermediate_size=64, num_key_value_heads=2, tie_word_embeddings=tied,
                             max_position_embeddings=64)
        return tf.LlamaForCausalLM(cfg)
    if kind == "gemma3":
        cfg = tf.Gemma3TextConfig(**common, intermediate_size=64, num_key_value_heads=2, head_dim=8,
                                  tie_word_embeddings=tied, max_position_embeddings=64, sliding_window=16,
                                  pad_token_id=0)
        return tf.Gemma3ForCausalLM(cfg)
    if kind == "bert":
        cfg = tf.BertConfig(**common, intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
        return tf.BertForMaskedLM(cfg)
    raise ValueError(kind)


@pytest.fixture
def tiny_model():
    def make(kind: str, tied: bool = True):
        return _tiny(kind, tied).eval()

    return make


def low_rank_matrix(rows=200, dim=24, rank=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, rank, generator=g) @ torch.randn(rank, dim, generator=g)
