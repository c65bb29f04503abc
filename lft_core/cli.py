"""The headless CLI: flags (one per RunConfig field) -> RunConfig -> engine.run. Anything a user can get wrong is
one line on stderr and exit code 2; a stop (Ctrl-C, SIGTERM) ends at the next step with exit code 3."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from lft_core.config import _TYPES, RunConfig, config_from_dict, load_config, parse_yaml
from lft_core.errors import LftError, StopRequested

DEFAULTS = RunConfig()


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (not the whole usage), like every other input error, and no
    abbreviations (a typo like --learning-rat would silently mean --learning-rate)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def run_flags() -> dict[str, str]:
    """Every RunConfig field and its flag."""
    return {f.name: f.metadata.get("flag", "--" + f.name.replace("_", "-")) for f in dataclasses.fields(RunConfig)}


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, typed by the field, so the CLI cannot drift from the config. Values stay
    strings here and are typed by config_from_dict, which names the field in its message."""
    parser.add_argument("--config", help="YAML file with any of the keys below; flags override it")
    flags = run_flags()
    for spec in dataclasses.fields(RunConfig):
        kind, meta = _TYPES[spec.name], spec.metadata
        default = spec.default if spec.default is not dataclasses.MISSING else None
        text = meta.get("help", "")
        if "choices" in meta:
            text += f" ({', '.join(meta['choices'])})"
        if default not in (None, False, True) and not isinstance(default, dict):
            text += f" (default {default})"
        text = text.replace("%", "%%")  # argparse formats help with %: '15% of' would break --help
        if kind is bool:
            parser.add_argument(flags[spec.name], dest=spec.name, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif spec.name == "method_params":
            parser.add_argument(flags[spec.name], dest=spec.name, action="append", metavar="KEY=VALUE", help=text)
        else:
            parser.add_argument(flags[spec.name], dest=spec.name, metavar=spec.name.upper(), help=text)


def _method_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        if "=" not in item:
            raise LftError(f"--method-param {item!r} must look like KEY=VALUE, e.g. r=16")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = parse_yaml(value)
        except Exception:  # a value YAML cannot read is kept as text; validate() names the option if it is wrong
            params[key.strip()] = value
    return params


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if "method_params" in overrides:
        overrides["method_params"] = _method_params(overrides["method_params"])
    if args.config:
        return load_config(args.config, overrides)
    return config_from_dict(overrides, source="flags")


def print_event(event) -> None:
    """Events as lines of plain words; progress is the progress bar's job."""
    from tqdm.auto import tqdm

    from lft_core import events

    # warnings reach stderr through logging, failures and stops through main() and cmd_run, the verdict with
    # the summary table
    if not isinstance(event, (events.Progress, events.Started, events.Warn, events.Failed, events.Stopped,
                              events.Finished)):
        tqdm.write(events.describe(event))


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGTERM (the app's Stop, a scheduler's preemption) and a first Ctrl-C end training at the next step and
    keep a checkpoint to resume from; a second Ctrl-C aborts at once. The previous handlers come back after."""

    def first(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        if signum == signal.SIGINT:
            print("\nstopping at the next step (Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    before = {sig: signal.signal(sig, first) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def cmd_run(args) -> int:
    from lft_core import events, report
    from lft_core.engine import run

    if args.resume:
        _refuse_settings_with_resume(args)
    cfg = None if args.resume else _config_from_args(args)
    stop, seen = threading.Event(), {}

    def emit(event):
        seen[type(event)] = event
        print_event(event)

    try:
        with _stop_on_signals(stop):
            result = run(cfg or RunConfig(), emit=emit, stop=stop, resume=args.resume, progress_bar=True)
    except StopRequested:
        started, stopped = seen.get(events.Started), seen.get(events.Stopped)
        hint = (f"; resume with `python -m lft_core run --resume {started.run_dir}`"
                if started and stopped and stopped.resumable else "; nothing was saved as a finished adapter")
        print(f"stopped{hint}", file=sys.stderr)
        return 3
    if result.report is not None:
        print("\n" + report.cli_summary(result.report))
        print(f"saved: {result.run_dir}")
    return 0


def _refuse_settings_with_resume(args) -> None:
    """--resume continues a run exactly as it was configured (its checkpoint's optimizer and schedule are for
    those settings), so a setting given beside it would be ignored: refuse it, by name."""
    flags = run_flags()
    given = [flags[name] for name in flags if getattr(args, name, None) is not None]
    if args.config:
        given.insert(0, "--config")
    if given:
        raise LftError(f"--resume continues {args.resume} with the settings it was started with; {', '.join(given)} "
                       f"would be ignored. Drop {'it' if len(given) == 1 else 'them'}, or start a new run with them")


def cmd_predict(args) -> int:
    from lft_core.predict import predict_stream

    header = True
    for frame in predict_stream(args.adapter, args.input, text_column=args.text_column, batch_size=args.batch_size,
                                max_length=args.max_length, allow_pickle=args.allow_pickle, backend=args.backend,
                                text_pair_column=args.text_pair_column):
        frame.to_csv(sys.stdout, index=False, header=header)
        header = False
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------- export (deployment)


def cmd_export(args) -> int:
    from lft_core.export import check_target, export, find_run

    targets = [(kind, out) for kind, out in (("merged", args.merged), ("onnx", args.onnx)) if out]
    if not targets:
        raise LftError("say what to export: --merged OUT (a standalone transformers model), --onnx OUT, or both")
    if len(targets) == 2 and Path(args.merged).expanduser().absolute() == Path(args.onnx).expanduser().absolute():
        raise LftError("--merged and --onnx need two different folders")
    find_run(args.adapter)  # every input checked before the first export starts
    for _, out in targets:
        check_target(out, args.overwrite)
    for kind, out in targets:
        print(export(args.adapter, kind, out, overwrite=args.overwrite).summary())
    return 0


def _add_export_parser(sub) -> None:
    parser = sub.add_parser("export", help="a finished run as a merged model and/or ONNX, checked against its test "
                                           "predictions")
    parser.add_argument("--adapter", required=True, metavar="RUN", help="a finished run: its folder, or its name in "
                                                                        "saved_adapters/")
    parser.add_argument("--merged", metavar="OUT", help="folder for the merged model (loads with transformers alone)")
    parser.add_argument("--onnx", metavar="OUT", help="folder for the ONNX model (runs with onnxruntime)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    parser.set_defaults(func=cmd_export)


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


def cmd_worker(args) -> int:
    """A warm worker for the app: import the heavy libraries now, then wait for one command line (a JSON list of
    arguments, on stdin) and run it as `python -m lft_core` would. A job then starts in a second or two instead of
    the ten a fresh process spends importing torch, transformers and peft."""
    import json

    import lft_core.engine  # noqa: F401
    import peft  # noqa: F401
    import transformers.trainer  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():  # the app went away before giving it a job
        return 0
    argv = json.loads(line)
    if not (isinstance(argv, list) and argv and argv[0] == "run"):
        raise LftError(f"a worker runs one `run` command, got {line.strip()[:200]!r}")
    nested = build_parser().parse_args(argv)
    return nested.func(nested)


# ---------------------------------------------------------------- `runs`: list and remove run folders


def cmd_runs(args) -> int:
    """`runs` lists every run folder (a dead 'running' one as interrupted); `runs rm NAME` removes one."""
    from lft_core.runs import adapters_root, delete_run, list_runs

    if args.action == "rm":
        if not args.names:
            raise LftError("runs rm needs the name of a run (see `python -m lft_core runs`)")
        for name in args.names:
            print(f"removed {delete_run(name)}")
        return 0
    if args.names:
        raise LftError(f"`runs` takes no names ({' '.join(args.names)}); to remove runs: `python -m lft_core runs rm NAME`")
    found = list_runs()
    if not found:
        print(f"no runs in {adapters_root()}")
        return 0
    width = max(len(r.name) for r in found)
    for info in found:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in info.scores.items() if isinstance(v, (int, float)))
        note = scores or info.message
        extra = " (resumable: --resume " + info.path + ")" if info.resumable else ""
        print(f"{info.name.ljust(width)}  {info.status:11s}  {info.model or '?'} / {info.dataset or '?'} / "
              f"{info.method or '?'}" + (f"  {note}" if note else "") + extra)
    return 0


def _add_runs_command(sub) -> None:
    runs = sub.add_parser("runs", help="list run folders (status, scores); `runs rm NAME` removes one")
    runs.add_argument("action", nargs="?", choices=("list", "rm"), default="list")
    runs.add_argument("names", nargs="*", help="runs to remove (names as listed, e.g. sweep-x/run)")
    runs.set_defaults(func=cmd_runs)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lft_core", description="Lightweight fine-tuning: evaluate a base model, fine-tune "
                     "it with PEFT, reload and compare.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run_parser = sub.add_parser("run", help="evaluate -> fine-tune -> save -> reload -> compare")
    _add_run_flags(run_parser)
    run_parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or interrupted run from its last checkpoint")
    run_parser.set_defaults(func=cmd_run)

    predict = sub.add_parser("predict", help="batch inference with a saved adapter")
    predict.add_argument("--adapter", required=True, help="a run folder")
    predict.add_argument("--input", required=True, help="csv, jsonl or txt file, or - for stdin (one text per line)")
    predict.add_argument("--text-column", help="column of the texts (default: detected)")
    predict.add_argument("--text-pair-column", help="sentence-pair runs: column of the second texts (default: the run's "
                                                    "own column name, or a standard pair name)")
    predict.add_argument("--batch-size", type=_positive_int, help="texts per batch (default: about 1,024 tokens a batch)")
    predict.add_argument("--max-length", type=_positive_int, help="default: the run's max_length")
    predict.add_argument("--allow-pickle", action="store_true")
    predict.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                         help="torch: a run folder or a merged export; onnx: an ONNX export, run with onnxruntime")
    predict.set_defaults(func=cmd_predict)

    _add_export_parser(sub)

    sweep = sub.add_parser("sweep", help="train several configurations on one split and compare them")
    sweep.add_argument("sweep", help="sweep YAML (see examples/sweep_methods.yaml)")
    sweep.add_argument("--output", help="sweep folder (default saved_adapters/sweep-<name>)")
    sweep.set_defaults(func=cmd_sweep)

    worker = sub.add_parser("worker", help="(for the app) wait, warm, for one run command on stdin")
    worker.set_defaults(func=cmd_worker)

    for name in ("methods", "models", "datasets"):
        sub.add_parser(name, help=f"list the built-in {name}").set_defaults(func=cmd_list)

    _add_runs_command(sub)
    return parser


def _quiet_libraries() -> None:
    import warnings

    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")  # library deprecation notices, not user problems


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    try:
        return args.func(args)
    except LftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader (`| head`) has what it wanted; Python would print a traceback when flushing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\nerror: interrupted", file=sys.stderr)
        return 130
