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
    res = run_glue(model, tok, "sst2", GlueSettings(lr=3e-3, seeds=1, batch_size=8, epochs=40, progress=False),
                   str(glue_dir))
    assert res["accuracy"] == 100.0 and res["train_examples"] == 24


def test_fine_tuning_runs_on_compressed_encoder_for_pairs_and_regression(glue_dir, tiny_encoder):
    model, tok = tiny_encoder
    compress_model(model, make_config("svd", rank=4))
    codes_before = model.get_input_embeddings().codes.detach().clone()
    res = run_glue(model, tok, "rte", GlueSettings(lr=1e-4, seeds=1, batch_size=4, epochs=1, progress=False),
                   str(glue_dir))
    assert 0 <= res["accuracy"] <= 100 and res["dev_examples"] == 6
    assert torch.equal(model.get_input_embeddings().codes, codes_before)  # every run trains a copy, never the model
    res = run_glue(model, tok, "stsb", GlueSettings(lr=1e-4, seeds=1, batch_size=4, epochs=1, progress=False),
                   str(glue_dir))
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


def test_protocol_chooses_the_learning_rate_on_held_out_training_data_and_reports_seed_spread():
    from torch import nn

    from embcompress.evaluate.finetune import run_protocol

    base = nn.Linear(2, 2)
    before = base.weight.detach().clone()
    calls = []
    held_out_score = {2e-5: 50.0, 5e-5: 70.0, 1e-4: 60.0}

    def train_and_score(body, train, evaluate_on, s):
        body.weight.data.add_(1.0)  # "training" a copy must never reach base
        calls.append((tuple(train), evaluate_on, s.lr, s.seed))
        if evaluate_on is not None:
            return {"value": held_out_score[s.lr]}
        return {"value": 80.0 + (s.seed - 22), "accuracy": 1.0 * s.seed}

    out = run_protocol(base, GlueSettings(progress=False), list(range(10)), lambda items: (items[3:], items[:3]),
                       train_and_score)
    assert torch.equal(base.weight, before)
    search = [c for c in calls if c[1] is not None]
    assert [c[2] for c in search] == [2e-5, 5e-5, 1e-4] and all(c[0] == tuple(range(3, 10)) for c in search)
    assert all(c[1] == [0, 1, 2] for c in search)  # chosen on held-out training items, never on dev (None)
    final = [c for c in calls if c[1] is None]
    assert [c[2:] for c in final] == [(5e-5, 22), (5e-5, 23), (5e-5, 24)] and all(c[0] == tuple(range(10)) for c in final)
    assert out["lr"] == 5e-5 and out["lr_search"] == {"2e-05": 50.0, "5e-05": 70.0, "0.0001": 60.0}
    assert out["per_seed"] == [80.0, 81.0, 82.0] and out["value"] == 81.0 and out["std"] == 1.0
    assert out["accuracy"] == 23.0 and out["seeds"] == [22, 23, 24]
    given = run_protocol(base, GlueSettings(lr=1e-3, seeds=1, progress=False), list(range(4)), None, train_and_score)
    assert given["lr"] == 1e-3 and "lr_search" not in given and given["std"] == 0.0
    calls.clear()
    chosen = run_protocol(base, GlueSettings(seeds=0, progress=False), list(range(10)), lambda i: (i[3:], i[:3]),
                          train_and_score)
    assert chosen["lr"] == 5e-5 and chosen["value"] == 70.0 and all(c[1] is not None for c in calls)


def test_glue_protocol_end_to_end_is_deterministic_per_seed(glue_dir, tiny_encoder):
    model, tok = tiny_encoder
    settings = GlueSettings(seeds=2, batch_size=8, epochs=2, lr_grid=(1e-4, 3e-3), progress=False)
    first = run_glue(model, tok, "sst2", settings, str(glue_dir))
    again = run_glue(model, tok, "sst2", settings, str(glue_dir))
    assert set(first["lr_search"]) == {"0.0001", "0.003"} and first["lr"] in (1e-4, 3e-3)
    assert len(first["per_seed"]) == 2 and first["per_seed"] == again["per_seed"]
    with pytest.raises(EmbcompressError, match="seeds must be ≥ 0"):
        GlueSettings(seeds=-1)
    with pytest.raises(EmbcompressError, match="leave lr unset"):
        GlueSettings(seeds=0, lr=1e-4)
