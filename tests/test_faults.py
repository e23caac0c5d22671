"""Faults and hostile input (issue 16): one test per case, each failing without its fix."""

import errno
import json
import os
import random
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from embcompress import EmbcompressError, compress_model, load_compressed, make_config, save_compressed
from embcompress.serialization import PARTIAL_MARKER, _meta_digest, sha256_file
from test_cli import ok, run


def _saved(tiny_model, tmp_path, name="c", scope="input"):
    model = tiny_model("llama")
    compress_model(model, make_config("svd", rank=4), scope=scope)
    return model, save_compressed(model, tmp_path / name)


def _rewrite_meta(folder, change):
    """Edit embcompress.json the way an adversary would: consistently, checksums recomputed."""
    meta = json.loads((folder / "embcompress.json").read_text())
    change(meta)
    if not isinstance(meta, dict):
        return
    for name in list(meta["sha256"]) if isinstance(meta.get("sha256"), dict) else []:
        if isinstance(name, str) and (folder / name).is_file():
            meta["sha256"][name] = sha256_file(folder / name)
    meta["meta_sha256"] = _meta_digest(meta)
    (folder / "embcompress.json").write_text(json.dumps(meta))


def _one_line_error(capsys, *args):
    code, _, err = run(capsys, *args)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    if os.environ.get("EMBCOMPRESS_RELIABILITY_LOG"):  # benchmarks/reliability.sh quotes what users see
        with open(os.environ["EMBCOMPRESS_RELIABILITY_LOG"], "a") as log:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].rsplit(" ", 1)[0]
            log.write(f"{test}\t{errors[0]}\n")
    return errors[0]


# 1. a killed kernel build never blocks a later run -------------------------------------------------

def test_dead_kernel_builder_does_not_block_the_next_run(tmp_path):
    ext = tmp_path / "ext"
    old_style = ext / "embcompress_kernels"  # where cpp_extension.load left its lock when killed
    old_style.mkdir(parents=True)
    (old_style / "lock").write_text("")
    stale = ext / ".embcompress_kernels-0123456789abcdef.tmp-999999999"
    stale.mkdir()
    (stale / "lock").write_text("")
    code = "from embcompress import kernels; assert kernels._extension() is not None; print('BUILT')"
    # cpp_extension puts builds under $TORCH_EXTENSIONS_DIR/<python tag>/
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "root")}
    (tmp_path / "root").mkdir()
    root = subprocess.run([sys.executable, "-c", "from embcompress.kernels import _build_root; print(_build_root())"],
                          capture_output=True, text=True, env=env, timeout=120).stdout.strip()
    os.makedirs(root, exist_ok=True)
    for p in (old_style, stale):
        os.rename(p, os.path.join(root, p.name))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=400)
    assert "BUILT" in done.stdout, done.stderr[-2000:]
    assert not os.path.exists(os.path.join(root, stale.name))  # the dead builder's folder is gone


# 2. --overwrite replaces only what embcompress wrote -----------------------------------------------

