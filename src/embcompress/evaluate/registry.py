"""Evaluations by name, as the sweep and the CLI run them: (model, tokenizer, settings) → result row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import EmbcompressError


@dataclass
class EvalSettings:
    data_dir: str | None = None
    max_tokens: int | None = None
    window: int | None = None
    stride: int | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    # a model to measure closeness to (KL, top-1 agreement); not part of a cell's recorded options
    reference: Any = field(default=None, repr=False, compare=False)


@dataclass
class Evaluation:
    name: str
    task: str  # which model head it needs (models.TASKS)
    metric: str
    higher_is_better: bool
    run: Callable[..., dict[str, Any]]  # (model, tokenizer, settings) -> {"value": ..., **details}
    trains: bool = False  # fine-tunes copies of the model it is given (takes --finetune-option)
    options: Callable[[], type] | None = None  # its typed settings class (fine-tuning), for checking options early
    summary: Callable[[dict[str, Any], str], str] = lambda r, model: f"{model}: {r['value']}"  # one line for people

    def check_options(self, options: dict[str, Any]) -> None:
        """Fail on an option this evaluation does not take, before any cell runs."""
        if self.options is None:
            raise EmbcompressError(f"the {self.name} evaluation takes no fine-tuning options; drop --finetune-option")
        self.options().from_options(options)


def _perplexity(model, tokenizer, s: EvalSettings) -> dict[str, Any]:
    from ..texts import DEFAULT_PERPLEXITY_TEXT, TEXTS, read_text
    from .perplexity import causal_perplexity

    text = s.extra.get("text", DEFAULT_PERPLEXITY_TEXT)  # in the cell's options only when not the default
    res = causal_perplexity(model, tokenizer, read_text(text, s.data_dir), window=s.window, stride=s.stride,
                            max_tokens=s.max_tokens, progress=s.progress, reference=s.reference)
    label = "wikitext-2-raw test" if text == DEFAULT_PERPLEXITY_TEXT else (text if text in TEXTS else f"file {text}")
    return {"value": res.perplexity, "data": label, **res.as_dict()}


def _sts(model, tokenizer, s: EvalSettings) -> dict[str, Any]:
    from ..texts import DEFAULT_PAIRS, read_pairs
    from .sts import sts_zero_shot

    pairs = s.extra.get("text", DEFAULT_PAIRS)
    res = sts_zero_shot(model, tokenizer, *read_pairs(pairs, s.data_dir), progress=s.progress)
    return {"value": res.spearman, "pearson": res.pearson, "pairs": res.pairs,
            "data": "STS-B dev" if pairs == DEFAULT_PAIRS else pairs}


def _mlm(model, tokenizer, s: EvalSettings) -> dict[str, Any]:
    from ..data import wikitext2_test
    from .mlm import mlm_perplexity

    res = mlm_perplexity(model, tokenizer, wikitext2_test(s.data_dir), max_lines=s.extra.get("max_lines"),
                         progress=s.progress)
    return {"value": res.perplexity, "data": "wikitext-2-raw test (= wikitext-103 raw test)", **res.as_dict()}


def _glue(task: str):
    def run(model, tokenizer, s: EvalSettings) -> dict[str, Any]:
        from .glue import GlueSettings, run_glue

        settings = GlueSettings.from_options({"progress": s.progress, **s.extra.get("finetune", {})})
        return run_glue(model, tokenizer, task, settings, s.data_dir)

    return run


def _glue_settings():
    from .glue import GlueSettings

    return GlueSettings


def _squad_settings():
    from .squad import SquadSettings

    return SquadSettings


def _squad(model, tokenizer, s: EvalSettings) -> dict[str, Any]:
    from .squad import SquadSettings, run_squad

    settings = SquadSettings.from_options({"progress": s.progress, **s.extra.get("finetune", {})})
    return run_squad(model, tokenizer, settings, s.data_dir)


def _perplexity_summary(r, model):
    line = (f"{model}: perplexity {r['value']:.4f} over {r['tokens_scored']:,} tokens (window {r['window']}, "
            f"stride {r['stride']}, bos {r['bos']}), {r['tokens_per_second']:.0f} tokens/s")
    if "kl_mean" in r:
        line += (f"\nagainst {r['reference']}: mean KL {r['kl_mean']:.4f} nats, p99 KL {r['kl_p99']:.4f}, "
                 f"top-1 agreement {r['top1_agreement']:.2f} %")
    return line


def _sts_summary(r, model):
    return f"{model}: {r['data']} Spearman {r['value']:.2f} (Pearson {r['pearson']:.2f}, {r['pairs']} pairs)"


def _mlm_summary(r, model):
    return (f"{model}: masked-LM pseudo-perplexity {r['value']:.3f} over {r['masked_tokens']:,} masked tokens "
            f"in {r['lines']:,} lines")


def _protocol_line(r):
    """How a fine-tuned number was reached: the seeds behind its mean, and where its learning rate came from."""
    n = len(r.get("per_seed", [r["value"]]))
    chosen = (" (chosen on held-out training data: " + ", ".join(f"{k} → {v:.2f}" for k, v in r["lr_search"].items())
              + ")") if "lr_search" in r else " (given)"
    if r.get("per_seed") == []:  # seeds=0: the choice alone, scored on held-out training data
        return f"\nno dev run (seeds 0); lr {r['lr']:g}{chosen}"
    return f"\n{r['metric']} {r['value']:.2f} ± {r.get('std', 0.0):.2f} over {n} seed(s); lr {r['lr']:g}{chosen}"


def _glue_summary(r, model):
    metrics = ("matthews", "accuracy", "f1", "pearson", "spearman")
    return (f"{model} {r['task']} dev ({r['dev_examples']} examples, trained on {r['train_examples']}): "
            + ", ".join(f"{k} {r[k]:.2f}" for k in metrics if k in r) + _protocol_line(r))


def _squad_summary(r, model):
    return (f"{model} squad ({r['eval_examples']} questions, trained on {r['train_examples']}): "
            f"exact match {r['exact_match']:.2f}, F1 {r['f1']:.2f}{_protocol_line(r)}\n{r['split']}")


EVALUATIONS: dict[str, Evaluation] = {
    "perplexity": Evaluation("perplexity", "causal-lm", "perplexity", False, _perplexity, summary=_perplexity_summary),
    "sts": Evaluation("sts", "encoder", "spearman x100", True, _sts, summary=_sts_summary),
    "mlm-perplexity": Evaluation("mlm-perplexity", "masked-lm", "pseudo-perplexity", False, _mlm, summary=_mlm_summary),
    **{f"glue-{t}": Evaluation(f"glue-{t}", "encoder", m, True, _glue(t), trains=True, options=_glue_settings,
                               summary=_glue_summary)
       for t, m in (("cola", "matthews"), ("sst2", "accuracy"), ("mrpc", "f1"), ("stsb", "spearman"), ("rte", "accuracy"))},
    "squad": Evaluation("squad", "encoder", "f1 (article split)", True, _squad, trains=True, options=_squad_settings,
                        summary=_squad_summary),
}


def get_evaluation(name: str) -> Evaluation:
    if name not in EVALUATIONS:
        raise EmbcompressError(f"unknown evaluation {name!r}; choose one of: {', '.join(EVALUATIONS)}")
    return EVALUATIONS[name]
