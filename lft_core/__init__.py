"""lft_core: evaluate a pretrained model, fine-tune it with PEFT, save, reload and compare.

The one Python API that the CLI (`python -m lft_core`), the Gradio app and the notebook all use. Every name in
`__all__` is imported below, where an editor can follow it. Most are imported at once; the few whose modules pull in
datasets/pandas, plotly or transformers + peft (seconds on a small CPU) are imported on first use, so that
`import lft_core` stays quick (the CLI's --help, the app's start). Those names are written out twice, under
TYPE_CHECKING for editors and type checkers and in _LAZY for the interpreter; tests/test_structure.py checks that
the two agree.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

# bitsandbytes warns on import, on every CPU with AVX512-BF16, about an optional kernel package we do not use.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

# Imported at once: each costs little once torch and numpy are loaded (lft_core.evaluate needs both).
# `evaluate` comes first: the function shares its name with its module, and importing the module later would
# put the module in the function's place on the package.
from lft_core.evaluate import METRICS, Metrics, compute_metrics, evaluate  # noqa: E402  (isort: skip)
from lft_core import events, stats  # noqa: E402
from lft_core.baselines import majority_class, tfidf_logreg  # noqa: E402
from lft_core.batching import default_learning_rate, learning_rate_hint  # noqa: E402
from lft_core.config import (DEFAULT_MAX_LENGTH, TRACKERS, RunConfig, config_from_dict,  # noqa: E402
                             default_max_length, load_config, parse_yaml, validate)
from lft_core.errors import LftError, StopRequested  # noqa: E402
from lft_core.hardware import choose_compute, describe_machine  # noqa: E402
from lft_core.hub import hub_reachable  # noqa: E402
from lft_core.limits import HostLimits, apply_host_limits, host_limits  # noqa: E402
from lft_core.methods import METHODS, default_params, get_method, list_methods  # noqa: E402
from lft_core.models import MODELS, list_models, load_base_model, tokenizer_for  # noqa: E402
from lft_core.runs import (RunFolder, RunInfo, Status, adapters_root, check_resumable, last_checkpoint,  # noqa: E402
                           default_run_name, delete_run, end_unfinished, export_zip, list_runs, load_adapter,
                           read_run_config, read_status, reserve, resolve_run, save_run, set_status)

if TYPE_CHECKING:  # the lazy names, for editors and type checkers: keep in step with _LAZY
    from lft_core import report
    from lft_core.compare import changed_rows, comparison_figures, example_texts, live_predict, summary_table
    from lft_core.data import DATASETS, detect_text_column, guess_columns, list_datasets, load_data, read_columns
    from lft_core.engine import RunResult, check_run, estimate_run_time, evaluate_base, run
    from lft_core.export import app_export, push_to_hub, zip_export
    from lft_core.health import check_dataset
    from lft_core.predict import Predictor, predict_file
    from lft_core.report import RunReport, read_report

_LAZY = {
    # datasets + pandas
    "DATASETS": "data", "detect_text_column": "data", "guess_columns": "data", "list_datasets": "data",
    "load_data": "data", "read_columns": "data", "check_dataset": "health",
    "Predictor": "predict", "predict_file": "predict",
    # transformers + peft
    "RunResult": "engine", "check_run": "engine", "evaluate_base": "engine", "run": "engine",
    "estimate_run_time": "engine", "app_export": "export", "push_to_hub": "export", "zip_export": "export",
    # plotly (and pandas)
    "report": None, "RunReport": "report", "read_report": "report",
    "changed_rows": "compare", "comparison_figures": "compare", "example_texts": "compare", "live_predict": "compare",
    "summary_table": "compare",
}
"""name -> the lft_core module it comes from (None: the name is that module)."""

__all__ = [
    # configuration and errors
    "RunConfig", "config_from_dict", "load_config", "validate", "parse_yaml", "DEFAULT_MAX_LENGTH",
    "default_max_length", "LftError", "StopRequested", "HostLimits", "host_limits", "apply_host_limits",
    "default_learning_rate", "learning_rate_hint", "hub_reachable", "TRACKERS",
    # registries
    "DATASETS", "list_datasets", "load_data", "read_columns", "detect_text_column", "guess_columns",
    "METHODS", "list_methods", "get_method", "default_params",
    "MODELS", "list_models", "load_base_model", "tokenizer_for",
    # the job and its parts
    "run", "evaluate_base", "check_run", "RunResult", "estimate_run_time", "check_dataset", "majority_class",
    "tfidf_logreg", "choose_compute", "describe_machine",
    "METRICS", "Metrics", "compute_metrics", "evaluate", "RunReport", "read_report",
    # run folders
    "list_runs", "resolve_run", "delete_run", "load_adapter", "save_run", "export_zip", "push_to_hub",
    "adapters_root", "RunInfo", "reserve", "default_run_name", "read_status", "set_status", "check_resumable",
    "read_run_config", "end_unfinished", "RunFolder", "Status", "last_checkpoint",
    # using and comparing runs
    "Predictor", "predict_file", "summary_table", "changed_rows", "example_texts", "comparison_figures",
    "live_predict", "app_export", "zip_export",
    # modules
    "events", "report", "stats",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lft_core' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        return importlib.import_module(f"lft_core.{name}")
    value = getattr(importlib.import_module(f"lft_core.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
