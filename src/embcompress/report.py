"""Turn sweep results (JSONL) into a markdown table and a plot of quality against compression."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .sweep import UNCOMPRESSED, cell_key, read_results

RATIO_KEY = "bytes_ratio_vs_fp16"
# secondary metrics an evaluation reports besides its headline value (GLUE, SQuAD)
OTHER_METRICS = ("exact_match", "f1", "accuracy", "matthews", "pearson", "spearman")


def _others(r: dict[str, Any]) -> str:
    details = r.get("details") or {}
    headline = details.get("metric")
    parts = [f"{k} {details[k]:.2f}" for k in OTHER_METRICS if k in details and k != headline]
    if "kl_mean" in details:  # closeness to the uncompressed model (perplexity cells)
        parts.append(f"KL {details['kl_mean']:.4f}, top-1 {details['top1_agreement']:.1f} %")
    return ", ".join(parts) or "–"


def _eval_label(r: dict[str, Any]) -> str:
    """The evaluation, with the text it ran on when that is not its default."""
    text = (r.get("eval_options") or {}).get("text")
    return r["eval"] if text is None else f"{r['eval']} on {Path(text).name if '/' in text else text}"


def method_label(r: dict[str, Any]) -> str:
    """The method as written, marked when the cell was distilled against its model."""
    return r["method"] + (" +distil" if r.get("distill") else "")


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last result of every cell (a rerun of a cell supersedes the earlier line); failed cells (rows
    with an ``error``, from a Ray sweep) are not results."""
    return list({cell_key(r): r for r in rows if "error" not in r}.values())


def _delta(value: float, ref: float, higher_is_better: bool) -> str:
    """Scores (accuracy, correlations ×100) differ in points; perplexities in per cent."""
    if higher_is_better or ref == 0:
        return f"{value - ref:+.2f} pts"
    return f"{(value / ref - 1) * 100:+.1f} %"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    rows = _latest(rows)
    # the uncompressed value of the same model, evaluation, text and token count
    base = {(r["model"], _eval_label(r), r.get("max_tokens")): r["value"] for r in rows if r["method"] == UNCOMPRESSED}
    lines = [
        "| model | eval | method | scope | target ratio | params ratio | bytes vs fp16 | value | vs uncompressed | also | fit s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = sorted(rows, key=lambda r: (r["model"], _eval_label(r), r["method"] != UNCOMPRESSED, method_label(r),
                                        r.get("ratio_target") or 0))
    for r in order:
        ref = base.get((r["model"], _eval_label(r), r.get("max_tokens")))
        delta = "" if ref is None or r["method"] == UNCOMPRESSED else _delta(r["value"], ref, r.get("higher_is_better", True))
        lines.append(
            f"| {r['model']} | {_eval_label(r)} | {method_label(r)} | {r['scope']} | {r.get('ratio_target') or '–'} | "
            f"{r['embedding_ratio']:.2f}× | {r[RATIO_KEY]:.2f}× | {r['value']:.4g} | {delta} | {_others(r)} | "
            f"{r.get('fit_seconds', '–')} |"
        )
    return "\n".join(lines)


def line_label(row: dict[str, Any]) -> str:
    """One line per method: variants without a target ratio (int:bits=8 … int:bits=1) join their
    family's line, where each is one point of bytes against quality."""
    name = method_label(row) if row.get("ratio_target") is not None else row["method"].split(":")[0]
    return name if row["scope"] == "input" else f"{name} ({row['scope']} scope)"


CLIP = 5


def perplexity_ylim(reference: float, lines: list[list[float]]) -> tuple[float, float] | None:
    """Clip the y axis near the uncompressed perplexity when some points lie there and others are
    catastrophic (they then leave through the top). When a whole line lies above the clip (the main
    job's SVD and autoencoder beside tiered-pq), clipping would hide that method, so the log axis shows
    every point."""
    values = [v for line in lines for v in line]
    if not values or max(values) <= CLIP * reference or any(min(line) > CLIP * reference for line in lines if line):
        return None
    return reference * 0.97, reference * CLIP


def plot(rows: list[dict[str, Any]], out_png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = _latest(rows)
    panels = sorted({(r["model"], r["eval"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 4.8), squeeze=False)
    for ax, (model, ev) in zip(axes[0], panels):
        lines, ref = defaultdict(list), None
        for r in rows:
            if (r["model"], r["eval"]) != (model, ev):
                continue
            if r["method"] == UNCOMPRESSED:
                ref = r
            else:
                lines[line_label(r)].append((r[RATIO_KEY], r["value"]))
        # tab20 pairs similar hues (dark/light blue …): use it only when tab10 runs out
        colours = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20").colors
        for i, (label, points) in enumerate(sorted(lines.items())):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="os^D"[i // len(colours) % 4], color=colours[i % len(colours)], label=label)
        if ref is not None:
            ax.axhline(ref["value"], color="black", linestyle="--", linewidth=1, label=f"uncompressed ({ref['value']:.4g})")
            if not ref.get("higher_is_better", True):
                ylim = perplexity_ylim(ref["value"], [[y for _, y in pts] for pts in lines.values()])
                if ylim:
                    ax.set_ylim(*ylim)
                    ax.set_title(f"{model} · {ev} (clipped at {CLIP}× uncompressed)")
        ax.set_xscale("log")
        # plain "2×, 5×, 10×" tick labels: ratios are read, not exponents
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}×"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}×" if x in (2, 3, 5, 20, 30, 50) else ""))
        if any(not r.get("higher_is_better", True) for r in rows if r["eval"] == ev):
            ax.set_yscale("log")  # perplexities span orders of magnitude
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            low, high = ax.get_ylim()
            if high / low < 10:  # within a decade the minor ticks are the only labels; across decades they collide
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_xlabel("embedding compression (bytes vs fp16)")
        ax.set_ylabel(ev)
        if not ax.get_title():
            ax.set_title(f"{model} · {ev}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def report(results: str | Path, out_png: str | Path | None = None) -> tuple[str, Path]:
    rows = read_results(results)
    if not rows:
        from .errors import EmbcompressError

        raise EmbcompressError(f"{results} holds no results; run `embcompress sweep --out {results}` first")
    out_png = Path(out_png) if out_png else Path(results).with_suffix(".png")
    return markdown_table(rows), plot(rows, out_png)
