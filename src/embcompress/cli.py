"""The `embcompress` command: a thin layer over the library (click)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import click

from .errors import EmbcompressError

DEFAULT_RESULTS = "results/sweep.jsonl"
# the project's best method per byte on the causal LMs (benchmarks/targets.md), beside the paper's two in the main job
BEST_METHOD = "tiered-pq:importance=calibration,prior=0.5"


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _options(pairs: tuple[str, ...]) -> dict:
    from .methods import parse_option

    return dict(parse_option(pair) for pair in pairs)


device_map_option = click.option(
    "--device-map", "device_map", default=None,
    help="Place the model with accelerate: auto, balanced, sequential, a device (cpu, cuda:0), or a JSON object of "
    'module → device, inline or a .json file (e.g. {"model.layers.0": 0, "lm_head": "cpu"}); "disk" offloads.')
data_dir_option = click.option("--data-dir", type=click.Path(), default=None,
                               help="Folder with the evaluation data (default ../shared/data or $EMBCOMPRESS_DATA).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="embcompress")
def cli():
    """Compress the token-embedding matrix of pretrained Transformers and measure what it costs."""


@cli.command()
def models():
    """List the built-in offline models (vocab × hidden, parameters, tied head)."""
    from .models import cache_dir, describe_builtins

    for row in describe_builtins():
        if "missing" in row:
            click.echo(f"{row['name']:14s} not installed: {row['install']}")
        else:
            click.echo(f"{row['name']:14s} {row['vocab']:>7,} × {row['hidden']:<4} {row['parameters'] / 1e6:7.1f} M params  "
                       f"head {'tied' if row['tied'] else 'untied/none'}  {row['description']}")
    click.echo(f"(converted GGUF models are cached in {cache_dir()}; set EMBCOMPRESS_CACHE to move it)")


@cli.command()
def methods():
    """List the compression methods and their options."""
    import dataclasses

    from .methods import PRESETS, load_external_methods, make_config

    load_external_methods()  # methods of your own, named in $EMBCOMPRESS_METHODS
    for name in sorted(PRESETS):
        cfg = make_config(name)
        opts = ", ".join(f"{f.name}={getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg) if f.name != "method")
        click.echo(f"{name}: {opts}")


def _distill_config(distill: bool, distill_opts, calibration: str | None):
    """The DistillConfig that --distill and --distill-option ask for, or None."""
    if not (distill or distill_opts):
        return None
    from .distill import DistillConfig

    if not distill:
        raise EmbcompressError("--distill-option given without --distill; add --distill")
    if calibration in (None, "none"):
        raise EmbcompressError("--distill needs a --calibration text to distil on (e.g. squad-contexts)")
    return DistillConfig.from_options(_options(distill_opts))


@cli.command()
@click.argument("model")
@click.option("--method", "-m", required=True, help="Method name (see `embcompress methods`).")
@click.option("--ratio", type=float, help="Target compression ratio (parameters, as in the paper).")
@click.option("--rank", type=int, help="Explicit rank / latent size instead of --ratio.")
@click.option("--option", "-o", "opts", multiple=True, help="Method option key=value, repeatable.")
@click.option("--scope", type=click.Choice(["input", "tied", "head", "both"]), default="input", show_default=True,
              help="input: output head keeps the original matrix (the paper's); tied: head uses the compressed one; "
              "head: only an untied output head; both: input embedding and head, each compressed on its own.")
@click.option("--head-method", default=None, help="With --scope both: the head's method (default: --method).")
@click.option("--head-ratio", type=float, default=None, help="With --scope both: the head's target ratio.")
@click.option("--head-option", "head_opts", multiple=True, help="With --scope both: head method option key=value.")
@click.option("--task", default=None, help="Model head to load (causal-lm, encoder, masked-lm, ...).")
@click.option("--out", required=True, type=click.Path(), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--calibration", default=None,
              help="Text for token importance (squad-contexts or a file); refused if it is the evaluation text.")
@click.option("--distill", is_flag=True, help="Then tune the compressed values against the original model on the "
              "--calibration text (KL of next-token distributions); stored format and bytes unchanged.")
@click.option("--distill-option", "distill_opts", multiple=True,
              help="Distillation setting key=value, repeatable (steps, batch_size, seq_len, tokens, lr, seed).")
@device_map_option
@click.option("--stream", is_flag=True, help="Read only the embedding/head from the model's safetensors shards and "
              "copy every other tensor through, in its stored dtype: memory about the embedding's, whatever the model's size.")
@data_dir_option
def compress(model, method, ratio, rank, opts, scope, head_method, head_ratio, head_opts, task, out, overwrite,
             calibration, distill, distill_opts, device_map, stream, data_dir):
    """Compress MODEL's input embedding (and/or output head, see --scope) and save it to --out."""
    from .methods import make_config
    from .models import load_model
    from .serialization import check_target, save_compressed
    from .surgery import compress_model

    check_target(out, overwrite)  # before the model loads: the same checks the save makes
    options = _options(opts)
    if ratio is not None:
        options["ratio"] = ratio
    if rank is not None:
        options["rank"] = rank
    config = make_config(method, **options)
    head_config = _head_config(scope, method, head_method, head_ratio, head_opts)
    from .calibration import calibration_text, token_counts

    distill_config = _distill_config(distill, distill_opts, calibration)
    calib = calibration_text(calibration, data_dir) if calibration else None
    extra = {"source_model": model}
    if calibration:
        extra["calibration"] = _text_identity(calibration)
    presets = {"preset": method, "head_preset": head_method}
    placement = _compress_device_map(device_map, stream)
    if stream:
        info = _stream(model, out, config, scope, head_config, calib, distill_config, overwrite, extra, presets)
        _print_sizes(info)
        click.echo(f"saved to {out}")
        return
    m, tok = load_model(model, task=task, device_map=placement)
    teacher = copy.deepcopy(m) if distill_config is not None else None
    counts = None if calib is None else token_counts(tok, calib, m.get_input_embeddings().num_embeddings)
    # the head's rows weigh by the same counts: on SmolLM2's validation text they did a little better than the
    # model's own predicted probability mass (benchmarks/untied_head.md)
    info = compress_model(m, config, scope=scope, row_weights=counts, head_config=head_config, **presets)
    if teacher is not None:
        from .distill import distill as run_distill

        extra["distill"] = run_distill(m, teacher, tok, calib, distill_config)
        del teacher
        d = extra["distill"]
        if d["steps"]:
            click.echo(f"distilled {d['values']:,} values in {d['tensors']} tensors over {d['steps']} steps "
                       f"({d['seconds']:.0f} s): {d['loss']} {d['loss_first']:.4f} → {d['loss_last']:.4f}")
        else:
            click.echo(f"distillation: {d['note']}")
    save_compressed(m, out, tokenizer=tok, overwrite=overwrite, extra=extra)
    _print_sizes(info)
    click.echo(f"saved to {out}")