def test_overwrite_refuses_a_user_folder_and_a_file(capsys, tiny_lm_dir, tmp_path, monkeypatch):
    import embcompress.models

    def never(*a, **k):  # refused before the model loads, not after minutes of compressing
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(embcompress.models, "load_model", never)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    err = _one_line_error(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4", "--out", precious, "--overwrite")
    assert "only replaces embcompress outputs" in err and (precious / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file.bin"
    a_file.write_bytes(b"data")
    err = _one_line_error(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4", "--out", a_file, "--overwrite")
    assert "not a folder" in err and a_file.read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# 3. the calibration guard compares content ---------------------------------------------------------

@pytest.fixture
def eval_dir(tmp_path):
    rng = random.Random(0)
    words = [f"w{rng.randrange(5000)}" for _ in range(30000)]
    folder = tmp_path / "data"
    (folder / "wikitext").mkdir(parents=True)
    (folder / "wikitext" / "wiki.test.raw").write_text(" \n".join(" ".join(words[i:i + 12]) for i in range(0, 30000, 12)))
    return folder


@pytest.mark.parametrize("variant", ["trailing-space", "bom", "prefix", "crlf"])
def test_calibration_guard_catches_near_copies(eval_dir, tmp_path, variant):
    from embcompress.calibration import calibration_text

    text = (eval_dir / "wikitext" / "wiki.test.raw").read_text()
    copy = {"trailing-space": text + " ", "bom": "\ufeff" + text, "prefix": text[: len(text) // 6],
            "crlf": text.replace("\n", "\r\n")}[variant]
    path = tmp_path / "calib.txt"
    path.write_text(copy, newline="")
    with pytest.raises(EmbcompressError, match="is the evaluation text"):
        calibration_text(str(path), str(eval_dir))


def test_calibration_guard_accepts_other_text_and_refuses_empty_or_binary(eval_dir, tmp_path):
    from embcompress.calibration import calibration_text

    other = tmp_path / "other.txt"
    other.write_text("a completely different text about cooking pasta and tomatoes " * 40)
    assert calibration_text(str(other), str(eval_dir)).startswith("a completely")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(EmbcompressError, match="is empty"):
        calibration_text(str(empty), str(eval_dir))
    binary = tmp_path / "bin.dat"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(EmbcompressError, match="not UTF-8|NUL"):
        calibration_text(str(binary), str(eval_dir))


def test_squad_contexts_share_almost_nothing_with_wikitext():
    from embcompress.calibration import shared_share
    from embcompress.data import data_file, squad_dev_articles, wikitext2_test

    if data_file("wikitext/wiki.test.raw") is None or data_file("squad/dev-v1.1.json.zip") is None:
        pytest.skip("needs ../shared/data")
    squad = "\n".join(p["context"] for a in squad_dev_articles() for p in a["paragraphs"])
    assert shared_share(squad, wikitext2_test()) < 0.02  # far below the 20 % refusal line


# 4. crafted folders: every size checked before anything is allocated ------------------------------

def _patch_header(weights, change):
    data = weights.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    change(header)
    raw = json.dumps(header).encode()
    weights.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])


CRAFTED = {
    "config-layers": lambda f: _edit_json(f / "config.json", lambda c: c.update(num_hidden_layers=1_000_000)),
    "config-positions": lambda f: _edit_json(f / "config.json", lambda c: c.update(max_position_embeddings=10**12)),
    "header-length": lambda f: f.joinpath("model.safetensors").write_bytes(
        (10**11).to_bytes(8, "little") + f.joinpath("model.safetensors").read_bytes()[8:]),
    "huge-shape": lambda f: _patch_header(f / "model.safetensors",
                                          lambda h: h["model.embed_tokens.codes"].update(shape=[10**6, 10**6])),
    "negative-shape": lambda f: _patch_header(f / "model.safetensors",
                                              lambda h: h["model.embed_tokens.codes"].update(shape=[-1, 4])),
    "huge-offsets": lambda f: _patch_header(f / "model.safetensors",
                                            lambda h: h["model.embed_tokens.codes"].update(data_offsets=[0, 2**63])),
    "list-header": lambda f: f.joinpath("model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00[]"),
    "model-class": lambda f: _rewrite_meta(f, lambda m: m.update(model_class="AutoTokenizer")),
    "scale-nan": lambda f: _rewrite_meta(f, lambda m: m["spec"].update(scale=float("nan"))),
    "scope-evil": lambda f: _rewrite_meta(f, lambda m: m.update(scope="evil")),
    "spec-rows": lambda f: _rewrite_meta(f, lambda m: m["spec"].update(num_embeddings=10**12)),
    "method": lambda f: _rewrite_meta(f, lambda m: m.update(method="os.system")),
    "meta-not-object": lambda f: f.joinpath("embcompress.json").write_text("[1, 2]"),
}


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    folder = path.parent
    if path.name != "embcompress.json":
        _rewrite_meta(folder, lambda m: None)  # an adversary recomputes the checksums too


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_folder_is_refused_in_one_line(capsys, tiny_model, tmp_path, case):
    _, folder = _saved(tiny_model, tmp_path)
    CRAFTED[case](folder)
    if case in ("header-length", "huge-shape", "negative-shape", "huge-offsets", "list-header"):
        _rewrite_meta(folder, lambda m: None)  # checksums recomputed: the header checks must catch it
    with pytest.raises(EmbcompressError):
        load_compressed(folder)
    if case in ("model-class", "scale-nan", "scope-evil", "spec-rows", "method", "meta-not-object"):
        _one_line_error(capsys, "info", folder)


def test_edited_files_fail_their_checksums(capsys, tiny_model, tmp_path):
    _, folder = _saved(tiny_model, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmbcompressError, match="config.json does not match its recorded checksum"):
        load_compressed(folder)
    assert "config.json does not match" in _one_line_error(capsys, "info", folder)
    meta = json.loads((folder / "embcompress.json").read_text())
    meta["scope"] = "tied"
    (folder / "embcompress.json").write_text(json.dumps(meta))
    with pytest.raises(EmbcompressError, match="does not match its own checksum"):
        load_compressed(folder)


FUZZ_SCRIPT = textwrap.dedent("""
    import json, random, resource, shutil, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a crafted size must fail, not eat the machine
    import torch
    sys.path.insert(0, sys.argv[2])
    from embcompress import EmbcompressError, load_compressed
    from test_faults import _patch_header, _rewrite_meta
    src, rng = Path(sys.argv[1]), random.Random(0)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = load_compressed(src)(input_ids=ids).logits
    VALUES = [-1, 0, 1, 2**63, 10**12, 1e308, float("nan"), "x", None, [], {}, [1, 2], True, "F64", [10**9, 10**9]]
    def poke(obj):
        if isinstance(obj, dict) and obj:
            key = rng.choice(sorted(obj, key=str))
            if isinstance(obj[key], (dict, list)) and obj[key] and rng.random() < 0.6:
                poke(obj[key])
            else:
                obj[key] = rng.choice(VALUES)
        elif isinstance(obj, list) and obj:
            i = rng.randrange(len(obj))
            if isinstance(obj[i], (dict, list)) and obj[i] and rng.random() < 0.6:
                poke(obj[i])
            else:
                obj[i] = rng.choice(VALUES)
    errors = same = 0
    for trial in range(int(sys.argv[3])):
        folder = Path(sys.argv[4]) / f"f{trial}"
        shutil.copytree(src, folder)
        target = rng.choice(["header", "meta", "config"])
        path = folder / {"header": "model.safetensors", "meta": "embcompress.json", "config": "config.json"}[target]
        before = path.read_bytes()
        if target == "header":
            _patch_header(path, poke)
        else:
            data = json.loads(before); original = json.dumps(data); poke(data)
            path.write_text(json.dumps(data) if json.dumps(data) != original else before.decode())
        damaged = path.read_bytes() != before  # a value may be set to what it was
        adversary = trial % 2  # recomputes every checksum, so only the structural checks stand in the way
        if adversary:
            _rewrite_meta(folder, lambda m: None)
        try:
            with torch.no_grad():
                got = load_compressed(folder)(input_ids=ids).logits
            # a consistent edit (a config value, a scale) is a different model, never a damaged load
            assert adversary or not damaged, f"trial {trial} ({target}): a damaged folder loaded"
            same += torch.equal(got, expected)
        except EmbcompressError as e:
            assert "\\n" not in str(e), str(e)
            errors += 1
        shutil.rmtree(folder)
    print(f"FUZZ errors={errors} same={same}")
""")


def test_fuzzed_folders_give_one_line_errors_under_a_memory_limit(tiny_model, tmp_path):
    _, folder = _saved(tiny_model, tmp_path)
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ_SCRIPT)
    tests_dir = os.path.dirname(__file__)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, str(script), str(folder), tests_dir, "300", str(work)],
                          capture_output=True, text=True, timeout=600)
    assert "FUZZ" in done.stdout, done.stderr[-3000:]
    errors = int(done.stdout.split("errors=")[1].split()[0])
    assert errors >= 200  # every damaged folder and most adversarial edits are refused, each in one line


