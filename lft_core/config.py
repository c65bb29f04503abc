"""RunConfig: every knob of one run, with defaults that work offline; values typed from YAML, flags or form fields;
validate() reports every problem at once."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lft_core.errors import LftError


def _doc(text: str, **extra) -> dict:
    return {"help": text, **extra}


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
        "default: the method's own (LoRA 2e-3, prompt tuning 1e-2, full 5e-5, ...), times sqrt(batch size / 16) "
        "for batches of more than 16 texts"))
    batch_size: int | None = field(default=None, metadata=_doc(
        "training texts per optimizer step (default: about 1,280 real tokens a batch, at least 8 texts; more texts "
        "when they are short, so short texts keep the cores busy; 32 or more are computed in length-sorted parts "
        "of 16 or more)"))
    eval_batch_size: int | None = field(default=None, metadata=_doc(
        "texts per evaluation batch (default: about 1,024 tokens a batch, texts sorted by length; 8 x 128 scored "
        "fastest on CPU, ~6.6k tokens/s against ~5.6k at 64 x 128)"))
    max_length: int | None = field(default=None, metadata=_doc(
        "tokens per text, longer texts are truncated (default: 256, or the model's limit if lower; bbc-news, 2 "
        "epochs: 0.967 test accuracy at 128, 0.986 at 256)"))
    truncation: str = field(default="head", metadata=_doc(
        "which tokens of a long text to keep: head (the start), head+tail (both ends) or tail",
        choices=("head", "head+tail", "tail")))
    weight_decay: float = field(default=0.0, metadata=_doc("AdamW weight decay"))
    warmup_ratio: float = field(default=0.0, metadata=_doc(
        "share of the steps with a rising learning rate; 0.06 cost ~0.8 points on 1-epoch bbc-news (3 seeds)"))
    class_weights: bool = field(default=False, metadata=_doc(
        "weight the loss by inverse class frequency, so a rare class counts as much as a common one"))
    precision: str = field(default="auto", metadata=_doc(
        "training compute: auto (bf16 where the hardware has it natively), bf16 or fp32; validation runs in it too, the "
        "test-split scores always in fp32",
        choices=("auto", "bf16", "fp32")))
    compile: bool = field(default=False, metadata=_doc(
        "torch.compile the training forward: 1.12x a step at a fixed shape, but each new batch length recompiles "
        "(2,000 tweets: 19 s of training without, 90 s with), so it pays back only on long runs; measure first"))
    base_dropout: bool = field(default=False, metadata=_doc(
        "keep dropout inside the frozen base (off: it costs ~15% of a CPU step; measured in benchmarks/)"))
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

    # safety
    trust_remote_code: bool = field(default=False, metadata=_doc("allow a Hub model's own Python code to run"))
    allow_pickle: bool = field(default=False, metadata=_doc(
        "allow pickle (.bin) weights; off because unpickling runs arbitrary code"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
_TYPES = typing.get_type_hints(RunConfig)
_POSITIVE_INTS = ("save_steps", "save_total_limit")
DEFAULT_MAX_LENGTH = 256
MAX_EPOCHS = 1000


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads `1e-3` as a string because it wants `1.0e-3`; YAML 1.2 and every person read a
    number, and it is the usual way to write a learning rate."""


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


# ---------------------------------------------------------------- typed values


def coerce(value: Any, kind: Any, name: str) -> Any:
    """`value` as type `kind` (int, float, bool, str, list[str], dict, or Optional of one), accepting the strings
    a form field, a flag or YAML 1.1 gives ('42', '1e-3', 'true'). Raises ValueError naming the field."""
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    origin = typing.get_origin(kind) or kind
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ValueError(f"{name} must be true or false (got {value!r})")
    if origin is int:
        number = _number(value, name, "a whole number")
        if not float(number).is_integer():
            raise ValueError(f"{name} must be a whole number (got {value!r})")
        return int(number)
    if origin is float:
        return float(_number(value, name, "a number"))
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list (got {value!r})")
        return [str(v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, e.g. {{r: 8, lora_alpha: 16}} (got {value!r})")
        return value
    if origin is str:
        if isinstance(value, (dict, list, tuple)):
            raise ValueError(f"{name} must be a single value (got {value!r})")
        return str(value)
    return value


def _number(value: Any, name: str, what: str) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {what} (got {value!r})")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip()) if any(c in value for c in ".eEn") else int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be {what} (got {value!r})")


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
    return problems
