"""Turning widget values into a RunConfig, and the limits a hosted app puts on what one visitor may run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import gradio as gr

from lft_core.config import RunConfig
from lft_core.errors import LftError
from lft_core.runs import adapters_root

# Hosted limits (a public Space is shared): unset means no cap.
LIMITS = {"epochs": "LFT_MAX_EPOCHS", "max_train_samples": "LFT_MAX_TRAIN_SAMPLES"}
MAX_UPLOAD_MB = float(os.environ.get("LFT_MAX_UPLOAD_MB", "50"))
MAX_UPLOAD_ROWS = int(os.environ.get("LFT_MAX_UPLOAD_ROWS", "200000"))


def data_config(model, dataset, text_column, label_column, max_train, max_eval, max_length, seed) -> RunConfig:
    """The part of the config the 'Model & data' tab sets."""
    if not model or not str(model).strip():
        raise LftError("choose a model: a built-in one, a Hub name or a local folder")
    if not dataset or not str(dataset).strip():
        raise LftError("choose a dataset or upload a file")
    return RunConfig(
        model=str(model).strip(), dataset=str(dataset).strip(),
        text_column=text_column or None, label_column=label_column or None,
        max_train_samples=int(max_train) if max_train else None,
        max_eval_samples=int(max_eval) if max_eval else None,
        max_length=int(max_length), seed=int(seed),
    )


def apply_limits(cfg: RunConfig) -> tuple[RunConfig, list[str]]:
    """Clamp the config to the host's limits; say what was clamped."""
    notes = []
    cap = os.environ.get(LIMITS["epochs"])
    if cap and cfg.epochs > float(cap):
        notes.append(f"epochs capped at {cap} on this host")
        cfg.epochs = float(cap)
    cap = os.environ.get(LIMITS["max_train_samples"])
    if cap and (cfg.max_train_samples is None or cfg.max_train_samples > int(cap)):
        notes.append(f"training set capped at {cap} examples on this host")
        cfg.max_train_samples = int(cap)
    return cfg, notes


def keep_upload(path: str) -> str:
    """Check an upload's size and rows, and copy it out of Gradio's temp folder so the worker can read it and
    it survives a restart. Raises LftError with the reason."""
    source = Path(path)
    size_mb = source.stat().st_size / 2**20
    if size_mb > MAX_UPLOAD_MB:
        raise LftError(f"the file is {size_mb:.1f} MB; uploads are limited to {MAX_UPLOAD_MB:.0f} MB")
    if source.suffix.lower() in (".csv", ".jsonl", ".tsv"):
        with source.open("rb") as f:
            rows = sum(1 for _ in f)
        if rows - 1 > MAX_UPLOAD_ROWS:
            raise LftError(f"the file has {rows - 1:,} rows; uploads are limited to {MAX_UPLOAD_ROWS:,} rows "
                           f"(subsample it, or run the CLI on your own machine)")
    target_dir = adapters_root() / ".uploads"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    shutil.copyfile(source, target)
    return str(target.resolve())


def as_gradio_error(exc: LftError) -> gr.Error:
    return gr.Error(str(exc), duration=None)
