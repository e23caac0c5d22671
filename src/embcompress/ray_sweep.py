"""Sweeps on a Ray cluster (``embcompress sweep ... --ray [ADDRESS]``, extra ``embcompress[ray]``).

Each compressed model's cells (one model × method × ratio, all its evaluations and texts) run as one
Ray task that loads, compresses and evaluates on a worker, asking for the CPUs (and a GPU, where the
cluster has them) a cell needs. Only this driver writes the results file, a whole line per finished
cell, so it stays valid JSONL whatever happens; a task that raises is recorded as a row with an
``error`` and runs again on the next resume; Ctrl-C cancels the tasks still out.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from .errors import EmbcompressError
from .sweep import CellRunner, append_result, machine


def _run_group(group: list, threads: int, options: dict[str, Any]) -> list[dict[str, Any]]:
    """On a worker: the rows of one group of cells (a cell that fails becomes a row with its error)."""
    import torch

    torch.set_num_threads(threads)  # as many as the driver's own serial sweep would use: the same sums
    runner = CellRunner(log=lambda *a: None, **options)
    rows = []
    try:
        for row in runner.rows(group):
            rows.append(row)
    except Exception as e:  # one cell's fault must not cost the others: the driver records it
        first = (str(e).strip().splitlines() or [""])[0][:300]
        rows.append({"error": f"{type(e).__name__}: {first}", "traceback": traceback.format_exc()[-2000:]})
    return rows


def _init(address: str, threads: int):
    try:
        import ray
    except ImportError:
        raise EmbcompressError("--ray needs the ray extra: pip install 'embcompress[ray]'") from None
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(num_cpus=max(threads, 1), include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise EmbcompressError(f"cannot reach the Ray cluster at {address} ({first}); start it with "
                                   "`ray start --head` or give its address (e.g. --ray ray://host:10001)") from None
    return ray


def run_on_ray(work: list[list], out, log, address: str, threads: int | None = None, **options) -> None:
    import torch

    threads = threads or torch.get_num_threads()
    ray = _init(address, threads)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(_run_group)
    pending = {task.remote(group, threads, options): group for group in work}
    log(f"ray: {len(pending)} tasks ({threads} CPUs{', 1 GPU' if gpus else ''} each) on {address}")
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(ready[0])
            try:
                rows = ray.get(ready[0])
            except Exception as e:  # the worker itself died (out of memory, killed)
                rows = [{"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"}]
            for row in rows:
                if "error" in row:  # what the cell was, so that a resume runs it again and a reader can tell
                    model, method, ratio = group[0][0], group[0][1], group[0][2]
                    row = {"model": model, "method": method.label, "ratio_target": ratio, "scope": options["scope"],
                           "evals": [c[3] for c in group], **row, "machine": machine(),
                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
                    log(f"    {model} {method.label} ratio={ratio} failed: {row['error']}")
                else:
                    log(f"    {row['model']} {row['method']} ratio={row['ratio_target']} {row['eval']}: "
                        f"{row['metric']} = {row['value']:.4g}")
                append_result(out, row)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
