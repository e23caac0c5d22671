"""Sweeps: models × methods × ratios × evaluations, one JSONL line per finished cell.

A sweep that is interrupted resumes where it stopped: cells already in the file are skipped.
Lines are written whole and flushed, so the file is valid JSONL at any moment; a torn last line
(power loss) is dropped when the file is read.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import EmbcompressError
from .evaluate.registry import EvalSettings, get_evaluation
from .methods import PRESETS, make_config, uses_calibration
from .models import load_model
from .surgery import compress_model, size_report

UNCOMPRESSED = "none"
REFERENCE_CACHE_BYTES = 3 << 30  # the base model's logits kept across a sweep's cells (SmolLM2, 8192 tokens: 1.6 GB)


@dataclass(frozen=True)
class MethodSpec:
    """``NAME`` or ``NAME:key=value,key=value`` as written on the command line."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "MethodSpec":
        from .methods import is_known, parse_method

        name, options = parse_method(text)
        if name != UNCOMPRESSED and not is_known(name):
            raise EmbcompressError(f"unknown method {name!r}; choose one of: {', '.join(sorted(PRESETS))}, {UNCOMPRESSED}")
        spec = cls(name, tuple(sorted(options.items())))
        if name != UNCOMPRESSED:
            make_config(name, **options)  # validates option names and values now, not hours later
        return spec

    @property
    def label(self) -> str:
        return self.name + ("" if not self.options else ":" + ",".join(f"{k}={v}" for k, v in self.options))

    def uses_calibration(self) -> bool:
        return self.name != UNCOMPRESSED and uses_calibration(make_config(self.name, **dict(self.options)))

    def takes_ratio(self) -> bool:
        if self.name == UNCOMPRESSED:
            return False
        return "ratio" in {f for f in make_config(self.name, **dict(self.options)).__dataclass_fields__}


def cell_key(row: dict[str, Any]) -> tuple:
    options = json.dumps(row.get("eval_options") or {}, sort_keys=True)
    distilled = json.dumps(row.get("distill") or {}, sort_keys=True)  # with and without: two cells
    return (row["model"], row["method"], row.get("ratio_target"), row["scope"], row["eval"], row.get("max_tokens"),
            options, distilled)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line from a hard kill: the cell is simply run again
    return rows


