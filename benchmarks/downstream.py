"""The paper's downstream comparison on minilm-l6 at a protocol that can tell methods apart (issue 21).

Protocol (evaluate/finetune.run_protocol): full training sets (CoLA, SST-2, MRPC, STS-B, RTE; SQuAD v1.1:
the 8123 questions of dev articles 0-35), 3 epochs (SQuAD 2), batch 32 (SQuAD 16), max length 128 (SQuAD
384, stride 128). The learning rate of each task is chosen once, on the uncompressed model with the
embedding policy at hand, on a held-out part of the *training* set (GLUE: a seeded 10 %, at most 2000;
SQuAD: articles 32-35), then used by every method: no dev score chooses anything. Each cell is one task ×
method × ratio × policy × seed (22, 23, 24), or one candidate learning rate of a choice, one JSONL line, so
the run resumes where it stopped.

Regenerate: .venv/bin/python benchmarks/downstream.py [--tasks sst2,mrpc,...] [--stage floor|compare|all]
            .venv/bin/python benchmarks/downstream.py --page   (the page from what has run so far)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from embcompress.distill import DistillConfig
from embcompress.evaluate.finetune import FinetuneSettings
from embcompress.evaluate.registry import EvalSettings
from embcompress.evaluate.squad import SquadSettings
from embcompress.sweep import MethodSpec, machine, read_results, run_sweep

HERE = Path(__file__).parent
R = HERE / "results"
MODEL = "minilm-l6"
TASKS = ["sst2", "mrpc", "stsb", "cola", "rte", "squad"]
EVAL = {t: ("squad" if t == "squad" else f"glue-{t}") for t in TASKS}
# the sanity floors: the uncompressed model must reach these first (dev; SQuAD: F1 on articles 36-47)
FLOORS = {"sst2": 85, "mrpc": 85, "stsb": 82, "cola": 25, "rte": 58, "squad": 50}
METRIC = {"sst2": "accuracy", "mrpc": "F1", "stsb": "Spearman", "cola": "Matthews corr.", "rte": "accuracy",
          "squad": "F1 on articles 36-47"}
SEEDS = [22, 23, 24]
POLICIES = ["paper", "frozen"]  # the authors' embedding training, and no embedding training
BEST = "tiered-pq:importance=calibration,prior=0.5"
# (method, ratio, policies, distilled) in the order they are run: the paper's pair at CR 10 first
ARMS = [("svd", 10.0, POLICIES, False), ("autoencoder", 10.0, POLICIES, False),
        ("svd", 5.0, POLICIES, False), ("autoencoder", 5.0, POLICIES, False),
        (BEST, 8.0, ["frozen"], False), (BEST, 8.0, ["frozen"], True)]
CALIBRATION = "squad-contexts"  # the best method's token counts and distillation text


def results_file(task: str) -> Path:
    return R / f"downstream-protocol-{task}.jsonl"


def options(row) -> dict:
    return (row.get("eval_options") or {}).get("finetune", {})


def grid(task: str) -> tuple[float, ...]:
    return (SquadSettings if task == "squad" else FinetuneSettings)().lr_grid


def lr_search(rows: list[dict], policy: str) -> dict[float, float]:
    """Held-out training score per candidate learning rate in a task's ``rows``: one cell per candidate (so
    a stopped choice resumes), or one cell that searched the whole grid (how MRPC's choice was run)."""
    found: dict[float, float] = {}
    for r in rows:
        if r["method"] == "none" and options(r).get("seeds") == 0 and options(r).get("embedding_policy") == policy:
            found |= {float(k): v for k, v in r["details"]["lr_search"].items()}
    return found


def chosen_lr(task: str, policy: str, rows: list[dict] | None = None) -> float | None:
    search = lr_search(read_results(results_file(task)) if rows is None else rows, policy)
    if not all(lr in search for lr in grid(task)):
        return None
    return max(grid(task), key=search.get)


def sweep(task: str, methods: list[str], ratios: list[float], finetune: dict, distill: bool = False) -> None:
    settings = EvalSettings(progress=False, extra={"finetune": {"progress": False, **finetune}})
    run_sweep([MODEL], [MethodSpec.parse(m) for m in methods], ratios, [EVAL[task]], results_file(task),
              settings=settings, calibration=CALIBRATION if any(m == BEST for m in methods) else None,
              distill=DistillConfig(progress=False) if distill else None, log=lambda s: print(s, flush=True))


def choose(task: str, policy: str) -> float:
    for candidate in grid(task):
        if candidate not in lr_search(read_results(results_file(task)), policy):
            sweep(task, [], [], {"seeds": 0, "lr_grid": [candidate], "embedding_policy": policy})
    return chosen_lr(task, policy)


def run(tasks: list[str], stage: str, policies: list[str]) -> None:
    for task in tasks:
        for policy in policies:  # the floor: uncompressed, every seed
            lr = choose(task, policy)
            for seed in SEEDS:
                sweep(task, [], [], {"lr": lr, "seeds": 1, "seed": seed, "embedding_policy": policy})
        write_page()
    if stage == "floor":
        return
    for method, ratio, arm_policies, distill in ARMS:
        for task in tasks:
            for policy in [p for p in arm_policies if p in policies]:
                lr = choose(task, policy)
                for seed in SEEDS:
                    sweep(task, [method], [ratio], {"lr": lr, "seeds": 1, "seed": seed, "embedding_policy": policy},
                          distill=distill)
            write_page()


# -- the page ------------------------------------------------------------------------------------------

def arm_of(row) -> tuple:
    o = options(row)
    return (row["method"], row.get("ratio_target"), o.get("embedding_policy", "frozen"), bool(row.get("distill")))


def label(arm) -> str:
    method, ratio, policy, distill = arm
    name = "uncompressed" if method == "none" else f"{method}{' +distil' if distill else ''} CR {ratio:g}"
    return f"{name} ({policy})"


def summarize(rows) -> dict:
    """arm → per-seed values (cells with seeds=1 only)."""
    out: dict[tuple, dict[int, float]] = {}
    for r in rows:
        o = options(r)
        if o.get("seeds") == 1:
            out.setdefault(arm_of(r), {})[o["seed"]] = r["value"]
    return out


def mean_std(values: dict[int, float]) -> tuple[float, float, int]:
    v = list(values.values())
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else float("nan")), len(v)


