"""The headless CLI: argparse -> RunConfig -> engine.run. LftError is caught here and becomes one line, exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from lft_core.config import FIELDS, RunConfig, config_from_dict, load_config
from lft_core.errors import LftError

DEFAULTS = RunConfig()


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    from lft_core.data import DATASETS
    from lft_core.methods import METHODS
    from lft_core.models import MODELS

    add = parser.add_argument
    add("--config", help="YAML file with any RunConfig keys; flags override it")
    add("--model", help=f"built-in ({', '.join(MODELS)}), local folder or Hub name (default {DEFAULTS.model})")
    add("--dataset", help=f"built-in ({', '.join(DATASETS)}), local file/folder or Hub name (default {DEFAULTS.dataset})")
    add("--dataset-config", help="Hub dataset configuration name")
    add("--text-column")
    add("--label-column")
    add("--train-split")
    add("--validation-split")
    add("--test-split")
    add("--method", help=f"one of {', '.join(METHODS)} (default {DEFAULTS.method})")
    add("--method-param", action="append", metavar="KEY=VALUE", help="method option, repeatable (e.g. r=16)")
    add("--quantize", choices=["4bit", "8bit"], help="QLoRA: load the frozen base with bitsandbytes")
    add("--epochs", type=float, help=f"default {DEFAULTS.epochs}")
    add("--learning-rate", type=float, help="default: the method's own")
    add("--batch-size", type=int, help=f"default {DEFAULTS.batch_size}")
    add("--eval-batch-size", type=int)
    add("--max-length", type=int, help=f"tokens per text (default {DEFAULTS.max_length})")
    add("--seed", type=int, help=f"default {DEFAULTS.seed}")
    add("--max-train-samples", type=int, help="stratified subset of train")
    add("--max-eval-samples", type=int, help="stratified cap on validation and test")
    add("--output", help="run folder (default saved_adapters/<model>-<dataset>-<method>-<time>)")
    add("--overwrite", action="store_true", default=None, help="write into a non-empty --output")
    add("--precision", choices=["auto", "bf16", "fp32"],
        help="training compute (default auto: bf16 where the hardware has it natively; evaluation is always fp32)")
    add("--base-dropout", action="store_true", default=None, help="keep dropout in the frozen base")
    add("--save-steps", type=int)
    add("--trust-remote-code", action="store_true", default=None)
    add("--allow-pickle", action="store_true", default=None, help="allow pickle (.bin) weights")


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = {k: v for k, v in vars(args).items() if k in FIELDS and v is not None}
    if args.method_param:
        params = {}
        for item in args.method_param:
            if "=" not in item:
                raise LftError(f"--method-param {item!r} must look like KEY=VALUE, e.g. r=16")
            key, value = item.split("=", 1)
            params[key.strip()] = _parse_value(value)
        overrides["method_params"] = params
    if args.config:
        return load_config(args.config, overrides)
    return config_from_dict(overrides, source="flags")


def print_event(event: dict) -> None:
    """Human-readable lines for the events the engine emits (progress goes to the progress bar)."""
    kind = event.get("event")
    if kind == "stage":
        print(f"[{event['stage']}] {event['message']}", flush=True)
    elif kind == "data":
        print(f"  splits: train {event['train']}, validation {event['validation']}, test {event['test']}; "
              f"classes: {', '.join(event['label_names'])}", flush=True)
    elif kind == "metrics":
        print(f"  {event['which']}: accuracy {event['accuracy']:.4f}, macro-F1 {event['macro_f1']:.4f} "
              f"({event['n']} test texts, {event['seconds']:.1f} s)", flush=True)
    elif kind == "epoch":
        print(f"  epoch {event['epoch']}: validation accuracy {event['accuracy']:.4f}, macro-F1 "
              f"{event['macro_f1']:.4f} (best epoch so far: {event['best_epoch']})", flush=True)


def _print_summary(result) -> None:
    from lft_core.report import comparison_rows

    report = result.report
    rows = comparison_rows(report)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric'.ljust(width)}  {'base':>10}  {'fine-tuned':>10}")
    for metric, base, tuned in rows:
        print(f"{metric.ljust(width)}  {base:>10}  {tuned:>10}")
    print(f"\n{report['verdict']}")
    print(f"trainable parameters: {report['parameters']['trainable']:,} of {report['parameters']['total']:,}; "
          f"train {report['timing']['train_s']:.1f} s; peak memory {report['peak_memory_mb']:.0f} MB; "
          f"reload check max |diff| {report['reload_check']['max_abs_diff']:.1e}")
    print(f"saved: {result.run_dir}")


def cmd_run(args) -> int:
    from lft_core.engine import run
    from lft_core.train import StopRequested

    emit = _also_to_file(Path(args.events), print_event) if args.events else print_event
    try:
        cfg = _run_config(args)
    except LftError as exc:  # the engine reports its own failures; a bad config never reaches it
        emit({"event": "failed", "message": str(exc)})
        raise
    stop = threading.Event()
    # SIGTERM (the app's Stop button, a scheduler's preemption) ends training at the next step, cleanly.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        base_eval = json.loads(Path(args.base_eval).read_text()) if args.base_eval else None
        result = run(cfg, emit=emit, stop=stop, resume=args.resume, progress_bar=True, base_eval=base_eval)
    except StopRequested as exc:
        print(f"stopped: {exc}; nothing was saved as a finished adapter", file=sys.stderr)
        return 3
    if result.report:
        _print_summary(result)
    return 0


def _run_config(args) -> RunConfig:
    if not args.resume:
        return _config_from_args(args)
    saved = Path(args.resume) / "run_config.json"
    if not saved.exists():
        raise LftError(f"{args.resume} has no run_config.json; pass the folder of an interrupted run to --resume")
    return config_from_dict(json.loads(saved.read_text()), source=str(saved))


def _also_to_file(path: Path, emit):
    """The app's worker protocol: every event, including a failure before the run folder exists, is one JSON
    line in a file the app tails. A file, not a pipe: nobody has to drain it for training to go on."""
    from lft_core.runs import append_events

    path.parent.mkdir(parents=True, exist_ok=True)

    def both(event: dict) -> None:
        append_events(path, [event])
        emit(event)

    return both


def cmd_predict(args) -> int:
    from lft_core.predict import predict_stream

    for frame in predict_stream(args.adapter, args.input, text_column=args.text_column,
                                batch_size=args.batch_size, max_length=args.max_length,
                                allow_pickle=args.allow_pickle):
        frame.to_csv(sys.stdout, index=False, header=frame.index[0] == 0)
        sys.stdout.flush()
    return 0


def cmd_list(args) -> int:
    from lft_core.data import DATASETS
    from lft_core.methods import METHODS
    from lft_core.models import MODELS

    table = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}[args.command]
    for name, spec in table.items():
        extra = f"  (lr {spec.learning_rate:g}, defaults {spec.defaults})" if args.command == "methods" else ""
        print(f"{name:15s} {spec.description}{extra}")
    return 0


def cmd_sweep(args) -> int:
    from lft_core.sweep import run_sweep

    result = run_sweep(args.sweep, emit=print_event, output=args.output)
    print(result["markdown"])
    print(f"\nsaved: {result['sweep_dir']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lft_core", description="Lightweight fine-tuning: "
                                     "evaluate a base model, fine-tune it with PEFT, reload and compare.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="evaluate -> fine-tune -> save -> reload -> compare")
    _add_run_flags(run_parser)
    run_parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    run_parser.add_argument("--events", metavar="FILE", help="also append every event as a JSON line to FILE")
    run_parser.add_argument("--base-eval", metavar="FILE", help="reuse a base evaluation (JSON; sweeps share one)")
    run_parser.set_defaults(func=cmd_run)

    predict = sub.add_parser("predict", help="batch inference with a saved adapter")
    predict.add_argument("--adapter", required=True, help="a run folder")
    predict.add_argument("--input", required=True, help="csv, jsonl or txt file, or - for stdin (one text per line)")
    predict.add_argument("--text-column", help="column of the texts (default: detected)")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--max-length", type=int, help="default: the run's max_length")
    predict.add_argument("--allow-pickle", action="store_true")
    predict.set_defaults(func=cmd_predict)

    sweep = sub.add_parser("sweep", help="train several configurations on one split and compare them")
    sweep.add_argument("sweep", help="sweep YAML (see examples/sweep_methods.yaml)")
    sweep.add_argument("--output", help="sweep folder (default saved_adapters/sweep-<name>)")
    sweep.set_defaults(func=cmd_sweep)

    for name in ("methods", "models", "datasets"):
        sub.add_parser(name, help=f"list the built-in {name}").set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notices, not user problems
    try:
        return args.func(args)
    except LftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; resume with `python -m lft_core run --resume RUN_DIR`", file=sys.stderr)
        return 130
