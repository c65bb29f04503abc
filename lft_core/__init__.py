"""lft_core: evaluate a pretrained model, fine-tune it with PEFT, save, reload and compare.

The one Python API that the CLI (`python -m lft_core`), the Gradio app and the notebook all use.
"""

import logging

# bitsandbytes warns on import, on every CPU with AVX512-BF16, about an optional kernel package we do not use.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

from lft_core.config import RunConfig, load_config, validate
from lft_core.data import DATASETS, list_datasets, load_data
from lft_core.errors import LftError
from lft_core.evaluate import Metrics, compute_metrics, evaluate
from lft_core.methods import METHODS, list_methods
from lft_core.models import MODELS, list_models, load_adapter, load_base_model
from lft_core.predict import Predictor
from lft_core.runs import list_runs, read_report


def run(cfg: RunConfig, **kwargs):
    """Run all three stages (see lft_core.engine.run)."""
    from lft_core.engine import run as _run

    return _run(cfg, **kwargs)


__all__ = [
    "RunConfig", "load_config", "validate", "LftError", "run", "load_data", "load_base_model", "load_adapter",
    "evaluate", "compute_metrics", "Metrics", "Predictor", "list_runs", "read_report",
    "DATASETS", "MODELS", "METHODS", "list_datasets", "list_models", "list_methods",
]
