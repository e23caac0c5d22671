"""Sweeps on a local Ray instance give the serial sweep's cells and values; failed cells are recorded
and run again on resume; an interrupted driver leaves valid JSONL. Needs the ray extra, which
scripts/setup.sh installs (so CI runs these)."""

import json

import pytest

from embcompress.sweep import cell_key, read_results
from test_cli import ok, run

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _values(rows):
    return {cell_key(r): r["value"] for r in rows if "error" not in r}


def _sweep(capsys, lm, data_dir, out, *extra):
    return ok(capsys, "sweep", "--models", lm, "--methods", "svd;int:bits=4", "--ratios", "2,4", "--max-tokens", "80",
              "--data-dir", data_dir, "--out", out, *extra)


def test_ray_sweep_equals_the_serial_one_and_survives_an_interrupt(local_ray, capsys, tiny_lm_dir, data_dir, tmp_path,
                                                                    monkeypatch):
    _sweep(capsys, tiny_lm_dir, data_dir, tmp_path / "serial.jsonl")
    serial = _values(read_results(tmp_path / "serial.jsonl"))
    assert len(serial) == 4  # none, svd 2, svd 4, int4

    import embcompress.ray_sweep as ray_sweep

    real, calls = ray_sweep.append_result, []

    def interrupted(path, row):
        calls.append(row)
        real(path, row)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C with tasks still out

    monkeypatch.setattr(ray_sweep, "append_result", interrupted)
    code, _, err = run(capsys, "sweep", "--models", tiny_lm_dir, "--methods", "svd;int:bits=4", "--ratios", "2,4",
                       "--max-tokens", "80", "--data-dir", data_dir, "--out", tmp_path / "ray.jsonl", "--ray")
    assert code == 130 and "run the same command again to resume" in err
    lines = (tmp_path / "ray.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["value"] > 0  # whole lines only
    monkeypatch.setattr(ray_sweep, "append_result", real)
    _sweep(capsys, tiny_lm_dir, data_dir, tmp_path / "ray.jsonl", "--ray")
    rows = read_results(tmp_path / "ray.jsonl")
    assert len(rows) == 4 and _values(rows) == serial  # same cells, same values, none twice


def test_a_failed_cell_is_recorded_and_run_again_on_resume(local_ray, capsys, tiny_lm_dir, data_dir, tmp_path):
    present, missing = tmp_path / "a.txt", tmp_path / "b.txt"
    present.write_text(" ".join(f"w{i % 53}" for i in range(600)))
    out = tmp_path / "r.jsonl"
    args = ["sweep", "--models", tiny_lm_dir, "--methods", "svd", "--ratios", "2", "--max-tokens", "80",
            "--data-dir", data_dir, "--text", f"{present},{missing}", "--out", out, "--ray"]
    table = ok(capsys, *args)  # the b.txt cells fail on the workers; the sweep goes on
    rows = read_results(out)
    failed = [r for r in rows if "error" in r]
    assert len(failed) == 2 and all("b.txt" in r["error"] for r in failed)
    assert sorted(r["eval_options"]["text"] for r in rows if "error" not in r) == [str(present)] * 2
    assert "b.txt" not in table  # a failure is not a result
    missing.write_text(" ".join(f"x{i % 31}" for i in range(600)))
    ok(capsys, *args)
    done = [r for r in read_results(out) if "error" not in r]
    assert sorted(r["eval_options"]["text"] for r in done) == [str(present)] * 2 + [str(missing)] * 2
