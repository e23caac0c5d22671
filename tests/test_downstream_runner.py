"""benchmarks/downstream.py's bookkeeping: parallel workers' files, the learning-rate choice and the verdicts.

Its cells take minutes each; what is checked here is what decides which cells run and what the page says.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("downstream", Path(__file__).parents[1] / "benchmarks" / "downstream.py")
downstream = importlib.util.module_from_spec(spec)
spec.loader.exec_module(downstream)

H200 = "x86_64, 16 cores, NVIDIA H200, TF32 matmuls, torch 2.11.0+cu130, 3.12.3"
CPU = "x86_64, 2 cores, torch 2.13.0+cpu, 3.11.7"


def row(method="none", seed=22, value=80.0, policy="frozen", ratio=None, machine=H200, seconds=30.0, **finetune):
    options = {"seeds": 1, "seed": seed, "embedding_policy": policy, "lr": 1e-4, **finetune}
    return {"method": method, "ratio_target": ratio, "value": value, "machine": machine, "eval_seconds": seconds,
            "embedding_bytes": int(46_881_792 / (ratio or 1)), "eval_options": {"finetune": options}}


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(downstream, "R", tmp_path)
    return tmp_path


def write(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_workers_copy_of_the_task_file_is_not_read_as_reruns(results):
    done = [row(seed=22, value=85.0), row(seed=23, value=86.0)]
    write(downstream.results_file("mrpc"), done)
    write(results / "downstream-protocol-mrpc.part-7.jsonl", done + [row("svd", 22, 83.0, ratio=10.0)])
    rows = downstream.read_task("mrpc")
    assert len(rows) == 3
    assert downstream.rerun_differences(rows) == []
    # a real rerun (another value for the same cell) is kept and measured, and the first row counts
    write(results / "downstream-protocol-mrpc.part-8.jsonl", [row(seed=22, value=85.5)])
    rows = downstream.read_task("mrpc")
    assert downstream.rerun_differences(rows) == [pytest.approx(0.5)]
    assert downstream.summarize(rows)[("none", None, "frozen", False)] == {22: 85.0, 23: 86.0}


def test_merging_workers_adds_each_new_row_once_and_removes_their_files(results):
    done = [row(seed=22, value=85.0)]
    write(downstream.results_file("mrpc"), done)
    for worker in (1, 2):
        write(results / f"downstream-protocol-mrpc.part-{worker}.jsonl", done + [row(seed=22 + worker)])
        (results / f"downstream-protocol-mrpc.part-{worker}.jsonl.lock").touch()
    downstream.merge_parts("mrpc")
    lines = downstream.results_file("mrpc").read_text().splitlines()
    assert [json.loads(x)["eval_options"]["finetune"]["seed"] for x in lines] == [22, 23, 24]
    assert sorted(p.name for p in results.iterdir()) == ["downstream-protocol-mrpc.jsonl"]


def test_the_learning_rate_is_chosen_only_when_every_candidate_has_run():
    def choice(lr, score, policy="paper"):
        return {"method": "none", "value": score, "details": {"lr_search": {str(lr): score}},
                "eval_options": {"finetune": {"seeds": 0, "lr_grid": [lr], "embedding_policy": policy}}}

    rows = [choice(2e-5, 80.0), choice(5e-5, 83.0)]
    assert downstream.chosen_lr("mrpc", "paper", rows) is None
    rows.append(choice(1e-4, 82.0))
    assert downstream.chosen_lr("mrpc", "paper", rows) == 5e-5
    assert downstream.chosen_lr("mrpc", "frozen", rows) is None  # each policy chooses its own


def test_a_difference_inside_two_standard_deviations_is_a_tie():
    a, b = {22: 83.0, 23: 84.0, 24: 85.0}, {22: 82.0, 23: 83.0, 24: 84.0}  # std 1 each, means 1 apart
    assert downstream.verdict(a, b, "A", "B").startswith("tie (+1.00, inside 2 std = 2.00)")
    far = {22: 88.0, 23: 89.0, 24: 90.0}
    assert downstream.verdict(a, far, "A", "B").startswith("B (-5.00")
    assert downstream.verdict(a, {22: 1.0, 23: 2.0}, "A", "B") == "pending (fewer than 3 seeds)"
    m, s, n = downstream.mean_std({22: 1.0})
    assert (m, n) == (1.0, 1) and math.isnan(s)


def test_cells_are_costed_by_the_machine_they_ran_on():
    assert downstream.device_of(row(machine=H200)) == "H200"
    assert downstream.device_of(row(machine=CPU)) == "2-core CPU"


def test_the_page_keeps_machines_apart_and_gives_verdicts(results):
    rows = [row(seed=s, value=86.0 + s / 100) for s in (22, 23, 24)]
    rows += [row("svd", s, 83.0 + (s - 23), ratio=10.0) for s in (22, 23, 24)]
    rows += [row("autoencoder", s, 70.0 + (s - 23), ratio=10.0, machine=CPU, seconds=500.0) for s in (22, 23, 24)]
    rows += [row(downstream.BEST, s, 86.0 + (s - 23) / 10, ratio=8.0) for s in (22, 23, 24)]
    write(downstream.results_file("mrpc"), rows)
    page = results / "page.md"
    downstream.write_page(page, "python benchmarks/downstream.py")
    text = page.read_text()
    assert "| autoencoder vs SVD, CR 10, frozen | SVD (-13.00, 2 std = 2.00) |" in text
    best = f"| {downstream.BEST} CR 8 (frozen) vs autoencoder CR"
    assert f"{best} 10 (frozen) | tiered-pq (+16.00, 2 std = 2.00) |" in text
    assert f"{best} 5 (frozen) | pending (fewer than 3 seeds) |" in text
    assert "| svd CR 10 (frozen) | 4.69 | 83.00 ± 1.00 (n=3) | -3.23 |" in text
    assert "500 (2-core CPU, n=3), 30 (H200, n=9)" in text
    assert "sanity floor (frozen): uncompressed 86.23 ± 0.01 (n=3) against ≥ 85: **met**" in text


def test_a_task_whose_uncompressed_model_misses_its_floor_runs_no_arms_and_says_so(results, monkeypatch):
    write(downstream.results_file("rte"), [row(seed=s, value=54.0 + s / 10) for s in (22, 23, 24)])
    arms = downstream.summarize(downstream.read_task("rte"))
    assert downstream.floor_met(arms, "rte", "frozen") is False
    assert downstream.floor_met(arms, "rte", "paper") is None  # its seeds have not run
    monkeypatch.setattr(downstream, "chosen_lr", lambda task, policy, rows=None: 1e-4)
    met = {"rte": [p for p in downstream.POLICIES if downstream.floor_met(arms, "rte", p)]}
    assert downstream.seed_cells(downstream.ARMS, met, {}) == []
    cells = downstream.seed_cells(downstream.ARMS, {"rte": ["frozen"]}, {})
    assert len(cells) == 6 * 3 and {c[3]["embedding_policy"] for c in cells} == {"frozen"}
    page = results / "page.md"
    downstream.write_page(page, "python benchmarks/downstream.py")
    text = page.read_text()
    assert "| autoencoder vs SVD, CR 10, frozen | inconclusive: the uncompressed model misses its floor" in text
    assert "| autoencoder vs SVD, CR 10, paper | pending (fewer than 3 seeds) (floor not run yet) |" in text
    # planned: 6 floor cells and the paper policy's 4 arms x 3 seeds; no frozen arm (the best method's included)
    assert "| rte | 3 / 18 |" in text
