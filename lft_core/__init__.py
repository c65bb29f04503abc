"""lft_core: evaluate a pretrained model, fine-tune it with PEFT, save, reload and compare.

The one Python API that the CLI (`python -m lft_core`), the Gradio app and the notebook all use. Names are
imported on first use, so `import lft_core` is quick (peft alone takes seconds to import).
"""

import importlib
import logging

# bitsandbytes warns on import, on every CPU with AVX512-BF16, about an optional kernel package we do not use.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

_EXPORTS = {
    "RunConfig": "config", "load_config": "config", "validate": "config",
    "LftError": "errors",
    "DATASETS": "data", "list_datasets": "data", "load_data": "data",
    "METHODS": "methods", "list_methods": "methods",
    "MODELS": "models", "list_models": "models", "load_adapter": "models", "load_base_model": "models",
    "Predictor": "predict",
    "list_runs": "runs", "read_report": "runs",
    "run": "engine", "baseline": "engine",
    "report": None,
}
__all__ = [*_EXPORTS, "evaluate", "Metrics", "compute_metrics"]

# Imported eagerly: the function `evaluate` shares its name with its module, and a lazily imported submodule
# would take the name over on the package.
from lft_core.evaluate import Metrics, compute_metrics, evaluate  # noqa: E402


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lft_core' has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:
        return importlib.import_module(f"lft_core.{name}")
    return getattr(importlib.import_module(f"lft_core.{module}"), name)