def append_result(path: str | Path, row: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_bytes() if path.exists() else b""
    with path.open("ab") as f:
        if text and not text.endswith(b"\n"):
            f.write(b"\n")  # never glue a new line onto a torn one
        f.write((json.dumps(row) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def machine() -> str:
    gpu = ""  # where the cells ran, and whether fp32 matmuls ran as TF32 there
    if torch.cuda.is_available():
        gpu = f", {torch.cuda.get_device_name()}{', TF32 matmuls' if torch.backends.cuda.matmul.allow_tf32 else ''}"
    return f"{platform.machine()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, {platform.python_version()}"


def plan(models, methods: list[MethodSpec], ratios, evals, texts=(None,)
         ) -> Iterator[tuple[str, MethodSpec, float | None, str, str | None]]:
    """Cells in build order: every evaluation (and text) of one compressed model follows the other, so
    each model is compressed (and distilled) once."""
    for model in models:
        for method in [MethodSpec(UNCOMPRESSED)] + [m for m in methods if m.name != UNCOMPRESSED]:
            for ratio in (ratios if method.takes_ratio() else [None]):
                for ev in evals:
                    for text in texts:
                        yield model, method, ratio, ev, text


@contextlib.contextmanager
def results_lock(out: str | Path):
    """One writer per results file: a second sweep on the same JSONL would run every cell again."""
    lock_path = Path(str(out) + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a")
    except OSError as e:
        raise EmbcompressError(f"cannot write next to {out} ({e.strerror}); choose a writable --out") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbcompressError(f"another sweep is writing {out}; wait for it to finish or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_sweep(models: list[str], methods: list[MethodSpec], ratios: list[float], evals: list[str], out: str | Path,
              scope: str = "input", settings: EvalSettings | None = None, log=print,
              calibration: str | None = None, distill=None, reference: bool = True,
              texts: list[str] | None = None, ray_address: str | None = None) -> list[dict[str, Any]]:
    """``calibration`` (a text, never the evaluation text) gives token counts to methods that use them and,
    with ``distill`` (a ``DistillConfig``), the text every compressed cell is distilled on. ``reference``:
    perplexity cells also report KL and top-1 agreement to the uncompressed model. ``texts``: what
    perplexity (or STS: sentence pairs) is measured on, one cell each (default: the reported text).
    ``ray_address``: run each compressed model's cells as a task on a Ray cluster ("local" starts one
    here; else ``ray.init(address=...)``); the rows still land in ``out`` through this process."""
    from .calibration import calibration_text, check_disjoint

    settings = settings or EvalSettings()
    reads_text = distill is not None or any(m.uses_calibration() for m in methods)
    if distill is not None and not calibration:
        raise EmbcompressError("--distill needs a --calibration text to distil on (e.g. squad-contexts)")
    calibration = calibration if reads_text else None  # a default text no method reads is not loaded
    check_disjoint(calibration, evals)
    from .texts import DEFAULT_PERPLEXITY_TEXT

    texts = list(texts) if texts else [None]
    evaluated_on = [t or DEFAULT_PERPLEXITY_TEXT for t in texts]
    calib = calibration_text(calibration, settings.data_dir, evaluated_on) if calibration else None
    for ev in evals:
        get_evaluation(ev)
    with results_lock(out):
        return _run_cells(models, methods, ratios, evals, texts, out, scope, settings, log, calibration, calib,
                          distill, reference, ray_address)


def _distill_fields(distill) -> dict[str, Any]:
    return {} if distill is None else {k: v for k, v in dataclasses.asdict(distill).items() if k != "progress"}


def _cell_options(settings: EvalSettings, text: str | None) -> dict[str, Any]:
    return {**settings.extra, **({"text": text} if text is not None else {})}


def _todo(models, methods, ratios, evals, texts, out, scope, settings, distill) -> tuple[list, int]:
    """(cells still to run, cells in all): a cell counts as done when a row without an error has its key."""
    done = {cell_key(r) for r in read_results(out) if "error" not in r}
    cells = list(plan(models, methods, ratios, evals, texts))
    # the key each cell's row will have (cell_key), so a finished cell is recognised whatever it records
    todo = [c for c in cells if cell_key({
        "model": c[0], "method": c[1].label, "ratio_target": c[2], "scope": scope, "eval": c[3],
        "max_tokens": settings.max_tokens, "eval_options": _cell_options(settings, c[4]),
        "distill": _distill_fields(distill) if c[1].name != UNCOMPRESSED else None}) not in done]
    return todo, len(cells)


def groups(cells: list) -> list[list]:
    """Cells that evaluate one compressed model (model, method, ratio), in plan order: the unit of work."""
    out: dict[tuple, list] = {}
    for c in cells:
        out.setdefault((c[0], c[1].label, c[2]), []).append(c)
    return list(out.values())


class CellRunner:
    """Runs a group of cells, keeping one base model (and its reference logits) loaded between groups."""

    def __init__(self, scope, settings, log, calibration, calib, distill, reference, n_texts):
        self.scope, self.settings, self.log = scope, settings, log
        self.calibration, self.calib, self.distill, self.reference = calibration, calib, distill, reference
        self.n_texts = n_texts
        self.loaded: dict[tuple[str, str], Any] = {}
        self.references: dict[Any, Any] = {}  # the base model's logits per text, scored once for all its cells
        self.calib_counts: dict[str, Any] = {}

    def rows(self, group: list, tag: str = "") -> Iterator[dict[str, Any]]:
        model_name, method, ratio = group[0][0], group[0][1], group[0][2]
        built = None
        for _, _, _, ev_name, text in group:
            ev = get_evaluation(ev_name)
            key = (model_name, ev.task)
            if key not in self.loaded:
                self.loaded.clear()  # one base model in memory at a time
                self.references.clear()
                self.loaded[key] = load_model(model_name, task=ev.task)
                built = None  # compressed from another base model
            base, tokenizer = self.loaded[key]
            if built is None:
                try:
                    built = _build(base, tokenizer, model_name, method, ratio, self.scope, self.calibration,
                                   self.calib, self.calib_counts, self.distill, self.log, tag)
                except EmbcompressError as e:  # e.g. a byte budget this method cannot reach: other cells still run
                    self.log(f"{tag} {model_name} {method.label} ratio={ratio} skipped: {e}")
                    return
            compressed, fields = built
            row = {"model": model_name, "method": method.label, "ratio_target": ratio, "scope": self.scope,
                   "eval": ev_name, "metric": ev.metric, "higher_is_better": ev.higher_is_better,
                   "max_tokens": self.settings.max_tokens}
            cell_options = _cell_options(self.settings, text)
            if cell_options:
                row["eval_options"] = cell_options
            row.update(fields)
            model = compressed  # a fine-tuning evaluation trains copies of it (finetune.run_protocol), never it
            self.log(f"{tag} {model_name} {method.label} ratio={ratio} {ev_name}"
                     f"{'' if text is None else ' on ' + text} ...")
            cell_settings = dataclasses.replace(self.settings, extra=cell_options)
            if self.reference and ev.name == "perplexity" and method.name != UNCOMPRESSED:
                from .evaluate.perplexity import CachedReference

                if text not in self.references:  # closeness to the uncompressed model
                    self.references[text] = CachedReference(base, max_bytes=REFERENCE_CACHE_BYTES // self.n_texts)
                cell_settings.reference = self.references[text]
            t0 = time.perf_counter()
            result = ev.run(model, tokenizer, cell_settings)
            row.update(value=result.pop("value"), details=result, eval_seconds=round(time.perf_counter() - t0, 1),
                       machine=machine(), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            self.log(f"    {ev.metric} = {row['value']:.4g}  (embedding {row['embedding_ratio']:.2f}x params, "
                     f"{row['bytes_ratio_vs_fp16']:.2f}x bytes vs fp16)")
            yield row
            del model


def _run_cells(models, methods, ratios, evals, texts, out, scope, settings, log, calibration, calib, distill, reference,
               ray_address=None):
    todo, total = _todo(models, methods, ratios, evals, texts, out, scope, settings, distill)
    log(f"{total} cells, {total - len(todo)} already in {out}, {len(todo)} to run")
    work = groups(todo)
    if ray_address is not None:
        from .ray_sweep import run_on_ray

        run_on_ray(work, out, log, ray_address, scope=scope, settings=settings, calibration=calibration, calib=calib,
                   distill=distill, reference=reference, n_texts=len(texts))
        return read_results(out)
    runner = CellRunner(scope, settings, log, calibration, calib, distill, reference, len(texts))
    done = 0
    for group in work:
        for row in runner.rows(group, f"[{done + 1}/{len(todo)}]"):
            append_result(out, row)
            done += 1
    return read_results(out)


def _build(base, tokenizer, model_name, method, ratio, scope, calibration, calib, calib_counts, distill, log, tag):
    """(the model a method's cells evaluate, the row fields that describe how it was made)."""
    from .calibration import token_counts

    if method.name == UNCOMPRESSED:
        sizes = size_report(base)
        return base, size_fields(sizes, sizes, base)
    model = copy.deepcopy(base)
    fields: dict[str, Any] = {}
    options = dict(method.options)
    if ratio is not None:
        options["ratio"] = ratio
    t0 = time.perf_counter()
    config = make_config(method.name, **options)
    counts = None
    if calib is not None and uses_calibration(config):
        if model_name not in calib_counts:  # tokenize the calibration text once per model
            calib_counts[model_name] = token_counts(tokenizer, calib, model.get_input_embeddings().num_embeddings)
        counts = calib_counts[model_name]
        fields["calibration"] = calibration
    info = compress_model(model, config, scope=scope, row_weights=counts)
    fields["fit_seconds"] = round(time.perf_counter() - t0, 2)
    fields["config"] = info["config"]
    if distill is not None:
        from .distill import distill as run_distill

        log(f"{tag} {model_name} {method.label} ratio={ratio}: distilling on {calibration} ...")
        report = run_distill(model, base, tokenizer, calib, distill)
        fields["distill"] = _distill_fields(distill)
        fields["distill_report"] = {k: v for k, v in report.items() if k != "config"}
        fields["calibration"] = calibration
    fields.update(size_fields(info["before"], info["after"], model))
    return model, fields


def size_fields(before: dict[str, int], after: dict[str, int], model) -> dict[str, Any]:
    emb = model.get_input_embeddings()
    dense_params = emb.num_embeddings * emb.embedding_dim
    return {
        "embedding_params": after["embedding_parameters"],
        "embedding_bytes": after["embedding_bytes"],
        "embedding_ratio": dense_params / after["embedding_parameters"],
        "bytes_ratio_vs_fp16": dense_params * 2 / after["embedding_bytes"],
        "model_params_before": before["model_parameters"],
        "model_params_after": after["model_parameters"],
        "model_bytes_before": before["model_bytes"],
        "model_bytes_after": after["model_bytes"],
    }