# 5. no orphaned temp folders; an interrupted overwrite is recovered --------------------------------

def test_dead_writers_temp_folder_is_cleaned_on_the_next_write(tiny_model, tmp_path):
    model, _ = _saved(tiny_model, tmp_path, name="first")
    stale = tmp_path / ".c.tmp-deadbeef"
    stale.mkdir()
    (stale / PARTIAL_MARKER).write_text("999999999@" + os.uname().nodename)
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    live = tmp_path / ".c.tmp-alive000"
    live.mkdir()
    (live / PARTIAL_MARKER).write_text(f"{os.getpid()}@{os.uname().nodename}")  # a writer still running
    save_compressed(model, tmp_path / "c")
    assert not stale.exists() and live.exists()


def test_overwrite_that_cannot_put_the_new_folder_in_place_keeps_the_old(tiny_model, tmp_path, monkeypatch):
    model, out = _saved(tiny_model, tmp_path)
    before = sha256_file(out / "model.safetensors")
    real_rename = os.rename
    from pathlib import Path

    def failing_rename(self, target):
        if ".tmp-" in self.name and Path(target).name == "c":
            raise OSError(errno.EIO, "I/O error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(EmbcompressError, match="I/O error"):
        save_compressed(model, out, overwrite=True)
    monkeypatch.undo()
    assert sha256_file(out / "model.safetensors") == before
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_crash_between_the_renames_is_recovered_on_the_next_write(tiny_model, tmp_path):
    model, out = _saved(tiny_model, tmp_path)
    aside = tmp_path / ".c.old-12345678"
    out.rename(aside)  # what kill -9 between the two renames leaves
    with pytest.raises(EmbcompressError, match="interrupted overwrite"):
        load_compressed(out)
    save_compressed(model, out, overwrite=True)
    assert load_compressed(out) is not None and not aside.exists()


@pytest.mark.parametrize("umask,dir_mode,file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_output_permissions_follow_the_umask(tiny_model, tmp_path, umask, dir_mode, file_mode):
    model = tiny_model("gpt2")
    compress_model(model, make_config("svd", rank=4))
    old = os.umask(umask)
    try:
        out = save_compressed(model, tmp_path / "c")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {file_mode}


# 6. one-line errors instead of tracebacks ---------------------------------------------------------

@pytest.mark.parametrize("option,message", [
    ("bits=abc", "whole number"), ("bits=4.5", "whole number"), ("zero_point=yes", "true or false"),
])
def test_bad_int_options(capsys, tiny_lm_dir, tmp_path, option, message):
    err = _one_line_error(capsys, "compress", tiny_lm_dir, "-m", "int", "-o", option, "--out", tmp_path / "o")
    assert message in err


@pytest.mark.parametrize("option,message", [
    ("niter=abc", "whole number"), ("lr=abc", "finite number"), ("lr=nan", "finite number"),
    ("batch_size=0", "at least 1"), ("seed=abc", "whole number"), ("epochs=-1", "at least 1"),
])
def test_bad_numeric_options(capsys, tiny_lm_dir, tmp_path, option, message):
    method = "svd" if option.startswith("niter") else "autoencoder"
    err = _one_line_error(capsys, "compress", tiny_lm_dir, "-m", method, "--rank", "4", "-o", option,
                          "--out", tmp_path / "o")
    assert message in err


def test_cuda_device_without_cuda(capsys, tiny_lm_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = _one_line_error(capsys, "compress", tiny_lm_dir, "-m", "autoencoder", "--rank", "4", "-o", "device=cuda",
                          "--out", tmp_path / "o")
    assert "no CUDA GPU" in err


def test_disk_full_and_impossible_out(capsys, tiny_lm_dir, tmp_path, monkeypatch):
    import safetensors.torch

    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert "cannot finish" in _one_line_error(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4",
                                              "--out", a_file / "sub")
    assert "cannot finish" in _one_line_error(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4",
                                              "--out", "/proc/embcompress-out")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    assert "no space left" in _one_line_error(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4",
                                              "--out", tmp_path / "o")
    assert not any(p.name.startswith(".o.") for p in tmp_path.iterdir())


def test_binary_evaluation_text_and_bad_squad_zip(capsys, tiny_lm_dir, tmp_path):
    import zipfile

    data = tmp_path / "data"
    (data / "wikitext").mkdir(parents=True)
    (data / "wikitext" / "wiki.test.raw").write_bytes(bytes(range(256)) * 4)
    assert "not UTF-8" in _one_line_error(capsys, "eval", "perplexity", tiny_lm_dir, "--data-dir", data)
    (data / "squad").mkdir()
    with zipfile.ZipFile(data / "squad" / "dev-v1.1.json.zip", "w") as z:
        z.writestr("dev-v1.1.json", b"\xff\xfe{not utf8")
    assert "not the official SQuAD" in _one_line_error(capsys, "eval", "squad", tiny_lm_dir, "--data-dir", data)


def test_pickle_only_and_custom_code_models(capsys, tiny_lm_dir, tmp_path):
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_lm_dir, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    err = _one_line_error(capsys, "compress", pickled, "-m", "svd", "--rank", "4", "--out", tmp_path / "o")
    assert "cannot load" in err or "does not fit" in err or "safetensors" in err
    custom = tmp_path / "custom"
    shutil.copytree(tiny_lm_dir, custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="my-own-arch", auto_map={"AutoModelForCausalLM": "modeling_mine.MyModel"})
    (custom / "config.json").write_text(json.dumps(config))
    err = _one_line_error(capsys, "compress", custom, "-m", "svd", "--rank", "4", "--out", tmp_path / "o2")
    assert "custom" in err.lower() or "cannot" in err


# 7. silent wrong behaviour -------------------------------------------------------------------------

def test_bert_folder_without_task_keeps_its_head(capsys, tiny_model, tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bert = tiny_model("bert")
    bert.save_pretrained(tmp_path / "bert")
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")),
                                  unk_token="[UNK]")
    tok.save_pretrained(tmp_path / "bert")
    ok(capsys, "compress", tmp_path / "bert", "-m", "svd", "--rank", "4", "--out", tmp_path / "c")
    assert json.loads((tmp_path / "c" / "embcompress.json").read_text())["model_class"] == "BertForMaskedLM"
    config = json.loads((tmp_path / "bert" / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "bert" / "config.json").write_text(json.dumps(config))
    assert "pass --task" in _one_line_error(capsys, "compress", tmp_path / "bert", "-m", "svd", "--rank", "4",
                                            "--out", tmp_path / "d")


@pytest.mark.parametrize("args,message", [
    (["--window", "0"], "--window must be at least 2"), (["--stride", "0"], "--stride at least 1"),
    (["--window", "1"], "--window must be at least 2"), (["--window", "2", "--stride", "1"], "use --window 3"),
])
def test_window_and_stride_zero_are_refused(capsys, tiny_lm_dir, data_dir, args, message):
    assert message in _one_line_error(capsys, "eval", "perplexity", tiny_lm_dir, "--data-dir", data_dir, *args)


def test_missing_local_path_is_named(capsys, tmp_path):
    err = _one_line_error(capsys, "compress", str(tmp_path / "no" / "such-model"), "-m", "svd", "--rank", "4",
                          "--out", tmp_path / "o")
    assert "does not exist" in err


# 8. one writer per sweep results file -------------------------------------------------------------

def test_second_sweep_on_the_same_results_is_refused(capsys, tiny_lm_dir, data_dir, tmp_path):
    from embcompress.sweep import results_lock

    results = tmp_path / "r.jsonl"
    with results_lock(results):
        err = _one_line_error(capsys, "sweep", "--models", tiny_lm_dir, "--methods", "svd", "--ratios", "2",
                              "--max-tokens", "50", "--data-dir", data_dir, "--out", results)
    assert "another sweep is writing" in err and not results.exists()


# 9. models says when it converts -------------------------------------------------------------------

def test_builtin_conversion_is_announced(monkeypatch, tmp_path, capsys):
    from embcompress import models

    monkeypatch.setenv("EMBCOMPRESS_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_gguf_path", lambda spec: tmp_path / "x.gguf")
    monkeypatch.setattr(models, "_convert_gguf", lambda gguf, target, task: None)
    models.builtin_folder("smollm2-135m")
    assert "converting its GGUF weights once" in capsys.readouterr().err


def test_a_tampered_tokenizer_file_is_refused(capsys, tiny_lm_dir, tmp_path):
    from test_cli import ok

    ok(capsys, "compress", tiny_lm_dir, "-m", "svd", "--rank", "4", "--out", tmp_path / "c")
    tokenizer = tmp_path / "c" / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"<unk>"', '"<UNK>"', 1))
    with pytest.raises(EmbcompressError, match="tokenizer.json does not match its recorded checksum"):
        load_compressed(tmp_path / "c")
