"""lft_core: evaluate a pretrained model, fine-tune it with PEFT, save, reload and compare.

The one Python API that the CLI (`python -m lft_core`), the Gradio app and the notebook all use. Names are
imported on first use, so `import lft_core` is quick (peft alone takes seconds to import).
"""

import importlib
import logging

# bitsandbytes warns on import, on every CPU with AVX512-BF16, about an optional kernel package we do not use.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

_EXPORTS = {
    # configuration and errors
    "RunConfig": "config", "config_from_dict": "config", "load_config": "config", "validate": "config",
    "parse_yaml": "config", "DEFAULT_MAX_LENGTH": "config",
    "LftError": "errors", "StopRequested": "errors",
    "HostLimits": "limits", "host_limits": "limits", "apply_host_limits": "limits",
    # registries
    "DATASETS": "data", "list_datasets": "data", "load_data": "data", "read_columns": "data",
    "detect_text_column": "data", "guess_columns": "data",
    "METHODS": "methods", "list_methods": "methods", "get_method": "methods", "default_params": "methods",
    "MODELS": "models", "list_models": "models", "load_base_model": "models", "tokenizer_for": "models",
    # the job and its parts
    "run": "engine", "evaluate_base": "engine", "check_run": "engine", "RunResult": "engine",
    "estimate_run_time": "engine", "describe_machine": "hardware", "choose_compute": "hardware",
    "check_dataset": "health", "majority_class": "baselines", "tfidf_logreg": "baselines",
    "METRICS": "evaluate", "Metrics": "evaluate", "compute_metrics": "evaluate",
    "RunReport": "report", "read_report": "report",
    # run folders
    "list_runs": "runs", "resolve_run": "runs", "delete_run": "runs", "load_adapter": "runs", "save_run": "runs",
    "export_zip": "runs", "push_to_hub": "runs", "adapters_root": "runs", "RunInfo": "runs",
    "reserve": "runs", "default_run_name": "runs", "read_status": "runs", "set_status": "runs",
    "check_resumable": "runs", "read_run_config": "runs", "end_unfinished": "runs",
    # using and comparing runs
    "Predictor": "predict", "predict_file": "predict",
    "summary_table": "compare", "changed_rows": "compare", "example_texts": "compare",
    "comparison_figures": "compare", "live_predict": "compare",
    # modules
    "events": None, "report": None, "stats": None,
}
__all__ = [*_EXPORTS, "evaluate"]

# Imported eagerly: the function `evaluate` shares its name with its module, and a lazily imported submodule
# would take the name over on the package.
from lft_core.evaluate import evaluate  # noqa: E402


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lft_core' has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:
        return importlib.import_module(f"lft_core.{name}")
    return getattr(importlib.import_module(f"lft_core.{module}"), name)
