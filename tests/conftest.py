import numpy as np
import pytest
import torch
import transformers as tf


def _tiny(kind: str, tied: bool = True, vocab: int = 97):
    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    if kind == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64, tie_word_embeddings=tied,
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


def bert_encoder(vocab: list[str]):
    """A tiny random BertModel and a WordPiece tokenizer over ``vocab`` (special tokens first)."""
    torch.manual_seed(0)
    tok = tf.BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    cfg = tf.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return tf.BertModel(cfg).eval(), tok


@pytest.fixture
def tiny_model():
    def make(kind: str, tied: bool = True, vocab: int = 97):
        return _tiny(kind, tied, vocab).eval()

    return make


def low_rank_matrix(rows=200, dim=24, rank=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, rank, generator=g) @ torch.randn(rank, dim, generator=g)


def char_tokenizer(bos: bool = False):
    """A real fast tokenizer (one token per character) so CLI paths run end to end on tiny models."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture
def tiny_lm_dir(tmp_path):
    """A tiny Llama with a character tokenizer saved as a normal transformers folder."""
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    folder = tmp_path / "tiny-llama"
    tf.LlamaForCausalLM(cfg).save_pretrained(folder)
    char_tokenizer(bos=True).save_pretrained(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    (folder / "wikitext").mkdir(parents=True)
    text = " = Title = \n\n The quick brown fox jumps over the lazy dog . It was 1 @,@ 000 m long .\n" * 8
    (folder / "wikitext" / "wiki.test.raw").write_text(text)
    return folder


def write_tiny_gguf(path, vocab_chars="abcdefghijklmnopqrstuvwxyz ", hidden=32, layers=2, heads=4, kv=2, ff=64, seed=0):
    """A tiny Llama GGUF written with the gguf package (byte-level BPE over single characters)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens = ["<s>", "</s>"] + [("Ġ" if c == " " else c) for c in vocab_chars]
    V = len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers); w.add_context_length(64); w.add_embedding_length(hidden)
    w.add_feed_forward_length(ff); w.add_head_count(heads); w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5); w.add_rope_freq_base(10000.0); w.add_vocab_size(V)
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("default")
    w.add_token_list(tokens); w.add_token_types([3, 3] + [1] * (V - 2)); w.add_token_scores([0.0] * V)
    w.add_bos_token_id(0); w.add_eos_token_id(1)
    t = lambda *s: (rng.standard_normal(s) * 0.05).astype(np.float32)
    w.add_tensor("token_embd.weight", t(V, hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    hd = hidden // heads
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(p + "attn_q.weight", t(hidden, hidden)); w.add_tensor(p + "attn_k.weight", t(kv * hd, hidden))
        w.add_tensor(p + "attn_v.weight", t(kv * hd, hidden)); w.add_tensor(p + "attn_output.weight", t(hidden, hidden))
        w.add_tensor(p + "ffn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(p + "ffn_gate.weight", t(ff, hidden)); w.add_tensor(p + "ffn_up.weight", t(ff, hidden))
        w.add_tensor(p + "ffn_down.weight", t(hidden, ff))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
