"""Issue 14's targets table: the best method per byte, with and without distillation, on the reported texts.

Reported texts: the first 8192 tokens of WikiText-2 raw test and of GLUE MRPC test (a second text of another
style that no step saw), STS-B dev for minilm-l6. Calibration counts and distillation text: SQuAD v1.1 dev
contexts (`squad-contexts`). Every setting was chosen on validation text (benchmarks/distill.md,
quality_per_byte.md), never here.

Regenerate: .venv/bin/python benchmarks/distill_targets.py [PART ...]   (resumable: finished cells stay in
benchmarks/results/distill-targets-*.jsonl; with no PART every part runs, cheapest first; the page says which
cells are still missing). Writes benchmarks/distill_targets.md; `--page` only rewrites it from the results so far.
"""

from __future__ import annotations

import sys
from pathlib import Path

from embcompress.distill import DistillConfig
from embcompress.evaluate.registry import EvalSettings
from embcompress.report import markdown_table, method_label
from embcompress.sweep import MethodSpec, machine, read_results, run_sweep

HERE = Path(__file__).parent
R = HERE / "results"
BEST = "tiered-pq:importance=calibration,prior=0.5"
TEXTS = ["wikitext2-test", "mrpc-test"]
CALIBRATION = "squad-contexts"

# part: (model, scope, methods, ratios, evals, texts, distil)
PARTS = {
    "smollm2-input": ("smollm2-135m", "input", [BEST], [4, 8, 16], ["perplexity"], TEXTS, False),
    "smollm2-tied": ("smollm2-135m", "tied", [BEST], [8], ["perplexity"], TEXTS, False),
    "minilm": ("minilm-l6", "input", ["mixed", "mixed:cold_sub_dim=12"], [8, 16], ["sts"], [None], False),
    "minilm-distil": ("minilm-l6", "input", ["mixed", "mixed:cold_sub_dim=12"], [8, 16], ["sts"], [None], True),
    "smollm2-tied-distil": ("smollm2-135m", "tied", [BEST], [8], ["perplexity"], TEXTS, True),
    "smollm2-input-distil": ("smollm2-135m", "input", [BEST], [8], ["perplexity"], TEXTS, True),
    "gemma3-input": ("gemma3-270m", "input", [BEST], [4, 8, 16], ["perplexity"], TEXTS, False),
    "gemma3-tied": ("gemma3-270m", "tied", [BEST], [8], ["perplexity"], TEXTS, False),
    "smollm2-input-distil-4-16": ("smollm2-135m", "input", [BEST], [4, 16], ["perplexity"], TEXTS, True),
    "gemma3-input-distil": ("gemma3-270m", "input", [BEST], [8], ["perplexity"], TEXTS, True),
    "gemma3-tied-distil": ("gemma3-270m", "tied", [BEST], [8], ["perplexity"], TEXTS, True),
    "gemma3-input-distil-4-16": ("gemma3-270m", "input", [BEST], [4, 16], ["perplexity"], TEXTS, True),
}
# (model, scope, ratio): largest allowed change (perplexity: per cent; STS-B: the score to reach)
TARGETS = {("smollm2-135m", "input", 4): 0.1, ("smollm2-135m", "input", 8): 3, ("smollm2-135m", "input", 16): 10,
           ("smollm2-135m", "tied", 8): 8, ("gemma3-270m", "input", 4): 0.3, ("gemma3-270m", "input", 8): 2.5,
           ("gemma3-270m", "input", 16): 7, ("gemma3-270m", "tied", 8): 5,
           ("minilm-l6", "input", 8): 86.6, ("minilm-l6", "input", 16): 86.2}


def results_file(part: str) -> Path:
    model, scope = PARTS[part][:2]
    return R / f"distill-targets-{model}-{scope}.jsonl"


def run(part: str) -> None:
    model, scope, methods, ratios, evals, texts, distil = PARTS[part]
    run_sweep([model], [MethodSpec.parse(m) for m in methods], [float(r) for r in ratios], evals, results_file(part),
              scope=scope, settings=EvalSettings(max_tokens=8192, progress=False), calibration=CALIBRATION,
              distill=DistillConfig(progress=False) if distil else None, texts=texts if texts != [None] else None)


def status(rows) -> list[str]:
    lines = ["| target | text | best without distillation | with distillation (same recipe) | met |",
             "| --- | --- | --- | --- | --- |"]
    for (model, scope, ratio), limit in TARGETS.items():
        for text in (TEXTS if model != "minilm-l6" else [None]):
            def cell(r):
                return (r["model"] == model and r["scope"] == scope and r.get("ratio_target") == ratio
                        and (r.get("eval_options") or {}).get("text") == text)
            base = [r["value"] for r in rows if r["model"] == model and r["method"] == "none"
                    and (r.get("eval_options") or {}).get("text") == text]
            mine = [r for r in rows if cell(r)]
            goal = f"≥ {limit}" if model == "minilm-l6" else f"≤ +{limit} %"
            if not base or not mine:
                lines.append(f"| {model} {scope} {ratio}× ({goal}) | {text or 'STS-B dev'} | not run yet | | |")
                continue

            def show(r):
                if r is None:
                    return "not run yet"
                if model == "minilm-l6":
                    return f"`{r['method']}` {r['value']:.2f}"
                d = r.get("details") or {}
                kl = f", KL {d['kl_mean']:.4f}, top-1 {d['top1_agreement']:.1f} %" if "kl_mean" in d else ""
                return f"`{r['method']}` {(r['value'] / base[0] - 1) * 100:+.1f} %{kl}"

            def score(r):
                return r["value"] if model == "minilm-l6" else -(r["value"] / base[0] - 1) * 100

            plain = max((r for r in mine if not r.get("distill")), key=score, default=None)
            dist = max((r for r in mine if r.get("distill")), key=score, default=None)
            best = max((r for r in (plain, dist) if r is not None), key=score)
            met = best["value"] >= limit if model == "minilm-l6" else (best["value"] / base[0] - 1) * 100 <= limit
            lines.append(f"| {model} {scope} {ratio}× ({goal}) | {text or 'STS-B dev'} | {show(plain)} | {show(dist)} | "
                         f"{'yes' if met else 'no'} |")
    return lines