def show(values) -> str:
    if not values:
        return "not run yet"
    m, s, n = mean_std(values)
    return f"{m:.2f} ± {s:.2f} (n={n})" if n > 1 else f"{m:.2f} (n=1)"


def verdict(a: dict, b: dict, name_a: str, name_b: str) -> str:
    """Who is ahead, where a difference inside 2 std of the seeds is a tie."""
    if len(a) < 3 or len(b) < 3:
        return "pending (fewer than 3 seeds)"
    (ma, sa, _), (mb, sb, _) = mean_std(a), mean_std(b)
    spread = 2 * max(sa, sb)
    if abs(ma - mb) <= spread:
        return f"tie ({ma - mb:+.2f}, inside 2 std = {spread:.2f})"
    return f"{name_a if ma > mb else name_b} ({ma - mb:+.2f}, 2 std = {spread:.2f})"


def write_page() -> None:
    lines = ["# Downstream: the paper's comparison at a protocol that can tell methods apart (minilm-l6)", "",
             "Regenerate: `.venv/bin/python benchmarks/downstream.py` (resumable: a cell is one task × method × ratio × "
             f"policy × seed; `--page` rewrites this page from what has run). Machine: {machine()}.", "",
             "Protocol: full training sets (CoLA 8551, SST-2 67349, MRPC 3668, STS-B 5749, RTE 2490; SQuAD v1.1 "
             "dev articles 0-35, 8123 questions), 3 epochs (SQuAD 2), AdamW with linear decay, batch 32 (SQuAD 16), "
             "max length 128 (SQuAD 384, stride 128), seeds 22/23/24. The learning rate of each task and policy is "
             "chosen once, on the uncompressed model, among 2e-5/5e-5/1e-4 (SQuAD 3e-5/5e-5/1e-4) on held-out "
             "*training* data (GLUE: a seeded 10 % of the training set, at most 2000 examples, the search trains on "
             "at most 8000 of the rest; SQuAD: articles 32-35, trained on at most 2000 questions of 0-31), and used "
             "by every method. Reported: GLUE dev sets, SQuAD F1 on articles 36-47; no dev score chose anything. "
             "Policies: `paper` = the authors' embedding training (uncompressed embedding trained, autoencoder "
             "decoder trained, SVD factors frozen), `frozen` = no embedding parameter trains. Verdicts: a difference "
             "inside 2 standard deviations of the seeds is a tie.", "",
             "What this costs here: a fine-tuning step of minilm-l6 (batch 32 × 80 tokens) takes ~2.5 s on these two "
             "cores, so a 3-epoch run of MRPC takes ~8 min and the learning-rate choice (3 runs) ~30 min (measured, "
             "cost table below). From the step time and each training set's size, the whole plan (6 tasks × 36 cells "
             "+ 12 choices) is an estimated ~150 CPU-hours here, most of it SST-2 (67k examples) and SQuAD (384-token "
             "windows): it runs across sessions (every cell resumes), or in a few hours on a GPU, which the code uses "
             "when there is one.", ""]
    total = 0.0
    for task in TASKS:
        rows = read_results(results_file(task))
        total += sum(r.get("eval_seconds", 0.0) + r.get("fit_seconds", 0.0) for r in rows)
        arms = summarize(rows)
        lines += [f"## {task} ({METRIC[task]})", ""]
        if not rows:
            lines += ["Not run yet.", ""]
            continue
        lrs = {p: chosen_lr(task, p, rows) for p in POLICIES}
        for p in POLICIES:
            search = lr_search(rows, p)
            if search:
                lines.append(f"- lr ({p}): {f'{lrs[p]:g}' if lrs[p] else 'being chosen'}, on held-out training data: "
                             + ", ".join(f"{k:g} → {v:.2f}" for k, v in sorted(search.items())))
        floor_ok = {}
        for p in POLICIES:
            base = arms.get(("none", None, p, False), {})
            if base:
                m, _, n = mean_std(base)
                floor_ok[p] = m >= FLOORS[task]
                lines.append(f"- sanity floor ({p}): uncompressed {show(base)} against ≥ {FLOORS[task]}: "
                             + ("**met**" if floor_ok[p] else "**not met**: this policy's comparison is inconclusive"))
        lines += ["", "| model | score (mean ± std over seeds) | vs uncompressed, same policy |", "| --- | --- | --- |"]
        for arm in sorted(arms, key=lambda a: (a[0] != "none", a[2], a[0], a[1] or 0, a[3])):
            base = arms.get(("none", None, arm[2], False), {})
            delta = f"{mean_std(arms[arm])[0] - mean_std(base)[0]:+.2f}" if base and arm[0] != "none" else ""
            lines.append(f"| {label(arm)} | {show(arms[arm])} | {delta} |")
        lines += ["", "| comparison | verdict |", "| --- | --- |"]
        for ratio in (5.0, 10.0):
            for p in POLICIES:
                ae, svd = arms.get(("autoencoder", ratio, p, False), {}), arms.get(("svd", ratio, p, False), {})
                note = "" if floor_ok.get(p, False) else " — inconclusive: floor not met or not run"
                lines.append(f"| autoencoder vs SVD, CR {ratio:g}, {p} | {verdict(ae, svd, 'autoencoder', 'SVD')}{note} |")
        for distill in (False, True):
            mine = arms.get((BEST, 8.0, "frozen", distill), {})
            ae = arms.get(("autoencoder", 10.0, "frozen", False), {})
            lines.append(f"| {label((BEST, 8.0, 'frozen', distill))} vs autoencoder CR 10 (frozen) | "
                         f"{verdict(mine, ae, 'tiered-pq', 'autoencoder')} |")
        lines.append("")
    lines += ["## Cost on this machine", "",
              "| task | cells done / planned | mean s a seed cell | lr choice s | still to run (projected) |",
              "| --- | --- | --- | --- | --- |"]
    planned = (len(POLICIES) + sum(len(policies) for _, _, policies, _ in ARMS)) * len(SEEDS)
    for task in TASKS:
        rows = read_results(results_file(task))
        seeds = [r["eval_seconds"] for r in rows if options(r).get("seeds") == 1 and "eval_seconds" in r]
        choice = [r["eval_seconds"] for r in rows if options(r).get("seeds") == 0 and "eval_seconds" in r]
        done = len([r for r in rows if options(r).get("seeds") == 1])
        each = statistics.fmean(seeds) if seeds else None
        lines.append(f"| {task} | {done} / {planned} | {f'{each:.0f}' if each else '–'} | "
                     f"{', '.join(f'{c:.0f}' for c in choice) or '–'} | "
                     f"{f'{(planned - done) * each / 3600:.1f} h' if each else 'not measured yet'} |")
    lines += ["", f"Compute so far: {total / 3600:.1f} h of cells on this machine (fit + evaluation, summed over the "
              "results files).", ""]
    (HERE / "downstream.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--stage", choices=["floor", "all"], default="all")
    ap.add_argument("--policies", default=",".join(POLICIES), help="embedding policies to run (paper,frozen)")
    ap.add_argument("--page", action="store_true", help="only rewrite downstream.md from the results so far")
    a = ap.parse_args()
    tasks = [t for t in a.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        sys.exit(f"unknown task(s) {', '.join(unknown)}; use: {', '.join(TASKS)}")
    if not a.page:
        t0 = time.time()
        policies = [p for p in a.policies.split(",") if p]
        if not policies or set(policies) - set(POLICIES):
            sys.exit(f"unknown policy in {a.policies!r}; use: {', '.join(POLICIES)}")
        run(tasks, a.stage, policies)
        print(f"ran {time.time() - t0:.0f} s")
    write_page()
    print((HERE / "downstream.md").read_text())


if __name__ == "__main__":
    main()