def _stream(model, out, config, scope, head_config, calib, distill_config, overwrite, extra, presets):
    """compress --stream: the model is never loaded; only the matrices being compressed are read."""
    import transformers

    from .calibration import token_counts
    from .models import resolve, text_config
    from .serialization import load_config
    from .streaming import Shards, stream_compress

    if distill_config is not None:
        raise EmbcompressError("--distill needs the whole model in memory; drop --stream")
    source = Path(resolve(model))
    if not source.is_dir():
        raise EmbcompressError(f"--stream reads a local model folder of safetensors files; {model} is not one "
                               "(download it first, or compress without --stream)")
    Shards(source)  # the shards' checks before anything else is read
    try:
        tok = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, KeyError, ImportError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EmbcompressError(f"cannot load the tokenizer of {source} ({first}); give the model's whole folder") from None
    vocab = text_config(load_config(source)).vocab_size
    counts = None if calib is None else token_counts(tok, calib, vocab)
    return stream_compress(source, out, config, scope=scope, tokenizer=tok, overwrite=overwrite, extra=extra,
                           row_weights=counts, head_config=head_config, **presets)


def _compress_device_map(text, stream: bool):
    from .models import parse_device_map

    placement = parse_device_map(text)
    if placement is not None and stream:
        raise EmbcompressError("--stream never loads the model, so it takes no --device-map; drop one of them")
    if isinstance(placement, dict) and "disk" in placement.values():
        raise EmbcompressError("compress cannot save weights offloaded to disk; for a model larger than memory use --stream")
    return placement