BUDGET_MIN = {"smollm2-135m": 20, "gemma3-270m": 45}  # the time for one distillation at default settings


def timing(rows) -> list[str]:
    """Each distillation's time against the budget (one line per compressed model, not per evaluated text)."""
    seen, lines = set(), ["| model | scope | method | ratio | steps run | held-out KL start → best | minutes | budget |",
                          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        key = (r["model"], r["scope"], r["method"], r.get("ratio_target"))
        if not r.get("distill") or key in seen:
            continue
        seen.add(key)
        rep, budget = r["distill_report"], BUDGET_MIN.get(r["model"])
        minutes = rep["seconds"] / 60
        verdict = "–" if budget is None else f"≤ {budget}: {'met' if minutes <= budget else 'missed'}"
        early = " (stopped: no new best)" if rep.get("stopped_early") else ""
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]:g}× | {rep['steps']}{early} | "
                     f"{rep['held_out_start']:.4f} → {rep['held_out_best']:.4f} | {minutes:.1f} | {verdict} |")
    return lines


def page() -> str:
    rows = [r for part in dict.fromkeys(results_file(p) for p in PARTS) for r in read_results(part)]
    missing = [p for p in PARTS if not _complete(p, rows)]
    out = ["# Distillation targets (issue 14)", "",
           "Regenerate: `.venv/bin/python benchmarks/distill_targets.py` (resumable; parts: "
           + ", ".join(f"`{p}`" for p in PARTS) + f"). Machine: {machine()}.", "",
           "Method: `tiered-pq` with calibration counts from SQuAD v1.1 dev contexts and prior 0.5 (chosen on "
           "validation text: quality_per_byte.md, prior_probe.sh), at the byte ratio of each target; "
           "`+distil` = the same codes with their continuous values distilled (`DistillConfig` defaults, chosen on "
           "SQuAD dev articles 0-23 / 24-47: distill.md) on SQuAD v1.1 dev contexts. Perplexity change against the "
           "uncompressed model on the first 8192 tokens of WikiText-2 raw test and of GLUE MRPC test (neither seen "
           "by any step); minilm-l6: zero-shot STS-B dev Spearman ×100 (uncompressed 86.72).", "",
           "## Status", ""] + status(rows)
    if missing:
        out += ["", "Parts not finished yet (run the command again to go on): " + ", ".join(f"`{p}`" for p in missing) + "."]
    out += ["", "## Time of each distillation (default settings)", "",
            "Wall time measured inside the runs above (`distill_report.seconds`) on this 2-core CPU. The tied rows "
            "ran alone; the input rows of SmolLM2 8× and Gemma-3 8× shared the cores with an evaluation or a "
            "probe for a few minutes, and the minilm-l6 rows (an earlier session) with other jobs, so those are "
            "upper bounds.", ""] + timing(rows)
    whole = [r for m in ("smollm2-135m", "gemma3-270m") for r in read_results(R / f"full-{m}.jsonl")
             if r["method"] in ("none", MethodSpec.parse(BEST).label)]
    if whole:
        out += ["", "## The best 8× recipe on the whole WikiText-2 test split", "",
                "From [full_split.md](full_split.md) (`bash benchmarks/full_split.sh`): windows of 2048 tokens, stride "
                "2047, not distilled (distillation did not move input scope at 8×, above).", "", markdown_table(whole)]
    for path in dict.fromkeys(results_file(p) for p in PARTS):
        got = read_results(path)
        if got:
            out += ["", f"## {path.stem.removeprefix('distill-targets-')}", "", markdown_table(got)]
    return "\n".join(out) + "\n"


def _complete(part, rows) -> bool:
    model, scope, methods, ratios, evals, texts, distil = PARTS[part]
    found = {(r["method"], r.get("ratio_target"), bool(r.get("distill"))) for r in rows
             if r["model"] == model and r["scope"] == scope}
    return all((MethodSpec.parse(m).label, float(ratio), distil) in found for m in methods for ratio in ratios)


if __name__ == "__main__":
    page_only = sys.argv[1:] == ["--page"]  # only rewrite the page from the results so far
    for part in [] if page_only else sys.argv[1:] or list(PARTS):
        if part not in PARTS:
            sys.exit(f"unknown part {part}; use: {', '.join(PARTS)}")
        run(part)
        (HERE / "distill_targets.md").write_text(page())
    (HERE / "distill_targets.md").write_text(page())
    print((HERE / "distill_targets.md").read_text())
