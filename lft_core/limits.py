"""Host limits: what one visitor may run on a shared host (a public Space), all in one place. Unset means no cap,
except for uploads, which always have one. Read from the environment on every call, so a host can change them."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from lft_core.errors import LftError


@dataclass(frozen=True)
class HostLimits:
    max_epochs: float | None = None
    """LFT_MAX_EPOCHS: epochs are clamped to this."""
    max_train_samples: int | None = None
    """LFT_MAX_TRAIN_SAMPLES: the train split is subsampled to this."""
    max_model_params: float | None = None
    """LFT_MAX_MODEL_PARAMS (e.g. 200e6): larger models are refused."""
    max_upload_mb: float = 50.0
    """LFT_MAX_UPLOAD_MB: larger uploads are refused."""
    max_upload_rows: int = 200_000
    """LFT_MAX_UPLOAD_ROWS: uploads with more rows are refused."""


_ENV = {"max_epochs": "LFT_MAX_EPOCHS", "max_train_samples": "LFT_MAX_TRAIN_SAMPLES",
        "max_model_params": "LFT_MAX_MODEL_PARAMS", "max_upload_mb": "LFT_MAX_UPLOAD_MB",
        "max_upload_rows": "LFT_MAX_UPLOAD_ROWS"}


def host_limits() -> HostLimits:
    values = {}
    for spec in dataclasses.fields(HostLimits):
        raw = os.environ.get(_ENV[spec.name], "").strip()
        if raw:
            try:
                values[spec.name] = int(float(raw)) if spec.name in ("max_train_samples", "max_upload_rows") else float(raw)
            except ValueError:
                raise LftError(f"{_ENV[spec.name]}={raw!r} is not a number; fix the host's setting") from None
    return HostLimits(**values)


def apply_host_limits(cfg):
    """Clamp a RunConfig to the host's limits; returns it and one note per clamped value."""
    limits, notes = host_limits(), []
    if limits.max_epochs is not None and cfg.epochs > limits.max_epochs:
        notes.append(f"epochs capped at {limits.max_epochs:g} on this host")
        cfg.epochs = limits.max_epochs
    cap = limits.max_train_samples
    if cap is not None and (cfg.max_train_samples is None or cfg.max_train_samples > cap):
        notes.append(f"training set capped at {cap:,} examples on this host")
        cfg.max_train_samples = cap
    return cfg, notes


def check_model_size(parameters: int) -> None:
    cap = host_limits().max_model_params
    if cap is not None and parameters > cap:
        raise LftError(f"the model has {parameters / 1e6:.0f}M parameters; this host allows at most "
                       f"{cap / 1e6:.0f}M ({_ENV['max_model_params']}). Pick a smaller model")
