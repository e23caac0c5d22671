import numpy as np
import pytest
import torch
from conftest import bert_encoder

from embcompress import EmbcompressError, compress_model, make_config
from embcompress.evaluate.glue import (
    GlueSettings,
    apply_embedding_policy,
    get_task,
    glue_metrics,
    read_split,
    run_glue,
)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "good bad movie film great awful plot the a is was".split()


@pytest.fixture
def glue_dir(tmp_path):
    base = tmp_path / "data" / "glue"
    (base / "SST-2").mkdir(parents=True)
    (base / "RTE").mkdir()
    (base / "STS-B").mkdir()
    rows = ["good movie", "bad film", "great plot", "awful movie", "the film was good", "the plot is bad"]
    labels = [1, 0, 1, 0, 1, 0]
    sst = "sentence\tlabel\n" + "".join(f"{s} \t{l}\n" for s, l in zip(rows * 4, labels * 4))
    (base / "SST-2" / "train.tsv").write_text(sst)
    (base / "SST-2" / "dev.tsv").write_text(sst)
    rte = "sentence1\tsentence2\tlabel\tidx\n" + "".join(f'"{s}"\t"{s}"\t{l}\t{i}\n' for i, (s, l) in enumerate(zip(rows, labels)))
    (base / "RTE" / "train.tsv").write_text(rte)
    (base / "RTE" / "dev.tsv").write_text(rte)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    (base / "STS-B" / "train.tsv").write_text(head + "".join(f"{i}\tg\tf\ty\to\ts\ts\t{s}\t{s}\t{l * 5}.0\n" for i, (s, l) in enumerate(zip(rows, labels))))
    (base / "STS-B" / "dev.tsv").write_text((base / "STS-B" / "train.tsv").read_text())
    return tmp_path / "data"


@pytest.fixture
def tiny_encoder():
    return bert_encoder(VOCAB)


def test_metrics_against_hand_computed_values():
    cola = glue_metrics(get_task("cola"), np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    # TP=1, FP=1, TN=2, FN=0: MCC = (1·2 − 1·0) / sqrt(2·1·3·2) = 2/sqrt(12)
    assert cola["matthews"] == pytest.approx(100 * 2 / 12**0.5)
    mrpc = glue_metrics(get_task("mrpc"), np.array([1, 1, 0, 1]), np.array([1, 0, 0, 1]))
    assert mrpc["accuracy"] == 75.0 and mrpc["f1"] == pytest.approx(100 * 0.8)
    sts = glue_metrics(get_task("stsb"), np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
    assert sts["spearman"] == pytest.approx(50.0) and sts["pearson"] == pytest.approx(50.0)


def test_reading_real_layouts_and_bad_headers(glue_dir, tmp_path):
    x, y = read_split(get_task("rte"), "train", str(glue_dir))
    assert x[0] == ("good movie", "good movie") and y[:2] == [1, 0]
    x, y = read_split(get_task("stsb"), "dev", str(glue_dir))
    assert y[0] == 5.0 and x[1] == ("bad film", "bad film")
    (glue_dir / "glue" / "SST-2" / "dev.tsv").write_text("text\tgold\nx\t1\n")
    with pytest.raises(EmbcompressError, match=r"SST-2/dev.tsv has header \['text', 'gold'\]; expected \['sentence', 'label'\]"):
        read_split(get_task("sst2"), "dev", str(glue_dir))
    with pytest.raises(EmbcompressError, match="MRPC/train.tsv not found"):
        read_split(get_task("mrpc"), "train", str(glue_dir))
    with pytest.raises(EmbcompressError, match="choose one of: cola, sst2, mrpc, stsb, rte"):
        get_task("qnli")


def test_fine_tuning_learns_sst2_end_to_end(glue_dir, tiny_encoder):
    model, tok = tiny_encoder
    res = run_glue(model, tok, "sst2", GlueSettings(lr=3e-3, batch_size=8, epochs=40, progress=False), str(glue_dir))
    assert res["accuracy"] == 100.0 and res["train_examples"] == 24


def test_fine_tuning_runs_on_compressed_encoder_for_pairs_and_regression(glue_dir, tiny_encoder):
    model, tok = tiny_encoder
    compress_model(model, make_config("svd", rank=4))
    codes_before = model.get_input_embeddings().codes.detach().clone()
    res = run_glue(model, tok, "rte", GlueSettings(batch_size=4, epochs=1, progress=False), str(glue_dir))
    assert 0 <= res["accuracy"] <= 100 and res["dev_examples"] == 6
    assert torch.equal(model.get_input_embeddings().codes, codes_before)  # frozen by default
    res = run_glue(model, tok, "stsb", GlueSettings(batch_size=4, epochs=1, progress=False), str(glue_dir))
    assert -100 <= res["spearman"] <= 100


def test_embedding_policies(tiny_encoder):
    model, _ = tiny_encoder
    compress_model(model, make_config("autoencoder", rank=4, epochs=1, progress=False))
    emb = model.get_input_embeddings()
    trainable = lambda: sorted(n for n, p in emb.named_parameters() if p.requires_grad)
    apply_embedding_policy(model, "frozen")
    assert trainable() == []
    apply_embedding_policy(model, "paper")
    assert trainable() == ["decoder.bias", "decoder.weight"]
    apply_embedding_policy(model, "all")
    assert trainable() == ["codes", "decoder.bias", "decoder.weight"]
    with pytest.raises(EmbcompressError, match="unknown embedding policy"):
        apply_embedding_policy(model, "some")


def test_pair_task_needs_a_separator(glue_dir, tiny_encoder):
    model, tok = tiny_encoder
    tok.sep_token = None
    with pytest.raises(EmbcompressError, match="no separator token"):
        run_glue(model, tok, "rte", GlueSettings(progress=False), str(glue_dir))
