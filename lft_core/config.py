"""RunConfig: every knob of one run, with defaults that work offline; values typed from YAML, flags or form fields;
validate() reports every problem at once."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lft_core.errors import LftError
from lft_core.values import coerce


def _doc(text: str, **extra) -> dict:
    return {"help": text, **extra}


DEFAULT_MAX_LENGTH = 256
"""Tokens per text when max_length is left empty (or the model's limit, if lower: default_max_length): beyond it
the time an epoch takes grows faster than the score (benchmarks/results/defaults.md)."""


def default_max_length(model_limit: int | None = None) -> int:
    """The max_length of a run that leaves it empty: DEFAULT_MAX_LENGTH, or the model's limit if lower. The one
    place this is decided; the engine, the data health check and the app's form all ask here."""
    return min(DEFAULT_MAX_LENGTH, model_limit or DEFAULT_MAX_LENGTH)


@dataclass
class RunConfig:
    # what to tune on
    model: str = field(default="minilm", metadata=_doc(
        "built-in alias (minilm, smollm2-135m), a local folder, or a Hugging Face Hub name"))
    dataset: str = field(default="bbc-news", metadata=_doc(
        "built-in dataset (bbc-news, airline-tweets), a local csv/json/jsonl/parquet file or folder, or a Hub name"))
    dataset_config: str | None = field(default=None, metadata=_doc("Hub dataset configuration (e.g. sst2 for glue)"))
    text_column: str | None = field(default=None, metadata=_doc("column of the texts (default: detected)"))
    label_column: str | None = field(default=None, metadata=_doc("column of the labels (default: detected)"))
    text_pair_column: str | None = field(default=None, metadata=_doc(
        "column of the second text of a sentence pair (default: detected from standard names such as "
        "sentence1/sentence2, premise/hypothesis, question1/question2)"))
    label_separator: str | None = field(default=None, metadata=_doc(
        "multi-label CSV: the character between a text's labels (e.g. ';'); JSON/JSONL/parquet lists need none"))
    train_split: str | None = field(default=None, metadata=_doc("Hub split to train on (default: train)"))
    validation_split: str | None = field(default=None, metadata=_doc("Hub split to validate on"))
    test_split: str | None = field(default=None, metadata=_doc("Hub split to test on"))
    label_names: list[str] | None = field(default=None, metadata=_doc(
        "expected class names, comma-separated; the run fails if the data has another set"))
    keep_label_spellings: bool = field(default=False, metadata=_doc(
        "keep labels written differently as separate classes ('01', '1' and '1.0'; 'Food' and 'food'); by default "
        "they are merged, with a warning naming them"))
    max_train_samples: int | None = field(default=None, metadata=_doc("stratified subset of the train split"))
    max_eval_samples: int | None = field(default=None, metadata=_doc("stratified cap on validation and test"))

    # how to tune
    method: str = field(default="lora", metadata=_doc("PEFT method (python -m lft_core methods lists them)"))
    method_params: dict[str, Any] = field(default_factory=dict, metadata=_doc(
        "method option KEY=VALUE, repeatable (e.g. r=16)", flag="--method-param"))
    quantize: str | None = field(default=None, metadata=_doc(
        "QLoRA: load the frozen base in 4bit or 8bit with bitsandbytes", choices=("4bit", "8bit")))
    epochs: float = field(default=2, metadata=_doc("passes over the train split"))
    learning_rate: float | None = field(default=None, metadata=_doc(
        "default: the method's own (python -m lft_core methods lists them), scaled up for large batches "
        "(lft_core/batching.py)"))
    batch_size: int | None = field(default=None, metadata=_doc(
        "training texts per optimizer step (default: chosen from the text lengths, more texts when they are short, "
        "large batches computed in length-sorted parts; lft_core/batching.py)"))
    eval_batch_size: int | None = field(default=None, metadata=_doc(
        "texts per evaluation batch (default: a fixed number of tokens a batch, texts sorted by length; "
        "lft_core/batching.py)"))
    max_length: int | None = field(default=None, metadata=_doc(
        f"tokens per text, longer texts are truncated (default: {DEFAULT_MAX_LENGTH}, or the model's limit if lower)"))
    truncation: str = field(default="head", metadata=_doc(
        "which tokens of a long text to keep: head (the start), head+tail (both ends) or tail",
        choices=("head", "head+tail", "tail")))
    weight_decay: float = field(default=0.0, metadata=_doc("AdamW weight decay"))
    warmup_ratio: float = field(default=0.0, metadata=_doc(
        "share of the steps with a rising learning rate (off by default: it cost accuracy on short runs; "
        "benchmarks/results/defaults.md)"))
    class_weights: bool = field(default=False, metadata=_doc(
        "weight the loss by inverse class frequency, so a rare class counts as much as a common one"))
    precision: str = field(default="auto", metadata=_doc(
        "training compute: auto (bf16 where the hardware has it natively), bf16 or fp32; validation runs in it too, the "
        "test-split scores always in fp32",
        choices=("auto", "bf16", "fp32")))
    compile: bool = field(default=False, metadata=_doc(
        "torch.compile the training forward: faster steps at a fixed shape, but each new batch length recompiles, "
        "so it pays back only on long runs (benchmarks/results/defaults.md); measure first"))
    base_dropout: bool = field(default=False, metadata=_doc(
        "keep dropout inside the frozen base (off: it costs a share of every CPU step; "
        "benchmarks/results/defaults.md)"))
    seed: int = field(default=42, metadata=_doc("seed of the head, the batch order and (unless split_seed) the split"))
    split_seed: int | None = field(default=None, metadata=_doc(
        "seed of the train/validation/test split and subsets (default: seed); sweeps fix it"))
    tfidf_reference: bool = field(default=True, metadata=_doc(
        "also train TF-IDF + logistic regression on the same split (seconds) and compare with it"))

    # where results go
    output: str | None = field(default=None, metadata=_doc(
        "run folder (default saved_adapters/<model>-<dataset>-<method>-<time>)"))
    overwrite: bool = field(default=False, metadata=_doc("write into a non-empty --output"))
    save_steps: int = field(default=200, metadata=_doc("checkpoint every N optimizer steps (and at each epoch end)"))
    save_total_limit: int = field(default=2, metadata=_doc("checkpoints kept in the run folder while it trains"))
    report_to: str | None = field(default=None, metadata=_doc(
        "experiment trackers that also get the loss and validation scores, comma-separated: tensorboard (event "
        "files in <run>/logs), trackio, mlflow, wandb; off by default"))

    # safety
    trust_remote_code: bool = field(default=False, metadata=_doc("allow a Hub model's own Python code to run"))
    allow_pickle: bool = field(default=False, metadata=_doc(
        "allow pickle (.bin) weights; off because unpickling runs arbitrary code"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
_TYPES = typing.get_type_hints(RunConfig)
_POSITIVE_INTS = ("save_steps", "save_total_limit")
MIN_MAX_LENGTH = 8
"""Fewer tokens leave a text its special tokens ([CLS], [SEP]) and a word or two: below this the tokenizer would
quietly keep more (3 at max_length 1) or nothing of the text."""
MAX_EPOCHS = 1000


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads `1e-3` as a string because it wants `1.0e-3`; YAML 1.2 and every person read a
    number, and it is the usual way to write a learning rate."""


def _mapping_without_repeats(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A key given twice is refused: PyYAML silently keeps the last value, so one of the two is a typo."""
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' is given twice (lines {seen[key]} and {key_node.start_mark.line + 1}); keep "
                            f"one", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: str | Path, what: str) -> dict:
    """A YAML mapping from a file; a missing file, bad YAML or a non-mapping is one LftError naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise LftError(f"{what} {path} does not exist; pass an existing YAML file")
    try:
        values = parse_yaml(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise LftError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise LftError(f"{what} {path} must be a mapping of keys to values, got {type(values).__name__}")
    return values


def config_from_dict(values: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a RunConfig from a dict (YAML, flags or form fields). Unknown keys fail with the nearest valid name;
    values are typed by their field, and every problem is reported in one LftError."""
    problems = []
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            problems.append(f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    typed = {}
    for key, value in values.items():
        if key in FIELDS:
            try:
                typed[key] = coerce(value, _TYPES[key], key)
            except ValueError as exc:
                problems.append(str(exc))
    if problems:
        raise LftError(f"{source}: " + "; ".join(problems) + (f" (valid keys: {', '.join(FIELDS)})"
                                                               if any("unknown key" in p for p in problems) else ""))
    return RunConfig(**typed)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config; explicit overrides (CLI flags) win over the file."""
    values = read_yaml(path, "config file")
    values.update(overrides or {})
    return config_from_dict(values, source=str(path))


def validate(cfg: RunConfig) -> None:
    """Check every value once, with no model or data loaded, and raise one LftError listing all problems."""
    problems = _range_problems(cfg)
    from lft_core.methods import METHODS, param_problems

    if cfg.method not in METHODS:
        problems.append(f"unknown method '{cfg.method}'; choose one of: {', '.join(METHODS)}")
    elif isinstance(cfg.method_params, dict):
        problems += param_problems(cfg.method, cfg.method_params)
    if problems:
        raise LftError("invalid config: " + "; ".join(problems))


def _range_problems(cfg: RunConfig) -> list[str]:
    problems = []
    if not (isinstance(cfg.epochs, (int, float)) and 0 < cfg.epochs <= MAX_EPOCHS):
        problems.append(f"epochs must be > 0 and at most {MAX_EPOCHS} (got {cfg.epochs})")
    if cfg.learning_rate is not None and not (isinstance(cfg.learning_rate, (int, float)) and cfg.learning_rate > 0
                                              and math.isfinite(cfg.learning_rate)):
        problems.append(f"learning_rate must be a finite number > 0 (got {cfg.learning_rate})")
    for name in _POSITIVE_INTS:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{name} must be a positive integer (got {value!r})")
    if isinstance(cfg.max_length, int) and 1 <= cfg.max_length < MIN_MAX_LENGTH:
        problems.append(f"max_length must be at least {MIN_MAX_LENGTH} tokens (got {cfg.max_length}): a text needs its "
                        f"special tokens and some words; leave it empty for the default ({DEFAULT_MAX_LENGTH})")
    for name in ("max_length", "batch_size", "eval_batch_size", "max_train_samples", "max_eval_samples"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            problems.append(f"{name} must be a positive integer or empty (got {value!r})")
    for name in ("seed", "split_seed"):
        value = getattr(cfg, name)
        if value is not None and not (isinstance(value, int) and 0 <= value < 2**32):
            problems.append(f"{name} must be a whole number from 0 to 4294967295 (got {value!r})")
    if cfg.quantize not in (None, "4bit", "8bit"):
        problems.append(f"quantize must be '4bit' or '8bit' (got {cfg.quantize!r})")
    if cfg.truncation not in ("head", "head+tail", "tail"):
        problems.append(f"truncation must be 'head', 'head+tail' or 'tail' (got {cfg.truncation!r})")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        problems.append(f"precision must be 'auto', 'bf16' or 'fp32' (got {cfg.precision!r})")
    if not (isinstance(cfg.warmup_ratio, (int, float)) and 0 <= cfg.warmup_ratio < 1):
        problems.append(f"warmup_ratio must be in [0, 1) (got {cfg.warmup_ratio})")
    if not (isinstance(cfg.weight_decay, (int, float)) and 0 <= cfg.weight_decay < 1):
        problems.append(f"weight_decay must be in [0, 1) (got {cfg.weight_decay})")
    if not isinstance(cfg.method_params, dict):
        problems.append("method_params must be a mapping, e.g. {r: 8, lora_alpha: 16}")
    problems += tracker_problems(cfg.report_to)
    return problems


TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "trackio": ("trackio", "trackio"),
            "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
"""--report-to names (transformers' report_to values) -> (module to find, package to install)."""


def trackers(report_to: str | None) -> list[str]:
    """The tracker names in a --report-to value; 'none' and empty mean none."""
    names = [n.strip().lower() for n in str(report_to or "").split(",") if n.strip()]
    return [n for n in names if n != "none"]


def tracker_problems(report_to: str | None) -> list[str]:
    import importlib.util

    problems = []
    for name in trackers(report_to):
        if name not in TRACKERS:
            problems.append(f"report_to: unknown tracker '{name}'; choose from {', '.join(TRACKERS)} (or none)")
        elif importlib.util.find_spec(TRACKERS[name][0]) is None:
            problems.append(f"report_to: {name} is not installed; pip install {TRACKERS[name][1]}, or leave it out")
    return problems