def _head_config(scope, method, head_method, head_ratio, head_opts):
    """The head's config for --scope both (None: the head takes --method's); refused with other scopes."""
    from .methods import make_config

    if head_method is None and head_ratio is None and not head_opts:
        return None
    if scope != "both":
        raise EmbcompressError("--head-method/--head-ratio/--head-option need --scope both; with --scope head, "
                               "give the head's method as --method")
    options = _options(head_opts)
    if head_ratio is not None:
        options["ratio"] = head_ratio
    return make_config(head_method or method, **options)


def _text_identity(source: str) -> dict:
    """A named text by name; a file by name and sha256 (so info can say what calibrated a folder)."""
    import hashlib

    from .texts import TEXTS

    if source in TEXTS:
        return {"name": source}
    return {"file": Path(source).name, "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest()}


def _part_line(part: dict, options: bool) -> str:
    """``tiered-pq (tiered) {options}``: the name the user gave, the module type, and the options."""
    preset, kind = part.get("preset"), part["method"]
    name = kind if preset in (None, kind) else f"{preset} ({kind})"
    config = {k: v for k, v in part.get("config", {}).items() if k != "method"}
    return name + (" " + json.dumps(config) if options and config else "")


def _print_sizes(info, options: bool = False):
    b, a = info["before"], info["after"]
    scope = info["scope"]
    head = info.get("head") or {}
    parts = {"input": info} if scope in ("input", "tied") else {"head": info} if scope == "head" else \
        {"input": info, "head": head}
    for role, part in parts.items():
        what = "input embedding" + (" and tied head" if scope == "tied" else "") if role == "input" else "output head"
        click.echo(f"{what}: {_part_line(part, options)} ({scope} scope)")
    click.echo(f"embedding: {b['embedding_parameters']:,} → {a['embedding_parameters']:,} params, "
               f"{b['embedding_bytes']:,} → {a['embedding_bytes']:,} bytes "
               f"({b['embedding_bytes'] / a['embedding_bytes']:.2f}×; "
               f"{b['embedding_parameters'] * 2 / a['embedding_bytes']:.2f}× against fp16, the ratio methods target)")
    if a.get("head_bytes"):
        before_head = b["head_bytes"] or b["embedding_bytes"]  # a tied head was the embedding's matrix
        before_params = b["head_parameters"] or b["embedding_parameters"]
        click.echo(f"head:      {before_params:,} → {a['head_parameters']:,} params, {before_head:,} → "
                   f"{a['head_bytes']:,} bytes ({before_params * 2 / a['head_bytes']:.2f}× against fp16)")
    click.echo(f"model:     {b['model_parameters']:,} → {a['model_parameters']:,} params, "
               f"{b['model_bytes']:,} → {a['model_bytes']:,} bytes")


@cli.command()
@click.argument("folder", type=click.Path())
@click.option("--no-verify", is_flag=True, help="Skip checking every file against its recorded sha256.")
def info(folder, no_verify):
    """What a compressed FOLDER holds: method, scope, parameters and bytes before/after; checks its files."""
    from .serialization import read_meta, verify_folder

    meta = read_meta(folder)
    _print_sizes(meta, options=True)
    click.echo(f"source model: {meta.get('source_model', '?')}  class: {meta['model_class']}")
    if "calibration" in meta:
        click.echo("calibration: " + json.dumps(meta["calibration"]))
    if "distill" in meta:
        click.echo("distilled: " + json.dumps({k: v for k, v in meta["distill"].items() if k != "config"}))
    if no_verify:
        click.echo("checksums: not verified (--no-verify)")
    else:
        checked = verify_folder(folder)
        click.echo(f"checksums: all {len(checked)} files match ({', '.join(checked)})")


@cli.command()
@click.argument("model")
@click.argument("prompt")
@click.option("--max-new-tokens", type=click.IntRange(1, 4096), default=40, show_default=True)
@click.option("--sample", is_flag=True, help="Sample (temperature 1) instead of greedy decoding.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@click.option("--compare", "compare_with", default=None,
              help="Also generate with this model (e.g. the original) and print both.")
def generate(model, prompt, max_new_tokens, sample, seed, compare_with):
    """Continue PROMPT with MODEL (name, folder, GGUF file or compressed folder) and print tokens/s."""
    from .generation import generate_text

    for name in ([compare_with] if compare_with else []) + [model]:
        result = generate_text(name, prompt, max_new_tokens=max_new_tokens, sample=sample, seed=seed)
        if compare_with:
            click.echo(f"== {name}")
        click.echo(prompt + result["text"])
        click.echo(f"({result['new_tokens']} new tokens in {result['seconds']:.2f} s, "
                   f"{result['tokens_per_second']:.1f} tokens/s)", err=True)


@cli.group("eval")
def eval_group():
    """Evaluate a model or a compressed folder."""


def _settings(data_dir, max_tokens, window, stride):
    from .evaluate.perplexity import check_window
    from .evaluate.registry import EvalSettings

    if max_tokens is not None and max_tokens < 2:
        raise EmbcompressError(f"--max-tokens must be at least 2 (got {max_tokens})")
    check_window(window, stride)  # before any model loads
    return EvalSettings(data_dir=data_dir, max_tokens=max_tokens, window=window, stride=stride)


def _run_evaluation(name: str, model: str, settings, as_json: bool, device_map: str | None = None) -> None:
    """Load MODEL (name, folder or compressed folder) for evaluation NAME, run it, print the result."""
    from .device import input_device
    from .evaluate.registry import get_evaluation
    from .models import load_any, parse_device_map

    ev = get_evaluation(name)
    m, tok = load_any(model, task=ev.task, device_map=parse_device_map(device_map))
    reference = settings.reference
    if reference is not None:
        ours, theirs = m.get_input_embeddings().num_embeddings, reference.get_input_embeddings().num_embeddings
        if ours != theirs:
            raise EmbcompressError(f"the reference has {theirs:,} tokens in its vocabulary, {model} has {ours:,}; "
                                   "give the model it was compressed from as --reference")
        reference.to(input_device(m))
    result = ev.run(m, tok, settings)
    if reference is not None:
        result["reference"] = getattr(reference, "embcompress_name", "reference")
    click.echo(json.dumps(result | {"model": model}) if as_json else ev.summary(result, model))


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@eval_group.command()
@click.argument("model")
@data_dir_option
@click.option("--max-tokens", type=int, default=None, help="Score only the first N tokens (quick runs).")
@click.option("--window", type=int, default=None, help="Window length (default: model context, capped at 1024).")
@click.option("--stride", type=int, default=None, help="Stride (default: half the window).")
@click.option("--text", default=None, help="Score this text instead: a named text (see embcompress.texts: "
              "squad-val, sst2-train, mrpc-train, ...) or any UTF-8 file.")
@click.option("--reference", default=None, help="Also report mean/p99 KL and top-1 agreement against this model "
              "(default for a compressed folder: its source model, when it can be loaded).")
@click.option("--no-reference", is_flag=True, help="Skip the closeness metrics (half the time).")
@json_option
@device_map_option
def perplexity(model, data_dir, max_tokens, window, stride, text, reference, no_reference, as_json, device_map):
    """Causal-LM perplexity of MODEL (name, folder or compressed folder) on WikiText-2 raw test (or --text)."""
    settings = _settings(data_dir, max_tokens, window, stride)
    if text is not None:
        from .texts import read_text

        read_text(text, data_dir)  # a missing, empty or binary text fails before any model loads
        settings.extra["text"] = text
    if not no_reference:
        settings.reference = _reference_model(model, reference)
    _run_evaluation("perplexity", model, settings, as_json, device_map)


def _reference_model(model: str, reference: str | None):
    """The model to measure closeness against: --reference, else a compressed folder's source model."""
    from .models import load_model
    from .serialization import is_compressed_dir, read_meta

    if reference is None and Path(model).is_dir() and is_compressed_dir(model):
        source = read_meta(model).get("source_model")
        if not isinstance(source, str):
            return None
        try:
            ref, _ = load_model(source, task="causal-lm")
        except EmbcompressError as e:
            click.echo(f"note: no closeness metrics, the source model {source} cannot be loaded ({e})", err=True)
            return None
        ref.embcompress_name = source
        return ref
    if reference is None:
        return None
    ref, _ = load_model(reference, task="causal-lm")
    ref.embcompress_name = reference
    return ref


@eval_group.command()
@click.argument("model")
@data_dir_option
@click.option("--text", default=None, help="Sentence pairs: stsb-dev (default, reported) or stsb-train (validation).")
@json_option
@device_map_option
def sts(model, data_dir, text, as_json, device_map):
    """Zero-shot STS-B dev Spearman ×100 of MODEL (a sentence encoder, e.g. minilm-l6)."""
    settings = _settings(data_dir, None, None, None)
    if text is not None:
        settings.extra["text"] = text
    _run_evaluation("sts", model, settings, as_json, device_map)


@eval_group.command("mlm-perplexity")
@click.argument("model")
@data_dir_option
@click.option("--max-lines", type=int, default=None, help="Evaluate only the first N kept lines (quick runs).")
@json_option
@device_map_option
def mlm_perplexity_cmd(model, data_dir, max_lines, as_json, device_map):
    """Masked-LM pseudo-perplexity of MODEL with the paper's protocol (e.g. bert-base-uncased)."""
    settings = _settings(data_dir, None, None, None)
    settings.extra["max_lines"] = max_lines
    _run_evaluation("mlm-perplexity", model, settings, as_json, device_map)


def finetune_options(f):
    """The fine-tuning options GLUE and SQuAD share; unset ones keep each task's (the paper's) defaults."""
    options = [
        click.option("--max-train", type=int, default=None, help="Cap the training examples (CPU runs)."),
        click.option("--max-eval", type=int, default=None, help="Cap the evaluation examples."),
        click.option("--epochs", type=float, default=None, help="Epochs (default: GLUE 3, SQuAD 2)."),
        click.option("--batch-size", type=int, default=None, help="Batch size (default: GLUE 32, SQuAD 16)."),
        click.option("--lr", type=float, default=None,
                     help="Learning rate (default: the best of the grid on a held-out part of the training set)."),
        click.option("--seeds", type=int, default=None, help="Runs with seeds 22, 23, … (default 3: mean ± std)."),
        click.option("--embedding-policy", type=click.Choice(["frozen", "decoder", "all", "paper"]), default="frozen",
                     show_default=True, help="How the embedding trains, identical for every method."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _finetune_settings(data_dir, max_train, max_eval, epochs, batch_size, lr, seeds, embedding_policy):
    settings = _settings(data_dir, None, None, None)
    settings.extra["finetune"] = dict(lr=lr, seeds=seeds, batch_size=batch_size, epochs=epochs,
                                      max_train_examples=max_train, max_eval_examples=max_eval,
                                      embedding_policy=embedding_policy)
    return settings


@eval_group.command("glue")
@click.argument("task")
@click.argument("model")
@data_dir_option
@finetune_options
@json_option
def glue_cmd(task, model, data_dir, as_json, **finetune):
    """Fine-tune MODEL on GLUE TASK (cola, sst2, mrpc, stsb, rte) and report the dev-set metrics."""
    from .evaluate.glue import get_task

    name = f"glue-{get_task(task).name}"  # an unknown task fails before any model is loaded
    _run_evaluation(name, model, _finetune_settings(data_dir, **finetune), as_json)


@eval_group.command("squad")
@click.argument("model")
@data_dir_option
@finetune_options
@json_option
def squad_cmd(model, data_dir, as_json, **finetune):
    """Fine-tune a span head on SQuAD v1.1 (dev split by article) and report exact match and F1."""
    _run_evaluation("squad", model, _finetune_settings(data_dir, **finetune), as_json)


@cli.command()
@click.option("--models", default="smollm2-135m", show_default=True, help="Comma-separated models.")
@click.option("--methods", "methods_", default=f"svd;autoencoder-fast;{BEST_METHOD}", show_default=True,
              help="Comma-separated methods; with options (name:key=value,key=value) separate methods with ';'.")
@click.option("--ratios", default="2.5,5,10", show_default=True, help="Comma-separated target ratios.")
@click.option("--evals", default="perplexity", show_default=True, help="Comma-separated evaluations.")
@click.option("--scope", type=click.Choice(["input", "tied"]), default="input", show_default=True)
@click.option("--max-tokens", type=int, default=8192, show_default=True, help="Tokens scored per perplexity (0 = all).")
@click.option("--window", type=int, default=None)
@click.option("--stride", type=int, default=None)
@data_dir_option
@click.option("--out", default=DEFAULT_RESULTS, show_default=True, type=click.Path(), help="Results JSONL (appended, resumable).")
@click.option("--plot", "plot_path", default=None, type=click.Path(), help="Plot PNG (default: next to --out).")
@click.option("--calibration", default="squad-contexts", show_default=True,
              help="Text for token importance, read only by methods that use it (a named text, a mix such as "
              "squad+glue, or a file; 'none' for none); refused if it is the evaluation text.")
@click.option("--distill", is_flag=True, help="Distil every compressed cell against its model on the calibration text "
              "(recorded as its own cell, so the same sweep without it is the ablation).")
@click.option("--distill-option", "distill_opts", multiple=True, help="Distillation setting key=value, repeatable.")
@click.option("--no-reference", is_flag=True, help="Skip KL and top-1 agreement to the uncompressed model (faster).")
@click.option("--finetune-option", "finetune_opts", multiple=True,
              help="GLUE/SQuAD setting key=value, repeatable (e.g. max_train_examples=1000, epochs=2).")
@click.option("--text", default=None, help="What perplexity (or STS: sentence pairs) is measured on, comma-separated "
              "for several (one cell each, the model compressed once): a named text (qnli-dev, squad-val, ...) or a "
              "UTF-8 file; default the reported one.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              help="Run each compressed model's cells as a task on a Ray cluster: bare --ray starts one on this "
              "machine; --ray ADDRESS joins one (auto, ray://host:10001). Needs embcompress[ray].")
def sweep(models, methods_, ratios, evals, scope, max_tokens, window, stride, data_dir, out, plot_path, calibration,
          distill, distill_opts, no_reference, finetune_opts, text, ray_address):
    """Run models × methods × ratios × evaluations, then print the table and write the plot.

    With no options this is the main job: smollm2-135m, SVD, the paper's autoencoder (fast preset) and
    the project's best method at CR 2.5, 5, 10, perplexity on the first 8192 tokens of WikiText-2 raw
    test, with KL and top-1 agreement to the uncompressed model.
    """
    from .report import report
    from .sweep import MethodSpec, run_sweep

    # with options (name:key=value,...) methods are separated by ';', else by ','
    method_texts = methods_.split(";") if (";" in methods_ or ":" in methods_) else _split(methods_)
    specs = [MethodSpec.parse(t) for t in method_texts if t.strip()]
    try:
        ratio_values = [float(r) for r in _split(ratios)]
    except ValueError:
        raise EmbcompressError(f"--ratios must be numbers like 2.5,5,10 (got {ratios!r})") from None
    from .methods.base import check_ratio

    for r in ratio_values:
        check_ratio(r)
    settings = _settings(data_dir, max_tokens or None, window, stride)
    if finetune_opts:
        from .evaluate.registry import get_evaluation

        settings.extra["finetune"] = _options(finetune_opts)
        training = [get_evaluation(e) for e in _split(evals) if get_evaluation(e).trains]
        for ev in training or [get_evaluation(_split(evals)[0])]:
            ev.check_options(settings.extra["finetune"])  # each with its own settings: fail now, not hours later
    distill_config = _distill_config(distill, distill_opts, calibration)
    try:
        run_sweep(_split(models), specs, ratio_values, _split(evals), out, scope=scope, settings=settings,
                  log=lambda s: click.echo(s, err=True), calibration=None if calibration == "none" else calibration,
                  distill=distill_config, reference=not no_reference, texts=_split(text) if text else None,
                  ray_address=ray_address)
    except KeyboardInterrupt:
        click.echo(f"interrupted; finished cells are kept in {out}: run the same command again to resume", err=True)
        sys.exit(130)
    table, png = report(out, plot_path)
    click.echo(table)
    click.echo(f"\nplot: {png}")


@cli.command("report")
@click.argument("results", type=click.Path())
@click.option("--plot", "plot_path", default=None, type=click.Path(), help="Plot PNG (default: RESULTS with .png).")
def report_cmd(results, plot_path):
    """Markdown table and PNG plot (quality against compression) from a results JSONL."""
    from .report import report

    table, png = report(results, plot_path)
    click.echo(table)
    click.echo(f"\nplot: {png}")


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="embcompress", standalone_mode=False)
    except EmbcompressError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
